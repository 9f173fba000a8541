"""Photo-z metrics: point estimates, PDFs, n(z) per tomographic and per magnitude bin, residual-bias
diagnostics, binned metrics and SOM-cell diagnostics.

Δz = (z_phot − z_spec)/(1 + z_spec) throughout. Every function validates its inputs and raises
``pzkit.exceptions.InputError`` (a ``ValueError``) naming the argument on bad input.

Importing this package is cheap: numpy and ``scipy.stats``/``scipy.optimize`` only. qp is never imported here
(PDF metrics read the ensemble's arrays or call its methods), and nothing imports torch or matplotlib.

Modules: :mod:`~pzkit.metrics.point`, :mod:`~pzkit.metrics.pdf`, :mod:`~pzkit.metrics.nz`,
:mod:`~pzkit.metrics.bias`, :mod:`~pzkit.metrics.binned`, :mod:`~pzkit.metrics.som`; the benchmark report's
scoring of one ensemble is :mod:`~pzkit.metrics.report`.
"""

from .bias import mode_collapse_distance, residual_vs_z, tomographic_mean_bias
from .binned import binned_metrics
from .nz import nz_by_magnitude, stacked_nz, tomographic_nz, wasserstein_nz
from .pdf import brier_score, cde_loss, crps, interval_coverage, pdf_metrics, pit_qq, pit_stats, pit_values
from .point import (
    bias_mean,
    bias_median,
    delta_z,
    outlier_rate,
    outlier_rate_lsst,
    point_metrics,
    sigma_68,
    sigma_iqr,
    sigma_nmad,
)
from .som import SelfOrganizingMap, lts_line, som_cell_diagnostics
from ..scoring import get_scorer_names, make_scorer

__all__ = [
    "make_scorer",
    "get_scorer_names",
    # point
    "delta_z",
    "bias_median",
    "bias_mean",
    "sigma_nmad",
    "sigma_68",
    "sigma_iqr",
    "outlier_rate",
    "outlier_rate_lsst",
    "point_metrics",
    # pdf
    "pit_values",
    "pit_stats",
    "pit_qq",
    "cde_loss",
    "crps",
    "interval_coverage",
    "brier_score",
    "pdf_metrics",
    # n(z)
    "tomographic_nz",
    "nz_by_magnitude",
    "stacked_nz",
    "wasserstein_nz",
    # bias diagnostics
    "residual_vs_z",
    "mode_collapse_distance",
    "tomographic_mean_bias",
    # binned
    "binned_metrics",
    # SOM
    "SelfOrganizingMap",
    "lts_line",
    "som_cell_diagnostics",
]
