"""pzkit estimators as RAIL stages: ``rail.pzkit`` is what RAIL's package discovery (``RailEnv``,
``rail.stages.import_and_attach_all()``) imports and what a ceci pipeline file names as ``module_name``.

The same names are importable as :mod:`pzkit.rail`. See ``docs/ecosystem.md``.
"""

from ._columns import features_params, split_columns
from .stages import PzkitEstimator, PzkitInformer, PzkitModelHandle

__all__ = ["PzkitInformer", "PzkitEstimator", "PzkitModelHandle", "features_params", "split_columns"]
