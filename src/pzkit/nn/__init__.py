"""Shared torch pieces for pzkit's neural plugins (importing this module imports torch).

Written once here and reused by every torch plugin (baseline_nn, mtl_nb, the image CNNs):

* :func:`select_device` – CUDA when present, CPU otherwise (or what the user asks for);
* :func:`seed_everything` – one seed for numpy and torch, so a fit is reproducible on CPU;
* redshift-bin utilities – :func:`grid_bins`, :func:`z_to_bin`, :func:`soft_labels`, :func:`class_weights`;
* modules – :class:`MLP` trunk and :class:`RedshiftBinHead` (logits over the grid's bins);
* :class:`TorchPhotoZEstimator` – the skorch-based estimator base class: standardisation, training of
  ``n_members`` networks with skorch, PDF = averaged softmax on the grid bins (``qp.hist``), and persistence of
  the weights as plain arrays (no pickle).
"""

from .core import (
    MLP,
    RedshiftBinHead,
    class_weights,
    grid_bins,
    seed_everything,
    select_device,
    soft_labels,
    z_to_bin,
)
from .estimator import TorchPhotoZEstimator

__all__ = [
    "MLP",
    "RedshiftBinHead",
    "TorchPhotoZEstimator",
    "class_weights",
    "grid_bins",
    "seed_everything",
    "select_device",
    "soft_labels",
    "z_to_bin",
]
