r"""Combine the PDFs of several pzkit estimators: :class:`StackedPhotoZ`.

A stack pools its members' PDFs on their common redshift grid, with weights fitted on out-of-fold PDFs, in the
manner of scikit-learn's ``StackingRegressor``:

* linear pool (Stone 1961): :math:`p(z) = \sum_i w_i\,p_i(z)`, with :math:`w` on the simplex;
* log pool (Genest & Zidek 1986): :math:`p(z) \propto \prod_i (p_i(z) + f)^{w_i}`, with :math:`w_i \ge 0` not
  constrained to sum to one, so the fit also sets how much sharper or broader than its members the pool is;
  ``f`` is a density floor (``floor``, a fraction of the uniform density on the grid) that keeps one member's
  zero from vetoing the others.

The weights minimise a proper score of the pooled out-of-fold PDFs of the training set: the CDE loss
(Izbicki & Lee 2017) or the log score. Combining photo-z PDFs of different methods was studied by Carrasco
Kind & Brunner (2014, MNRAS 442, 3380), whose weighted linear combinations are this class's linear pool.
"""

import numbers

import numpy as np

from .base import PhotoZEstimator
from .exceptions import InputError
from .model_selection import (GRID_KEYS, fit_members, grid_of, make_folds, pdf_values_on_grid, resolve_estimator,
                              side_inputs_for, trapezoid_weights)
from .grid import nearest_index
from .pdf import interp_ensemble

__all__ = ["StackedPhotoZ", "pool_pdfs", "fit_pool_weights", "score_pdfs"]

#: members used when ``estimators`` is None: the three catalogue methods whose stack is benchmarked on DC2
DEFAULT_MEMBERS = ("knn_local_linear", "random_forest", "baseline_nn")


class StackedPhotoZ(PhotoZEstimator):
    r"""A pool of several pzkit estimators' PDFs, with weights fitted by cross-validated proper scoring.

    ``fit`` fits every member once per fold of ``cv`` and predicts the held-out fold, fits the pool's weights
    on those out-of-fold PDFs, then fits every member once on all the data. ``estimate_pdf`` pools the fitted
    members' PDFs on the shared grid (a ``qp.interp`` ensemble); ``predict`` is the pool's mode by default.

    Parameters
    ----------
    estimators : list of (str, estimator or str), optional
        The members, as ``(name, estimator)`` pairs like ``StackingRegressor``'s; an estimator may also be given
        by its ``pzkit.estimators`` entry-point name (so a RAIL configuration can name members). Default:
        ``knn_local_linear``, ``random_forest`` and ``baseline_nn``. The given estimators are cloned, never
        fitted. Their parameters can be set through the stack as ``<name>__<parameter>``.
    pool : {"linear", "log"}
        How the PDFs are combined (module docstring).
    weights : array-like of shape (n_members,), optional
        Fixed pool weights; no cross-validation is run. Default: fitted by ``scoring`` on out-of-fold PDFs.
    cv : int, cross-validation splitter or iterable of (train, test) indices
        Folds for the out-of-fold PDFs. An integer gives that many shuffled ``KFold`` folds seeded by
        ``random_state`` (a catalogue is often sorted, e.g. by magnitude).
    scoring : {"cde_loss", "log_score"}
        The proper score the weights minimise.
    floor : float
        Density floor of the log pool, as a fraction of the uniform density ``1 / (zmax - zmin)``.
    n_jobs : int, optional
        Member fits run in parallel with joblib (``None``: one at a time). Each torch member already uses
        the machine's cores, so more than one job pays mostly for catalogue members.
    zmin, zmax, nzbins : float, float, int, optional
        The redshift grid. ``None`` (default): the members' grid, which they must share. When set, it is
        given to every member.
    point_estimate : {"mode", "median", "mean"}
        Summary of the pooled PDF that ``predict`` returns.
    random_state : int, Generator or None
        Seeds the folds and every member that takes ``random_state`` and does not set it.
    verbose : int
        0: silent; 1: a progress bar over the member fits.

    Attributes
    ----------
    estimators_ : list of estimators
        The members fitted on all the data, in the order of ``estimators``.
    named_estimators_ : dict
        The same, by name.
    weights_ : ndarray of shape (n_members,)
        The pool weights.
    cv_scores_ : dict
        Out-of-fold score (``scoring``) of each member and of the pool; empty when ``weights`` is given.
    zgrid_ : ndarray
        The shared redshift grid.
    """

    _tags = {"learns": True}

    def __init__(self, estimators=None, pool="linear", weights=None, cv=5, scoring="cde_loss", floor=1e-3,
                 n_jobs=None, zmin=None, zmax=None, nzbins=None, point_estimate="mode", random_state=None,
                 verbose=0):
        self.estimators = estimators
        self.pool = pool
        self.weights = weights
        self.cv = cv
        self.scoring = scoring
        self.floor = floor
        self.n_jobs = n_jobs
        self.zmin = zmin
        self.zmax = zmax
        self.nzbins = nzbins
        self.point_estimate = point_estimate
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------------ members and nested parameters
    def _member_pairs(self):
        members = self.estimators
        if members is None:
            members = [(name, name) for name in DEFAULT_MEMBERS]
        if isinstance(members, (str, bytes)) or not hasattr(members, "__iter__"):
            raise InputError(f"estimators must be a list of (name, estimator) pairs, got {members!r}")
        pairs = []
        for item in members:
            if not (isinstance(item, (tuple, list)) and len(item) == 2 and isinstance(item[0], str)):
                raise InputError(f"estimators must be a list of (name, estimator) pairs, got the entry {item!r}")
            pairs.append((item[0], item[1]))
        return pairs

    def get_params(self, deep=True):
        params = super().get_params(deep=False)
        try:
            pairs = self._member_pairs() if deep and self.estimators is not None else []
        except InputError:  # reported by fit; get_params must work on any value (sklearn's convention)
            pairs = []
        if pairs:
            for name, est in pairs:
                params[name] = est
                if hasattr(est, "get_params"):
                    params.update({f"{name}__{k}": v for k, v in est.get_params(deep=True).items()})
        return params

    def set_params(self, **params):
        own = {k: v for k, v in params.items() if "__" not in k and k in self._get_param_names()}
        if "estimators" in own:
            super().set_params(estimators=own.pop("estimators"))
        nested = [k for k in params if k not in own and k != "estimators"]
        pairs = self._member_pairs() if nested and self.estimators is not None else []
        names = [n for n, _ in pairs]
        replaced = False
        for key, value in params.items():
            if key in own or key == "estimators":
                continue
            name, _, sub = key.partition("__")
            if name not in names:
                raise ValueError(f"Invalid parameter {key!r} for {type(self).__name__}: no parameter or member "
                                 f"named {name!r} (members: {names})")
            i = names.index(name)
            if sub:
                pairs[i][1].set_params(**{sub: value})
            else:
                pairs[i] = (name, value)
                replaced = True
        if replaced:
            super().set_params(estimators=pairs)
        if own:
            super().set_params(**own)
        return self

    def _resolved_members(self):
        """Unfitted clones of the members, with the stack's grid and seed; checks that they share one grid."""
        pairs = self._member_pairs()
        if len(pairs) < 2:
            raise InputError(f"estimators: a stack needs at least two members, got {len(pairs)}")
        names = [n for n, _ in pairs]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise InputError(f"estimators: member names must be unique, {dup} repeat")
        grid = {k: getattr(self, k) for k in GRID_KEYS if getattr(self, k) is not None}
        members = [(name, resolve_estimator(est, f"estimators: member {name!r}", grid,
                                            None if self.random_state is None else self._member_seed(i)))
                   for i, (name, est) in enumerate(pairs)]
        grids = {name: grid_of(est) for name, est in members}
        if len(set(grids.values())) > 1:
            listed = ", ".join(f"{n} {g[0]}–{g[1]} ({g[2]} points)" for n, g in grids.items())
            raise InputError(f"estimators: the members' redshift grids differ ({listed}); give them one grid, or "
                             "set zmin/zmax/nzbins on the stack")
        return members

    def resolved_grid(self):
        """``(zmin, zmax, nzbins)`` of the stack: its own, or the members' shared grid."""
        return grid_of(self._resolved_members()[0][1])

    def _member_seed(self, i):
        return int(np.random.default_rng(self._seed()).integers(2**31 - 1, size=i + 1)[i])

    def _seed(self):
        rs = self.random_state
        if isinstance(rs, (numbers.Integral, type(None))):
            return rs
        return int(self._rng().integers(2**31 - 1))

    def get_tags(self):
        tags = super().get_tags()
        try:
            members = [est for _, est in self._member_pairs() if not isinstance(est, str)]
        except InputError:
            return tags
        if members:
            tags["allow_nan"] = all(m.get_tag("allow_nan") for m in members)
            fit_inputs, predict_inputs = {}, {}
            for m in members:
                fit_inputs.update(m.get_tag("fit_inputs") or {})
                predict_inputs.update(m.get_tag("predict_inputs") or {})
            tags["fit_inputs"], tags["predict_inputs"] = fit_inputs, predict_inputs
            tags["thread_invariant"] = all(m.get_tag("thread_invariant", True) for m in members)
        return tags

    # ------------------------------------------------------------------ fit
    def fit(self, X, y, **side_inputs):
        """Fit the members per fold, the pool weights on their out-of-fold PDFs, then the members on all data.

        Side inputs (narrow bands, ...) go to the members that declare them in their ``fit_inputs`` tag.
        """
        from .grid import check_grid

        self._check_options()
        members = self._resolved_members()
        zgrid = check_grid(*grid_of(members[0][1]))
        self._check_point_estimate()
        X, _ = self._validate_X(X, reset=True)
        y = self._validate_y(y, X.shape[0], zgrid)
        weights = None if self.weights is None else self._checked_weights(len(members))
        folds = [] if self.weights is not None else make_folds(self.cv, X, y, self._seed())
        fitted, oof = fit_members([est for _, est in members], X, y, zgrid, folds, side_inputs,
                                  n_jobs=self.n_jobs, verbose=self.verbose, desc="StackedPhotoZ fit")
        self.zgrid_ = zgrid
        self.cv_scores_ = {}
        if self.weights is None:
            held_out = np.zeros(X.shape[0], dtype=bool)
            for _, test in folds:
                held_out[test] = True
            oof, z = oof[:, held_out], y[held_out]
            weights = fit_pool_weights(oof, z, zgrid, pool=self.pool, scoring=self.scoring, floor=self.floor)
            self.cv_scores_ = {name: score_pdfs(oof[i], z, zgrid, self.scoring) for i, (name, _) in enumerate(members)}
            self.cv_scores_["stack"] = score_pdfs(self._combine(oof, weights), z, zgrid, self.scoring)
        self.weights_ = weights
        self.estimators_ = fitted
        self.named_estimators_ = {name: est for (name, _), est in zip(members, fitted)}
        return self

    def _check_options(self):
        if self.weights is None and self.cv is None:
            raise InputError("cv must be set when weights are fitted (weights=None)")
        if self.pool not in ("linear", "log"):
            raise InputError(f"pool must be 'linear' or 'log', got {self.pool!r}")
        if self.scoring not in ("cde_loss", "log_score"):
            raise InputError(f"scoring must be 'cde_loss' or 'log_score', got {self.scoring!r}")
        if not (isinstance(self.floor, numbers.Real) and 0 < self.floor < 1):
            raise InputError(f"floor must be a number in (0, 1), got {self.floor!r}")

    def _checked_weights(self, n_members):
        w = np.asarray(self.weights, dtype=np.float64)
        if w.shape != (n_members,) or not np.all(np.isfinite(w)) or np.any(w < 0) or not w.sum() > 0:
            raise InputError(f"weights must be {n_members} non-negative numbers (one per member), not all 0; got "
                             f"{self.weights!r}")
        return w / w.sum() if self.pool == "linear" else w

    # ------------------------------------------------------------------ pooling
    def _combine(self, values, weights):
        return pool_pdfs(values, weights, self.zgrid_, pool=self.pool, floor=self.floor)

    def _estimate_pdf(self, X, **side_inputs):
        values = np.stack([
            pdf_values_on_grid(est.estimate_pdf(X, **side_inputs_for(est, side_inputs, slice(None), X.shape[0],
                                                                     "predict_inputs")), self.zgrid_)
            for est in self.estimators_])
        values /= (values @ trapezoid_weights(self.zgrid_))[..., None]
        return interp_ensemble(self.zgrid_, self._combine(values, self.weights_))

    # ------------------------------------------------------------------ conformance-suite hooks
    @classmethod
    def _conformance_instance(cls):
        from .registry import get_estimator_class

        members = [("knn", get_estimator_class("knn_local_linear")._conformance_instance()),
                   ("rf", get_estimator_class("random_forest")._conformance_instance())]
        return cls(estimators=members, cv=3, random_state=0)

    @classmethod
    def _sklearn_check_params(cls):
        # scikit-learn's checks fit 6–20 rows: too few for folds of an 8-neighbour kNN, so the weights are fixed
        return {"weights": [0.5, 0.5]}


def pool_pdfs(values, weights, zgrid, pool="linear", floor=1e-3):
    """Pool densities ``values`` (k members, n objects, len(zgrid)) with ``weights`` (k,).

    ``pool="linear"``: Σ w_i p_i; ``"log"``: ∝ Π (p_i + f)^w_i with f = ``floor`` / (zmax − zmin). Each pooled
    row is normalised on ``zgrid`` (trapezoid rule).
    """
    zgrid = np.asarray(zgrid, dtype=np.float64)
    weights = np.asarray(weights, dtype=np.float64)
    if pool == "linear":
        p = np.tensordot(weights, values, axes=1)
    elif pool == "log":
        f = floor / (zgrid[-1] - zgrid[0])
        logp = np.tensordot(weights, np.log(np.clip(values, 0.0, None) + f), axes=1)
        logp -= logp.max(axis=1, keepdims=True)
        p = np.exp(logp)
    else:
        raise InputError(f"pool must be 'linear' or 'log', got {pool!r}")
    return p / (p @ trapezoid_weights(zgrid))[:, None]


def _scorer(scoring, zgrid, truth):
    tw = trapezoid_weights(zgrid)
    rows = np.arange(truth.size)
    if scoring == "cde_loss":  # as pzkit.metrics.cde_loss: the density at the grid point nearest the truth
        return lambda p: float(np.mean((p**2) @ tw) - 2.0 * np.mean(p[rows, truth]))
    if scoring == "log_score":
        return lambda p: float(-np.mean(np.log(p[rows, truth] + 1e-12)))
    raise InputError(f"scoring must be 'cde_loss' or 'log_score', got {scoring!r}")


def score_pdfs(values, z, zgrid, scoring="cde_loss"):
    """CDE loss or log score (lower is better) of densities ``values`` (n, len(zgrid)) at the truths ``z``."""
    zgrid = np.asarray(zgrid, dtype=np.float64)
    return _scorer(scoring, zgrid, nearest_index(zgrid, np.asarray(z, dtype=np.float64)))(values)


def fit_pool_weights(values, z, zgrid, pool="linear", scoring="cde_loss", floor=1e-3):
    """Weights (k,) that minimise ``scoring`` of the pooled ``values`` (k, n, len(zgrid)) at the truths ``z``.

    Linear pool: weights on the simplex (a softmax parametrisation); log pool: weights ≥ 0 (exp), free in sum.
    Nelder–Mead, started from equal weights 1/k.
    """
    from scipy.optimize import minimize

    zgrid = np.asarray(zgrid, dtype=np.float64)
    k = values.shape[0]
    score = _scorer(scoring, zgrid, nearest_index(zgrid, np.asarray(z, dtype=np.float64)))
    if pool == "linear":
        def to_weights(a):
            e = np.exp(a - a.max())
            return e / e.sum()
        start = np.zeros(k)
    else:
        def to_weights(a):
            return np.exp(a)
        start = np.full(k, np.log(1.0 / k))
    res = minimize(lambda a: score(pool_pdfs(values, to_weights(a), zgrid, pool, floor)), start,
                   method="Nelder-Mead", options={"xatol": 1e-3, "fatol": 1e-6, "maxiter": 400 * k})
    return to_weights(res.x)
