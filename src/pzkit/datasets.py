"""Datasets: RAIL's DC2 test catalog, read from the files shipped inside the ``pz-rail-base`` package."""

from dataclasses import dataclass, field

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


@dataclass
class Dataset:
    """A catalog split: ``train`` and ``validation`` tables (pandas DataFrames) plus how to read them."""

    name: str
    train: object
    validation: object
    bands: str
    redshift_column: str
    id_column: str
    mag_limits: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)

    def features(self, **overrides):
        """A :class:`~pzkit.PhotometryFeatures` configured for this dataset (overrides win)."""
        from .features import PhotometryFeatures

        params = dict(bands=self.bands, nondetect="limit", mag_limits=dict(self.mag_limits), ref_band="i")
        params.update(overrides)
        return PhotometryFeatures(**params)


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
    )
