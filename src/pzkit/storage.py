"""Compact storage of redshift PDFs: the full grid, quantiles, a Gaussian mixture, or point estimates only.

A survey catalog of 10⁸ objects on a 301-point grid is 240 GB of float64; most uses need far less. Every
representation here is written in qp's own on-disk layout (``meta``/``data``/``ancil``), so ``qp.read`` and
RAIL read the files back; the ``point`` representation is a plain table (one row per object).

=============  ===================================  =====================================================
``storage``    qp class / content                   what it keeps
=============  ===================================  =====================================================
``grid``       ``qp.interp`` or ``qp.hist``          the estimator's own output, unchanged (float64)
``quantiles``  ``qp.quant``                         ``n_quantiles`` mid-point quantiles + the support ends
``mixmod``     ``qp.mixmod``                        a ``n_components`` Gaussian mixture fitted by EM on the grid
``point``      table                                the ancil only: id, zmode, zmedian, zmean, zstd, plugin flags
=============  ===================================  =====================================================

The summary columns (``zmode``, ``zmedian``, ...) always come from the full-grid PDF, before compression, so
the point estimates are identical whatever the representation. Bytes per galaxy and the accuracy each costs on
DC2 are in ``docs/scale.md``.

Files: ``.hdf5``/``.h5``/``.hdf`` is one HDF5 file (qp's layout); ``.pq``/``.parquet`` follows qp/tables_io's
Parquet layout, three files ``<stem>meta<ext>``, ``<stem>data<ext>``, ``<stem>ancil<ext>`` (the ``point``
representation writes one Parquet table at the path itself).
"""

import contextlib
import os

import numpy as np

from .exceptions import InputError
from .pdf import row_blocks

REPRESENTATIONS = ("grid", "quantiles", "mixmod", "point")
HDF5_SUFFIXES = (".hdf5", ".h5", ".hdf")
PARQUET_SUFFIXES = (".pq", ".parquet")

__all__ = ["Storage", "REPRESENTATIONS", "write_ensemble", "read", "output_paths"]


def _as_1d(value):
    arr = np.asarray(value)
    if arr.ndim == 2 and arr.shape[1] == 1:
        arr = arr[:, 0]
    return arr


def _pdf_name(ens):
    name = np.ravel(ens.metadata.get("pdf_name", [b""]))[0]
    return name.decode() if isinstance(name, bytes) else str(name)


def _grid_of(ens, rows=slice(None)):
    """(x, cdf) of the PDFs ``rows`` on their own grid: exact piecewise-linear CDFs for ``interp`` and ``hist``."""
    name = _pdf_name(ens)
    if name == "interp":
        x = np.ravel(ens.metadata["xvals"]).astype(np.float64)
        y = _non_negative(np.atleast_2d(ens.objdata["yvals"])[rows])
        seg = np.add(y[:, 1:], y[:, :-1])
        seg *= 0.5 * np.diff(x)  # = 0.5·(y₁ + y₀)·dx to the last bit: the factor 0.5 is exact
    elif name == "hist":
        x = np.ravel(ens.metadata["bins"]).astype(np.float64)
        seg = _non_negative(np.atleast_2d(ens.objdata["pdfs"])[rows]) * np.diff(x)
    else:
        raise InputError(f"compact storage needs an interp or hist ensemble, got {name!r}")
    cdf = np.empty((seg.shape[0], seg.shape[1] + 1))
    cdf[:, 0] = 0.0
    np.cumsum(seg, axis=1, out=cdf[:, 1:])
    cdf /= cdf[:, -1:]
    return x, cdf


def _non_negative(values):
    """``values`` as float64 with negatives clipped to 0; copied only when that changes anything (the encoding
    runs beside the estimator on every chunk of a survey run, and pzkit's own ensembles are non-negative)."""
    values = np.asarray(values, dtype=np.float64)
    return np.clip(values, 0.0, None) if values.size and values.min() < 0 else values


def grid_quantiles(x, cdf, quants):
    """Quantiles of piecewise-linear CDFs ``cdf`` (n, m) on abscissae ``x`` (m,), linearly inverted.

    All rows at once: the CDFs are put on an integer scale (resolution 2⁻⁴⁰) and row r is shifted by r·2⁴²,
    so the flattened array is sorted and one ``searchsorted`` finds every (row, quantile) bracket. Integers keep
    the search exact, so a row's quantiles do not depend on its position in a chunk (a float offset would round
    small CDF values away differently for different rows). q = 0 gives the start of the support (last point
    with CDF 0 on that scale), q = 1 its end (first point with CDF 1).
    """
    n, m = cdf.shape
    quants = np.asarray(quants, dtype=np.float64)
    scale = float(2**40)
    offset = np.arange(n, dtype=np.int64)[:, None] * (4 * 2**40)
    flat = np.rint(cdf * scale).astype(np.int64)
    flat += offset
    flat = flat.ravel()
    base = np.arange(n, dtype=np.int64)[:, None] * m
    rows = np.arange(n)[:, None]
    qi = np.clip(quants, 0.0, 1.0)
    targets = np.rint(qi * scale).astype(np.int64)
    # first point with CDF >= q for 0 < q < 1; for q = 0 the last point with CDF == 0, for q = 1 the first with 1
    side_left = np.searchsorted(flat, (targets[None, :] + offset).ravel(), side="left").reshape(n, -1) - base
    j = np.clip(side_left, 1, m - 1)
    c0, c1 = cdf[rows, j - 1], cdf[rows, j]
    frac = np.where(c1 > c0, (qi[None, :] - c0) / np.where(c1 > c0, c1 - c0, 1.0), 0.0)
    out = x[j - 1] + np.clip(frac, 0.0, 1.0) * (x[j] - x[j - 1])
    low = quants <= 0
    if np.any(low):  # the right-side search only for these columns: it cost as much as the left one
        side_right = np.searchsorted(flat, (targets[None, low] + offset).ravel(), side="right").reshape(n, -1) - base
        out[:, low] = x[np.clip(side_right - 1, 0, m - 1)]
    if np.any(quants >= 1):
        out[:, quants >= 1] = x[np.clip(side_left[:, quants >= 1], 0, m - 1)]
    return np.maximum.accumulate(out, axis=1)  # rounding must not make a quantile run backwards


def fit_mixture(x, cdf, n_components=3, n_iter=40, block=512):
    """Gaussian mixtures (means, stds, weights; each (n, K)) fitted to gridded PDFs by weighted EM.

    The grid points are the samples and each one's probability mass is its weight, so EM maximises the
    expected log-likelihood under the PDF itself. Vectorised over objects, ``block`` rows at a time: the
    (block, K, m) responsibilities are updated in place and reduced with matrix products, so one iteration
    allocates two such arrays (512 rows: 3.7 MB each at K = 3, m = 301, cache-sized; 8× larger blocks ran
    4× slower, page-faulting on fresh 30 MB arrays). Components start at the K quantiles (k + ½)/K; a width
    floor of one grid step keeps a component from collapsing onto a single grid point.
    """
    n, m = cdf.shape
    K = int(n_components)
    floor2 = float(np.min(np.diff(x))) ** 2
    x2 = x * x
    # mass of each grid point: half the adjacent trapezoid segments (the interp reading of the CDF)
    seg = np.diff(cdf, axis=1)
    mass = np.zeros_like(cdf)
    mass[:, :-1] += 0.5 * seg
    mass[:, 1:] += 0.5 * seg
    start = grid_quantiles(x, cdf, (np.arange(K) + 0.5) / K)
    means = np.empty((n, K))
    stds = np.empty((n, K))
    weights = np.empty((n, K))
    for b in range(0, n, block):
        w = mass[b:b + block]  # (B, m)
        mu = start[b:b + block].copy()
        mean_all = w @ x
        var_all = np.clip(w @ x2 - mean_all**2, floor2, None)
        sd = np.maximum(np.repeat((np.sqrt(var_all) / K)[:, None], K, axis=1), np.sqrt(floor2))
        pi = np.full_like(mu, 1.0 / K)
        for _ in range(n_iter):
            r = x[None, None, :] - mu[:, :, None]  # (B, K, m)
            r /= sd[:, :, None]
            r *= r
            r *= -0.5
            np.exp(r, out=r)
            r *= (pi / sd)[:, :, None]  # component likelihoods
            total = r.sum(axis=1, keepdims=True)
            np.maximum(total, 1e-300, out=total)
            r *= (w[:, None, :] / total)  # responsibilities × mass
            nk = np.maximum(r.sum(axis=2), 1e-300)
            mu = (r @ x) / nk
            sd = np.sqrt(np.maximum((r @ x2) / nk - mu * mu, floor2))
            pi = nk / nk.sum(axis=1, keepdims=True)
        means[b:b + block], stds[b:b + block], weights[b:b + block] = mu, sd, pi
    return means, stds, weights


class Storage:
    """One compact representation: encodes ensembles chunk by chunk into qp's ``meta``/``data``/``ancil``.

    Parameters
    ----------
    kind : {"grid", "quantiles", "mixmod", "point"}
    n_quantiles : int
        Quantiles stored per object (``quantiles``): (k + ½)/n for k = 0 … n−1, plus q = 0 and 1 (the support).
    n_components : int
        Gaussian components per object (``mixmod``).
    dtype : {"float32", "float64"}
        Storage precision of the compact representations (``grid`` keeps the estimator's float64).
    """

    def __init__(self, kind="quantiles", n_quantiles=32, n_components=3, dtype="float32"):
        if kind not in REPRESENTATIONS:
            raise InputError(f"storage must be one of {REPRESENTATIONS}, got {kind!r}")
        if not (isinstance(n_quantiles, (int, np.integer)) and n_quantiles >= 2):
            raise InputError(f"n_quantiles must be an integer >= 2, got {n_quantiles!r}")
        if not (isinstance(n_components, (int, np.integer)) and n_components >= 1):
            raise InputError(f"n_components must be a positive integer, got {n_components!r}")
        if np.dtype(dtype) not in (np.dtype("float32"), np.dtype("float64")):
            raise InputError(f"dtype must be float32 or float64, got {dtype!r}")
        self.kind = kind
        self.n_quantiles = int(n_quantiles)
        self.n_components = int(n_components)
        self.dtype = np.dtype(dtype).name

    def config(self):
        """A JSON-able description (stored with a run, so that a resumed run uses the same settings)."""
        return {"kind": self.kind, "n_quantiles": self.n_quantiles, "n_components": self.n_components,
                "dtype": self.dtype}

    @property
    def quants(self):
        inner = (np.arange(self.n_quantiles) + 0.5) / self.n_quantiles
        return np.concatenate([[0.0], inner, [1.0]])

    def encode(self, ens):
        """(data, ancil) of ``ens`` in this representation: dicts of (n, m) and (n,) arrays."""
        ancil = {k: _as_1d(v) for k, v in (ens.ancil or {}).items()}
        if self.kind == "point":
            return {}, ancil
        if self.kind == "grid":
            return {k: np.atleast_2d(v) for k, v in ens.objdata.items()}, ancil
        parts = [self._encode_rows(*_grid_of(ens, rows)) for rows in row_blocks(ens.npdf)]
        return {k: np.concatenate([p[k] for p in parts]) for k in parts[0]}, ancil

    def _encode_rows(self, x, cdf):
        if self.kind == "quantiles":
            return {"locs": self._quantile_locs(x, cdf)}
        means, stds, weights = fit_mixture(x, cdf, self.n_components)
        return {"means": means.astype(self.dtype), "stds": stds.astype(self.dtype),
                "weights": weights.astype(self.dtype)}

    def _quantile_locs(self, x, cdf):
        """Quantile locations for qp.quant.

        qp evaluates a quant CDF by *quadratic* interpolation of (locs, quants), which overshoots far outside
        [0, 1] when one interval is much wider than its neighbours, as the true support ends of a PDF with long
        faint tails are. So q = 0 and 1 are placed one quantile step beyond the first and last inner quantiles
        (inside the grid); beyond them qp's CDF is 0 and 1. Locations are made strictly increasing (steps of at
        least 10⁻⁵ of the grid span) because qp's interpolation refuses repeated abscissae."""
        locs = grid_quantiles(x, cdf, self.quants)
        locs[:, 0] = np.maximum(x[0], 2 * locs[:, 1] - locs[:, 2])
        locs[:, -1] = np.minimum(x[-1], 2 * locs[:, -2] - locs[:, -3])
        eps = 1e-5 * (x[-1] - x[0])
        ramp = eps * np.arange(locs.shape[1])
        locs = np.maximum.accumulate(locs - ramp, axis=1) + ramp
        return locs.astype(self.dtype)

    def meta(self, ens):
        """qp's ``meta`` table for this representation (dict of arrays), as ``Ensemble.build_tables`` writes it."""
        if self.kind == "point":
            return None
        if self.kind == "grid":
            return ens.build_tables()["meta"]
        small = self.to_ensemble(self.encode(ens[0:1] if ens.npdf > 1 else ens)[0], None, grid_meta=None)
        return small.build_tables()["meta"]

    def to_ensemble(self, data, ancil, grid_meta=None):
        """A qp.Ensemble from encoded ``data`` (and ``ancil``); ``grid_meta`` is the source's meta for ``grid``."""
        import qp

        if self.kind == "point":
            raise InputError("the 'point' representation keeps no PDF")
        if self.kind == "quantiles":
            ens = qp.Ensemble(qp.quant, data=dict(quants=self.quants, locs=np.asarray(data["locs"], np.float64)))
        elif self.kind == "mixmod":
            ens = qp.Ensemble(qp.mixmod, data={k: np.asarray(data[k], np.float64) for k in ("means", "stds", "weights")})
        else:
            name = np.ravel(grid_meta["pdf_name"])[0]
            name = name.decode() if isinstance(name, bytes) else str(name)
            if name == "interp":
                ens = qp.Ensemble(qp.interp, data=dict(xvals=np.ravel(grid_meta["xvals"]), yvals=data["yvals"]))
            else:
                ens = qp.Ensemble(qp.hist, data=dict(bins=np.ravel(grid_meta["bins"]), pdfs=data["pdfs"]))
        if ancil:
            ens.set_ancil(dict(ancil))
        return ens

    def bytes_per_object(self, data, ancil, include_ancil=True):
        n = len(next(iter(ancil.values()))) if ancil else len(next(iter(data.values())))
        total = sum(np.asarray(v).nbytes for v in data.values())
        if include_ancil:
            total += sum(np.asarray(v).nbytes for v in ancil.values())
        return total / max(n, 1)


# ---------------------------------------------------------------------------------------------- files
def output_format(path):
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix in HDF5_SUFFIXES:
        return "hdf5"
    if suffix in PARQUET_SUFFIXES:
        return "parquet"
    raise InputError(f"output {path!r}: unknown format; use one of {HDF5_SUFFIXES + PARQUET_SUFFIXES}")


def output_paths(path, kind):
    """The file(s) an output named ``path`` consists of (qp's Parquet layout is three files)."""
    path = os.fspath(path)
    if output_format(path) == "hdf5" or kind == "point":
        return [path]
    stem, ext = os.path.splitext(path)
    return [f"{stem}{part}{ext}" for part in ("data", "ancil", "meta")]


def _h5_safe(arr):
    arr = np.asarray(arr)
    if arr.dtype.kind == "U":
        return np.char.encode(arr, "utf-8")
    if arr.dtype.kind == "O":
        raise InputError("object-dtype columns cannot be stored; convert ids to numbers or strings")
    return arr


class _HDF5Writer:
    """qp's HDF5 layout (groups meta, data, ancil), datasets created at full size and filled chunk by chunk."""

    def __init__(self, path, n_total, meta, kind):
        import h5py

        self.path, self.n, self.kind = path, n_total, kind
        self.fh = h5py.File(path, "w")
        if meta is not None:
            g = self.fh.create_group("meta")
            for k, v in meta.items():
                g.create_dataset(k, data=_h5_safe(v))
        self.data_group = self.fh.create_group("data") if kind != "point" else None
        self.ancil_group = self.fh.create_group("ancil") if kind != "point" else self.fh
        self.datasets = {}

    def _dataset(self, group, key, arr):
        if (group.name, key) not in self.datasets:
            shape = (self.n,) + arr.shape[1:]
            chunks = (min(self.n, max(1, 2**20 // max(arr[0:1].nbytes, 1))),) + arr.shape[1:]
            self.datasets[(group.name, key)] = group.create_dataset(key, shape=shape, dtype=arr.dtype, chunks=chunks)
        return self.datasets[(group.name, key)]

    def write(self, start, data, ancil):
        for group, cols in ((self.data_group, data), (self.ancil_group, ancil)):
            for k, v in cols.items():
                v = _h5_safe(v)
                self._dataset(group, k, v)[start:start + len(v)] = v

    def close(self):
        self.fh.close()


class _ParquetWriter:
    """qp/tables_io's Parquet layout: data and ancil row-appended (one row group per chunk), meta at the end."""

    def __init__(self, paths, n_total, meta, kind):
        self.paths, self.kind, self.meta = paths, kind, meta
        self.writers = {}

    @staticmethod
    def _table(cols):
        import pyarrow as pa

        arrays, names = [], []
        for k, v in cols.items():
            v = np.asarray(v)
            if v.ndim == 2:
                arrays.append(pa.FixedSizeListArray.from_arrays(pa.array(np.ascontiguousarray(v).ravel()), v.shape[1]))
            else:
                arrays.append(pa.array(v))
            names.append(k)
        return pa.table(arrays, names=names)

    def _write(self, role, path, cols):
        import pyarrow.parquet as pq

        table = self._table(cols)
        if role not in self.writers:
            self.writers[role] = pq.ParquetWriter(path, table.schema)
        self.writers[role].write_table(table)

    def write(self, start, data, ancil):
        if self.kind == "point":
            self._write("ancil", self.paths[0], ancil)
            return
        self._write("data", self.paths[0], data)
        self._write("ancil", self.paths[1], ancil)

    def close(self):
        import pyarrow as pa
        import pyarrow.parquet as pq

        for w in self.writers.values():
            w.close()
        if self.kind != "point":
            cols = {}
            for k, v in self.meta.items():
                v = np.asarray(v)
                cols[k] = pa.array([list(v[0])]) if v.ndim == 2 else pa.array(list(v))
            pq.write_table(pa.table(cols), self.paths[2])


def open_writer(path, tmp_paths, n_total, meta, kind):
    if output_format(path) == "hdf5":
        return _HDF5Writer(tmp_paths[0], n_total, meta, kind)
    return _ParquetWriter(tmp_paths, n_total, meta, kind)


def write_ensemble(ens, path, storage="quantiles", overwrite=False, **options):
    """Write one in-memory ensemble in a compact representation (see :class:`Storage`), atomically."""
    store = storage if isinstance(storage, Storage) else Storage(storage, **options)
    paths = output_paths(path, store.kind)
    existing = [p for p in paths if os.path.exists(p)]
    if existing and not overwrite:
        raise InputError(f"output exists: {existing}; pass overwrite=True to replace it")
    data, ancil = store.encode(ens)
    with staged_outputs(paths) as tmps:
        writer = open_writer(path, tmps, ens.npdf, store.meta(ens), store.kind)
        writer.write(0, data, ancil)
        writer.close()
    return paths


@contextlib.contextmanager
def staged_outputs(paths):
    """Temporary files next to ``paths`` (same file system), renamed onto them only if the block succeeds and
    removed in every case, so an output that exists is always complete."""
    tmps = [_tmp_name(p) for p in paths]
    try:
        yield tmps
        for t, p in zip(tmps, paths):
            os.replace(t, p)
    finally:
        for t in tmps:
            if os.path.exists(t):
                os.unlink(t)


def _tmp_name(path):
    d, b = os.path.split(os.path.abspath(path))
    return os.path.join(d, f".{b}.tmp-{os.getpid()}")


def read(path):
    """A qp.Ensemble (grid, quantiles, mixmod) or a pandas DataFrame (point) from a file this module wrote."""
    path = os.fspath(path)
    fmt = output_format(path)
    if fmt == "parquet" and os.path.exists(path):
        import pandas as pd

        return pd.read_parquet(path)
    if fmt == "hdf5":
        import h5py

        with h5py.File(path, "r") as fh:
            if "meta" not in fh:
                import pandas as pd

                return pd.DataFrame({k: fh[k][:] for k in fh})
    import qp

    return qp.read(path)
