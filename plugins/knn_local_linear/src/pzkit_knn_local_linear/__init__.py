"""pzkit plugin ``knn_local_linear``: local linear regression on the k nearest neighbours (Beck et al. 2016
style, the SDSS DR12 ``Photoz`` method), with a per-object PDF built from the neighbours' residuals."""

import numbers

import numpy as np

from pzkit import PhotoZEstimator
from pzkit.exceptions import InputError

__all__ = ["KNNLocalLinear", "local_linear_fit"]
__version__ = "0.1.0"

_ALGORITHMS = ("ckdtree", "kd_tree", "ball_tree")
_WEIGHTS = ("tricube", "uniform")
_OUTSIDE = ("fit", "mean")


def _tricube(dist):
    """Tricube weights (1 − (d/h)³)³ with h just above the largest neighbour distance of each row."""
    h = dist[:, -1:] * (1.0 + 1e-6)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.where(h > 0, dist / np.where(h > 0, h, 1.0), 0.0)
    return (1.0 - u**3) ** 3


def local_linear_fit(D, z, w0, clip_sigma=2.0, max_clip_iter=5, ridge=1e-10, degree=1):
    """Clipped weighted local polynomial fit of ``z`` on neighbour offsets ``D``, for many queries at once.

    The normal equations (AᵀWA + λI) c = AᵀWz of every query are built with batched matmul and solved with
    a batched ``numpy.linalg.solve``; each clipping pass rebuilds them with the dropped neighbours' weights
    set to 0 (measured as fast as downdating by the dropped neighbours, which it replaced, and free of
    cancellation). λ = ``ridge`` × mean diagonal of the initial AᵀWA keeps singular rows (duplicated
    neighbours, fewer points than parameters) solvable; such rows are caught by the estimator's fallback
    tests.

    Parameters
    ----------
    D : ndarray (n, k, d)
        Neighbour features minus the query's features (so the intercept is the fit at the query).
    z : ndarray (n, k)
        Neighbour redshifts.
    w0 : ndarray (n, k)
        Neighbour weights (distance kernel).
    clip_sigma : float or None
        Neighbours with |residual| > ``clip_sigma`` × (weighted RMS of the kept residuals) are dropped and the
        fit is redone, until nothing changes or after ``max_clip_iter`` passes. Clipping only removes
        (a dropped neighbour never comes back), so it always converges; a pass that would leave fewer than
        p + 1 neighbours with weight (p = number of coefficients) is not applied. None disables it.
    degree : {0, 1}
        1: local linear (intercept + gradient); 0: clipped weighted mean (the fallback).

    Returns
    -------
    coef : (n, p) — ``coef[:, 0]`` is the estimate at the query, ``coef[:, 1:]`` the gradient dz/dx.
    resid : (n, k) residuals z − fit of every neighbour (clipped ones included).
    keep : (n, k) bool, the neighbours kept by the clipping.
    scatter : (n,) weighted RMS of the kept residuals.
    """
    n, k = z.shape
    p = 1 if degree == 0 else D.shape[2] + 1
    G = np.empty((n, p, p))
    b = np.empty((n, p))
    Dw = np.empty_like(D) if p > 1 else None
    diag = np.arange(p)

    def normal_equations(w):
        # the design matrix A = [1, D] is never built: its (n, k, p) float64 copies were fresh page-faulting
        # allocations at the default chunk size; the blocks of AᵀWA are sums over w, w·D and D
        G[:, 0, 0] = w.sum(axis=1)
        b[:, 0] = (w * z).sum(axis=1)
        if p > 1:
            np.multiply(D, w[:, :, None], out=Dw)
            DwT = Dw.transpose(0, 2, 1)  # (n, d, k)
            G[:, 0, 1:] = np.matmul(w[:, None, :], D)[:, 0, :]
            G[:, 1:, 0] = G[:, 0, 1:]
            G[:, 1:, 1:] = np.matmul(DwT, D)
            b[:, 1:] = np.matmul(DwT, z[:, :, None])[:, :, 0]

    normal_equations(w0)
    lam = ridge * np.trace(G, axis1=1, axis2=2) / p + 1e-300  # fixed ridge λ, from the first pass
    G[:, diag, diag] += lam[:, None]
    keep = w0 > 0
    wk = np.where(keep, w0, 0.0)
    wsum = wk.sum(axis=1)
    active = np.ones(n, dtype=bool)  # rows whose kept set may still change
    n_pass = 0 if clip_sigma is None else int(max_clip_iter)
    for it in range(n_pass + 1):
        # every pass works on all rows (a batched solve and residuals are cheaper than gathering a subset);
        # rows that stopped changing get the same solution again
        coef = np.linalg.solve(G, b[:, :, None])[:, :, 0]
        resid = z - coef[:, :1]
        if p > 1:
            resid -= np.matmul(D, coef[:, 1:, None])[:, :, 0]
        scatter = np.sqrt((wk * resid * resid).sum(axis=1) / np.where(wsum > 0, wsum, 1.0))
        if it == n_pass:
            break
        thresh = np.maximum(clip_sigma * scatter, 1e-6 * (1.0 + np.abs(coef[:, 0])))  # sub-1e-6 residuals are exact
        drop = keep & (np.abs(resid) > thresh[:, None]) & active[:, None]
        n_left = ((wk > 0) & ~drop).sum(axis=1)
        changed = drop.any(axis=1) & (n_left >= p + 1)
        if not changed.any():
            break
        drop &= changed[:, None]
        keep &= ~drop
        wk[drop] = 0.0
        wsum = wk.sum(axis=1)
        normal_equations(wk)  # rebuilt rather than downdated: as fast, and no cancellation
        G[:, diag, diag] += lam[:, None]
        active = changed
    return coef, resid, keep, scatter


class KNNLocalLinear(PhotoZEstimator):
    r"""Local linear regression on the k nearest neighbours, with a PDF from the neighbours' residuals.

    The method of the SDSS DR12 photo-z (Beck et al. 2016): for each row, the k nearest training galaxies in
    (scaled) feature space get a weighted linear fit of redshift on the features, with iterative clipping of
    redshift outliers, evaluated at the row. The PDF is made of the kept neighbours' redshifts moved to the
    row by the fitted slope, smoothed with a Gaussian kernel whose width follows the residual scatter.

    Parameters
    ----------
    zmin, zmax, nzbins, point_estimate, random_state
        See :class:`pzkit.PhotoZEstimator`; the method has no random step.
    n_neighbors : int, default 100
        k (the paper: 100). Must not exceed the number of training rows (:class:`pzkit.InputError`).
    scale : {"std", None}, default "std"
        Feature scaling before the neighbour search and the fit: divide by the training standard deviations.
    weights : {"tricube", "uniform"}, default "tricube"
        Neighbour weights: tricube of the distance over the largest neighbour distance, or equal weights.
    clip_sigma : float or None, default 2.0
        Neighbours with a residual above ``clip_sigma`` × the weighted RMS are dropped (None: no clipping).
    max_clip_iter : int, default 5
        Largest number of clip-and-refit passes.
    outside : {"fit", "mean"}, default "fit"
        What to do with a query outside its neighbours' bounding box: keep the linear fit (and flag it), or
        fall back to the clipped mean.
    bandwidth : float, default 0.005
        Kernel width in units of (1 + z).
    bandwidth_scatter : float, default 3.0
        Factor on zerr·n_eff^(−1/5) in the kernel width (0 for a fixed width).
    algorithm : {"ckdtree", "kd_tree", "ball_tree"}, default "ckdtree"
        Neighbour search: scipy's ``cKDTree`` or scikit-learn's ``KDTree`` / ``BallTree`` (all exact).
    leaf_size : int, default 32
        Leaf size of the search tree.
    n_jobs : int or None, default None
        Threads (None: 1, −1: all cores): row chunks are processed in parallel threads (a single chunk uses
        them for its tree query only).
    chunk_size : int, default 4096
        Rows processed at once by ``estimate_pdf``; bounds its working memory.
    ridge : float, default 1e-10
        Relative ridge on the normal equations (numerical safety only).

    Attributes
    ----------
    X_train_ : ndarray of shape (n, d)
        The scaled training features.
    y_train_ : ndarray of shape (n,)
        The training redshifts.
    scale_ : ndarray of shape (d,)
        The feature scales.
    tree_ : object
        The neighbour-search tree (rebuilt when a saved model is loaded).

    Notes
    -----
    ``estimate_pdf``'s ancil also carries, and :meth:`neighbour_fit` returns without PDFs: ``zfit`` (the local
    linear estimate, B16's point estimate), ``zerr`` (weighted RMS of the kept neighbours' residuals; it
    underestimates the error, the PDF's ``zstd`` does not), ``nn_count`` (neighbours kept after clipping,
    SDSS ``nnCount``), ``nn_avg_z`` (mean redshift of the k neighbours, ``nnAvgZ``), ``nn_is_inside`` (the
    query lies inside its kept neighbours' bounding box, ``nnIsInside``) and ``nn_fallback`` (the clipped
    mean replaced the fit). Memory: ≈ 8·(2d + 2) bytes per training row for the model, ≈ 8·k·(2d + 6) bytes
    per row of a chunk for estimation, plus the output. The paper, the implementation and every deviation
    from the paper are described in ``docs/plugins/knn_local_linear.md``.
    """

    def __init__(self, zmin=0.0, zmax=3.0, nzbins=301, point_estimate="mode", random_state=None,
                 n_neighbors=100, scale="std", weights="tricube", clip_sigma=2.0, max_clip_iter=5, outside="fit",
                 bandwidth=0.005, bandwidth_scatter=3.0, algorithm="ckdtree", leaf_size=32, n_jobs=None,
                 chunk_size=4096, ridge=1e-10):
        super().__init__(zmin=zmin, zmax=zmax, nzbins=nzbins, point_estimate=point_estimate,
                         random_state=random_state)
        self.n_neighbors = n_neighbors
        self.scale = scale
        self.weights = weights
        self.clip_sigma = clip_sigma
        self.max_clip_iter = max_clip_iter
        self.outside = outside
        self.bandwidth = bandwidth
        self.bandwidth_scatter = bandwidth_scatter
        self.algorithm = algorithm
        self.leaf_size = leaf_size
        self.n_jobs = n_jobs
        self.chunk_size = chunk_size
        self.ridge = ridge

    @classmethod
    def _conformance_instance(cls):
        # sklearn's estimator checks fit data sets of 10 rows, so k must be <= 10 here. With 8 neighbours in
        # 5-D the residual scatter of a 6-parameter fit is a poor width estimate, so the kernel's scatter
        # term is reduced; at the default 3.0 a few toy PDFs near z = 0.05 put density on z = 0, where
        # qp.interp's CDF does not start at 0 (see the report on check_pdf_output).
        return cls(n_neighbors=8, bandwidth_scatter=1.0)

    # ------------------------------------------------------------------ parameters
    def _check_params(self, n_train=None):
        k = self.n_neighbors
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
            raise InputError(f"n_neighbors must be a positive integer, got {k!r}")
        if n_train is not None and k > n_train:
            raise InputError(
                f"n_neighbors = {k} is larger than the training set ({n_train} labelled rows); "
                "use fewer neighbours or more training data"
            )
        for name, value, allowed in (("scale", self.scale, ("std", None)), ("weights", self.weights, _WEIGHTS),
                                     ("outside", self.outside, _OUTSIDE), ("algorithm", self.algorithm, _ALGORITHMS)):
            if value not in allowed:
                raise InputError(f"{name} must be one of {allowed}, got {value!r}")
        if self.clip_sigma is not None and not (np.isscalar(self.clip_sigma) and self.clip_sigma > 0):
            raise InputError(f"clip_sigma must be a positive number or None, got {self.clip_sigma!r}")
        for name in ("max_clip_iter",):
            v = getattr(self, name)
            if not isinstance(v, numbers.Integral) or v < 0:
                raise InputError(f"{name} must be a non-negative integer, got {v!r}")
        for name in ("bandwidth", "bandwidth_scatter", "ridge"):
            v = getattr(self, name)
            if not (np.isscalar(v) and np.isfinite(v) and v >= 0):
                raise InputError(f"{name} must be a finite number >= 0, got {v!r}")
        if self.bandwidth == 0 and self.bandwidth_scatter == 0:
            pass  # allowed: the PDF is the neighbours' linear deposit on the grid
        for name in ("chunk_size", "leaf_size"):
            v = getattr(self, name)
            if not isinstance(v, numbers.Integral) or v < 1:
                raise InputError(f"{name} must be a positive integer, got {v!r}")

    def _workers(self):
        return 1 if self.n_jobs is None else int(self.n_jobs)

    # ------------------------------------------------------------------ fit
    def _fit(self, X, y):
        self._check_params(n_train=X.shape[0])
        if self.scale == "std":
            s = X.std(axis=0)
            s[~(s > 0)] = 1.0
        else:
            s = np.ones(X.shape[1])
        self.scale_ = s
        self.X_train_ = np.ascontiguousarray(X / s)
        self.y_train_ = np.asarray(y, dtype=np.float64).copy()
        self._rebuild_derived_state()
        return self

    def _build_tree(self):
        if self.algorithm == "ckdtree":
            from scipy.spatial import cKDTree

            return cKDTree(self.X_train_, leafsize=self.leaf_size)
        if self.algorithm == "kd_tree":
            from sklearn.neighbors import KDTree

            return KDTree(self.X_train_, leaf_size=self.leaf_size)
        from sklearn.neighbors import BallTree

        return BallTree(self.X_train_, leaf_size=self.leaf_size)

    # the tree is rebuilt from the stored training features on load: pzkit's model files hold plain arrays
    # only, and rebuilding (~10 ms for 20k rows) is cheaper than storing a tree's own arrays
    _derived_attributes = ("tree_",)

    def _rebuild_derived_state(self):
        self.tree_ = self._build_tree()

    # ------------------------------------------------------------------ neighbours and fits
    def _query(self, Xs, workers=None):
        k = self.n_neighbors
        if self.algorithm == "ckdtree":
            dist, idx = self.tree_.query(Xs, k=k, workers=self._workers() if workers is None else workers)
            if k == 1:
                dist, idx = dist[:, None], idx[:, None]
        else:
            dist, idx = self.tree_.query(Xs, k=k)
        return dist, idx

    def _fit_chunk(self, X, workers=None):
        """Neighbour fits for one chunk of (unscaled, validated) rows: a dict of per-row arrays."""
        Xs = X / self.scale_
        dist, idx = self._query(Xs, workers)
        n, k = idx.shape
        d = Xs.shape[1]
        z = self.y_train_[idx]
        D = self.X_train_[idx] - Xs[:, None, :]
        w0 = _tricube(dist) if self.weights == "tricube" else np.ones((n, k))
        # rows whose neighbours are all at the same distance (e.g. duplicates) get uniform weights
        w0[~(w0.sum(axis=1) > 1e-12)] = 1.0
        coef, resid, keep, scatter = local_linear_fit(D, z, w0, self.clip_sigma, self.max_clip_iter, self.ridge)
        zfit = coef[:, 0]
        kept = keep & (w0 > 0)
        # inside the kept neighbours' bounding box: in every dimension, some kept offset is <= 0 and some >= 0.
        # Counted with two batched (1 × k)·(k × d) products: 4× faster than min/max over masked copies of D
        k32 = kept[:, None, :].astype(np.float32)
        below = np.matmul(k32, (D <= 0).astype(np.float32))[:, 0]
        above = np.matmul(k32, (D >= 0).astype(np.float32))[:, 0]
        inside = np.all((below > 0) & (above > 0), axis=1)
        fallback = (kept.sum(axis=1) < d + 2) | ~np.isfinite(zfit)
        fallback |= (zfit < z.min(axis=1)) | (zfit > z.max(axis=1))
        if self.outside == "mean":
            fallback |= ~inside
        if fallback.any():
            fb = np.flatnonzero(fallback)
            c0, r0, k0, s0 = local_linear_fit(D[fb], z[fb], w0[fb], self.clip_sigma, self.max_clip_iter,
                                              self.ridge, degree=0)
            zfit[fb], resid[fb], keep[fb], scatter[fb] = c0[:, 0], r0, k0, s0
            kept[fb] = k0 & (w0[fb] > 0)
        wk = w0 * kept
        n_eff = np.maximum(wk.sum(axis=1) ** 2 / np.maximum((wk * wk).sum(axis=1), 1e-300), 1.0)
        return dict(zfit=zfit, zerr=scatter, nn_count=kept.sum(axis=1), nn_avg_z=z.mean(axis=1),
                    nn_is_inside=inside, nn_fallback=fallback, _points=zfit[:, None] + resid, _w=wk,
                    _z=z, _w0=w0, _neff=n_eff)

    def neighbour_fit(self, X):
        """The local linear fit without PDFs: dict of (n,) arrays ``zfit``, ``zerr``, ``nn_count``,
        ``nn_avg_z``, ``nn_is_inside``, ``nn_fallback`` (see the class docstring)."""
        X, _ = self._validate_X(X, reset=False)
        out = self._map_chunks(self._fit_chunk, X)
        return {key: np.concatenate([o[key] for o in out]) for key in out[0] if not key.startswith("_")}

    # ------------------------------------------------------------------ PDFs
    def _kernel_widths(self, res):
        h2 = (self.bandwidth * (1.0 + np.clip(res["zfit"], self.zgrid_[0], self.zgrid_[-1]))) ** 2
        h2 = h2 + (self.bandwidth_scatter * res["zerr"] * res["_neff"] ** -0.2) ** 2
        return np.sqrt(h2)

    def _smooth(self, points, weights, widths):
        """Weighted Gaussian KDE of ``points`` (n, m) on the grid, one width per row, via linear deposit + FFT."""
        from scipy.fft import irfft, next_fast_len, rfft, rfftfreq

        g = self.zgrid_
        nz = g.size
        dz = (g[-1] - g[0]) / (nz - 1)
        n = points.shape[0]
        pos = (points - g[0]) / dz
        ok = (pos >= 0) & (pos <= nz - 1) & (weights > 0)
        j = np.clip(np.floor(pos), 0, nz - 2)
        f = np.where(ok, pos - j, 0.0)
        w = np.where(ok, weights, 0.0)
        rows = np.arange(n)[:, None] * nz
        flat = (rows + j.astype(np.int64)).ravel()
        dep = np.bincount(flat, weights=(w * (1.0 - f)).ravel(), minlength=n * nz)
        dep += np.bincount(flat + 1, weights=(w * f).ravel(), minlength=n * nz + 1)[: n * nz]
        dep = dep.reshape(n, nz)
        # linear deposit smooths by a triangle of variance dz²/6: take it out of the Gaussian
        h = np.sqrt(np.clip(widths**2 - dz * dz / 6.0, 0.0, None))
        h = np.minimum(h, (g[-1] - g[0]) / 6.0)  # keeps the circular convolution free of wrap-around
        if not np.any(h > 0):
            return dep
        L = next_fast_len(2 * nz, real=True)
        freq = rfftfreq(L, d=dz)
        H = np.exp(-2.0 * (np.pi * freq[None, :] * h[:, None]) ** 2)
        out = irfft(rfft(dep, n=L, axis=1) * H, n=L, axis=1)[:, :nz]
        # the kernel centred on the grid point: shift back by nothing (deposit is at grid indices)
        return np.clip(out, 0.0, None)

    def _pdf_chunk(self, X, workers=None):
        res = self._fit_chunk(X, workers)
        widths = self._kernel_widths(res)
        vals = self._smooth(res["_points"], res["_w"], widths)
        mass = vals.sum(axis=1)
        empty = ~(mass > 1e-12 * max(float(mass.max(initial=0.0)), 1e-300))
        if empty.any():  # every shifted neighbour left the grid: use the neighbours' own redshifts
            vals[empty] = self._smooth(res["_z"][empty], res["_w0"][empty], widths[empty])
        return vals, res

    def _map_chunks(self, func, X):
        from pzkit.parallel import map_row_chunks

        return map_row_chunks(func, X, self.chunk_size, self.n_jobs)

    def _estimate_pdf(self, X):
        parts = self._map_chunks(self._pdf_chunk, X)
        vals = np.concatenate([p[0] for p in parts]) if len(parts) > 1 else parts[0][0]
        ens = self._interp_ensemble(vals)
        extra = {key: np.concatenate([p[1][key] for p in parts]) for key in parts[0][1] if not key.startswith("_")}
        ens._pzkit_extra_ancil = extra
        return ens

    def estimate_pdf(self, X, ids=None, **side_inputs):
        """PDFs as in :meth:`pzkit.PhotoZEstimator.estimate_pdf`; the ancil also carries ``zfit``, ``zerr``,
        ``nn_count``, ``nn_avg_z``, ``nn_is_inside`` and ``nn_fallback``."""
        ens = super().estimate_pdf(X, ids=ids, **side_inputs)
        extra = ens.__dict__.pop("_pzkit_extra_ancil", None)
        if extra:
            ancil = dict(ens.ancil)
            ancil.update(extra)
            ens.set_ancil(ancil)
        return ens
