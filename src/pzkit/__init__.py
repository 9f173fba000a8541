"""pzkit: photometric-redshift estimators behind one scikit-learn interface.

The top-level names are imported lazily, so ``import pzkit`` stays cheap and never imports torch;
plugins are found through the ``pzkit.estimators`` entry-point group.
"""

from ._lazy import lazy_module

__version__ = "0.1.0"

_EXPORTS = {
    "PhotoZEstimator": "pzkit.base",
    "PhotometryFeatures": "pzkit.features",
    "PhotoZPipeline": "pzkit.pipeline",
    "make_pipeline": "pzkit.pipeline",
    "list_estimators": "pzkit.registry",
    "get_estimator_class": "pzkit.registry",
    "make_estimator": "pzkit.registry",
    "save": "pzkit.persistence",
    "load": "pzkit.persistence",
    "evaluate": "pzkit.harness",
    "StackedPhotoZ": "pzkit.stacking",
    "CalibratedPhotoZ": "pzkit.calibration",
    "run_study": "pzkit.study",
    "get_dataset": "pzkit.datasets",
    "list_datasets": "pzkit.datasets",
    "PzkitError": "pzkit.exceptions",
    "InputError": "pzkit.exceptions",
    "ColumnError": "pzkit.exceptions",
    "NonDetectionError": "pzkit.exceptions",
    "NotFittedError": "pzkit.exceptions",
    "PluginError": "pzkit.exceptions",
    "ModelFileError": "pzkit.exceptions",
    "DatasetError": "pzkit.exceptions",
}
_SUBMODULES = {"datasets", "metrics", "testing", "registry", "features", "persistence", "pdf", "grid", "sims",
               "harness", "cli", "exceptions", "base", "pipeline", "scoring", "tables", "nn", "rail",
               "study", "stacking", "calibration", "model_selection"}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_module(__name__, _EXPORTS, _SUBMODULES)
