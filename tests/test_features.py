import numpy as np
import pandas as pd
import pytest
from astropy.table import Table

from pzkit import PhotometryFeatures
from pzkit.exceptions import ColumnError, InputError, NonDetectionError


def _cat(**over):
    data = {
        "id": np.array([10, 11, 12]),
        "mag_g": np.array([22.0, 23.0, 24.0]),
        "mag_r": np.array([21.5, 22.0, 99.0]),
        "mag_i": np.array([21.0, 21.8, 23.0]),
        "err_g": np.array([0.01, 0.02, 0.05]),
        "err_r": np.array([0.01, 0.02, 99.0]),
        "err_i": np.array([0.01, 0.02, 0.04]),
        "ebv": np.array([0.1, 0.0, 0.2]),
    }
    data.update(over)
    return data


def _pf(**kw):
    params = dict(bands="gri", mag_column="mag_{band}", err_column="err_{band}", ref_band="i")
    params.update(kw)
    return PhotometryFeatures(**params)


def test_colours_and_reference_magnitude_by_hand():
    cat = _cat(mag_r=np.array([21.5, 22.0, 23.5]), err_r=np.array([0.01, 0.02, 0.03]))
    out = _pf().fit_transform(cat)
    expected = np.array([[0.5, 0.5, 21.0], [1.0, 0.2, 21.8], [0.5, 0.5, 23.0]])
    np.testing.assert_allclose(out, expected, atol=1e-12)
    assert list(_pf().fit(cat).get_feature_names_out()) == ["g-r", "r-i", "mag_i"]


def test_default_policy_refuses_nondetections_and_names_the_column():
    with pytest.raises(NonDetectionError, match=r"'mag_r': 1.*nondetect='limit'"):
        _pf().fit_transform(_cat())


def test_limit_policy_replaces_magnitude_and_error():
    pf = _pf(nondetect="limit", mag_limits={"g": 25.0, "r": 24.5, "i": 24.0}, include_errors=True,
             limit_error=0.75)
    out = pf.fit_transform(_cat())
    np.testing.assert_allclose(out[2, :3], [24.0 - 24.5, 24.5 - 23.0, 23.0])
    np.testing.assert_allclose(out[2, 3:], [0.05, 0.75, 0.04])
    assert list(pf.get_feature_names_out()) == ["g-r", "r-i", "mag_i", "magerr_g", "magerr_r", "magerr_i"]


def test_limit_policy_needs_every_limit():
    with pytest.raises(InputError, match=r"mag_limits for every band; missing: \['r', 'i'\]"):
        _pf(nondetect="limit", mag_limits={"g": 25.0}).fit(_cat())


def test_nan_policy_passes_nan_and_treats_inf_and_nan_as_nondetections():
    cat = _cat(mag_g=np.array([np.inf, 23.0, 24.0]), mag_i=np.array([21.0, np.nan, 23.0]))
    out = _pf(nondetect="nan").fit_transform(cat)
    assert np.isnan(out[0, 0]) and np.isnan(out[1, 1]) and np.isnan(out[1, 2]) and np.isnan(out[2, 0])
    assert np.isfinite(out[0, 1]) and np.isfinite(out[0, 2])


def test_bad_error_of_a_detection_is_refused():
    cat = _cat(mag_r=np.array([21.5, 22.0, 23.5]), err_r=np.array([0.01, np.nan, 0.03]))
    with pytest.raises(NonDetectionError, match="err_r"):
        _pf(include_errors=True).fit_transform(cat)


def test_dereddening():
    cat = _cat(mag_r=np.array([21.5, 22.0, 23.5]))
    coeffs = {"g": 3.0, "r": 2.0, "i": 1.5}
    out = _pf(ebv_column="ebv", extinction_coeffs=coeffs).fit_transform(cat)
    # g-r changes by -(3.0-2.0)*E, the i magnitude by -1.5*E
    np.testing.assert_allclose(out[:, 0], np.array([0.5, 1.0, 0.5]) - 1.0 * cat["ebv"])
    np.testing.assert_allclose(out[:, 2], cat["mag_i"] - 1.5 * cat["ebv"])


def test_fluxes_in_njy():
    cat = _cat(mag_r=np.array([31.4, 22.0, 23.5]))
    out = _pf(include_fluxes=True).fit_transform(cat)
    assert out[0, 3 + 1] == pytest.approx(1.0)  # m = 31.4 is 1 nJy


def test_missing_column_is_named():
    cat = _cat()
    del cat["mag_i"]
    with pytest.raises(ColumnError, match=r"missing column\(s\) \['mag_i'\]"):
        _pf(nondetect="nan").fit(cat)


def test_wrong_dtype_is_named():
    with pytest.raises(ColumnError, match="column 'mag_g' must be numeric"):
        _pf(nondetect="nan").fit_transform(_cat(mag_g=np.array(["a", "b", "c"])))


def test_empty_catalog():
    empty = {k: v[:0] for k, v in _cat().items()}
    with pytest.raises(InputError, match="empty"):
        _pf(nondetect="nan").fit_transform(empty)


@pytest.mark.parametrize("kind", ["dataframe", "table", "structured", "hdf5", "parquet"])
def test_input_types_give_the_same_features(kind, tmp_path):
    cat = _cat(mag_r=np.array([21.5, 22.0, 23.5]))
    expected = _pf().fit_transform(cat)
    if kind == "dataframe":
        x = pd.DataFrame(cat)
    elif kind == "table":
        x = Table(cat)
    elif kind == "structured":
        x = pd.DataFrame(cat).to_records(index=False)
    else:
        import tables_io

        x = str(tmp_path / f"cat.{ 'hdf5' if kind == 'hdf5' else 'pq'}")
        tables_io.write(pd.DataFrame(cat), x) if kind == "parquet" else tables_io.write(
            {k: np.asarray(v) for k, v in cat.items()}, x)
    np.testing.assert_allclose(_pf().fit_transform(x), expected)


def test_id_column_gives_indexed_frame():
    out = _pf(nondetect="nan", id_column="id").fit_transform(_cat())
    assert isinstance(out, pd.DataFrame)
    assert out.index.name == "id" and list(out.index) == [10, 11, 12]


def test_params_are_validated():
    with pytest.raises(InputError, match="ref_band 'u' is not one of bands"):
        _pf(ref_band="u").fit(_cat())
    with pytest.raises(InputError, match="nondetect must be one of"):
        _pf(nondetect="guess").fit(_cat())
    with pytest.raises(InputError, match="must contain '{band}'"):
        _pf(mag_column="mag").fit(_cat())
