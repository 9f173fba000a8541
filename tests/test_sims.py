"""pzkit.sims: configs and their errors, physics building blocks, photometry, splits, determinism, cache,
images and the CLI. Small n throughout; the grids are built once per session in a temporary cache."""

import argparse
import os
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("speclite")
pytest.importorskip("desc_bpz")

import pzkit.sims as sims  # noqa: E402
from pzkit.sims import catalog as C  # noqa: E402
from pzkit.sims import filters as F  # noqa: E402
from pzkit.sims import seds  # noqa: E402
from pzkit.sims.config import SimsConfigError  # noqa: E402


@pytest.fixture(scope="module", autouse=True)
def cache_dir(tmp_path_factory):
    """Every cache (catalogs and the photometry grids) goes to a temporary directory, never to ~/.cache."""
    path = str(tmp_path_factory.mktemp("sims_cache"))
    old = os.environ.get("PZKIT_CACHE_DIR")
    os.environ["PZKIT_CACHE_DIR"] = os.path.dirname(path) + "/" + os.path.basename(path)
    yield os.path.join(path, "sims")
    if old is None:
        os.environ.pop("PZKIT_CACHE_DIR", None)
    else:
        os.environ["PZKIT_CACHE_DIR"] = old


@pytest.fixture(scope="module")
def lsst(cache_dir):
    return sims.make("lsst_like", 600, random_state=3, cache_dir=cache_dir)


@pytest.fixture(scope="module")
def cosmos(cache_dir):
    return sims.make("cosmos_paus", 700, random_state=1, cache_dir=cache_dir)


# ------------------------------------------------------------------------------------------------ import cost
def test_import_is_light():
    code = ("import sys, pzkit.sims, pzkit.sims.config; "
            "bad = [m for m in ('galsim', 'speclite', 'astropy', 'scipy') if m in sys.modules]; "
            "assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


# ------------------------------------------------------------------------------------------------ configs
def test_presets_validate():
    assert sims.list_presets() == ["candels_like", "cosmos_paus", "deep_wide", "flagship_paus", "hsc_udf",
                                   "lsst_like", "sdss_like"]
    for p in sims.list_presets():
        cfg = sims.get_config(p)
        assert cfg["name"] == p
    assert sims.list_domains("hsc_udf")[0] == "cosmos_udf"
    assert set(sims.list_domains("hsc_udf")) >= {"xmm_deep", "elais_deep", "deep2_deep", "cosmos_deep"}


@pytest.mark.parametrize("overrides, field", [
    ({"bands": {"u": "lsst2023-q"}}, "bands.u"),
    ({"domains": {"wfd": {"depth": {"u": -1.0}}}}, "domains.wfd.depth.u"),
    ({"redshift": {"min": 2.0, "max": 1.0}}, "redshift"),
    ({"magnitude": {"min": 26.0}}, "magnitude"),
    ({"domains": {"wfd": {"psf_fwhm": {"g": 0.0}}}}, "domains.wfd.psf_fwhm.g"),
    ({"domains": {"wfd": {"filters": {"u": "nope"}}}}, "domains.wfd.filters.u"),
    ({"splits": {"train": {"fraction": 0.5}}}, "splits"),
    ({"splits": {"test": {"domain": "mars"}}}, "splits.test.domain"),
    ({"images": {"stamp_size": 3}}, "images.stamp_size"),
    ({"colour": 1}, "colour"),
])
def test_bad_configs_name_the_field(overrides, field):
    with pytest.raises(SimsConfigError) as err:
        sims.get_config("lsst_like", **overrides)
    assert str(err.value).startswith(field), str(err.value)
    assert isinstance(err.value, ValueError)


def test_bad_make_arguments():
    with pytest.raises(SimsConfigError, match="preset"):
        sims.make("euclid_like", 10)
    with pytest.raises(SimsConfigError, match="^n"):
        sims.make("lsst_like", 0)
    with pytest.raises(SimsConfigError, match="domain"):
        sims.make("hsc_udf", 10, domain="moon")


def test_overrides_merge_and_delete():
    cfg = sims.get_config("cosmos_paus", narrow_bands=None, splits={"train": {"narrow_bands": False}})
    assert cfg["narrow_bands"] is None if "narrow_bands" in cfg else True
    cfg = sims.get_config("hsc_udf", splits={"target": {"domain": "elais_deep"}})
    assert cfg["splits"]["target"]["domain"] == "elais_deep"
    assert cfg["splits"]["source"]["domain"] == "cosmos_udf"
    cfg = sims.get_config("lsst_like", splits={"test": None, "train": {"fraction": 1.0}})
    assert list(cfg["splits"]) == ["train"]
    a = sims.config.config_hash(sims.get_config("lsst_like"), 10, 0)
    b = sims.config.config_hash(sims.get_config("lsst_like", redshift={"max": 2.0}), 10, 0)
    assert a != b


# ------------------------------------------------------------------------------------------------ physics
def test_dust_laws():
    assert seds.calzetti_k(np.array([5500.0]))[0] == pytest.approx(4.05, abs=0.02)
    k = seds.calzetti_k(np.array([1500.0, 3000.0, 5500.0, 9000.0, 30000.0]))
    assert np.all(np.diff(k) < 0) and k[-1] >= 0
    assert seds.ccm_a_over_ebv(np.array([5500.0]))[0] == pytest.approx(3.1, abs=0.05)
    # SDSS band coefficients close to the SFD/CCM values (u 5.16, g 3.79, r 2.75, i 2.09, z 1.48)
    coef = [C.mw_coefficient(f"sdss2010-{b}") for b in "ugriz"]
    assert np.allclose(coef, [5.16, 3.79, 2.75, 2.09, 1.48], atol=0.3)


def test_madau_igm():
    lam = np.array([1100.0, 3000.0, 4000.0, 5500.0, 8000.0])
    t = seds.madau_transmission(lam, 3.0)
    assert t[-1] == 1.0 and t[-2] == 1.0           # red-ward of Lyα(1+z)=4863 Å: no absorption
    assert t[1] < 0.2 and t[2] > t[1]               # Lyman-limit region at z = 3 is opaque-ish
    assert np.all(seds.madau_transmission(lam[1:], 0.1) == 1.0)


def test_templates_are_line_stripped():
    names, wave, flux = seds.load_templates("cwwsb")
    assert names[0].startswith("El") and names[-1].startswith("SB2")
    win = (wave > 6540) & (wave < 6600)
    side = (wave > 6650) & (wave < 6700)
    sb2 = flux[-1]
    assert sb2[win].max() < 1.3 * np.median(sb2[side])   # Hα stripped from the Kinney starburst
    _, _, raw = seds.load_templates("cwwsb", strip_lines=False)
    assert raw[-1][win].max() > 3 * np.median(raw[-1][side])


def test_filters():
    assert len(F.PAUS_NAMES) == 40 and F.PAUS_NAMES[0] == "NB455" and F.PAUS_NAMES[-1] == "NB845"
    w, t = F.load_filter("paus-NB455")
    assert w[1] == pytest.approx(4485.0) and w[2] == pytest.approx(4615.0)
    assert F.is_known("tophat-6000-200") and not F.is_known("lsst2023-q")
    lam = [F.effective_wavelength(f"lsst2023-{b}") for b in "ugrizy"]
    assert np.all(np.diff(lam) > 0) and 3500 < lam[0] < 3900
    assert 15000 < F.effective_wavelength("hst-F160W") < 16000
    assert abs(F.effective_wavelength("cfht_megacam-ustar") - F.effective_wavelength("cfht_megacam-u")) > 30
    with pytest.raises(SimsConfigError, match="unknown filter"):
        F.load_filter("nope-x")


def test_colour_tracks_and_u_dropout(cache_dir):
    from pzkit.sims.grid import PhotGrid

    pg = PhotGrid("cwwsb", [f"lsst2023-{b}" for b in "ugr"], cache_dir)
    z = np.array([0.5, 1.0, 2.0, 3.2])
    for t in (0, 2, 5):
        m = -2.5 * np.log10(pg.continuum(np.full(4, t), z, np.zeros(4)))
        ug = m[:, 0] - m[:, 1]
        assert ug[-1] > 1.5 and ug[-1] > ug[2] + 0.8      # the Lyman break leaves u
    # red (E) is redder than blue (SB2) in g − r at z = 0.5
    m0 = -2.5 * np.log10(pg.continuum(np.array([0.0, 5.0]), np.array([0.5, 0.5]), np.zeros(2)))
    assert (m0[0, 1] - m0[0, 2]) > (m0[1, 1] - m0[1, 2]) + 0.5
    # dust reddens
    md = -2.5 * np.log10(pg.continuum(np.array([3.0, 3.0]), np.array([0.5, 0.5]), np.array([0.0, 0.5])))
    assert (md[1, 0] - md[1, 2]) > (md[0, 0] - md[0, 2]) + 0.5


def test_emission_lines_show_in_narrow_bands(cache_dir):
    cfg = sims.get_config("cosmos_paus")
    model = C.SedModel(cfg, ["paus-NB645", "paus-NB745"], cache_dir)
    z = np.full(2, 6450.0 / 5006.8 - 1)                                  # [OIII]5007 lands in NB645
    p = C.sample_components(np.random.default_rng(0), cfg, np.full(1, 4.0), z[:1], model.k)
    p = {k: np.repeat(v, 2, axis=0) for k, v in p.items()}               # the same galaxy twice ...
    p["z"] = z
    p["line_flux"][1] = 0.0                                              # ... the second without lines
    b, d = model.fluxes(p)
    tot = b + d
    assert tot[0, 0] / tot[0, 1] > 1.2 * tot[1, 0] / tot[1, 1]
    assert tot[0, 1] == pytest.approx(tot[1, 1])                         # NB745 sees no line here


# ------------------------------------------------------------------------------------------------ catalogs
def test_lsst_catalog(lsst):
    cat = lsst.catalog
    assert len(cat) == 600 and lsst.splits == ["train", "test"]
    assert len(lsst.train) == 200 and len(lsst.test) == 400
    assert lsst.mag_column == "mag_{band}_lsst" and lsst.bands == list("ugrizy")
    for b in lsst.bands:
        assert f"mag_{b}_lsst" in cat and f"mag_err_{b}_lsst" in cat and f"mag_true_{b}_lsst" in cat
    assert cat["redshift"].between(0, 3).all()
    i_dered = cat["mag_i_lsst"] - lsst.extinction_coeffs["i"] * cat["ebv"]
    assert i_dered.max() < 25.3 and i_dered.min() >= 16.0
    assert cat["id"].is_unique and cat["labelled"].all()
    # non-detections as RAIL/DC2/BPZ: 99, error = 1σ limit; detections have finite positive errors
    for b in lsst.bands:
        m, e = cat[f"mag_{b}_lsst"].to_numpy(), cat[f"mag_err_{b}_lsst"].to_numpy()
        assert np.all(e[m == 99] == pytest.approx(lsst.mag_limits[b]))
        assert np.all(np.isfinite(e[m != 99])) and np.all(e[m != 99] > 0)
    assert lsst.mag_limits["i"] == pytest.approx(lsst.depths["i"] + 2.5 * np.log10(5), abs=1e-3)
    X = lsst.features().fit_transform(cat)
    assert X.shape == (600, 6) and np.isfinite(X).all()
    X = lsst.features(include_errors=True, deredden=False).fit_transform(cat)
    assert X.shape == (600, 12)
    # n(z|m) widens with magnitude; early types are more frequent at bright magnitudes
    bright = cat["mag_true_i_lsst"] < 23.5
    assert cat.loc[bright, "redshift"].median() < cat.loc[~bright, "redshift"].median()
    assert (cat.loc[bright, "sed_class"] == 0).mean() > (cat.loc[~bright, "sed_class"] == 0).mean()


def test_noise_matches_depth(lsst):
    cat = lsst.catalog
    f_true = 10 ** (-0.4 * (cat["mag_true_r_lsst"] - 31.4))
    f_obs = 10 ** (-0.4 * (cat["mag_r_lsst"] - 31.4))
    err_f = cat["mag_err_r_lsst"] * f_obs / 1.0857
    pull = (f_obs - f_true) / err_f
    assert abs(np.median(pull)) < 0.2 and 0.8 < np.std(pull) < 1.25
    point = 10 ** (-0.4 * (lsst.depths["r"] - 31.4)) / 5
    assert err_f.min() >= point * 0.99        # extended galaxies never beat the point-source depth


def test_cosmos_paus_splits(cosmos):
    assert cosmos.splits == ["train", "test"] and len(cosmos.nb_bands) == 40
    tr, te = cosmos.train, cosmos.test
    nb = cosmos.narrow_bands
    assert nb.index.equals(cosmos.catalog.index) and "flux_NB455" in nb and "mag_err_NB845" in nb
    assert np.isfinite(tr.narrow_bands["flux_NB655"]).all()
    assert te.narrow_bands["flux_NB655"].isna().all()          # broad-band only test set
    assert 0.28 < tr.catalog["labelled"].mean() < 0.39         # ~1/3 labelled
    lab = tr.catalog[tr.catalog["labelled"]]
    assert lab["redshift"].median() < tr.catalog[~tr.catalog["labelled"]]["redshift"].median()
    i_tr = tr.catalog["mag_i_cosmos"] - cosmos.extinction_coeffs["i"] * tr.catalog["ebv"]
    i_te = te.catalog["mag_i_cosmos"] - cosmos.extinction_coeffs["i"] * te.catalog["ebv"]
    assert i_tr.max() < 23.0 and i_te.max() < 25.0 and i_te.max() > 24.0
    assert tr.catalog["zpaus"].notna().all() and te.catalog["zpaus"].isna().all()
    dz = (tr.catalog["zpaus"] - tr.catalog["redshift"]).abs()
    assert dz.median() < 0.01
    assert cosmos.catalog["redshift"].max() <= 1.5
    # NB magnitudes are NaN where the flux is not positive
    m = nb["mag_NB455"].to_numpy()[: len(tr)]
    f = nb["flux_NB455"].to_numpy()[: len(tr)]
    assert np.array_equal(np.isnan(m), f <= 0)


def test_hsc_domains(cache_dir):
    res = sims.make("hsc_udf", 1200, random_state=0, cache_dir=cache_dir)
    src, tgt = res.source, res.target
    assert src.domain_names == ["cosmos_udf"] and tgt.domain_names == ["xmm_deep"]
    assert src.filters["u"] == "cfht_megacam-u" and tgt.filters["u"] == "cfht_megacam-ustar"
    assert tgt.depths["i"] < src.depths["i"]
    assert not tgt.catalog["labelled"].any() and src.catalog["labelled"].all()

    def shift(r):
        c = r.catalog
        return np.median((c["mag_r_hsc"] - c["mag_i_hsc"]) - (c["mag_true_r_hsc"] - c["mag_true_i_hsc"]))

    assert shift(tgt) == pytest.approx(-0.2, abs=0.03) and shift(src) == pytest.approx(0.0, abs=0.03)
    assert tgt.catalog["ebv"].mean() > src.catalog["ebv"].mean()
    other = sims.make("hsc_udf", 200, random_state=0, cache_dir=cache_dir, domain="deep2_deep")
    assert other.domain_names == ["deep2_deep"]


def test_candels_and_sdss(cache_dir):
    c = sims.make("candels_like", 300, random_state=0, cache_dir=cache_dir)
    assert c.bands == ["F606W", "F814W", "F125W", "F160W"] and c.ref_band == "F160W"
    assert 0.12 < c.train.catalog["labelled"].mean() < 0.32
    assert "mag_F160W_hst" in c.catalog
    s = sims.make("sdss_like", 300, random_state=0, cache_dir=cache_dir)
    z = s.catalog["redshift"]
    assert z.max() <= 0.4 and 0.06 < z.median() < 0.16


# ------------------------------------------------------------------------------------------------ determinism, cache
def test_deterministic_and_cached(cache_dir, lsst):
    a = sims.make("lsst_like", 600, random_state=3, cache=False)
    assert a.catalog.equals(lsst.catalog)
    b = sims.make("lsst_like", 600, random_state=4, cache=False)
    assert not np.allclose(a.catalog["redshift"], b.catalog["redshift"])
    again = sims.make("lsst_like", 600, random_state=3, cache_dir=cache_dir)
    assert again.key == lsst.key and again.catalog.equals(lsst.catalog)
    assert os.path.exists(os.path.join(again.path, "catalog.h5"))


def test_cache_dir_from_env(tmp_path, monkeypatch):
    monkeypatch.setenv("PZKIT_CACHE_DIR", str(tmp_path))
    assert sims.default_cache_dir() == os.path.join(str(tmp_path), "sims")


def test_write_roundtrip(cosmos, tmp_path):
    import tables_io

    files = cosmos.write(tmp_path / "c.hdf5")
    data = tables_io.read(files[0])
    assert set(data) == {"photometry", "narrow_bands"}
    ftr = cosmos.features(groupname="photometry", deredden=False)
    X = ftr.fit_transform(str(files[0]))
    assert X.shape == (len(cosmos), 6)
    files = cosmos.write(tmp_path / "c.parquet")
    assert len(files) == 2 and all(os.path.exists(f) for f in files)
    for bad in ("c.csv", "c.h5"):
        with pytest.raises(SimsConfigError, match="out"):
            cosmos.write(tmp_path / bad)


# ------------------------------------------------------------------------------------------------ images
def test_images(cache_dir):
    pytest.importorskip("galsim")
    from pzkit.sims import images as I

    res = sims.make("lsst_like", 40, random_state=2, cache_dir=cache_dir, images=True)
    assert res.images.shape == (40, 6, 32, 32) and res.images.dtype == np.float32
    cols = {c: res.catalog[c].to_numpy() for c in res.catalog.columns}
    fast, info = I.render(res.config, "wfd", cols, seed=0, noise=False)
    exact, _ = I.render(res.config, "wfd", {k: v[:8] for k, v in cols.items()}, seed=0, noise=False,
                        method="exact")
    rel = np.abs(exact - fast[:8]).sum(axis=(2, 3)) / np.abs(exact).sum(axis=(2, 3))
    assert rel.max() < 1e-3
    f_true = np.column_stack([10 ** (-0.4 * (cols[f"mag_true_{b}_lsst"] - 31.4)) for b in res.bands])
    ratio = fast.sum(axis=(2, 3)) / f_true
    assert np.median(ratio) > 0.99 and ratio.max() < 1.0 + 1e-3
    # the noise in the stamps is the pixel noise derived from the depth
    resid = res.images - fast
    for j, b in enumerate(res.bands):
        assert np.std(resid[:, j]) == pytest.approx(info["pixel_noise"][b], rel=0.05)
    # colour gradient: the bulge (inner) is redder than the disk in g − i for disk galaxies
    assert res.image_info["pixel_scale"] == 0.2
    again = sims.make("lsst_like", 40, random_state=2, cache_dir=cache_dir, images=True)
    assert np.array_equal(again.images, res.images)
    sub = res.test
    assert sub.images.shape[0] == len(sub)


# ------------------------------------------------------------------------------------------------ CLI
def _parser():
    from pzkit.sims.cli import add_subparser

    parser = argparse.ArgumentParser(prog="pzkit")
    sub = parser.add_subparsers(dest="command", required=True)
    add_subparser(sub)
    return parser


def test_cli_parser():
    args = _parser().parse_args(["sims", "make", "lsst_like", "--n", "100", "--out", "x.hdf5", "--set",
                                 "redshift.max=2.0", "--set", "domains.wfd.depth.u=25", "--images"])
    assert args.sims_command == "make" and args.n == 100 and args.images
    from pzkit.sims.cli import _parse_set

    assert _parse_set(args.set) == {"redshift": {"max": 2.0}, "domains": {"wfd": {"depth": {"u": 25}}}}


def test_cli_make(tmp_path, cache_dir, capsys):
    args = _parser().parse_args(["sims", "make", "sdss_like", "--n", "50", "--out", str(tmp_path / "s.hdf5"),
                                 "--cache-dir", cache_dir, "--quiet"])
    assert args.func(args) == 0
    assert os.path.exists(tmp_path / "s.hdf5")
    from pzkit.sims.cli import main

    rc = main(["make", "lsst_like", "--n", "10", "--out", str(tmp_path / "b.hdf5"), "--quiet", "--set",
               "domains.wfd.depth.u=-1"])
    assert rc == 2
    assert "domains.wfd.depth.u" in capsys.readouterr().err
