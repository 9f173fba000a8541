"""ZPhotCalibrator (Step 4 of the bias-CNN paper, model-agnostic) and the tomographic Δ⟨z⟩ metric.

Test T1: an estimator unbiased versus z_spec shows regression dilution versus z_photo;
the calibrator, fitted on a training set with a different n(z), removes it.
"""

import numpy as np
import pytest

from pzkit.calibration import ZPhotCalibrator
from pzkit.exceptions import InputError, NotFittedError
from pzkit.metrics import residual_vs_z, tomographic_mean_bias


def test_tomographic_mean_bias_hand_computed():
    zs = np.array([0.10, 0.20, 0.30, 0.50])
    zp = np.array([0.12, 0.18, 0.36, 0.40])
    res = tomographic_mean_bias(zs, zp, bins=[0.0, 0.25, 0.5])
    # bin 1 (z_photo 0.12, 0.18): <zp> = 0.15, <zs> = 0.15 -> 0
    # bin 2 (z_photo 0.36, 0.40): <zp> = 0.38, <zs> = 0.40 -> -0.02 / 1.40
    assert res["n"].tolist() == [2, 2]
    assert res["delta"][0] == pytest.approx(0.0, abs=1e-12)
    assert res["delta"][1] == pytest.approx(-0.02 / 1.40)
    assert res["max_abs_delta"] == pytest.approx(0.02 / 1.40)
    assert res["n_within_0.002"] == 1
    eq = tomographic_mean_bias(zs, zp, bins=2)          # equipopulated: the median of zp splits 2 / 2
    assert eq["n"].tolist() == [2, 2]
    assert np.allclose(eq["delta"], res["delta"])
    ew = tomographic_mean_bias(zs, zp, bins=2, binning="equal_width", z_range=(0.0, 0.5))
    assert np.allclose(ew["delta"], res["delta"])
    with pytest.raises(InputError):
        tomographic_mean_bias(zs, zp, bins=2, binning="nope")


def _draw(n, theta, rng):
    z = rng.gamma(3.0, theta, 3 * n)
    z = z[z < 0.4][:n]
    r = 13.0 + 12.0 * z + rng.normal(0.0, 0.7, z.size)
    zp = z + rng.normal(0.0, 1.0, z.size) * (0.01 + 0.004 * (r - 13.0))
    return z, r, zp


def test_t1_step4_removes_zphoto_bias_under_nz_shift():
    rng = np.random.default_rng(0)
    zs, r, zp = _draw(100_000, 0.03, rng)          # training n(z)
    zt, rt, zpt = _draw(20_000, 0.045, rng)        # test n(z): peak shifted up
    zc = ZPhotCalibrator(random_state=0).fit(zp, r, zs).transform(zpt, rt)

    def slope(z):
        return residual_vs_z(zt, z, against="photo", bins=40, z_range=(0.0, 0.4), break_point=0.0)["slope_high"]

    before, after = slope(zpt), slope(zc)
    tb_before = tomographic_mean_bias(zt, zpt, 5)["max_abs_delta"]
    tb_after = tomographic_mean_bias(zt, zc, 5)["max_abs_delta"]
    assert before > 0.03                    # regression dilution: clearly positive slope vs z_photo
    assert abs(after) <= abs(before) / 3
    assert tb_before > 0.004                # clearly outside the Euclid requirement before
    assert tb_after < 0.002


def test_constant_offset_is_removed_and_resampling_is_reproducible():
    rng = np.random.default_rng(3)
    zs = rng.uniform(0.02, 0.38, 5000)
    mag = rng.uniform(14, 17.5, 5000)
    zp = zs + 0.01                                   # a pure offset
    cal = ZPhotCalibrator(random_state=1).fit(zp, mag, zs)
    zt = rng.uniform(0.05, 0.35, 1000)
    out = cal.transform(zt + 0.01, rng.uniform(14, 17.5, 1000))
    # a test cell whose resampled training objects all fall in a neighbouring z_photo cell stays uncorrected
    fixed = np.isclose(out, zt, atol=1e-9)
    assert fixed.mean() > 0.9
    assert np.all((out - zt > -1e-9) & (out - zt < 0.01 + 1e-9))
    assert abs(np.mean(out - zt)) < 1e-3
    idx1 = cal.resample(zt, np.full(1000, 15.0))
    idx2 = cal.resample(zt, np.full(1000, 15.0))
    assert np.array_equal(idx1, idx2) and idx1.size == 1000


def test_without_magnitudes_and_out_of_range_photo_z():
    rng = np.random.default_rng(4)
    zs = rng.uniform(0.0, 0.4, 3000)
    cal = ZPhotCalibrator(random_state=0).fit(zs - 0.005, None, zs)
    zt = np.r_[-0.05, rng.uniform(0.0, 0.4, 2000), 0.45]
    out = cal.transform(zt - 0.005)
    # outside [zmin, zmax]: clipped into the edge cells, so corrected too
    assert out[0] == pytest.approx(-0.05) and out[-1] == pytest.approx(0.45)
    assert np.mean(np.isclose(out, zt, atol=1e-9)) > 0.9
    with pytest.raises(InputError, match="without magnitudes"):
        cal.transform(np.array([0.1]), np.array([15.0]))


def test_bad_input():
    with pytest.raises(NotFittedError):
        ZPhotCalibrator().transform([0.1])
    with pytest.raises(InputError, match="entries"):
        ZPhotCalibrator().fit([0.1, 0.2], [15.0], [0.1, 0.2])
    with pytest.raises(InputError, match="non-finite"):
        ZPhotCalibrator().fit([0.1, np.nan], [15.0, 16.0], [0.1, 0.2])
    with pytest.raises(InputError, match="n_resamples"):
        ZPhotCalibrator(n_resamples=0).fit([0.1, 0.2], [15.0, 16.0], [0.1, 0.2])
    cal = ZPhotCalibrator().fit([0.1, 0.2], [15.0, 16.0], [0.1, 0.2])
    with pytest.raises(InputError, match="mag is required"):
        cal.transform([0.1])


def _draw_scattered(n, rng):
    z = rng.gamma(3.0, 0.03, 3 * n)
    z = z[z < 0.4][:n]
    r = 13.0 + 12.0 * z + rng.normal(0.0, 0.7, z.size)
    return z, r, z + rng.normal(0.0, 0.025, z.size)


def test_unfolding_removes_the_low_edge_bias_of_the_zphoto_proxy():
    # same n(z) for training and test, unbiased z_photo with σ = 0.025: the paper's proxy (test z_photo
    # histogram = expected z_spec histogram) over-fills the low-z edge of the resample, so the lowest
    # tomographic bin is over-corrected; unfolding the proxy through P(z_photo | z_spec) removes that
    rng = np.random.default_rng(0)
    zs, r, zp = _draw_scattered(100_000, rng)
    zt, rt, zpt = _draw_scattered(20_000, rng)
    paper = ZPhotCalibrator(random_state=0).fit(zp, r, zs).transform(zpt, rt)
    unfolded = ZPhotCalibrator(random_state=0, unfold_iterations=100).fit(zp, r, zs).transform(zpt, rt)
    assert tomographic_mean_bias(zt, paper, 5)["delta"][0] < -0.004
    assert tomographic_mean_bias(zt, unfolded, 5)["max_abs_delta"] < 0.002


def test_unfold_hand_computed():
    # two z_spec bins per row: bin 0 scatters 3/4 into z_photo bin 0 and 1/4 into bin 1, bin 1 stays put
    zs = np.r_[np.full(4, 0.1), np.full(4, 0.3)]
    zp = np.r_[0.1, 0.1, 0.1, 0.3, np.full(4, 0.3)]
    cal = ZPhotCalibrator(zmin=0.0, zmax=0.4, n_fine_bins=2, unfold_iterations=500).fit(zp, None, zs)
    # test: 30 objects of z_spec bin 0 and 10 of bin 1 give z_photo counts (22.5, 17.5)
    n_spec = cal._unfold(np.array([22.5, 17.5]), 0)
    assert n_spec == pytest.approx([30.0, 10.0], rel=1e-6)
    same = ZPhotCalibrator(zmin=0.0, zmax=0.4, n_fine_bins=2, unfold_iterations=500).fit(zs, None, zs)
    assert same._unfold(np.array([5.0, 7.0]), 0) == pytest.approx([5.0, 7.0])
    with pytest.raises(InputError, match="unfold_iterations"):
        ZPhotCalibrator(unfold_iterations=-1).fit(zp, None, zs)
