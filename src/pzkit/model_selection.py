"""Out-of-fold PDFs: the cross-validation that stacking and PDF recalibration learn from.

:func:`cross_val_pdf` is ``sklearn.model_selection.cross_val_predict`` for redshift PDFs: every object's PDF comes
from a model that did not see it. :func:`fit_members` runs many such fits (members × folds, plus the final fits on
all the data) through one joblib pool.
"""

import numbers

import numpy as np
from sklearn.base import clone

from .exceptions import InputError
from .pdf import trapezoid_weights

__all__ = ["cross_val_pdf", "make_folds", "fit_members", "grid_of", "pdf_values_on_grid", "resolve_estimator",
           "trapezoid_weights"]

GRID_KEYS = ("zmin", "zmax", "nzbins")


def pdf_values_on_grid(ens, zgrid):
    """Densities of ``ens`` at the points ``zgrid`` (n, len(zgrid)).

    ``qp.interp`` ensembles on ``zgrid`` are returned as stored. A ``qp.hist`` ensemble whose bin edges are
    ``zgrid`` is read as the piecewise-linear density through its bin centres (a grid point gets the mean of
    its two bins), so that no half-bin shift enters a pool; anything else is evaluated with ``ens.pdf``.
    """
    from .pdf import pdf_on_grid, representation

    zgrid = np.asarray(zgrid, dtype=np.float64)
    name = representation(ens)
    if name == "interp" and np.array_equal(np.ravel(ens.metadata["xvals"]), zgrid):
        return np.atleast_2d(np.asarray(ens.objdata["yvals"], dtype=np.float64))
    if name == "hist" and np.array_equal(np.ravel(ens.metadata["bins"]), zgrid):
        d = np.atleast_2d(np.asarray(ens.objdata["pdfs"], dtype=np.float64))
        out = np.empty((d.shape[0], zgrid.size))
        out[:, 0], out[:, -1] = d[:, 0], d[:, -1]
        out[:, 1:-1] = 0.5 * (d[:, 1:] + d[:, :-1])
        return out
    return pdf_on_grid(ens, zgrid)


def resolve_estimator(estimator, what, grid=None, random_state=None):
    """An unfitted clone of ``estimator`` (or of the plugin an entry-point name gives) for a meta-estimator.

    ``grid`` (``{"zmin": ..., "zmax": ..., "nzbins": ...}``, the keys that are set) is given to it, and
    ``random_state`` when its own is None. ``what`` names it in errors (``"member 'rf'"``).
    """
    from .base import PhotoZEstimator
    from .registry import make_estimator

    grid = dict(grid or {})
    est = make_estimator(estimator, **grid) if isinstance(estimator, str) else estimator
    if not isinstance(est, PhotoZEstimator):
        raise InputError(f"{what} is a {type(est).__name__}, not a pzkit estimator")
    est = clone(est)
    if est.get_tag("X_type") != "photometry":
        raise InputError(f"{what} takes {est.get_tag('X_type')}; only catalogue (photometry) estimators can be "
                         "combined or recalibrated")
    params = est.get_params(deep=False)
    update = {k: v for k, v in grid.items() if params.get(k) != v}
    if "random_state" in params and params["random_state"] is None and random_state is not None:
        update["random_state"] = random_state
    if update:
        est.set_params(**update)
    return est


def grid_of(estimator):
    """``(zmin, zmax, nzbins)`` of an unfitted estimator; a meta-estimator without a grid of its own (``None``)
    reports its members' (its ``resolved_grid``)."""
    own = tuple(estimator.get_params(deep=False).get(k) for k in GRID_KEYS)
    if any(v is None for v in own) and hasattr(estimator, "resolved_grid"):
        return estimator.resolved_grid()
    return own


def make_folds(cv, X, y, random_state=None):
    """(train, test) index pairs. An integer gives that many *shuffled* ``KFold`` folds seeded by
    ``random_state`` (catalogues are often sorted, by magnitude or redshift); a splitter or an iterable is
    used as scikit-learn's ``check_cv`` would."""
    from sklearn.model_selection import KFold, check_cv

    n = X.shape[0]
    if isinstance(cv, numbers.Integral) and not isinstance(cv, bool):
        if not 2 <= cv <= n:
            raise InputError(f"cv must be between 2 and the number of objects ({n}) folds, got {cv}")
        return list(KFold(int(cv), shuffle=True, random_state=random_state).split(X))
    return list(check_cv(cv, y, classifier=False).split(X, y))


def side_inputs_for(estimator, side_inputs, rows, n, tag):
    """The side inputs ``estimator`` declares in its ``tag`` (``"fit_inputs"`` / ``"predict_inputs"``), cut to
    ``rows`` (an index array, or a slice for all rows)."""
    wanted = set(estimator.get_tag(tag) or {})
    out = {}
    for key, value in side_inputs.items():
        if key not in wanted:
            continue
        if isinstance(rows, slice):
            out[key] = value
            continue
        arr = np.asarray(value)
        if arr.shape[:1] != (n,):
            raise InputError(f"side input {key!r} has {arr.shape[0] if arr.ndim else 0} rows, X has {n}")
        out[key] = arr[rows]
    return out


def fit_members(estimators, X, y, zgrid, folds, side_inputs=None, n_jobs=None, verbose=0, desc="fit", final=True):
    """Fit every estimator on each fold and, with ``final``, once on all the data.

    Returns ``(fitted, oof)``: the estimators fitted on all rows, and their out-of-fold densities on ``zgrid``
    (k, n, len(zgrid)), each row normalised on the grid (rows in no test fold stay 0). With ``folds`` empty,
    ``oof`` is None.
    """
    from joblib import Parallel, delayed

    side_inputs = side_inputs or {}
    n = X.shape[0]
    tasks = [(i, train, test) for train, test in folds for i in range(len(estimators))]
    if final:
        tasks += [(i, None, None) for i in range(len(estimators))]

    def run(i, train, test):
        est = clone(estimators[i])
        rows = slice(None) if train is None else train
        est.fit(X[rows], y[rows], **side_inputs_for(est, side_inputs, rows, n, "fit_inputs"))
        if test is None:
            return est
        ens = est.estimate_pdf(X[test], **side_inputs_for(est, side_inputs, test, n, "predict_inputs"))
        return pdf_values_on_grid(ens, zgrid)

    bar = None
    if verbose:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), desc=desc, unit="fit")
    results = []
    for result in Parallel(n_jobs=n_jobs, return_as="generator")(delayed(run)(*t) for t in tasks):
        results.append(result)
        if bar is not None:
            bar.update()
    if bar is not None:
        bar.close()
    oof = None
    if folds:
        oof = np.zeros((len(estimators), n, len(zgrid)))
        for (i, _, test), values in zip(tasks, results):
            if test is not None:
                oof[i, test] = values
        norm = oof @ trapezoid_weights(zgrid)
        oof /= np.where(norm > 0, norm, 1.0)[..., None]
    return (results[-len(estimators):] if final else []), oof


def cross_val_pdf(estimator, X, y, cv=5, random_state=None, n_jobs=None, **side_inputs):
    """Out-of-fold PDF densities of ``estimator`` on its own grid (n, nzbins), like ``cross_val_predict``.

    Every object's PDF comes from a clone fitted without it. Rows in no test fold of ``cv`` are 0.
    """
    from .grid import check_grid

    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    zgrid = check_grid(*grid_of(estimator))
    folds = make_folds(cv, X, y, random_state)
    _, oof = fit_members([estimator], X, y, zgrid, folds, side_inputs, n_jobs=n_jobs, final=False)
    return oof[0]
