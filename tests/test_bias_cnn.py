"""bias_cnn plugin (Lin et al.): network-free pieces (grid, interlacing, balancing, Eqs. 4–8), test T2
(prior-induced residuals with an oracle classifier) and T3 (Steps 1–3 end to end on frozen features), the
backbones, and the plugin's side inputs and bad-input errors. The conformance suite runs in test_conformance.py.
"""

import numpy as np
import pytest
import torch

from pzkit.exceptions import InputError, NotFittedError
from pzkit.metrics import mode_collapse_distance, residual_vs_z, sigma_nmad
from pzkit.nn.images import dihedral
from pzkit_bias_cnn import BiasCNN, preprocess_eq1
from pzkit_bias_cnn._nets import NetP, NetS, _Net, make_backbone
from pzkit_bias_cnn._steps import (
    AUG_PROBS,
    LabelModel,
    balance,
    error_curve,
    fit_sigma1,
    mag_labels,
    mag_rows,
    row_outputs,
    shift_centres,
    z_bins,
)


# ---------------------------------------------------------------------------------------------- grid
def test_interlacing_map_sdss():
    outs = row_outputs(np.arange(11))
    got = [sorted(o[o >= 0].tolist()) for o in outs]
    assert got == [[0], [0, 1], [1], [1, 2], [2], [2, 3], [3], [3, 4], [4], [4, 5], [5]]


def test_magnitude_labels_are_one_or_two_hot():
    lab = mag_labels(np.arange(11), 6)
    assert np.allclose(lab.sum(axis=1), 1.0)
    assert lab[0].tolist() == [1, 0, 0, 0, 0, 0]
    assert lab[1].tolist() == [0.5, 0.5, 0, 0, 0, 0]
    assert lab[10].tolist() == [0, 0, 0, 0, 0, 1]


def test_bins_and_rows_clip_to_the_edges():
    assert z_bins([-0.1, 0.0, 0.0023, 0.4, 0.5], 0.0, 0.4 / 180, 180).tolist() == [0, 0, 1, 179, 179]
    rows = mag_rows([10.0, 12.5, 12.99, 13.0, 17.9, 18.0, 25.0, np.nan], 12.5, 0.5, 11, fill=17.6)
    assert rows.tolist() == [0, 0, 0, 1, 10, 10, 10, 10]   # outside the grid -> edge rows; NaN -> fill (17.6)


def test_eq1_stretch():
    out = preprocess_eq1(np.array([-3.0, 0.0, 3.0, 8.0]))
    assert np.allclose(out, [-1.0, 0.0, 1.0, 2.0])
    assert np.allclose(preprocess_eq1(np.array([3000.0]), 1e-3), [1.0])


def test_augmentation_probabilities_match_rotation_then_flip():
    """rot90 k (¼ each) then flip axis 0, axis 1 or none (⅓ each), expressed on pzkit's dihedral(x, k)."""
    x = torch.arange(16.0).reshape(1, 1, 4, 4)
    probs = np.zeros(8)
    for k in range(4):
        r = torch.rot90(x, k, dims=(-2, -1))
        for img in (r, torch.flip(r, dims=(-2,)), torch.flip(r, dims=(-1,))):
            j = [i for i in range(8) if torch.equal(dihedral(x, i), img)]
            assert len(j) == 1
            probs[j[0]] += 1 / 12
    assert np.allclose(probs, AUG_PROBS)


def test_balance_caps_cells_and_members_differ():
    rng = np.random.default_rng(0)
    zbin = np.r_[np.zeros(500, int), np.ones(7, int), np.full(30, 2)]
    rows = np.zeros(zbin.size, int)
    a = balance(zbin, rows, 10, np.random.default_rng(1), member=0)
    b = balance(zbin, rows, 10, np.random.default_rng(1), member=1)
    assert np.bincount(zbin[a]).tolist() == [10, 7, 10]
    assert np.array_equal(np.flatnonzero(zbin == 1), np.intersect1d(a, np.flatnonzero(zbin == 1)))
    assert not set(a[zbin[a] == 0]) & set(b[zbin[b] == 0])      # 500 ≥ 2·10: disjoint slices
    assert rng is not None


# ---------------------------------------------------------------------------------------------- Eqs. 4–8
def test_sigma1_recovers_the_smoothing_of_a_spiky_histogram():
    rng = np.random.default_rng(0)
    n = 120
    centre = rng.normal(60, 15, 200_000)
    zp = np.clip(np.round(centre / 6) * 6, 0, n - 1).astype(int)           # spiky pre-estimates
    zs = np.clip(np.round(zp + rng.normal(0, 3.0, zp.size)), 0, n - 1).astype(int)   # spikes ∗ N(0, 3 bins)
    assert fit_sigma1(zs, zp, n) == pytest.approx(3.0, rel=0.15)
    assert fit_sigma1(zp, zp, n) < 0.1                                       # nothing to smooth


def test_error_curve_is_half_mean_plus_median_and_smooths():
    zs_bin = np.array([2, 2, 2, 5])
    err2 = np.array([1.0, 1.0, 4.0, 9.0])
    flat = error_curve(zs_bin, err2, 8, sigma1=0.0)
    # bin 2: ½(2 + 1) = 1.5; bins 3-4 empty inside the span: previous value; bin 5: 9; outside: 0
    assert flat.tolist() == [0, 0, 1.5, 1.5, 1.5, 9.0, 0, 0]
    sm = error_curve(zs_bin, err2, 8, sigma1=1.0)
    assert sm[0] == 0 and sm[7] == 0 and 1.5 < sm[3] < sm[4] < 9.0


def test_shift_sign_at_the_edges_and_none_mid_range():
    n = 100
    flat = np.ones(n)
    out = shift_centres(np.array([99.0, 0.0, 50.0]), np.array([25.0, 25.0, 25.0]), flat)
    assert out[0] > 99.0 + 1          # top bin: z̄ < z0, so z* = 2z0 − z̄ > z0
    assert out[1] < 0.0 - 1           # bottom bin: z* < z0
    assert out[2] == pytest.approx(50.0, abs=1e-6)
    assert shift_centres(np.array([99.0]), np.array([0.001]), flat)[0] == 99.0   # σ < 0.1 bin: no shift
    lm = LabelModel(sigma1=[2.0], sigma2sq=np.zeros((1, n)), hist_out=[flat], hist_row=[flat], n=n, m=1)
    cen, sig = lm.centres(np.array([99, 50]), np.array([0, 0]), shift=False)
    assert cen[:, 0].tolist() == [99.0, 50.0] and np.isnan(cen[:, 1]).all() and sig[0, 0] == 2.0


def test_mixture_density_sums_to_one():
    torch.manual_seed(0)
    net = _Net(make_backbone("flat", 4, 1, n_side=0), 3, {"step1": 20, "step3": 40})
    rep = torch.randn(5, 4)
    for name in ("step1", "step3"):
        p = net.density(rep, name)
        assert torch.allclose(p.sum(dim=1), torch.ones(5))


# ---------------------------------------------------------------------------------------------- backbones
@pytest.mark.parametrize("name", ["S1", "S2", "S3"])
def test_small_backbones(name):
    net = make_backbone(name, 5, 32)
    assert isinstance(net, NetS) and net.n_repr == 256
    out = net.representation(torch.randn(3, 5, 32, 32), torch.zeros(3, 1))
    assert out.shape == (3, 256)
    assert net.representation(torch.randn(2, 5, 16, 16)).shape == (2, 256)   # side input absent -> zeros


def test_net_p_forward_shape():
    net = NetP(5, image_size=64, n_side=1)
    assert net.n_flat == 8 * 8 * 348 and net.n_repr == 1024
    with torch.no_grad():
        out = net.representation(torch.randn(2, 5, 64, 64), torch.zeros(2, 1))
    assert out.shape == (2, 1024)


# ---------------------------------------------------------------------------------------------- T2
def _draw(n, theta, rng):
    z = rng.gamma(3.0, theta, 3 * n)
    z = z[z < 0.4][:n]
    return z, 13.0 + 12.0 * z + rng.normal(0.0, 0.7, z.size)


def test_t2_prior_induced_residuals_and_balancing():
    """Oracle classifier p(z|x) ∝ N(x; z, σ(r)) · n_train(z | row), z_mode: the imbalanced prior gives a
    negative slope of ⟨Δz⟩ vs z_spec on an interior interval; the balanced prior (th ≪ peak count) removes it."""
    rng = np.random.default_rng(1)
    n_bins, w = 80, 0.4 / 80
    zs, r = _draw(100_000, 0.03, rng)
    zb, rows = z_bins(zs, 0.0, w, n_bins), mag_rows(r, 12.5, 0.5, 11)
    zt, rt = _draw(150_000, 0.03, rng)
    sig = 0.01 + 0.004 * (rt - 13.0)
    x = zt + rng.normal(0.0, 1.0, zt.size) * sig
    rowt = mag_rows(rt, 12.5, 0.5, 11)
    cent = (np.arange(n_bins) + 0.5) * w

    def oracle(idx):
        H = np.zeros((11, n_bins))
        np.add.at(H, (rows[idx], zb[idx]), 1)
        H /= np.maximum(H.sum(1, keepdims=True), 1)
        logl = -0.5 * ((x[:, None] - cent[None, :]) / sig[:, None]) ** 2
        return cent[np.argmax(np.exp(logl - logl.max(1, keepdims=True)) * H[rowt], axis=1)]

    def slope(idx):
        res = residual_vs_z(zt, oracle(idx), bins=20, z_range=(0.12, 0.32), break_point=0.0)
        return res["slope_high"], res["slope_high_err"]

    peak = np.bincount(zb * 11 + rows).max()
    c_imb, err = slope(np.arange(zs.size))
    c_bal, _ = slope(balance(zb, rows, 5, np.random.default_rng(0)))
    assert peak > 100 * 5
    assert c_imb < -3 * err
    assert abs(c_bal) <= abs(c_imb) / 3


# ---------------------------------------------------------------------------------------------- T3
def _features(z, r, rng):
    sig = 0.01 + 0.004 * (r - 13.0)
    x = z + rng.normal(0.0, 1.0, z.size) * sig
    c = np.linspace(-0.05, 0.45, 32)
    F = np.exp(-0.5 * ((x[:, None] - c[None, :]) / 0.02) ** 2)
    return np.c_[F, (r - 15.0) / 2.0][:, :, None, None].astype(np.float32)


def test_t3_steps_1_to_3_on_frozen_features():
    """Steps 1–3 on a fixed random-feature representation against the single-head Baseline (3 seeds, means):
    high-z slope |C| ≤ 0.5 × Baseline, TV below the Baseline's, σ_MAD ≤ 1.3 × Baseline."""
    res = {"base": [], "step3": []}
    for seed in range(3):
        rng = np.random.default_rng(seed)
        z, r = _draw(45_000, 0.03, rng)
        X = _features(z, r, rng)
        zt, rt = _draw(150_000, 0.03, rng)           # a large test set: the tail slope is then well measured
        Xt = _features(zt, rt, rng)
        common = dict(zmin=0.0, zmax=0.4, nzbins=51, backbone="flat", preprocess=None, n_mag_outputs=6,
                      mag_min=12.5, th=60, max_epochs=6, steps_per_epoch=250, lr=1e-2, lr_late=3e-3, lr_drop_epoch=3,
                      batch_size=256, finetune_epochs=6, lr_finetune=5e-3, batch_size_finetune=256,
                      random_state=seed, n_threads=1)
        base = BiasCNN(stage="baseline", **common).fit(X, z, mag=r)
        est = BiasCNN(stage="step3", **common).fit(X, z, mag=r)
        for name, zp in (("base", base.predict(Xt, mag=rt)), ("step3", est.predict(Xt, mag=rt))):
            res[name].append((residual_vs_z(zt, zp, bins=40, z_range=(0, 0.4), break_point=0.15)["slope_high"],
                              mode_collapse_distance(zt, zp, bins=50, z_range=(0, 0.4)),
                              sigma_nmad(zt, zp)))
    b, s = np.mean(res["base"], axis=0), np.mean(res["step3"], axis=0)
    assert b[1] > 0.08, "the Baseline shows no mode collapse: the TV assertion would be vacuous"
    assert abs(s[0]) <= 0.5 * abs(b[0]), (b, s)
    assert s[1] < b[1], (b, s)
    assert s[2] <= 1.3 * b[2], (b, s)
    print("T3 means (slope C, TV, sigma_MAD): baseline", b, "step3", s)


# ---------------------------------------------------------------------------------------------- the plugin
@pytest.fixture(scope="module")
def fitted():
    est = BiasCNN._conformance_instance().set_params(max_epochs=4, finetune_epochs=1, random_state=0,
                                                     extra_stages=("step3a", "step3b", "step3_skip2"))
    d = est._conformance_data(0)
    ebv = np.full(len(d.y_train), 0.03)
    est.fit(d.X_train, d.y_train, mag=d.fit_params["mag"], ebv=ebv)
    return est, d


def test_stages_variants_and_extended_grid(fitted):
    est, d = fitted
    mag = d.predict_params["mag"]
    ebv = np.full(len(d.y_test), 0.03)
    assert set(est.head_bins_) == {"step1", "step2", "step3", "step3a", "step3b", "step3_skip2"}
    w = est.width_
    assert est.zgrid_[0] == pytest.approx(est.zmin - est.ext_low_ * w)         # extended below zmin
    assert est.zgrid_[-1] == pytest.approx(est.zmax + est.ext_high_ * w)
    ens = est.estimate_pdf(d.X_test, mag=mag, ebv=ebv)
    assert ens.npdf == len(d.y_test)
    for stage in est.head_bins_:
        edges, p = est.stage_probabilities(d.X_test, stage, mag=mag, ebv=ebv)
        assert np.allclose(p.sum(axis=1), 1.0, atol=1e-6)
        assert len(edges) == est.head_bins_[stage] + 1
        zp = est.predict_stage(d.X_test, stage, mag=mag, ebv=ebv)
        assert np.all((zp > edges[0]) & (zp < edges[-1]))
    with pytest.raises(InputError, match="stage"):
        est.predict_stage(d.X_test, "step9", mag=mag, ebv=ebv)


def test_bad_input(fitted):
    est, d = fitted
    X, mag = d.X_test, d.predict_params["mag"]
    ebv = np.full(len(mag), 0.03)
    with pytest.raises(InputError, match="4-D"):
        est.predict(X[:, 0], mag=mag, ebv=ebv)
    with pytest.raises(InputError, match="band"):
        est.predict(X[:, :2], mag=mag, ebv=ebv)
    with pytest.raises(InputError, match="mag must have shape"):
        est.predict(X, mag=mag[:-1], ebv=ebv)
    with pytest.raises(InputError, match="mag .*required"):
        est.predict(X, ebv=ebv)
    Xn = X.copy()
    Xn[3, 0, 2, 2] = np.nan
    with pytest.raises(InputError, match="NaN"):
        est.predict(Xn, mag=mag, ebv=ebv)
    with pytest.raises(InputError, match="ebv is required"):
        est.predict(X, mag=mag)
    with pytest.raises(InputError, match="ebv must have shape"):
        est.predict(X, mag=mag, ebv=ebv[:3])
    with pytest.raises(NotFittedError):
        BiasCNN().predict(X, mag=mag)
    with pytest.raises(InputError, match="stage"):
        BiasCNN(stage="step5", zmax=2.5).fit(d.X_train, d.y_train, mag=d.fit_params["mag"])
    with pytest.raises(InputError, match="backbone"):
        BiasCNN(backbone="resnet", zmax=2.5).fit(d.X_train, d.y_train, mag=d.fit_params["mag"])


def test_magnitudes_outside_the_grid_go_to_edge_rows(fitted):
    est, d = fitted
    X, mag = d.X_test[:4], d.predict_params["mag"][:4]
    ebv = np.full(4, 0.03)
    lo, hi = est.mag_min, est.mag_min + (2 * est.n_mag_outputs - 1) * est.mag_step
    a = est.predict(X, mag=np.full(4, lo - 5.0), ebv=ebv)
    b = est.predict(X, mag=np.full(4, lo), ebv=ebv)
    c = est.predict(X, mag=np.full(4, hi + 5.0), ebv=ebv)
    e = est.predict(X, mag=np.full(4, hi - 1e-6), ebv=ebv)
    nan = est.predict(X, mag=np.full(4, np.nan), ebv=ebv)
    assert np.array_equal(a, b) and np.array_equal(c, e) and np.array_equal(nan, c)
    assert np.isfinite(mag).all()


def test_interrupted_fit_resumes_from_checkpoint_bit_identically(interrupted_then_resumed):
    """Killed inside Step 2 of the Step 1→3 chain, then rerun: the finished loop is restored, the interrupted one
    continues, and the weights equal those of an uninterrupted fit."""
    from pzkit_bias_cnn import BiasCNN

    est = BiasCNN._conformance_instance().set_params(random_state=2, max_epochs=10, steps_per_epoch=20,
                                                     lr_drop_epoch=7, finetune_epochs=3)
    interrupted_then_resumed(est, est._conformance_data(0), kill_at=12)
