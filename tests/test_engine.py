"""The one training engine (pzkit.nn.engine) under all five torch plugins."""

import random

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="SKIPPED: torch not installed (extra 'torch')")

import pzkit  # noqa: E402
from pzkit.exceptions import InputError  # noqa: E402
from pzkit.nn.engine import NeuralPhotoZEstimator, ThreadBudget, _CpuMonitor  # noqa: E402

TORCH_PLUGINS = ("baseline_nn", "mtl_nb", "bias_cnn", "adversarial_da", "pita")


def _instance_and_data(name, **params):
    from pzkit.testing import _data_for

    est = pzkit.get_estimator_class(name)._conformance_instance().set_params(random_state=7, **params)
    return est, _data_for(est)


@pytest.mark.parametrize("name", TORCH_PLUGINS)
def test_every_torch_plugin_subclasses_the_engine(name):
    assert issubclass(pzkit.get_estimator_class(name), NeuralPhotoZEstimator)


@pytest.mark.parametrize("name", TORCH_PLUGINS)
def test_fit_leaves_global_random_states_untouched(name):
    """Randomness comes from random_state through local generators: the caller's torch, numpy and random
    streams continue as if the fit had not happened."""
    est, data = _instance_and_data(name)
    random.seed(11)
    np.random.seed(11)
    torch.manual_seed(11)
    before = (random.getstate(), np.random.get_state()[1].copy(), torch.get_rng_state().clone())
    est.fit(data.X_train, data.y_train, **data.fit_params)
    est.predict(data.X_test, **data.predict_params)
    assert random.getstate() == before[0]
    np.testing.assert_array_equal(np.random.get_state()[1], before[1])
    assert torch.equal(torch.get_rng_state(), before[2])


@pytest.mark.parametrize("name", TORCH_PLUGINS)
def test_interrupted_fit_resumes_bit_identically(name, interrupted_then_resumed):
    """Killed after its second epoch checkpoint, then rerun with the same checkpoint_dir: the weights and
    predictions of one uninterrupted fit."""
    est, data = _instance_and_data(name)
    if name in ("baseline_nn", "mtl_nb"):
        est.set_params(max_epochs=4, lr_step=2)
    interrupted_then_resumed(est, data, kill_at=2)


def test_history_and_user_callbacks():
    """history_ holds one row per epoch and member with the training loss; callbacks= reaches skorch."""
    from skorch.callbacks import Callback

    class CountEpochs(Callback):
        def initialize(self):
            self.n = getattr(self, "n", 0)
            return self

        def on_epoch_end(self, net, **kwargs):
            self.n += 1

    counter = CountEpochs()
    est, data = _instance_and_data("baseline_nn", max_epochs=3, n_members=2, callbacks=[counter])
    est.fit(data.X_train, data.y_train)
    assert counter.n == 6
    assert [len(h) for h in est.history_] == [3, 3]
    assert all(np.isfinite(row["train_loss"]) and row["phase"] == "train" for h in est.history_ for row in h)
    with pytest.raises(InputError, match="callbacks"):
        est.set_params(callbacks="progress").fit(data.X_train, data.y_train)


def test_thread_budget_uses_the_cores_others_leave_idle(monkeypatch):
    monkeypatch.setattr("pzkit.nn.engine.available_threads", lambda: 4)
    before = torch.get_num_threads()
    try:
        for others, expected in ((0.1, 4), (1.0, 3), (2.6, 1), (7.0, 1)):
            monkeypatch.setattr(_CpuMonitor, "others_busy", lambda self, min_interval=0.05, o=others: o)
            budget = ThreadBudget()
            budget.on_train_begin(None)
            assert torch.get_num_threads() == expected, (others, expected)
    finally:
        torch.set_num_threads(before)


def test_fit_restores_the_callers_thread_count():
    est, data = _instance_and_data("baseline_nn", max_epochs=2, n_threads=1)
    before = torch.get_num_threads()
    est.fit(data.X_train, data.y_train)
    est.predict(data.X_test)
    assert torch.get_num_threads() == before
    with pytest.raises(InputError, match="n_threads"):
        est.set_params(n_threads=0).fit(data.X_train, data.y_train)


def test_auto_threads_never_exceed_the_callers_setting():
    from skorch.callbacks import Callback

    class Record(Callback):
        def on_epoch_end(self, net, **kwargs):
            self.seen = getattr(self, "seen", set()) | {torch.get_num_threads()}

    record = Record()
    est, data = _instance_and_data("baseline_nn", max_epochs=2, callbacks=[record])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        est.fit(data.X_train, data.y_train)
        assert record.seen == {1}
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_early_stopping_ends_training_without_an_interrupt_error():
    est, data = _instance_and_data("baseline_nn", max_epochs=300, early_stopping=True, patience=3, lr=3e-3)
    est.fit(data.X_train, data.y_train)
    assert len(est.history_[0]) < 300
    assert all("valid_loss" in row for row in est.history_[0])


@pytest.mark.parametrize("name", [n for n in TORCH_PLUGINS if pzkit.get_estimator_class(n).get_class_tag(
    "thread_invariant")])
def test_thread_invariant_plugins_give_bit_identical_results_on_1_and_2_threads(name):
    """What lets n_threads='auto' follow the machine's load without changing any result."""
    pdfs = []
    for n in (1, 2):
        est, data = _instance_and_data(name, max_epochs=3, n_threads=n)
        est.fit(data.X_train, data.y_train, **data.fit_params)
        pdfs.append(est.estimate_pdf(data.X_test, **data.predict_params).objdata["pdfs"])
    np.testing.assert_array_equal(pdfs[0], pdfs[1])


def test_auto_threads_stay_fixed_for_networks_whose_results_depend_on_them(monkeypatch):
    """A CNN's sums depend on the thread count: 'auto' leaves torch's setting alone, so the same seed gives the
    same model however busy the machine is."""
    monkeypatch.setattr(_CpuMonitor, "others_busy", lambda self, min_interval=0.05, wait=True: 1.5)
    est, _ = _instance_and_data("bias_cnn")
    assert not est.get_tag("thread_invariant") and not est._adapts_threads()
    est, _ = _instance_and_data("baseline_nn")
    assert est._adapts_threads()
