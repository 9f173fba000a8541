"""The conformance suite over every installed plugin, and proof that it catches a broken estimator."""

import numpy as np
import pytest

import pzkit
from pzkit import PhotoZEstimator
from pzkit.testing import ConformanceError, check_photoz_estimator, photoz_checks


def _instance(name):
    cls = pzkit.get_estimator_class(name)
    return cls._conformance_instance()


PLUGIN_CHECKS = [
    pytest.param(name, check_name, id=f"{name}-{check_name}")
    for name in pzkit.list_estimators()
    for check_name, _ in photoz_checks(pzkit.get_estimator_class(name)())
]


def test_plugins_are_installed():
    assert "train_z" in pzkit.list_estimators()


@pytest.mark.parametrize("name,check_name", PLUGIN_CHECKS)
def test_plugin_conformance(name, check_name):
    checks = dict(photoz_checks(_instance(name)))
    checks[check_name]()


class BrokenEstimator(PhotoZEstimator):
    """Deliberately wrong in four ways the suite must catch."""

    def __init__(self, zmin=0.0, zmax=3.0, nzbins=301, point_estimate="mode", random_state=None, width=0.1):
        super().__init__(zmin=zmin, zmax=zmax, nzbins=nzbins, point_estimate=point_estimate,
                         random_state=random_state)
        self.width = width

    def _fit(self, X, y):
        self.coef_ = np.linalg.lstsq(np.c_[X, np.ones(len(X))], y, rcond=None)[0]
        # ignores random_state: a global-RNG jitter makes two seeded fits differ
        self.jitter_ = np.random.normal(0, 0.05)

    def _estimate_pdf(self, X):
        # standardising with the statistics of the batch breaks chunk invariance
        Xs = (X - X.mean(axis=0)) / (X.std(axis=0) + 1e-12) * 1e-3 + X
        mu = np.c_[Xs, np.ones(len(Xs))] @ self.coef_ + self.jitter_
        g = self.zgrid_
        return self._interp_ensemble(np.exp(-0.5 * ((g[None, :] - mu[:, None]) / self.width) ** 2) + 1e-12)

    def predict(self, X):
        # always the mean, whatever point_estimate says
        return self.estimate_pdf(X).ancil["zmean"]


def test_broken_estimator_fails_with_readable_messages():
    with pytest.raises(ConformanceError) as info:
        check_photoz_estimator(BrokenEstimator())
    msg = str(info.value)
    assert msg.startswith("BrokenEstimator fails")
    for check in ("check_predict_matches_pdf", "check_same_seed_same_output", "check_chunk_invariance"):
        assert check in msg, f"{check} should have failed:\n{msg}"
    assert "point_estimate='mode' differs" in msg
    assert "3 chunks differ" in msg
    assert "same random_state gave different PDFs" in msg


def test_working_estimator_passes_suite():
    from pzkit_train_z import TrainZ

    outcomes = check_photoz_estimator(TrainZ())
    assert outcomes["check_pdf_output"] == "passed"
    assert outcomes["check_learns"].startswith("not applicable")
