r"""Point-estimate metrics on the normalised residual.

Throughout, the normalised residual of a point estimate :math:`z_p` against the true (spectroscopic)
redshift :math:`z_s` is

.. math:: \Delta z = \frac{z_p - z_s}{1 + z_s}.

All statistics are taken over *all* objects (no clipping) and are unweighted. They agree with qp's point
metrics (``qp.metrics.point_estimate_metric_classes``: ``PointSigmaMAD``, ``PointSigmaIQR``, ``PointBias``,
``PointOutlierRate``) where qp has one. Percentiles use numpy's default linear interpolation.

Each public function has an axis-aware private twin (``_nmad`` etc.) working on precomputed residuals, which
the bootstrap in :mod:`pzkit.metrics.binned` calls on a ``(n_boot, n)`` matrix in one go.
"""

import numpy as np

from ._validation import InputError, check_pair, check_positive_scalar

#: 1.4826 = 1 / Φ⁻¹(3/4): makes the MAD a consistent estimator of σ for a Gaussian.
NMAD_SCALE = 1.4826
#: 1.349 = Φ⁻¹(3/4) − Φ⁻¹(1/4): the IQR of a unit Gaussian.
IQR_SCALE = 1.349
#: Percentiles of ±1σ of a Gaussian: 100·Φ(−1) and 100·Φ(+1).
P16, P84 = 15.865525393145708, 84.13447460685429
#: LSST Science Book catastrophic-outlier floor.
LSST_OUTLIER_FLOOR = 0.06

__all__ = [
    "delta_z",
    "bias_median",
    "bias_mean",
    "sigma_nmad",
    "sigma_68",
    "sigma_iqr",
    "outlier_rate",
    "outlier_rate_lsst",
    "point_metrics",
]


# --------------------------------------------------------------------------- axis-aware kernels (private)
def _bias_median(dz, axis=-1):
    return np.median(dz, axis=axis)


def _bias_mean(dz, axis=-1):
    return np.mean(dz, axis=axis)


def _nmad(dz, axis=-1):
    med = np.median(dz, axis=axis, keepdims=True)
    return NMAD_SCALE * np.median(np.abs(dz - med), axis=axis)


def _sigma_68(dz, axis=-1):
    lo, hi = np.percentile(dz, [P16, P84], axis=axis)
    return 0.5 * (hi - lo)


def _sigma_iqr(dz, axis=-1):
    q25, q75 = np.percentile(dz, [25.0, 75.0], axis=axis)
    return (q75 - q25) / IQR_SCALE


def _outlier_rate(dz, threshold=0.15, axis=-1):
    return np.mean(np.abs(dz) > threshold, axis=axis)


def _outlier_rate_lsst(dz, axis=-1):
    cut = np.maximum(LSST_OUTLIER_FLOOR, 3.0 * _sigma_iqr(dz, axis=axis))
    return np.mean(np.abs(dz) > np.expand_dims(cut, axis), axis=axis)


# --------------------------------------------------------------------------- public API
def delta_z(z_true, z_pred):
    r"""Normalised residual of point estimates.

    .. math:: \Delta z_i = \frac{z_{p,i} - z_{s,i}}{1 + z_{s,i}}

    Parameters
    ----------
    z_true : array_like, shape (n,)
        True (spectroscopic) redshifts; must be finite and > −1.
    z_pred : array_like, shape (n,)
        Point estimates (photo-z), same length, finite.

    Returns
    -------
    numpy.ndarray, shape (n,)

    Raises
    ------
    ValueError
        (``pzkit.exceptions.InputError``) if an array is empty, not 1-D, non-finite, or the lengths differ.
    """
    zs, zp = check_pair(z_true, z_pred)
    return (zp - zs) / (1.0 + zs)


def bias_median(z_true, z_pred):
    r"""Median normalised residual (the LSST Science Book / qp ``PointBias`` convention).

    .. math:: b_{\rm med} = \operatorname{median}_i(\Delta z_i)

    Parameters
    ----------
    z_true, z_pred : array_like, shape (n,)
        True redshifts and point estimates.

    Returns
    -------
    float
    """
    return float(_bias_median(delta_z(z_true, z_pred)))


def bias_mean(z_true, z_pred):
    r"""Mean normalised residual, unclipped (the convention of the SOM-cell and bias-CNN papers).

    .. math:: b = \frac{1}{n}\sum_i \Delta z_i

    Parameters
    ----------
    z_true, z_pred : array_like, shape (n,)
        True redshifts and point estimates.

    Returns
    -------
    float
    """
    return float(_bias_mean(delta_z(z_true, z_pred)))


def sigma_nmad(z_true, z_pred):
    r"""Normalised median absolute deviation of the residuals.

    .. math:: \sigma_{\rm NMAD} = 1.4826 \times
              \operatorname{median}_i\left|\Delta z_i - \operatorname{median}_j(\Delta z_j)\right|

    Median-centred, over all objects (outliers are not removed first). Identical to qp's
    ``PointSigmaMAD.evaluate`` and to Eq. 1 of the SOM-cell paper.

    Parameters
    ----------
    z_true : array_like, shape (n,)
        True redshifts.
    z_pred : array_like, shape (n,)
        Point estimates.

    Returns
    -------
    float

    Examples
    --------
    >>> round(sigma_nmad([0, 0, 0, 0, 0], [0.0, 0.01, 0.02, 0.03, 0.10]), 8)  # |Δz − 0.02| = 2,1,0,1,8 ×0.01
    0.014826
    """
    return float(_nmad(delta_z(z_true, z_pred)))


def sigma_68(z_true, z_pred):
    r"""Half the central 68.27 % width of the residual distribution.

    .. math:: \sigma_{68} = \tfrac12\left[P_{84.13}(\Delta z) - P_{15.87}(\Delta z)\right]

    The percentiles are the exact ±1σ points of a Gaussian, 100·Φ(∓1) (the usual "16–84" range), with
    numpy's linear interpolation, so σ₆₈ = σ for Gaussian residuals.

    Parameters
    ----------
    z_true, z_pred : array_like, shape (n,)
        True redshifts and point estimates.

    Returns
    -------
    float
    """
    return float(_sigma_68(delta_z(z_true, z_pred)))


def sigma_iqr(z_true, z_pred):
    r"""Interquartile range of the residuals scaled to a Gaussian σ (qp ``PointSigmaIQR``).

    .. math:: \sigma_{\rm IQR} = \frac{P_{75}(\Delta z) - P_{25}(\Delta z)}{1.349}

    Parameters
    ----------
    z_true, z_pred : array_like, shape (n,)
        True redshifts and point estimates.

    Returns
    -------
    float
    """
    return float(_sigma_iqr(delta_z(z_true, z_pred)))


def outlier_rate(z_true, z_pred, threshold=0.15):
    r"""Fraction of catastrophic outliers with a fixed threshold (strict inequality).

    .. math:: \eta = \frac{1}{n}\#\{i : |\Delta z_i| > t\}

    Parameters
    ----------
    z_true, z_pred : array_like, shape (n,)
        True redshifts and point estimates.
    threshold : float, default 0.15
        ``t`` (> 0). 0.15 is the usual deep-survey value; the SDSS papers use 0.05.

    Returns
    -------
    float
        In [0, 1] (not per cent).
    """
    t = check_positive_scalar(threshold, "threshold")
    return float(_outlier_rate(delta_z(z_true, z_pred), t))


def outlier_rate_lsst(z_true, z_pred):
    r"""Catastrophic-outlier fraction with the LSST Science Book rule (qp ``PointOutlierRate``).

    .. math:: \eta_{\rm LSST} = \frac{1}{n}\#\{i : |\Delta z_i| > \max(0.06,\ 3\sigma_{\rm IQR})\}

    Parameters
    ----------
    z_true, z_pred : array_like, shape (n,)
        True redshifts and point estimates.

    Returns
    -------
    float
        In [0, 1].
    """
    return float(_outlier_rate_lsst(delta_z(z_true, z_pred)))


def point_metrics(z_true, z_pred, outlier_threshold=0.15):
    """All point metrics at once.

    Parameters
    ----------
    z_true, z_pred : array_like, shape (n,)
        True redshifts and point estimates.
    outlier_threshold : float, default 0.15
        Threshold of :func:`outlier_rate`.

    Returns
    -------
    dict
        ``n``, ``bias_median``, ``bias_mean``, ``sigma_nmad``, ``sigma_68``, ``sigma_iqr``, ``outlier_rate``
        (|Δz| > ``outlier_threshold``), ``outlier_rate_lsst`` (|Δz| > max(0.06, 3σ_IQR)) — see the individual
        functions for the formulas. Values are Python floats (``n`` an int).
    """
    t = check_positive_scalar(outlier_threshold, "outlier_threshold")
    dz = delta_z(z_true, z_pred)
    return {
        "n": int(dz.size),
        "bias_median": float(_bias_median(dz)),
        "bias_mean": float(_bias_mean(dz)),
        "sigma_nmad": float(_nmad(dz)),
        "sigma_68": float(_sigma_68(dz)),
        "sigma_iqr": float(_sigma_iqr(dz)),
        "outlier_rate": float(_outlier_rate(dz, t)),
        "outlier_rate_lsst": float(_outlier_rate_lsst(dz)),
    }


# Registry used by binned metrics: name -> kernel(dz, axis) on precomputed residuals.
def _point_kernels(outlier_threshold=0.15):
    t = float(outlier_threshold)
    return {
        "bias_median": _bias_median,
        "bias_mean": _bias_mean,
        "sigma_nmad": _nmad,
        "sigma_68": _sigma_68,
        "sigma_iqr": _sigma_iqr,
        "outlier_rate": lambda dz, axis=-1: _outlier_rate(dz, t, axis=axis),
        "outlier_rate_lsst": _outlier_rate_lsst,
    }


def _unknown_metric(name, known):
    return InputError(f"metrics: unknown metric {name!r}; known: {sorted(known)}")
