"""Catalogue photometry measured on the stamps (images.photometry)."""

import numpy as np
import pytest

from pzkit import sims
from pzkit.sims import photometry
from pzkit.sims.config import SimsConfigError


def test_mosaic_places_every_stamp():
    stamps = np.arange(5 * 4 * 4, dtype=float).reshape(5, 4, 4)
    image, x0, y0 = photometry._mosaic(stamps)
    assert image.shape == (12, 12)
    for k in range(5):
        np.testing.assert_array_equal(image[y0[k]:y0[k] + 4, x0[k]:x0[k] + 4], stamps[k])


def test_aperture_sum_of_a_hand_made_stamp():
    """A flat stamp of 1 nJy per pixel without noise: the aperture sum is the aperture area, π r²."""
    size, scale, diameter = 32, 0.4, 4.0
    cfg = sims.get_config("sdss_like", images={"photometry": {"method": "aperture", "diameter": diameter}},
                          domains={"sdss": {"error_floor": 0.0}})
    import pandas as pd

    catalog = pd.DataFrame({"domain": ["sdss"] * 3})
    images = np.zeros((3, 5, size, size))
    yy, xx = np.mgrid[:size, :size]
    blob = np.exp(-((xx - 15.5) ** 2 + (yy - 15.5) ** 2) / 8.0)
    images[:] = 1.0 + 0.0 * blob                      # flat in every band
    images[:, 2] += 100 * blob                        # a source in the reference band to centre on
    info = {"pixel_scale": scale, "pixel_noise": dict.fromkeys("ugriz", 1e-6),
            "psf_fwhm": dict.fromkeys("ugriz", 1.3)}
    out = photometry.measure(cfg, catalog, images, info)
    area = np.pi * (diameter / 2 / scale) ** 2
    expected = 31.4 - 2.5 * np.log10(area)
    np.testing.assert_allclose(out["mag_u_sdss"], expected, atol=2e-3)
    np.testing.assert_allclose(out["mag_z_sdss"], expected, atol=2e-3)


def test_measured_catalogue_keeps_the_ideal_one_and_is_deterministic():
    kw = dict(random_state=0, cache=False, images={"photometry": {"method": "aperture", "diameter": 3.0}})
    a = sims.make("sdss_like", 150, **kw)
    b = sims.make("sdss_like", 150, **kw)
    ideal = sims.make("sdss_like", 150, random_state=0, cache=False)
    np.testing.assert_array_equal(a.catalog["mag_r_sdss"], b.catalog["mag_r_sdss"])
    np.testing.assert_array_equal(a.catalog["mag_gauss_r_sdss"], ideal.catalog["mag_r_sdss"])
    assert a.images is not None                     # the stamps come along: the catalogue was measured on them
    # a 3″ aperture holds part of an SDSS galaxy's light: fainter than the total, by less for smaller galaxies
    diff = (a.catalog["mag_r_sdss"] - a.catalog["mag_gauss_r_sdss"]).to_numpy()
    assert np.median(diff) > 0.3
    small = a.catalog["hlr"].to_numpy() < np.median(a.catalog["hlr"])
    assert np.median(diff[small]) < np.median(diff[~small])


def test_bad_photometry_config_names_the_field():
    with pytest.raises(SimsConfigError, match="^images.photometry.method"):
        sims.get_config("sdss_like", images={"photometry": {"method": "kron", "diameter": 3.0}})
    with pytest.raises(SimsConfigError, match="^images.photometry.diameter"):
        sims.get_config("sdss_like", images={"photometry": {"method": "aperture", "diameter": -1}})


def test_cli_image_settings_reach_make(tmp_path, capsys):
    from pzkit.datasets import read_sims_file
    from pzkit.sims.cli import main

    out = tmp_path / "s.hdf5"
    rc = main(["make", "sdss_like", "--n", "40", "--out", str(out), "--quiet", "--no-cache",
               "--set", "images.photometry.method=aperture", "--set", "images.photometry.diameter=3"])
    assert rc == 0
    result = read_sims_file(out)
    assert "mag_gauss_r_sdss" in result.catalog and result.images is not None
    rc = main(["make", "sdss_like", "--n", "40", "--out", str(tmp_path / "t.hdf5"), "--quiet", "--no-cache",
               "--set", "images.stamp_size=16"])
    assert rc == 2 and "--set images.*" in capsys.readouterr().err
