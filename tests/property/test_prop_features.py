"""Property tests of PhotometryFeatures: whatever the catalog, a correct feature matrix or a pzkit error."""

import numpy as np
import pandas as pd
import pytest
from _pzfuzz import examples, outcome_of
from hypothesis import assume, given
from hypothesis import strategies as st

from pzkit import PhotometryFeatures
from pzkit.exceptions import ColumnError, InputError, NonDetectionError
from pzkit.features import MAG_RANGE

BANDS = "ugrizy"
LIMITS = dict(zip(BANDS, (25.0, 26.0, 26.5, 26.0, 25.5, 24.5)))
SPECIALS = [np.nan, np.inf, -np.inf, 99.0, -99.0, 999.0, 1e30, -1e30, 1e300, 0.0, -5.0, 60.0, 35.0]


@st.composite
def catalogs(draw, max_rows=12):
    n = draw(st.integers(1, max_rows))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    mags = rng.uniform(16, 28, (n, len(BANDS)))
    errs = rng.uniform(0.001, 0.5, (n, len(BANDS)))
    for _ in range(draw(st.integers(0, 4))):
        target = mags if draw(st.booleans()) else errs
        target[draw(st.integers(0, n - 1)), draw(st.integers(0, len(BANDS) - 1))] = draw(st.sampled_from(SPECIALS))
    if draw(st.booleans()):  # constant features
        mags[:] = mags[0]
    return mags, errs


def to_container(mags, errs, kind, ids=None, ebv=None):
    cols = {}
    for j, b in enumerate(BANDS):
        cols[f"mag_{b}_lsst"] = mags[:, j]
        cols[f"mag_err_{b}_lsst"] = errs[:, j]
    if ids is not None:
        cols["id"] = ids
    if ebv is not None:
        cols["ebv"] = ebv
    if kind == "dict":
        return cols
    if kind == "pandas":
        return pd.DataFrame(cols)
    if kind == "astropy":
        from astropy.table import Table

        return Table(cols)
    if kind == "structured":
        return pd.DataFrame(cols).to_records(index=False)
    raise AssertionError(kind)


def reference(mags, errs, policy, sentinel, include_errors, include_fluxes):
    """Independent statement of the documented behaviour: (expected matrix, or the error class expected)."""
    mags = mags.astype(np.float64).copy()
    errs = errs.astype(np.float64).copy()
    nd = ~np.isfinite(mags)
    if sentinel is not None:
        nd |= mags == sentinel
    implausible = ~nd & ((mags < MAG_RANGE[0]) | (mags > MAG_RANGE[1]))
    if implausible.any():
        return InputError
    if include_errors:
        bad_err = ~nd & (~np.isfinite(errs) | (errs < 0) | ((errs == sentinel) if sentinel is not None else False))
        if bad_err.any():
            return NonDetectionError
    if nd.any():
        if policy == "raise":
            return NonDetectionError
        if policy == "limit":
            mags[nd] = np.broadcast_to(np.array([LIMITS[b] for b in BANDS]), mags.shape)[nd]
            errs[nd] = 1.0
        else:
            mags[nd] = np.nan
            errs[nd] = np.nan
    parts = [mags[:, :-1] - mags[:, 1:], mags[:, [BANDS.index("i")]]]
    if include_errors:
        parts.append(errs)
    if include_fluxes:
        parts.append(10.0 ** (-0.4 * (mags - 31.4)))
    return np.hstack(parts)


@examples(150)
@given(cat=catalogs(), policy=st.sampled_from(["raise", "limit", "nan"]), sentinel=st.sampled_from([99.0, None]),
       include_errors=st.booleans(), include_fluxes=st.booleans(),
       kind=st.sampled_from(["dict", "pandas", "astropy", "structured"]))
def test_special_values_give_the_documented_features_or_a_named_error(cat, policy, sentinel, include_errors,
                                                                      include_fluxes, kind):
    mags, errs = cat
    feats = PhotometryFeatures(nondetect=policy, nondetect_value=sentinel, mag_limits=LIMITS,
                               include_errors=include_errors, include_fluxes=include_fluxes)
    expected = reference(mags, errs, policy, sentinel, include_errors, include_fluxes)
    ok, out = outcome_of(lambda: feats.fit_transform(to_container(mags, errs, kind)), "PhotometryFeatures.transform")
    if isinstance(expected, type):
        assert not ok, f"expected {expected.__name__}, got a feature matrix"
        assert isinstance(out, expected), f"expected {expected.__name__}, got {type(out).__name__}: {out}"
        return
    assert ok, f"valid catalog refused: {out}"
    assert out.shape == expected.shape and out.dtype == np.float64
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expected))
    np.testing.assert_allclose(out, expected, rtol=1e-12, atol=0)
    if policy != "nan":
        assert np.all(np.isfinite(out)), "a non-nan policy gave non-finite features"


@examples(60)
@given(cat=catalogs(), dtype=st.sampled_from(["float16", "float32", "int16", "int64", "uint8", "object", "str",
                                              "bool", "complex128", "datetime64[s]"]),
       column=st.integers(0, 2 * len(BANDS) - 1), kind=st.sampled_from(["dict", "pandas", "astropy"]))
def test_column_dtypes_are_converted_exactly_or_refused_by_name(cat, dtype, column, kind):
    mags, errs = cat
    assume(np.all(np.isfinite(mags)) and np.all((mags > 10) & (mags < 40)))
    errs = np.abs(np.where(np.isfinite(errs), errs, 0.1)) % 1
    cols = to_container(mags, errs, "dict")
    name = list(cols)[column]
    values = cols[name]
    if dtype in ("int16", "int64", "uint8"):
        values = np.round(values).astype(dtype)
    elif dtype == "datetime64[s]":
        values = values.astype("int64").astype(dtype)
    else:
        values = values.astype(dtype)
    cols[name] = values
    data = pd.DataFrame(cols) if kind == "pandas" else cols
    if kind == "astropy":
        from astropy.table import Table

        data = Table(cols)
    feats = PhotometryFeatures(include_errors=True)
    ok, out = outcome_of(lambda: feats.fit_transform(data), "PhotometryFeatures.transform")
    numeric = dtype in ("float16", "float32", "int16", "int64", "uint8")
    if not numeric:
        if ok:  # an object column of plain floats may be read as numbers; it must then be exact
            assert dtype == "object", f"{dtype} column silently accepted"
        else:
            assert isinstance(out, (ColumnError, InputError)) and name in str(out), str(out)
        if not ok:
            return
    assert ok, f"numeric {dtype} column refused: {out}"
    j, is_err = divmod(column, 2)  # columns alternate mag_<band>, mag_err_<band>
    m2, e2 = mags.copy(), errs.copy()
    (e2 if is_err else m2)[:, j] = np.asarray(values, dtype=np.float64)
    expected = reference(m2, e2, "raise", 99.0, True, False)
    if isinstance(expected, type):  # e.g. the cast produced 99 or an implausible magnitude
        pytest.fail(f"catalog accepted although reference expects {expected.__name__}")
    np.testing.assert_allclose(out, expected, rtol=1e-12)


@examples(40)
@given(n=st.integers(0, 6), id_kind=st.sampled_from(["unique", "duplicate", "none", "nan", "str"]),
       kind=st.sampled_from(["dict", "pandas"]))
def test_ids_are_unique_and_present_or_refused(n, id_kind, kind):
    rng = np.random.default_rng(n)
    mags, errs = rng.uniform(18, 25, (n, 6)), rng.uniform(0.01, 0.1, (n, 6))
    ids = {"unique": np.arange(n) + 10, "str": np.array([f"g{i}" for i in range(n)], dtype=object),
           "duplicate": np.array([7] * n), "none": np.array([None] * n, dtype=object),
           "nan": np.full(n, np.nan)}[id_kind]
    feats = PhotometryFeatures(id_column="id")
    ok, out = outcome_of(lambda: feats.fit_transform(to_container(mags, errs, kind, ids=ids)),
                         "PhotometryFeatures.transform")
    bad = n == 0 or (id_kind == "duplicate" and n > 1) or (id_kind in ("none", "nan"))
    if bad:
        assert not ok and isinstance(out, InputError), f"{id_kind} ids (n={n}) accepted"
        assert n == 0 or "id" in str(out)
    else:
        assert ok, str(out)
        assert list(out.index) == list(ids) and out.index.name == "id"


@examples(40)
@given(perm=st.permutations(list(range(12))), rename=st.integers(-1, 11))
def test_column_order_does_not_matter_and_a_renamed_band_is_named(perm, rename):
    rng = np.random.default_rng(3)
    mags, errs = rng.uniform(18, 25, (5, 6)), rng.uniform(0.01, 0.1, (5, 6))
    base = to_container(mags, errs, "pandas")
    feats = PhotometryFeatures(include_errors=True).fit(base)
    expected = feats.transform(base)
    shuffled = base[[base.columns[i] for i in perm]]
    if rename >= 0:
        old = base.columns[rename]
        shuffled = shuffled.rename(columns={old: old.upper()})
    ok, out = outcome_of(lambda: feats.transform(shuffled), "PhotometryFeatures.transform")
    if rename >= 0:
        assert not ok and isinstance(out, ColumnError) and base.columns[rename] in str(out)
    else:
        assert ok
        np.testing.assert_array_equal(out, expected)


@examples(30)
@given(cat=catalogs(max_rows=6), ebv_bad=st.sampled_from([None, np.nan, np.inf, -np.inf]))
def test_dereddening_refuses_non_finite_ebv(cat, ebv_bad):
    mags, errs = cat
    assume(np.all(np.isfinite(mags)) and np.all((mags > 10) & (mags < 40)))
    ebv = np.full(len(mags), 0.05)
    if ebv_bad is not None:
        ebv[0] = ebv_bad
    coeffs = dict(zip(BANDS, (4.8, 3.6, 2.6, 2.0, 1.6, 1.3)))
    feats = PhotometryFeatures(ebv_column="ebv", extinction_coeffs=coeffs)
    ok, out = outcome_of(lambda: feats.fit_transform(to_container(mags, errs, "dict", ebv=ebv)),
                         "PhotometryFeatures.transform")
    if ebv_bad is None:
        assert ok and np.all(np.isfinite(out))
    else:
        assert not ok and "ebv" in str(out), "a non-finite E(B-V) went through"


@examples(30)
@given(cat=catalogs(max_rows=8), masked=st.lists(st.tuples(st.integers(0, 7), st.integers(0, 5)), max_size=3))
def test_masked_astropy_entries_are_non_detections_not_their_fill_values(cat, masked):
    from astropy.table import MaskedColumn, Table

    mags, errs = cat
    assume(np.all(np.isfinite(mags)) and np.all((mags > 10) & (mags < 40)))
    n = len(mags)
    mask = np.zeros_like(mags, dtype=bool)
    for i, j in masked:
        mask[i % n, j] = True
    t = Table()
    for j, b in enumerate(BANDS):
        t[f"mag_{b}_lsst"] = MaskedColumn(mags[:, j], mask=mask[:, j])
        t[f"mag_err_{b}_lsst"] = errs[:, j]
    ok, out = outcome_of(lambda: PhotometryFeatures(nondetect="raise").fit_transform(t), "PhotometryFeatures.transform")
    if mask.any():
        assert not ok and isinstance(out, NonDetectionError), "masked magnitudes were used as values"
    else:
        assert ok
    ok, out = outcome_of(lambda: PhotometryFeatures(nondetect="nan").fit_transform(t), "PhotometryFeatures.transform")
    assert ok
    expect = reference(np.where(mask, np.nan, mags), errs, "nan", 99.0, False, False)
    np.testing.assert_array_equal(np.isnan(out), np.isnan(expect))


def test_empty_catalog_is_refused():
    ok, out = outcome_of(lambda: PhotometryFeatures().fit_transform(to_container(np.zeros((0, 6)), np.zeros((0, 6)), "dict")),
                         "PhotometryFeatures.transform")
    assert not ok and "empty" in str(out)
