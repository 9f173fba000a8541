"""pzkit's torch side (importing this module imports torch): one training engine for every torch plugin.

* :mod:`pzkit.nn.engine` — :class:`NeuralPhotoZEstimator` (the base of all five torch plugins), the skorch net
  :class:`TrainingNet` and the callbacks (learning-rate schedule, resumable checkpoint, progress, thread budget);
* :class:`TorchPhotoZEstimator` — the engine's base for networks on feature tables (baseline_nn, mtl_nb);
* :mod:`pzkit.nn.images` — :class:`~pzkit.nn.images.ImagePhotoZEstimator`, the base for image CNNs;
* :mod:`pzkit.nn.core` — device choice, redshift-bin utilities, :class:`MLP` and :class:`RedshiftBinHead`.
"""

from .core import MLP, RedshiftBinHead, class_weights, grid_bins, select_device, soft_labels, z_to_bin
from .engine import NeuralPhotoZEstimator, TrainingNet, local_random_state
from .estimator import TorchPhotoZEstimator

__all__ = [
    "MLP",
    "NeuralPhotoZEstimator",
    "RedshiftBinHead",
    "TorchPhotoZEstimator",
    "TrainingNet",
    "class_weights",
    "grid_bins",
    "local_random_state",
    "select_device",
    "soft_labels",
    "z_to_bin",
]
