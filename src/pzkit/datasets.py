"""Datasets for the shared harness, as a registry: ``dc2``, every sims preset as ``sims:<preset>``, a catalog
file (a ``pzkit sims make`` file with its companion images, or any catalog with a ``split`` column), and
third-party datasets from the ``pzkit.datasets`` entry-point group.

A :class:`Dataset` holds the train and test tables and, per split, the side inputs the data has (images,
narrow bands, reference magnitudes, …, named in :data:`INPUTS`). Test redshifts are for scoring only; the
training table carries NaN for every row whose label a method may not use, and the unlabelled target domain
has no redshift column at all.
"""

import importlib.metadata
import os
from dataclasses import dataclass, field

import numpy as np

from .exceptions import DatasetError

#: LSST bands of the DC2 catalog, in wavelength order.
DC2_BANDS = "ugrizy"
#: Limiting magnitudes RAIL substitutes for DC2 non-detections (``rail.core.common_params.lsst_def_maglims``).
DC2_MAG_LIMITS = {"u": 27.79, "g": 29.04, "r": 29.06, "i": 28.62, "z": 27.98, "y": 27.05}
#: A_band / E(B-V) for the LSST bands, as in RAIL (``lsst_def_a_env``).
DC2_EXTINCTION_COEFFS = {"u": 4.81, "g": 3.64, "r": 2.70, "i": 2.06, "z": 1.58, "y": 1.31}

_DC2_FILES = {
    "train": "examples_data/testdata/test_dc2_training_9816.hdf5",
    "validation": "examples_data/testdata/test_dc2_validation_9816.hdf5",
}

#: Side inputs a dataset can give per split, aligned with the split's rows. Estimator tags (``fit_inputs``,
#: ``predict_inputs``) name them; ``"target:<input>"`` is the same input of the unlabelled target domain.
INPUTS = {
    "images": "(n, bands, H, W) float image stamps",
    "narrow_bands": "(n, n_narrow_bands) narrow-band magnitudes, NaN where a band was not observed",
    "z_photo": "(n,) a high-precision photo-z (PAUS-like), NaN where there is none",
    "mag": "(n,) the reference magnitude (dereddened in sims datasets; non-detections at the 1σ limit)",
    "ebv": "(n,) Galactic E(B−V)",
    "colors": "(n, bands) colour targets: adjacent dereddened colours and the reference magnitude",
}
TARGET_PREFIX = "target:"
#: Entry-point group of third-party datasets: name -> callable(n=None, random_state=0, inputs=()) -> Dataset.
GROUP = "pzkit.datasets"
#: Catalog size of ``sims:<preset>`` when ``n`` is not given.
DEFAULT_SIMS_N = 8000


@dataclass
class Dataset:
    """A catalog split for the harness.

    Attributes
    ----------
    train, validation : pandas.DataFrame
        Training and test tables (``test`` is an alias of ``validation``). Training rows a method may not
        learn the redshift of have NaN in ``redshift_column``.
    target : pandas.DataFrame or None
        The unlabelled target domain (domain adaptation), without a redshift column.
    inputs : dict
        ``{"train" | "validation" | "target": {input name: array aligned with that table's rows}}``.
    feature_params : dict
        :class:`~pzkit.PhotometryFeatures` parameters for this catalog's columns.
    grid : dict or None
        ``zmin``, ``zmax``, ``nzbins`` that cover the dataset; the harness gives them to every estimator.
    bench_params : dict
        ``{estimator name: parameters}`` that fit this dataset's size (training lengths of the image
        networks); ``pzkit bench`` uses them unless a ``--param`` overrides them. The report records all.
    """

    name: str
    train: object
    validation: object
    bands: str
    redshift_column: str
    id_column: str
    mag_limits: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    target: object = None
    inputs: dict = field(default_factory=dict)
    feature_params: dict = field(default_factory=dict)
    grid: dict = None
    bench_params: dict = field(default_factory=dict)

    def __post_init__(self):
        tables = {"train": self.train, "validation": self.validation, "target": self.target}
        for split, inputs in self.inputs.items():
            if split not in tables or tables[split] is None:
                raise DatasetError(f"dataset {self.name!r} has inputs for a {split!r} split it does not have")
            for name, values in inputs.items():
                if len(values) != len(tables[split]):
                    raise DatasetError(f"dataset {self.name!r}: input {name!r} of the {split} split has "
                                       f"{len(values)} rows, the table {len(tables[split])}")

    @property
    def test(self):
        return self.validation

    def features(self, **overrides):
        """A :class:`~pzkit.PhotometryFeatures` configured for this dataset (overrides win)."""
        from .features import PhotometryFeatures

        params = dict(bands=self.bands, nondetect="limit", mag_limits=dict(self.mag_limits), ref_band="i")
        params.update(self.feature_params)
        params.update(overrides)
        return PhotometryFeatures(**params)

    def available_inputs(self, split="train"):
        """Names of the side inputs of ``split``, plus ``target:<name>`` for the target domain's."""
        names = set(self.inputs.get(split, {}))
        if self.target is not None:
            names |= {TARGET_PREFIX + k for k in self.inputs.get("target", {})}
        return names

    def get_input(self, split, name):
        """The side input ``name`` of ``split`` (``"target:<name>"`` reads the target domain's)."""
        if name.startswith(TARGET_PREFIX):
            split, name = "target", name[len(TARGET_PREFIX):]
            if self.target is None:
                raise DatasetError(f"dataset {self.name!r} has no target domain (needed for {TARGET_PREFIX}{name})")
        have = self.inputs.get(split, {})
        if name not in have:
            raise DatasetError(f"dataset {self.name!r} has no {name!r} for its {split} split; it has "
                               f"{sorted(have) or 'no side inputs'}")
        return have[name]

    def take(self, split, rows):
        """A copy with ``split`` (``"train"``, ``"validation"`` or ``"target"``) restricted to positions
        ``rows``; its side inputs follow the rows."""
        import dataclasses

        rows = np.asarray(rows)
        table = {"train": self.train, "validation": self.validation, "target": self.target}[split]
        inputs = dict(self.inputs)
        inputs[split] = {k: np.asarray(v)[rows] for k, v in self.inputs.get(split, {}).items()}
        return dataclasses.replace(self, **{split: table.iloc[rows]}, inputs=inputs)


def dc2_path(split):
    """Absolute path of a DC2 file inside the installed ``pz-rail-base`` package."""
    if split not in _DC2_FILES:
        raise DatasetError(f"DC2 split must be one of {sorted(_DC2_FILES)}, got {split!r}")
    try:
        from rail.utils.path_utils import find_rail_file
    except ImportError as exc:
        raise DatasetError(
            "the DC2 test catalog ships inside the pz-rail-base package, which is not installed: "
            "pip install 'pzkit[rail]' (or pip install pz-rail-base)"
        ) from exc
    try:
        return find_rail_file(_DC2_FILES[split])
    except ValueError as exc:
        raise DatasetError(f"pz-rail-base is installed but lacks {_DC2_FILES[split]}: {exc}") from exc


def load_dc2():
    """RAIL's DC2 test catalog: 10,225 training and 20,449 validation galaxies, LSST ugrizy, z < 3.

    Columns: ``id``, ``mag_{band}_lsst``, ``mag_err_{band}_lsst`` and ``redshift``; non-detections are 99
    (use ``nondetect="limit"`` with :data:`DC2_MAG_LIMITS`, as ``Dataset.features()`` does).
    """
    import pandas as pd
    import tables_io

    tables = {}
    source = {}
    for split in _DC2_FILES:
        path = dc2_path(split)
        data = tables_io.read(path)["photometry"]
        tables[split] = pd.DataFrame({k: data[k] for k in data})
        source[split] = path
    return Dataset(
        name="dc2",
        train=tables["train"],
        validation=tables["validation"],
        bands=DC2_BANDS,
        redshift_column="redshift",
        id_column="id",
        mag_limits=dict(DC2_MAG_LIMITS),
        source=source,
        # 3 folds instead of scikit-learn's 5 keep the stack's cross-validation to about 4 minutes on 2 cores
        bench_params={"stacked": {"cv": 3}},
    )


# ---------------------------------------------------------------------------------------------- sims
#: Training lengths that let the image networks finish a head-to-head on a ``sims:<preset>`` catalog of a few
#: thousand objects on two CPU cores; ``pzkit bench --param NAME:KEY=VALUE`` overrides any of them. Besides the
#: lengths, the settings the per-method benchmarks found at CPU scale: bias_cnn reads the sims' nJy pixels as
#: SDSS nanomaggies (× 1/3631, what Eq. 1's stretch expects) with lr 1e-3; PITA's key encoder momentum 0.99
#: (0.999 barely moves it in a few thousand steps).
SIMS_BENCH_PARAMS = {
    "bias_cnn": {"max_epochs": 60, "steps_per_epoch": 100, "lr_drop_epoch": 45, "finetune_epochs": 15,
                 "batch_size": 64,
                 "conv_width": 32, "th": 50, "pixel_scale": 1 / 3631.0, "lr": 1e-3,
                 "lr_late": 2e-4, "lr_finetune": 1e-3},
    "adversarial_da": {"max_epochs": 25, "trunk_widths": (16, 16, 32, 32, 48, 48), "branch_width": 8,
                       "disc_widths": (32, 32, 32, 32), "disc_fc_widths": (64,), "fc_widths": (64,)},
    "pita": {"max_epochs": 20, "steps_per_epoch": 100, "crop_size": 24, "batch_size": 64, "queue_size": 4096,
             "momentum": 0.99},
    "baseline_nn": {"max_epochs": 60},
    "mtl_nb": {"max_epochs": 60},
    "stacked": {"cv": 3},
}


def _bench_params_for(params, grid, bands, ref_band):
    """The sims bench parameters, with what depends on the catalog (bias_cnn's magnitude rows)."""
    out = {k: dict(v) for k, v in params.items()}
    if "bias_cnn" in out:
        # the paper's magnitude rows span the sample: rows of 0.5 mag from the bright end of the catalog
        out["bias_cnn"].update(mag_min=float(np.floor(grid.get("mag_min", 17.0))), n_mag_outputs=8)
    return out


def sims_dataset(result, name=None):
    """A :class:`Dataset` from a :class:`pzkit.sims.SimResult`: the ``train`` (or ``source``) split for
    training with unlabelled rows' redshifts removed, ``test`` (or, without one, ``target``) for scoring and
    ``target`` as the unlabelled target domain; side inputs from its images, narrow bands, ``zpaus`` and
    ``ebv`` columns."""
    import pandas as pd

    splits = list(result.config["splits"])
    present = set(result.catalog["split"].unique())
    train_name = "train" if "train" in splits else ("source" if "source" in splits else splits[0])
    test_name = "test" if "test" in splits else ("target" if "target" in splits else None)
    if test_name is None or train_name not in present or test_name not in present:
        raise DatasetError(f"sims catalog {result.config['name']!r} needs a train (or source) and a test (or "
                           f"target) split with rows; it has {sorted(present)}")
    target_name = "target" if "target" in splits and "target" in present else None
    feature_params = {k: v for k, v in result.features().get_params().items() if k not in ("bands", "mag_limits")}

    def part(split, keep_redshift):
        sub = result.split(split)
        table = sub.catalog.reset_index(drop=True).copy()
        labelled = labelled_mask(table["labelled"].to_numpy())
        if keep_redshift == "labelled":
            table[result.redshift_column] = np.where(labelled, table[result.redshift_column], np.nan)
        elif not keep_redshift:
            table = table.drop(columns=[result.redshift_column])
        return pd.DataFrame(table), result_inputs(sub)

    train, train_inputs = part(train_name, "labelled")
    test, test_inputs = part(test_name, True)
    inputs = {"train": train_inputs, "validation": test_inputs}
    target = None
    if target_name is not None:
        target, inputs["target"] = part(target_name, False)
    zmin, zmax = float(result.config["redshift"]["min"]), float(result.config["redshift"]["max"])
    grid = {"zmin": zmin, "zmax": zmax, "nzbins": int(round((zmax - zmin) / 0.01)) + 1}
    bench = _bench_params_for(SIMS_BENCH_PARAMS, {"mag_min": result.config["magnitude"]["min"]},
                              result.bands, result.ref_band)
    for params in bench.values():
        params.update(grid)
    return Dataset(
        name=name or f"sims:{_preset_label(result.config)}", train=train, validation=test, target=target,
        bands=list(result.bands), redshift_column=result.redshift_column, id_column=result.id_column,
        mag_limits=dict(result.mag_limits), inputs=inputs, feature_params=feature_params, grid=grid,
        bench_params=bench,
        source={"preset": result.config["name"], "n": len(result), "key": result.key, "path": result.path,
                "splits": {"train": train_name, "test": test_name, "target": target_name},
                "transductive_target": target_name == test_name},
    )


def result_inputs(result):
    """The side inputs (:data:`INPUTS`) of every row of a :class:`pzkit.sims.SimResult`: ``mag`` and ``colors``
    from its dereddened broad bands, ``ebv``, and ``images``, ``narrow_bands``, ``z_photo`` where it has them."""
    F = np.asarray(result.features().fit_transform(result.catalog), dtype=np.float64)
    inputs = {"mag": F[:, -1], "colors": F, "ebv": result.catalog["ebv"].to_numpy(np.float64)}
    if result.images is not None:
        inputs["images"] = np.asarray(result.images)
    if result.narrow_bands is not None:
        nb = result.narrow_bands[[f"mag_{b}" for b in result.nb_bands]].to_numpy(np.float64)
        if np.isfinite(nb).any():
            inputs["narrow_bands"] = nb
    if "zpaus" in result.catalog and np.isfinite(result.catalog["zpaus"].to_numpy(np.float64)).any():
        inputs["z_photo"] = result.catalog["zpaus"].to_numpy(np.float64)
    return inputs


def sims_inputs(path, names=()):
    """``(catalog, side inputs)`` for every row of a ``pzkit sims make`` file; images (from the companion
    file, which must then exist) only when ``names`` asks for them."""
    images = any(str(k).split(TARGET_PREFIX)[-1] == "images" for k in names)
    result = read_sims_file(path, images=images)
    if images and result.images is None:
        read_companion_images(path, required=True)
    return result.catalog, result_inputs(result)


def _preset_label(config):
    """``name`` for a preset at its newest version, ``name@version`` for an older one."""
    from .sims.config import PRESET_VERSIONS

    versions = PRESET_VERSIONS.get(config["name"])
    version = config.get("version", 1)
    return config["name"] if not versions or version == max(versions) else f"{config['name']}@{version}"


def load_sims(preset, n=None, random_state=0, inputs=(), cache_dir=None, progress=False):
    """``sims:<preset>``: the preset generated deterministically into the cache (keyed by config hash, ``n``
    and seed); images are rendered only when ``inputs`` asks for them."""
    from .sims import make
    from .sims.config import SimsConfigError, list_presets, parse_preset

    try:
        parse_preset(preset)
    except SimsConfigError as exc:
        raise DatasetError(f"unknown sims preset {preset!r} ({exc}); known: {', '.join(list_presets())}") from None
    images = any(str(k).split(TARGET_PREFIX)[-1] == "images" for k in inputs)
    result = make(preset, DEFAULT_SIMS_N if n is None else n, random_state=random_state, images=images,
                  cache_dir=cache_dir, progress=progress)
    return sims_dataset(result)


# ---------------------------------------------------------------------------------------------- files
def read_sims_file(path, images=True):
    """A ``pzkit sims make`` file read back as a :class:`pzkit.sims.SimResult`, with its narrow bands and,
    when ``images`` is true and the companion ``<stem>_images.hdf5`` exists, its images (ids checked)."""
    import json

    import h5py
    import pandas as pd
    import tables_io

    from .sims.core import SimResult

    path = os.fspath(path)
    if not os.path.exists(path):
        raise DatasetError(f"catalog file {path!r} does not exist")
    with h5py.File(path, "r") as fh:
        if "config" not in fh.attrs:
            raise DatasetError(f"{path!r} is not a file written by `pzkit sims make` (no config attribute)")
        config = json.loads(fh.attrs["config"])
    groups = tables_io.read(path)
    cat = pd.DataFrame({k: _decoded(v) for k, v in groups["photometry"].items()})
    nb = None
    if "narrow_bands" in groups:
        nb = pd.DataFrame({k: v for k, v in groups["narrow_bands"].items()})
        nb.index = cat.index
    imgs = read_companion_images(path, cat["id"].to_numpy()) if images else None
    return SimResult(cat, config, nb, imgs)


def companion_images_path(path):
    """``<stem>_images.hdf5``, where ``pzkit sims make --images`` writes the stamps of ``<stem>.<ext>``."""
    return f"{os.path.splitext(os.fspath(path))[0]}_images.hdf5"


def read_companion_images(path, ids=None, required=False):
    """The image array of a catalog file's companion, in catalog order; None when there is none (unless
    ``required``). Errors name the file when the rows or ids do not match the catalog."""
    import h5py

    img_path = companion_images_path(path)
    if not os.path.exists(img_path):
        if required:
            raise DatasetError(f"images: companion file {img_path!r} of {os.fspath(path)!r} does not exist "
                               "(write it with `pzkit sims make ... --images`)")
        return None
    with h5py.File(img_path, "r") as fh:
        if "images" not in fh:
            raise DatasetError(f"images: {img_path!r} has no 'images' dataset")
        images = fh["images"][()]
        img_ids = fh["id"][()] if "id" in fh else None
    if ids is not None:
        if len(images) != len(ids):
            raise DatasetError(f"images: {img_path!r} has {len(images)} rows but the catalog {os.fspath(path)!r} "
                               f"has {len(ids)}")
        if img_ids is not None and not np.array_equal(_decoded(img_ids), _decoded(np.asarray(ids))):
            raise DatasetError(f"images: the ids in {img_path!r} are not those of {os.fspath(path)!r}, in order")
    return images


def labelled_mask(values, column="labelled"):
    """A ``labelled`` column as booleans: bool, 0/1 or the text true/false (any case); anything else (NaN,
    other text) is refused, since reading it wrongly would hand unlabelled redshifts to ``fit``."""
    v = _decoded(np.asarray(values))
    if v.dtype == bool:
        return v
    if v.dtype.kind in "iuf":
        if np.all(np.isin(v, (0, 1))):
            return v.astype(bool)
    elif v.dtype.kind in "UO":
        text = np.char.lower(np.char.strip(v.astype(str)))
        if np.all(np.isin(text, ("true", "false", "1", "0"))):
            return np.isin(text, ("true", "1"))
    found = sorted({str(x) for x in np.unique(v.astype(str))[:5]})
    raise DatasetError(f"column {column!r} must hold booleans (True/False, 1/0); found values such as {found}")


def _decoded(values):
    values = np.asarray(values)
    return values.astype(str) if values.dtype.kind == "S" else values


def _is_sims_file(path):
    import h5py

    if os.path.splitext(os.fspath(path))[1].lower() not in (".hdf5", ".hdf", ".h5"):
        return False
    try:
        with h5py.File(path, "r") as fh:
            return "config" in fh.attrs and "pzkit_sims_file" in fh.attrs
    except OSError:
        return False


def load_file(path, inputs=(), **catalog_options):
    """A catalog file as a dataset: a ``pzkit sims make`` file (splits, labels, narrow bands, companion
    images), or any catalog with a ``split`` column (:func:`from_catalog`, with ``catalog_options``)."""
    if not os.path.exists(os.fspath(path)):
        raise DatasetError(f"catalog file {os.fspath(path)!r} does not exist")
    if not _is_sims_file(path):
        return from_catalog(path, **catalog_options)
    images = any(str(k).split(TARGET_PREFIX)[-1] == "images" for k in inputs)
    result = read_sims_file(path, images=images)
    if images and result.images is None:
        read_companion_images(path, required=True)
    return sims_dataset(result, name=os.path.basename(os.fspath(path)))


def from_catalog(catalog, bands=DC2_BANDS, mag_column="mag_{band}_lsst", err_column="mag_err_{band}_lsst",
                 ref_band="i", nondetect=None, mag_limits=None, groupname=None, split_column="split",
                 train="train", test="test", target="target", redshift_column="redshift", labelled_column="labelled",
                 id_column=None, name=None):
    """A :class:`Dataset` from any catalog (table or file) whose ``split_column`` says which rows are the
    ``train``, ``test`` and (optionally) ``target`` rows.

    Training rows whose ``labelled_column`` (if present) is false get NaN redshifts; the target rows lose the
    redshift column. Side inputs: ``mag`` and ``colors`` from the broad bands, ``ebv`` if the catalog has an
    ``ebv`` column. Non-detections follow ``nondetect`` (default ``"limit"`` with ``mag_limits``, else
    ``"raise"``).
    """
    import pandas as pd

    from .features import PhotometryFeatures, read_catalog

    columns, _ = read_catalog(catalog, groupname)
    what = os.path.basename(os.fspath(catalog)) if isinstance(catalog, (str, os.PathLike)) else "the catalog"
    for column in (split_column, redshift_column):
        if column not in columns:
            raise DatasetError(f"{what} has no {column!r} column: a dataset needs a split column (train/test rows) "
                               f"and a redshift column")
    table = pd.DataFrame({k: (v.astype(str) if np.asarray(v).dtype.kind in "SO" else v) for k, v in columns.items()})
    splits = table[split_column].astype(str).to_numpy()
    for wanted in (train, test):
        if not (splits == wanted).any():
            raise DatasetError(f"{what}: no row has {split_column} == {wanted!r} (values: {sorted(set(splits))})")
    nondetect = nondetect or ("limit" if mag_limits else "raise")
    feature_params = dict(mag_column=mag_column, err_column=err_column, ref_band=ref_band, nondetect=nondetect)
    features = PhotometryFeatures(bands=bands, mag_limits=mag_limits, **feature_params)

    def part(rows, redshift):
        sub = table[rows].reset_index(drop=True)
        if redshift == "labelled" and labelled_column in sub:
            labelled = labelled_mask(sub[labelled_column].to_numpy(), labelled_column)
            sub[redshift_column] = np.where(labelled, sub[redshift_column], np.nan)
        elif not redshift:
            sub = sub.drop(columns=[redshift_column])
        F = np.asarray(features.fit_transform(sub), dtype=np.float64)
        inputs = {"mag": F[:, -1], "colors": F}
        if "ebv" in sub:
            inputs["ebv"] = sub["ebv"].to_numpy(np.float64)
        return sub, inputs

    train_table, train_inputs = part(splits == train, "labelled")
    test_table, test_inputs = part(splits == test, True)
    inputs = {"train": train_inputs, "validation": test_inputs}
    target_table = None
    if target is not None and (splits == target).any():
        target_table, inputs["target"] = part(splits == target, False)
    return Dataset(name=name or what, train=train_table, validation=test_table, target=target_table, bands=bands,
                   redshift_column=redshift_column, id_column=id_column, mag_limits=dict(mag_limits or {}),
                   inputs=inputs, feature_params=feature_params,
                   source={"catalog": what, "split_column": split_column,
                           "splits": {"train": train, "test": test, "target": target}})


# ---------------------------------------------------------------------------------------------- registry
def _entry_points():
    return {ep.name: ep for ep in importlib.metadata.entry_points(group=GROUP)}


def list_datasets():
    """Names :func:`get_dataset` knows: ``dc2``, ``sims:<preset>`` for every preset, and third-party ones."""
    from .sims.config import list_presets

    return ["dc2"] + [f"sims:{p}" for p in list_presets()] + sorted(_entry_points())


def get_dataset(name, n=None, random_state=0, inputs=(), progress=False, **catalog_options):
    """The dataset called ``name``: ``"dc2"``, ``"sims:<preset>"`` (``n`` objects, seed ``random_state``),
    a third-party name from the ``pzkit.datasets`` entry-point group, the path of a ``pzkit sims make`` file,
    or the path of any catalog with a split column (read by :func:`from_catalog` with ``catalog_options``).
    ``inputs``: the side inputs the caller needs (images are rendered or read only when asked)."""
    if isinstance(name, Dataset):
        return name
    name = str(name)
    if name == "dc2":
        return load_dc2()
    if name.startswith("sims:"):
        return load_sims(name[len("sims:"):], n=n, random_state=random_state, inputs=inputs, progress=progress)
    eps = _entry_points()
    if name in eps:
        try:
            loader = eps[name].load()
        except Exception as exc:
            raise DatasetError(f"dataset plugin {name!r} ({eps[name].value}) failed to import: "
                               f"{type(exc).__name__}: {exc}") from exc
        dataset = loader(n=n, random_state=random_state, inputs=tuple(inputs))
        if not isinstance(dataset, Dataset):
            raise DatasetError(f"dataset plugin {name!r} returned {type(dataset).__name__}, not a pzkit Dataset")
        return dataset
    if os.path.splitext(name)[1].lower() in (".hdf5", ".hdf", ".h5", ".parquet", ".pq", ".fits", ".fit"):
        return load_file(name, inputs=inputs, **catalog_options)
    raise DatasetError(f"unknown dataset {name!r}; known: {', '.join(list_datasets())}, or the path of a "
                       "catalog file (a `pzkit sims make` file, or any catalog with a split column)")
