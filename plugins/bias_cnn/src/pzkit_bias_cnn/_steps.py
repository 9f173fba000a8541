"""Network-free pieces of the bias correction (Lin et al. 2022, Steps 2–3): the (z bin × magnitude row) grid,
interlacing of rows onto magnitude outputs, under-sampling (Step 2) and the soft, mean-shifted Gaussian labels of
Step 3 (Eqs. 4–8). Everything here is numpy/scipy; all widths are in **bin units**.
"""

import numpy as np
from scipy.optimize import minimize_scalar

__all__ = [
    "z_bins",
    "mag_rows",
    "row_outputs",
    "mag_labels",
    "balance",
    "fit_sigma1",
    "error_curve",
    "shift_centres",
    "LabelModel",
    "fit_label_model",
    "AUG_PROBS",
]

#: Probabilities of the 8 dihedral transforms ``pzkit.nn.images.dihedral(x, k)`` under the paper's augmentation:
#: rot90 by k ∈ {0..3} (¼ each), then a flip along one axis, the other axis or none (⅓ each). Flipping the
#: other axis equals a flip after a half turn, so the four flipped transforms get 1/12 + 1/12 = 1/6 each and
#: the four plain rotations 1/12 each.
AUG_PROBS = np.array([1 / 12] * 4 + [1 / 6] * 4)


# ---------------------------------------------------------------------------------------------- grid
def z_bins(z, zmin, width, n):
    """Bin index clip(floor((z − zmin)/width), 0, n − 1)."""
    return np.clip(np.floor((np.asarray(z, dtype=np.float64) - zmin) / width), 0, n - 1).astype(np.int64)


def mag_rows(mag, mag_min, mag_step, n_rows, fill=None):
    """Magnitude row clip(floor((r − r_min)/step), 0, n_rows − 1): objects outside the grid go to the edge rows.

    Non-finite magnitudes are replaced by ``fill`` (the reference code uses max(r) of the training set) or, when
    ``fill`` is None, put in the last (faintest) row. (The code also treats a negative r as missing; here a
    reference magnitude may be any real number, so only NaN/inf are.)
    """
    r = np.asarray(mag, dtype=np.float64).copy()
    bad = ~np.isfinite(r)
    if bad.any():
        r[bad] = np.inf if fill is None else fill
    with np.errstate(invalid="ignore"):
        rows = np.floor((r - mag_min) / mag_step)
    rows = np.where(np.isfinite(rows), rows, n_rows - 1)
    return np.clip(rows, 0, n_rows - 1).astype(np.int64)


def row_outputs(rows):
    """Interlacing: even row 2k → output k only; odd row 2k+1 → outputs k and k+1. Returns (N, 2), −1 = none."""
    rows = np.asarray(rows, dtype=np.int64)
    first = rows // 2
    second = np.where(rows % 2 == 1, first + 1, -1)
    return np.stack([first, second], axis=1)


def mag_labels(rows, m):
    """Magnitude-head labels (N, m): one-hot for even rows, 0.5/0.5 two-hot for odd rows."""
    outs = row_outputs(rows)
    lab = np.zeros((len(rows), m))
    two = outs[:, 1] >= 0
    lab[np.arange(len(rows)), outs[:, 0]] = np.where(two, 0.5, 1.0)
    lab[np.flatnonzero(two), outs[two, 1]] = 0.5
    return lab


def balance(zbin, rows, th, rng, member=0, n_members=1):
    """Step 2 under-sampling: per (z bin × row) cell keep every object if the cell has ≤ ``th``, else ``th`` of them.

    As in the reference code, the cell is permuted once (from ``rng``) and ensemble member ``member`` takes the
    slice ``[member·th, (member+1)·th)`` modulo the cell size, so members get different subsets (disjoint when
    the cell holds ≥ n_members·th objects). Returns sorted indices.
    """
    th = int(th)
    if th < 1:
        raise ValueError(f"th must be a positive integer, got {th!r}")
    key = np.asarray(zbin, dtype=np.int64) * (int(np.max(rows)) + 1) + np.asarray(rows, dtype=np.int64)
    order = np.argsort(key, kind="stable")
    keys_sorted = key[order]
    starts = np.flatnonzero(np.r_[True, keys_sorted[1:] != keys_sorted[:-1]])
    stops = np.r_[starts[1:], len(key)]
    keep = []
    for a, b in zip(starts, stops):
        cell = order[a:b]
        if b - a <= th:
            keep.append(cell)
            continue
        perm = cell[rng.permutation(b - a)]
        pos = (member * th + np.arange(th)) % (b - a)
        keep.append(perm[pos])
    return np.sort(np.concatenate(keep))


# ---------------------------------------------------------------------------------------------- Eq. 4
def _kernel(n, sigma):
    """G[l, i] = N(i; l, σ) truncated to [0, n) and renormalised over i (rows sum to 1); identity for σ≈0."""
    if sigma < 1e-3:
        return np.eye(n)
    d = np.arange(n)[None, :] - np.arange(n)[:, None]
    g = np.exp(-0.5 * (d / sigma) ** 2)
    return g / g.sum(axis=1, keepdims=True)


def _sigma1_loss(sigma, p_spec, p_photo):
    q = p_photo @ _kernel(len(p_spec), sigma)
    return -float(np.sum(p_spec * np.log(np.clip(q, 1e-5, 1 - 1e-5))))


def fit_sigma1(zs_bin, zp_bin, n, bounds=(0.0, 1000.0)):
    """Eq. 4: σ1 (bins) minimising the cross-entropy between n(z_spec) and n(z_photo) ∗ N_σ1 on the n initial bins.

    Histograms are normalised counts of the given objects. The kernel is truncated and renormalised within the
    range. The reference code runs a local solver from σ = 1 bin; here a log-spaced scan upwards from 0 stops at
    the first local minimum, which a bounded 1-D minimisation then refines. (With a flat n(z_spec) the global
    optimum is the widest kernel, a flat label; the local one is the "minimal softening that smooths out the
    spikes" the paper asks for.) Returns 0 when there are no objects.
    """
    zs_bin = np.asarray(zs_bin, dtype=np.int64)
    if zs_bin.size == 0:
        return 0.0
    p_spec = np.bincount(zs_bin, minlength=n)[:n] / zs_bin.size
    p_photo = np.bincount(np.clip(np.asarray(zp_bin, dtype=np.int64), 0, n - 1), minlength=n)[:n] / zs_bin.size
    lo, hi = float(bounds[0]), float(min(bounds[1], 4.0 * n))
    grid = np.r_[0.0, np.geomspace(0.05, hi, 40)]
    grid = grid[(grid >= lo) & (grid <= hi)]
    losses = []
    for s in grid:
        losses.append(_sigma1_loss(s, p_spec, p_photo))
        best = min(losses)
        # stop at the first clear rise after a clear fall (flat, rounding-level wiggles near σ = 0 are ignored)
        if best < losses[0] - 1e-6 * abs(losses[0]) and losses[-1] > best + 1e-6 * abs(best):
            break
    k = int(np.argmin(losses))
    a, b = grid[max(k - 1, 0)], grid[min(k + 1, len(grid) - 1)]
    if b <= a:
        return float(grid[k])
    res = minimize_scalar(_sigma1_loss, bounds=(a, b), method="bounded", args=(p_spec, p_photo),
                          options={"xatol": 1e-3})
    best = float(res.x) if res.fun <= losses[k] else float(grid[k])
    return best


# ---------------------------------------------------------------------------------------------- Eqs. 5–6
def error_curve(zs_bin, err2, n, sigma1):
    """Eqs. 5–6: d²(i) = ½[mean + median] of the squared errors (bins²) of objects with z_spec bin i, then
    σ2²(z) = (d² ∗ N_σ1)(z): a normalised Gaussian smoothing over the bins between the first and last non-empty
    bin (empty bins inside take the previous non-empty value), zero outside. Returns (n,)."""
    zs_bin = np.asarray(zs_bin, dtype=np.int64)
    err2 = np.asarray(err2, dtype=np.float64)
    out = np.zeros(n)
    if zs_bin.size == 0:
        return out
    d2 = np.full(n, np.nan)
    order = np.argsort(zs_bin, kind="stable")
    zb, e = zs_bin[order], err2[order]
    starts = np.flatnonzero(np.r_[True, zb[1:] != zb[:-1]])
    stops = np.r_[starts[1:], len(zb)]
    for a, b in zip(starts, stops):
        v = e[a:b]
        d2[zb[a]] = 0.5 * (v.mean() + np.median(v))
    filled = np.flatnonzero(np.isfinite(d2))
    first, last = filled[0], filled[-1]
    span = np.arange(first, last + 1)
    vals = d2[span].copy()
    for j in range(1, len(vals)):  # forward fill empty bins inside the span
        if not np.isfinite(vals[j]):
            vals[j] = vals[j - 1]
    if sigma1 < 1e-3:
        out[span] = vals
        return out
    g = np.exp(-0.5 * ((span[:, None] - span[None, :]) / sigma1) ** 2)
    out[span] = (g @ vals) / g.sum(axis=1)
    return out


# ---------------------------------------------------------------------------------------------- Eqs. 7–8
def shift_centres(i0, var, hist):
    """Eq. 8 in bin units: z̄ = Σ_i i·h(i)·N(i; i0, Var) / Σ_i h(i)·N(i; i0, Var), and z* = 2·i0 − z̄.

    ``hist`` (n,) is the subset n(z_spec) (zero outside the data range), ``i0`` the z_spec bin indices, ``var``
    the profile variances (Eq. 7). Objects with σ_profile < 0.1 bin or no overlap keep i0 (the code's guard).
    """
    i0 = np.asarray(i0, dtype=np.float64)
    var = np.asarray(var, dtype=np.float64)
    n = len(hist)
    idx = np.arange(n, dtype=np.float64)
    out = i0.copy()
    sd = np.sqrt(np.maximum(var, 0.0))
    ok = sd >= 0.1
    for start in range(0, int(ok.sum()), 4096):
        sel = np.flatnonzero(ok)[start:start + 4096]
        w = np.exp(-0.5 * ((idx[None, :] - i0[sel, None]) / sd[sel, None]) ** 2) * hist[None, :]
        tot = w.sum(axis=1)
        zbar = np.where(tot > 0, (w @ idx) / np.where(tot > 0, tot, 1.0), i0[sel])
        out[sel] = 2.0 * i0[sel] - zbar
    return out


class LabelModel:
    """Per-output Step-3 label parameters: σ1 (m,), σ2² (m, n), the histograms used by Eq. 8, and the grid."""

    def __init__(self, sigma1, sigma2sq, hist_out, hist_row, n, m):
        self.sigma1 = np.asarray(sigma1, dtype=np.float64)
        self.sigma2sq = np.asarray(sigma2sq, dtype=np.float64)
        self.hist_out = np.asarray(hist_out, dtype=np.float64)
        self.hist_row = np.asarray(hist_row, dtype=np.float64)
        self.n = int(n)
        self.m = int(m)

    def centres(self, zbin, rows, shift=True, shift_hist="output"):
        """Label centres (N, 2) in initial-bin units (z* of Eq. 8, or z0 without shift) and the σ1 of each active
        output (N, 2); inactive slots (even rows have one active output) hold NaN."""
        outs = row_outputs(rows)
        cen = np.full(outs.shape, np.nan)
        sig = np.full(outs.shape, np.nan)
        for slot in range(2):
            act = outs[:, slot] >= 0
            o = outs[act, slot]
            i0 = np.asarray(zbin)[act].astype(np.float64)
            s1 = self.sigma1[o]
            sig[act, slot] = s1
            if not shift:
                cen[act, slot] = i0
                continue
            var = s1 ** 2 + self.sigma2sq[o, np.asarray(zbin)[act]]
            res = np.empty(len(o))
            for head in np.unique(o):
                sel = o == head
                if shift_hist == "row":
                    # the reference code: the histogram of the object's input row
                    rws = np.asarray(rows)[act][sel]
                    res_sel = np.empty(sel.sum())
                    for rw in np.unique(rws):
                        s2 = rws == rw
                        res_sel[s2] = shift_centres(i0[sel][s2], var[sel][s2], self.hist_row[rw])
                    res[sel] = res_sel
                else:
                    res[sel] = shift_centres(i0[sel], var[sel], self.hist_out[head])
            cen[act, slot] = res
        return cen, sig


def fit_label_model(zs, zp_mode, zbin, rows, n, m, width, zmin):
    """Fit Eqs. 4–6 on the label-fitting subset: spec-z ``zs`` and Step-2 z_mode pre-estimates ``zp_mode``.

    Per magnitude output r_o (objects of odd rows count in both of theirs): σ1 by Eq. 4 on the histograms of the
    z_spec and z_photo bins, d² and σ2² by Eqs. 5–6 with squared errors in bins². Also keeps n(z_spec) per output
    and per row for Eq. 8.
    """
    zs = np.asarray(zs, dtype=np.float64)
    zbin = np.asarray(zbin, dtype=np.int64)
    rows = np.asarray(rows, dtype=np.int64)
    zp_cont = (np.asarray(zp_mode, dtype=np.float64) - zmin) / width     # continuous bin coordinate
    zp_bin = np.clip(np.floor(zp_cont), 0, n - 1).astype(np.int64)
    err2 = (zp_cont - (zs - zmin) / width) ** 2
    outs = row_outputs(rows)
    sigma1 = np.zeros(m)
    sigma2sq = np.zeros((m, n))
    hist_out = np.zeros((m, n))
    n_rows = 2 * m - 1
    hist_row = np.zeros((n_rows, n))
    for rw in range(n_rows):
        hist_row[rw] = np.bincount(zbin[rows == rw], minlength=n)[:n]
    for o in range(m):
        sel = (outs[:, 0] == o) | (outs[:, 1] == o)
        if not sel.any():
            continue
        sigma1[o] = fit_sigma1(zbin[sel], zp_bin[sel], n)
        sigma2sq[o] = error_curve(zbin[sel], err2[sel], n, sigma1[o])
        hist_out[o] = np.bincount(zbin[sel], minlength=n)[:n]
    return LabelModel(sigma1, sigma2sq, hist_out, hist_row, n, m)
