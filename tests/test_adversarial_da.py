"""adversarial_da: the adversarial machinery on an MLP (gradient routing, parameter groups), its helpers, the
estimator's options and its bad-input errors. The conformance suite runs in tests/test_conformance.py."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
ada = pytest.importorskip("pzkit_adversarial_da")

import pzkit  # noqa: E402
from pzkit.exceptions import InputError  # noqa: E402
from pzkit.testing import make_toy_images  # noqa: E402

N_BINS = 30


def _fluxes(n, rng, shift=0.0, noise=0.03):
    """Noisy 6-band fluxes whose colours encode z; ``shift`` is a zero-point offset (mag) in band 3."""
    z = rng.uniform(0.05, 2.5, n)
    k = np.arange(6)
    mags = 0.8 * np.sin(np.outer(z, k + 1) * 0.8 + k) + rng.uniform(-0.5, 0.5, n)[:, None]
    mags[:, 3] += shift
    flux = 10 ** (-0.4 * mags) + rng.normal(0, noise, (n, 6))
    return torch.tensor(flux, dtype=torch.float32), torch.tensor(np.minimum((z / 2.5 * N_BINS).astype(int), N_BINS - 1))


class _FluxNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.upstream = torch.nn.Sequential(torch.nn.Linear(6, 32), torch.nn.ReLU(), torch.nn.Linear(32, 16),
                                            torch.nn.ReLU())
        self.downstream = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, N_BINS))


def _setup(seed=0):
    torch.manual_seed(seed)
    net = _FluxNet()
    disc = torch.nn.Sequential(torch.nn.Linear(16, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))
    rng = np.random.default_rng(seed)
    xs, bins = _fluxes(64, rng)
    xt, _ = _fluxes(64, rng, shift=0.4, noise=0.06)
    return net, disc, xs, bins, xt


def _grads(loss, params):
    return torch.autograd.grad(loss, params, retain_graph=True, allow_unused=True)


def _expected(net, disc, xs, bins, xt):
    F = torch.nn.functional
    fs, ft = net.upstream(xs), net.upstream(xt)
    loss_z = F.cross_entropy(net.downstream(fs), bins)
    labels = torch.cat([torch.zeros(len(xs)), torch.ones(len(xt))]).long()
    logits = disc(torch.cat([fs, ft]))
    loss_d = F.cross_entropy(logits, labels)
    loss_c = F.cross_entropy(logits, 1 - labels)
    up, down, dp = (list(net.upstream.parameters()), list(net.downstream.parameters()), list(disc.parameters()))
    return loss_z, loss_d, loss_c, up, down, dp


def _close(a, b):
    return all(torch.allclose(x, y, atol=1e-6, rtol=1e-5) for x, y in zip(a, b))


def test_inverted_label_loss_routes_gradients():
    net, disc, xs, bins, xt = _setup()
    loss_z, loss_d, loss_c, up, down, dp = _expected(net, disc, xs, bins, xt)
    want_up = [a + b for a, b in zip(_grads(loss_z, up), _grads(loss_c, up))]
    want_down = _grads(loss_z, down)
    want_disc = _grads(loss_d, dp)
    # the confusion gradient must not reach the discriminator, and the downstream layers get only the z loss
    assert not _close(want_disc, [a + b for a, b in zip(want_disc, _grads(loss_c, dp))])
    opt = torch.optim.SGD([{"params": list(net.parameters())}, {"params": dp}], lr=0.0)
    out = ada.adversarial_step(net, disc, opt, xs, bins, xt)
    assert _close([p.grad for p in up], want_up)
    assert _close([p.grad for p in down], want_down)
    assert _close([p.grad for p in dp], want_disc)
    assert out["loss_z"] == pytest.approx(float(loss_z.detach()), rel=1e-6)
    assert out["loss_d"] == pytest.approx(float(loss_d.detach()), rel=1e-6)
    assert out["loss_c"] == pytest.approx(float(loss_c.detach()), rel=1e-6)


def test_gradient_reversal_option_routes_gradients():
    net, disc, xs, bins, xt = _setup(1)
    loss_z, loss_d, _, up, down, dp = _expected(net, disc, xs, bins, xt)
    lam = 0.7
    want_up = [a - lam * b for a, b in zip(_grads(loss_z, up), _grads(loss_d, up))]
    want_down, want_disc = _grads(loss_z, down), _grads(loss_d, dp)
    opt = torch.optim.SGD([{"params": list(net.parameters())}, {"params": dp}], lr=0.0)
    ada.adversarial_step(net, disc, opt, xs, bins, xt, loss="grl", grl_lambda=lam)
    assert _close([p.grad for p in up], want_up)
    assert _close([p.grad for p in down], want_down)
    assert _close([p.grad for p in dp], want_disc)


def test_both_parameter_groups_step_at_one_learning_rate():
    net, disc, xs, bins, xt = _setup(2)
    lr = 0.05
    loss_z, loss_d, loss_c, up, down, dp = _expected(net, disc, xs, bins, xt)
    before = [p.detach().clone() for p in (*up, *down, *dp)]
    grads = [a + b for a, b in zip(_grads(loss_z, up), _grads(loss_c, up))] + list(_grads(loss_z, down)) \
        + list(_grads(loss_d, dp))
    opt = torch.optim.SGD([{"params": list(net.parameters()), "name": "main"}, {"params": dp, "name": "disc"}],
                          lr=lr)
    ada.adversarial_step(net, disc, opt, xs, bins, xt)
    after = [p.detach() for p in (*up, *down, *dp)]
    assert all(torch.allclose(a, b - lr * g, atol=1e-6) for a, b, g in zip(after, before, grads))


def test_adversarial_training_transfers_across_a_zero_point_shift():
    """MLP on noisy fluxes, target with a zero-point offset in one band and twice the noise: with the
    adversary the discriminator is driven to chance and the target redshift-bin error falls well below the
    source-only network's, at the same budget."""
    rng = np.random.default_rng(5)
    xs_all, bins_all = _fluxes(2048, rng)
    xt_all, bins_t = _fluxes(2048, rng, shift=0.6, noise=0.06)
    err, acc = {}, {}
    for adversarial in (False, True):
        torch.manual_seed(0)
        net = _FluxNet()
        disc = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 2))
        opt = torch.optim.Adam([{"params": list(net.parameters())}, {"params": list(disc.parameters())}], lr=1e-3)
        order = np.random.default_rng(0)
        hist = []
        for _ in range(600):
            i, j = order.integers(0, 2048, 128), order.integers(0, 2048, 128)
            hist.append(ada.adversarial_step(net, disc if adversarial else None, opt, xs_all[i], bins_all[i],
                                             xt_all[j]))
        with torch.no_grad():
            pred = net.downstream(net.upstream(xt_all)).argmax(1)
        err[adversarial] = float((pred - bins_t).abs().float().mean())
        if adversarial:
            acc = np.mean([h["disc_acc"] for h in hist[-100:]])
    assert err[True] < 0.5 * err[False], err
    assert acc < 0.65, acc


# ---------------------------------------------------------------------------------------------- helpers
def test_magnitude_neighbours_match_brute_force():
    rng = np.random.default_rng(0)
    ref, query = rng.normal(22, 1.5, 500), rng.normal(22, 2.0, 200)
    got = ada.magnitude_neighbours(ref, query, k=30)
    assert got.shape == (200, 30)
    d = np.abs(ref[None, :] - query[:, None])
    kth = np.sort(d, axis=1)[:, 29]
    assert np.all(np.abs(ref[got] - query[:, None]) <= kth[:, None] + 1e-12)
    assert all(len(set(row)) == 30 for row in got)
    own = ada.magnitude_neighbours(ref, ref, k=30, exclude_self=True)
    assert own.shape == (500, 30) and not np.any(own == np.arange(500)[:, None])
    assert ada.magnitude_neighbours(ref[:5], query, k=30).shape == (200, 5)


def test_pdf_width_is_the_central_68_percent_interval():
    edges = np.linspace(0, 6, 361)
    flat = np.ones((1, 360))
    assert ada.pdf_width(flat, edges)[0] == pytest.approx(0.68 * 6, rel=1e-9)
    spike = np.zeros((1, 360))
    spike[0, 100] = 1
    assert ada.pdf_width(spike, edges)[0] == pytest.approx(0.68 * (6 / 360), rel=1e-9)


# ---------------------------------------------------------------------------------------------- estimator
TINY = dict(zmax=3.0, nzbins=31, branch_width=2, trunk_widths=(4, 4, 8, 8), fc_widths=(8,), graft_layer=3,
            disc_widths=(4, 4, 4, 4), disc_fc_widths=(8,), max_epochs=2, batch_size=16, n_neighbors=5,
            random_state=0)


@pytest.fixture(scope="module")
def toy():
    X, z, mag = make_toy_images(96, n_bands=3, size=8, random_state=0)
    Xt, _, mt = make_toy_images(48, n_bands=3, size=8, random_state=1, noise=0.05)
    return X, z, mag, Xt, mt


@pytest.mark.parametrize("options", [{}, {"discriminator": "pair"}, {"adversarial_loss": "grl"},
                                     {"magnitude_matching": False}, {"adversarial": False}])
def test_options_fit_and_expose_pdfw(toy, options):
    X, z, mag, Xt, mt = toy
    est = pzkit.make_estimator("adversarial_da", **TINY, **options)
    kw = {} if options.get("magnitude_matching") is False else {"mag_source": mag, "mag_target": mt}
    est.fit(X, z, X_target=Xt, **kw)
    ens = est.estimate_pdf(Xt[:10])
    w = np.asarray(ens.ancil["pdfw"])
    assert w.shape == (10,) and np.all(w > 0) and np.all(w <= 3.0)
    assert est.point_estimate == "median"
    assert np.allclose(est.predict(Xt[:10]), ens.ancil["zmedian"])
    assert est.adversarial_used_ is (options.get("adversarial", True))
    assert np.isfinite([row["loss_z"] for row in est.history_[0]]).all()
    if est.adversarial_used_:
        assert np.isfinite([row["loss_d"] for row in est.history_[0]]).all()
    assert est.graft_features(X[:5]).shape[0] == 5


def test_ensemble_averages_members_and_survives_save_load(toy, tmp_path):
    X, z, mag, Xt, mt = toy
    est = pzkit.make_estimator("adversarial_da", **dict(TINY, n_members=2))
    est.fit(X, z, X_target=Xt, mag_source=mag, mag_target=mt)
    assert len(est.modules_) == 2
    members = []
    for net in est.modules_:
        est.modules_, keep = [net], est.modules_
        members.append(est._probabilities(Xt[:7]))
        est.modules_ = keep
    assert np.allclose(est._probabilities(Xt[:7]), np.mean(members, axis=0), atol=1e-6)
    path = tmp_path / "ada.pzk"
    pzkit.save(est, path)
    loaded = pzkit.load(path)
    a, b = est.estimate_pdf(Xt[:7]), loaded.estimate_pdf(Xt[:7])
    assert np.array_equal(a.ancil["pdfw"], b.ancil["pdfw"])
    assert np.array_equal(est.predict(Xt), loaded.predict(Xt))


def test_bad_inputs_name_the_argument(toy):
    X, z, mag, Xt, mt = toy
    est = pzkit.make_estimator("adversarial_da", **TINY)
    with pytest.raises(InputError, match="X_target"):
        est.fit(X, z, X_target=Xt[:, :2], mag_source=mag, mag_target=mt)
    with pytest.raises(InputError, match="X_target"):
        est.fit(X, z, X_target=Xt[:0], mag_source=mag, mag_target=mt[:0])
    with pytest.raises(InputError, match="X_target"):
        est.fit(X, z, mag_source=mag, mag_target=mt)
    with pytest.raises(InputError, match="mag_source"):
        est.fit(X, z, X_target=Xt, mag_target=mt)
    with pytest.raises(InputError, match="mag_target"):
        est.fit(X, z, X_target=Xt, mag_source=mag)
    with pytest.raises(InputError, match="mag_target"):
        est.fit(X, z, X_target=Xt, mag_source=mag, mag_target=mt[:-1])
    with pytest.raises(InputError, match="graft_layer"):
        pzkit.make_estimator("adversarial_da", **dict(TINY, graft_layer=9)).fit(
            X, z, X_target=Xt, mag_source=mag, mag_target=mt)
    with pytest.raises(InputError, match="discriminator"):
        pzkit.make_estimator("adversarial_da", **dict(TINY, discriminator="triplet")).fit(
            X, z, X_target=Xt, mag_source=mag, mag_target=mt)
    # the source-only network needs neither a target nor magnitudes
    pzkit.make_estimator("adversarial_da", **dict(TINY, adversarial=False)).fit(X, z)
