"""The estimator interface every pzkit method implements."""

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, column_or_1d, validate_data

from . import pdf as _pdf
from .exceptions import InputError, InputTypeError, NotFittedError, PzkitDeprecationWarning
from .grid import check_grid

POINT_ESTIMATES = {"mode": "zmode", "median": "zmedian", "mean": "zmean"}


#: Largest feature magnitude accepted: beyond float32's range, tree ensembles and torch networks (which work
#: in float32) would see ±inf.
FEATURE_LIMIT = float(np.finfo(np.float32).max)


def _check_float32_range(X, owner):
    if X.dtype.kind != "f" or X.size == 0:
        return
    with np.errstate(invalid="ignore"):
        big = np.abs(X) > FEATURE_LIMIT
    if big.any():
        i, j = (int(v[0]) for v in np.nonzero(big))
        raise InputError(
            f"{owner}: X has {int(big.sum())} value(s) beyond ±{FEATURE_LIMIT:.3g} (float32's range), first at "
            f"row {i}, column {j} ({X[i, j]:.3g}); such values are not photometry"
        )


def _check_ids(ids, n_rows):
    """Ids must be one per row, present and unique: they are how an output PDF is matched to its object."""
    import pandas as pd

    ids = np.asarray(ids)
    if ids.shape != (n_rows,):
        raise InputError(f"ids must have one entry per row of X ({n_rows}), got shape {ids.shape}")
    missing = pd.isna(ids)
    if np.any(missing):
        raise InputError(f"ids has {int(np.sum(missing))} missing entries (None/NaN), first at row "
                         f"{int(np.flatnonzero(missing)[0])}")
    index = pd.Index(ids)
    if not index.is_unique:
        dup = index[index.duplicated()].unique()
        raise InputError(f"ids has {int(index.duplicated().sum())} duplicated entries, e.g. {list(dup[:5])}: "
                         "every object needs its own id")
    return ids


class PhotoZEstimator(RegressorMixin, BaseEstimator):
    """Base class of all pzkit photo-z estimators.

    A subclass implements two methods and inherits everything else (validation, the qp output with its
    ancil, point estimates, ``score``, persistence, the conformance suite):

    * ``_fit(self, X, y, **side_inputs)`` – learn from the validated float64 feature matrix ``X`` (n, d)
      and redshifts ``y`` (n,) (NaN marks an unlabelled object when the ``unlabelled_rows`` tag is true);
      store fitted state in attributes ending in ``_``.
    * ``_estimate_pdf(self, X, **side_inputs)`` – return a ``qp.Ensemble`` with one PDF per row of ``X``,
      usually built with :meth:`_interp_ensemble` (values on ``zgrid_``) or :meth:`_hist_ensemble` (bin
      densities on the ``nzbins - 1`` bins between grid points).

    Like every scikit-learn estimator, a subclass lists all its parameters, these five included, explicitly
    in ``__init__`` and stores them unchanged.

    Parameters
    ----------
    zmin, zmax : float
        Range of the output redshift grid.
    nzbins : int
        Number of grid points (RAIL's convention): ``zgrid_ = linspace(zmin, zmax, nzbins)``.
    point_estimate : {"mode", "median", "mean"}
        Which summary of the PDF ``predict`` returns (a plugin may add its own point output, see
        ``point_estimate_columns``).
    random_state : int, numpy Generator/RandomState or None
        Seed for every random step of the method.
    """

    #: ``point_estimate`` choices -> the ``estimate_pdf`` ancil column ``predict`` returns. A plugin whose paper
    #: has its own point output (a regression head) adds it here and writes that column in ``_estimate_pdf``.
    point_estimate_columns = POINT_ESTIMATES

    #: What the estimator consumes, as tags (skbase/sktime style): class-level ``_tags`` dicts are merged along
    #: the MRO, a subclass's entries win. Read them with :meth:`get_tags` / :meth:`get_class_tags`; ``pzkit
    #: list --tags`` shows them, and the harness and the CLI route inputs by them.
    #:
    #: ``X_type``
    #:     ``"photometry"`` (a catalog turned into a feature table) or ``"images"`` ((n, bands, H, W) stamps).
    #: ``fit_inputs`` / ``predict_inputs``
    #:     ``{keyword of fit (predict, estimate_pdf): dataset input}``; the inputs are named in
    #:     :data:`pzkit.datasets.INPUTS` (``"narrow_bands"``, ``"mag"``, ``"target:images"`` …).
    #: ``required_fit_inputs``
    #:     fit keywords without which ``fit`` fails; ``pzkit bench`` leaves out methods whose inputs a dataset lacks.
    #: ``unlabelled_rows``
    #:     NaN in ``y`` marks an unlabelled object the method learns from (semi-supervised methods).
    #: ``allow_nan``
    #:     NaN features are passed to the method (it handles missing features itself).
    #: ``learns``
    #:     the conformance suite checks that the method beats the training-set n(z) on held-out toy data.
    #: ``expected_failed_sklearn_checks``
    #:     sklearn checks expected to fail, name -> reason (reported by the conformance suite, not hidden).
    #: ``thread_invariant``
    #:     fits and predictions are bit-identical whatever the number of CPU threads (torch plugins: the engine
    #:     may then adapt the thread count to the machine's load without changing any result).
    _tags = {
        "X_type": "photometry",
        "fit_inputs": {},
        "required_fit_inputs": (),
        "predict_inputs": {},
        "unlabelled_rows": False,
        "allow_nan": False,
        "learns": True,
        "expected_failed_sklearn_checks": {},
        "thread_invariant": True,
    }
    #: Fitted attributes computed from the other fitted state (search trees, packed copies): left out of
    #: ``__getstate__`` (so out of saved models and pickles) and rebuilt on load by ``_rebuild_derived_state``.
    _derived_attributes = ()

    # ------------------------------------------------------------------ tags
    #: attributes that declared what an estimator consumes before the tags: still honoured, with a warning
    _LEGACY_TAG_ATTRIBUTES = {"_allows_unlabelled": "unlabelled_rows", "_allows_nan_features": "allow_nan",
                              "_learns": "learns", "_expected_failed_sklearn_checks": "expected_failed_sklearn_checks",
                              "_required_fit_inputs": "required_fit_inputs"}

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        legacy = {attr: tag for attr, tag in PhotoZEstimator._LEGACY_TAG_ATTRIBUTES.items() if attr in cls.__dict__}
        if legacy:
            import warnings

            warnings.warn(f"{cls.__name__}: {', '.join(legacy)} are replaced by tags; set "
                          f"_tags = {{{', '.join(repr(t) + ': ...' for t in legacy.values())}}} instead",
                          PzkitDeprecationWarning, stacklevel=2)
            tags = dict(cls.__dict__.get("_tags", {}))
            for attr, tag in legacy.items():
                tags.setdefault(tag, cls.__dict__[attr])
            cls._tags = tags

    @classmethod
    def get_class_tags(cls):
        """Tags of the class: the ``_tags`` dicts of its MRO merged, subclasses winning (a copy: changing it
        changes no estimator)."""
        import copy

        tags = {}
        for klass in reversed(cls.__mro__):
            tags.update(klass.__dict__.get("_tags", {}))
        return copy.deepcopy(tags)

    @classmethod
    def get_class_tag(cls, name, default=None):
        """One class tag, or ``default`` when the class does not declare it."""
        return cls.get_class_tags().get(name, default)

    def get_tags(self):
        """Tags of this instance: the class tags, which a subclass may adapt to its parameters (for example
        an input that only one variant takes)."""
        return self.get_class_tags()

    def get_tag(self, name, default=None):
        """One tag of this instance, or ``default``."""
        return self.get_tags().get(name, default)

    def __init__(self, zmin=0.0, zmax=3.0, nzbins=301, point_estimate="mode", random_state=None):
        self.zmin = zmin
        self.zmax = zmax
        self.nzbins = nzbins
        self.point_estimate = point_estimate
        self.random_state = random_state

    # ------------------------------------------------------------------ public API
    def fit(self, X, y, **side_inputs):
        """Fit on features ``X`` (n, d) and spectroscopic redshifts ``y`` (n,).

        Side inputs that travel with each object (narrow bands, images, ...) are keyword arguments; methods
        that take them declare them explicitly in their own ``fit`` signature.
        """
        zgrid = check_grid(self.zmin, self.zmax, self.nzbins)
        self._check_point_estimate()
        X, _ = self._validate_X(X, reset=True)
        y = self._validate_y(y, X.shape[0], zgrid)
        self.zgrid_ = zgrid
        self._fit(X, y, **side_inputs)
        return self

    def estimate_pdf(self, X, ids=None, **side_inputs):
        """One redshift PDF per row of ``X`` as a ``qp.Ensemble``.

        The ensemble's ancil holds ``zmode``, ``zmedian``, ``zmean`` and ``zstd``, plus ``id`` when ids are
        given, either as ``ids`` or as the (named) index of a pandas DataFrame ``X``.
        """
        X, frame_ids = self._validate_X(X, reset=False)
        ens = self._checked_ensemble(X, **side_inputs)
        ancil = dict(ens.ancil or {})  # a plugin's own per-object columns (flags, errors) are kept
        ancil.update(_pdf.summarize(ens, self.zgrid_))
        ids = frame_ids if ids is None else np.asarray(ids)
        if ids is not None:
            ancil["id"] = _check_ids(ids, X.shape[0])
        ens.set_ancil(ancil)
        return ens

    def predict(self, X, **side_inputs):
        """Point estimates (n,): the ``point_estimate`` column of :meth:`estimate_pdf`'s ancil (a PDF summary,
        or a plugin's own point output)."""
        X, _ = self._validate_X(X, reset=False)
        ens = self._checked_ensemble(X, **side_inputs)
        column = self.point_column()
        if column in POINT_ESTIMATES.values():
            return _pdf.summarize(ens, self.zgrid_)[column]
        return np.asarray(ens.ancil[column])

    def score(self, X, y, sample_weight=None, **side_inputs):
        """Negative σ_NMAD of :meth:`predict` against ``y`` (higher is better, as GridSearchCV expects)."""
        from .metrics import sigma_nmad

        if sample_weight is not None:
            raise InputError("score does not support sample_weight: σ_NMAD is an unweighted median statistic")
        y = np.asarray(y, dtype=np.float64)
        return -float(sigma_nmad(y, self.predict(X, **side_inputs)))

    # ------------------------------------------------------------------ helpers for subclasses
    def _interp_ensemble(self, yvals):
        return _pdf.interp_ensemble(self.zgrid_, yvals)

    def _hist_ensemble(self, pdfs):
        return _pdf.hist_ensemble(self.zgrid_, pdfs)

    def _rng(self):
        """A fresh numpy Generator from ``random_state`` (same seed, same stream on every call)."""
        rs = self.random_state
        if isinstance(rs, np.random.RandomState):
            rs = rs.randint(np.iinfo(np.int32).max)
        return np.random.default_rng(rs)

    # ------------------------------------------------------------------ to implement
    def _fit(self, X, y, **side_inputs):
        raise NotImplementedError(f"{type(self).__name__} must implement _fit(X, y)")

    def _estimate_pdf(self, X, **side_inputs):
        raise NotImplementedError(f"{type(self).__name__} must implement _estimate_pdf(X)")

    # ------------------------------------------------------------------ validation
    def point_column(self):
        """The ``estimate_pdf`` ancil column that ``predict`` returns, for this ``point_estimate``."""
        self._check_point_estimate()
        return self.point_estimate_columns[self.point_estimate]

    def _check_point_estimate(self):
        if self.point_estimate not in self.point_estimate_columns:
            raise InputError(
                f"point_estimate must be one of {sorted(self.point_estimate_columns)}, got {self.point_estimate!r}"
            )

    def _validate_X(self, X, reset):
        if not reset:
            try:
                check_is_fitted(self, "zgrid_")
            except Exception as exc:
                raise NotFittedError(
                    f"This {type(self).__name__} instance is not fitted yet; call fit(X, y) before using it"
                ) from exc
            self._check_point_estimate()
        ids = None
        index = getattr(X, "index", None)
        if index is not None and getattr(index, "name", None) is not None:
            ids = np.asarray(index)
        try:
            # sklearn's finiteness test sums X: +inf and -inf together make numpy warn before the error we raise
            with np.errstate(invalid="ignore", over="ignore"):
                X = validate_data(
                    self,
                    X,
                    reset=reset,
                    dtype=np.float64,
                    ensure_all_finite="allow-nan" if self.get_tag("allow_nan") else True,
                    ensure_min_samples=1,
                )
        except InputError:
            raise
        except TypeError as exc:
            raise InputTypeError(f"{type(self).__name__}: X cannot be read as numbers: {exc}") from exc
        except ValueError as exc:
            raise InputError(f"{type(self).__name__}: invalid X: {exc}") from exc
        _check_float32_range(X, type(self).__name__)
        return X, ids

    def _validate_y(self, y, n_samples, zgrid):
        if y is None:
            raise InputError(
                f"{type(self).__name__} requires y to be passed, but the target y is None: "
                "fit needs spectroscopic redshift labels"
            )
        try:
            y = np.asarray(y, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InputError(f"y must be numeric redshifts: {exc}") from exc
        if y.ndim != 1 and not (y.ndim == 2 and y.shape[1] == 1):
            raise InputError(f"y should be a 1d array of one redshift per object, got shape {y.shape}")
        y = column_or_1d(y, warn=True)
        if y.shape[0] != n_samples:
            raise InputError(f"X has {n_samples} rows but y has {y.shape[0]}")
        if np.isinf(y).any():
            raise InputError(f"y contains {int(np.isinf(y).sum())} infinite redshift(s)")
        unlabelled = np.isnan(y)
        if unlabelled.any() and not self.get_tag("unlabelled_rows"):
            raise InputError(
                f"y contains {int(unlabelled.sum())} NaN; {type(self).__name__} cannot use unlabelled objects"
            )
        labelled = y[~unlabelled]
        if labelled.size == 0:
            raise InputError("y has no labelled (finite) redshift")
        outside = (labelled < zgrid[0]) | (labelled > zgrid[-1])
        if outside.any():
            raise InputError(
                f"{int(outside.sum())} redshift label(s) lie outside the grid [{zgrid[0]}, {zgrid[-1]}] "
                f"(range of y: {labelled.min():.4g} to {labelled.max():.4g}); widen zmin/zmax or cut the sample"
            )
        if labelled.size < 2 or np.unique(labelled).size < 2:
            raise InputError(
                f"n_samples = {labelled.size} labelled object(s) with {np.unique(labelled).size} distinct "
                "redshift(s): at least two distinct redshifts are needed to define a distribution"
            )
        return y

    def _checked_ensemble(self, X, **side_inputs):
        ens = self._estimate_pdf(X, **side_inputs)
        if ens.npdf != X.shape[0]:
            raise RuntimeError(
                f"{type(self).__name__}._estimate_pdf returned {ens.npdf} PDFs for {X.shape[0]} rows"
            )
        # a NaN PDF (overflow inside a network, a degenerate kernel) must never reach the user as an answer
        for key, value in ens.objdata.items():
            value = np.asarray(value)
            if value.dtype.kind in "fc" and not np.all(np.isfinite(value)):
                rows = np.flatnonzero(~np.isfinite(value.reshape(value.shape[0], -1)).all(axis=1))
                first = int(rows[0]) if value.shape[0] == X.shape[0] else 0
                raise InputError(
                    f"{type(self).__name__} produced non-finite PDFs ({key!r}) for {rows.size} row(s), first at row "
                    f"{first}: such rows usually lie far outside the training data (features of row {first}: "
                    f"{np.array2string(np.asarray(X[first]), precision=3, threshold=10)}); if they are ordinary, "
                    "this is a bug in the estimator"
                )
        return ens

    # ------------------------------------------------------------------ conformance-suite hooks
    @classmethod
    def _conformance_instance(cls):
        """The instance the conformance suite checks: defaults, or a plugin's cheaper settings."""
        return cls()

    def _conformance_data(self, random_state=0):
        """A plugin's own small dataset (:class:`pzkit.testing.ConformanceData`) when it needs inputs the
        suite's toy catalog lacks (images, narrow bands); None uses the toy catalog."""
        return None

    @classmethod
    def _sklearn_check_params(cls):
        """Parameter overrides for scikit-learn's estimator checks, which feed small 2-D tables and no side
        inputs (e.g. an image CNN's crop size, or switching off a method's required side input)."""
        return {}

    def _rebuild_derived_state(self):
        """Compute the ``_derived_attributes`` from the rest of the fitted state; called by the subclass's
        ``_fit`` and by ``__setstate__`` when a saved or pickled model is loaded."""

    def __getstate__(self):
        state = dict(super().__getstate__())
        for name in self._derived_attributes:
            state.pop(name, None)
        return state

    def __setstate__(self, state):
        super().__setstate__(state)
        if "zgrid_" in self.__dict__ and any(name not in self.__dict__ for name in self._derived_attributes):
            self._rebuild_derived_state()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = self.get_tag("allow_nan")
        tags.target_tags.required = True
        tags.target_tags.positive_only = True  # redshifts; makes sklearn's checks draw y >= 1
        # score is -σ_NMAD (<= 0), not R², so sklearn's "score > 0.5" check does not apply
        tags.regressor_tags.poor_score = True
        tags.target_tags.single_output = True
        tags.target_tags.multi_output = False
        return tags

