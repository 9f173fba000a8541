"""qp ensembles → tables of point estimates (astropy ``Table`` or pandas ``DataFrame``).

Column names follow RAIL's conventions by default: the ensemble's ancil keys as RAIL's estimators write them —
``id``, ``zmode``, ``zmedian``, ``zmean``, ``zstd`` (and ``redshift`` when RAIL copied the truth in) — and
``rename`` maps any of them to other names. Quantiles of each PDF can be added as ``z_q16``-style columns.

    ens = model.estimate_pdf(catalog)
    table = pzkit.tables.ensemble_table(ens, kind="pandas", rename={"zmode": "z_phot"})
    table, ens = pzkit.tables.estimate_table(model, catalog, kind="astropy", return_ensemble=True)
"""

import numpy as np

from .exceptions import InputError

__all__ = ["ensemble_table", "estimate_table", "RAIL_COLUMNS", "KINDS"]

#: RAIL's names of the per-object columns, in the order they come first in a table.
RAIL_COLUMNS = ("id", "zmode", "zmedian", "zmean", "zstd", "zbest", "redshift")
KINDS = ("astropy", "pandas")


def _quantile_name(q):
    return "z_q" + f"{100 * q:g}".replace(".", "p")


def ensemble_table(ens, kind="astropy", columns=None, rename=None, quantiles=None):
    """One row per PDF of ``ens``, one column per (1-d) ancil entry, as an astropy Table or a DataFrame.

    Parameters
    ----------
    ens : qp.Ensemble
        Usually the output of ``estimate_pdf`` (ancil ``zmode``, ``zmedian``, ``zmean``, ``zstd``, maybe ``id``)
        or of a RAIL estimator.
    kind : {"astropy", "pandas"}
    columns : sequence of str, optional
        Ancil keys to include, in this order; default: every ancil entry with one value per object, RAIL's
        columns (``id``, ``zmode``, ``zmedian``, ``zmean``, ``zstd``, ...) first.
    rename : dict, optional
        Ancil key → output column name (RAIL's names are kept otherwise).
    quantiles : sequence of float, optional
        Quantiles of each PDF to add, named ``z_q16``, ``z_q84``, ``z_q2p5``, ... (before ``rename``).

    Returns
    -------
    astropy.table.Table or pandas.DataFrame
        With ``meta``/``attrs`` ``{"pdf_name": ...}`` naming the qp representation.
    """
    if kind not in KINDS:
        raise InputError(f"kind must be one of {KINDS}, got {kind!r}")
    n = ens.npdf
    ancil = ens.ancil or {}
    per_object = {}
    for key, value in ancil.items():
        arr = np.asarray(value)
        if arr.ndim == 2 and arr.shape[1] == 1:  # RAIL and qp.concatenate store (n, 1)
            arr = arr[:, 0]
        if arr.ndim == 1 and arr.shape[0] == n:
            per_object[key] = arr
    if columns is None:
        keys = [k for k in RAIL_COLUMNS if k in per_object] + sorted(k for k in per_object if k not in RAIL_COLUMNS)
    else:
        keys = list(columns)
        missing = [k for k in keys if k not in per_object]
        if missing:
            raise InputError(f"columns {missing} are not per-object ancil entries; available: {sorted(per_object)}")
    data = {k: per_object[k] for k in keys}
    if quantiles is not None:
        q = np.asarray(quantiles, dtype=np.float64).ravel()
        if q.size == 0 or np.any((q <= 0) | (q >= 1)):
            raise InputError("quantiles must lie strictly between 0 and 1")
        values = np.atleast_2d(ens.ppf(q[None, :] if n > 1 else q))
        values = np.broadcast_to(values, (n, q.size))
        for j, qj in enumerate(q):
            data[_quantile_name(qj)] = np.asarray(values[:, j], dtype=np.float64)
    rename = dict(rename or {})
    unknown = sorted(set(rename) - set(data))
    if unknown:
        raise InputError(f"rename refers to unknown column(s) {unknown}; columns: {list(data)}")
    out = {rename.get(k, k): v for k, v in data.items()}
    if len(out) != len(data):
        raise InputError(f"rename maps two columns onto one name: {rename}")
    pdf_name = ens.metadata.get("pdf_name", [b""]) if ens.metadata else [b""]
    pdf_name = np.ravel(pdf_name)[0] if np.size(pdf_name) else ""
    pdf_name = pdf_name.decode() if isinstance(pdf_name, bytes) else str(pdf_name)
    if kind == "astropy":
        from astropy.table import Table

        table = Table(out)
        table.meta["pdf_name"] = pdf_name
        return table
    import pandas as pd

    frame = pd.DataFrame(out)
    frame.attrs["pdf_name"] = pdf_name
    return frame


def estimate_table(model, X, kind="astropy", columns=None, rename=None, quantiles=None, return_ensemble=False,
                   **side_inputs):
    """``model.estimate_pdf(X)`` as a table of point estimates (see :func:`ensemble_table`).

    ``model`` is a fitted pzkit estimator or :class:`~pzkit.PhotoZPipeline`; ``X`` anything it accepts (a
    DataFrame, an astropy Table, a Parquet/HDF5/FITS path through ``PhotometryFeatures``). With
    ``return_ensemble=True`` the qp ensemble is returned too, as ``(table, ensemble)``.
    """
    ens = model.estimate_pdf(X, **side_inputs)
    table = ensemble_table(ens, kind=kind, columns=columns, rename=rename, quantiles=quantiles)
    return (table, ens) if return_ensemble else table
