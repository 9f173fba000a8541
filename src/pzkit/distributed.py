"""Estimation on Dask: ``estimate_pdf`` over the partitions of a ``dask.dataframe`` (needs ``pzkit[dask]``).

    import dask
    import dask.dataframe as dd
    from distributed import Client, LocalCluster
    import pzkit.distributed as pzd

    with dask.config.set(pzd.worker_config()):   # glibc settings for NumPy-heavy workers (see WORKER_ENVIRON)
        client = Client(LocalCluster(n_workers=2, threads_per_worker=1))
    cat = dd.read_parquet("catalog.parquet", columns=pzd.required_columns(model))
    out = pzd.estimate_partitions(model, cat, storage="quantiles")   # lazy dask DataFrame, one row per input row
    out.to_parquet("pdfs/")                                          # or pzd.to_ensemble(out.compute(), ...)

Dask does the scheduling (no home-made scheduler here). The fitted model enters the graph once, as one
``dask.delayed`` object: each worker receives it once, whatever the number of partitions, and every
partition task uses the worker's copy. Each output partition keeps the index and row count of its input
partition (checked), so ids and order are those of the input. The PDF representation is encoded with
:class:`pzkit.storage.Storage` into flat columns (``locs_0`` … for quantiles, ``yvals_0`` … for the grid,
``means_0``/``stds_0``/``weights_0`` … for a mixture), which :func:`to_ensemble` turns back into a qp ensemble.
Catalogs in HATS/LSDB form work the same way: ``lsdb.read_hats(path).to_dask_dataframe()`` is a dask
DataFrame.
"""

import gc

import numpy as np

from .exceptions import InputError
from .storage import Storage
from .streaming import StreamingError, _required_columns

__all__ = ["estimate_partitions", "required_columns", "to_ensemble", "WORKER_ENVIRON", "worker_config"]

#: Environment for Dask worker processes. Dask's nanny sets ``MALLOC_TRIM_THRESHOLD_=65536`` in every worker,
#: and setting any malloc threshold turns off glibc's adaptive mmap threshold: every array above 128 kB is
#: then a fresh mmap that page-faults on each use. Measured on 25,000-row kNN partitions: 3.4 s in a worker
#: against 2.2 s in a plain process; fixing the mmap threshold at the adaptive maximum (32 MB) brings it back
#: to 2.3–2.6 s.
WORKER_ENVIRON = {"MALLOC_MMAP_THRESHOLD_": "33554432"}


def worker_config():
    """Dask config that gives new worker processes :data:`WORKER_ENVIRON`; use it around cluster start-up:
    ``with dask.config.set(pzd.worker_config()): cluster = LocalCluster(...)``."""
    return {f"distributed.nanny.pre-spawn-environ.{k}": v for k, v in WORKER_ENVIRON.items()}


def required_columns(model, columns=None, id_column=None):
    """The catalog columns ``model`` reads (for ``dd.read_parquet(..., columns=...)``)."""
    return _required_columns(model, columns, id_column)[0]


def _estimate_partition(df, model, store_config, needed, ids_from, feature_id):
    import pandas as pd

    store = Storage(**store_config)
    n = len(df)
    if n == 0:
        return None
    cols = {c: df[c].to_numpy() for c in needed}
    kwargs = {"ids": cols[ids_from]} if ids_from is not None and ids_from != feature_id else {}
    try:
        ens = model.estimate_pdf(cols, **kwargs)
    except Exception as exc:
        first = df.index[0] if n else None
        raise StreamingError(f"partition starting at index {first!r} ({n} rows) failed: "
                             f"{type(exc).__name__}: {exc}") from exc
    if ens.npdf != n:
        raise StreamingError(f"a partition of {n} rows gave {ens.npdf} PDFs")
    data, ancil = store.encode(ens)
    del ens
    # qp ensembles are reference cycles (scipy distributions hold vectorized bound methods of themselves), so
    # a partition's PDF arrays would wait for a full collection of the worker's heap (in the plain stream
    # memory grew by 230 MB per 25,000 kNN PDFs until one ran). They are still young here: collecting the
    # young generations frees them without scanning the worker's long-lived objects.
    gc.collect(1)
    out = dict(ancil)
    for key, arr in data.items():
        for j in range(arr.shape[1]):
            out[f"{key}_{j}"] = arr[:, j]
    return pd.DataFrame(out, index=df.index)


def estimate_partitions(model, ddf, storage="quantiles", storage_options=None, columns=None, id_column=None):
    """A lazy dask DataFrame with one row per row of ``ddf``: the ancil (id, zmode, zmedian, zmean, zstd, plugin
    columns) and the encoded PDFs.

    ``model`` is a fitted pipeline (``PhotometryFeatures`` first) or a bare estimator with ``columns=``.
    """
    import dask

    store = storage if isinstance(storage, Storage) else Storage(storage, **(storage_options or {}))
    needed, ids_from, feature_id = _required_columns(model, columns, id_column)
    missing = [c for c in needed if c not in ddf.columns]
    if missing:
        from .exceptions import ColumnError

        raise ColumnError(f"the dask DataFrame is missing column(s) {missing}; it has: {list(ddf.columns)[:30]}")
    # the output columns (plugin ancil, representation widths) are those of a real two-row estimate
    sample = ddf.head(2, npartitions=1, compute=True)
    if len(sample) == 0:
        raise InputError("the first partition is empty; repartition the catalog")
    meta = _estimate_partition(sample, model, store.config(), needed, ids_from, feature_id).iloc[:0]
    shared = dask.delayed(model, pure=True, traverse=False)
    out = ddf[needed].map_partitions(_estimate_partition, shared, store.config(), needed, ids_from, feature_id,
                                     meta=meta, align_dataframes=False)
    return out


def to_ensemble(frame, storage="quantiles", storage_options=None, grid_meta=None):
    """A qp.Ensemble from (a computed) :func:`estimate_partitions` output (``grid`` needs ``grid_meta``: the
    estimator's ``ens.build_tables()["meta"]``)."""
    store = storage if isinstance(storage, Storage) else Storage(storage, **(storage_options or {}))
    keys = {"quantiles": ("locs",), "mixmod": ("means", "stds", "weights"), "grid": ("yvals", "pdfs"), "point": ()}
    data, used = {}, set()
    for key in keys[store.kind]:
        names = [c for c in frame.columns if c.startswith(key + "_") and c[len(key) + 1:].isdigit()]
        if names:
            names.sort(key=lambda c: int(c[len(key) + 1:]))
            data[key] = np.column_stack([frame[c].to_numpy() for c in names])
            used.update(names)
    ancil = {c: frame[c].to_numpy() for c in frame.columns if c not in used}
    return store.to_ensemble(data, ancil, grid_meta=grid_meta)
