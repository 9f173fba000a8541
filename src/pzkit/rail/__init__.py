"""pzkit estimators as RAIL stages (needs the ``rail`` extra: ``pip install 'pzkit[rail]'``).

* :class:`PzkitInformer` (a RAIL ``CatInformer``) fits any pzkit estimator, named by its ``pzkit.estimators``
  entry point, on a RAIL table and writes the fitted :class:`pzkit.PhotoZPipeline` with :func:`pzkit.save`
  (a ``.pzk`` file, handled by :class:`PzkitModelHandle`; nothing is pickled).
* :class:`PzkitEstimator` (a RAIL ``CatEstimator``) runs the model over RAIL's chunks and returns
  ``qp.Ensemble`` output with ``zmode``, ``zmedian``, ``zmean``, ``zstd`` (+ ``id``, ``redshift``) in the ancil.

The classes are defined in ``rail.pzkit.stages``, inside RAIL's ``rail`` namespace, because that is how RAIL
discovers stage packages (``rail.stages.import_and_attach_all()`` imports every ``rail.*`` package) and how
ceci runs a stage of a pipeline file (``python -m ceci rail.pzkit.stages.PzkitInformer ...``).
``import pzkit`` itself never imports rail or ceci; only this subpackage does.
"""

try:
    import ceci  # noqa: F401
    import rail.core.stage  # noqa: F401
except ImportError as exc:  # pragma: no cover - exercised only without the extra
    raise ImportError(
        "pzkit.rail needs RAIL (pz-rail-base, which brings ceci): pip install 'pzkit[rail]'"
    ) from exc

from rail.pzkit import PzkitEstimator, PzkitInformer, PzkitModelHandle, features_params, split_columns

__all__ = ["PzkitInformer", "PzkitEstimator", "PzkitModelHandle", "features_params", "split_columns"]
