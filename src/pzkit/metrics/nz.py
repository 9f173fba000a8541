r"""Ensemble redshift distributions n(z) per tomographic bin.

Objects are assigned to tomographic bins by their point photo-z; in each bin the stacked PDF

.. math:: \hat n(z) = \frac{\sum_{i \in \rm bin} \hat p_i(z)}{\int \sum_{i \in \rm bin} \hat p_i(z')\,dz'}

(evaluated on ``zgrid`` and normalised there with the trapezoid rule) is compared with the empirical
distribution of the true redshifts of the same objects.
"""

import numpy as np

from ..pdf import cumulative_trapezoid
from ._validation import InputError, as_1d, check_grid
from .pdf import _EnsembleView

__all__ = ["tomographic_nz", "nz_by_magnitude", "stacked_nz", "wasserstein_nz"]

#: The per-bin statistics of :func:`tomographic_nz` (NaN, with a reason, in a bin where they are undefined).
_NZ_STATS = ("mean_z_stack", "mean_z_true", "delta_mean_z", "wasserstein", "ks")


def _distances_pl_vs_ecdf(g, cdf_g, samples):
    """Exact W1 and KS distance between a piecewise-linear CDF (values ``cdf_g`` at ``g``, 0 below, 1 above)
    and the empirical CDF of ``samples``."""
    s = np.sort(samples)
    n = s.size
    pts = np.union1d(g, s)
    pts = np.union1d(pts, [min(g[0], s[0]), max(g[-1], s[-1])])
    # piecewise-linear CDF at every breakpoint
    fl = np.interp(pts, g, cdf_g, left=0.0, right=1.0)
    # ECDF: right-continuous value and left limit at each breakpoint
    e_right = np.searchsorted(s, pts, side="right") / n
    e_left = np.searchsorted(s, pts, side="left") / n
    ks = float(np.max(np.maximum(np.abs(fl - e_right), np.abs(fl - e_left))))
    # On (p_j, p_{j+1}) the ECDF is constant (= e_right[j]) and the stack CDF linear: integrate |d| exactly.
    d0 = fl[:-1] - e_right[:-1]
    d1 = fl[1:] - e_right[:-1]
    h = np.diff(pts)
    same = d0 * d1 >= 0
    with np.errstate(invalid="ignore", divide="ignore"):
        cross = np.where(same, 0.0, (d0**2 + d1**2) / (2.0 * (np.abs(d0) + np.abs(d1))))
    w1 = float(np.sum(np.where(same, 0.5 * (np.abs(d0) + np.abs(d1)), cross) * h))
    return w1, ks


def stacked_nz(ens, zgrid, weights=None):
    r"""Stacked (ensemble) n(z) of all PDFs in ``ens`` on ``zgrid``.

    .. math:: \hat n(z_k) = \frac{\sum_i w_i \hat p_i(z_k)}{\int \sum_i w_i \hat p_i(z)\,dz}

    Parameters
    ----------
    ens : qp.Ensemble
        PDFs to stack.
    zgrid : array_like, shape (M,)
        Strictly increasing grid; the normalisation integral is the trapezoid rule on it.
    weights : array_like, shape (n,), optional
        Non-negative per-object weights (default 1), e.g. a 0/1 selection mask.

    Returns
    -------
    numpy.ndarray, shape (M,)
        Normalised n(z); all zeros if the selection is empty.
    """
    view = _EnsembleView(ens)
    g = check_grid(zgrid)
    w = np.ones(view.n) if weights is None else as_1d(weights, "weights")
    if w.size != view.n:
        raise InputError(f"weights must have one value per PDF in ens ({view.n}), got {w.size}")
    if np.any(w < 0):
        raise InputError("weights must be non-negative")
    total = np.zeros(g.size)
    for sl in view.blocks(g.size):
        if np.any(w[sl] > 0):
            total += w[sl] @ view.pdf_grid(g, sl)
    norm = np.trapezoid(total, g)
    return total / norm if norm > 0 else total


def tomographic_nz(ens, z_true, z_phot, zgrid, bin_edges):
    r"""Per-tomographic-bin comparison of the stacked-PDF n(z) with the true n(z).

    Objects are binned in ``z_phot`` with half-open bins :math:`[e_j, e_{j+1})` (the last one closed). For each
    bin, with :math:`\hat n(z)` the stacked PDF normalised on ``zgrid`` (:func:`stacked_nz`), :math:`\hat N(z)` its
    CDF (cumulative trapezoid, linear between grid points, 0 below and 1 above the grid) and :math:`N_s(z)` the
    empirical CDF of the true redshifts of the bin's objects:

    * ``mean_z_stack`` :math:`\langle z_p\rangle = \int z\,\hat n(z)\,dz` (trapezoid);
    * ``mean_z_true`` :math:`\langle z_s\rangle`, the mean true redshift;
    * ``delta_mean_z``
      :math:`\Delta\langle z\rangle = (\langle z_p\rangle - \langle z_s\rangle)/(1 + \langle z_s\rangle)`
      (Euclid requirement |Δ⟨z⟩| < 0.002);
    * ``wasserstein`` :math:`W_1 = \int |\hat N(z) - N_s(z)|\,dz`, integrated exactly for the piecewise-linear
      :math:`\hat N` against the step function :math:`N_s`;
    * ``ks`` :math:`D = \sup_z |\hat N(z) - N_s(z)|`, taken over both one-sided limits at every jump.

    The integrals only see ``zgrid``: PDF mass outside it is dropped by the normalisation.

    Parameters
    ----------
    ens : qp.Ensemble
        n PDFs.
    z_true : array_like, shape (n,)
        True redshifts.
    z_phot : array_like, shape (n,)
        Point photo-z used for the bin assignment.
    zgrid : array_like, shape (M,)
        Strictly increasing grid on which n(z) is evaluated (should cover the PDFs' support).
    bin_edges : array_like, shape (B + 1,)
        Strictly increasing tomographic bin edges in z_phot.

    Returns
    -------
    list of dict
        One dict per bin: ``bin`` (index), ``z_lo``, ``z_hi``, ``n`` (objects), ``mean_z_stack``, ``mean_z_true``,
        ``delta_mean_z``, ``wasserstein``, ``ks``, and for plotting ``zgrid`` (M,), ``nz_stack`` (M,) and
        ``nz_true`` (M,) — a histogram of the true redshifts on bins centred on the grid points, normalised to
        unit integral; ``undefined`` (dict: statistic -> why it is NaN). Empty bins have ``n == 0`` and NaN
        statistics (zeros for the n(z) arrays).
    """
    return _binned_nz(ens, z_true, z_phot, zgrid, bin_edges, "z_phot", ("z_lo", "z_hi", None))


def nz_by_magnitude(ens, z_true, magnitude, zgrid, bin_edges):
    r"""Stacked-PDF n(z) against the true n(z) in bins of a reference magnitude.

    The adversarial domain-adaptation paper's test of a photo-z sample at the faint end: objects are binned in
    ``magnitude`` (half-open bins :math:`[m_j, m_{j+1})`, the last closed; objects outside are ignored) and in
    each bin the stacked PDFs are compared with the true redshifts exactly as in :func:`tomographic_nz`:
    ``wasserstein`` :math:`W_1 = \int |\hat N(z) - N_s(z)|\,dz`, ``ks``, ``mean_z_stack``, ``mean_z_true`` and
    ``delta_mean_z``.

    Parameters
    ----------
    ens : qp.Ensemble
        n PDFs.
    z_true : array_like, shape (n,)
        True redshifts.
    magnitude : array_like, shape (n,)
        Reference magnitude of each object.
    zgrid : array_like, shape (M,)
        Strictly increasing grid on which n(z) is evaluated.
    bin_edges : array_like, shape (B + 1,)
        Strictly increasing magnitude bin edges.

    Returns
    -------
    list of dict
        As :func:`tomographic_nz`, with ``mag_lo``, ``mag_hi`` and ``mag_median`` (median magnitude of the bin's
        objects) instead of ``z_lo``, ``z_hi``.
    """
    return _binned_nz(ens, z_true, magnitude, zgrid, bin_edges, "magnitude", ("mag_lo", "mag_hi", "mag_median"))


def wasserstein_nz(z_true, z, weights):
    r"""Wasserstein-1 distance between an n(z) given as point masses and the true redshifts.

    .. math:: W_1 = \int |U(x) - V(x)|\,dx,\qquad U(x) = \frac{\sum_{k: z_k \le x} w_k}{\sum_k w_k},\quad
              V(x) = \frac{\#\{i : z_{s,i} \le x\}}{n}

    For an n(z) that comes as masses on points, e.g. a classifier's class probabilities summed over the objects
    and placed at the bin centres (scipy's ``wasserstein_distance(z, z_true, u_weights=weights)``, computed
    here in numpy). For a stacked ensemble of PDFs use :func:`tomographic_nz` or :func:`nz_by_magnitude`.

    Parameters
    ----------
    z_true : array_like, shape (n,)
        True redshifts.
    z : array_like, shape (K,)
        Locations of the n(z) masses.
    weights : array_like, shape (K,)
        Non-negative masses (any normalisation; the sum must be positive).

    Returns
    -------
    float
    """
    s = np.sort(as_1d(z_true, "z_true"))
    z = as_1d(z, "z")
    w = as_1d(weights, "weights")
    if w.size != z.size:
        raise InputError(f"weights must have one value per point of z ({z.size}), got {w.size}")
    if np.any(w < 0) or not w.sum() > 0:
        raise InputError("weights must be non-negative with a positive sum")
    order = np.argsort(z, kind="stable")
    zk = z[order]
    cw = np.concatenate([[0.0], np.cumsum(w[order])]) / w.sum()
    pts = np.sort(np.concatenate([zk, s]))
    # both CDFs are steps, constant on each interval between consecutive points: integrate |U − V| exactly
    u = cw[np.searchsorted(zk, pts[:-1], side="right")]
    v = np.searchsorted(s, pts[:-1], side="right") / s.size
    return float(np.sum(np.abs(u - v) * np.diff(pts)))


def _binned_nz(ens, z_true, by, zgrid, bin_edges, label, keys):
    """Per-bin stacked n(z) against the true n(z), objects binned on ``by`` (named ``label``); ``keys`` names the
    record's lower edge, upper edge and (if not None) median of ``by``."""
    view = _EnsembleView(ens)
    zs = as_1d(z_true, "z_true")
    zp = as_1d(by, label)
    if zs.size != view.n:
        raise InputError(f"z_true must have one value per PDF in ens ({view.n}), got {zs.size}")
    if zp.size != view.n:
        raise InputError(f"{label} must have one value per PDF in ens ({view.n}), got {zp.size}")
    g = check_grid(zgrid)
    edges = check_grid(bin_edges, "bin_edges")
    nbin = edges.size - 1
    idx = np.searchsorted(edges, zp, side="right") - 1
    idx[zp == edges[-1]] = nbin - 1
    idx[(zp < edges[0]) | (zp > edges[-1])] = -1

    # stack all bins in one pass over the ensemble: one-hot (n, B) membership times pdf (n, M)
    stacks = np.zeros((nbin, g.size))
    for sl in view.blocks(g.size):
        b = idx[sl]
        if np.any(b >= 0):
            member = (b[:, None] == np.arange(nbin)[None, :]).astype(np.float64)
            stacks += member.T @ view.pdf_grid(g, sl)

    mid = 0.5 * (g[1:] + g[:-1])
    hist_edges = np.concatenate([[g[0] - 0.5 * (g[1] - g[0])], mid, [g[-1] + 0.5 * (g[-1] - g[-2])]])
    out = []
    for j in range(nbin):
        sel = idx == j
        n = int(np.count_nonzero(sel))
        rec = {"bin": j, keys[0]: float(edges[j]), keys[1]: float(edges[j + 1]), "n": n, "zgrid": g}
        if keys[2] is not None:
            rec[keys[2]] = float(np.median(zp[sel])) if n else np.nan
        norm = np.trapezoid(stacks[j], g)
        if n == 0 or not norm > 0:
            last = "]" if j == nbin - 1 else ")"
            why = (f"no objects with {label} in [{edges[j]:g}, {edges[j + 1]:g}{last}" if n == 0
                   else f"the stacked PDFs of the bin's {n} objects have no mass on zgrid")
            rec.update(mean_z_stack=np.nan, mean_z_true=np.nan, delta_mean_z=np.nan, wasserstein=np.nan,
                       ks=np.nan, nz_stack=np.zeros(g.size), nz_true=np.zeros(g.size),
                       undefined=dict.fromkeys(_NZ_STATS + ((keys[2],) if n == 0 and keys[2] else ()), why))
            out.append(rec)
            continue
        nz = stacks[j] / norm
        mz_stack = float(np.trapezoid(g * nz, g))
        truths = zs[sel]
        mz_true = float(np.mean(truths))
        w1, ks = _distances_pl_vs_ecdf(g, cumulative_trapezoid(nz, g), truths)
        h, _ = np.histogram(truths, hist_edges)
        nz_true = h / (n * np.diff(hist_edges))
        rec.update(mean_z_stack=mz_stack, mean_z_true=mz_true,
                   delta_mean_z=(mz_stack - mz_true) / (1.0 + mz_true),
                   wasserstein=w1, ks=ks, nz_stack=nz, nz_true=nz_true, undefined={})
        out.append(rec)
    return out
