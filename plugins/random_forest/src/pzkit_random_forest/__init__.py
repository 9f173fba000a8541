"""pzkit plugin ``random_forest``: scikit-learn's random forest on colours + magnitude (Moran et al.), with a
quantile-regression-forest conditional density (Meinshausen 2006) on the redshift grid."""

import numbers

import numpy as np

from pzkit import PhotoZEstimator
from pzkit.exceptions import InputError

__all__ = ["RandomForestPZ"]
__version__ = "0.1.0"


class RandomForestPZ(PhotoZEstimator):
    r"""Random-forest photo-z (Moran et al.) with a conditional density from the forest's leaves.

    scikit-learn's ``RandomForestRegressor`` is trained on the colour + magnitude features. The PDF uses the
    quantile-regression-forest weights w_i(x) of Meinshausen (2006): the training redshifts of the leaves a
    row falls in, shrunk about their weighted mean z̄(x) by ``spread`` and smoothed with a Gaussian kernel,

        p(z | x) ∝ Σ_i w_i(x) N(z; z̄ + spread·(z_i − z̄), [bandwidth·(1 + z)]²).

    ``estimate_pdf``'s ancil also carries ``zforest`` (the mean over trees, the paper's point estimate) and
    ``zforest_std`` (the spread of the per-tree predictions).

    Parameters
    ----------
    zmin, zmax, nzbins, point_estimate
        See :class:`pzkit.PhotoZEstimator`.
    random_state : int, numpy Generator/RandomState or None
        Seeds the forest (bootstrap and feature draws).
    n_estimators, criterion, max_depth, min_samples_split, min_samples_leaf
        As in ``sklearn.ensemble.RandomForestRegressor`` (same defaults).
    max_features, max_leaf_nodes, bootstrap, max_samples
        As in ``sklearn.ensemble.RandomForestRegressor`` (same defaults).
    spread : float in (0, 1], default 0.7
        Shrink factor of the leaf redshift distribution about its weighted mean (1: Meinshausen's QRF).
    bandwidth : float, default 0.01
        Kernel width in units of (1 + z); 0 gives the bare leaf weights deposited on the grid.
    n_jobs : int or None, default None
        Threads (None: 1, −1: all cores): the forest is fitted in parallel, and the row chunks of
        ``estimate_pdf`` are processed in parallel threads (a lone chunk parallelises its tree traversal).
    chunk_size : int, default 4096
        Rows processed at once by ``estimate_pdf``; bounds its working memory (with ``n_jobs`` threads,
        ``n_jobs`` chunks are in flight).

    Attributes
    ----------
    forest_ : sklearn.ensemble.RandomForestRegressor
        The fitted forest.
    leaf_index_ : ndarray of shape (n_nodes_total,), int32
        Compact leaf number of every node (−1 for split nodes).
    node_offset_ : ndarray of shape (n_estimators,)
        First global node number of every tree.
    node_value_ : ndarray of shape (n_nodes_total,)
        Every node's value (the tree's prediction at a leaf).
    leaf_pdf_ : scipy.sparse.csr_matrix of shape (n_leaves, nzbins)
        Every leaf's redshift distribution on the grid (rows sum to 1).
    model_nbytes_ : int
        Bytes held by the forest arrays and the leaf distributions.

    Notes
    -----
    With n training rows, T trees, bootstrap fraction s (``max_samples``, 1 by default) and leaf size m
    (``min_samples_leaf``), the fitted model needs at most ≈ T·(100·s/m + 24) bytes per training row;
    ``estimate_pdf`` needs ≈ 4·T + 8·nzbins bytes per row of a chunk plus the output. The paper, the
    implementation (compiled tree walk and density), the memory estimate and every deviation from the paper
    are described in ``docs/plugins/random_forest.md``; measured speed and memory in ``BENCHMARKS.md``.
    """

    def __init__(self, zmin=0.0, zmax=3.0, nzbins=301, point_estimate="mode", random_state=None,
                 n_estimators=100, criterion="squared_error", max_depth=None, min_samples_split=2,
                 min_samples_leaf=1, max_features=1.0, max_leaf_nodes=None, bootstrap=True, max_samples=None,
                 spread=0.7, bandwidth=0.01, n_jobs=None, chunk_size=4096):
        super().__init__(zmin=zmin, zmax=zmax, nzbins=nzbins, point_estimate=point_estimate,
                         random_state=random_state)
        self.n_estimators = n_estimators
        self.criterion = criterion
        self.max_depth = max_depth
        self.min_samples_split = min_samples_split
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.max_leaf_nodes = max_leaf_nodes
        self.bootstrap = bootstrap
        self.max_samples = max_samples
        self.spread = spread
        self.bandwidth = bandwidth
        self.n_jobs = n_jobs
        self.chunk_size = chunk_size

    @classmethod
    def _conformance_instance(cls):
        return cls(n_estimators=20)

    # ------------------------------------------------------------------ fit
    def _check_params(self):
        bw = self.bandwidth
        if not (np.isscalar(bw) and np.isfinite(bw) and bw >= 0):
            raise InputError(f"bandwidth must be a finite number >= 0, got {bw!r}")
        lam = self.spread
        if not (np.isscalar(lam) and np.isfinite(lam) and 0 < lam <= 1):
            raise InputError(f"spread must be a number in (0, 1], got {lam!r}")
        if not isinstance(self.chunk_size, numbers.Integral) or self.chunk_size < 1:
            raise InputError(f"chunk_size must be a positive integer, got {self.chunk_size!r}")

    def _make_forest(self):
        from sklearn.ensemble import RandomForestRegressor

        seed = int(self._rng().integers(np.iinfo(np.int32).max))
        return RandomForestRegressor(
            n_estimators=self.n_estimators, criterion=self.criterion, max_depth=self.max_depth,
            min_samples_split=self.min_samples_split, min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features, max_leaf_nodes=self.max_leaf_nodes, bootstrap=self.bootstrap,
            max_samples=self.max_samples, n_jobs=self.n_jobs, random_state=seed,
        )

    def _fit(self, X, y):
        from scipy.sparse import csr_matrix

        self._check_params()
        forest = self._make_forest()
        try:
            forest.fit(X, y)
        except ValueError as exc:  # sklearn's parameter validation (InvalidParameterError is a ValueError)
            raise InputError(f"{type(self).__name__}: invalid forest parameter: {exc}") from exc
        trees = [est.tree_ for est in forest.estimators_]
        counts = np.array([t.node_count for t in trees], dtype=np.int64)
        offsets = np.concatenate([[0], np.cumsum(counts)[:-1]])
        is_leaf = np.concatenate([t.children_left == -1 for t in trees])
        leaf_index = np.full(is_leaf.size, -1, dtype=np.int32)
        n_leaves = int(is_leaf.sum())
        leaf_index[is_leaf] = np.arange(n_leaves, dtype=np.int32)
        node_value = np.concatenate([t.value[:, 0, 0] for t in trees])

        # every training row dropped down every tree (Meinshausen's QRF weights use all rows)
        leaves = leaf_index[forest.apply(X) + offsets[None, :]]  # (n, T) compact leaf numbers
        n, T = leaves.shape
        size = np.bincount(leaves.ravel(), minlength=n_leaves).astype(np.float64)
        g = self.zgrid_
        nz = g.size
        pos = (y - g[0]) / (g[-1] - g[0]) * (nz - 1)
        j = np.clip(np.floor(pos).astype(np.int64), 0, nz - 2)
        f = np.clip(pos - j, 0.0, 1.0)
        rows = leaves.ravel()
        w = 1.0 / size[rows]
        cols = np.repeat(j, T)
        ff = np.repeat(f, T)
        L = csr_matrix(
            (np.concatenate([w * (1.0 - ff), w * ff]).astype(np.float32),
             (np.concatenate([rows, rows]), np.concatenate([cols, cols + 1]))),
            shape=(n_leaves, nz),
        )
        L.sum_duplicates()
        L.eliminate_zeros()
        self.forest_ = forest
        self.node_offset_ = offsets
        self.leaf_index_ = leaf_index
        self.node_value_ = node_value
        self.leaf_pdf_ = L
        self._rebuild_derived_state()
        forest_bytes = sum(t.node_count * (64 + 8) for t in trees)  # sklearn Node struct + value
        self.model_nbytes_ = int(forest_bytes + leaf_index.nbytes + node_value.nbytes + L.data.nbytes
                                 + L.indices.nbytes + L.indptr.nbytes)
        return self

    # ------------------------------------------------------------------ density
    def _kernel(self):
        """(nzbins, nzbins) matrix K: row i is the Gaussian of width bandwidth·(1 + z_i) around grid point i."""
        g = self.zgrid_
        dz = (g[-1] - g[0]) / (g.size - 1)
        # each linear deposit on the grid smooths by a triangle of variance dz²/6 (one for the training
        # redshifts, scaled by spread², one more when the spread is applied): take them out of the Gaussian
        dep = dz * dz / 6.0 * (self.spread**2 + (1.0 if self.spread != 1 else 0.0))
        h = np.sqrt(np.clip((self.bandwidth * (1.0 + g)) ** 2 - dep, 0.0, None))
        if not np.any(h > 0):
            return None
        hh = np.where(h > 0, h, 1.0)[:, None]
        K = np.exp(-0.5 * ((g[None, :] - g[:, None]) / hh) ** 2) / hh
        K[h == 0] = np.eye(g.size)[h == 0]
        return K

    # the compiled loops' tables are derived state: kept out of the saved model and rebuilt on load
    _derived_attributes = ("_walk_tables", "_leaf_blocks")

    def _rebuild_derived_state(self):
        from ._kernels import flatten_forest, leaf_blocks

        offsets, self._leaf_blocks = leaf_blocks(self.node_value_[self.leaf_index_ >= 0], self.leaf_pdf_)
        self._walk_tables = flatten_forest([est.tree_ for est in self.forest_.estimators_], offsets)

    def _chunk(self, X32, rows, kernel, out):
        """Walk the C-contiguous float32 rows ``X32`` down the forest; their PDFs (before normalisation) and
        the mean and std of the per-tree predictions go to rows ``rows`` of the arrays in ``out``."""
        from ._kernels import leaf_density, walk

        leaves = walk(X32, *self._walk_tables, np.empty((X32.shape[0], len(self.forest_.estimators_)), np.int32))
        leaf_density(leaves, self._leaf_blocks, self.zgrid_, float(self.spread), *kernel, rows, *out)

    def _traversal_order(self, X32):
        """Rows ordered by the first tree's prediction (stable sort). Rows that are neighbours in this order
        take nearly the same paths through every tree, so a chunk walks a small, cache-resident part of each
        tree instead of all of it (the speed-up is in ``BENCHMARKS.md``), and the compiled walk's blocks of
        16 rows rely on it. Each row's output does not depend on its neighbours.
        ``X32``: the rows as C-contiguous float32, the trees' own input type."""
        first = self.forest_.estimators_[0].tree_
        return np.argsort(first.predict(X32).reshape(X32.shape[0], -1)[:, 0], kind="stable")

    def _estimate_pdf(self, X):
        from pzkit.parallel import map_row_chunks

        from ._kernels import kernel_operands

        kernel = kernel_operands(self._kernel())
        X32 = np.ascontiguousarray(X, dtype=np.float32)  # converted once, not per chunk and tree
        order = self._traversal_order(X32)
        n = X.shape[0]
        out = vals, zforest, zforest_std = np.empty((n, self.zgrid_.size)), np.empty(n), np.empty(n)
        # chunks of the sorted rows; each writes its results to its rows' places in input order
        map_row_chunks(lambda rows, jobs: self._chunk(np.ascontiguousarray(X32[rows]), rows, kernel, out),
                       order, self.chunk_size, self.n_jobs)
        ens = self._interp_ensemble(vals)
        ens._pzkit_extra_ancil = {"zforest": zforest, "zforest_std": zforest_std}
        return ens

    def estimate_pdf(self, X, ids=None, **side_inputs):
        """PDFs as in :meth:`pzkit.PhotoZEstimator.estimate_pdf`; the ancil also carries ``zforest`` (mean
        over trees, the paper's point estimate) and ``zforest_std`` (spread of the per-tree predictions)."""
        ens = super().estimate_pdf(X, ids=ids, **side_inputs)
        extra = ens.__dict__.pop("_pzkit_extra_ancil", None)
        if extra:
            ancil = dict(ens.ancil)
            ancil.update(extra)
            ens.set_ancil(ancil)
        return ens
