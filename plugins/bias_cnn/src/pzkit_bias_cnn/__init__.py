"""pzkit plugin ``bias_cnn``: CNN photo-z classification with the bias correction of Lin et al. (2022);
see ``docs/plugins/bias_cnn.md``. Step 4 is :class:`pzkit.calibration.ZPhotCalibrator`."""

from ._estimator import STAGES, BiasCNN, preprocess_eq1
from ._nets import BACKBONES, FlatFeatures, NetP, NetS, make_backbone

__all__ = ["BACKBONES", "STAGES", "BiasCNN", "FlatFeatures", "NetP", "NetS", "make_backbone", "preprocess_eq1"]
__version__ = "0.1.0"
