r"""Metrics of photo-z PDFs stored in a ``qp.Ensemble``.

Evaluation of the ensemble
--------------------------
For ``qp.interp`` and ``qp.hist`` ensembles the PDF and CDF are evaluated directly from the ensemble's arrays
(``metadata['xvals']``/``objdata['yvals']`` and ``metadata['bins']``/``objdata['pdfs']``), vectorised over objects
and **with exactly qp's semantics**, so the numbers equal ``ens.pdf``/``ens.cdf`` to rounding:

* ``interp`` — PDF: linear interpolation of ``yvals`` on ``xvals``, 0 outside. CDF: qp's cumulative trapezoid
  ``c₀ = ½·y₀·(x₁ − x₀)``, ``c_k = Σ_{j≤k} ½(y_{j−1}+y_j)(x_j − x_{j−1})`` (k ≥ 1), divided by ``c_{M−1}``, linearly
  interpolated between the grid points, 0 below and 1 above the grid. (qp starts the cumulative at ½·y₀·Δx, not
  0; this matters only when the PDF is non-zero at the first grid point, and is kept so PIT values match qp.)
* ``hist`` — PDF: the bin density (bin index by ``floor((z − b₀)/w)`` for equal-width bins, as qp does), 0 outside.
  CDF: the cumulative bin mass at the edges, linearly interpolated (exact for a histogram).

Any other representation (``qp.stats.norm``, ``mixmod``, ``quant``, ...) goes through ``ens.pdf``/``ens.cdf``.
Work on an (objects × grid) matrix is done in chunks of rows, so memory stays bounded for large catalogues.

Conventions relative to qp / RAIL
---------------------------------
* PIT and its KS / CvM statistics: identical to ``qp.metrics.PIT`` (``evaluate_PIT_KS``/``evaluate_PIT_CvM``:
  scipy's one-sample tests of the *raw* PIT values against U(0, 1), not of qp's 100-quantile PIT ensemble).
* ``ad``: qp's Anderson–Darling convention (``scipy.stats.anderson_ksamp`` of the PIT values against the
  evenly spaced pseudo-sample ``linspace(0, 1, n)``), so values are comparable with RAIL reports.
  ``ad_uniform`` is the textbook one-sample A² against U(0, 1).
* CDE loss: identical to ``qp.metrics.CDELossMetric`` / RAIL ``CDELoss`` (trapezoid ∫p², PDF at the grid point
  nearest each truth). ``truth_eval="interp"`` evaluates the PDF at the truth itself instead.
* Brier: ``convention="qp"`` reproduces ``qp.metrics.calculate_brier``, which compares the PDF *density values* on
  the grid with a one-hot truth vector; it therefore scales with the grid spacing and is not bounded by 2.
  ``convention="probability"`` uses the bin probabilities (CDF differences), the proper Brier score in [0, 2].
* CRPS: neither qp nor RAIL has one; see :func:`crps` for the definition.
"""

import warnings

import numpy as np

from ..grid import nearest_index
from ._validation import InputError, as_1d, check_grid, check_int

__all__ = [
    "pit_values",
    "pit_stats",
    "pit_qq",
    "cde_loss",
    "crps",
    "interval_coverage",
    "brier_score",
    "pdf_metrics",
]

#: Maximum number of (object × grid point) matrix elements materialised at once.
_CHUNK_ELEMENTS = 4_000_000


# =========================================================================== ensemble adapter (private)
def _pdf_name(ens):
    try:
        name = ens.metadata["pdf_name"]
    except (AttributeError, KeyError, TypeError):
        return None
    name = np.asarray(name).ravel()[0] if np.size(name) else name
    return name.decode() if isinstance(name, bytes) else str(name)


def _linear_interp_rows(xp, fp, z, left, right):
    """Row-wise linear interpolation: row i of ``fp`` (n, M) on ``xp`` (M,) at ``z[i]``; scipy interp1d rule."""
    m = xp.size
    idx = np.clip(np.searchsorted(xp, z, side="left"), 1, m - 1)
    lo = idx - 1
    rows = np.arange(z.size)
    y_lo, y_hi = fp[rows, lo], fp[rows, idx]
    slope = (y_hi - y_lo) / (xp[idx] - xp[lo])
    out = slope * (z - xp[lo]) + y_lo
    out = np.where(z < xp[0], left, out)
    return np.where(z > xp[-1], right, out)


def _linear_interp_grid(xp, fp, x, left, right):
    """Interpolate every row of ``fp`` (n, M) on ``xp`` at the common points ``x`` (K,) -> (n, K)."""
    m = xp.size
    idx = np.clip(np.searchsorted(xp, x, side="left"), 1, m - 1)
    lo = idx - 1
    slope = (fp[:, idx] - fp[:, lo]) / (xp[idx] - xp[lo])
    out = slope * (x - xp[lo]) + fp[:, lo]
    out[:, x < xp[0]] = left
    out[:, x > xp[-1]] = right
    return out


class _EnsembleView:
    """Vectorised PDF/CDF evaluation of a qp ensemble, by row blocks."""

    def __init__(self, ens):
        if not hasattr(ens, "npdf"):
            raise InputError(f"ens must be a qp.Ensemble, got {type(ens).__name__}")
        self.ens = ens
        self.n = int(ens.npdf)
        if self.n < 1:
            raise InputError("ens must contain at least one PDF")
        self.kind = _pdf_name(ens)
        if self.kind == "interp":
            self.x = np.asarray(ens.metadata["xvals"], dtype=np.float64).ravel()
            self.y = np.asarray(ens.objdata["yvals"], dtype=np.float64).reshape(self.n, -1)
        elif self.kind == "hist":
            self.bins = np.asarray(ens.metadata["bins"], dtype=np.float64).ravel()
            self.p = np.asarray(ens.objdata["pdfs"], dtype=np.float64).reshape(self.n, -1)
            w = np.diff(self.bins)
            self.equal_width = bool(np.allclose(w, w[0]))
        else:
            self.kind = "generic"
        self._c = None

    @property
    def c(self):
        """Normalised cumulative values at the knots (interp: qp's trapezoid rule; hist: bin masses), lazily."""
        if self._c is None:
            if self.kind == "interp":
                y, dx = self.y, np.diff(self.x)
                c = np.empty_like(y)
                c[:, 0] = 0.5 * y[:, 0] * dx[0]
                c[:, 1:] = np.cumsum(dx * 0.5 * (y[:, 1:] + y[:, :-1]), axis=1)
            else:
                c = np.zeros((self.n, self.bins.size))
                c[:, 1:] = np.cumsum(self.p * np.diff(self.bins), axis=1)
            with np.errstate(invalid="ignore", divide="ignore"):
                self._c = c / c[:, -1:]
        return self._c

    # ---- row blocks
    def blocks(self, width):
        step = max(1, _CHUNK_ELEMENTS // max(int(width), 1))
        for start in range(0, self.n, step):
            yield slice(start, min(start + step, self.n))

    def _hist_index(self, z):
        b = self.bins
        nb = b.size - 1
        if self.equal_width:
            idx = np.floor((z - b[0]) / (b[1] - b[0])).astype(np.int64)
        else:
            idx = np.searchsorted(b, z, side="left") - 1
        mask = (idx >= 0) & (idx < nb)
        return np.clip(idx, 0, nb - 1), mask

    def _sub(self, sl):
        # qp cannot slice a one-PDF ensemble, and a full slice needs no copy
        return self.ens if (sl.start == 0 and sl.stop == self.n) else self.ens[sl]

    # ---- evaluation on a common grid -> (rows, K)
    def pdf_grid(self, x, sl):
        if self.kind == "interp":
            return _linear_interp_grid(self.x, self.y[sl], x, 0.0, 0.0)
        if self.kind == "hist":
            idx, mask = self._hist_index(x)
            return np.where(mask, self.p[sl][:, idx], 0.0)
        return np.asarray(self._sub(sl).pdf(x), dtype=np.float64).reshape(sl.stop - sl.start, -1)

    def cdf_grid(self, x, sl):
        if self.kind == "interp":
            return _linear_interp_grid(self.x, self.c[sl], x, 0.0, 1.0)
        if self.kind == "hist":
            return _linear_interp_grid(self.bins, self.c[sl], x, 0.0, 1.0)
        return np.asarray(self._sub(sl).cdf(x), dtype=np.float64).reshape(sl.stop - sl.start, -1)

    # ---- evaluation at one point per object -> (n,)
    def pdf_at(self, z):
        if self.kind == "interp":
            return _linear_interp_rows(self.x, self.y, z, 0.0, 0.0)
        if self.kind == "hist":
            idx, mask = self._hist_index(z)
            return np.where(mask, self.p[np.arange(self.n), idx], 0.0)
        return np.asarray(self.ens.pdf(z[:, None]), dtype=np.float64).reshape(self.n)

    def cdf_at(self, z):
        if self.kind == "interp":
            return _linear_interp_rows(self.x, self.c, z, 0.0, 1.0)
        if self.kind == "hist":
            return _linear_interp_rows(self.bins, self.c, z, 0.0, 1.0)
        return np.asarray(self.ens.cdf(z[:, None]), dtype=np.float64).reshape(self.n)


def _prepare(ens, z_true):
    view = _EnsembleView(ens)
    z = as_1d(z_true, "z_true")
    if z.size != view.n:
        raise InputError(f"z_true must have one value per PDF in ens ({view.n}), got {z.size}")
    return view, z


def _check_finite_result(arr, what):
    if not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise InputError(f"ens: {bad} PDF(s) give non-finite {what} (zero or invalid normalisation?)")
    return arr


# =========================================================================== PIT
def pit_values(ens, z_true):
    r"""Probability integral transform: each PDF's CDF at its true redshift.

    .. math:: \mathrm{PIT}_i = \hat F_i(z_{s,i}) = \int_{-\infty}^{z_{s,i}} \hat p_i(z)\,dz

    Equal to ``qp.metrics.PIT(ens, z_true).pit_samps`` (the fast paths reproduce qp's CDF; see the module notes).

    Parameters
    ----------
    ens : qp.Ensemble
        n PDFs.
    z_true : array_like, shape (n,)
        True redshifts, finite.

    Returns
    -------
    numpy.ndarray, shape (n,)
        Values in [0, 1].

    Raises
    ------
    ValueError
        If ``z_true`` is empty, non-finite or its length differs from ``ens.npdf``, or a CDF is not finite.
    """
    view, z = _prepare(ens, z_true)
    pit = _check_finite_result(view.cdf_at(z), "CDF values")
    # CDFs of mixture ensembles (RAIL's KNN) round to 1 + 1e-15; beyond 1e-6 it is a broken PDF, not rounding
    if np.any((pit < -1e-6) | (pit > 1 + 1e-6)):
        raise InputError(f"ens: CDF values outside [0, 1] (range {pit.min():.6g} to {pit.max():.6g})")
    return np.clip(pit, 0.0, 1.0)


def _ad_uniform(u):
    """One-sample Anderson–Darling A² of ``u`` against U(0, 1)."""
    n = u.size
    eps = 1e-12
    s = np.sort(np.clip(u, eps, 1 - eps))
    i = np.arange(1, n + 1)
    return float(-n - np.mean((2 * i - 1) * (np.log(s) + np.log1p(-s[::-1]))))


def _ad_ksamp_qp(u):
    """qp's PIT Anderson–Darling: k-sample AD of the PIT values in [0, 1] vs ``linspace(0, 1, n)``."""
    from scipy import stats

    u = u[(u >= 0.0) & (u <= 1.0)]
    if u.size < 2:
        return np.nan
    ref = np.linspace(0.0, 1.0, u.size)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # p-value capping / API-transition notices from scipy
        try:
            res = stats.anderson_ksamp([u, ref], variant="midrank")
        except TypeError:  # scipy < 1.17 has no ``variant``; midrank=True is its default
            res = stats.anderson_ksamp([u, ref])
    return float(res.statistic)


def pit_stats(pit, outlier_limits=(1e-4, 1 - 1e-4), edge_bins=50):
    r"""Goodness of fit of PIT values to U(0, 1).

    * ``ks`` — Kolmogorov–Smirnov :math:`D = \sup_u |F_n(u) - u|` (``scipy.stats.kstest(pit, "uniform")``),
      with ``ks_pvalue``; identical to ``qp.metrics.PIT.evaluate_PIT_KS``.
    * ``cvm`` — Cramér–von Mises :math:`\omega^2 = \frac{1}{12n} + \sum_i \left(\frac{2i-1}{2n} - u_{(i)}\right)^2`
      (``scipy.stats.cramervonmises``), with ``cvm_pvalue``; identical to qp's ``evaluate_PIT_CvM``.
    * ``ad`` — qp's convention (``evaluate_PIT_anderson_ksamp``): the k-sample Anderson–Darling statistic of the
      PIT values in [0, 1] against the evenly spaced pseudo-sample ``linspace(0, 1, n)``
      (``scipy.stats.anderson_ksamp``, midrank variant).
    * ``ad_uniform`` — the one-sample Anderson–Darling statistic against U(0, 1),
      :math:`A^2 = -n - \frac1n \sum_i (2i-1)\left[\ln u_{(i)} + \ln(1 - u_{(n+1-i)})\right]` (values clipped to
      [1e-12, 1 − 1e-12]).
    * ``outlier_rate`` — fraction of PIT values below ``outlier_limits[0]`` or above ``outlier_limits[1]``
      (qp's ``evaluate_PIT_outlier_rate`` computes the same quantity from its 100-quantile PIT ensemble, so it
      differs slightly).
    * ``edge_low`` / ``edge_high`` — counts in the first / last of ``edge_bins`` equal PIT bins over the
      uniform expectation n / ``edge_bins``: too-narrow PDFs of the objects a method gets wrong pile up there,
      an excess the KS statistic (a maximum over the whole CDF) can hide.

    Parameters
    ----------
    pit : array_like, shape (n,)
        PIT values (see :func:`pit_values`); finite, within [0, 1].
    outlier_limits : tuple of float, default (1e-4, 0.9999)
    edge_bins : int, default 50

    Returns
    -------
    dict
        ``n``, ``ks``, ``ks_pvalue``, ``cvm``, ``cvm_pvalue``, ``ad``, ``ad_uniform``, ``outlier_rate``,
        ``edge_low``, ``edge_high``.
    """
    from scipy import stats

    u = as_1d(pit, "pit")
    if np.any((u < 0) | (u > 1)):
        raise InputError("pit values must lie in [0, 1]")
    lo, hi = outlier_limits
    ks = stats.kstest(u, "uniform")
    out = {"n": int(u.size), "ks": float(ks.statistic), "ks_pvalue": float(ks.pvalue)}
    if u.size >= 2:
        cvm = stats.cramervonmises(u, "uniform")
        out.update(cvm=float(cvm.statistic), cvm_pvalue=float(cvm.pvalue))
    else:
        out.update(cvm=np.nan, cvm_pvalue=np.nan)
    out["ad"] = _ad_ksamp_qp(u)
    out["ad_uniform"] = _ad_uniform(u)
    out["outlier_rate"] = float(np.mean((u < lo) | (u > hi)))
    nb = check_int(edge_bins, "edge_bins", 2)
    counts, _ = np.histogram(u, bins=nb, range=(0.0, 1.0))
    expected = u.size / nb
    out["edge_low"] = float(counts[0] / expected) if u.size else np.nan
    out["edge_high"] = float(counts[-1] / expected) if u.size else np.nan
    return out


def pit_qq(pit, n_quantiles=101):
    r"""Quantile–quantile data of the PIT values against the uniform distribution.

    .. math:: q_k = \frac{k}{K - 1},\quad k = 0 \ldots K-1, \qquad Q_k = \hat F^{-1}_{\rm PIT}(q_k)

    with :math:`\hat F^{-1}_{\rm PIT}` the empirical quantile function of the PIT values (numpy's linear
    interpolation). Calibrated PDFs put :math:`Q_k \approx q_k` on the diagonal; over-confident (too narrow)
    PDFs give a curve steeper than the diagonal in the middle, under-confident ones a flatter one, and a biased
    sample a curve shifted off it.

    Parameters
    ----------
    pit : array_like, shape (n,)
        PIT values (see :func:`pit_values`); finite, within [0, 1].
    n_quantiles : int, default 101
        K, the number of uniform quantiles (≥ 2).

    Returns
    -------
    q_uniform, q_pit : numpy.ndarray, shape (K,)
    """
    u = as_1d(pit, "pit")
    if np.any((u < 0) | (u > 1)):
        raise InputError("pit values must lie in [0, 1]")
    q = np.linspace(0.0, 1.0, check_int(n_quantiles, "n_quantiles", 2))
    return q, np.quantile(u, q)


# =========================================================================== CDE loss
def cde_loss(ens, z_true, zgrid, truth_eval="nearest"):
    r"""Conditional density estimation loss (Izbicki & Lee 2017).

    .. math:: L = \frac1n\sum_i \int \hat p_i(z)^2\,dz \;-\; \frac2n \sum_i \hat p_i(z_{s,i})

    The integral is the trapezoid rule on ``zgrid``. With ``truth_eval="nearest"`` (default) the PDF in the
    second term is taken at the grid point nearest the truth, exactly as ``qp.metrics.CDELossMetric`` and RAIL's
    ``CDELoss`` do, so the value equals theirs for the same grid. ``truth_eval="interp"`` evaluates the PDF at
    the truth itself. Lower is better; it is a proper score up to the constant ∫p²(z|x) of the true density.

    Parameters
    ----------
    ens : qp.Ensemble
        n PDFs.
    z_true : array_like, shape (n,)
        True redshifts.
    zgrid : array_like, shape (M,)
        Strictly increasing evaluation grid (e.g. ``np.linspace(0, 3, 301)``), covering the PDFs' support.
    truth_eval : {"nearest", "interp"}

    Returns
    -------
    float
    """
    view, z = _prepare(ens, z_true)
    g = check_grid(zgrid)
    if truth_eval not in ("nearest", "interp"):
        raise InputError(f"truth_eval must be 'nearest' or 'interp', got {truth_eval!r}")
    nn = nearest_index(g, z) if truth_eval == "nearest" else None
    term1 = 0.0
    term2 = 0.0
    for sl in view.blocks(g.size):
        p = view.pdf_grid(g, sl)
        term1 += float(np.sum(np.trapezoid(p**2, x=g, axis=1)))
        if nn is not None:
            term2 += float(np.sum(p[np.arange(p.shape[0]), nn[sl]]))
    if nn is None:
        term2 = float(np.sum(view.pdf_at(z)))
    out = term1 / view.n - 2.0 * term2 / view.n
    if not np.isfinite(out):
        raise InputError("ens: PDFs give a non-finite CDE loss")
    return out


# =========================================================================== CRPS
def crps(ens, z_true, zgrid):
    r"""Continuous ranked probability score, averaged over objects.

    .. math:: \mathrm{CRPS} = \frac1n \sum_i \int \left[\hat F_i(z) - H(z - z_{s,i})\right]^2 dz
              = \frac1n \sum_i \left[\int_{-\infty}^{z_{s,i}} \hat F_i^2\,dz
                + \int_{z_{s,i}}^{\infty} (1 - \hat F_i)^2\,dz\right]

    with H the Heaviside step. The CDF is evaluated on ``zgrid`` and each part is integrated with the trapezoid
    rule, splitting the grid interval that contains the truth at the truth (the CDF interpolated linearly there),
    so the step is integrated exactly. Outside ``zgrid`` the CDF is taken as constant (its value at the nearest
    grid end), so a truth beyond the grid adds (distance) × (1 − F)² or × F²; the grid must cover the PDFs'
    support. Same units as z; lower is better; for a point mass at the truth it is 0, and for a Gaussian
    N(μ, σ) it equals σ[ω(2Φ(ω) − 1) + 2φ(ω) − 1/√π], ω = (z_s − μ)/σ (Gneiting & Raftery 2007).
    Neither qp nor RAIL ships a CRPS.

    Parameters
    ----------
    ens : qp.Ensemble
        n PDFs.
    z_true : array_like, shape (n,)
        True redshifts.
    zgrid : array_like, shape (M,)
        Strictly increasing grid, M ≥ 2.

    Returns
    -------
    float
    """
    view, z = _prepare(ens, z_true)
    g = check_grid(zgrid)
    m = g.size
    dx = np.diff(g)
    total = 0.0
    for sl in view.blocks(m):
        F = _check_finite_result(view.cdf_grid(g, sl), "CDF values")
        y = z[sl]
        rows = np.arange(F.shape[0])
        a = F**2
        b = (1.0 - F) ** 2
        # cumulative trapezoids from g[0] up to each grid point
        ca = np.zeros_like(F)
        cb = np.zeros_like(F)
        ca[:, 1:] = np.cumsum(0.5 * (a[:, 1:] + a[:, :-1]) * dx, axis=1)
        cb[:, 1:] = np.cumsum(0.5 * (b[:, 1:] + b[:, :-1]) * dx, axis=1)
        k = np.clip(np.searchsorted(g, y, side="right") - 1, 0, m - 2)  # g[k] <= y < g[k+1] inside the grid
        yc = np.clip(y, g[0], g[-1])
        t = (yc - g[k]) / dx[k]
        Fy = F[rows, k] + t * (F[rows, k + 1] - F[rows, k])
        below = ca[rows, k] + 0.5 * (a[rows, k] + Fy**2) * (yc - g[k])
        above = (cb[:, -1] - cb[rows, k + 1]) + 0.5 * ((1 - Fy) ** 2 + b[rows, k + 1]) * (g[k + 1] - yc)
        ext = np.where(y < g[0], (g[0] - y) * b[:, 0], 0.0) + np.where(y > g[-1], (y - g[-1]) * a[:, -1], 0.0)
        total += float(np.sum(below + above + ext))
    return total / view.n


# =========================================================================== coverage
def interval_coverage(ens, z_true, levels=(0.68, 0.95)):
    r"""Fraction of truths inside each PDF's central credible interval.

    The central interval at level ℓ is :math:`[\hat F_i^{-1}(\tfrac{1-\ell}{2}),\ \hat F_i^{-1}(\tfrac{1+\ell}{2})]`;
    a truth lies inside it iff its PIT satisfies :math:`|\mathrm{PIT}_i - \tfrac12| \le \tfrac{\ell}{2}`, which is
    how it is computed (no quantile inversion). For calibrated PDFs the coverage equals ℓ.

    Parameters
    ----------
    ens : qp.Ensemble
        n PDFs.
    z_true : array_like, shape (n,)
        True redshifts.
    levels : sequence of float, default (0.68, 0.95)
        Levels in (0, 1).

    Returns
    -------
    dict
        ``{level: fraction}`` with float keys.
    """
    lv = as_1d(levels, "levels")
    if np.any((lv <= 0) | (lv >= 1)):
        raise InputError("levels must lie strictly between 0 and 1")
    pit = pit_values(ens, z_true)
    dev = np.abs(pit - 0.5)
    return {float(level): float(np.mean(dev <= 0.5 * level)) for level in lv}


# =========================================================================== Brier
def _centred_edges(g):
    """Bin edges around each grid point: midpoints, extended by half a spacing at both ends."""
    mid = 0.5 * (g[1:] + g[:-1])
    return np.concatenate([[g[0] - 0.5 * (g[1] - g[0])], mid, [g[-1] + 0.5 * (g[-1] - g[-2])]])


def brier_score(ens, z_true, zgrid, convention="qp"):
    r"""Brier score of the gridded PDFs against a one-hot truth.

    Each grid point :math:`z_k` owns the bin :math:`[e_k, e_{k+1})` between the midpoints to its neighbours
    (half a spacing beyond the end points; the last bin is closed). With :math:`o_{ik} = 1` if
    :math:`z_{s,i}` falls in bin k, else 0,

    .. math:: \mathrm{BS} = \frac1n \sum_i \sum_k (q_{ik} - o_{ik})^2

    * ``convention="qp"`` (default): :math:`q_{ik} = \hat p_i(z_k)`, the PDF *density* at the grid point. This is
      exactly ``qp.metrics.calculate_brier(ens, z_true, limits, dx)`` when ``zgrid`` is qp's grid for
      ``(limits, dx)`` (RAIL's ``brier`` metric), so values are comparable with RAIL reports; note they scale
      like 1/Δz and are not bounded by 2.
    * ``convention="probability"``: :math:`q_{ik} = \hat F_i(e_{k+1}) - \hat F_i(e_k)`, the probability of bin k —
      the proper multi-category Brier score, in [0, 2].

    A truth outside all bins gives an all-zero :math:`o_i` (qp instead widens its grid to include it).

    Parameters
    ----------
    ens : qp.Ensemble
        n PDFs.
    z_true : array_like, shape (n,)
        True redshifts.
    zgrid : array_like, shape (M,)
        Strictly increasing grid, M ≥ 2.
    convention : {"qp", "probability"}

    Returns
    -------
    float
    """
    view, z = _prepare(ens, z_true)
    g = check_grid(zgrid)
    if convention not in ("qp", "probability"):
        raise InputError(f"convention must be 'qp' or 'probability', got {convention!r}")
    edges = _centred_edges(g)
    m = g.size
    k = np.searchsorted(edges, z, side="right") - 1
    k = np.where(z == edges[-1], m - 1, k)
    inside = (k >= 0) & (k < m)
    k = np.clip(k, 0, m - 1)
    total = 0.0
    for sl in view.blocks(m + 1):
        if convention == "qp":
            q = view.pdf_grid(g, sl)
        else:
            q = np.diff(view.cdf_grid(edges, sl), axis=1)
        q = _check_finite_result(q, "PDF values")
        rows = np.arange(q.shape[0])
        ins = inside[sl]
        total += float(np.sum(np.sum(q**2, axis=1) - 2.0 * q[rows, k[sl]] * ins + ins))
    return total / view.n


# =========================================================================== all at once
def pdf_metrics(ens, z_true, zgrid, levels=(0.68, 0.95), brier_convention="qp"):
    """All PDF metrics at once.

    Parameters
    ----------
    ens : qp.Ensemble
        n PDFs.
    z_true : array_like, shape (n,)
        True redshifts.
    zgrid : array_like, shape (M,)
        Evaluation grid for the CDE loss, CRPS and Brier score.
    levels : sequence of float, default (0.68, 0.95)
        Coverage levels; each gives a key ``coverage_<100·level>`` (e.g. ``coverage_68``).
    brier_convention : {"qp", "probability"}
        See :func:`brier_score`.

    Returns
    -------
    dict
        ``n``; ``pit_ks``, ``pit_ks_pvalue``, ``pit_cvm``, ``pit_cvm_pvalue``, ``pit_ad``, ``pit_ad_uniform``,
        ``pit_outlier_rate``, ``pit_edge_low``, ``pit_edge_high`` (:func:`pit_stats`); ``cde_loss``; ``crps``; ``coverage_*``; ``brier``.
    """
    pit = pit_values(ens, z_true)
    stats_ = pit_stats(pit)
    out = {"n": stats_.pop("n")}
    out.update({f"pit_{k}": v for k, v in stats_.items()})
    out["cde_loss"] = cde_loss(ens, z_true, zgrid)
    out["crps"] = crps(ens, z_true, zgrid)
    lv = as_1d(levels, "levels")
    if np.any((lv <= 0) | (lv >= 1)):
        raise InputError("levels must lie strictly between 0 and 1")
    dev = np.abs(pit - 0.5)
    for level in lv:
        out[f"coverage_{100 * level:g}"] = float(np.mean(dev <= 0.5 * level))
    out["brier"] = brier_score(ens, z_true, zgrid, convention=brier_convention)
    return out
