"""Scoring of one estimator's ensemble for the benchmark report: every harness metric, against one shared
context (truths, magnitudes, colours and SOM cells of the test split)."""

from dataclasses import dataclass

import numpy as np


#: Default tomographic bins in z_photo for DC2-like samples (z < 3).
DEFAULT_TOMO_EDGES = (0.0, 0.4, 0.8, 1.2, 1.6, 3.0)


@dataclass
class ScoringContext:
    """Everything the metrics need besides the PDFs: truths, a magnitude, colours and SOM cells of the test split.

    ``som_train_rows`` is the number of rows the shared SOM was trained on (test rows, plus training rows when
    :func:`make_context` was given ``train_features``); ``som_min_count`` the fewest test objects a SOM cell needs
    for its line fit; ``mag_edges`` the magnitude bins of the n(z) comparison (default: 6 equal-count bins).
    """

    z_true: np.ndarray
    magnitude: np.ndarray
    colors: np.ndarray
    cells: np.ndarray
    som_shape: tuple
    tomo_edges: tuple = DEFAULT_TOMO_EDGES
    outlier_threshold: float = 0.15
    bias_break_point: float = 0.15
    n_boot: int = 50
    random_state: int = 0
    som_train_rows: int = 0
    som_min_count: int = 30
    mag_edges: tuple = None


def make_context(test_features, z_true, outlier_threshold=0.15, tomo_edges=DEFAULT_TOMO_EDGES, som_shape=(10, 12),
                 n_colors=None, random_state=0, som_iter=30, train_features=None, mag_bins=6):
    """Scoring context shared by every estimator of one benchmark.

    Parameters
    ----------
    test_features : array_like, shape (n, n_colors + 1)
        Test-split features: colours first, then the reference magnitude.
    z_true : array_like, shape (n,)
        Test redshifts (scoring only).
    outlier_threshold : float, default 0.15
        |Δz| threshold of the outlier rates.
    tomo_edges : sequence of float
        Tomographic bin edges in z_phot.
    som_shape : (int, int), default (10, 12)
        SOM lattice.
    n_colors : int, optional
        Number of colour columns; default all but the last.
    random_state : int, default 0
        Seed of the SOM, the LTS fits and the bootstrap.
    som_iter : int, default 30
        SOM training epochs.
    train_features : array_like, shape (m, n_colors + 1), optional
        Training-split features in the same layout. When given, the SOM is trained on the training and test
        colours stacked (as the SOM-cell paper does), so that the cells describe the whole colour space the
        estimators saw; only the test rows are assigned to cells and scored.
    mag_bins : int or sequence of float, default 6
        Reference-magnitude bins of the n(z)-per-magnitude comparison: a number of equal-count bins of the test
        magnitudes, or explicit edges. Fixed here so that every estimator is scored on the same bins.

    Returns
    -------
    ScoringContext
    """
    from ._validation import InputError
    from .som import SelfOrganizingMap, _as_2d

    F = np.asarray(test_features, dtype=np.float64)
    n_colors = F.shape[1] - 1 if n_colors is None else n_colors
    colors = _as_2d(F[:, :n_colors], "test_features colours")
    fit_colors = colors
    if train_features is not None:
        T = np.asarray(train_features, dtype=np.float64)
        if T.ndim != 2 or T.shape[1] != F.shape[1]:
            raise InputError(f"train_features must have the {F.shape[1]} columns of test_features, "
                             f"got shape {T.shape}")
        fit_colors = np.vstack([_as_2d(T[:, :n_colors], "train_features colours"), colors])
    magnitude = F[:, n_colors]
    mag_edges = _equal_count_edges(magnitude, mag_bins) if np.ndim(mag_bins) == 0 else np.asarray(mag_bins, float)
    som = SelfOrganizingMap(n_rows=som_shape[0], n_cols=som_shape[1], n_iter=som_iter, random_state=random_state)
    cells = som.fit(fit_colors).transform(colors)
    return ScoringContext(z_true=np.asarray(z_true, dtype=np.float64), magnitude=magnitude, colors=colors,
                          cells=np.asarray(cells), som_shape=tuple(som_shape), tomo_edges=tuple(tomo_edges),
                          outlier_threshold=outlier_threshold, random_state=random_state,
                          som_train_rows=int(fit_colors.shape[0]), mag_edges=tuple(mag_edges.tolist()))


def _equal_count_edges(x, n_bins):
    """Quantile edges of ``x``; repeated quantiles (ties) are merged, so no bin is empty by construction."""
    return np.unique(np.quantile(x, np.linspace(0.0, 1.0, int(n_bins) + 1)))


#: Fallback reason for a non-finite value whose metric did not say why.
_NOT_FINITE = "not finite (NaN or inf)"


def _json_values(values, reasons=None):
    """JSON-ready copy of a flat dict of numbers: a non-finite value becomes ``None`` and its reason goes into
    ``"undefined"`` (present only when something is undefined), so a reader never meets a silent gap."""
    out, undefined = {}, {}
    for key, v in values.items():
        if isinstance(v, (bool, np.bool_, int, np.integer)):
            out[key] = int(v)
            continue
        x = float(v)
        out[key] = x if np.isfinite(x) else None
        if out[key] is None:
            undefined[key] = (reasons or {}).get(key, _NOT_FINITE)
    if undefined:
        out["undefined"] = undefined
    return out


def _json_bins(records, drop=()):
    """Per-bin records (lists of dicts with scalar statistics and their own ``undefined``) made JSON-ready."""
    out = []
    for rec in records:
        scalars = {k: v for k, v in rec.items() if k not in drop and k != "undefined" and np.ndim(v) == 0}
        out.append(_json_values(scalars, rec.get("undefined")))
    return out


def _json_binned(b):
    """Arrays of :func:`~pzkit.metrics.binned_metrics` as lists, NaN -> None, with the reason for the NaN."""
    out = {k: [None if (isinstance(x, float) and not np.isfinite(x)) else x for x in np.asarray(v).tolist()]
           for k, v in b.items()}
    undefined = {}
    for k, v in b.items():
        if k in ("edges", "center", "n") or np.all(np.isfinite(v)):
            continue
        undefined[k] = ("no bootstrap error for a bin with fewer than 2 objects" if k.endswith("_err")
                        else "empty bin")
    if undefined:
        out["undefined"] = undefined
    return out


def score_ensemble(ens, z_phot, zgrid, ctx):
    """Every harness metric for one estimator's ensemble.

    Parameters
    ----------
    ens : qp.Ensemble
        One PDF per test object.
    z_phot : array_like, shape (n,)
        The point estimates scored.
    zgrid : array_like
        Redshift grid of the n(z) metrics.
    ctx : ScoringContext
        From :func:`make_context`.

    Returns
    -------
    metrics : dict
        JSON-ready sections ``point``, ``pdf``, ``nz`` (per tomographic bin), ``nz_by_magnitude`` (per
        magnitude bin: edges, count, W1, Δ⟨z⟩), ``bias``, ``binned``, ``som``. A metric that is undefined
        at this sample size is ``None``, and the section's ``"undefined"`` dict gives the reason.
    arrays : dict
        Arrays for the plots of :mod:`pzkit.report_html`: ``z_true``, ``z_phot``, ``magnitude``, ``pit``,
        ``pit_qq`` (``uniform``, ``pit`` quantiles), ``tomo`` and ``nz_by_magnitude`` (the per-bin records with
        their n(z) curves), ``residual_spec``/``residual_photo`` (:func:`~pzkit.metrics.residual_vs_z`),
        ``mode_collapse_distance``, ``binned_magnitude``/``binned_z_spec`` (:func:`~pzkit.metrics.binned_metrics`
        with bootstrap errors), per-cell SOM grids ``som_sigma_nmad``, ``som_theta_deg``, ``som_atten_ratio``,
        ``som_scatter_ratio`` (NaN in cells below the minimum count), ``som_summary`` and ``som_undefined``
        (summary key -> reason).
    """
    from .. import metrics as M

    zs = ctx.z_true
    zp = np.asarray(z_phot, dtype=np.float64)
    pdfm = M.pdf_metrics(ens, zs, zgrid)
    pit = M.pit_values(ens, zs)
    q_uniform, q_pit = M.pit_qq(pit)
    tomo = M.tomographic_nz(ens, zs, zp, zgrid, ctx.tomo_edges)
    mag_edges = _equal_count_edges(ctx.magnitude, 6) if ctx.mag_edges is None else ctx.mag_edges
    by_mag_nz = M.nz_by_magnitude(ens, zs, ctx.magnitude, zgrid, mag_edges) if len(mag_edges) > 1 else []
    res_spec = M.residual_vs_z(zs, zp, against="spec", break_point=ctx.bias_break_point)
    res_phot = M.residual_vs_z(zs, zp, against="photo", break_point=ctx.bias_break_point)
    by_mag = M.binned_metrics(zs, zp, ctx.magnitude, n_bins=8, n_boot=ctx.n_boot, random_state=ctx.random_state,
                              outlier_threshold=ctx.outlier_threshold)
    by_z = M.binned_metrics(zs, zp, zs, n_bins=8, n_boot=ctx.n_boot, random_state=ctx.random_state,
                            outlier_threshold=ctx.outlier_threshold)
    som = M.som_cell_diagnostics(ctx.colors, zs, zp, cells=ctx.cells, grid_shape=ctx.som_shape,
                                 min_count=ctx.som_min_count, random_state=ctx.random_state,
                                 outlier_threshold=ctx.outlier_threshold)
    n_cells = ctx.som_shape[0] * ctx.som_shape[1]

    def per_cell(key):
        values = np.full(n_cells, np.nan)
        values[np.asarray(som["cell"], dtype=int)] = som[key]
        return values.reshape(ctx.som_shape)

    slope_keys = ("slope_low", "slope_low_err", "slope_high", "slope_high_err")
    metrics = {
        "point": _json_values(M.point_metrics(zs, zp, outlier_threshold=ctx.outlier_threshold)),
        "pdf": _json_values(pdfm),
        "nz": _json_bins(tomo),
        "nz_by_magnitude": _json_bins(by_mag_nz),
        "bias": {
            "residual_vs_z_spec": _json_values({k: res_spec[k] for k in slope_keys}, res_spec["undefined"]),
            "residual_vs_z_photo": _json_values({k: res_phot[k] for k in slope_keys}, res_phot["undefined"]),
            "break_point": ctx.bias_break_point,
            "mode_collapse_distance": float(M.mode_collapse_distance(zs, zp)),
        },
        "binned": {"magnitude": _json_binned(by_mag), "z_spec": _json_binned(by_z)},
        "som": {**_json_values(som["summary"], som["undefined"]), "grid": list(ctx.som_shape),
                "min_count": ctx.som_min_count, "trained_on_rows": ctx.som_train_rows},
    }
    arrays = {"z_true": zs, "z_phot": zp, "pit": pit, "pit_qq": {"uniform": q_uniform, "pit": q_pit},
              "magnitude": ctx.magnitude, "tomo": tomo,
              "nz_by_magnitude": by_mag_nz,
              "residual_spec": res_spec, "residual_photo": res_phot,
              "mode_collapse_distance": metrics["bias"]["mode_collapse_distance"],
              "binned_magnitude": by_mag, "binned_z_spec": by_z,
              "som_sigma_nmad": per_cell("sigma_nmad"), "som_theta_deg": per_cell("theta_deg"),
              "som_atten_ratio": per_cell("atten_ratio"), "som_scatter_ratio": per_cell("scatter_ratio"),
              "som_summary": som["summary"], "som_undefined": som["undefined"]}
    return metrics, arrays
