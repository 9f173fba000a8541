"""The conformance suite every pzkit estimator must pass: ``check_photoz_estimator(est)``.

One suite, run over every registered plugin (the way sktime does it). Each check is a plain function
``check_<name>(estimator, data)`` that raises ``AssertionError`` with a readable message; the suite runs them
all and reports every failure at once in a :class:`ConformanceError`.

Data come from ``estimator._conformance_data(random_state)``: by default a toy catalog whose redshift is a
smooth, learnable function of five features. Plugins that need other inputs (images, narrow bands)
override that hook to return their own small dataset and the keyword arguments for ``fit``/``predict``.

scikit-learn's own estimator checks run on a clone whose grid spans 0–1000, because those checks draw
arbitrary positive targets (up to ~300) while pzkit refuses labels outside the grid. Checks a plugin cannot
pass are listed with a reason in its ``expected_failed_sklearn_checks`` tag and reported, not hidden.
"""

import os
import tempfile
import traceback
import warnings
from dataclasses import dataclass, field

import numpy as np
from sklearn.base import clone

from .exceptions import InputError, NotFittedError, PzkitError

__all__ = [
    "ConformanceError",
    "ConformanceData",
    "make_toy_catalog",
    "check_photoz_estimator",
    "photoz_checks",
]


class ConformanceError(AssertionError):
    """One or more conformance checks failed; the message lists each with its reason."""


@dataclass
class ConformanceData:
    X_train: object
    y_train: np.ndarray
    X_test: object
    y_test: np.ndarray
    fit_params: dict = field(default_factory=dict)
    predict_params: dict = field(default_factory=dict)
    test_predict_params: dict = field(default_factory=dict)

    def n_test(self):
        return len(self.y_test)


def make_toy_catalog(n=600, n_features=5, random_state=0, zmax=2.5, noise=0.02):
    """Toy catalog: z ~ U(0.05, zmax) and features that are smooth, non-linear functions of z plus noise.

    The redshift is recoverable from the features up to the noise, so any method that learns beats the
    training-set n(z).
    """
    rng = np.random.default_rng(random_state)
    z = rng.uniform(0.05, zmax, n)
    k = np.arange(1, n_features + 1)
    X = np.sin(np.outer(z, k) * 1.3 / zmax * np.pi / 2 + k) + 0.3 * z[:, None] * (k % 2)[None, :]
    X += rng.normal(0.0, noise, X.shape)
    return X, z


def make_toy_images(n=300, n_bands=3, size=16, random_state=0, zmax=2.5, noise=0.02):
    """Small image set for the conformance suite of image plugins: ``(images, z, mag)``.

    Each object is a round Gaussian blob (n, n_bands, size, size) whose band flux ratios (colours) are smooth
    functions of z and whose radius shrinks with z, so redshift is learnable from pixels; ``mag`` is the
    reference magnitude (−2.5 log10 of the first band's total flux), the usual side input of image methods.
    """
    rng = np.random.default_rng(random_state)
    z = rng.uniform(0.05, zmax, n)
    mag = rng.uniform(-1.0, 1.0, n)
    k = np.arange(n_bands)
    colours = 0.8 * np.sin(np.outer(z, k + 1) * 1.3 / zmax * np.pi / 2 + k)       # (n, bands), magnitudes
    flux = 10 ** (-0.4 * (mag[:, None] + colours - colours[:, :1]))
    radius = 3.0 - 1.5 * z / zmax
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2.0
    profile = np.exp(-0.5 * (xx**2 + yy**2)[None] / radius[:, None, None] ** 2)
    profile /= profile.sum(axis=(1, 2), keepdims=True)
    images = flux[:, :, None, None] * profile[:, None] * 10.0
    images += rng.normal(0.0, noise, images.shape)
    return images.astype(np.float32), z, mag


def _toy_data(estimator, random_state=0):
    X, z = make_toy_catalog(900, random_state=random_state)
    return ConformanceData(X[:600], z[:600], X[600:], z[600:])


def _data_for(estimator):
    data = estimator._conformance_data(0)
    return data if data is not None else _toy_data(estimator)


def _fit(est, data):
    return est.fit(data.X_train, data.y_train, **data.fit_params)


def _rows(X, idx):
    return X.iloc[idx] if hasattr(X, "iloc") else X[idx]


def _subset_params(params, idx):
    return {k: (v[idx] if isinstance(v, np.ndarray) and v.ndim >= 1 else v) for k, v in params.items()}


def _assert_raises(func, exc_types, what):
    try:
        func()
    except exc_types as exc:
        if not isinstance(exc, PzkitError):
            raise AssertionError(f"{what}: raised {type(exc).__name__} ({exc}) instead of a pzkit error")
        if not str(exc).strip():
            raise AssertionError(f"{what}: raised {type(exc).__name__} with an empty message")
        return exc
    except Exception as exc:
        raise AssertionError(f"{what}: raised {type(exc).__name__} ({exc}), expected {exc_types}") from exc
    raise AssertionError(f"{what}: no error was raised")


# ---------------------------------------------------------------------------------------------- checks
def check_sklearn_compatible(estimator, data):
    """scikit-learn's estimator checks (API, validation, cloning), with the plugin's documented exceptions.

    A check counts as passed only when it ran: one that scikit-learn skipped (``SkipTest`` or
    ``SkipTestWarning``, e.g. for an input type the estimator's tags exclude) is reported as skipped, and an
    estimator on which no check ran fails.
    """
    from sklearn.exceptions import SkipTestWarning
    from sklearn.utils.estimator_checks import estimator_checks_generator

    est = clone(estimator).set_params(zmin=0.0, zmax=1000.0, nzbins=2001, **estimator._sklearn_check_params())
    expected = dict(estimator.get_tag("expected_failed_sklearn_checks", {}))
    failures, skipped, passed = [], [], 0
    for est_instance, check in estimator_checks_generator(est, legacy=True, mark="skip"):
        name = getattr(check, "func", check).__name__
        if name in expected:
            continue
        try:
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                check(est_instance)
        except Exception as exc:
            if type(exc).__name__ == "SkipTest":  # sklearn's own skips, e.g. array-API checks without SCIPY_ARRAY_API
                skipped.append(f"{name} ({str(exc).strip()[:80]})")
                continue
            failures.append(f"{name}: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:300]}")
        else:
            skips = [w for w in caught if issubclass(w.category, SkipTestWarning)]
            if skips:
                skipped.append(f"{name} ({str(skips[0].message).strip()[:80]})")
            else:
                passed += 1
    if failures:
        raise AssertionError("scikit-learn checks failed:\n    " + "\n    ".join(failures))
    if passed == 0:
        raise AssertionError("no scikit-learn check ran (all skipped: " + "; ".join(sorted(set(skipped))) + ")")
    parts = [f"passed {passed} scikit-learn checks"]
    if skipped:
        parts.append(f"skipped {len(skipped)} by scikit-learn: " + "; ".join(sorted(set(skipped))))
    if expected:
        parts.append("expected failures: " + "; ".join(f"{k} ({v})" for k, v in expected.items()))
    return ", ".join(parts)


def check_pdf_output(estimator, data):
    """estimate_pdf returns a qp.Ensemble with one finite, non-negative, normalised PDF per row and the ancil."""
    import qp

    est = _fit(clone(estimator), data)
    ens = est.estimate_pdf(data.X_test, **data.predict_params)
    n = data.n_test()
    assert isinstance(ens, qp.Ensemble), f"estimate_pdf returned {type(ens).__name__}, not qp.Ensemble"
    assert ens.npdf == n, f"estimate_pdf returned {ens.npdf} PDFs for {n} rows"
    zgrid = est.zgrid_
    fine = np.linspace(zgrid[0], zgrid[-1], 4 * (len(zgrid) - 1) + 1)
    dens = np.atleast_2d(ens.pdf(fine))
    assert np.all(np.isfinite(dens)), "PDF values are not all finite"
    # linear interpolation between non-negative values can round to -1e-19; anything beyond rounding is a bug
    assert np.all(dens >= -1e-12 * max(1.0, float(dens.max()))), f"PDF has negative values (min {dens.min():.3g})"
    from .pdf import total_mass

    mass = total_mass(ens, zgrid)
    assert np.allclose(mass, 1.0, atol=1e-3), (
        f"PDFs are not normalised on the grid: mass in [{zgrid[0]}, {zgrid[-1]}] ranges "
        f"{mass.min():.4f}–{mass.max():.4f}"
    )
    ancil = ens.ancil or {}
    for key in ("zmode", "zmedian", "zmean", "zstd"):
        assert key in ancil, f"ancil lacks {key!r} (has {sorted(ancil)})"
        vals = np.asarray(ancil[key])
        assert vals.shape == (n,), f"ancil[{key!r}] has shape {vals.shape}, expected ({n},)"
        assert np.all(np.isfinite(vals)), f"ancil[{key!r}] has non-finite values"
    for key in ("zmode", "zmedian", "zmean"):
        vals = np.asarray(ancil[key])
        assert np.all((vals >= zgrid[0] - 1e-9) & (vals <= zgrid[-1] + 1e-9)), f"ancil[{key!r}] leaves the grid"
    assert np.all(np.asarray(ancil["zstd"]) >= 0), "ancil['zstd'] has negative values"
    ids = np.arange(n) + 1000
    ens_ids = est.estimate_pdf(data.X_test, ids=ids, **data.predict_params)
    assert "id" in ens_ids.ancil and np.array_equal(ens_ids.ancil["id"], ids), "ids are not carried into ancil['id']"


def check_predict_matches_pdf(estimator, data):
    """predict returns the chosen point estimate of estimate_pdf's PDFs, for every point_estimate."""
    est = _fit(clone(estimator), data)
    ens = est.estimate_pdf(data.X_test, **data.predict_params)
    for choice, key in est.point_estimate_columns.items():
        est.set_params(point_estimate=choice)
        pred = np.asarray(est.predict(data.X_test, **data.predict_params))
        assert pred.shape == (data.n_test(),), f"predict returned shape {pred.shape}"
        assert np.allclose(pred, ens.ancil[key], rtol=0, atol=1e-9), (
            f"predict with point_estimate={choice!r} differs from estimate_pdf's ancil[{key!r}] "
            f"(max |diff| {np.max(np.abs(pred - ens.ancil[key])):.3g})"
        )


def check_clone_and_params(estimator, data):
    """clone and get_params/set_params round-trip; fit does not change parameters."""
    params = estimator.get_params(deep=False)
    cloned = clone(estimator)
    assert type(cloned) is type(estimator), "clone changed the class"
    cparams = cloned.get_params(deep=False)
    for key, value in params.items():
        assert repr(cparams[key]) == repr(value), f"clone changed parameter {key!r}: {value!r} -> {cparams[key]!r}"
    fitted = _fit(clone(estimator), data)
    for key, value in params.items():
        assert repr(fitted.get_params(deep=False)[key]) == repr(value), f"fit changed parameter {key!r}"
    again = clone(estimator).set_params(**params)
    assert repr(again.get_params(deep=False)) == repr(params), "set_params(**get_params()) is not a round trip"


def check_save_load(estimator, data):
    """pzkit.save then pzkit.load gives an estimator with identical outputs."""
    from .persistence import load, save

    est = _fit(clone(estimator), data)
    before = est.estimate_pdf(data.X_test, **data.predict_params)
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "model.pzk")
        save(est, path)
        loaded = load(path)
    assert type(loaded) is type(est), f"load returned {type(loaded).__name__}"
    after = loaded.estimate_pdf(data.X_test, **data.predict_params)
    for key, value in before.objdata.items():
        assert np.array_equal(np.asarray(value), np.asarray(after.objdata[key])), f"PDF data {key!r} changed on reload"
    assert np.array_equal(est.predict(data.X_test, **data.predict_params),
                          loaded.predict(data.X_test, **data.predict_params)), "predict changed on reload"


def check_same_seed_same_output(estimator, data):
    """Two fits with the same random_state give identical PDFs."""
    a = _fit(clone(estimator).set_params(random_state=7), data)
    b = _fit(clone(estimator).set_params(random_state=7), data)
    pa = a.estimate_pdf(data.X_test, **data.predict_params)
    pb = b.estimate_pdf(data.X_test, **data.predict_params)
    for key, value in pa.objdata.items():
        diff = np.max(np.abs(np.asarray(value) - np.asarray(pb.objdata[key])))
        assert diff == 0, f"same random_state gave different PDFs ({key!r} differs by up to {diff:.3g})"


def check_chunk_invariance(estimator, data):
    """Estimating in three chunks gives the same PDFs and predictions as one call."""
    est = _fit(clone(estimator), data)
    whole = est.estimate_pdf(data.X_test, **data.predict_params)
    pred = est.predict(data.X_test, **data.predict_params)
    n = data.n_test()
    chunks = np.array_split(np.arange(n), 3)
    for key, value in whole.objdata.items():
        parts = [
            np.atleast_2d(est.estimate_pdf(_rows(data.X_test, idx), **_subset_params(data.predict_params, idx)).objdata[key])
            for idx in chunks
        ]
        assert np.allclose(np.vstack(parts), np.atleast_2d(value), rtol=1e-7, atol=1e-10), (
            f"PDFs estimated in 3 chunks differ from one call ({key!r})"
        )
    pparts = np.concatenate(
        [est.predict(_rows(data.X_test, idx), **_subset_params(data.predict_params, idx)) for idx in chunks]
    )
    assert np.allclose(pparts, pred, rtol=1e-7, atol=1e-10), "predictions in 3 chunks differ from one call"


def check_bad_input(estimator, data):
    """Bad input raises a clear pzkit error: NaN/inf, wrong feature count, empty X, use before fit."""
    unfitted = clone(estimator)
    for method in ("predict", "estimate_pdf"):
        _assert_raises(lambda m=method: getattr(unfitted, m)(data.X_test, **data.predict_params),
                       NotFittedError, f"{method} before fit")
    est = _fit(clone(estimator), data)
    X = np.asarray(data.X_test, dtype=np.float64)
    if X.ndim == 2:
        bad_values = [np.inf] + ([] if estimator.get_tag("allow_nan") else [np.nan])
        for bad in bad_values:
            Xb = X.copy()
            Xb[1, 0] = bad
            _assert_raises(lambda: est.predict(Xb, **data.predict_params), InputError, f"predict with {bad} in X")
            _assert_raises(lambda: est.estimate_pdf(Xb, **data.predict_params), InputError,
                           f"estimate_pdf with {bad} in X")
        _assert_raises(lambda: est.predict(X[:, :-1], **data.predict_params), InputError,
                       "predict with one feature fewer than fit")
    empty = _rows(data.X_test, np.arange(0))
    _assert_raises(lambda: est.predict(empty, **_subset_params(data.predict_params, np.arange(0))), InputError,
                   "predict on empty X")
    y_bad = np.array(data.y_train, dtype=np.float64).copy()
    y_bad[0] = est.zgrid_[-1] + 1.0
    _assert_raises(lambda: clone(estimator).fit(data.X_train, y_bad, **data.fit_params), InputError,
                   "fit with a label outside the grid")
    if not estimator.get_tag("unlabelled_rows"):
        y_nan = np.array(data.y_train, dtype=np.float64).copy()
        y_nan[0] = np.nan
        _assert_raises(lambda: clone(estimator).fit(data.X_train, y_nan, **data.fit_params), InputError,
                       "fit with a NaN label")


def check_learns(estimator, data):
    """On held-out data the method beats the training-set n(z) on CDE loss (skipped for n(z) estimators)."""
    if not estimator.get_tag("learns", True):
        return "not applicable: this estimator is the training-set n(z) floor"
    from .metrics import cde_loss
    from .pdf import hist_ensemble

    est = clone(estimator)
    if est.get_params().get("random_state", 0) is None:
        # a check must give the same verdict on every run: an unseeded network fit could pass or fail by luck
        est.set_params(random_state=0)
    est = _fit(est, data)
    ens = est.estimate_pdf(data.X_test, **data.predict_params)
    counts, _ = np.histogram(data.y_train, bins=est.zgrid_)
    floor = hist_ensemble(est.zgrid_, np.tile(counts.astype(float), (data.n_test(), 1)))
    ours = cde_loss(ens, data.y_test, est.zgrid_)
    base = cde_loss(floor, data.y_test, est.zgrid_)
    assert ours < base, f"CDE loss {ours:.3f} does not beat the training-set n(z) ({base:.3f})"


CHECKS = (
    check_sklearn_compatible,
    check_pdf_output,
    check_predict_matches_pdf,
    check_clone_and_params,
    check_save_load,
    check_same_seed_same_output,
    check_chunk_invariance,
    check_bad_input,
    check_learns,
)


def photoz_checks(estimator):
    """Yield ``(check_name, callable)`` pairs for pytest parametrisation; each callable takes no argument."""
    cache = {}

    def data():
        if "data" not in cache:
            cache["data"] = _data_for(estimator)
        return cache["data"]

    for check in CHECKS:
        yield check.__name__, (lambda c=check: c(estimator, data()))


def check_photoz_estimator(estimator, raise_on_failure=True):
    """Run the whole conformance suite on ``estimator`` (unfitted); return ``{check: outcome}``.

    Raises :class:`ConformanceError` listing every failing check with its reason.
    """
    outcomes, failures = {}, []
    for name, run in photoz_checks(estimator):
        try:
            result = run()
        except AssertionError as exc:
            outcomes[name] = f"FAILED: {exc}"
            failures.append(f"{name}: {exc}")
        except Exception as exc:
            tb = traceback.format_exception_only(type(exc), exc)[-1].strip()
            outcomes[name] = f"ERROR: {tb}"
            failures.append(f"{name}: crashed with {tb}")
        else:
            outcomes[name] = result or "passed"
    for check, reason in estimator.get_tag("expected_failed_sklearn_checks", {}).items():
        outcomes[f"sklearn:{check}"] = f"expected failure: {reason}"
    if failures and raise_on_failure:
        header = f"{type(estimator).__name__} fails {len(failures)} of {len(CHECKS)} pzkit conformance checks:"
        raise ConformanceError("\n".join([header] + [f"  - {f}" for f in failures]))
    return outcomes
