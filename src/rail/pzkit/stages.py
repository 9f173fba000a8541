"""RAIL stages that wrap any pzkit estimator: :class:`PzkitInformer` and :class:`PzkitEstimator`."""

from typing import Any

import numpy as np
from ceci.config import StageParameter as Param
from rail.core.common_params import SharedParams
from rail.core.data import ModelHandle, TableHandle
from rail.estimation.estimator import CatEstimator
from rail.estimation.informer import CatInformer

from ._columns import features_params

_GRID_KEYS = ("zmin", "zmax", "nzbins")


class PzkitModelHandle(ModelHandle):
    """A RAIL model handle for pzkit model files (``.pzk``): written with :func:`pzkit.save` and read with
    :func:`pzkit.load`, which never unpickles (RAIL's default :class:`~rail.core.data.ModelHandle` pickles)."""

    suffix = "pzk"

    @classmethod
    def _open(cls, path: str, **kwargs: Any):
        if kwargs.get("mode", "r") == "w":
            return open(path, mode="wb")
        return cls._read(path)

    @classmethod
    def _read(cls, path: str, **kwargs: Any):
        import pzkit

        return pzkit.load(path)

    @classmethod
    def _write(cls, data: Any, path: str, **kwargs: Any) -> None:
        import pzkit

        pzkit.save(data, path)


def _table(data, groupname):
    """The table of a RAIL chunk or input: the ``groupname`` member of a file-like dict, else the data itself."""
    if groupname and isinstance(data, dict) and groupname in data:
        return data[groupname]
    return data


def _column(table, name):
    try:
        return np.asarray(table[name])
    except (KeyError, ValueError, IndexError) as exc:
        raise KeyError(f"column {name!r} is not in the input table") from exc


def _routing_enabled():
    import sklearn

    return bool(sklearn.get_config().get("enable_metadata_routing", False))


def _side_inputs(table, spec):
    """Side inputs (keyword arguments of fit/estimate_pdf) from table columns: name -> column or list of columns."""
    out = {}
    for key, cols in dict(spec or {}).items():
        if isinstance(cols, str):
            out[key] = _column(table, cols)
        else:
            out[key] = np.column_stack([_column(table, c) for c in cols])
    return out


class _PzkitStageMixin:
    """Shared configuration handling of the two stages."""

    def make_features(self):
        """The :class:`~pzkit.PhotometryFeatures` this stage's configuration describes."""
        from pzkit.features import PhotometryFeatures

        cfg = self.config
        params = features_params(
            bands=cfg.bands,
            err_bands=cfg.err_bands,
            ref_band=cfg.ref_band,
            mag_limits=cfg.mag_limits,
            nondetect_val=cfg.nondetect_val,
            overrides=cfg.features,
        )
        return PhotometryFeatures(**params)

    def _check_input_columns(self, extra=()):
        features = self.make_features()
        columns = list(features.required_columns()) + list(extra)
        for cols in dict(getattr(self.config, "side_inputs", None) or {}).values():
            columns += [cols] if isinstance(cols, str) else list(cols)
        handle = self.get_handle("input", allow_missing=True)
        if handle.data is None and handle.path in (None, "None", "none"):
            return
        self._check_column_names(handle, columns)


_FEATURE_OPTIONS = dict(
    bands=SharedParams.copy_param("bands"),
    err_bands=SharedParams.copy_param("err_bands"),
    ref_band=SharedParams.copy_param("ref_band"),
    mag_limits=SharedParams.copy_param("mag_limits"),
    nondetect_val=SharedParams.copy_param("nondetect_val"),
    features=Param(
        dict,
        {},
        msg="pzkit.PhotometryFeatures parameters that override the ones derived from bands, err_bands, ref_band, "
        "mag_limits and nondetect_val (e.g. include_errors: true, or bands/mag_column for other column names)",
    ),
)


class PzkitInformer(_PzkitStageMixin, CatInformer):
    """Inform (fit) any pzkit estimator, named by its ``pzkit.estimators`` entry point, on a RAIL table.

    The model is a :class:`pzkit.PhotoZPipeline` (``PhotometryFeatures`` + the estimator), written with
    :func:`pzkit.save` to a ``.pzk`` file, which :class:`PzkitEstimator`, ``pzkit.load`` and the ``pzkit`` command
    line all read. The redshift grid is the stage's ``zmin``/``zmax``/``nzbins`` (RAIL's shared parameters); the
    photometry columns come from RAIL's ``bands``/``err_bands``/``ref_band``/``mag_limits``/``nondetect_val``,
    so RAIL catalog tags apply, and ``features`` overrides any :class:`~pzkit.PhotometryFeatures` setting.
    """

    name = "PzkitInformer"
    entrypoint_function = "inform"
    config_options = CatInformer.config_options.copy()
    config_options.update(
        estimator=Param(str, None, required=True, msg="pzkit estimator entry-point name (see `pzkit list`)"),
        estimator_params=Param(dict, {}, msg="parameters of the pzkit estimator (not zmin/zmax/nzbins)"),
        zmin=SharedParams.copy_param("zmin"),
        zmax=SharedParams.copy_param("zmax"),
        nzbins=SharedParams.copy_param("nzbins"),
        redshift_col=SharedParams.copy_param("redshift_col"),
        side_inputs=Param(
            dict, {}, msg="side inputs of fit: keyword -> column name, or list of columns (stacked as (n, k))"
        ),
        **_FEATURE_OPTIONS,
    )
    outputs = [("model", PzkitModelHandle)]

    def make_model(self):
        """The unfitted :class:`pzkit.PhotoZPipeline` this stage's configuration describes."""
        import pzkit

        params = dict(self.config.estimator_params or {})
        clash = sorted(set(params) & set(_GRID_KEYS))
        if clash:
            raise ValueError(
                f"{self.instance_name}: set {clash} as stage parameters (RAIL's shared zmin/zmax/nzbins), "
                "not in estimator_params"
            )
        params.update({k: self.config[k] for k in _GRID_KEYS})
        estimator = pzkit.make_estimator(self.config.estimator, **params)
        return pzkit.make_pipeline(self.make_features(), estimator)

    def validate(self) -> None:
        self._check_input_columns(extra=[self.config.redshift_col])

    def run(self) -> None:
        table = _table(self.get_data("input"), self.config.hdf5_groupname)
        y = _column(table, self.config.redshift_col).astype(np.float64)
        model = self.make_model()
        side = _side_inputs(table, self.config.side_inputs)
        if side and _routing_enabled():
            model.steps[-1][1].set_fit_request(**{k: True for k in side})
            model.fit(table, y, **side)
        else:  # scikit-learn's Pipeline convention without metadata routing: step__param
            last = model.steps[-1][0]
            model.fit(table, y, **{f"{last}__{k}": v for k, v in side.items()})
        self.model = model
        self.add_data("model", model)


class PzkitEstimator(_PzkitStageMixin, CatEstimator):
    """Estimate per-object redshift PDFs with a model written by :class:`PzkitInformer` (or ``pzkit.save``).

    Each RAIL chunk is passed through the model's ``estimate_pdf``; the output is a ``qp.Ensemble`` whose ancil
    holds ``zmode``, ``zmedian``, ``zmean``, ``zstd`` and, as in every RAIL estimator, ``id`` (from ``id_col``)
    and ``redshift`` (from ``redshift_col``) when the input has those columns. The stage's
    ``zmin``/``zmax``/``nzbins`` must equal the model's grid. A model that is a bare pzkit estimator (fitted on a
    feature matrix) gets the stage's ``PhotometryFeatures`` in front of it.
    """

    name = "PzkitEstimator"
    #: the model was a bare estimator wrapped with this stage's features, whose columns are checked on the
    #: first chunk
    _fit_features = False
    entrypoint_function = "estimate"
    config_options = CatEstimator.config_options.copy()
    config_options.update(
        side_inputs=Param(
            dict, {}, msg="side inputs of estimate_pdf: keyword -> column name, or list of columns"
        ),
        **_FEATURE_OPTIONS,
    )
    inputs = [("model", PzkitModelHandle), ("input", TableHandle)]

    def open_model(self, **kwargs: Any):
        model = CatEstimator.open_model(self, **kwargs)
        if model is None:  # pragma: no cover - RAIL allows building a stage before its model exists
            return model
        self.model = self._as_pipeline(model)
        return self.model

    def _as_pipeline(self, model):
        import pzkit
        from pzkit.base import PhotoZEstimator
        from pzkit.pipeline import PhotoZPipeline

        self._fit_features = False
        if isinstance(model, PhotoZEstimator):
            model = pzkit.make_pipeline(self.make_features(), model)
            self._fit_features = True  # PhotometryFeatures learns nothing; fit only checks the columns
        if not isinstance(model, PhotoZPipeline):
            raise TypeError(
                f"{self.instance_name}: the model is a {type(model).__name__}, not a pzkit estimator or "
                "PhotoZPipeline; write it with PzkitInformer or pzkit.save"
            )
        estimator = model.steps[-1][1]
        grid = np.asarray(getattr(estimator, "zgrid_", np.empty(0)))
        expected = np.linspace(self.config.zmin, self.config.zmax, self.config.nzbins)
        if grid.shape != expected.shape or not np.allclose(grid, expected, rtol=0, atol=1e-12):
            have = f"{grid[0]}..{grid[-1]}, {grid.size} points" if grid.size else "no grid (not fitted?)"
            raise ValueError(
                f"{self.instance_name}: the model's redshift grid ({have}) differs from this stage's zmin="
                f"{self.config.zmin}, zmax={self.config.zmax}, nzbins={self.config.nzbins}; "
                "set the same zmin/zmax/nzbins as in the inform stage"
            )
        return model

    def _process_chunk(self, start: int, end: int, data: Any, first: bool) -> None:
        table = _table(data, self.config.hdf5_groupname)
        side = _side_inputs(table, self.config.side_inputs)
        if self._fit_features:
            self.model.steps[0][1].fit(table)
            self._fit_features = False
        if side and _routing_enabled():
            self.model.steps[-1][1].set_predict_request(**{k: True for k in side})
        # the model's PhotometryFeatures checks its columns on every chunk (ColumnError naming the missing ones)
        ens = self.model.estimate_pdf(table, **side)
        if ens.npdf != end - start:
            raise RuntimeError(f"{self.instance_name}: {ens.npdf} PDFs for rows {start}:{end}")
        self._do_chunk_output(ens, start, end, first, data=table)
