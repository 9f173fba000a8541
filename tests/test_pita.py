"""PITA smoke tests: the MoCo queue and momentum update, masking of unlabelled rows, loss routing, bad input,
augmentations that keep colours, save/load. Tiny networks; the whole file runs in seconds on a CPU."""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("pzkit_pita")

import pzkit  # noqa: E402
from pzkit.exceptions import InputError  # noqa: E402
from pzkit.testing import make_toy_images  # noqa: E402
from pzkit_pita import PITA, colours_from_images  # noqa: E402
from pzkit_pita._nets import KeyEncoder, KeyQueue, PITANet, augment, info_nce, step_losses  # noqa: E402


def _net(n_bands=3, n_bins=10):
    torch.manual_seed(0)
    return PITANet(n_bands, n_bins, encoder_widths=(4, 8), latent_dim=8, proj_dim=4, head_widths=(8, 8))


def _tiny(**kw):
    params = dict(encoder_widths=(4, 8), latent_dim=8, proj_dim=4, head_widths=(8, 8), crop_size=12, jitter=1.0,
                  queue_size=64, momentum=0.9, max_epochs=2, pretrain_epochs=1, steps_per_epoch=3, batch_size=16,
                  nzbins=21,
                  random_state=0, device="cpu")
    params.update(kw)
    return PITA(**params)


def test_queue_is_fifo_and_uses_only_filled_slots():
    q = KeyQueue(5, 2)
    assert q.negatives().shape == (0, 2)
    q.enqueue(torch.tensor([[1.0, 0.0], [0.0, 2.0], [3.0, 0.0]]))
    assert q.negatives().shape == (3, 2) and q.ptr == 3
    assert torch.allclose(q.negatives()[1], torch.tensor([0.0, 1.0]))  # stored normalised
    q.enqueue(torch.tensor([[0.0, -1.0], [-1.0, 0.0], [1.0, 1.0]]))
    assert q.n_filled == 5 and q.ptr == 1
    # the oldest key (slot 0) was overwritten by the newest one
    assert torch.allclose(q.keys[0], torch.tensor([1.0, 1.0]) / np.sqrt(2))
    assert torch.allclose(q.keys[4], torch.tensor([-1.0, 0.0]))


def test_momentum_update_moves_keys_towards_queries():
    net = _net()
    keys = KeyEncoder(net)
    assert not any(p.requires_grad for p in keys.parameters())
    with torch.no_grad():
        for p in net.query_path().parameters():
            p.add_(1.0)
    before = [p.clone() for p in keys.path.parameters()]
    keys.momentum_update(net, 0.9)
    for b, pk, pq in zip(before, keys.path.parameters(), net.query_path().parameters()):
        assert torch.allclose(pk, 0.9 * b + 0.1 * pq)
    # heads outside the query path are not copied
    assert sum(p.numel() for p in keys.parameters()) == sum(p.numel() for p in net.query_path().parameters())


def test_info_nce_limits():
    torch.manual_seed(1)
    q = torch.randn(64, 16)
    negs = torch.nn.functional.normalize(torch.randn(255, 16), dim=1)
    # random keys: about log(K + 1) at τ = 1 (cosines near 0)
    assert abs(float(info_nce(q, torch.randn(64, 16), negs, 1.0)) - np.log(256)) < 0.1
    # key = query, tiny τ: the positive wins, loss -> 0
    assert float(info_nce(q, q, negs, 0.01)) < 1e-3


def _batch(n=8, n_bands=3, n_bins=10):
    torch.manual_seed(2)
    x = torch.randn(n, n_bands, 12, 12)
    y = torch.tensor([0.5, np.nan, 1.0, np.nan, np.nan, 2.0, np.nan, np.nan], dtype=torch.float32)[:n]
    soft = torch.softmax(torch.randn(n, n_bins), 1)
    colors = torch.randn(n, n_bands)
    colors[1, 0] = np.nan
    return x, y, soft, colors


def test_unlabelled_rows_are_masked_from_the_redshift_loss():
    net = _net()
    x, y, soft, colors = _batch()
    w = {"redshift": 1.0, "bins": 1.0}
    x = x.requires_grad_(True)
    total, parts = step_losses(net, None, None, x, None, y, soft, colors, w, 0.15, 0.1)
    total.backward()
    unl = ~torch.isfinite(y)
    assert set(parts) == {"redshift", "bins"}
    # no gradient reaches the pixels of unlabelled rows through the redshift losses
    assert float(x.grad[unl].abs().sum()) == 0.0 and float(x.grad[~unl].abs().sum()) > 0
    # their (garbage) bin targets do not matter either
    soft2 = soft.clone()
    soft2[unl] = 0.0
    total2, _ = step_losses(net, None, None, x, None, y, soft2, colors, w, 0.15, 0.1)
    assert torch.allclose(total, total2)
    # a batch without any label gives zero redshift loss and no error
    total3, parts3 = step_losses(net, None, None, x, None, torch.full_like(y, np.nan), soft, colors, w, 0.15, 0.1)
    assert float(total3) == 0.0 and "redshift" not in parts3


def test_loss_routing_each_task_reaches_only_its_head():
    net = _net()
    x, y, soft, colors = _batch()
    keys = KeyEncoder(net)
    queue = KeyQueue(32, 4)
    queue.enqueue(torch.randn(16, 4))

    def grads(weights):
        net.zero_grad(set_to_none=True)
        total, parts = step_losses(net, keys, queue, x, x + 0.01, y, soft, colors, weights, 0.15, 0.1)
        total.backward()
        got = {name: (m.weight.grad is not None and float(m.weight.grad.abs().sum()) > 0)
               for name, m in (("proj", net.projection[-1]), ("colour", net.color_head[-1]),
                               ("point", net.z_point), ("bins", net.z_bins), ("enc", net.mlp_encoder[0]))}
        return got, parts

    g, parts = grads({"contrastive": 1.0})
    assert g == {"proj": True, "colour": False, "point": False, "bins": False, "enc": True}
    assert "keys" in parts and parts["keys"].shape == (8, 4)
    g, _ = grads({"colour": 1.0})
    assert g == {"proj": False, "colour": True, "point": False, "bins": False, "enc": True}
    g, _ = grads({"redshift": 1.0})
    assert g["point"] and not g["colour"] and not g["proj"]
    g, parts = grads({"contrastive": 0.0025, "colour": 1.0, "redshift": 1.0, "bins": 1.0})
    assert all(g.values()) and set(parts) == {"contrastive", "keys", "colour", "redshift", "bins"}
    # the colour loss is the squared error summed over each row's colour vector and averaged over the rows
    # (the paper's L2); the NaN entry is skipped, not imputed
    net.zero_grad(set_to_none=True)
    h = net.latent(torch.asinh(x))
    pred = net.color_head(h)
    finite = torch.isfinite(colors)
    rows = [i for i in range(len(colors)) if finite[i].any()]
    expected = sum(float(((pred[i] - colors[i])[finite[i]] ** 2).sum().detach()) for i in rows) / len(rows)
    _, parts = step_losses(net, None, None, x, None, y, soft, colors, {"colour": 1.0}, 0.15, 0.1)
    assert abs(parts["colour"] - expected) < 1e-5


def test_huber_matches_formula():
    r = torch.tensor([0.05, 0.15, 0.6])
    got = torch.nn.functional.huber_loss(r, torch.zeros(3), delta=0.15, reduction="none")
    want = torch.where(r.abs() <= 0.15, 0.5 * r**2, 0.15 * (r.abs() - 0.075))
    assert torch.allclose(got, want)


def test_augmentations_keep_colours():
    X, _, _ = make_toy_images(n=16, n_bands=3, size=32, noise=0.0)
    x = torch.from_numpy(X)
    gen = torch.Generator().manual_seed(0)
    for rotation in ("any", "dihedral", None):
        out = augment(x, 20, 2.0, rotation, 0.0, gen).numpy()
        assert out.shape == (16, 3, 20, 20)
        flux_in, flux_out = X.sum(axis=(2, 3)), out.sum(axis=(2, 3)).astype(np.float64)
        ratio = flux_out / flux_in
        # one geometric transform for all bands: band flux ratios are kept (compact blobs, within 1 %)
        assert np.allclose(ratio, ratio[:, :1], rtol=1e-2)
    # a centred crop with no rotation, jitter or noise is the plain centre crop
    out = augment(x, 20, 0.0, None, 0.0, torch.Generator().manual_seed(0)).numpy()
    flipped = out[:, :, :, ::-1]
    centre = X[:, :, 6:26, 6:26]
    assert all(np.allclose(o, centre[i], atol=1e-5) or np.allclose(flipped[i], centre[i], atol=1e-5)
               for i, o in enumerate(out))


def test_fit_with_unlabelled_rows_and_modes():
    X, z, _ = make_toy_images(n=120, n_bands=3, size=16)
    y = z.copy()
    y[40:] = np.nan
    for mode in ("pita", "supervised", "pretrain_finetune"):
        est = _tiny(mode=mode).fit(X, y)
        assert est.predict(X[:5]).shape == (5,)
        assert est.predict_point_head(X[:5]).shape == (5,)
        stages = {row["phase"] for row in est.history_[0]}
        assert stages == ({"pretrain", "supervised"} if mode == "pretrain_finetune" else {mode})
    assert est.embed(X[:3]).shape == (3, 8)
    # catalogue colours (with a missing value) and reddening run too
    cols = colours_from_images(X)
    cols[0, 1] = np.nan
    _tiny(reddening=0.3, extinction_coeffs=(3.0, 2.0, 1.0)).fit(X, y, colors=cols)
    # the ConvNeXt-like encoder option
    est = _tiny(encoder="convnext", encoder_widths=(8, 16)).fit(X, y)
    assert np.isfinite(est.predict(X[:4])).all()


def test_bad_input():
    X, z, _ = make_toy_images(n=60, n_bands=3, size=16)
    with pytest.raises(InputError, match="no labelled"):
        _tiny().fit(X, np.full(60, np.nan))
    with pytest.raises(InputError, match=r"colors must have shape \(60, 3\).*\(60, 2\)"):
        _tiny().fit(X, z, colors=np.zeros((60, 2)))
    with pytest.raises(InputError, match=r"colors must have shape"):
        _tiny().fit(X, z, colors=np.zeros(60))
    with pytest.raises(InputError, match=r"16×16 pixels, smaller than crop_size=20"):
        _tiny(crop_size=20).fit(X, z)
    with pytest.raises(InputError, match="mode must be"):
        _tiny(mode="moco").fit(X, z)
    est = _tiny().fit(X, z)
    with pytest.raises(InputError, match="fitted on 16×16"):
        est.predict(X[:, :, :14, :14])


def test_same_seed_and_save_load(tmp_path):
    X, z, _ = make_toy_images(n=80, n_bands=3, size=16)
    y = z.copy()
    y[50:] = np.nan
    a = _tiny().fit(X, y)
    b = _tiny().fit(X, y)
    assert np.array_equal(a.predict(X), b.predict(X))
    path = tmp_path / "pita.pzk"
    pzkit.save(a, path)
    loaded = pzkit.load(path)
    assert np.array_equal(loaded.estimate_pdf(X).objdata["pdfs"], a.estimate_pdf(X).objdata["pdfs"])
    assert np.array_equal(loaded.predict_point_head(X), a.predict_point_head(X))


def test_interrupted_pretrain_finetune_resumes_from_checkpoint_bit_identically(interrupted_then_resumed):
    """Killed in the second phase of pretrain+fine-tune, then rerun: the finished phase is restored from its last
    checkpoint and the interrupted one continues exactly (the contrastive phase is in tests/test_engine.py)."""
    est = PITA._conformance_instance().set_params(random_state=4, mode="pretrain_finetune")
    interrupted_then_resumed(est, est._conformance_data(0), kill_at=5)


def test_predict_returns_the_huber_head_by_default():
    X, z, _ = make_toy_images(n=120, n_bands=3, size=16, random_state=0)
    est = PITA(**{**PITA._conformance_instance().get_params(), "max_epochs": 2})
    est.fit(X[:100], z[:100])
    head = est.predict_point_head(X[100:])
    ens = est.estimate_pdf(X[100:])
    assert est.point_estimate == "head"
    assert np.allclose(est.predict(X[100:]), np.clip(head, est.zgrid_[0], est.zgrid_[-1]))
    assert np.allclose(ens.ancil["zhead"], est.predict(X[100:]))
    est.set_params(point_estimate="median")
    assert np.allclose(est.predict(X[100:]), ens.ancil["zmedian"])
    with pytest.raises(InputError, match="point_estimate must be one of"):
        est.set_params(point_estimate="huber").predict(X[100:])
