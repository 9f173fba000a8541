"""Tests of pzkit.metrics: hand-computed point metrics, PDF metrics against closed forms and against qp/RAIL,
tomographic n(z), bias diagnostics, binned bootstrap metrics, the SOM and the LTS line fit."""

import subprocess
import sys

import numpy as np
import pytest
from scipy import optimize, stats

import pzkit.metrics as M

qp = pytest.importorskip("qp")

# qp's own Anderson-Darling call triggers scipy API-transition warnings; they are not ours
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning:qp.metrics.array_metrics")


# =========================================================================== helpers / fixtures
def gaussian_ensembles(n=2000, seed=0, grid=np.linspace(0.0, 3.0, 301)):
    """interp, hist and analytic-norm ensembles of the same Gaussians, plus truths drawn from them."""
    rng = np.random.default_rng(seed)
    mu = rng.uniform(0.4, 2.2, n)
    sig = rng.uniform(0.05, 0.2, n)
    zt = rng.normal(mu, sig)
    y = stats.norm.pdf(grid[None, :], mu[:, None], sig[:, None])
    centres = 0.5 * (grid[1:] + grid[:-1])
    yh = stats.norm.pdf(centres[None, :], mu[:, None], sig[:, None])
    ens = {
        "interp": qp.interp.create_ensemble(grid, y),
        "hist": qp.hist.create_ensemble(grid, yh),
        "norm": qp.Ensemble(qp.stats.norm, data=dict(loc=mu[:, None], scale=sig[:, None])),
    }
    return ens, zt, mu, sig, grid


@pytest.fixture(scope="module")
def gauss():
    return gaussian_ensembles()


def crps_gaussian(mu, sig, z):
    w = (z - mu) / sig
    return sig * (w * (2 * stats.norm.cdf(w) - 1) + 2 * stats.norm.pdf(w) - 1 / np.sqrt(np.pi))


# =========================================================================== import hygiene
def test_import_does_not_pull_heavy_modules():
    code = ("import sys, pzkit.metrics as m; "
            "bad = [k for k in ('torch', 'matplotlib', 'qp') if k in sys.modules]; "
            "assert not bad, bad; assert callable(m.sigma_nmad)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_all_exports_exist():
    expected = {"delta_z", "bias_median", "bias_mean", "sigma_nmad", "sigma_68", "sigma_iqr", "outlier_rate",
                "outlier_rate_lsst", "point_metrics", "pit_values", "pit_stats", "cde_loss", "crps",
                "interval_coverage", "brier_score", "pdf_metrics", "tomographic_nz", "residual_vs_z",
                "mode_collapse_distance", "binned_metrics", "SelfOrganizingMap", "lts_line", "som_cell_diagnostics",
                "nz_by_magnitude", "wasserstein_nz", "pit_qq"}
    assert expected <= set(M.__all__)
    for name in M.__all__:
        obj = getattr(M, name)
        assert obj.__doc__ and len(obj.__doc__) > 40, name


# =========================================================================== point metrics (hand-computed)
def test_delta_z_hand():
    np.testing.assert_allclose(M.delta_z([0.0, 1.0, 2.0], [0.1, 1.2, 1.7]), [0.1, 0.1, -0.1])


def test_sigma_nmad_hand():
    # Δz = 0, .01, .02, .03, .10 -> median .02 -> |Δz − .02| = .02, .01, 0, .01, .08 -> median .01
    assert M.sigma_nmad(np.zeros(5), [0.0, 0.01, 0.02, 0.03, 0.10]) == pytest.approx(0.014826, rel=1e-12)
    # with the 1+z normalisation: z_true = 1, Δz = 0, .1, .3 -> median .1, |.| = .1, 0, .2 -> .1
    assert M.sigma_nmad([1.0, 1.0, 1.0], [1.0, 1.2, 1.6]) == pytest.approx(0.14826, rel=1e-12)
    # median-centred: a constant offset does not change it
    assert M.sigma_nmad(np.zeros(5), np.array([0.0, 0.01, 0.02, 0.03, 0.10]) + 0.5) == pytest.approx(0.014826)


def test_bias_hand():
    zs, zp = [1.0, 1.0, 1.0], [1.0, 1.2, 1.6]  # Δz = 0, .1, .3
    assert M.bias_median(zs, zp) == pytest.approx(0.1)
    assert M.bias_mean(zs, zp) == pytest.approx(0.4 / 3)


def test_sigma_68_and_iqr_hand():
    dz = np.arange(101) / 100.0  # percentile q of this set is q/100 exactly (linear interpolation)
    zs = np.zeros_like(dz)
    assert M.sigma_68(zs, dz) == pytest.approx(0.5 * (0.8413447460685429 - 0.15865525393145707), rel=1e-10)
    assert M.sigma_iqr(zs, dz) == pytest.approx(0.5 / 1.349, rel=1e-12)
    # both equal σ for a large Gaussian sample
    rng = np.random.default_rng(3)
    g = rng.normal(0, 0.02, 200_000)
    assert M.sigma_68(np.zeros_like(g), g) == pytest.approx(0.02, rel=0.01)
    assert M.sigma_iqr(np.zeros_like(g), g) == pytest.approx(0.02, rel=0.01)
    assert M.sigma_nmad(np.zeros_like(g), g) == pytest.approx(0.02, rel=0.01)


def test_outlier_rate_strict_and_threshold():
    zs = np.zeros(4)
    zp = np.array([0.15, 0.1500001, -0.2, 0.0])  # exactly 0.15 is not an outlier (strict >)
    assert M.outlier_rate(zs, zp) == 0.5
    assert M.outlier_rate(zs, zp, threshold=0.05) == 0.75
    assert M.outlier_rate(zs, zp, threshold=0.3) == 0.0
    with pytest.raises(ValueError, match="threshold"):
        M.outlier_rate(zs, zp, threshold=-1)


def test_outlier_rate_lsst_hand():
    # σ_IQR = 0 -> cut = 0.06 -> the 0.07 and −0.1 objects are outliers, 0.05 is not
    dz = np.array([0.0] * 8 + [0.05, 0.07, -0.1])
    assert M.outlier_rate_lsst(np.zeros_like(dz), dz) == pytest.approx(2 / 11)
    # P25 = −0.1, P75 = 0.1 -> σ_IQR = 0.14826 -> cut 0.445: no outliers (the 0.15 rule gives 2/5)
    dz = np.array([-0.2, -0.1, 0.0, 0.1, 0.2])
    assert M.outlier_rate_lsst(np.zeros_like(dz), dz) == 0.0
    assert M.outlier_rate(np.zeros_like(dz), dz) == pytest.approx(0.4)


def test_point_metrics_match_qp():
    from qp.metrics import PointBias, PointOutlierRate, PointSigmaIQR, PointSigmaMAD

    rng = np.random.default_rng(4)
    zs = rng.uniform(0, 3, 5000)
    zp = zs + (1 + zs) * np.where(rng.random(5000) < 0.05, rng.normal(0, 0.5, 5000), rng.normal(0.01, 0.04, 5000))
    pm = M.point_metrics(zs, zp)
    assert pm["sigma_nmad"] == pytest.approx(PointSigmaMAD().evaluate(zp, zs), abs=1e-12)
    assert pm["sigma_iqr"] == pytest.approx(PointSigmaIQR().evaluate(zp, zs), abs=1e-12)
    assert pm["bias_median"] == pytest.approx(PointBias().evaluate(zp, zs), abs=1e-12)
    assert pm["outlier_rate_lsst"] == pytest.approx(PointOutlierRate().evaluate(zp, zs), abs=1e-12)
    assert set(pm) == {"n", "bias_median", "bias_mean", "sigma_nmad", "sigma_68", "sigma_iqr", "outlier_rate",
                       "outlier_rate_lsst"}
    assert pm["n"] == 5000 and pm["sigma_nmad"] == M.sigma_nmad(zs, zp)


@pytest.mark.parametrize(
    "zs, zp, match",
    [
        ([0.1, 0.2], [0.1], "equal lengths"),
        ([], [], "z_true must not be empty"),
        ([0.1, np.nan], [0.1, 0.2], "z_true contains 1 non-finite"),
        ([0.1, 0.2], [0.1, np.inf], "z_pred contains 1 non-finite"),
        ([[0.1, 0.2]], [[0.1, 0.2]], "z_true must be 1-D"),
        ([-1.0, 0.2], [0.1, 0.2], "z_true must be > -1"),
        (["a", "b"], [0.1, 0.2], "z_true must be a 1-D array of numbers"),
    ],
)
def test_point_validation(zs, zp, match):
    for fn in (M.sigma_nmad, M.delta_z, M.point_metrics, M.outlier_rate_lsst):
        with pytest.raises(ValueError, match=match):
            fn(zs, zp)


# =========================================================================== PDF metrics
@pytest.mark.parametrize("kind", ["interp", "hist", "norm"])
def test_pit_and_stats_equal_qp(gauss, kind):
    ens, zt, *_ = gauss
    pit = M.pit_values(ens[kind], zt)
    ref = qp.metrics.PIT(ens[kind], zt)
    np.testing.assert_allclose(pit, ref.pit_samps, rtol=0, atol=1e-12)
    st = M.pit_stats(pit)
    assert abs(st["ks"] - ref.evaluate_PIT_KS().statistic) < 1e-6
    assert abs(st["cvm"] - ref.evaluate_PIT_CvM().statistic) < 1e-6
    assert abs(st["ad"] - ref.evaluate_PIT_anderson_ksamp().statistic) < 1e-6


@pytest.mark.parametrize("kind", ["interp", "hist", "norm"])
def test_cde_loss_equals_qp_and_rail(gauss, kind):
    from qp.metrics import CDELossMetric

    ens, zt, _, _, grid = gauss
    ours = M.cde_loss(ens[kind], zt, grid)
    assert abs(ours - CDELossMetric(grid).evaluate(ens[kind], zt)) < 1e-6
    other_grid = np.linspace(0, 3.2, 161)
    assert abs(M.cde_loss(ens[kind], zt, other_grid) - CDELossMetric(other_grid).evaluate(ens[kind], zt)) < 1e-6
    if kind == "interp":
        cdeloss = pytest.importorskip("rail.evaluation.metrics.cdeloss")
        rail_val = cdeloss.CDELoss(ens[kind], grid, zt).evaluate().statistic
        assert abs(ours - rail_val) < 1e-6


def test_pit_fast_paths_respect_qp_edges():
    """Truths on grid points, outside the grid and a PDF non-zero at the first grid point."""
    x = np.linspace(0, 1, 11)
    y = np.vstack([np.linspace(2, 0, 11), np.ones(11), np.exp(-0.5 * ((x - 0.5) / 0.1) ** 2)])
    for ens in (qp.interp.create_ensemble(x, y), qp.hist.create_ensemble(x, y[:, :-1] + 0.1)):
        zt = np.array([0.0, 1.0, 0.3])
        for shift in (0.0, -0.5, 0.55, 0.05):
            z = zt + shift
            # (qp.metrics.PIT itself cannot be built from 3 samples; use its sample-gathering step)
            ref = qp.metrics.PIT._gather_pit_samples(ens, z)
            np.testing.assert_allclose(M.pit_values(ens, z), ref, atol=1e-12)


def test_pit_uniform_for_calibrated_and_not_for_overconfident(gauss):
    ens, zt, mu, sig, grid = gauss
    st = M.pit_stats(M.pit_values(ens["norm"], zt))
    assert st["ks"] < 0.035 and st["ks_pvalue"] > 1e-3
    assert st["cvm_pvalue"] > 1e-3
    narrow = qp.Ensemble(qp.stats.norm, data=dict(loc=mu[:, None], scale=0.5 * sig[:, None]))
    st_bad = M.pit_stats(M.pit_values(narrow, zt))
    assert st_bad["ks"] > 0.1 and st_bad["ks_pvalue"] < 1e-10
    assert st_bad["ad_uniform"] > 10 * max(st["ad_uniform"], 1.0)


def test_pit_stats_hand():
    u = np.array([0.1, 0.4, 0.7])
    st = M.pit_stats(u)
    # D = max(i/n − u_(i), u_(i) − (i−1)/n) = max(1/3−.1, 2/3−.4, 1−.7, .1, .4−1/3, .7−2/3) = 0.3
    assert st["ks"] == pytest.approx(0.3)
    # ω² = 1/(12n) + Σ((2i−1)/(2n) − u_(i))²
    w2 = 1 / 36 + (1 / 6 - 0.1) ** 2 + (0.5 - 0.4) ** 2 + (5 / 6 - 0.7) ** 2
    assert st["cvm"] == pytest.approx(w2)
    a2 = -3 - np.mean([(2 * i - 1) * (np.log(u[i - 1]) + np.log(1 - u[3 - i])) for i in (1, 2, 3)])
    assert st["ad_uniform"] == pytest.approx(a2)
    assert st["outlier_rate"] == 0.0
    with pytest.raises(ValueError, match="pit"):
        M.pit_stats([0.2, 1.3])


def test_crps_gaussian_closed_form(gauss):
    ens, zt, mu, sig, _ = gauss
    fine = np.linspace(-1.0, 4.0, 5001)
    expected = float(np.mean(crps_gaussian(mu, sig, zt)))
    assert M.crps(ens["norm"], zt, fine) == pytest.approx(expected, rel=1e-4)
    # the interp ensemble is the Gaussians linearly interpolated on a 0.01 grid: equal to ~1e-3
    assert M.crps(ens["interp"], zt, fine) == pytest.approx(expected, rel=2e-3)
    assert M.crps(ens["interp"], zt, np.linspace(0, 3, 301)) == pytest.approx(expected, rel=2e-3)
    # miscalibrated (too narrow or offset) PDFs score worse
    narrow = qp.Ensemble(qp.stats.norm, data=dict(loc=mu[:, None] + 0.05, scale=0.3 * sig[:, None]))
    assert M.crps(narrow, zt, fine) > 1.2 * expected
    # a single PDF with the truth outside the grid: the part beyond the grid is added with F constant
    one = qp.Ensemble(qp.stats.norm, data=dict(loc=np.array([[1.0]]), scale=np.array([[0.1]])))
    for z in (-2.0, 0.7, 1.0, 3.0, 6.0):
        assert M.crps(one, [z], np.linspace(0, 4, 4001)) == pytest.approx(crps_gaussian(1.0, 0.1, z), rel=1e-4,
                                                                          abs=1e-7)


def test_crps_point_mass_limit():
    # a very narrow PDF: CRPS -> |z_true − μ|
    ens = qp.Ensemble(qp.stats.norm, data=dict(loc=np.array([[1.0], [2.0]]), scale=np.array([[1e-4], [1e-4]])))
    assert M.crps(ens, [1.3, 1.5], np.linspace(0, 3, 30001)) == pytest.approx(0.4, rel=1e-3)


def test_interval_coverage_calibrated_and_overconfident(gauss):
    ens, zt, mu, sig, _ = gauss
    n = zt.size
    for kind in ("norm", "interp"):
        cov = M.interval_coverage(ens[kind], zt)
        assert set(cov) == {0.68, 0.95}
        for level, frac in cov.items():
            assert abs(frac - level) < 3.5 * np.sqrt(level * (1 - level) / n)
    narrow = qp.Ensemble(qp.stats.norm, data=dict(loc=mu[:, None], scale=0.5 * sig[:, None]))
    cov = M.interval_coverage(narrow, zt, levels=[0.68])
    expected = 2 * stats.norm.cdf(0.5 * stats.norm.ppf(0.84)) - 1  # ≈ 0.38
    assert abs(cov[0.68] - expected) < 0.04
    with pytest.raises(ValueError, match="levels"):
        M.interval_coverage(narrow, zt, levels=[1.2])


@pytest.mark.parametrize("kind", ["interp", "hist", "norm"])
def test_brier_qp_convention_equals_qp(gauss, kind):
    from qp.metrics import calculate_brier
    from qp.metrics.metrics import _calculate_grid_parameters

    ens, zt, *_ = gauss
    zt = np.clip(zt, 0.01, 2.99)  # qp silently widens its grid for truths outside the limits
    for limits, dx in (((0.0, 3.0), 0.01), ((0.0, 3.5), 0.02)):
        g = _calculate_grid_parameters(limits, dx).grid_values
        assert M.brier_score(ens[kind], zt, g) == pytest.approx(calculate_brier(ens[kind], zt, limits, dx),
                                                                rel=1e-10)


def test_brier_probability_convention_hand():
    # uniform density on [0, 1]; grid points 0, .25, .5, .75, 1 own bins of width .25 (ends half outside)
    ens = qp.hist.create_ensemble(np.array([0.0, 1.0]), np.array([[1.0]]))
    g = np.linspace(0, 1, 5)
    # bin probabilities: .125, .25, .25, .25, .125; truth 0.5 in the middle bin
    q = np.array([0.125, 0.25, 0.25, 0.25, 0.125])
    o = np.array([0, 0, 1, 0, 0])
    assert M.brier_score(ens, [0.5], g, convention="probability") == pytest.approx(np.sum((q - o) ** 2))
    # qp convention: density 1 at every grid point (the last edge z = 1 is outside qp's half-open bin)
    assert M.brier_score(ens, [0.5], g) == pytest.approx(1 + 1 + 0 + 1 + 0)
    # truth outside every bin -> all-zero one-hot row
    assert M.brier_score(ens, [5.0], g, convention="probability") == pytest.approx(np.sum(q**2))


def test_cde_loss_gaussian_expectation(gauss):
    # truths drawn from N(μ, σ): E[p(z_true)] = ∫p² = 1/(2σ√π) per object, so the loss → −mean 1/(2σ√π)
    ens, zt, mu, sig, _ = gauss
    fine = np.linspace(-1.0, 4.0, 2001)
    expected = -float(np.mean(1.0 / (2 * sig * np.sqrt(np.pi))))
    got = M.cde_loss(ens["norm"], zt, fine, truth_eval="interp")
    assert got == pytest.approx(expected, rel=0.03)
    # an overconfident ensemble scores worse (higher)
    narrow = qp.Ensemble(qp.stats.norm, data=dict(loc=mu[:, None], scale=0.3 * sig[:, None]))
    assert M.cde_loss(narrow, zt, fine) > got + 0.5


def test_pdf_metrics_dict(gauss):
    ens, zt, _, _, grid = gauss
    out = M.pdf_metrics(ens["interp"], zt, grid)
    for key in ("n", "pit_ks", "pit_cvm", "pit_ad", "pit_ad_uniform", "cde_loss", "crps", "coverage_68",
                "coverage_95", "brier"):
        assert key in out and np.isfinite(out[key]), key
    assert out["cde_loss"] == M.cde_loss(ens["interp"], zt, grid)
    assert out["coverage_68"] == M.interval_coverage(ens["interp"], zt)[0.68]


def test_pdf_validation(gauss):
    ens, zt, _, _, grid = gauss
    with pytest.raises(ValueError, match="z_true must have one value per PDF"):
        M.pit_values(ens["interp"], zt[:-1])
    with pytest.raises(ValueError, match="ens must be a qp.Ensemble"):
        M.cde_loss(np.zeros((3, 3)), zt[:3], grid)
    with pytest.raises(ValueError, match="zgrid must be strictly increasing"):
        M.crps(ens["interp"], zt, grid[::-1])
    with pytest.raises(ValueError, match="z_true contains"):
        M.cde_loss(ens["interp"], np.full(zt.size, np.nan), grid)
    with pytest.raises(ValueError, match="convention"):
        M.brier_score(ens["interp"], zt, grid, convention="nope")


# =========================================================================== tomographic n(z)
def test_tomographic_nz_known_answer():
    # every PDF is uniform on [0, 1]; the truths of bin 0 are all at 0.25, those of bin 1 at 0.75
    n = 50
    ens = qp.interp.create_ensemble(np.array([0.0, 1.0]), np.ones((n, 2)))
    zt = np.concatenate([np.full(30, 0.25), np.full(20, 0.75)])
    zphot = np.concatenate([np.full(30, 0.2), np.full(20, 0.7)])
    grid = np.linspace(0, 1, 1001)
    res = M.tomographic_nz(ens, zt, zphot, grid, [0.0, 0.5, 1.0, 1.5])
    assert [r["n"] for r in res] == [30, 20, 0]
    for r, zt_bin in zip(res[:2], (0.25, 0.75)):
        assert r["mean_z_stack"] == pytest.approx(0.5, abs=1e-9)
        assert r["mean_z_true"] == pytest.approx(zt_bin)
        assert r["delta_mean_z"] == pytest.approx((0.5 - zt_bin) / (1 + zt_bin), abs=1e-9)
        # W1 = E|U − z₀| = (z₀² + (1 − z₀)²)/2 = 0.3125 for both; KS = max(z₀, 1 − z₀) = 0.75, reached just
        # after the jump for z₀ = .25 and just before it for z₀ = .75
        assert r["wasserstein"] == pytest.approx(0.3125, abs=1e-6)
        assert r["ks"] == pytest.approx(0.75, abs=1e-6)
        assert np.trapezoid(r["nz_stack"], grid) == pytest.approx(1.0)
        assert np.trapezoid(r["nz_true"], grid) == pytest.approx(1.0, abs=2e-3)
    assert np.isnan(res[2]["wasserstein"]) and res[2]["n"] == 0


def test_tomographic_nz_exact_on_coarse_grid():
    # uniform stack on a 2-point grid vs truths {0.1, 0.9}: the CDFs cross inside one grid interval
    ens = qp.interp.create_ensemble(np.array([0.0, 1.0]), np.ones((2, 2)))
    (r,) = M.tomographic_nz(ens, [0.1, 0.9], [0.5, 0.5], np.array([0.0, 1.0]), [0.0, 1.0])
    # W1 = ∫_0^.1 z + ∫_.1^.9 |z − .5| + ∫_.9^1 (1 − z) = .005 + .16 + .005
    assert r["wasserstein"] == pytest.approx(0.17, abs=1e-12)
    assert r["ks"] == pytest.approx(0.4, abs=1e-12)


def test_tomographic_nz_matches_scipy_wasserstein(gauss):
    ens, zt, mu, sig, grid = gauss
    zphot = mu  # bin on the PDF means
    res = M.tomographic_nz(ens["interp"], zt, zphot, grid, [0.4, 1.0, 1.6, 2.2])
    assert sum(r["n"] for r in res) == zt.size
    for r in res:
        sel = (zphot >= r["z_lo"]) & (zphot < r["z_hi"]) if r["bin"] < 2 else (zphot >= r["z_lo"])
        assert r["n"] == int(sel.sum())
        # scipy's W1 between the truths and the stack discretised on the (fine) grid
        w_ref = stats.wasserstein_distance(zt[sel], grid, v_weights=r["nz_stack"])
        assert r["wasserstein"] == pytest.approx(w_ref, abs=3e-3)
        # truths drawn from the PDFs -> the stacked n(z) is unbiased and close to the truth distribution
        assert abs(r["delta_mean_z"]) < 0.01
        assert r["ks"] < 0.06
    # a biased ensemble (all PDFs shifted by +0.1) is detected
    shifted = qp.Ensemble(qp.stats.norm, data=dict(loc=mu[:, None] + 0.1, scale=sig[:, None]))
    res_b = M.tomographic_nz(shifted, zt, zphot, grid, [0.4, 1.0, 1.6, 2.2])
    for r in res_b:
        assert r["wasserstein"] == pytest.approx(0.1, abs=0.02)
        assert r["delta_mean_z"] > 0.02


def test_stacked_nz_validation(gauss):
    ens, zt, _, _, grid = gauss
    with pytest.raises(ValueError, match="z_phot must have one value"):
        M.tomographic_nz(ens["interp"], zt, zt[:-2], grid, [0, 1, 2])
    with pytest.raises(ValueError, match="bin_edges"):
        M.tomographic_nz(ens["interp"], zt, zt, grid, [1, 0])


# =========================================================================== bias diagnostics
def test_residual_vs_z_hand():
    zs = np.array([0.1, 0.1, 0.3, 0.3])
    dz = np.array([0.01, 0.03, -0.02, 0.0])
    zp = zs + dz * (1 + zs)
    r = M.residual_vs_z(zs, zp, bins=[0.0, 0.2, 0.4])
    np.testing.assert_allclose(r["mean"], [0.02, -0.01])
    np.testing.assert_array_equal(r["n"], [2, 2])
    np.testing.assert_allclose(r["std"], [0.01, 0.01])
    np.testing.assert_allclose(r["err"], [0.01, 0.01])  # std / sqrt(n − 1)
    np.testing.assert_allclose(r["centers"], [0.1, 0.3])
    # weighted: weights 1, 3 in the first bin -> (0.01 + 0.09)/4, error sqrt(1/4)
    w = np.array([1.0, 3.0, 1.0, 1.0])
    rw = M.residual_vs_z(zs, zp, bins=[0.0, 0.2, 0.4], weights=w)
    assert rw["mean"][0] == pytest.approx(0.025)
    assert rw["err"][0] == pytest.approx(0.5)
    # binning against z_photo uses z_pred
    rp = M.residual_vs_z(zs, zp, against="photo", bins=[0.0, 0.2, 0.4])
    assert rp["against"] == "photo" and rp["n"].sum() == 4


def test_residual_vs_z_piecewise_slopes():
    rng = np.random.default_rng(7)
    zs = rng.uniform(0, 0.4, 40_000)
    true_dz = np.where(zs < 0.15, 0.02 * zs, -0.1 * (zs - 0.15) + 0.003)
    zp = zs + (true_dz + rng.normal(0, 0.01, zs.size)) * (1 + zs)
    r = M.residual_vs_z(zs, zp, against="spec", bins=40, break_point=0.15)
    assert r["edges"][0] == 0.0 and r["edges"][-1] == pytest.approx(zs.max())
    assert r["slope_high"] == pytest.approx(-0.1, abs=0.01)
    assert r["slope_low"] == pytest.approx(0.02, abs=0.01)
    assert r["slope_high_err"] < 0.01
    # an estimator unbiased in z_spec has a flat curve vs z_spec ...
    zp2 = zs + rng.normal(0, 0.03, zs.size) * (1 + zs)
    assert abs(M.residual_vs_z(zs, zp2, against="spec", break_point=0.15)["slope_high"]) < 0.02
    # ... but vs z_photo: near the top of the n(z) most objects with high z_photo were scattered up -> ⟨Δz⟩ rises
    rph = M.residual_vs_z(zs, zp2, against="photo", bins=40, z_range=(0, 0.4), break_point=0.3)
    assert rph["slope_high"] > 0.1
    with pytest.raises(ValueError, match="against"):
        M.residual_vs_z(zs, zp, against="both")


def test_mode_collapse_distance_hand():
    edges = [0.0, 0.1, 0.2, 0.3, 0.4]
    zs = [0.05, 0.15, 0.25, 0.35]
    assert M.mode_collapse_distance(zs, [0.05, 0.05, 0.25, 0.25], bins=edges) == pytest.approx(0.5)
    assert M.mode_collapse_distance(zs, zs, bins=edges) == 0.0
    assert M.mode_collapse_distance(zs, [0.35, 0.35, 0.35, 0.35], bins=edges) == pytest.approx(0.75)
    # an out-of-range photo-z is lost: h_photo = .5, 0, .25, 0
    assert M.mode_collapse_distance(zs, [0.05, 0.05, 0.25, 0.9], bins=edges) == pytest.approx(0.375)
    # integer bins over [min, max] of z_spec
    assert M.mode_collapse_distance(zs, [0.05, 0.05, 0.25, 0.25], bins=4) == pytest.approx(0.5)


def test_mode_collapse_detects_spikes():
    rng = np.random.default_rng(8)
    zs = rng.uniform(0, 0.4, 20_000)
    smooth = zs + rng.normal(0, 0.01, zs.size)
    spiky = np.round(smooth / 0.04) * 0.04 + 0.02  # predictions collapse onto a few values
    tv_s = M.mode_collapse_distance(zs, smooth, bins=180, z_range=(0, 0.4))
    tv_k = M.mode_collapse_distance(zs, spiky, bins=180, z_range=(0, 0.4))
    assert tv_s < 0.1 and tv_k > 0.7


# =========================================================================== binned metrics
def test_binned_metrics_hand_and_bootstrap():
    rng = np.random.default_rng(9)
    n = 4000
    mag = rng.uniform(18, 24, n)
    zs = rng.uniform(0.1, 1.5, n)
    sigma = 0.01 + 0.01 * (mag - 18)  # scatter grows with magnitude
    zp = zs + rng.normal(0, sigma) * (1 + zs)
    out = M.binned_metrics(zs, zp, mag, n_bins=4, n_boot=200, random_state=1,
                           metrics=("sigma_nmad", "bias_mean", "outlier_rate"))
    np.testing.assert_array_equal(out["n"], [1000, 1000, 1000, 1000])
    order = np.argsort(mag, kind="stable")
    for j in range(4):
        idx = order[j * 1000:(j + 1) * 1000]
        assert out["sigma_nmad"][j] == pytest.approx(M.sigma_nmad(zs[idx], zp[idx]))
        assert out["bias_mean"][j] == pytest.approx(M.bias_mean(zs[idx], zp[idx]))
        assert out["center"][j] == pytest.approx(np.median(mag[idx]))
        # bootstrap error of a mean ≈ std/√n
        sd = np.std(M.delta_z(zs[idx], zp[idx])) / np.sqrt(1000)
        assert out["bias_mean_err"][j] == pytest.approx(sd, rel=0.2)
        assert out["sigma_nmad_err"][j] > 0
    assert np.all(np.diff(out["sigma_nmad"]) > 0)
    again = M.binned_metrics(zs, zp, mag, n_bins=4, n_boot=200, random_state=1,
                             metrics=("sigma_nmad", "bias_mean", "outlier_rate"))
    np.testing.assert_array_equal(out["sigma_nmad_err"], again["sigma_nmad_err"])


def test_binned_metrics_edges_and_validation():
    zs = np.array([0.1, 0.2, 0.3, 0.4, 0.5, 0.6])
    zp = zs + np.array([0.0, 0.01, 0.02, 0.2, 0.3, 0.0]) * (1 + zs)
    by = np.array([1.0, 1.5, 2.0, 2.5, 3.0, 9.0])
    out = M.binned_metrics(zs, zp, by, bin_edges=[1.0, 2.0, 3.0], n_boot=0, metrics=["outlier_rate", "bias_median"])
    np.testing.assert_array_equal(out["n"], [2, 3])  # 9.0 is outside, 3.0 is in the closed last bin
    np.testing.assert_allclose(out["outlier_rate"], [0.0, 2 / 3])
    np.testing.assert_allclose(out["bias_median"], [0.005, 0.2])
    assert np.all(np.isnan(out["outlier_rate_err"]))
    eq = M.binned_metrics(zs, zp, by, n_bins=2, equal_count=False, n_boot=0)
    np.testing.assert_allclose(eq["edges"], [1.0, 5.0, 9.0])
    np.testing.assert_array_equal(eq["n"], [5, 1])
    with pytest.raises(ValueError, match="metrics: unknown metric 'rmse'"):
        M.binned_metrics(zs, zp, by, metrics=("rmse",))
    with pytest.raises(ValueError, match="by must have the same length"):
        M.binned_metrics(zs, zp, by[:-1])
    with pytest.raises(ValueError, match="n_bins"):
        M.binned_metrics(zs, zp, by, n_bins=0)


# =========================================================================== SOM
def test_som_deterministic_and_bmu_bruteforce():
    rng = np.random.default_rng(10)
    X = rng.normal(size=(3000, 4))
    a = M.SelfOrganizingMap(n_rows=6, n_cols=7, n_iter=10, init="random", random_state=3).fit(X)
    b = M.SelfOrganizingMap(n_rows=6, n_cols=7, n_iter=10, init="random", random_state=3).fit(X)
    c = M.SelfOrganizingMap(n_rows=6, n_cols=7, n_iter=10, init="random", random_state=4).fit(X)
    np.testing.assert_array_equal(a.weights_, b.weights_)
    assert not np.allclose(a.weights_, c.weights_)
    cells = a.transform(X)
    assert cells.shape == (3000,) and cells.min() >= 0 and cells.max() < 42
    W = a.weights_.reshape(-1, 4)
    d2 = np.sum((X[:, None, :] - W[None, :, :]) ** 2, axis=-1)
    brute = np.argmin(d2, axis=1)
    differ = cells != brute
    # identical up to floating-point ties
    np.testing.assert_allclose(d2[differ, cells[differ]], d2[differ, brute[differ]], rtol=1e-12)
    assert differ.mean() < 1e-3
    rows, cols = a.bmu_coords(X[:5])
    np.testing.assert_array_equal(rows * 7 + cols, cells[:5])
    # chunked search gives the same answer
    a.chunk_size = 7
    np.testing.assert_array_equal(a.transform(X), cells)


def test_som_topology_and_quality():
    rng = np.random.default_rng(11)
    X = rng.uniform(0, 1, size=(5000, 2))
    som = M.SelfOrganizingMap(n_rows=8, n_cols=8, n_iter=20, random_state=0).fit(X)
    W = som.weights_
    neighbour = np.mean(np.linalg.norm(W[1:, :, :] - W[:-1, :, :], axis=-1))
    flat = W.reshape(-1, 2)
    random_pair = np.mean(np.linalg.norm(flat[:, None] - flat[None], axis=-1))
    assert neighbour < random_pair / 3  # adjacent cells are close: the map is ordered
    assert som.quantization_error_ < 0.1  # 64 cells on a unit square: spacing ≈ 0.125
    assert np.bincount(som.transform(X), minlength=64).min() > 0
    with pytest.raises(ValueError, match="not fitted"):
        M.SelfOrganizingMap().transform(X)
    with pytest.raises(ValueError, match="features"):
        som.transform(rng.normal(size=(3, 3)))
    with pytest.raises(ValueError, match="learning_rate"):
        M.SelfOrganizingMap(learning_rate=2.0).fit(X)


# =========================================================================== LTS line fit
def toy_cell(b, n=5000, seed=0, c=0.12, sz=0.03, noise=0.008):
    rng = np.random.default_rng(seed)
    zs = rng.normal(c, sz, n)
    zp = c + b * (zs - c) + rng.normal(0, noise, n)
    return zs, zp, rng


@pytest.mark.parametrize("b", [0.55, 0.87, 1.0])
def test_lts_recovers_slope_angle(b):
    """θ = arctan b. Tolerances: statistical se(b) = 0.008/(0.03·√5000) ≈ 0.004 (≈ 0.15°); with the paper's
    σx = 0.005 the effective-variance (Deming) fit is steeper than OLS by up to σx²/Var(z_spec) ≈ 2.8 %
    (≤ 0.8° at these slopes), hence 1.2°; with σx → 0 the fit is OLS-like and must be within 0.5°."""
    zs, zp, _ = toy_cell(b, seed=int(b * 100))
    nm = M.sigma_nmad(zs, zp)
    theta = np.degrees(np.arctan(b))
    paper = M.lts_line(zs, zp, 0.005, nm, random_state=0, n_starts=200)
    assert abs(np.degrees(np.arctan(paper["b"])) - theta) < 1.2
    assert paper["b"] >= np.polyfit(zs, zp, 1)[0] - 1e-3  # Deming is never flatter than OLS here
    ols_like = M.lts_line(zs, zp, 1e-9, nm, random_state=0, n_starts=200)
    assert abs(np.degrees(np.arctan(ols_like["b"])) - theta) < 0.5
    assert ols_like["n_kept"] > 0.97 * zs.size  # clipping at 2.6σ keeps ~99 % of Gaussian data
    assert ols_like["a"] + ols_like["b"] * 0.12 == pytest.approx(0.12, abs=1e-3)


def test_lts_robust_to_outliers():
    zs, zp, rng = toy_cell(0.55, seed=12)
    clean = M.lts_line(zs, zp, 0.005, M.sigma_nmad(zs, zp), random_state=1, n_starts=200)["b"]
    for frac_out, tol in ((0.2, 0.02), (0.4, 0.04)):
        zpo = zp.copy()
        k = rng.choice(zs.size, int(frac_out * zs.size), replace=False)
        zpo[k] = rng.uniform(0.0, 0.4, k.size)  # gross outliers over the full SDSS range
        fit = M.lts_line(zs, zpo, 0.005, M.sigma_nmad(zs, zpo), random_state=1, n_starts=200)
        ols = np.polyfit(zs, zpo, 1)[0]
        assert abs(fit["b"] - clean) < tol
        assert abs(ols - clean) > 0.05  # the contamination really matters to a non-robust fit
        # most of the injected outliers are rejected
        assert np.mean(fit["mask"][k]) < 0.25


def test_lts_objective_is_effective_variance_deming():
    """With frac = 1 and no clipping the fit is the exact minimiser of Σ r², r = (a + b x − y)/√(b²σx² + σy²)."""
    zs, zp, rng = toy_cell(0.7, n=800, seed=13)
    for sx, sy in ((0.01, 0.008), (0.005, rng.uniform(0.004, 0.012, zs.size))):
        fit = M.lts_line(zs, zp, sx, sy, frac=1.0, clip=1e6, fit_epsilon=False, random_state=0, n_starts=20)

        def chi2(p):
            return np.sum((p[0] + p[1] * zs - zp) ** 2 / (p[1] ** 2 * sx**2 + sy**2))

        ref = optimize.minimize(chi2, [0.0, 0.5], method="Nelder-Mead",
                                options=dict(xatol=1e-10, fatol=1e-12, maxiter=20000))
        assert fit["b"] == pytest.approx(ref.x[1], abs=1e-5)
        assert fit["a"] == pytest.approx(ref.x[0], abs=1e-5)
        assert fit["n_kept"] == zs.size


def test_lts_intrinsic_scatter_and_determinism():
    zs, zp, _ = toy_cell(0.8, n=3000, seed=14, noise=0.01)
    fit = M.lts_line(zs, zp, 0.0, 0.004, random_state=5, n_starts=100)
    # χ²/dof = 1 on the kept (2.6σ-clipped) points: ε ≈ √(0.01² − 0.004²), a few % low from the clipping
    assert fit["epsilon"] == pytest.approx(np.sqrt(0.01**2 - 0.004**2), rel=0.06)
    again = M.lts_line(zs, zp, 0.0, 0.004, random_state=5, n_starts=100)
    assert again["b"] == fit["b"] and np.array_equal(again["mask"], fit["mask"])
    assert M.lts_line(zs, zp, 0.0, 0.02, random_state=5)["epsilon"] == 0.0  # errors already too large
    with pytest.raises(ValueError, match="sigma_y"):
        M.lts_line(zs, zp, 0.0, 0.0)
    with pytest.raises(ValueError, match="constant"):
        M.lts_line(np.ones(10), np.arange(10.0), 0.0, 1.0)
    with pytest.raises(ValueError, match="at least 3"):
        M.lts_line([0.0, 1.0], [0.0, 1.0], 0.0, 1.0)
    with pytest.raises(ValueError, match="frac"):
        M.lts_line(zs, zp, 0.0, 0.01, frac=0.3)


# =========================================================================== SOM-cell diagnostics
def test_som_cell_diagnostics_known_cells():
    parts = []
    for k, (b, n) in enumerate(((0.55, 4000), (0.87, 4000), (1.0, 10))):
        zs, zp, _ = toy_cell(b, n=n, seed=20 + k)
        parts.append((zs, zp, np.full(n, k)))
    zs = np.concatenate([p[0] for p in parts])
    zp = np.concatenate([p[1] for p in parts])
    cells = np.concatenate([p[2] for p in parts])
    bt = cells * 0.3
    diag = M.som_cell_diagnostics(None, zs, zp, cells=cells, min_count=30, properties={"bt": bt}, random_state=0,
                                  n_starts=100)
    np.testing.assert_array_equal(diag["n"], [4000, 4000, 10])
    for k, b in ((0, 0.55), (1, 0.87)):
        sel = cells == k
        assert diag["theta_deg"][k] == pytest.approx(np.degrees(np.arctan(b)), abs=1.2)
        assert diag["sigma_nmad"][k] == pytest.approx(M.sigma_nmad(zs[sel], zp[sel]))
        assert diag["bias"][k] == pytest.approx(M.bias_mean(zs[sel], zp[sel]))
        assert diag["outlier_rate"][k] == pytest.approx(M.outlier_rate(zs[sel], zp[sel], threshold=0.05))
        assert diag["mean_z_spec"][k] == pytest.approx(zs[sel].mean())
        assert diag["mean_bt"][k] == pytest.approx(0.3 * k)
        # the flatter cell has the larger attenuation share
    assert diag["atten_ratio"][0] > diag["atten_ratio"][1]
    # the under-populated cell keeps its N but has NaN statistics
    assert diag["n"][2] == 10 and np.isnan(diag["theta_deg"][2]) and np.isnan(diag["sigma_nmad"][2])
    s = diag["summary"]
    assert s["n_cells_used"] == 2
    wide = M.som_cell_diagnostics(None, zs, zp, cells=cells, grid_shape=(2, 3), random_state=0, n_starts=20)
    assert wide["n"].tolist() == [4000, 4000, 10, 0, 0, 0] and wide["row"].tolist() == [0, 0, 0, 1, 1, 1]
    with pytest.raises(ValueError, match="beyond the 2 cells"):
        M.som_cell_diagnostics(None, zs, zp, cells=cells, grid_shape=(1, 2))
    assert s["mean_theta_deg"] == pytest.approx(np.mean(diag["theta_deg"][:2]))


def test_scatter_decomposition_quadrature():
    """σ_NMAD² ≈ σ_atten² + σ_scatter² for Gaussian toys (spec: < 1 %). n = 40 000 keeps the NMAD sampling noise
    of the ratio at ≈ 1 %, so 3 % is the test tolerance. σx → 0 is the OLS-like fit for which the decomposition
    is orthogonal (with the paper's σx = 0.005 the steeper Deming slope adds a few % cross term)."""
    for k, b in enumerate((0.55, 0.87)):
        zs, zp, _ = toy_cell(b, n=40_000, seed=30 + k)
        diag = M.som_cell_diagnostics(None, zs, zp, cells=np.zeros(zs.size, dtype=int), sigma_x=1e-9,
                                      random_state=0, n_starts=50)
        total = diag["sigma_nmad"][0] ** 2
        parts = diag["sigma_atten"][0] ** 2 + diag["sigma_scatter"][0] ** 2
        assert parts == pytest.approx(total, rel=0.03)
        # and the components are what the toy says: atten ≈ (1 − b)·σ_z/(1+z̄), scatter ≈ 0.008/(1+z̄)
        assert diag["sigma_atten"][0] == pytest.approx((1 - b) * 0.03 / 1.12, rel=0.05)
        assert diag["sigma_scatter"][0] == pytest.approx(0.008 / 1.12, rel=0.05)


def test_som_cell_diagnostics_with_som():
    rng = np.random.default_rng(40)
    n = 3000
    zs = rng.uniform(0.02, 0.4, n)
    colors = np.column_stack([2 * zs, zs**2, -zs, 0.5 * zs]) + rng.normal(0, 0.02, (n, 4))
    zp = zs + rng.normal(0, 0.01, n)
    som = M.SelfOrganizingMap(n_rows=3, n_cols=4, n_iter=10, random_state=0)
    diag = M.som_cell_diagnostics(colors, zs, zp, som=som, min_count=30, random_state=0, n_starts=50)
    assert diag["som"] is som and hasattr(som, "weights_")
    assert len(diag["n"]) == 12 and diag["n"].sum() == n
    np.testing.assert_array_equal(diag["object_cell"], som.transform(colors))
    np.testing.assert_array_equal(diag["row"] * 4 + diag["col"], diag["cell"])
    used = diag["n"] >= 30
    assert np.all(np.isfinite(diag["theta_deg"][used])) and np.all(np.isnan(diag["theta_deg"][~used]))
    with pytest.raises(ValueError, match="colors must have one row per object"):
        M.som_cell_diagnostics(colors[:-1], zs, zp, som=som)


# =========================================================================== report scoring (pzkit.metrics.report)
def _features(n, seed, shift=0.0):
    """Colours (4) + a reference magnitude, with a redshift that the colours carry."""
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.1, 2.0, n)
    colors = np.column_stack([np.sin(z), np.cos(z), 0.3 * z, z**2 / 4]) + rng.normal(0, 0.05, (n, 4)) + shift
    mag = rng.uniform(20.0, 25.0, n)
    return np.column_stack([colors, mag]), z


def test_make_context_som_on_train_and_test_colours():
    from pzkit.metrics.report import make_context

    test, z = _features(400, 1)
    train, _ = _features(1600, 2, shift=0.4)  # a training set that covers other colours
    alone = make_context(test, z, som_shape=(4, 5), som_iter=10)
    both = make_context(test, z, som_shape=(4, 5), som_iter=10, train_features=train)
    assert alone.som_train_rows == 400 and both.som_train_rows == 2000
    # cells only for the test rows, and those of a map trained on the stacked colours
    assert both.cells.shape == (400,) and both.colors.shape == (400, 4)
    som = M.SelfOrganizingMap(n_rows=4, n_cols=5, n_iter=10, random_state=0)
    som.fit(np.vstack([train[:, :4], test[:, :4]]))
    np.testing.assert_array_equal(both.cells, som.transform(test[:, :4]))
    assert not np.array_equal(both.cells, alone.cells)
    with pytest.raises(ValueError, match="train_features"):
        make_context(test, z, som_shape=(4, 5), som_iter=2, train_features=train[:, :3])


def _scored(n=300, seed=3, **context):
    """score_ensemble on n Gaussian PDFs of a toy catalogue (small enough for every SOM cell to be < 30)."""
    from pzkit.metrics.report import make_context, score_ensemble

    feats, z = _features(n, seed)
    rng = np.random.default_rng(seed)
    grid = np.linspace(0.0, 3.0, 151)
    mu = z + rng.normal(0, 0.05, n) * (1 + z)
    ens = qp.interp.create_ensemble(grid, stats.norm.pdf(grid[None, :], mu[:, None], 0.05 * (1 + z[:, None])))
    ctx = make_context(feats, z, som_iter=5, **context)
    ctx.n_boot = 10
    return score_ensemble(ens, mu, grid, ctx)


def test_undefined_metrics_carry_their_reason():
    metrics, _ = _scored(tomo_edges=(0.0, 1.0, 2.0, 2.8, 3.0))
    som = metrics["som"]
    # 300 objects on 120 cells: no cell reaches 30, so θ and the split are undefined, and the JSON says why
    assert som["n_cells_used"] == 0 and som["mean_theta_deg"] is None and som["median_atten_ratio"] is None
    why = som["undefined"]["mean_theta_deg"]
    assert why.startswith("fewer than 30 objects in every SOM cell (largest cell: ") and why.endswith(")")
    assert int(why.rsplit(" ", 1)[1][:-1]) < 30
    # z_phot < 2.8 everywhere: the top tomographic bin is empty, and says so
    top = metrics["nz"][-1]
    assert top["n"] == 0 and top["wasserstein"] is None
    assert top["undefined"]["wasserstein"] == "no objects with z_phot in [2.8, 3]"
    # everything defined carries no "undefined" entry, and the whole dict is strict JSON
    assert "undefined" not in metrics["point"] and "undefined" not in metrics["nz"][0]
    import json

    json.dumps(metrics, allow_nan=False)


def test_residual_slopes_undefined_with_too_few_bins():
    zs = np.linspace(0.2, 0.4, 200)  # nothing below z_b = 0.15
    r = M.residual_vs_z(zs, zs * 1.01, bins=[0.0, 0.1, 0.2, 0.3, 0.4], break_point=0.15)
    assert np.isnan(r["slope_low"]) and np.isfinite(r["slope_high"])
    assert r["undefined"]["slope_low"] == ("fewer than 2 bins below z_b = 0.15 with at least 2 objects and a "
                                           "positive error (found 0)")
    assert r["undefined"]["slope_high_err"] == "only 2 bins above z_b = 0.15: the line fits them exactly"
    assert "slope_high" not in r["undefined"]


# =========================================================================== n(z) per magnitude bin, W1
def test_wasserstein_nz_hand_and_scipy():
    # two delta-like n(z) 0.1 apart: all the mass moves 0.1
    assert M.wasserstein_nz(np.full(10, 0.5), [0.6], [1.0]) == pytest.approx(0.1)
    # half the mass at the truth, half 0.2 away: 0.1; the weights' normalisation does not matter
    assert M.wasserstein_nz([0.5, 0.5], [0.5, 0.7], [3.0, 3.0]) == pytest.approx(0.1)
    rng = np.random.default_rng(5)
    centres, w, zt = np.linspace(0.05, 2.95, 30), rng.uniform(0, 1, 30), rng.uniform(0, 3, 500)
    assert M.wasserstein_nz(zt, centres, w) == pytest.approx(stats.wasserstein_distance(centres, zt, u_weights=w))
    with pytest.raises(ValueError, match="weights"):
        M.wasserstein_nz(zt, centres, -w)


def test_nz_by_magnitude_hand():
    grid = np.round(np.arange(0.0, 1.0001, 0.05), 10)
    tri = lambda c: np.clip(1 - np.abs(grid - c) / 0.05, 0, None) / 0.05  # noqa: E731 - unit triangle at c
    # bright objects: n(z) a triangle at 0.6, truths at 0.5 -> W1 = 0.1; faint: triangle at 0.7 -> W1 = 0.2
    mag = np.array([20.0, 20.5, 23.0, 23.5])
    ens = qp.interp.create_ensemble(grid, np.vstack([tri(0.6), tri(0.6), tri(0.7), tri(0.7)]))
    bins = M.nz_by_magnitude(ens, np.full(4, 0.5), mag, grid, [19.0, 22.0, 24.0, 25.0])
    assert [b["n"] for b in bins] == [2, 2, 0]
    assert bins[0]["wasserstein"] == pytest.approx(0.1) and bins[1]["wasserstein"] == pytest.approx(0.2)
    assert bins[0]["mag_lo"] == 19.0 and bins[0]["mag_median"] == pytest.approx(20.25)
    assert bins[1]["delta_mean_z"] == pytest.approx(0.2 / 1.5)
    assert np.isnan(bins[2]["wasserstein"])
    assert bins[2]["undefined"]["wasserstein"] == "no objects with magnitude in [24, 25]"


def test_score_ensemble_nz_by_magnitude():
    metrics, arrays = _scored(n=600)
    nzm = metrics["nz_by_magnitude"]
    assert len(nzm) == 6 and sum(b["n"] for b in nzm) == 600
    assert all(b["wasserstein"] > 0 for b in nzm)
    assert [b["wasserstein"] for b in nzm] == pytest.approx([b["wasserstein"] for b in arrays["nz_by_magnitude"]])


def test_pit_qq_hand_and_in_the_arrays(gauss):
    q, qp_ = M.pit_qq([0.0, 0.5, 1.0], n_quantiles=5)
    np.testing.assert_allclose(q, [0, 0.25, 0.5, 0.75, 1])
    np.testing.assert_allclose(qp_, [0, 0.25, 0.5, 0.75, 1])
    # over-confident PDFs: PIT piled at the ends -> the QQ curve crosses the diagonal steeply at the middle
    ens, zt, mu, sig, grid = gauss
    narrow = qp.interp.create_ensemble(grid, stats.norm.pdf(grid[None, :], mu[:, None], 0.3 * sig[:, None]))
    q, qn = M.pit_qq(M.pit_values(narrow, zt))
    assert qn[25] < 0.2 and qn[75] > 0.8
    _, arrays = _scored(n=300)
    assert arrays["pit_qq"]["uniform"].shape == arrays["pit_qq"]["pit"].shape == (101,)
    np.testing.assert_allclose(arrays["pit_qq"]["pit"], np.quantile(arrays["pit"], np.linspace(0, 1, 101)))
    with pytest.raises(ValueError, match="n_quantiles"):
        M.pit_qq([0.5], n_quantiles=1)
