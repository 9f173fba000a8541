r"""SOM-cell diagnostics of the "attenuation bias" paper (Moran, Andrews, Newman & Dey; spec
``random_forest_knn_som.md`` §2–3).

Three pieces, all pure numpy (no MiniSom, no LtsFit):

* :class:`SelfOrganizingMap` — a small batch self-organising map with vectorised best-matching-unit search.
* :func:`lts_line` — our own robust line fit: FAST-LTS (random elemental starts + concentration steps) on
  effective-variance residuals, followed by iterative sigma clipping, in the spirit of Cappellari et al. (2013),
  written from the published algorithm description (the LtsFit code is not used: its licence forbids it).
* :func:`som_cell_diagnostics` — per SOM cell: N, ⟨z_spec⟩, σ_NMAD, outlier rate, bias, the LTS line
  z_phot = a + b·z_spec, θ = arctan b in degrees, and the split of σ_NMAD into attenuation and scatter.
"""

import numpy as np
from scipy import optimize, stats

from ._validation import InputError, as_1d, check_int, check_pair, check_positive_scalar, get_rng
from .point import _nmad

__all__ = ["SelfOrganizingMap", "lts_line", "som_cell_diagnostics"]


# =========================================================================== SOM
def _as_2d(X, name="X"):
    try:
        arr = np.asarray(X, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a 2-D array of numbers: {exc}") from None
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise InputError(f"{name} must be a non-empty 2-D array (n_samples, n_features), got shape {arr.shape}")
    if not np.all(np.isfinite(arr)):
        raise InputError(f"{name} contains non-finite values (NaN or inf)")
    return arr


class SelfOrganizingMap:
    r"""Rectangular self-organising map trained with the batch Kohonen rule.

    Cells sit on an ``n_rows × n_cols`` lattice; cell (i, j) has flat index ``k = i·n_cols + j`` and lattice
    position :math:`r_k = (i, j)`. Each cell holds a weight vector :math:`W_k` in feature space.

    **Best-matching unit (BMU)**: :math:`c(x) = \arg\min_k \lVert x - W_k\rVert^2` (Euclidean, as MiniSom's
    ``winner``), computed for blocks of ``chunk_size`` rows as
    :math:`\arg\min_k (\lVert W_k\rVert^2 - 2\,x\cdot W_k)`; ties go to the lowest index.

    **Training rule** (batch SOM, ``n_iter`` epochs t = 0 … T−1, deterministic given the initial weights):

    1. :math:`\sigma_t = \sigma_0 (\sigma_{\rm final}/\sigma_0)^{t/(T-1)}` (exponential decay of the neighbourhood
       radius, in lattice units);
    2. assign every sample to its BMU; per cell, :math:`S_l = \sum_{c(x_i)=l} x_i` and :math:`N_l = \#\{c(x_i)=l\}`;
    3. Gaussian neighbourhood :math:`h_t(k,l) = \exp(-\lVert r_k - r_l\rVert^2 / 2\sigma_t^2)`;
    4. :math:`W_k \leftarrow W_k + \eta\,\left(\frac{\sum_l h_t(k,l) S_l}{\sum_l h_t(k,l) N_l} - W_k\right)`
       with :math:`\eta` = ``learning_rate`` ∈ (0, 1] (η = 1 is the classic batch SOM).

    Initialisation: ``"pca"`` spreads the weights on the plane of the first two principal components
    (±1 standard deviation; the first component along the longer lattice side; component signs fixed so that
    their largest coefficient is positive) — fully deterministic; ``"random"`` picks distinct training samples
    with ``random_state``. The same data, parameters and seed always give the same map.

    Parameters
    ----------
    n_rows, n_cols : int, default 10, 12
        Lattice size (the paper's map is 10×12 = 120 cells).
    sigma : float, optional
        Initial neighbourhood radius σ₀ (lattice units); default ``max(n_rows, n_cols) / 2``.
    sigma_final : float, default 1.0
        Final radius.
    learning_rate : float, default 1.0
        Relaxation η of the batch update.
    n_iter : int, default 30
        Number of batch epochs.
    init : {"pca", "random"}, default "pca"
    random_state : None, int or numpy.random.Generator
        Seed for ``init="random"``.
    chunk_size : int, default 65536
        Rows per block in the BMU search (bounds memory to chunk_size × n_cells).

    Attributes
    ----------
    weights_ : ndarray, shape (n_rows, n_cols, n_features)
    n_features_in_ : int
    quantization_error_ : float
        Mean distance of the training samples to their BMU after training.
    """

    def __init__(self, n_rows=10, n_cols=12, sigma=None, sigma_final=1.0, learning_rate=1.0, n_iter=30,
                 init="pca", random_state=None, chunk_size=65536):
        self.n_rows = n_rows
        self.n_cols = n_cols
        self.sigma = sigma
        self.sigma_final = sigma_final
        self.learning_rate = learning_rate
        self.n_iter = n_iter
        self.init = init
        self.random_state = random_state
        self.chunk_size = chunk_size

    # ---- helpers
    @property
    def n_cells(self):
        return int(self.n_rows) * int(self.n_cols)

    def _check_params(self):
        check_int(self.n_rows, "n_rows", 1)
        check_int(self.n_cols, "n_cols", 1)
        if self.n_cells < 2:
            raise InputError("the map needs at least 2 cells (n_rows * n_cols >= 2)")
        check_int(self.n_iter, "n_iter", 1)
        check_int(self.chunk_size, "chunk_size", 1)
        sigma0 = max(self.n_rows, self.n_cols) / 2.0 if self.sigma is None else self.sigma
        sigma0 = check_positive_scalar(sigma0, "sigma")
        sigma_f = check_positive_scalar(self.sigma_final, "sigma_final")
        lr = check_positive_scalar(self.learning_rate, "learning_rate")
        if lr > 1:
            raise InputError(f"learning_rate must be in (0, 1], got {self.learning_rate!r}")
        if self.init not in ("pca", "random"):
            raise InputError(f"init must be 'pca' or 'random', got {self.init!r}")
        return sigma0, sigma_f, lr

    def _lattice(self):
        i, j = np.divmod(np.arange(self.n_cells), int(self.n_cols))
        return np.stack([i, j], axis=1).astype(np.float64)

    def _init_weights(self, X, rng):
        n, d = X.shape
        if self.init == "random":
            idx = rng.choice(n, size=self.n_cells, replace=n < self.n_cells)
            return X[idx].copy()
        mean = X.mean(axis=0)
        if d == 1:
            sd = X[:, 0].std() or 1.0
            lin = np.linspace(-1, 1, self.n_cells)
            return mean + sd * lin[:, None]
        cov = np.cov(X, rowvar=False)
        evals, evecs = np.linalg.eigh(np.atleast_2d(cov))
        order = np.argsort(evals)[::-1][:2]
        evals, evecs = np.clip(evals[order], 0, None), evecs[:, order]
        evecs = evecs * np.sign(evecs[np.argmax(np.abs(evecs), axis=0), np.arange(2)])
        sd = np.sqrt(evals)
        sd[sd == 0] = 1.0
        a = np.linspace(-1, 1, int(self.n_rows))
        b = np.linspace(-1, 1, int(self.n_cols))
        ai, bj = np.meshgrid(a, b, indexing="ij")
        # the first principal component runs along the longer side of the lattice
        long_, short = (bj, ai) if self.n_cols >= self.n_rows else (ai, bj)
        w = mean + long_.reshape(-1, 1) * sd[0] * evecs[:, 0] + short.reshape(-1, 1) * sd[1] * evecs[:, 1]
        return w

    def _bmu(self, X, W, return_dist=False):
        wn = np.einsum("kd,kd->k", W, W)
        wt = -2.0 * W.T
        out = np.empty(X.shape[0], dtype=np.int64)
        dist = np.empty(X.shape[0]) if return_dist else None
        cs = int(self.chunk_size)
        for s in range(0, X.shape[0], cs):
            xb = X[s:s + cs]
            d2 = xb @ wt
            d2 += wn
            k = np.argmin(d2, axis=1)
            out[s:s + cs] = k
            if return_dist:
                dd = d2[np.arange(k.size), k] + np.einsum("nd,nd->n", xb, xb)
                dist[s:s + cs] = np.sqrt(np.clip(dd, 0, None))
        return (out, dist) if return_dist else out

    # ---- public API
    def fit(self, X, y=None):
        """Train the map on ``X`` (n_samples, n_features); returns ``self``."""
        sigma0, sigma_f, lr = self._check_params()
        X = _as_2d(X)
        rng = get_rng(self.random_state)
        W = self._init_weights(X, rng)
        lattice = self._lattice()
        d2lat = np.sum((lattice[:, None, :] - lattice[None, :, :]) ** 2, axis=-1)
        T = int(self.n_iter)
        K, D = self.n_cells, X.shape[1]
        for t in range(T):
            sig = sigma0 * (sigma_f / sigma0) ** (t / (T - 1)) if T > 1 else sigma_f
            c = self._bmu(X, W)
            counts = np.bincount(c, minlength=K).astype(np.float64)
            sums = np.empty((K, D))
            for dcol in range(D):  # loop over features (a handful), vectorised over samples
                sums[:, dcol] = np.bincount(c, X[:, dcol], minlength=K)
            h = np.exp(-d2lat / (2.0 * sig**2))
            num = h @ sums
            den = h @ counts
            ok = den > 1e-300
            target = W.copy()
            target[ok] = num[ok] / den[ok, None]
            W = W + lr * (target - W)
        self.weights_ = W.reshape(int(self.n_rows), int(self.n_cols), D)
        self.n_features_in_ = D
        _, dist = self._bmu(X, W, return_dist=True)
        self.quantization_error_ = float(dist.mean())
        return self

    def _check_fitted(self, X):
        if not hasattr(self, "weights_"):
            raise InputError("this SelfOrganizingMap is not fitted yet: call fit first")
        X = _as_2d(X)
        if X.shape[1] != self.n_features_in_:
            raise InputError(f"X has {X.shape[1]} features, the map was trained on {self.n_features_in_}")
        return X

    def transform(self, X):
        """Flat BMU cell index ``k = row·n_cols + col`` of each sample, shape (n_samples,)."""
        X = self._check_fitted(X)
        return self._bmu(X, self.weights_.reshape(self.n_cells, -1))

    def fit_transform(self, X, y=None):
        """``fit(X)`` then ``transform(X)``."""
        return self.fit(X).transform(X)

    predict = transform

    def bmu_coords(self, X):
        """BMU lattice coordinates ``(rows, cols)`` of each sample (MiniSom's ``winner`` order (i, j))."""
        return self.cell_coords(self.transform(X))

    def cell_coords(self, cells):
        """Flat cell indices -> ``(rows, cols)`` arrays."""
        return np.divmod(np.asarray(cells, dtype=np.int64), int(self.n_cols))

    def quantization_error(self, X):
        """Mean Euclidean distance of the samples of ``X`` to their BMU."""
        X = self._check_fitted(X)
        _, dist = self._bmu(X, self.weights_.reshape(self.n_cells, -1), return_dist=True)
        return float(dist.mean())


# =========================================================================== LTS line fit
def _deming_slope(sxx, syy, sxy, vx, vy):
    """Slope minimising Σ(Δy − bΔx)²/(b²vx + vy) for centred sums (vectorised). Stable for vx → 0 (OLS)."""
    bp = vy * sxx - vx * syy
    root = np.sqrt(bp**2 + 4.0 * vx * vy * sxy**2)
    with np.errstate(invalid="ignore", divide="ignore"):
        s1 = 2.0 * vy * sxy / (bp + root)       # stable when bp >= 0
        s2 = (root - bp) / (2.0 * vx * sxy)     # stable when bp < 0
    s = np.where(bp >= 0, s1, s2)
    return np.where(sxy == 0, 0.0, s)


class _LineProblem:
    """Data and the effective-variance model y = a + b·(x − pivot), residual (y − a − b x)/√(b²σx² + σy² + ε²)."""

    def __init__(self, x, y, sx, sy):
        self.x, self.y = x, y
        self.vx, self.vy = sx**2, sy**2
        self.homo = bool(np.all(self.vx == self.vx[0]) and np.all(self.vy == self.vy[0]))

    def var(self, b, eps2=0.0):
        """(…, n) effective variances for slope(s) b."""
        b = np.asarray(b, dtype=np.float64)
        if self.homo:  # one value per slope, broadcast over points
            return (b[..., None] ** 2) * self.vx[0] + self.vy[0] + eps2
        return (b[..., None] ** 2) * self.vx + self.vy + eps2

    def fit_masks(self, masks, b_prev, eps2=0.0):
        """Vectorised fit for a stack of boolean masks (S, n). Exact (Deming closed form) for homoscedastic
        errors; one re-weighting step (weights 1/(b_prev²σx² + σy² + ε²)) otherwise."""
        m = masks.astype(np.float64)
        if self.homo:
            w = m
        else:
            w = m / self.var(b_prev, eps2)
        sw = w.sum(axis=1)
        xm = (w @ self.x) / sw
        ym = (w @ self.y) / sw
        dx = self.x[None, :] - xm[:, None]
        dy = self.y[None, :] - ym[:, None]
        sxx = np.sum(w * dx * dx, axis=1)
        syy = np.sum(w * dy * dy, axis=1)
        sxy = np.sum(w * dx * dy, axis=1)
        if self.homo:
            b = _deming_slope(sxx, syy, sxy, self.vx[0], self.vy[0] + eps2)
        else:
            with np.errstate(invalid="ignore", divide="ignore"):
                b = np.where(sxx > 0, sxy / sxx, 0.0)
        a = ym - b * xm
        return a, b

    def resid(self, a, b, eps2=0.0):
        a = np.asarray(a, dtype=np.float64)
        return (self.y - a[..., None] - np.asarray(b)[..., None] * self.x) / np.sqrt(self.var(b, eps2))

    def fit_exact(self, mask, eps2, b0):
        """Minimise Σ_mask r² over (a, b) exactly: closed form when homoscedastic, else a 1-D profile in b."""
        if self.homo:
            a, b = self.fit_masks(mask[None, :], np.array([b0]), eps2)
            return float(a[0]), float(b[0])
        x, y, vx, vy = self.x[mask], self.y[mask], self.vx[mask], self.vy[mask]

        def profile(b):
            w = 1.0 / (b * b * vx + vy + eps2)
            a = np.sum(w * (y - b * x)) / np.sum(w)
            return float(np.sum(w * (y - a - b * x) ** 2))

        span = max(abs(b0), 1.0)
        res = optimize.minimize_scalar(profile, bracket=(b0 - 0.1 * span, b0 + 0.1 * span))
        b = float(res.x) if np.isfinite(res.x) else b0
        w = 1.0 / (b * b * vx + vy + eps2)
        return float(np.sum(w * (y - b * x)) / np.sum(w)), b


def _trim_consistency(q):
    """Factor turning the RMS of the central fraction q of a unit Gaussian into 1."""
    q = min(max(q, 1e-6), 1.0)
    if q >= 1.0:
        return 1.0
    z = stats.norm.ppf(0.5 * (1.0 + q))
    var = 1.0 - 2.0 * z * stats.norm.pdf(z) / q
    return 1.0 / np.sqrt(var)


def _clip_consistency(k):
    """Factor turning the RMS of a unit Gaussian truncated at ±k into 1."""
    mass = 2.0 * stats.norm.cdf(k) - 1.0
    return 1.0 / np.sqrt(1.0 - 2.0 * k * stats.norm.pdf(k) / mass)


def _c_steps(prob, a, b, h, n_steps, eps2=0.0):
    """Run up to ``n_steps`` concentration steps for S starts; returns a, b, masks, objective."""
    n = prob.x.size
    masks = None
    for _ in range(n_steps):
        r2 = prob.resid(a, b, eps2) ** 2
        keep = np.argpartition(r2, h - 1, axis=1)[:, :h]
        new = np.zeros((a.size, n), dtype=bool)
        np.put_along_axis(new, keep, True, axis=1)
        if masks is not None and np.array_equal(new, masks):
            break
        masks = new
        a, b = prob.fit_masks(masks, b, eps2)
    r2 = prob.resid(a, b, eps2) ** 2
    obj = np.sum(np.partition(r2, h - 1, axis=1)[:, :h], axis=1)
    return a, b, masks, obj


def lts_line(x, y, sigma_x, sigma_y, clip=2.6, frac=0.5, n_starts=500, pivot=None, fit_epsilon=True,
             max_subset=2000, max_iter=50, random_state=None):
    r"""Robust straight-line fit y = a + b·x: least-trimmed squares, then iterative sigma clipping.

    Model and residual (effective variance; Cappellari et al. 2013, Eq. 6 form):

    .. math:: r_i = \frac{a_p + b\,(x_i - x_p) - y_i}{\sqrt{b^2\sigma_{x,i}^2 + \sigma_{y,i}^2 + \varepsilon^2}}

    with pivot :math:`x_p` (default the median of x; it only decorrelates a from b) and intrinsic scatter ε.
    Fitting a set of points means minimising :math:`\sum r_i^2` over (a, b) *including* the b-dependence of the
    denominator; for homoscedastic errors this is the closed-form Deming regression, which corrects the
    attenuation caused by σ_x (b comes out steeper than OLS, by up to ≈ 1 + σx²/Var(x)); for per-point errors it is
    a 1-D profile minimisation in b.

    Algorithm (written from the published FAST-LTS description, Rousseeuw & Van Driessen 2006):

    1. **Random starts**: ``n_starts`` elemental lines through 2 distinct random points (on a random subsample
       of ``max_subset`` points when n is larger), ε = 0.
    2. **C-steps**: keep the h points with the smallest :math:`r_i^2`, refit on them, repeat (2 steps for every
       start; with homoscedastic errors the refit is exact, so no step can increase the LTS objective Σ of the
       h smallest :math:`r_i^2`; with per-point errors a C-step refit is one re-weighting step, weights
       1/(b²σx² + σy²) at the previous b); the 10 best starts are then iterated to convergence on the full
       data, and the best objective wins.
       h = max(3, ⌈frac·n⌉); frac = 0.5 gives the maximal 50 % breakdown point.
    3. **Clipping**: starting from the h-subset, repeat until the kept set stops changing (≤ ``max_iter``):
       fit exactly on the kept points (with ε solved so that χ²/(m − 2) = 1 on them when ``fit_epsilon`` and
       the errors alone give χ²/dof > 1, else ε = 0); scale :math:`s = c\,\sqrt{\sum_{\rm kept} r_i^2/m}`,
       where c is the Gaussian consistency factor of the kept set — for the first pass (the LTS subset, the
       central fraction h/n) :math:`c = [1 - 2z\varphi(z)/q]^{-1/2}`, q = h/n, z = Φ⁻¹((1+q)/2), and afterwards
       (a set clipped at ±``clip``·s) the same with z = ``clip``, q = 2Φ(clip) − 1 — so that s estimates the σ
       of Gaussian inliers without bias; keep every point with :math:`|r_i| \le` ``clip``·s.

    Deterministic for a given ``random_state``.

    Parameters
    ----------
    x, y : array_like, shape (n,)
        Data (n ≥ 3; x must not be constant).
    sigma_x : float or array_like
        1σ errors of x (≥ 0), scalar or per point.
    sigma_y : float or array_like
        1σ errors of y (> 0), scalar or per point.
    clip : float, default 2.6
        Clipping threshold in units of the residual scale.
    frac : float, default 0.5
        Fraction of points in the LTS subset, in [0.5, 1].
    n_starts : int, default 500
        Number of random elemental starts.
    pivot : float, optional
        x_p; default median(x).
    fit_epsilon : bool, default True
        Fit the intrinsic scatter ε.
    max_subset : int, default 2000
        Subsample size for the random-start stage.
    max_iter : int, default 50
        Cap on C-steps to convergence and on clipping iterations.
    random_state : None, int or numpy.random.Generator

    Returns
    -------
    dict
        ``a`` (intercept at x = 0), ``b`` (slope), ``a_pivot`` (value at the pivot), ``pivot``, ``a_err``
        (error of ``a_pivot``), ``b_err`` (from the weighted normal equations at fixed weights), ``epsilon``,
        ``mask`` (bool, points kept after clipping), ``n_kept``, ``lts_mask`` (the h-subset), ``scale`` (s),
        ``rms`` (RMS of kept normalised residuals).
    """
    x, y = as_1d(x, "x"), as_1d(y, "y")
    if x.size != y.size:
        raise InputError(f"x and y must have equal lengths, got {x.size} and {y.size}")
    n = x.size
    if n < 3:
        raise InputError(f"x must have at least 3 points for a line fit, got {n}")
    sx, sy = as_1d(sigma_x, "sigma_x"), as_1d(sigma_y, "sigma_y")
    for name, arr in (("sigma_x", sx), ("sigma_y", sy)):
        if arr.size not in (1, n):
            raise InputError(f"{name} must be a scalar or have length {n}, got {arr.size}")
    sx = np.broadcast_to(sx, (n,)).astype(np.float64)
    sy = np.broadcast_to(sy, (n,)).astype(np.float64)
    if np.any(sx < 0):
        raise InputError("sigma_x must be >= 0")
    if np.any(sy <= 0):
        raise InputError("sigma_y must be > 0")
    clip = check_positive_scalar(clip, "clip")
    frac = float(frac)
    if not 0.5 <= frac <= 1.0:
        raise InputError(f"frac must be in [0.5, 1], got {frac}")
    n_starts = check_int(n_starts, "n_starts", 1)
    max_subset = check_int(max_subset, "max_subset", 10)
    max_iter = check_int(max_iter, "max_iter", 1)
    if np.ptp(x) == 0:
        raise InputError("x is constant: the slope is undefined")
    xp = float(np.median(x)) if pivot is None else float(pivot)
    if not np.isfinite(xp):
        raise InputError("pivot must be finite")
    rng = get_rng(random_state)
    x0 = x - xp
    h = max(3, int(np.ceil(frac * n)))
    full = _LineProblem(x0, y, sx, sy)

    # ---- 1. random elemental starts (on a subsample for large n) + 2 C-steps each
    if n > max_subset:
        sub = np.sort(rng.choice(n, size=max_subset, replace=False))
        prob0 = _LineProblem(x0[sub], y[sub], sx[sub], sy[sub])
        h0 = max(3, int(np.ceil(frac * max_subset)))
    else:
        prob0, h0 = full, h
    m0 = prob0.x.size
    i = rng.integers(0, m0, size=n_starts)
    j = (i + 1 + rng.integers(0, m0 - 1, size=n_starts)) % m0
    dxp = prob0.x[j] - prob0.x[i]
    with np.errstate(invalid="ignore", divide="ignore"):
        b = np.where(dxp != 0, (prob0.y[j] - prob0.y[i]) / dxp, 0.0)
    a = prob0.y[i] - b * prob0.x[i]
    a, b, _, obj = _c_steps(prob0, a, b, h0, 2)
    best = np.argsort(obj, kind="stable")[: min(10, n_starts)]
    # ---- 2. the best starts to convergence on the full data
    a, b, masks, obj = _c_steps(full, a[best], b[best], h, max_iter)
    k = int(np.argmin(obj))
    a_l, b_l, lts_mask = float(a[k]), float(b[k]), masks[k].copy()

    # ---- 3. intrinsic scatter + iterative clipping
    def fit_with_eps(mask, b_start):
        m = int(mask.sum())
        dof = max(m - 2, 1)
        a_, b_ = full.fit_exact(mask, 0.0, b_start)
        chi2 = float(np.sum(full.resid(a_, b_, 0.0)[mask] ** 2))
        if not fit_epsilon or chi2 / dof <= 1.0:
            return a_, b_, 0.0

        def g(e):
            aa, bb = full.fit_exact(mask, e * e, b_)
            return float(np.sum(full.resid(aa, bb, e * e)[mask] ** 2)) / dof - 1.0

        hi = float(np.std(y[mask])) or 1.0
        while g(hi) > 0:
            hi *= 2.0
        e = optimize.brentq(g, 0.0, hi, xtol=1e-12 * max(hi, 1e-12))
        a_, b_ = full.fit_exact(mask, e * e, b_)
        return a_, b_, float(e)

    mask = lts_mask
    a_f, b_f, eps, scale = a_l, b_l, 0.0, np.nan
    c_clip = _clip_consistency(clip)
    for it in range(max_iter):
        a_f, b_f, eps = fit_with_eps(mask, b_f)
        r = full.resid(a_f, b_f, eps * eps)
        rms = float(np.sqrt(np.mean(r[mask] ** 2)))
        # first pass: the LTS subset is the central h/n of the residuals; later: a set clipped at ±clip·s
        scale = (_trim_consistency(h / n) if it == 0 else c_clip) * rms
        new = np.abs(r) <= clip * scale
        if new.sum() < 3 or np.array_equal(new, mask):
            break
        mask = new
    w = np.broadcast_to(1.0 / full.var(b_f, eps * eps), (n,))[mask]
    xk = x0[mask]
    xw = np.sum(w * xk) / np.sum(w)
    b_err = float(1.0 / np.sqrt(np.sum(w * (xk - xw) ** 2)))
    a_err = float(1.0 / np.sqrt(np.sum(w)))
    r = full.resid(a_f, b_f, eps * eps)
    return {
        "a": float(a_f - b_f * xp),
        "b": float(b_f),
        "a_pivot": float(a_f),
        "pivot": xp,
        "a_err": a_err,
        "b_err": b_err,
        "epsilon": float(eps),
        "mask": mask,
        "n_kept": int(mask.sum()),
        "lts_mask": lts_mask,
        "scale": float(scale),
        "rms": float(np.sqrt(np.mean(r[mask] ** 2))),
    }


# =========================================================================== per-cell diagnostics
def som_cell_diagnostics(colors, z_true, z_pred, som=None, min_count=30, sigma_x=0.005, outlier_threshold=0.05,
                         clip=2.6, frac=0.5, n_starts=200, properties=None, fit_colors=None, cells=None,
                         grid_shape=None, som_kwargs=None, random_state=None):
    r"""Per-SOM-cell scatter, slope and attenuation-bias split (Moran et al. 2025, arXiv:2507.06299, §3).

    Objects are assigned to cells by their BMU in colour space (``colors``, e.g. u−r, g−r, r−i, r−z). For every
    cell with N ≥ ``min_count`` objects, with Δz = (z_p − z_s)/(1 + z_s) and NMAD(t, p) = 1.4826·median|Δ −
    median Δ| where Δ = (p − t)/(1 + t) (Eq. 1):

    * ``n``, ``mean_z_spec``; ``sigma_nmad`` = NMAD(z_s, z_p); ``outlier_rate`` = fraction with
      |Δz| > ``outlier_threshold`` (strict; the paper uses 0.05); ``bias`` = mean Δz (unclipped);
    * the LTS line z_p = a + b·z_s (:func:`lts_line` with σ_x = ``sigma_x`` (0.005) for every object and
      σ_y = that cell's σ_NMAD, pivot = the cell's median z_s); ``theta_deg`` = degrees(arctan b) (45° ideal);
    * with :math:`\hat z = a + b\,z_s`: ``sigma_atten`` = NMAD(z_s, ẑ) (Δ = (ẑ − z_s)/(1 + z_s)) and
      ``sigma_scatter`` = NMAD(ẑ, z_p) (Δ = (z_p − ẑ)/(1 + ẑ), Eq. 1 read literally), so that
      σ_NMAD² ≈ σ_atten² + σ_scatter² (exact for Gaussian residuals and a constant 1 + z);
      ``atten_ratio`` = σ_atten/σ_NMAD, ``scatter_ratio`` = σ_scatter/σ_NMAD.

    Cells below ``min_count`` (or where the fit is impossible) report their ``n`` and NaN elsewhere.

    Parameters
    ----------
    colors : array_like, shape (n, n_features)
        Features of the objects to diagnose (usually the test set).
    z_true, z_pred : array_like, shape (n,)
        Spectroscopic redshifts and point estimates of those objects.
    som : SelfOrganizingMap, optional
        A fitted map, or an unfitted one (then fitted on ``fit_colors`` or ``colors``). Default: a new
        ``SelfOrganizingMap(**som_kwargs, random_state=random_state)`` fitted likewise.
    min_count : int, default 30
    sigma_x : float, default 0.005
        σ of z_spec in the LTS fits ("to allow for catastrophic spec-z failures").
    outlier_threshold : float, default 0.05
    clip, frac, n_starts : see :func:`lts_line`.
    properties : dict of str -> array_like (n,), optional
        Per-object quantities averaged per cell as ``mean_<name>`` (e.g. ``{"bt": fracDev_r}`` gives ⟨B/T⟩).
    fit_colors : array_like, optional
        Colours to train the SOM on when it must be fitted (the paper trains on train + test).
    cells : array_like of int, shape (n,), optional
        Precomputed flat cell indices (skips the SOM entirely; ``colors`` is then not used).
    grid_shape : (int, int), optional
        Lattice shape (n_rows, n_cols) for ``cells`` without ``som``, so that every cell — occupied or not —
        gets a row in the output; default: one row of ``max(cells) + 1`` cells.
    som_kwargs : dict, optional
        Extra arguments of a default SOM.
    random_state : None, int or numpy.random.Generator
        Seeds the SOM (default one) and the LTS starts.

    Returns
    -------
    dict
        Per-cell arrays of length n_cells: ``cell``, ``row``, ``col``, ``n``, ``mean_z_spec``, ``sigma_nmad``,
        ``outlier_rate``, ``bias``, ``a``, ``b``, ``theta_deg``, ``sigma_atten``, ``sigma_scatter``,
        ``atten_ratio``, ``scatter_ratio``, ``n_kept`` (LTS points after clipping), ``mean_<name>`` per property;
        plus ``object_cell`` (n,) — each object's cell —, ``som`` (the map or None) and ``summary`` (dict:
        ``n_cells_used``, ``mean_theta_deg`` (unweighted over the cells used), ``weighted_mean_theta_deg``
        (N-weighted), ``median_atten_ratio``, ``median_scatter_ratio``; NaN when no cell qualifies) and
        ``undefined`` (dict: summary key -> the reason it is NaN, e.g. every cell below ``min_count``).
    """
    zs, zp = check_pair(z_true, z_pred)
    n = zs.size
    min_count = check_int(min_count, "min_count", 3)
    thr = check_positive_scalar(outlier_threshold, "outlier_threshold")
    sx = check_positive_scalar(sigma_x, "sigma_x", allow_zero=True)
    rng = get_rng(random_state)
    if cells is not None:
        cell = np.asarray(cells)
        if cell.ndim != 1 or cell.size != n or not np.issubdtype(cell.dtype, np.integer) or np.any(cell < 0):
            raise InputError(f"cells must be {n} non-negative integers (one per object)")
        if som is not None:
            n_cells, n_cols = som.n_cells, int(som.n_cols)
        elif grid_shape is not None:
            n_rows_, n_cols = (check_int(v, "grid_shape", 1) for v in grid_shape)
            n_cells = n_rows_ * n_cols
        else:
            n_cells = n_cols = int(cell.max()) + 1
        if cell.max() >= n_cells:
            raise InputError(f"cells has index {int(cell.max())}, beyond the {n_cells} cells of the map")
    else:
        X = _as_2d(colors, "colors")
        if X.shape[0] != n:
            raise InputError(f"colors must have one row per object ({n}), got {X.shape[0]}")
        if som is None:
            som = SelfOrganizingMap(**(som_kwargs or {}), random_state=rng)
        if not hasattr(som, "weights_"):
            som.fit(X if fit_colors is None else _as_2d(fit_colors, "fit_colors"))
        cell = som.transform(X)
        n_cells, n_cols = som.n_cells, int(som.n_cols)
    props = {}
    for name, vals in (properties or {}).items():
        v = as_1d(vals, f"properties[{name!r}]", finite=False)
        if v.size != n:
            raise InputError(f"properties[{name!r}] must have one value per object ({n}), got {v.size}")
        props[name] = v

    counts = np.bincount(cell, minlength=n_cells)
    nan = lambda: np.full(n_cells, np.nan)  # noqa: E731
    out = {"cell": np.arange(n_cells), "row": np.arange(n_cells) // n_cols, "col": np.arange(n_cells) % n_cols,
           "n": counts}
    keys = ("mean_z_spec", "sigma_nmad", "outlier_rate", "bias", "a", "b", "theta_deg", "sigma_atten",
            "sigma_scatter", "atten_ratio", "scatter_ratio", "n_kept")
    for k in keys:
        out[k] = nan()
    for name in props:
        out[f"mean_{name}"] = nan()
    order = np.argsort(cell, kind="stable")
    first = np.concatenate([[0], np.cumsum(counts)])
    dz_all = (zp - zs) / (1.0 + zs)
    for k in np.flatnonzero(counts >= min_count):  # loop over cells; each cell is vectorised
        idx = order[first[k]:first[k + 1]]
        s, p, dz = zs[idx], zp[idx], dz_all[idx]
        out["mean_z_spec"][k] = s.mean()
        for name, v in props.items():
            out[f"mean_{name}"][k] = np.nanmean(v[idx]) if np.any(np.isfinite(v[idx])) else np.nan
        nm = float(_nmad(dz))
        out["sigma_nmad"][k] = nm
        out["outlier_rate"][k] = np.mean(np.abs(dz) > thr)
        out["bias"][k] = dz.mean()
        if np.ptp(s) == 0:
            continue
        sy = nm if nm > 0 else max(float(np.std(dz)), 1e-8)
        fit = lts_line(s, p, sx, sy, clip=clip, frac=frac, n_starts=n_starts, random_state=rng)
        zhat = fit["a"] + fit["b"] * s
        out["a"][k], out["b"][k] = fit["a"], fit["b"]
        out["theta_deg"][k] = np.degrees(np.arctan(fit["b"]))
        out["n_kept"][k] = fit["n_kept"]
        atten = float(_nmad((zhat - s) / (1.0 + s)))
        with np.errstate(invalid="ignore", divide="ignore"):
            scat = float(_nmad((p - zhat) / (1.0 + zhat))) if np.all(zhat > -1) else np.nan
        out["sigma_atten"][k], out["sigma_scatter"][k] = atten, scat
        if nm > 0:
            out["atten_ratio"][k], out["scatter_ratio"][k] = atten / nm, scat / nm
    used = np.isfinite(out["theta_deg"])
    out["object_cell"] = cell
    out["som"] = som

    def over_used(f, key):
        v = out[key][used]
        v = v[np.isfinite(v)]
        return float(f(v)) if v.size else np.nan

    out["summary"] = {
        "n_cells_used": int(used.sum()),
        "mean_theta_deg": over_used(np.mean, "theta_deg"),
        "weighted_mean_theta_deg": (float(np.average(out["theta_deg"][used], weights=counts[used]))
                                    if used.any() else np.nan),
        "median_atten_ratio": over_used(np.median, "atten_ratio"),
        "median_scatter_ratio": over_used(np.median, "scatter_ratio"),
    }
    out["undefined"] = _undefined_summary(out["summary"], counts, min_count)
    return out


def _undefined_summary(summary, counts, min_count):
    """Why each NaN of the SOM summary is NaN (a number cannot say it by itself)."""
    if summary["n_cells_used"] == 0:
        if counts.max(initial=0) < min_count:
            why = f"fewer than {min_count} objects in every SOM cell (largest cell: {int(counts.max(initial=0))})"
        else:
            why = f"no SOM cell with at least {min_count} objects has a spread of z_spec to fit a line to"
    else:
        why = "σ_NMAD is 0 in every fitted SOM cell, so the ratios divide by zero"
    return {k: why for k, v in summary.items() if k != "n_cells_used" and not np.isfinite(v)}
