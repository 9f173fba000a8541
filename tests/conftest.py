import numpy as np
import pytest

from pzkit.testing import make_toy_catalog


@pytest.fixture(scope="session")
def toy():
    X, z = make_toy_catalog(900, random_state=1)
    return X[:600], z[:600], X[600:], z[600:]


@pytest.fixture(scope="session")
def dc2():
    from pzkit.datasets import load_dc2

    return load_dc2()


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture
def interrupted_then_resumed(tmp_path, monkeypatch):
    """``run(estimator, data, kill_at, attr)``: fit once cleanly; fit again with a ``checkpoint_dir`` and a
    KeyboardInterrupt raised right after the ``kill_at``-th epoch checkpoint is written; fit a third time with
    the same directory (resuming). Asserts the interrupted fit raised and that the resumed networks
    (``modules_``) hold exactly the uninterrupted weights and give the same predictions; returns
    (reference, resumed)."""
    import numpy as np
    import torch
    from sklearn.base import clone

    from pzkit.nn import engine

    def run(estimator, data, kill_at):
        reference = clone(estimator).fit(data.X_train, data.y_train, **data.fit_params)
        original = engine.ResumableCheckpoint.on_epoch_end
        calls = {"n": 0}

        def dying_save(self, *args, **kwargs):
            original(self, *args, **kwargs)
            calls["n"] += 1
            if calls["n"] == kill_at:
                raise KeyboardInterrupt

        resumable = clone(estimator).set_params(checkpoint_dir=str(tmp_path / "ckpt"))
        monkeypatch.setattr(engine.ResumableCheckpoint, "on_epoch_end", dying_save)
        with pytest.raises(KeyboardInterrupt):
            clone(resumable).fit(data.X_train, data.y_train, **data.fit_params)
        monkeypatch.setattr(engine.ResumableCheckpoint, "on_epoch_end", original)
        resumed = clone(resumable).fit(data.X_train, data.y_train, **data.fit_params)
        assert len(resumed.modules_) == len(reference.modules_)
        for got, want in zip(resumed.modules_, reference.modules_):
            for (name, a), b in zip(got.state_dict().items(), want.state_dict().values()):
                assert torch.equal(a, b), f"weight {name} differs after resuming"
        np.testing.assert_array_equal(resumed.predict(data.X_test, **data.predict_params),
                                      reference.predict(data.X_test, **data.predict_params))
        return reference, resumed

    return run
