"""Scorers for scikit-learn model selection: ``make_scorer("nmad")``, ``make_scorer("cde_loss")``, ...

Every pzkit metric here is a loss (lower is better), so, as scikit-learn's ``neg_*`` scorers do, a scorer
returns the **negated** metric and ``GridSearchCV``/``cross_validate`` maximise it::

    from sklearn.model_selection import GridSearchCV
    from pzkit.scoring import make_scorer

    scoring = {"nmad": make_scorer("nmad"), "cde": make_scorer("cde_loss"), "outliers": make_scorer("outlier_rate")}
    search = GridSearchCV(pipe, {"knnlocallinear__n_neighbors": [20, 50]}, scoring=scoring, refit="nmad")

Point metrics (computed from ``predict``) are ordinary scikit-learn scorers built with
:func:`sklearn.metrics.make_scorer`, so they share one ``predict`` call when several are used together and take
part in metadata routing. PDF metrics (computed from ``estimate_pdf``) are :class:`PDFScorer` objects; their
redshift grid is the fitted estimator's ``zgrid_`` unless ``zgrid=`` is given.

Importing this module is cheap (numpy only); scikit-learn is imported when a scorer is made.
"""

import numpy as np

from .exceptions import InputError

__all__ = ["make_scorer", "get_scorer_names", "PDFScorer"]


# --------------------------------------------------------------------------- metric adapters (y_true, y_pred)
def _point(name, doc):
    from . import metrics as M

    func = getattr(M, name)

    def score_func(y_true, y_pred, **kwargs):
        return func(y_true, y_pred, **kwargs)

    score_func.__name__ = score_func.__qualname__ = name
    score_func.__doc__ = doc
    return score_func


def _abs_bias_median(y_true, y_pred):
    from .metrics import bias_median

    return abs(bias_median(y_true, y_pred))


_abs_bias_median.__name__ = _abs_bias_median.__qualname__ = "abs_bias_median"

#: name -> (pzkit.metrics function, description); aliases map onto these.
_POINT = {
    "sigma_nmad": "σ_NMAD = 1.4826 · median(|Δz − median(Δz)|)",
    "sigma_68": "half the 16–84 percentile range of Δz",
    "sigma_iqr": "interquartile range of Δz / 1.349",
    "bias": "|median(Δz)|",
    "outlier_rate": "fraction with |Δz| > threshold (0.15; pass threshold=...)",
    "outlier_rate_lsst": "fraction with |Δz| > max(0.06, 3σ_IQR)",
}
_PDF = {
    "cde_loss": "CDE loss (Izbicki & Lee 2017) on the estimator grid",
    "crps": "continuous ranked probability score",
    "pit_ks": "Kolmogorov–Smirnov distance of the PIT values from U(0, 1)",
    "pit_cvm": "Cramér–von Mises statistic of the PIT values against U(0, 1)",
    "coverage_68_error": "|fraction of truths inside the central 68% interval − 0.68|",
}
_ALIASES = {"nmad": "sigma_nmad", "abs_bias": "bias", "cde": "cde_loss", "outliers": "outlier_rate"}


def get_scorer_names():
    """Names :func:`make_scorer` accepts (aliases included)."""
    return sorted(set(_POINT) | set(_PDF) | set(_ALIASES))


# --------------------------------------------------------------------------- PDF scorers
def _final_estimator(estimator):
    while True:
        if hasattr(estimator, "best_estimator_"):
            estimator = estimator.best_estimator_
        elif hasattr(estimator, "steps"):
            estimator = estimator.steps[-1][1]
        else:
            return estimator


def _estimate_pdf(estimator, X, **side_inputs):
    if not hasattr(estimator, "estimate_pdf") and hasattr(estimator, "best_estimator_"):  # a fitted search
        estimator = estimator.best_estimator_
    if hasattr(estimator, "estimate_pdf"):
        return estimator.estimate_pdf(X, **side_inputs)
    if hasattr(estimator, "steps"):  # a plain sklearn Pipeline around a pzkit estimator
        Xt = estimator[:-1].transform(X) if len(estimator.steps) > 1 else X
        return estimator.steps[-1][1].estimate_pdf(Xt, **side_inputs)
    raise InputError(f"{type(estimator).__name__} has no estimate_pdf: a PDF scorer needs a pzkit estimator")


def _pdf_metric(name, ens, y, zgrid, kwargs):
    from . import metrics as M

    if name == "cde_loss":
        return M.cde_loss(ens, y, zgrid, **kwargs)
    if name == "crps":
        return M.crps(ens, y, zgrid)
    if name in ("pit_ks", "pit_cvm"):
        return M.pit_stats(M.pit_values(ens, y))[name[4:]]
    if name == "coverage_68_error":
        return abs(M.interval_coverage(ens, y, levels=[0.68])[0.68] - 0.68)
    raise InputError(f"unknown PDF metric {name!r}")  # pragma: no cover - guarded by make_scorer


class PDFScorer:
    """``scorer(estimator, X, y)`` = −metric(``estimator.estimate_pdf(X)``, ``y``): a scikit-learn scorer for a
    metric of the PDFs. Made by :func:`make_scorer`; usable wherever scikit-learn accepts a scoring callable."""

    def __init__(self, name, zgrid=None, **kwargs):
        self.name = name
        self.zgrid = zgrid
        self.kwargs = kwargs

    def __call__(self, estimator, X, y_true, **side_inputs):
        ens = _estimate_pdf(estimator, X, **side_inputs)
        zgrid = self.zgrid
        if zgrid is None:
            zgrid = getattr(_final_estimator(estimator), "zgrid_", None)
            if zgrid is None:
                raise InputError(f"make_scorer({self.name!r}): the estimator has no zgrid_; pass zgrid=")
        y = np.asarray(y_true, dtype=np.float64)
        return -float(_pdf_metric(self.name, ens, y, np.asarray(zgrid, dtype=np.float64), self.kwargs))

    def __repr__(self):
        extra = "".join(f", {k}={v!r}" for k, v in self.kwargs.items())
        grid = "" if self.zgrid is None else ", zgrid=[...]"
        return f"make_scorer({self.name!r}{grid}{extra})"


# --------------------------------------------------------------------------- public
def make_scorer(metric, **kwargs):
    """A scikit-learn scorer for a pzkit metric; the score is the **negated** metric (higher is better).

    Parameters
    ----------
    metric : str
        Point metrics (from ``predict``): ``"nmad"``/``"sigma_nmad"``, ``"sigma_68"``, ``"sigma_iqr"``,
        ``"bias"`` (|median Δz|), ``"outlier_rate"`` (``threshold=0.15``), ``"outlier_rate_lsst"``.
        PDF metrics (from ``estimate_pdf``): ``"cde_loss"``, ``"crps"``, ``"pit_ks"``, ``"pit_cvm"``,
        ``"coverage_68_error"``. See :func:`get_scorer_names`.
    **kwargs
        Passed to the metric (``threshold`` of ``outlier_rate``, ``truth_eval`` of ``cde_loss``); PDF metrics
        also take ``zgrid`` (default: the fitted estimator's ``zgrid_``).

    Returns
    -------
    callable
        ``scorer(estimator, X, y)``.
    """
    name = _ALIASES.get(metric, metric)
    if name in _POINT:
        from sklearn.metrics import make_scorer as sk_make_scorer

        func = _abs_bias_median if name == "bias" else _point(name, _POINT[name])
        if name == "outlier_rate":
            unknown = set(kwargs) - {"threshold"}
        else:
            unknown = set(kwargs)
        if unknown:
            raise InputError(f"make_scorer({metric!r}) takes no parameter(s) {sorted(unknown)}")
        return sk_make_scorer(func, greater_is_better=False, **kwargs)
    if name in _PDF:
        allowed = {"zgrid"} | ({"truth_eval"} if name == "cde_loss" else set())
        unknown = set(kwargs) - allowed
        if unknown:
            raise InputError(f"make_scorer({metric!r}) takes no parameter(s) {sorted(unknown)}")
        return PDFScorer(name, **kwargs)
    raise InputError(f"unknown metric {metric!r} for make_scorer; known: {get_scorer_names()}")
