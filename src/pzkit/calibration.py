r"""Model-agnostic corrections of photo-z PDFs and point estimates.

:class:`CalibratedPhotoZ` recalibrates any estimator's PDFs with the PIT distribution of its cross-validated
training PDFs (Bordoloi, Lilly & Amara 2010, MNRAS 406, 881), optionally per magnitude bin.

:class:`ZPhotCalibrator` is Step 4 of the bias-CNN paper (Lin et al., arXiv:2202.09964, §3.2.4 and §4.3): it
removes the z_photo-dependent mean residual of any estimator's point estimates, using a labelled training set
resampled to the test sample's (z_photo, magnitude) distribution.
"""

import numbers

import numpy as np
from sklearn.base import BaseEstimator

from .base import PhotoZEstimator
from .exceptions import InputError, NotFittedError

__all__ = ["CalibratedPhotoZ", "ZPhotCalibrator"]


def _vec(x, name, n=None, allow_nan=False):
    try:
        a = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be numeric: {exc}") from exc
    if a.ndim != 1:
        raise InputError(f"{name} must be 1-D (one value per object), got shape {a.shape}")
    if n is not None and a.size != n:
        raise InputError(f"{name} has {a.size} entries but z_photo has {n}")
    bad = np.isinf(a) if allow_nan else ~np.isfinite(a)
    if bad.any():
        raise InputError(f"{name} has {int(bad.sum())} non-finite value(s)")
    return a


def _draw(cell, k, rng):
    """k indices from ``cell``: without replacement first, topped up with replacement (paper §4.3)."""
    first = rng.choice(cell, size=min(k, cell.size), replace=False)
    if k <= cell.size:
        return first
    return np.concatenate([first, rng.choice(cell, size=k - cell.size, replace=True)])


class ZPhotCalibrator(BaseEstimator):
    r"""Step 4 of Lin et al.: subtract the mean (z_photo − z_spec) per (z_photo, magnitude) cell, estimated on a
    training set resampled to match the test sample.

    Works on any estimator's output: ``fit(z_photo, mag, z_spec)`` takes the **training** objects' point
    estimates (from the same model that will be applied to the test set), reference magnitudes and spec-z;
    ``transform(z_photo, mag)`` returns corrected test point estimates.

    Algorithm (per resample; ``n_resamples`` = 5 independent resamples are averaged, paper §4.3):

    1. The test sample's (z_photo fine bin × magnitude row) counts n_ij are taken as its expected
       (z_spec × row) distribution (estimation errors are left uncorrected, as in the paper).
    2. For each test cell, round(n_ij · S/N_test) training objects (S = ``sample_size``, default N_test, the
       paper) are drawn from the training cell (row j, z_spec bin i₂), with i₂ the nearest non-empty z_spec bin of
       row j: without replacement first, topped up with replacement. Rows without training objects are skipped.
    3. In each (coarse z_photo bin × row) cell of the resampled set, δ = mean(z_photo − z_spec) (in z), and δ is
       subtracted from the test z_photo of the same cell. Cells empty in either set are left unchanged.

    Fine bins: ``n_fine_bins`` over [``zmin``, ``zmax``] (the classifier bins; SDSS 180); coarse bins:
    ``n_coarse_bins`` (reference code: 40) over the same range. Rows: ``n_rows`` rows of ``mag_step`` from
    ``mag_min``; magnitudes outside go to the edge rows, NaN to the last row; with ``mag=None`` every object is
    in one row. z_photo outside [zmin, zmax] (possible after the Step-3 range extension) is clipped into the
    edge cells (the reference code leaves such objects uncorrected).

    Assumption (paper): training and test sets share the sampling *within* each (z_spec, row) cell. The
    correction flattens the mean residual versus z_photo and re-creates a slope versus z_spec: use it only
    for z_photo-binned quantities such as tomographic mean redshifts.

    Unfolding (``unfold_iterations`` > 0; **not in the paper**, default off). Step 1 takes the test's z_photo
    histogram as its z_spec histogram, which is off by the photo-z scatter: at σ_MAD ≈ 0.02 on a peaked n(z)
    the resample holds too many objects at the low-z edge and the lowest tomographic bin keeps a bias of
    −0.004 to −0.009 (measured with ``benchmarks/bias_cnn_sdss_like.py``, 3 seeds; on seed 0, resampling to
    the test's true n(z) instead leaves |Δ⟨z⟩| < 0.002 in 5 of 5 bins). With unfolding, the test's expected
    (z_spec × row) counts are estimated per row from its (z_photo fine bin × row) counts by Richardson–Lucy
    (EM) iterations through the training set's transfer matrix P(z_photo bin | z_spec bin, row), which the
    paper's own assumption makes common to both sets; fractional counts are rounded at random (unbiased).
    The rest is unchanged.

    Parameters
    ----------
    zmin, zmax : float
        Range of the fine and coarse z bins.
    n_fine_bins, n_coarse_bins : int
    mag_min, mag_step : float
    n_rows : int
    n_resamples : int
    sample_size : int or None
        S, the size of each resampled training set (None: the test-set size).
    random_state : int, Generator or None
    unfold_iterations : int, default 0
        0: the paper (test z_photo histogram as the expected z_spec histogram); n > 0: n Richardson–Lucy
        iterations (see Unfolding; 50–200 is typical).

    Attributes (after fit)
    ----------------------
    n_train_ : int
    """

    def __init__(self, zmin=0.0, zmax=0.4, n_fine_bins=180, n_coarse_bins=40, mag_min=12.5, mag_step=0.5,
                 n_rows=11, n_resamples=5, sample_size=None, random_state=None, unfold_iterations=0):
        self.zmin = zmin
        self.zmax = zmax
        self.n_fine_bins = n_fine_bins
        self.n_coarse_bins = n_coarse_bins
        self.mag_min = mag_min
        self.mag_step = mag_step
        self.n_rows = n_rows
        self.n_resamples = n_resamples
        self.sample_size = sample_size
        self.random_state = random_state
        self.unfold_iterations = unfold_iterations

    # ------------------------------------------------------------------ helpers
    def _check_params(self):
        if not (np.isfinite(self.zmin) and np.isfinite(self.zmax) and self.zmax > self.zmin):
            raise InputError(f"need zmax > zmin, got ({self.zmin}, {self.zmax})")
        for name in ("n_fine_bins", "n_coarse_bins", "n_rows", "n_resamples"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise InputError(f"{name} must be a positive integer, got {v!r}")
        if not self.mag_step > 0:
            raise InputError(f"mag_step must be positive, got {self.mag_step!r}")
        v = self.unfold_iterations
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise InputError(f"unfold_iterations must be a non-negative integer, got {v!r}")
        if self.sample_size is not None and (not isinstance(self.sample_size, (int, np.integer))
                                             or self.sample_size < 1):
            raise InputError(f"sample_size must be None or a positive integer, got {self.sample_size!r}")

    def _bins(self, z, nb):
        w = (self.zmax - self.zmin) / nb
        return np.clip(np.floor((z - self.zmin) / w), 0, nb - 1).astype(np.int64)

    def _rows(self, mag, n):
        if mag is None:
            return np.zeros(n, dtype=np.int64)
        with np.errstate(invalid="ignore"):
            r = np.floor((mag - self.mag_min) / self.mag_step)
        r = np.where(np.isfinite(r), r, self.n_rows - 1)
        return np.clip(r, 0, self.n_rows - 1).astype(np.int64)

    # ------------------------------------------------------------------ API
    def fit(self, z_photo, mag, z_spec):
        """Store the training objects: point estimates ``z_photo``, magnitudes ``mag`` (or None), spec-z."""
        self._check_params()
        zp = _vec(z_photo, "z_photo")
        if zp.size == 0:
            raise InputError("z_photo is empty: the calibrator needs training objects")
        zs = _vec(z_spec, "z_spec", zp.size)
        m = None if mag is None else _vec(mag, "mag", zp.size, allow_nan=True)
        self.uses_mag_ = m is not None
        self.z_photo_ = zp
        self.z_spec_ = zs
        self.rows_ = self._rows(m, zp.size)
        self.spec_bin_ = self._bins(zs, self.n_fine_bins)
        self.n_train_ = int(zp.size)
        # per row: sorted non-empty z_spec fine bins and the object indices of each cell
        self._cells = {}
        order = np.lexsort((self.spec_bin_, self.rows_))
        key = self.rows_[order] * self.n_fine_bins + self.spec_bin_[order]
        starts = np.flatnonzero(np.r_[True, key[1:] != key[:-1]])
        stops = np.r_[starts[1:], key.size]
        for a, b in zip(starts, stops):
            row, fbin = divmod(int(key[a]), self.n_fine_bins)
            self._cells.setdefault(row, {})[fbin] = order[a:b]
        self._nonempty = {row: np.array(sorted(c)) for row, c in self._cells.items()}
        # per row: P(z_photo fine bin | z_spec fine bin), columns normalised where the z_spec bin is occupied
        nf = self.n_fine_bins
        counts = np.zeros((self.n_rows, nf, nf))
        np.add.at(counts, (self.rows_, self._bins(zp, nf), self.spec_bin_), 1.0)
        col = counts.sum(axis=1, keepdims=True)
        self._transfer = np.divide(counts, col, out=np.zeros_like(counts), where=col > 0)
        return self

    def _check_fitted(self):
        if not hasattr(self, "z_photo_"):
            raise NotFittedError("This ZPhotCalibrator is not fitted yet; call fit(z_photo, mag, z_spec) first")

    def resample(self, z_photo, mag, rng=None):
        """Indices of one training resample matched to the test sample (``z_photo``, ``mag``)."""
        self._check_fitted()
        zp = _vec(z_photo, "z_photo")
        rows = self._rows(self._test_mag(mag, zp.size), zp.size)
        return self._resample(zp, rows, np.random.default_rng(self.random_state) if rng is None else rng)

    def _test_mag(self, mag, n):
        if mag is None:
            if self.uses_mag_:
                raise InputError("mag is required: the calibrator was fitted with magnitudes")
            return None
        if not self.uses_mag_:
            raise InputError("mag was given but the calibrator was fitted without magnitudes")
        return _vec(mag, "mag", n, allow_nan=True)

    def _unfold(self, photo_counts, row):
        """Richardson–Lucy estimate of one row's z_spec fine-bin counts from its z_photo fine-bin counts."""
        M = self._transfer[row]
        occupied = M.sum(axis=0) > 0
        n_spec = np.where(occupied, photo_counts.sum() / max(occupied.sum(), 1), 0.0)
        for _ in range(self.unfold_iterations):
            folded = M @ n_spec
            ratio = np.divide(photo_counts, folded, out=np.zeros_like(folded), where=folded > 0)
            n_spec = n_spec * (M.T @ ratio)
        # test z_photo bins that no training object of this row reaches: the paper's nearest non-empty z_spec bin
        ne = self._nonempty[row]
        for i in np.flatnonzero((photo_counts > 0) & (M.sum(axis=1) == 0)):
            n_spec[ne[np.argmin(np.abs(ne - i))]] += photo_counts[i]
        return n_spec

    def _resample_unfolded(self, zp, rows, rng, S):
        fbin = self._bins(zp, self.n_fine_bins)
        picks = []
        for row in np.unique(rows):
            row = int(row)
            if row not in self._nonempty:
                continue
            photo = np.bincount(fbin[rows == row], minlength=self.n_fine_bins).astype(np.float64)
            n_spec = self._unfold(photo, row)
            want = n_spec * S / zp.size
            want = np.floor(want) + (rng.random(want.size) < want - np.floor(want))
            for i in np.flatnonzero(want > 0):
                cell = self._cells[row][int(i)]
                picks.append(_draw(cell, int(want[i]), rng))
        return np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)

    def _resample(self, zp, rows, rng):
        S = zp.size if self.sample_size is None else int(self.sample_size)
        if self.unfold_iterations:
            return self._resample_unfolded(zp, rows, rng, S)
        fbin = self._bins(zp, self.n_fine_bins)
        key = rows * self.n_fine_bins + fbin
        keys, counts = np.unique(key, return_counts=True)
        picks = []
        for k, c in zip(keys, counts):
            row, i = divmod(int(k), self.n_fine_bins)
            if row not in self._nonempty:
                continue
            want = int(round(c * S / zp.size))
            if want == 0:
                continue
            ne = self._nonempty[row]
            j = int(np.searchsorted(ne, i))
            cand = [ne[x] for x in (j - 1, j) if 0 <= x < ne.size]
            i2 = min(cand, key=lambda b: (abs(b - i), b))
            cell = self._cells[row][i2]
            picks.append(_draw(cell, want, rng))
        return np.concatenate(picks) if picks else np.zeros(0, dtype=np.int64)

    def corrections(self, z_photo, mag=None):
        """Per-object δ (n,) averaged over the resamples: ``transform`` returns z_photo − δ."""
        self._check_fitted()
        zp = _vec(z_photo, "z_photo")
        if zp.size == 0:
            raise InputError("z_photo is empty")
        rows = self._rows(self._test_mag(mag, zp.size), zp.size)
        rng = np.random.default_rng(self.random_state)
        nc = self.n_coarse_bins
        test_key = rows * nc + self._bins(zp, nc)
        total = np.zeros(zp.size)
        for _ in range(self.n_resamples):
            idx = self._resample(zp, rows, rng)
            delta = np.zeros(zp.size)
            if idx.size:
                tk = self.rows_[idx] * nc + self._bins(self.z_photo_[idx], nc)
                size = self.n_rows * nc
                cnt = np.bincount(tk, minlength=size)
                s = np.bincount(tk, self.z_photo_[idx] - self.z_spec_[idx], minlength=size)
                mean = np.divide(s, cnt, out=np.zeros(size), where=cnt > 0)
                delta = mean[test_key]
            total += delta
        return total / self.n_resamples

    def transform(self, z_photo, mag=None):
        """Corrected point estimates: z_photo − δ(cell), averaged over ``n_resamples`` resamples."""
        return _vec(z_photo, "z_photo") - self.corrections(z_photo, mag)

    def predict(self, z_photo, mag=None):
        """Alias of :meth:`transform`."""
        return self.transform(z_photo, mag)


class CalibratedPhotoZ(PhotoZEstimator):
    r"""PDFs of any estimator recalibrated with the PIT distribution of its cross-validated training PDFs.

    The method of Bordoloi, Lilly & Amara (2010, MNRAS 406, 881, §2): if the PIT values
    :math:`C_i(z_{s,i})` of a sample are distributed with density :math:`N(c)` rather than uniformly, the PDFs
    :math:`p'(z) \propto p(z)\,N(C(z))` have uniform PIT. Here :math:`N` is learned from out-of-fold PDFs of the
    training set (each from a model that did not see the object), as a histogram of ``n_pit_bins`` bins.

    Two additions, both fitted on the same out-of-fold PDFs:

    * **tails** (``tail_weight``): before the PIT step, each PDF is mixed with the training set's n(z),
      :math:`(1-\epsilon)\,p + \epsilon\,n`, with ε maximising the out-of-fold log score. A remap of the CDF
      cannot move a truth that lies where a PDF is zero (PIT exactly 0 or 1: the spikes at the PIT
      histogram's edges); the mixture gives such objects density, the remap then spreads them.
    * **magnitude** (``magnitude_column``): N is learned in ``n_magnitude_bins`` equal-count bins of one
      feature column, so that PDFs of faint objects are broadened more than those of bright ones. Objects
      outside the training range get the nearest bin's N: the correction is not extrapolated.

    Parameters
    ----------
    estimator : estimator or str
        The pzkit estimator (or entry-point name) whose PDFs are recalibrated; it is cloned, never fitted.
    cv : int, cross-validation splitter or iterable
        Folds for the out-of-fold PDFs (an integer: shuffled ``KFold`` seeded by ``random_state``).
    magnitude_column : int or str, optional
        The column of ``X`` (index, or name when ``fit`` gets a DataFrame) that N depends on.
    n_magnitude_bins : int
        Equal-count magnitude bins (used with ``magnitude_column``).
    n_pit_bins : int or "auto"
        Bins of the PIT histogram N. "auto": one bin per 200 held-out objects per magnitude bin (a bin's N
        then has about 7 % noise), at least 10 and at most 100.
    tail_weight : "auto", float or None
        ε of the n(z) mixture: fitted ("auto"), fixed, or None (no mixture, Bordoloi et al. as published).
    n_jobs : int, optional
        Folds fitted in parallel with joblib.
    zmin, zmax, nzbins : optional
        The grid; None: the estimator's own. When set, given to the estimator.
    point_estimate : {"mode", "median", "mean"}
        Summary of the recalibrated PDF that ``predict`` returns.
    random_state : int, Generator or None
        Seeds the folds and the estimator when its own ``random_state`` is None.
    verbose : int
        1: a progress bar over the fits.

    Attributes
    ----------
    estimator_ : estimator
        The estimator fitted on all the data.
    tail_weight_ : float
        ε of the n(z) mixture (0 without it).
    prior_ : ndarray (nzbins,)
        The training n(z) on the grid, smoothed with a Gaussian of 0.02 (1 + z).
    magnitude_edges_ : ndarray
        Inner edges of the magnitude bins (empty without ``magnitude_column``).
    pit_density_ : ndarray (n_magnitude_bins, n_pit_bins)
        N per magnitude bin, with mean 1.
    """

    _tags = {"learns": True}

    def __init__(self, estimator=None, cv=5, magnitude_column=None, n_magnitude_bins=4, n_pit_bins="auto",
                 tail_weight="auto", n_jobs=None, zmin=None, zmax=None, nzbins=None, point_estimate="mode",
                 random_state=None, verbose=0):
        self.estimator = estimator
        self.cv = cv
        self.magnitude_column = magnitude_column
        self.n_magnitude_bins = n_magnitude_bins
        self.n_pit_bins = n_pit_bins
        self.tail_weight = tail_weight
        self.n_jobs = n_jobs
        self.zmin = zmin
        self.zmax = zmax
        self.nzbins = nzbins
        self.point_estimate = point_estimate
        self.random_state = random_state
        self.verbose = verbose

    def get_tags(self):
        tags = super().get_tags()
        est = self.estimator
        if isinstance(est, PhotoZEstimator):
            for key in ("allow_nan", "fit_inputs", "predict_inputs", "thread_invariant"):
                tags[key] = est.get_tag(key, tags.get(key))
        return tags

    def _check_options(self):
        if self.estimator is None:
            raise InputError("estimator: give the pzkit estimator (or entry-point name) whose PDFs to recalibrate")
        for name in ("n_magnitude_bins", "n_pit_bins"):
            value = getattr(self, name)
            if name == "n_pit_bins" and value == "auto":
                continue
            if not isinstance(value, numbers.Integral) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        tw = self.tail_weight
        if not (tw is None or tw == "auto" or (isinstance(tw, numbers.Real) and 0 <= tw < 1)):
            raise InputError(f"tail_weight must be 'auto', None or a number in [0, 1), got {tw!r}")

    def _resolved_estimator(self, seed=None):
        from .model_selection import GRID_KEYS, resolve_estimator

        grid = {k: getattr(self, k) for k in GRID_KEYS if getattr(self, k) is not None}
        return resolve_estimator(self.estimator, "estimator", grid, None if seed is None else int(seed))

    def resolved_grid(self):
        """``(zmin, zmax, nzbins)``: the calibrator's own grid, or its estimator's."""
        from .model_selection import grid_of

        self._check_options()
        return grid_of(self._resolved_estimator())

    def _magnitude_index(self):
        col = self.magnitude_column
        if col is None:
            return None
        names = getattr(self, "feature_names_in_", None)
        if isinstance(col, str):
            if names is None or col not in list(names):
                where = "X has no column names (pass a DataFrame, or give the column's index)" if names is None \
                    else f"columns: {list(names)}"
                raise InputError(f"magnitude_column {col!r} is not a column of X; {where}")
            return list(names).index(col)
        if isinstance(col, numbers.Integral) and not isinstance(col, bool) and -self.n_features_in_ <= col \
                < self.n_features_in_:
            return int(col) % self.n_features_in_
        raise InputError(f"magnitude_column {col!r} is not a column of X, which has {self.n_features_in_} columns")

    def fit(self, X, y, **side_inputs):
        """Fit the estimator per fold and on all data; learn ε and N from the out-of-fold PDFs."""
        from .grid import check_grid
        from .model_selection import fit_members, grid_of, make_folds

        self._check_options()
        seed = self._rng().integers(2**31 - 1) if self.random_state is not None else None
        est = self._resolved_estimator(seed)
        zgrid = check_grid(*grid_of(est))
        self._check_point_estimate()
        X, _ = self._validate_X(X, reset=True)
        y = self._validate_y(y, X.shape[0], zgrid)
        col = self._magnitude_index()
        folds = make_folds(self.cv, X, y, None if seed is None else int(seed))
        fitted, oof = fit_members([est], X, y, zgrid, folds, side_inputs, n_jobs=self.n_jobs,
                                  verbose=self.verbose, desc="CalibratedPhotoZ fit")
        held_out = np.zeros(X.shape[0], dtype=bool)
        for _, test in folds:
            held_out[test] = True
        oof, z = oof[0][held_out], y[held_out]
        self.zgrid_ = zgrid
        self.prior_ = self._training_nz(y, zgrid)
        self.tail_weight_ = self._fit_tail_weight(oof, z)
        pit = _pit_on_grid(self._mix(oof), zgrid, z)
        if col is None:
            self.magnitude_edges_ = np.empty(0)
            bins = np.zeros(z.size, dtype=int)
        else:
            mag = X[held_out, col]
            finite = mag[np.isfinite(mag)]
            q = np.linspace(0, 1, self.n_magnitude_bins + 1)[1:-1]
            self.magnitude_edges_ = np.unique(np.quantile(finite, q)) if finite.size else np.empty(0)
            bins = self._magnitude_bins(mag)
        n_mag = self.magnitude_edges_.size + 1
        n_pit = self.n_pit_bins
        if n_pit == "auto":
            n_pit = int(np.clip(z.size // (200 * n_mag), 10, 100))
        density = np.ones((n_mag, n_pit))
        for b in range(n_mag):
            counts, _ = np.histogram(pit[bins == b], bins=n_pit, range=(0.0, 1.0))
            counts = counts + 1.0  # one pseudo-count per bin: a sparse bin must not zero a part of every PDF
            density[b] = counts / counts.mean()
        self.pit_density_ = density
        self.estimator_ = fitted[0]
        return self

    @staticmethod
    def _training_nz(y, zgrid):
        from .model_selection import trapezoid_weights

        # counts in fine bins, then the kernel: memory and time do not grow with the training set
        counts, edges = np.histogram(y[np.isfinite(y)], bins=20 * (zgrid.size - 1), range=(zgrid[0], zgrid[-1]))
        centres = 0.5 * (edges[1:] + edges[:-1])
        width = 0.02 * (1.0 + centres)
        kernel = np.exp(-0.5 * ((zgrid[None, :] - centres[:, None]) / width[:, None]) ** 2) / width[:, None]
        nz = counts @ kernel
        return nz / (nz @ trapezoid_weights(zgrid))

    def _mix(self, values):
        eps = getattr(self, "tail_weight_", 0.0)
        return values if eps == 0 else (1.0 - eps) * values + eps * self.prior_[None, :]

    def _fit_tail_weight(self, oof, z):
        from scipy.optimize import minimize_scalar

        if self.tail_weight is None:
            return 0.0
        if self.tail_weight != "auto":
            return float(self.tail_weight)
        from .grid import nearest_index

        idx = nearest_index(self.zgrid_, z)
        p, q = oof[np.arange(z.size), idx], self.prior_[idx]

        def loss(logit):
            eps = 1.0 / (1.0 + np.exp(-logit))
            return -np.mean(np.log((1.0 - eps) * p + eps * q + 1e-300))

        res = minimize_scalar(loss, bounds=(-14.0, 0.0), method="bounded")
        return float(1.0 / (1.0 + np.exp(-res.x)))

    def _magnitude_bins(self, mag):
        mag = np.where(np.isfinite(mag), mag, np.inf)  # no magnitude: the faintest bin
        return np.searchsorted(self.magnitude_edges_, mag, side="right")

    def recalibrate(self, values, magnitude=None):
        """Recalibrate densities ``values`` (n, nzbins) on ``zgrid_``; ``magnitude`` (n,) picks N's bin."""
        from .model_selection import trapezoid_weights

        tw = trapezoid_weights(self.zgrid_)
        values = np.asarray(values, dtype=np.float64)
        values = self._mix(values / (values @ tw)[:, None])
        bins = np.zeros(values.shape[0], dtype=int) if magnitude is None else self._magnitude_bins(magnitude)
        cdf = _cdf_on_grid(values, self.zgrid_)
        n_pit = self.pit_density_.shape[1]
        k = np.clip((cdf * n_pit).astype(int), 0, n_pit - 1)
        out = values * self.pit_density_[bins[:, None], k]
        return out / (out @ tw)[:, None]

    def _estimate_pdf(self, X, **side_inputs):
        from .model_selection import pdf_values_on_grid, side_inputs_for
        from .pdf import interp_ensemble

        ens = self.estimator_.estimate_pdf(X, **side_inputs_for(self.estimator_, side_inputs, slice(None),
                                                                  X.shape[0], "predict_inputs"))
        col = self._magnitude_index()
        mag = None if col is None else X[:, col]
        return interp_ensemble(self.zgrid_, self.recalibrate(pdf_values_on_grid(ens, self.zgrid_), mag))

    @classmethod
    def _conformance_instance(cls):
        from .registry import get_estimator_class

        return cls(estimator=get_estimator_class("random_forest")._conformance_instance(), cv=3,
                   magnitude_column=0, n_magnitude_bins=2, random_state=0)

    @classmethod
    def _sklearn_check_params(cls):
        return {"cv": 2, "magnitude_column": None}


def _cdf_on_grid(values, zgrid):
    """Cumulative trapezoid integral of each row of ``values`` on ``zgrid``, from 0 to 1."""
    from .pdf import cumulative_trapezoid

    cdf = cumulative_trapezoid(values, zgrid)
    return cdf / cdf[:, -1:]


def _pit_on_grid(values, zgrid, z):
    """CDF of each row at its truth ``z``, linear between grid points (0 below, 1 above the grid)."""
    cdf = _cdf_on_grid(values, zgrid)
    j = np.clip(np.searchsorted(zgrid, z) - 1, 0, zgrid.size - 2)
    rows = np.arange(z.size)
    frac = np.clip((z - zgrid[j]) / (zgrid[j + 1] - zgrid[j]), 0.0, 1.0)
    return cdf[rows, j] + frac * (cdf[rows, j + 1] - cdf[rows, j])
