"""From a photometric catalog to a feature matrix, with every choice explicit."""

import os

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from .exceptions import ColumnError, InputError, NonDetectionError

NONDETECT_POLICIES = ("raise", "limit", "nan")
#: AB zero point of fluxes in nJy: f = 10**(-0.4 (m - 31.4)) nJy.
AB_NJY_ZEROPOINT = 31.4
#: Magnitudes outside this range are not measurements: sentinels (−99, 999, ...) or corrupted values.
MAG_RANGE = (-30.0, 50.0)


def read_catalog(catalog, groupname=None):
    """A column mapping (name -> 1-d array) from a DataFrame, astropy Table, dict, structured array or path.

    Paths are read with ``tables_io`` (HDF5, Parquet, FITS, ...). When the file holds groups (RAIL's DC2
    files keep their columns under ``photometry``), ``groupname`` picks one; a file with a single group
    is used as it is.
    """
    if isinstance(catalog, (str, os.PathLike)):
        catalog = _read_path(os.fspath(catalog), groupname)
    if hasattr(catalog, "column_names") and hasattr(catalog, "to_pandas"):  # pyarrow.Table (tables_io's Parquet)
        return {c: catalog.column(c).to_numpy() for c in catalog.column_names}, None
    if hasattr(catalog, "colnames"):  # astropy Table (checked first: it also has .columns and .iloc)
        return {c: _unmasked(catalog[c], c) for c in catalog.colnames}, None
    if hasattr(catalog, "columns") and hasattr(catalog, "iloc"):  # pandas DataFrame
        return {str(c): _pandas_values(catalog[c]) for c in catalog.columns}, catalog.index
    if isinstance(catalog, np.ndarray) and catalog.dtype.names:
        return {c: catalog[c] for c in catalog.dtype.names}, None
    if isinstance(catalog, dict):
        return {str(k): np.asarray(v) for k, v in catalog.items()}, None
    raise InputError(
        "catalog must be a pandas DataFrame, astropy Table, dict of arrays, numpy structured array or a "
        f"file path readable by tables_io; got {type(catalog).__name__}"
    )


def _unmasked(column, name):
    """Column values with masked entries as NaN: ``np.asarray`` would silently return the fill values."""
    mask = np.ma.getmask(column)
    if mask is np.ma.nomask or not np.any(mask):
        return np.asarray(column)
    data = np.ma.getdata(column)
    if data.dtype.kind not in "fiu":
        raise ColumnError(f"column {name!r} has {int(np.sum(mask))} masked entries and dtype {data.dtype}, "
                          "which cannot hold NaN: fill or drop them")
    out = data.astype(np.float64)
    out[np.asarray(mask)] = np.nan
    return out


def _pandas_values(series):
    """Values of a DataFrame column; nullable numeric columns (``Float64``, ``Int64``) give NaN for <NA>."""
    dtype = series.dtype
    if getattr(dtype, "kind", "O") in "fiu" and not isinstance(dtype, np.dtype):  # pandas extension dtype
        return series.to_numpy(dtype=np.float64, na_value=np.nan)
    return series.to_numpy()


def _read_path(path, groupname):
    if not os.path.exists(path):
        raise InputError(f"catalog file not found: {path}")
    import tables_io

    try:
        data = tables_io.read(path)
    except Exception as exc:
        raise InputError(f"cannot read catalog file {path}: {type(exc).__name__}: {exc}") from exc
    nested = isinstance(data, dict) and data and all(isinstance(v, dict) for v in data.values())
    if groupname is not None:
        if not nested or groupname not in data:
            groups = sorted(data) if nested else []
            raise InputError(f"catalog file {path} has no group {groupname!r}; groups: {groups}")
        return data[groupname]
    if nested:
        if len(data) != 1:
            raise InputError(f"catalog file {path} holds groups {sorted(data)}; choose one with groupname=")
        return next(iter(data.values()))
    return data


def _check_finite_mapping(mapping, bands, name, bounds):
    bad = {}
    for b in bands:
        try:
            v = float(mapping[b])
        except (TypeError, ValueError):
            bad[b] = mapping[b]
            continue
        if not (np.isfinite(v) and bounds[0] <= v <= bounds[1]):
            bad[b] = mapping[b]
    if bad:
        raise InputError(f"{name} must be finite numbers{'' if bounds[0] == -np.inf else f' in {bounds}'}; "
                         f"got {bad}")


def _check_ids(ids, name):
    """Object ids must be present and unique: they are how an output row is matched back to its galaxy."""
    import pandas as pd

    missing = pd.isna(ids)
    if np.any(missing):
        first = int(np.flatnonzero(missing)[0])
        raise InputError(f"id column {name!r} has {int(np.sum(missing))} missing id(s) (None/NaN), first at row {first}")
    if ids.size > 1:
        index = pd.Index(ids)
        if not index.is_unique:
            dup = index[index.duplicated()].unique()
            raise InputError(f"id column {name!r} has {int(index.duplicated().sum())} duplicated id(s), "
                             f"e.g. {list(dup[:5])}: every object needs its own id")
    return ids


class PhotometryFeatures(TransformerMixin, BaseEstimator):
    """Turn a photometric catalog into photo-z features: adjacent colours, a reference magnitude and,
    optionally, magnitude errors and fluxes.

    Input is a pandas DataFrame, an astropy Table, a dict of arrays, a numpy structured array, or a file
    path read with ``tables_io``. Column names come from an explicit band → column mapping.

    Parameters
    ----------
    bands : sequence of str
        Band names in wavelength order; colours are formed between neighbours (``"ugrizy"`` → u−g, g−r, …).
    mag_column, err_column : str
        Column-name templates with a ``{band}`` placeholder. The DC2 defaults are RAIL's names.
    ref_band : str
        Band whose magnitude is appended as the reference magnitude.
    include_errors : bool
        Append the magnitude error of every band.
    include_fluxes : bool
        Append the flux of every band in nJy (AB), f = 10^(−0.4 (m − 31.4)).
    nondetect : {"raise", "limit", "nan"}
        Policy for non-detections, i.e. magnitudes equal to ``nondetect_value``, NaN or ±inf:
        ``"raise"`` refuses them with an error naming the columns; ``"limit"`` replaces the magnitude by the
        band's ``mag_limits`` entry and its error by ``limit_error``; ``"nan"`` passes NaN on to an
        estimator that handles missing values. There is no silent default: ``"raise"`` is the default.
    nondetect_value : float or None
        Sentinel that marks a non-detection in the catalog (99 in RAIL/DC2); None if the catalog has none.
    mag_limits : dict band -> float, optional
        Limiting magnitudes, required by ``nondetect="limit"`` for every band (e.g.
        ``pzkit.datasets.DC2_MAG_LIMITS``).
    limit_error : float
        Magnitude error given to a magnitude replaced by its limit; only used with ``include_errors``.
    ebv_column : str, optional
        Column of Galactic E(B−V); magnitudes are dereddened as m − R_band·E(B−V), after non-detection
        replacement (limits are observed depths and are dereddened like detections).
    extinction_coeffs : dict band -> float, optional
        R_band = A_band / E(B−V), required with ``ebv_column``.
    id_column : str, optional
        When set, the output is a pandas DataFrame indexed by this column (index name = the column name),
        so object ids travel through a Pipeline into ``estimate_pdf``'s ancil.
    groupname : str, optional
        HDF5 group to read when the input is a file with several groups.
    """

    def __init__(
        self,
        bands="ugrizy",
        mag_column="mag_{band}_lsst",
        err_column="mag_err_{band}_lsst",
        ref_band="i",
        include_errors=False,
        include_fluxes=False,
        nondetect="raise",
        nondetect_value=99.0,
        mag_limits=None,
        limit_error=1.0,
        ebv_column=None,
        extinction_coeffs=None,
        id_column=None,
        groupname=None,
    ):
        self.bands = bands
        self.mag_column = mag_column
        self.err_column = err_column
        self.ref_band = ref_band
        self.include_errors = include_errors
        self.include_fluxes = include_fluxes
        self.nondetect = nondetect
        self.nondetect_value = nondetect_value
        self.mag_limits = mag_limits
        self.limit_error = limit_error
        self.ebv_column = ebv_column
        self.extinction_coeffs = extinction_coeffs
        self.id_column = id_column
        self.groupname = groupname

    # ------------------------------------------------------------------ parameters
    def _check_params(self):
        bands = list(self.bands)
        if len(bands) < 2:
            raise InputError(f"bands needs at least two bands to form a colour, got {self.bands!r}")
        if len(set(bands)) != len(bands):
            raise InputError(f"bands contains duplicates: {self.bands!r}")
        if self.ref_band not in bands:
            raise InputError(f"ref_band {self.ref_band!r} is not one of bands {bands}")
        for name in ("mag_column", "err_column"):
            template = getattr(self, name)
            if "{band}" not in str(template):
                raise InputError(f"{name} must contain '{{band}}', got {template!r}")
        if self.nondetect not in NONDETECT_POLICIES:
            raise InputError(f"nondetect must be one of {NONDETECT_POLICIES}, got {self.nondetect!r}")
        if self.nondetect == "limit":
            missing = [b for b in bands if b not in (self.mag_limits or {})]
            if missing:
                raise InputError(f"nondetect='limit' needs mag_limits for every band; missing: {missing}")
            _check_finite_mapping(self.mag_limits, bands, "mag_limits", MAG_RANGE)
        if self.ebv_column is not None:
            missing = [b for b in bands if b not in (self.extinction_coeffs or {})]
            if missing:
                raise InputError(f"ebv_column is set, so extinction_coeffs needs every band; missing: {missing}")
            _check_finite_mapping(self.extinction_coeffs, bands, "extinction_coeffs", (-np.inf, np.inf))
        return bands

    def _mag_col(self, band):
        return self.mag_column.format(band=band)

    def _err_col(self, band):
        return self.err_column.format(band=band)

    def required_columns(self):
        """Catalog columns this transformer reads."""
        bands = self._check_params()
        cols = [self._mag_col(b) for b in bands]
        if self.include_errors:
            cols += [self._err_col(b) for b in bands]
        if self.ebv_column is not None:
            cols.append(self.ebv_column)
        if self.id_column is not None:
            cols.append(self.id_column)
        return cols

    # ------------------------------------------------------------------ sklearn API
    def fit(self, X, y=None):
        """Check the parameters and that the catalog carries the needed columns; learns nothing else."""
        bands = self._check_params()
        self._columns(X)
        names = [f"{a}-{b}" for a, b in zip(bands[:-1], bands[1:])] + [f"mag_{self.ref_band}"]
        if self.include_errors:
            names += [f"magerr_{b}" for b in bands]
        if self.include_fluxes:
            names += [f"flux_{b}" for b in bands]
        self.feature_names_out_ = np.asarray(names, dtype=object)
        self.n_features_out_ = len(names)
        return self

    def get_feature_names_out(self, input_features=None):
        check_is_fitted(self, "feature_names_out_")
        return self.feature_names_out_.copy()

    def transform(self, X):
        """Feature matrix (n, n_features_out_) of float64; a DataFrame indexed by ids if ``id_column`` is set."""
        check_is_fitted(self, "feature_names_out_")
        bands = self._check_params()
        cols, n = self._columns(X)
        mags = np.column_stack([cols[self._mag_col(b)] for b in bands])
        errs = np.column_stack([cols[self._err_col(b)] for b in bands]) if self.include_errors else None
        mags, errs = self._apply_nondetect_policy(mags, errs, bands)
        if self.ebv_column is not None:
            ebv = cols[self.ebv_column]
            if not np.all(np.isfinite(ebv)):
                bad = np.flatnonzero(~np.isfinite(ebv))
                raise InputError(f"column {self.ebv_column!r} (E(B-V)) has {bad.size} non-finite value(s), first at "
                                 f"row {int(bad[0])}: dereddening would turn every magnitude of those rows into NaN")
            r = np.array([float(self.extinction_coeffs[b]) for b in bands], dtype=np.float64)
            mags = mags - ebv[:, None] * r[None, :]
        parts = [mags[:, :-1] - mags[:, 1:], mags[:, [bands.index(self.ref_band)]]]
        if errs is not None:
            parts.append(errs)
        if self.include_fluxes:
            parts.append(10.0 ** (-0.4 * (mags - AB_NJY_ZEROPOINT)))
        out = np.hstack(parts)
        if self.id_column is None:
            return out
        import pandas as pd

        return pd.DataFrame(
            out,
            columns=list(self.feature_names_out_),
            index=pd.Index(cols[self.id_column], name=self.id_column),
        )

    # ------------------------------------------------------------------ internals
    def _columns(self, X):
        data, _ = read_catalog(X, self.groupname)
        needed = self.required_columns()
        missing = [c for c in needed if c not in data]
        if missing:
            available = ", ".join(sorted(data)[:20])
            raise ColumnError(f"catalog is missing column(s) {missing}; it has: {available}")
        lengths = {c: np.shape(data[c]) for c in needed}
        n = None
        out = {}
        for c in needed:
            arr = np.asarray(data[c])
            if arr.ndim != 1:
                raise ColumnError(f"column {c!r} must be one value per object, got shape {arr.shape}")
            if n is None:
                n = arr.shape[0]
            elif arr.shape[0] != n:
                raise ColumnError(f"columns have different lengths: {lengths}")
            if c == self.id_column:
                out[c] = _check_ids(arr, c)
                continue
            if arr.dtype.kind not in "fiu" or arr.dtype.kind == "b":
                raise ColumnError(f"column {c!r} must be numeric, got dtype {arr.dtype}")
            out[c] = arr.astype(np.float64)
        if not n:
            raise InputError("catalog is empty (0 rows)")
        return out, n


    def _apply_nondetect_policy(self, mags, errs, bands):
        bad = ~np.isfinite(mags)
        if self.nondetect_value is not None:
            bad |= mags == self.nondetect_value
        implausible = ~bad & ((mags < MAG_RANGE[0]) | (mags > MAG_RANGE[1]))
        if implausible.any():
            rows, cols = np.nonzero(implausible)
            where = {self._mag_col(bands[j]): float(mags[i, j]) for i, j in zip(rows[:5], cols[:5])}
            raise InputError(
                f"{int(implausible.sum())} magnitude(s) outside {MAG_RANGE} cannot be measurements, e.g. {where} "
                f"(first at row {int(rows[0])}); if they mark non-detections, set nondetect_value to that sentinel "
                f"(now {self.nondetect_value!r})"
            )
        if errs is not None:
            bad_err = (~np.isfinite(errs) | (errs < 0)) & ~bad
            if self.nondetect_value is not None:
                bad_err |= (errs == self.nondetect_value) & ~bad
            if bad_err.any():
                cols = [self._err_col(b) for b, k in zip(bands, bad_err.any(axis=0)) if k]
                raise NonDetectionError(
                    f"{int(bad_err.sum())} detected magnitude(s) have an invalid error (NaN, inf, negative or "
                    f"{self.nondetect_value}) in column(s) {cols}"
                )
        if not bad.any():
            return mags, errs
        if self.nondetect == "raise":
            counts = {self._mag_col(b): int(k) for b, k in zip(bands, bad.sum(axis=0)) if k}
            raise NonDetectionError(
                f"non-detections ({self.nondetect_value}, NaN or inf) found: {counts}. Choose a policy: "
                "nondetect='limit' with mag_limits, or nondetect='nan' for estimators that handle NaN"
            )
        mags = mags.copy()
        errs = None if errs is None else errs.copy()
        if self.nondetect == "limit":
            limits = np.array([self.mag_limits[b] for b in bands], dtype=np.float64)
            mags[bad] = np.broadcast_to(limits, mags.shape)[bad]
            fill_err = self.limit_error
        else:
            mags[bad] = np.nan
            fill_err = np.nan
        if errs is not None:
            errs[bad] = fill_err
        return mags, errs
