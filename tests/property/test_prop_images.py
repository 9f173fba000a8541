"""Property tests of the image plugins (subclasses of pzkit.nn.images.ImagePhotoZEstimator): NaN pixels,
wrong shapes, wrong band counts, odd dtypes and extreme pixels give a pzkit error or a correct result."""

import numpy as np
import pytest
from _pzfuzz import assert_valid_ensemble, examples, is_image_class, outcome_of, plugin_classes, tiny_instance, \
    training_data
from hypothesis import given
from hypothesis import strategies as st

from pzkit.exceptions import InputError

IMAGE = [name for name, cls in plugin_classes() if is_image_class(cls)]
pytestmark = pytest.mark.skipif(not IMAGE, reason="no image plugin is registered")
_FITTED = {}


def fitted(name):
    if name not in _FITTED:
        import pzkit

        est = tiny_instance(pzkit.get_estimator_class(name))
        X, y, fit_params, Xt, pp = training_data(est, n_train=96)
        est.fit(X, y, **fit_params)
        _FITTED[name] = (est, np.asarray(Xt), pp)
    return _FITTED[name]


def _rows(pp, idx):
    return {k: (np.asarray(v)[idx] if np.ndim(v) >= 1 else v) for k, v in pp.items()}


@pytest.mark.parametrize("name", IMAGE)
@examples(12)
@given(data=st.data())
def test_pixels(name, data):
    est, Xt, pp = fitted(name)
    n = data.draw(st.integers(1, 12))
    idx = np.asarray(data.draw(st.lists(st.integers(0, len(Xt) - 1), min_size=n, max_size=n)))
    X = Xt[idx].copy()
    special = data.draw(st.sampled_from([None, np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0]))
    if special is not None:
        X = X.astype(np.float64)
        for _ in range(data.draw(st.integers(1, 3))):
            X[tuple(data.draw(st.integers(0, s - 1)) for s in X.shape)] = special
    ok, out = outcome_of(lambda: est.estimate_pdf(X, **_rows(pp, idx)), f"{name}.estimate_pdf")
    if special is not None and not np.isfinite(np.float32(special)):
        assert not ok and isinstance(out, InputError) and ("NaN" in str(out) or "inf" in str(out)), out
    elif ok:
        assert_valid_ensemble(est, out, n, f"{name}.estimate_pdf")
    else:  # only extreme pixels may be refused, and with a pzkit InputError
        assert special in (1e30, -1e30) and isinstance(out, InputError), out


@pytest.mark.parametrize("name", IMAGE)
@examples(13)
@given(case=st.sampled_from(["3d", "5d", "bands-", "bands+", "size", "empty", "float16", "int", "bool", "object",
                             "str", "list", "flat"]))
def test_shapes_and_dtypes(name, case):
    est, Xt, pp = fitted(name)
    X = Xt[:4]
    n_out = 4
    idx = np.arange(4)
    if case == "3d":
        X = X[:, 0]
    elif case == "5d":
        X = X[:, None]
    elif case == "bands-":
        X = X[:, :-1]
    elif case == "bands+":
        X = np.concatenate([X, X[:, :1]], axis=1)
    elif case == "size":
        X = X[:, :, :-2, :-2]
    elif case == "empty":
        X, idx, n_out = X[:0], np.arange(0), 0
    elif case == "float16":
        X = X.astype(np.float16)
    elif case == "int":
        X = np.round(X * 10).astype(np.int32)
    elif case == "bool":
        X = X > 0
    elif case == "object":
        X = X.astype(object)
    elif case == "str":
        X = X.astype(str)
    elif case == "list":
        X = X.tolist()
    elif case == "flat":
        X = X.reshape(4, -1)
    ok, out = outcome_of(lambda: est.estimate_pdf(X, **_rows(pp, idx)), f"{name}.estimate_pdf")
    if case in ("float16", "int", "list"):
        assert ok, f"{name}: numeric {case} images refused: {out}"
        assert_valid_ensemble(est, out, n_out, f"{name}.estimate_pdf({case})")
        ref = est.estimate_pdf(np.asarray(X, dtype=np.float32), **_rows(pp, idx))
        for key, value in ref.objdata.items():
            np.testing.assert_array_equal(out.objdata[key], value)
    elif case in ("bool", "object") and ok:  # numbers in another container: must equal the float32 cast
        ref = est.estimate_pdf(np.asarray(X, dtype=np.float32), **_rows(pp, idx))
        for key, value in ref.objdata.items():
            np.testing.assert_array_equal(out.objdata[key], value)
    else:
        assert not ok and isinstance(out, InputError), f"{name}: {case} images accepted"


@pytest.mark.parametrize("name", IMAGE)
@examples(10)
@given(data=st.data())
def test_side_inputs(name, data):
    est, Xt, pp = fitted(name)
    if not pp:
        pytest.skip(f"{name} takes no per-object input at prediction")
    key = data.draw(st.sampled_from(sorted(pp)))
    # NaN is not drawn: a plugin may document it as "missing" (bias_cnn fills NaN magnitudes); inf never is
    how = data.draw(st.sampled_from(["inf", "short", "2d", "str", "missing"]))
    X = Xt[:5]
    kw = _rows(pp, np.arange(5))
    v = np.asarray(kw[key], dtype=np.float64).copy()
    if how == "inf":
        v[0] = np.inf
        kw[key] = v
    elif how == "short":
        kw[key] = v[:-1]
    elif how == "2d":
        kw[key] = v[:, None, None]
    elif how == "str":
        kw[key] = np.array(["x"] * len(v))
    else:
        del kw[key]
    ok, out = outcome_of(lambda: est.estimate_pdf(X, **kw), f"{name}.estimate_pdf")
    assert not ok and isinstance(out, InputError), f"{name}: {key} {how} accepted"


@pytest.mark.parametrize("name", IMAGE)
@examples(5)
@given(data=st.data())
def test_batching_invariance(name, data):
    est, Xt, pp = fitted(name)
    n = data.draw(st.integers(2, len(Xt)))
    whole = est.estimate_pdf(Xt[:n], **_rows(pp, np.arange(n)))
    cuts = sorted(set(data.draw(st.lists(st.integers(1, n - 1), max_size=3))))
    parts = [est.estimate_pdf(Xt[a:b], **_rows(pp, np.arange(a, b))) for a, b in zip([0] + cuts, cuts + [n])]
    for key, value in whole.objdata.items():
        value = np.atleast_2d(value)
        joined = np.vstack([np.atleast_2d(p.objdata[key]) for p in parts])
        if value.shape[0] == 1:
            joined = joined[:1]
        np.testing.assert_allclose(joined, value, rtol=1e-6, atol=1e-9, err_msg=f"{name}: chunks {cuts} ({key})")


@pytest.mark.parametrize("name", IMAGE)
def test_pixels_beyond_float32_range_are_refused_cleanly(name):
    est, Xt, pp = fitted(name)
    X = Xt[:2].astype(np.float64)
    X[0, 0, 0, 0] = 1e39  # finite in float64, inf in float32
    ok, out = outcome_of(lambda: est.estimate_pdf(X, **_rows(pp, np.arange(2))), f"{name}.estimate_pdf")
    assert not ok and isinstance(out, InputError)
