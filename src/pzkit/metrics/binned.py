r"""Point metrics in bins of any per-object quantity, with bootstrap errors.

For each bin the chosen metrics (see :mod:`pzkit.metrics.point`) are computed on the objects in the bin, and
their uncertainty is the standard deviation over ``n_boot`` bootstrap resamples of that bin (objects drawn with
replacement, same size). The resamples of a bin are drawn as one ``(n_boot, n_bin)`` index matrix and every
metric is evaluated along its last axis, so there is no per-object or per-resample Python loop.
"""

import numpy as np

from ._validation import InputError, as_1d, check_int, check_pair, check_positive_scalar, get_rng
from .point import _point_kernels, _unknown_metric

__all__ = ["binned_metrics"]

#: Cap on bootstrap matrix elements evaluated at once (resamples are processed in blocks below this).
_BOOT_ELEMENTS = 5_000_000


def binned_metrics(z_true, z_pred, by, n_bins=10, equal_count=True, n_boot=100, random_state=None,
                   metrics=("sigma_nmad", "bias_median", "outlier_rate"), bin_edges=None, outlier_threshold=0.15):
    r"""Point metrics in bins of ``by`` with bootstrap errors.

    Binning:

    * ``bin_edges`` given: half-open bins :math:`[e_j, e_{j+1})` (last closed); objects outside are ignored.
    * else ``equal_count=True``: objects are ranked by ``by`` (stable sort) and bin j takes ranks
      :math:`\lfloor jN/B\rfloor \ldots \lfloor (j+1)N/B\rfloor - 1`, i.e. equal counts (±1) even with ties;
      the reported edges are the min of each bin and the overall max.
    * else: ``n_bins`` equal-width bins over [min(by), max(by)].

    For metric m and bin j with objects :math:`S_j`: value :math:`m(\Delta z_{S_j})`; error
    :math:`\mathrm{std}_b\, m(\Delta z_{S_j^{(b)}})` over bootstrap resamples :math:`S_j^{(b)}` (ddof = 1);
    NaN if the bin has fewer than 2 objects or ``n_boot == 0``.

    Parameters
    ----------
    z_true, z_pred : array_like, shape (n,)
        True redshifts and point estimates.
    by : array_like, shape (n,)
        Binning quantity (e.g. magnitude, z_spec, z_phot).
    n_bins : int, default 10
        Number of bins (ignored when ``bin_edges`` is given).
    equal_count : bool, default True
        Equal-count (quantile) bins instead of equal width.
    n_boot : int, default 100
        Bootstrap resamples per bin (0 disables errors).
    random_state : None, int or numpy.random.Generator
        Seed for the bootstrap.
    metrics : sequence of str
        Any of ``bias_median``, ``bias_mean``, ``sigma_nmad``, ``sigma_68``, ``sigma_iqr``, ``outlier_rate``,
        ``outlier_rate_lsst``.
    bin_edges : array_like, optional
        Explicit strictly increasing edges.
    outlier_threshold : float, default 0.15
        Threshold of ``outlier_rate``.

    Returns
    -------
    dict
        ``edges`` (B+1), ``center`` (median of ``by`` in each bin), ``n`` (counts), and for each metric m the
        arrays ``m`` (values) and ``m_err`` (bootstrap errors), all of length B; empty bins give NaN.
    """
    zs, zp = check_pair(z_true, z_pred)
    x = as_1d(by, "by")
    if x.size != zs.size:
        raise InputError(f"by must have the same length as z_true ({zs.size}), got {x.size}")
    n_boot = check_int(n_boot, "n_boot", 0)
    t = check_positive_scalar(outlier_threshold, "outlier_threshold")
    kernels = _point_kernels(t)
    if isinstance(metrics, str):
        metrics = (metrics,)
    metrics = tuple(metrics)
    if not metrics:
        raise InputError("metrics must name at least one metric")
    for name in metrics:
        if name not in kernels:
            raise _unknown_metric(name, kernels)
    dz = (zp - zs) / (1.0 + zs)
    n = x.size

    if bin_edges is not None:
        edges = as_1d(bin_edges, "bin_edges")
        if edges.size < 2 or np.any(np.diff(edges) <= 0):
            raise InputError("bin_edges must be strictly increasing with at least 2 edges")
        nb = edges.size - 1
        idx = np.searchsorted(edges, x, side="right") - 1
        idx[x == edges[-1]] = nb - 1
        idx[(x < edges[0]) | (x > edges[-1])] = -1
    else:
        nb = check_int(n_bins, "n_bins", 1)
        if equal_count:
            if nb > n:
                raise InputError(f"n_bins ({nb}) must not exceed the number of objects ({n}) for equal-count bins")
            order = np.argsort(x, kind="stable")
            idx = np.empty(n, dtype=np.int64)
            idx[order] = (np.arange(n) * nb) // n
            xs = x[order]
            starts = (np.arange(nb) * n + nb - 1) // nb  # first rank of each bin
            edges = np.concatenate([xs[starts], [xs[-1]]])
        else:
            lo, hi = float(x.min()), float(x.max())
            if hi <= lo:
                hi = lo + 1.0
            edges = np.linspace(lo, hi, nb + 1)
            idx = np.clip(((x - lo) / (hi - lo) * nb).astype(np.int64), 0, nb - 1)

    rng = get_rng(random_state)
    out = {"edges": edges, "center": np.full(nb, np.nan), "n": np.zeros(nb, dtype=np.int64)}
    for name in metrics:
        out[name] = np.full(nb, np.nan)
        out[name + "_err"] = np.full(nb, np.nan)
    order = np.argsort(idx, kind="stable")
    counts = np.bincount(idx[idx >= 0], minlength=nb)
    first = np.searchsorted(idx[order], np.arange(nb), side="left")
    for j in range(nb):  # loop over bins only; everything inside is vectorised
        members = order[first[j]:first[j] + counts[j]]
        m = members.size
        out["n"][j] = m
        if m == 0:
            continue
        d = dz[members]
        out["center"][j] = float(np.median(x[members]))
        for name in metrics:
            out[name][j] = float(kernels[name](d))
        if n_boot > 0 and m > 1:
            per_block = max(1, _BOOT_ELEMENTS // m)
            boots = {name: [] for name in metrics}
            for b0 in range(0, n_boot, per_block):
                nb_blk = min(per_block, n_boot - b0)
                sample = d[rng.integers(0, m, size=(nb_blk, m))]
                for name in metrics:
                    boots[name].append(kernels[name](sample, axis=-1))
            for name in metrics:
                vals = np.concatenate(boots[name])
                out[name + "_err"][j] = float(np.std(vals, ddof=1)) if vals.size > 1 else np.nan
    return out
