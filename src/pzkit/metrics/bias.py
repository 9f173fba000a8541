r"""Residual-bias diagnostics of the bias-CNN paper (Lin et al. 2022, A&A 662, A36, arXiv:2202.09964).

* :func:`residual_vs_z` — mean Δz in bins of z_spec or z_photo, plus the piecewise-linear slopes (Eq. 9)
  below and above a break point.
* :func:`mode_collapse_distance` — the total-variation distance between the normalised histograms of
  z_photo and z_spec (Eq. 10).
* :func:`tomographic_mean_bias` — Δ⟨z⟩ = (⟨z_photo⟩ − ⟨z_spec⟩)/(1 + ⟨z_spec⟩) per z_photo tomographic bin
  (Eq. 12; Euclid asks |Δ⟨z⟩| < 0.002).

Δz = (z_photo − z_spec)/(1 + z_spec).
"""

import numpy as np

from ._validation import InputError, as_1d, check_int, check_pair

__all__ = ["residual_vs_z", "mode_collapse_distance", "tomographic_mean_bias"]


def _edges(x, bins, z_range, name):
    if np.ndim(bins) == 0:
        nb = check_int(bins, name, 1)
        if z_range is None:
            lo = 0.0 if x.min() >= 0 else float(x.min())
            hi = float(x.max())
            if hi <= lo:  # degenerate data: one bin around the single value
                lo, hi = hi - 0.5, hi + 0.5
        else:
            lo, hi = (float(v) for v in z_range)
        if not (np.isfinite(lo) and np.isfinite(hi) and hi > lo):
            raise InputError(f"z_range must be finite with z_max > z_min, got ({lo}, {hi})")
        return np.linspace(lo, hi, nb + 1)
    e = as_1d(bins, name)
    if e.size < 2 or np.any(np.diff(e) <= 0):
        raise InputError(f"{name} must be an int or a strictly increasing array of >= 2 edges")
    return e


def _bin_index(x, edges):
    """Half-open bins [e_j, e_{j+1}), last bin closed; -1 outside."""
    nb = edges.size - 1
    idx = np.searchsorted(edges, x, side="right") - 1
    idx[x == edges[-1]] = nb - 1
    idx[(x < edges[0]) | (x > edges[-1])] = -1
    return idx


def _wls_line(x, y, sigma):
    """Weighted least-squares line y = s·x + c with weights 1/σ²; slope error scaled by the reduced χ²
    (``scipy.optimize.curve_fit`` with its default ``absolute_sigma=False``)."""
    if x.size < 2:
        return np.nan, np.nan, np.nan
    w = 1.0 / sigma**2
    sw, sx, sy = w.sum(), (w * x).sum(), (w * y).sum()
    sxx, sxy = (w * x * x).sum(), (w * x * y).sum()
    det = sw * sxx - sx**2
    if not det > 0:
        return np.nan, np.nan, np.nan
    slope = (sw * sxy - sx * sy) / det
    icpt = (sy - slope * sx) / sw
    if x.size > 2:
        chi2 = float(np.sum(w * (y - icpt - slope * x) ** 2))
        slope_err = float(np.sqrt(sw / det * chi2 / (x.size - 2)))
    else:
        slope_err = np.nan
    return float(slope), float(icpt), slope_err


def residual_vs_z(z_true, z_pred, against="spec", bins=40, z_range=None, break_point=0.15, weights=None,
                  min_count=2):
    r"""Mean residual in bins of z_spec or z_photo, and its piecewise-linear slopes.

    Objects are binned by :math:`x = z_{spec}` (``against="spec"``) or :math:`x = z_{photo}` (``"photo"``) in
    half-open bins (last closed; objects outside the range are ignored). Per bin j:

    .. math:: \langle\Delta z\rangle_j = \frac{\sum_{i\in j} w_i \Delta z_i}{\sum_{i\in j} w_i},\qquad
              \mathrm{err}_j = \begin{cases} \sqrt{1/\sum_{i\in j} w_i} & \text{weights given (inverse variances)} \\
              \mathrm{std}_j/\sqrt{n_j - 1} & \text{unweighted} \end{cases}

    (the paper weights the z_spec curve by 1/Var(Δz) from its Eq. 6; pass those as ``weights``; unweighted, the
    error is the standard error of the mean, as in the reference code). ``std`` is the (weighted) standard
    deviation of Δz in the bin — the paper's "RMS" error bar of the z_photo curve.

    The slope metric (Eq. 9) fits two independent weighted least-squares lines (weights 1/err², as
    ``curve_fit`` with ``sigma=err``) to the bin means against the bin centres:
    :math:`\langle\Delta z\rangle = A\,x + B` for centres below ``break_point`` and :math:`C\,x + D` above.
    C (``slope_high``) is the key number; 0 means no class-dependent residual. Only bins with at least
    ``min_count`` objects and a positive error enter the fits; a side with fewer than two such bins gives NaN.
    The paper uses 40 bins over [0, z_max] and z_b = 0.15 (SDSS) or 0.6 (CFHTLS).

    Parameters
    ----------
    z_true, z_pred : array_like, shape (n,)
        Spectroscopic redshifts and point estimates.
    against : {"spec", "photo"}
        Binning variable.
    bins : int or array_like
        Number of equal-width bins over ``z_range`` or explicit edges.
    z_range : (float, float), optional
        Range for integer ``bins``; default [0, max(x)] (or [min(x), max(x)] if x has negative values).
    break_point : float, default 0.15
        z_b separating the two linear pieces.
    weights : array_like, shape (n,), optional
        Positive per-object weights (inverse variances of Δz).
    min_count : int, default 2
        Minimum number of objects for a bin to enter the fits.

    Returns
    -------
    dict
        ``against``, ``edges`` (B+1), ``centers``, ``n``, ``mean``, ``err``, ``std`` (arrays of length B; NaN
        in empty bins), ``break_point``, ``slope_low`` (A), ``intercept_low`` (B), ``slope_low_err``,
        ``slope_high`` (C), ``intercept_high`` (D), ``slope_high_err``, and ``undefined`` (dict: key -> why that
        value is NaN, e.g. too few usable bins on one side).
    """
    zs, zp = check_pair(z_true, z_pred)
    if against not in ("spec", "photo"):
        raise InputError(f"against must be 'spec' or 'photo', got {against!r}")
    try:
        zb = float(break_point)
    except (TypeError, ValueError):
        raise InputError(f"break_point must be a number, got {break_point!r}") from None
    if not np.isfinite(zb):
        raise InputError("break_point must be finite")
    min_count = check_int(min_count, "min_count", 2)
    dz = (zp - zs) / (1.0 + zs)
    x = zs if against == "spec" else zp
    if weights is None:
        w = np.ones_like(dz)
    else:
        w = as_1d(weights, "weights")
        if w.size != dz.size:
            raise InputError(f"weights must have the same length as z_true ({dz.size}), got {w.size}")
        if np.any(w <= 0):
            raise InputError("weights must be positive")
    edges = _edges(x, bins, z_range, "bins")
    nb = edges.size - 1
    idx = _bin_index(x, edges)
    ok = idx >= 0
    ii = idx[ok]
    n = np.bincount(ii, minlength=nb)
    sw = np.bincount(ii, w[ok], minlength=nb)
    swd = np.bincount(ii, w[ok] * dz[ok], minlength=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = swd / sw
        var = np.bincount(ii, w[ok] * (dz[ok] - mean[ii]) ** 2, minlength=nb) / sw
        std = np.sqrt(var)
        if weights is None:
            err = std / np.sqrt(n - 1.0)
        else:
            err = np.sqrt(1.0 / sw)
    mean = np.where(n > 0, mean, np.nan)
    std = np.where(n > 0, std, np.nan)
    err = np.where(n > 1, err, np.nan)
    centers = 0.5 * (edges[1:] + edges[:-1])
    usable = (n >= min_count) & np.isfinite(err) & (err > 0)
    low = usable & (centers < zb)
    high = usable & (centers > zb)
    a, b, a_err = _wls_line(centers[low], mean[low], err[low])
    c, d, c_err = _wls_line(centers[high], mean[high], err[high])
    undefined = {}
    for side, sel, slope, slope_err in (("low", low, a, a_err), ("high", high, c, c_err)):
        where = "below" if side == "low" else "above"
        if not np.isfinite(slope):
            undefined[f"slope_{side}"] = undefined[f"intercept_{side}"] = undefined[f"slope_{side}_err"] = (
                f"fewer than 2 bins {where} z_b = {zb:g} with at least {min_count} objects and a positive error "
                f"(found {int(sel.sum())})")
        elif not np.isfinite(slope_err):
            undefined[f"slope_{side}_err"] = f"only 2 bins {where} z_b = {zb:g}: the line fits them exactly"
    return {
        "against": against,
        "edges": edges,
        "centers": centers,
        "n": n,
        "mean": mean,
        "err": err,
        "std": std,
        "break_point": zb,
        "slope_low": a,
        "intercept_low": b,
        "slope_low_err": a_err,
        "slope_high": c,
        "intercept_high": d,
        "slope_high_err": c_err,
        "undefined": undefined,
    }


def mode_collapse_distance(z_true, z_pred, bins=180, z_range=None):
    r"""Total-variation distance between the photo-z and spec-z redshift distributions (mode collapse).

    .. math:: D_{TV} = \tfrac12 \sum_k \left|h^{photo}_k - h^{spec}_k\right|,\qquad
              h_k = \frac{\#\{i : z_i \in \text{bin } k\}}{N}

    Both histograms share the bins and are normalised by the total number of objects N, so photo-z outside the
    range are lost (they reduce :math:`\sum_k h^{photo}_k`), as in the reference code. 0 means identical
    histograms, 1 disjoint ones. Spikes in n(z_photo) (mode collapse) raise it.

    Parameters
    ----------
    z_true, z_pred : array_like, shape (n,)
        Spectroscopic redshifts and point estimates.
    bins : int or array_like, default 180
        Number of equal-width bins over ``z_range`` or explicit edges (the paper: its n initial classification
        bins over [z_min, z_max]).
    z_range : (float, float), optional
        Range for integer ``bins``; default [min(z_true), max(z_true)].

    Returns
    -------
    float
    """
    zs, zp = check_pair(z_true, z_pred)
    if np.ndim(bins) == 0 and z_range is None:
        z_range = (float(zs.min()), float(zs.max()))
        if z_range[1] <= z_range[0]:
            z_range = (z_range[0] - 0.5, z_range[0] + 0.5)
    edges = _edges(zs, bins, z_range, "bins")
    nb = edges.size - 1
    n = zs.size
    hs = np.bincount(_bin_index(zs, edges) + 1, minlength=nb + 1)[1:] / n
    hp = np.bincount(_bin_index(zp, edges) + 1, minlength=nb + 1)[1:] / n
    return float(0.5 * np.sum(np.abs(hp - hs)))


def tomographic_mean_bias(z_true, z_pred, bins=5, z_range=None, binning="equal_count"):
    r"""Mean-redshift bias per tomographic bin of z_photo (Eq. 12 of the bias-CNN paper).

    .. math:: \Delta\langle z\rangle_j = \frac{\langle z_{photo}\rangle_j - \langle z_{spec}\rangle_j}
              {1 + \langle z_{spec}\rangle_j}

    with the means over the objects whose z_photo falls in bin j (half-open bins, last closed; objects outside
    the edges are ignored). The Euclid requirement is :math:`|\Delta\langle z\rangle| < 0.002`.

    Parameters
    ----------
    z_true, z_pred : array_like, shape (n,)
        Spectroscopic redshifts and point estimates.
    bins : int or array_like, default 5
        Number of bins or explicit edges in z_photo.
    z_range : (float, float), optional
        For ``binning="equal_width"``: range of the bins (default [min, max] of z_pred). For ``"equal_count"``:
        only objects with z_pred inside it are split into quantile bins (default: all).
    binning : {"equal_count", "equal_width"}
        For integer ``bins``: equipopulated bins in z_photo (the paper's bin edges are not given; equipopulated
        bins are the usual tomographic choice) or equal-width bins. Equipopulated edges are the z_pred quantiles;
        repeated quantiles (discrete, mode-collapsed z_pred) are merged, so fewer bins may come back.

    Returns
    -------
    dict
        ``edges`` (B+1), ``n``, ``mean_spec``, ``mean_photo``, ``delta`` (arrays of length B; NaN in empty
        bins), ``max_abs_delta`` and ``n_within_0.002`` (bins with |Δ⟨z⟩| < 0.002).
    """
    zs, zp = check_pair(z_true, z_pred)
    if np.ndim(bins) == 0:
        nb = check_int(bins, "bins", 1)
        if binning == "equal_width":
            lo, hi = (float(zp.min()), float(zp.max())) if z_range is None else (float(v) for v in z_range)
            if not hi > lo:
                lo, hi = lo - 0.5, lo + 0.5
            edges = np.linspace(lo, hi, nb + 1)
        elif binning == "equal_count":
            sel = zp if z_range is None else zp[(zp >= z_range[0]) & (zp <= z_range[1])]
            if sel.size == 0:
                raise InputError("no z_pred inside z_range")
            edges = np.unique(np.quantile(sel, np.linspace(0.0, 1.0, nb + 1)))
            if edges.size < 2:
                raise InputError("equal_count bins are degenerate (all z_pred identical); pass explicit edges")
        else:
            raise InputError(f"binning must be 'equal_count' or 'equal_width', got {binning!r}")
    else:
        edges = _edges(zp, bins, None, "bins")
    nb = edges.size - 1
    idx = _bin_index(zp, edges)
    ok = idx >= 0
    n = np.bincount(idx[ok], minlength=nb)
    with np.errstate(invalid="ignore", divide="ignore"):
        ms = np.bincount(idx[ok], zs[ok], minlength=nb) / n
        mp = np.bincount(idx[ok], zp[ok], minlength=nb) / n
        delta = (mp - ms) / (1.0 + ms)
    ms, mp, delta = (np.where(n > 0, a, np.nan) for a in (ms, mp, delta))
    finite = np.isfinite(delta)
    return {
        "edges": edges,
        "n": n,
        "mean_spec": ms,
        "mean_photo": mp,
        "delta": delta,
        "max_abs_delta": float(np.max(np.abs(delta[finite]))) if finite.any() else float("nan"),
        "n_within_0.002": int(np.sum(np.abs(delta[finite]) < 0.002)),
    }
