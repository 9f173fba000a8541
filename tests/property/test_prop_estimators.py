"""Property tests of every registered plugin's fit / predict / estimate_pdf on tabular input.

Each plugin is fitted once (its conformance instance, made tiny) and then fed generated inputs; the fit
itself is fuzzed with small generated training sets. Image plugins get their own cases in
test_prop_images.py.
"""

import numpy as np
import pandas as pd
import pytest
from _pzfuzz import (assert_valid_ensemble, examples, is_image_class, outcome_of, plugin_classes, tiny_instance,
                     training_data)
from hypothesis import given
from hypothesis import strategies as st

from pzkit.exceptions import InputError

TABULAR = [name for name, cls in plugin_classes() if not is_image_class(cls)]
#: plugins whose fit takes seconds (torch): fewer fit examples
SLOW_FIT = {name for name, cls in plugin_classes() if "max_epochs" in cls().get_params()}

_FITTED = {}


def fitted(name):
    if name not in _FITTED:
        import pzkit

        est = tiny_instance(pzkit.get_estimator_class(name))
        X, y, fit_params, Xt, pp = training_data(est)
        est.fit(X, y, **fit_params)
        _FITTED[name] = (est, np.asarray(X, dtype=np.float64), np.asarray(Xt, dtype=np.float64), pp)
    return _FITTED[name]


SPECIALS = [np.nan, np.inf, -np.inf, 99.0, -99.0, 1e30, -1e30, 1e300, -1e300, 0.0, 1e-300, 5e-324]


@st.composite
def feature_matrices(draw, Xt, max_rows=20):
    """Rows resampled from the plugin's own test set, with special values planted at random places."""
    n = draw(st.integers(1, max_rows))
    rows = draw(st.lists(st.integers(0, len(Xt) - 1), min_size=n, max_size=n))
    X = Xt[rows].copy()
    planted = []
    for _ in range(draw(st.integers(0, 3))):
        i, j = draw(st.integers(0, n - 1)), draw(st.integers(0, X.shape[1] - 1))
        X[i, j] = draw(st.sampled_from(SPECIALS))
        planted.append((i, j))
    return X


def _check_result(est, X, ens, where):
    assert_valid_ensemble(est, ens, X.shape[0], where)
    pred = est.predict(X)
    key = {"mode": "zmode", "median": "zmedian", "mean": "zmean"}[est.point_estimate]
    np.testing.assert_allclose(pred, ens.ancil[key], rtol=0, atol=1e-9)


@pytest.mark.parametrize("name", TABULAR)
@examples(30)
@given(data=st.data())
def test_estimate_pdf_on_special_values(name, data):
    est, _, Xt, pp = fitted(name)
    X = data.draw(feature_matrices(Xt))
    ok, ens = outcome_of(lambda: est.estimate_pdf(X, **pp) if not pp else est.estimate_pdf(X), f"{name}.estimate_pdf")
    nonfinite = ~np.isfinite(X)
    if nonfinite.any() and not (est.get_tag("allow_nan") and not np.isinf(X).any()):
        assert not ok and isinstance(ens, InputError), f"{name}: non-finite X accepted"
        return
    if ok:
        _check_result(est, X, ens, f"{name}.estimate_pdf")
    else:  # only extreme, out-of-training-range values may be refused, and with a message saying so
        assert isinstance(ens, InputError)
        assert (np.abs(X) > 1e6).any() or (np.abs(X[X != 0]) < 1e-200).any() or nonfinite.any(), (
            f"{name}: ordinary input refused: {ens}")


@pytest.mark.parametrize("name", TABULAR)
@examples(20)
@given(data=st.data(), dtype=st.sampled_from(["float16", "float32", "int32", "int64", "object", "str", "bool",
                                              "complex128"]),
       as_frame=st.booleans())
def test_predict_dtypes(name, data, dtype, as_frame):
    est, _, Xt, _ = fitted(name)
    X = Xt[data.draw(st.lists(st.integers(0, len(Xt) - 1), min_size=1, max_size=8))]
    if dtype.startswith("int"):
        X = np.round(X * 10)
    Xd = X.astype(dtype)
    if as_frame:
        Xd = pd.DataFrame(Xd)
    ok, out = outcome_of(lambda: est.predict(Xd), f"{name}.predict")
    if dtype in ("str", "complex128") and not ok:
        assert isinstance(out, InputError)
        return
    if dtype in ("str", "complex128"):  # numeric strings: must equal the numbers they spell
        pass
    assert ok, f"{name}: numeric {dtype} input refused: {out}"
    expected = est.predict(np.asarray(Xd, dtype=np.float64))
    np.testing.assert_array_equal(out, expected)


@pytest.mark.parametrize("name", TABULAR)
@examples(12)
@given(shape=st.sampled_from(["empty", "1d", "3d", "fewer", "more", "scalar", "ragged", "none", "single"]))
def test_predict_shapes(name, shape):
    est, _, Xt, _ = fitted(name)
    d = Xt.shape[1]
    X = {"empty": np.zeros((0, d)), "1d": Xt[0], "3d": Xt[:4].reshape(4, d, 1), "fewer": Xt[:4, :-1],
         "more": np.c_[Xt[:4], Xt[:4, :1]], "scalar": np.float64(1.0), "ragged": [list(Xt[0]), list(Xt[1][:-1])],
         "none": None, "single": Xt[:1]}[shape]
    ok, out = outcome_of(lambda: est.estimate_pdf(X), f"{name}.estimate_pdf")
    if shape == "single":
        assert ok, f"{name}: a single row refused: {out}"
        _check_result(est, Xt[:1], out, f"{name}.estimate_pdf")
    else:
        assert not ok and isinstance(out, InputError), f"{name}: {shape} X accepted"


@pytest.mark.parametrize("name", TABULAR)
@examples(15)
@given(data=st.data(), kind=st.sampled_from(["unique", "duplicate", "missing", "short", "2d"]))
def test_ids(name, data, kind):
    est, _, Xt, _ = fitted(name)
    n = data.draw(st.integers(2, 10))
    X = Xt[:n]
    ids = {"unique": np.arange(n) * 3, "duplicate": np.r_[np.arange(n - 1), 0],
           "missing": np.r_[np.arange(n - 1), np.nan], "short": np.arange(n - 1),
           "2d": np.arange(n)[:, None]}[kind]
    ok, out = outcome_of(lambda: est.estimate_pdf(X, ids=ids), f"{name}.estimate_pdf")
    if kind == "unique":
        assert ok and np.array_equal(out.ancil["id"], ids)
    else:
        assert not ok and isinstance(out, InputError) and "id" in str(out), f"{name}: {kind} ids accepted"
    if kind in ("2d", "short"):
        return
    frame = pd.DataFrame(X, index=pd.Index(ids, name="objid"))  # ids from a named index travel the same way
    ok, out = outcome_of(lambda: est.estimate_pdf(frame), f"{name}.estimate_pdf")
    assert ok == (kind == "unique"), f"{name}: {kind} ids in the frame index: {out}"
    if ok:
        assert np.array_equal(out.ancil["id"], ids)


@pytest.mark.parametrize("name", TABULAR)
@examples(15)
@given(data=st.data())
def test_estimate_pdf_does_not_depend_on_batching_or_order(name, data):
    est, _, Xt, _ = fitted(name)
    n = data.draw(st.integers(2, len(Xt)))
    X = Xt[:n]
    whole = est.estimate_pdf(X)
    cuts = sorted(set(data.draw(st.lists(st.integers(1, n - 1), max_size=4))))
    parts = [est.estimate_pdf(X[a:b]) for a, b in zip([0] + cuts, cuts + [n])]
    perm = np.asarray(data.draw(st.permutations(list(range(n)))))
    shuffled = est.estimate_pdf(X[perm])
    from pzkit.testing import ConformanceError  # noqa: F401  (same tolerance as the conformance suite)

    for key, value in whole.objdata.items():
        value = np.atleast_2d(value)
        joined = np.vstack([np.atleast_2d(p.objdata[key]) for p in parts])
        if value.shape[0] == 1 and joined.shape[0] != 1:  # shared grid/bins stored once
            joined = joined[:1]
        np.testing.assert_allclose(joined, value, rtol=1e-7, atol=1e-10,
                                   err_msg=f"{name}: PDFs in chunks {cuts} differ from one call ({key})")
        sv = np.atleast_2d(shuffled.objdata[key])
        if value.shape[0] == n:
            np.testing.assert_allclose(sv, value[perm], rtol=1e-7, atol=1e-10,
                                       err_msg=f"{name}: PDFs depend on row order ({key})")
    from _pzfuzz import record

    record(f"{name}.estimate_pdf", "ok")


@st.composite
def training_sets(draw, d):
    """Small training sets with the awkward shapes real catalogs have: tiny, duplicated rows, constant
    columns, labels at the grid edges, special values."""
    n = draw(st.integers(0, 40))
    rng = np.random.default_rng(draw(st.integers(0, 2**31)))
    X = rng.normal(size=(n, d))
    y = rng.uniform(0.0, 3.0, n)
    case = draw(st.sampled_from(["plain", "duplicated", "constant_X", "one_label", "edges", "special_X",
                                 "special_y", "huge_X", "int_y"]))
    if n and case == "duplicated":
        X[:] = X[0]
        y[:] = y[0] if draw(st.booleans()) else y
    elif case == "constant_X":
        X[:] = 1.0
    elif case == "one_label":
        y[:] = 0.7
    elif case == "edges":
        y = np.where(rng.random(n) < 0.5, 0.0, 3.0)
    elif n and case == "special_X":
        X[draw(st.integers(0, n - 1)), draw(st.integers(0, d - 1))] = draw(st.sampled_from([np.nan, np.inf]))
    elif n and case == "special_y":
        y[draw(st.integers(0, n - 1))] = draw(st.sampled_from([np.nan, np.inf, -0.5, 3.5]))
    elif case == "huge_X":
        X *= 1e30
    elif case == "int_y":
        y = np.round(y).astype(int)
    return X, y, case


def _fit_case(name, data):
    import pzkit

    est0, Xtr, _, _ = fitted(name)
    X, y, case = data.draw(training_sets(Xtr.shape[1]))
    est = tiny_instance(pzkit.get_estimator_class(name))
    ok, out = outcome_of(lambda: est.fit(X, y), f"{name}.fit")
    if not ok:
        assert isinstance(out, InputError), out
        return
    finite_labels = y[np.isfinite(y)]
    assert np.all(np.isfinite(X)) or est.get_tag("allow_nan"), f"{name}: fit accepted non-finite X ({case})"
    assert len(np.unique(finite_labels)) >= 2, f"{name}: fit accepted < 2 distinct labels ({case})"
    Xq = X[: min(len(X), 8)]
    ok, ens = outcome_of(lambda: est.estimate_pdf(Xq), f"{name}.estimate_pdf")
    assert ok, f"{name}: fitted on {case} data, cannot estimate on its own training rows: {ens}"
    _check_result(est, Xq, ens, f"{name}.estimate_pdf after fit on {case}")


@pytest.mark.parametrize("name", sorted(set(TABULAR) - SLOW_FIT))
@examples(25)
@given(data=st.data())
def test_fit_on_awkward_training_sets(name, data):
    _fit_case(name, data)


@pytest.mark.parametrize("name", sorted(set(TABULAR) & SLOW_FIT))
@examples(6)  # torch fits cost about a second each even at 2 epochs
@given(data=st.data())
def test_fit_on_awkward_training_sets_torch(name, data):
    _fit_case(name, data)
