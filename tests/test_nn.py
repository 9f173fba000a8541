"""Shared torch pieces (pzkit.nn)."""

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="SKIPPED: torch not installed (extra 'torch')")

from pzkit.exceptions import InputError  # noqa: E402
from pzkit.nn import class_weights, grid_bins, local_random_state, select_device, soft_labels, z_to_bin  # noqa: E402


def test_z_to_bin_floor_convention_and_last_edge():
    edges = np.array([0.0, 0.1, 0.2, 0.3])
    np.testing.assert_array_equal(z_to_bin([0.0, 0.05, 0.1, 0.2999, 0.3], edges), [0, 0, 1, 2, 2])


def test_grid_bins():
    edges, centres = grid_bins(np.linspace(0, 1, 11))
    assert len(centres) == 10 and centres[0] == pytest.approx(0.05)


def test_soft_labels_are_normalised_gaussians():
    edges = np.linspace(0, 3, 301)
    p = soft_labels(np.array([1.0, 2.0]), edges, sigma=0.05)
    np.testing.assert_allclose(p.sum(axis=1), 1.0, rtol=1e-6)
    centres = 0.5 * (edges[1:] + edges[:-1])
    mean = p @ centres
    std = np.sqrt(p @ centres**2 - mean**2)
    np.testing.assert_allclose(mean, [1.0, 2.0], atol=1e-4)
    np.testing.assert_allclose(std, np.sqrt(0.05**2 + 0.01**2 / 12), rtol=1e-2)


def test_class_weights_inverse_frequency():
    w = class_weights(np.array([0, 0, 0, 1]), 3, floor=0.0)
    assert w[0] == pytest.approx(w[1] / 3)  # 3 times as frequent, a third of the weight
    assert np.mean(w[:2]) == pytest.approx(1.0)


def test_device_selection():
    assert select_device("auto") in ("cpu", "cuda")
    assert select_device("cpu") == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(InputError, match="no CUDA device"):
            select_device("cuda")


def test_local_random_state_reproduces_draws_and_restores_global_states():
    import random

    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state())
    with local_random_state(5):
        a = torch.rand(3)
    with local_random_state(5):
        assert torch.equal(a, torch.rand(3))
    assert random.getstate() == before[0]
    np.testing.assert_array_equal(np.random.get_state()[1], before[1])
    assert torch.equal(torch.get_rng_state(), before[2])


def test_weights_are_saved_without_pickle(tmp_path):
    import zipfile

    import pzkit
    from pzkit.testing import make_toy_catalog

    X, z = make_toy_catalog(300)
    est = pzkit.make_estimator("baseline_nn", hidden=(16,), max_epochs=3, batch_size=64, random_state=1).fit(X, z)
    pzkit.save(est, tmp_path / "m.pzk")
    with zipfile.ZipFile(tmp_path / "m.pzk") as zf:
        payload = zf.read("model.skops")
    import skops.io

    types = skops.io.get_untrusted_types(data=payload)
    assert not any(t.startswith("torch") for t in types), types
    loaded = pzkit.load(tmp_path / "m.pzk")
    np.testing.assert_array_equal(loaded.estimate_pdf(X).objdata["pdfs"], est.estimate_pdf(X).objdata["pdfs"])


def test_bad_training_parameters_are_named():
    import pzkit
    from pzkit.testing import make_toy_catalog

    X, z = make_toy_catalog(100)
    with pytest.raises(InputError, match="max_epochs must be a positive integer"):
        pzkit.make_estimator("baseline_nn", max_epochs=0).fit(X, z)


# ---------------------------------------------------------------------------------------------- fit faults
def _tiny_net(**kw):
    from pzkit_baseline_nn import BaselineNN

    params = dict(hidden=(16, 16), max_epochs=6, lr_step=3, batch_size=32, random_state=3, nzbins=31, zmax=3.0)
    params.update(kw)
    return BaselineNN(**params)


def _toy():
    from pzkit.testing import make_toy_catalog

    return make_toy_catalog(300, random_state=1)


class _InterruptAt(Exception):
    pass


def test_interrupted_fit_raises_and_resumes_bit_identically(tmp_path, monkeypatch):
    """A fit interrupted after epoch 3 raises (no silently under-trained model); refitting resumes from the
    checkpoint and gives exactly the weights of an uninterrupted fit (optimizer, LR schedule and RNG restored)."""
    from pzkit.nn import engine

    X, z = _toy()
    reference = _tiny_net().fit(X, z)
    original = engine.ResumableCheckpoint.on_epoch_end
    calls = {"n": 0}

    def interrupting(self, net, **kwargs):
        original(self, net, **kwargs)
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt  # what Ctrl-C looks like inside skorch's loop

    monkeypatch.setattr(engine.ResumableCheckpoint, "on_epoch_end", interrupting)
    with pytest.raises(KeyboardInterrupt, match="interrupted after 3 of 6 epochs"):
        _tiny_net(checkpoint_dir=str(tmp_path)).fit(X, z)
    monkeypatch.setattr(engine.ResumableCheckpoint, "on_epoch_end", original)
    resumed = _tiny_net(checkpoint_dir=str(tmp_path)).fit(X, z)
    assert len(resumed.history_[0]) == 6
    np.testing.assert_array_equal([r["train_loss"] for r in resumed.history_[0]],
                                  [r["train_loss"] for r in reference.history_[0]])
    np.testing.assert_array_equal(resumed.predict(X), reference.predict(X))
    for a, b in zip(resumed.modules_[0].state_dict().values(), reference.modules_[0].state_dict().values()):
        assert torch.equal(a, b)


def test_checkpoint_from_other_parameters_is_ignored_with_a_warning(tmp_path):
    from pzkit.exceptions import PzkitWarning

    X, z = _toy()
    _tiny_net(max_epochs=2, checkpoint_dir=str(tmp_path)).fit(X, z)
    with pytest.warns(PzkitWarning, match="other parameters or data"):
        fresh = _tiny_net(max_epochs=2, lr=2e-3, checkpoint_dir=str(tmp_path)).fit(X, z)
    assert len(fresh.history_[0]) == 2


def test_bf16_mixed_precision_trains_and_infers_in_float64():
    X, z = _toy()
    est = _tiny_net(precision="bf16-mixed").fit(X, z)
    assert next(est.modules_[0].parameters()).dtype == torch.float32  # master weights stay float32
    assert np.isfinite(est.predict(X)).all()
    with pytest.raises(InputError, match="precision"):
        _tiny_net(precision="fp8").fit(X, z)


def test_class_weights_empty_bins_without_floor_get_zero_not_inf():
    w = class_weights(np.array([0, 0, 2]), 4, floor=0.0)
    assert np.all(np.isfinite(w)) and w[1] == 0 and w[3] == 0
