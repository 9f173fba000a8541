"""Shared pieces of the property suite: hypothesis profiles, the case ledger, plugin instances, oracles.

Profiles (select with ``HYPOTHESIS_PROFILE``):

* ``ci`` (default): derandomised, a fixed small number of examples per test, so the whole suite stays within
  about two minutes and gives the same cases on every run;
* ``thorough``: random seeds and ``THOROUGH_FACTOR`` times as many examples per test (35 min on 2 cores
  without the torch and image plugins).
"""

import collections
import os
import warnings

import numpy as np
from hypothesis import HealthCheck, settings
from hypothesis.database import DirectoryBasedExampleDatabase

import pzkit
from pzkit.exceptions import PzkitError

THOROUGH_FACTOR = 20
_HEALTH = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture,
           HealthCheck.filter_too_much]
settings.register_profile("ci", deadline=None, derandomize=True, suppress_health_check=_HEALTH, print_blob=True,
                          database=None)
# failing examples are kept (and replayed first next time) under the git-ignored .pytest_cache
settings.register_profile("thorough", deadline=None, derandomize=False, suppress_health_check=_HEALTH,
                          print_blob=True,
                          database=DirectoryBasedExampleDatabase(os.path.join(
                              os.path.dirname(__file__), "..", "..", ".pytest_cache", "hypothesis")))
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)


def examples(n):
    """``@settings`` for a test worth ``n`` examples in the ci profile (more in the thorough one)."""
    return settings(max_examples=n * (THOROUGH_FACTOR if PROFILE == "thorough" else 1))


#: entry point -> Counter of outcomes ("ok", "refused: <ErrorClass>")
LEDGER = collections.defaultdict(collections.Counter)


def record(entry_point, outcome):
    LEDGER[entry_point][outcome] += 1


def outcome_of(func, entry_point):
    """Call ``func``; return ``(True, result)`` or ``(False, pzkit error)``. Anything else fails the test.

    The pzkit error must carry a non-empty message; a bare numpy/sklearn/torch exception, or a warning that
    is not one of pzkit's categories, is a failure.
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            result = func()
        except PzkitError as exc:
            assert str(exc).strip(), f"{entry_point}: {type(exc).__name__} with an empty message"
            record(entry_point, f"refused: {type(exc).__name__}")
            _check_warnings(caught, entry_point)
            return False, exc
    _check_warnings(caught, entry_point)
    record(entry_point, "ok")
    return True, result


# warnings raised by third-party code on purpose, outside pzkit's control and not about the user's data
_FOREIGN_OK = ("X does not have valid feature names", "X has feature names", "pkg_resources",
               "Converting `np.inexact`")


def _check_warnings(caught, entry_point):
    for w in caught:
        if issubclass(w.category, pzkit.exceptions.PzkitWarning):
            continue
        if issubclass(w.category, ResourceWarning):  # hidden by Python's default filters; counted, reported
            record(f"{entry_point} (ResourceWarning)", f"{w.filename.rsplit('/', 1)[-1]}:{w.lineno}")
            continue
        if issubclass(w.category, (DeprecationWarning, PendingDeprecationWarning, FutureWarning)):
            continue
        msg = str(w.message)
        if any(s in msg for s in _FOREIGN_OK):
            continue
        raise AssertionError(f"{entry_point}: leaked a {w.category.__name__} from {w.filename}:{w.lineno}: {msg}")


# ---------------------------------------------------------------------------------------------- plugins
def plugin_classes():
    """(name, class) for every registered plugin that imports."""
    out = []
    for name in pzkit.list_estimators():
        try:
            out.append((name, pzkit.get_estimator_class(name)))
        except PzkitError:
            continue
    return out


def is_image_class(cls):
    try:
        from pzkit.nn.images import ImagePhotoZEstimator
    except ImportError:  # torch not installed: there can be no image plugin either
        return False
    return issubclass(cls, ImagePhotoZEstimator)


def tiny_instance(cls, random_state=0):
    """The plugin's conformance instance made as cheap as possible: 1–2 epochs, a few trees."""
    est = cls._conformance_instance()
    params = est.get_params(deep=False)
    small = {"max_epochs": 2, "n_estimators": 5, "n_members": 1, "epochs": 2, "pretrain_epochs": 1,
             "finetune_epochs": 1, "n_epochs": 2, "n_iter": 20, "n_iter_finetune": 5, "lr_drop_at": 10,
             "max_steps": 10, "pretrain_steps": 5}
    est.set_params(**{k: min(v, params[k]) if isinstance(params[k], int) else v
                      for k, v in small.items() if k in params})
    if "random_state" in params:
        est.set_params(random_state=random_state)
    return est


def training_data(est, n_train=200):
    """(X, y, fit_params, X_test, predict_params): the plugin's own conformance data, or the toy catalog."""
    d = est._conformance_data(0)
    if d is not None:
        n = min(n_train, len(d.y_train))
        idx = np.arange(n)

        def sub(params, rows):
            return {k: (v[rows] if isinstance(v, np.ndarray) and v.ndim >= 1 else v) for k, v in params.items()}

        Xtr = d.X_train.iloc[idx] if hasattr(d.X_train, "iloc") else d.X_train[idx]
        nt = min(64, len(d.y_test))
        Xte = d.X_test.iloc[:nt] if hasattr(d.X_test, "iloc") else d.X_test[:nt]
        return Xtr, d.y_train[idx], sub(d.fit_params, idx), Xte, sub(d.predict_params, np.arange(nt))
    from pzkit.testing import make_toy_catalog

    X, z = make_toy_catalog(n_train + 64, random_state=0)
    return X[:n_train], z[:n_train], {}, X[n_train:], {}


# ---------------------------------------------------------------------------------------------- oracles
def assert_valid_ensemble(est, ens, n, where):
    """A correct result: one finite, non-negative, normalised PDF per row; summaries finite and on the grid."""
    from pzkit.pdf import total_mass

    assert ens.npdf == n, f"{where}: {ens.npdf} PDFs for {n} rows"
    for key, value in ens.objdata.items():
        assert np.all(np.isfinite(np.asarray(value, dtype=float))), f"{where}: non-finite PDF data {key!r}"
    zgrid = est.zgrid_
    dens = np.atleast_2d(ens.pdf(zgrid))
    assert np.all(np.isfinite(dens)), f"{where}: PDF values not finite"
    assert np.all(dens >= -1e-12 * max(1.0, float(dens.max()))), f"{where}: negative PDF values"
    mass = total_mass(ens, zgrid)
    assert np.allclose(mass, 1.0, atol=1e-3), f"{where}: PDF mass {mass.min():.4f}-{mass.max():.4f}, not 1"
    for key in ("zmode", "zmedian", "zmean", "zstd"):
        v = np.asarray(ens.ancil[key])
        assert v.shape == (n,) and np.all(np.isfinite(v)), f"{where}: ancil[{key!r}] bad"
    for key in ("zmode", "zmedian", "zmean"):
        v = np.asarray(ens.ancil[key])
        assert np.all((v >= zgrid[0] - 1e-9) & (v <= zgrid[-1] + 1e-9)), f"{where}: {key} off the grid"
