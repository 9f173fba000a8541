"""Config versions and the version-2 premises: old presets stay bit-identical, new physics is opt-in."""

import hashlib

import numpy as np
import pytest

from pzkit import sims
from pzkit.sims import catalog as C
from pzkit.sims import seds
from pzkit.sims.config import SimsConfigError, config_hash, get_config

#: Catalogue digests of ``make(preset, 300, random_state=3)`` computed with the code before config versions
#: existed (commit 83de65d): version 1 must keep producing them.
V1_DIGESTS = {
    "cosmos_paus@1": ("d05e1236b9b0342c", "f4445db645968b2d42fb"),
    "lsst_like": ("c533dee20178ded7", "e0dea02a1047140b700f"),
    "hsc_udf": ("ae8e2207e055ff86", "aa021672b596d2787832"),
}


def _digest(result):
    h = hashlib.sha256()
    for c in sorted(result.catalog.columns):
        v = result.catalog[c].to_numpy()
        h.update(c.encode())
        h.update(np.ascontiguousarray(v.astype(str) if v.dtype == object else v).tobytes())
    if result.narrow_bands is not None:
        h.update(np.ascontiguousarray(result.narrow_bands.to_numpy(dtype=float)).tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("preset", sorted(V1_DIGESTS))
def test_version_1_output_is_unchanged(preset):
    catalog_digest, cfg_hash = V1_DIGESTS[preset]
    assert config_hash(get_config(preset), 300, 3) == cfg_hash
    assert _digest(sims.make(preset, 300, random_state=3, cache=False)) == catalog_digest


def test_versions_select_and_refuse():
    assert "version" not in get_config("cosmos_paus", version=1)
    assert get_config("cosmos_paus")["version"] == 2
    assert get_config("cosmos_paus@1") == get_config("cosmos_paus", version=1)
    assert get_config("cosmos_paus")["templates"] == "cosmos"
    with pytest.raises(SimsConfigError, match="^version: preset 'cosmos_paus' has version"):
        get_config("cosmos_paus@7")
    with pytest.raises(SimsConfigError, match="^version: preset 'flagship_paus'"):
        get_config("flagship_paus", version=1)
    with pytest.raises(SimsConfigError, match="^version: given twice"):
        get_config("cosmos_paus@1", version=2)
    with pytest.raises(SimsConfigError, match="^version: must be an integer"):
        get_config("lsst_like", version=9) if False else sims.config.validate({**get_config("lsst_like"), "version": 9})


def test_sims_dataset_takes_a_version():
    from pzkit.datasets import DatasetError, get_dataset, load_sims

    assert get_dataset("sims:cosmos_paus@1", n=120).name == "sims:cosmos_paus@1"
    assert get_dataset("sims:cosmos_paus", n=120).name == "sims:cosmos_paus"
    with pytest.raises(DatasetError, match="cosmos_paus@5"):
        load_sims("cosmos_paus@5", n=50)


@pytest.mark.parametrize("overrides, field", [
    ({"splits": {"train": {"labels": {"samples": [{"fraction": 0.5, "i_max": 22}]}}}},
     "splits.train.labels.samples[0].i_max"),
    ({"splits": {"train": {"labels": {"samples": [{"fraction": 0.7}, {"fraction": 0.7}]}}}},
     "splits.train.labels.samples"),
    ({"splits": {"train": {"labels": {"samples": []}}}}, "splits.train.labels.samples"),
    ({"narrow_bands": {"depth": [23.0, 22.8, 22.5]}}, "narrow_bands.depth"),
])
def test_bad_v2_fields_name_the_field(overrides, field):
    with pytest.raises(SimsConfigError) as err:
        get_config("cosmos_paus", **overrides)
    assert str(err.value).startswith(field), str(err.value)


def test_soft_label_fields_are_refused_beside_samples():
    cfg = get_config("cosmos_paus", version=1)
    cfg["splits"]["train"]["labels"]["samples"] = [{"fraction": 0.1}]
    with pytest.raises(SimsConfigError, match=r"^splits.train.labels.\w+: not used with samples"):
        sims.config.validate(cfg)


def test_label_samples_hand_computed():
    z = np.array([0.05, 0.5, 0.5, 1.3, 0.8, 0.9])
    m = np.array([20.0, 20.0, 22.8, 21.0, 22.0, np.inf])
    rng = np.random.default_rng(0)
    # the first sample takes every eligible object (3 of them: rows 1, 4 and not 0 (z), 2 (mag), 3 (z), 5 (mag))
    mask = C._sample_labels(rng, [{"fraction": 0.9, "mag_max": 22.5, "z_min": 0.1, "z_max": 1.2}], z, m)
    assert mask.tolist() == [False, True, False, False, True, False]
    # a second sample draws from the rest only
    mask = C._sample_labels(rng, [{"fraction": 2 / 6, "mag_max": 22.5, "z_min": 0.1, "z_max": 1.2},
                                  {"fraction": 4 / 6}], z, m)
    assert mask.sum() == 6


def test_cosmos_paus_v2_labels_are_zcosmos_like():
    result = sims.make("cosmos_paus", 3500, random_state=2, cache=False)
    train = result.train.catalog
    i_obs = train["mag_i_cosmos"] - result.extinction_coeffs["i"] * train["ebv"]
    lab = train["labelled"].to_numpy()
    inside = ((i_obs < 22.5) & (train["redshift"] >= 0.1) & (train["redshift"] < 1.2)).to_numpy()
    n = len(train)
    bright, compilation = round(9400 / 33000 * n), round(2693 / 33000 * n)
    assert lab.sum() == bright + compilation
    assert (lab & inside).sum() >= bright                   # the zCOSMOS-bright sample, inside its hard cuts
    assert 0.5 * compilation <= (lab & ~inside).sum() <= compilation   # outside them: only the compilation


def test_type_scale_maps_onto_the_cosmos_templates():
    assert seds.n_types("cwwsb") == 6 and seds.n_types("cosmos") == 6
    np.testing.assert_allclose(seds.type_to_index("cosmos", np.array([0.0, 0.5, 2.5, 5.0])), [0, 7, 18.5, 30])
    x = np.linspace(0, 5, 11)
    assert seds.type_to_index("cwwsb", x) is x
    names, wave, flux = seds.load_templates("cosmos")
    assert len(names) == 31 and names[0] == "Ell1_A_0" and names[-1] == "SB11_A_0"
    # the type scale runs red to blue: rest U−V falls from the early types to the bluest starburst
    u = (wave > 3400) & (wave < 3700)
    v = (wave > 5000) & (wave < 6000)
    uv = -2.5 * np.log10((flux[:, u] * wave[u] ** 2).mean(1) / (flux[:, v] * wave[v] ** 2).mean(1))
    assert uv[7] > uv[18] > uv[30]


def test_flagship_paus_has_the_papers_bands_and_depths():
    cfg = get_config("flagship_paus")
    assert list(cfg["bands"]) == ["u", "g", "r", "i", "z", "Y", "J", "H"]
    assert cfg["domains"]["flagship"]["depth"] == {"u": 25.25, "g": 24.65, "r": 24.15, "i": 24.35, "z": 23.95,
                                                    "Y": 24.0, "J": 24.0, "H": 24.0}
    result = sims.make("flagship_paus", 600, random_state=0, cache=False)
    assert result.train.catalog["labelled"].mean() == pytest.approx(1 / 3, abs=0.01)
    nb = result.narrow_bands
    flux = nb[[c for c in nb.columns if c.startswith("flux_")]]
    train = (result.catalog["split"] == "train").to_numpy()
    assert flux[train].notna().all().all() and flux[~train].isna().all().all()


def test_per_filter_narrow_band_depths():
    cfg = get_config("cosmos_paus", narrow_bands={"filters": ["paus-NB455", "suprime-IB827"], "depth": [23.0, 25.0]})
    np.testing.assert_allclose(C.nb_depths(cfg, 2), [23.0, 25.0])
    cfg = get_config("cosmos_paus", narrow_bands={"filters": ["paus-NB455", "paus-NB555", "suprime-IB827"],
                                                  "depth": [23.0, 22.0, 25.0]})
    np.testing.assert_allclose(C.nb_depths(cfg, 3), [23.0, 22.0, 25.0])


def test_poisson_noise_law_hand_computed():
    """noise.law='poisson': S/N = 5·10^(0.2 (m_5σ − m)), from the magnitude alone (the MTL authors' Flagship law)."""
    result = sims.make("flagship_paus", 800, random_state=0, cache=False,
                       domains={"flagship": {"error_floor": 0.0}})
    cat = result.catalog
    depth = result.depths["g"]
    m_true = cat["mag_true_g_flagship"].to_numpy()
    err = cat["mag_err_g_flagship"].to_numpy()
    obs = cat["mag_g_flagship"].to_numpy()
    bright = (m_true < depth - 2) & (obs < 90)
    expected = 1.0857 / (5 * 10 ** (0.2 * (depth - m_true[bright])))
    # the error column is σ / f_obs, so it scatters around σ / f_true by the noise itself
    assert np.median(err[bright] / expected) == pytest.approx(1.0, abs=0.03)
    sky = sims.make("flagship_paus", 800, random_state=0, cache=False,
                    domains={"flagship": {"error_floor": 0.0}}, noise={"law": "sky"})
    err_sky = sky.catalog["mag_err_g_flagship"].to_numpy()
    m_sky = sky.catalog["mag_true_g_flagship"].to_numpy()
    b = (m_sky < depth - 2) & (sky.catalog["mag_g_flagship"].to_numpy() < 90)
    assert np.median(err_sky[b] / (1.0857 / (5 * 10 ** (0.4 * (depth - m_sky[b]))))) == pytest.approx(1.0, abs=0.03)
    with pytest.raises(SimsConfigError, match="^noise.law"):
        get_config("flagship_paus", noise={"law": "gaussian"})


def test_selection_on_true_magnitudes():
    result = sims.make("flagship_paus", 600, random_state=1, cache=False)
    train = result.train.catalog
    assert (train["mag_true_i_flagship"] < 23.0).all()
    assert (train["mag_i_flagship"] >= 23.0).any()        # noise scatters some across the cut, as in the mock
    observed = sims.make("flagship_paus", 600, random_state=1, cache=False,
                         splits={"train": {"select_on": "observed"}, "test": {"select_on": "observed"}})
    assert (observed.train.catalog["mag_i_flagship"] < 23.0).all()
    with pytest.raises(SimsConfigError, match=r"^splits.train.select_on"):
        get_config("flagship_paus", splits={"train": {"select_on": "noisy"}})


def test_candels_like_v2_measures_its_catalogue_on_the_v1_stamps():
    kw = dict(n=120, random_state=3, cache=False, images={"stamp_size": 32})
    v1, v2 = sims.make("candels_like@1", **kw), sims.make("candels_like", **kw)
    assert get_config("candels_like")["images"]["photometry"] == {"method": "aperture", "diameter": 0.7}
    assert np.array_equal(v1.images, v2.images)
    for column in ("split", "labelled", "redshift"):
        assert np.array_equal(v1.catalog[column].to_numpy(), v2.catalog[column].to_numpy())
    ideal, measured = v1.catalog["mag_F160W_hst"].to_numpy(), v2.catalog["mag_F160W_hst"].to_numpy()
    assert np.array_equal(v2.catalog["mag_gauss_F160W_hst"].to_numpy(), ideal)
    detected = (ideal < 90) & (measured < 90)
    # a 0.7″ aperture misses the galaxies' outer light: fainter than the total in the median
    assert np.median(measured[detected] - ideal[detected]) > 0.1
