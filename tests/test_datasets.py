"""Datasets as a registry, tags routing inputs, and the guarantee that no test or unlabelled redshift reaches fit."""

import numpy as np
import pytest

import pzkit
from pzkit.base import PhotoZEstimator
from pzkit.cli import main
from pzkit.datasets import get_dataset, list_datasets, sims_dataset
from pzkit.exceptions import DatasetError
from pzkit.sims import make

N = 600


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    return str(tmp_path_factory.mktemp("pzcache"))


@pytest.fixture(scope="module")
def sim(cache):
    """The head-to-head preset, small, with the truth of every row (what the spies are checked against)."""
    return make("deep_wide", N, random_state=0, cache_dir=cache)


class Spy(PhotoZEstimator):
    """Records what fit receives; predicts the training n(z)."""

    _tags = {"fit_inputs": {"nb": "narrow_bands", "mag": "mag"}, "learns": False}

    def fit(self, X, y, nb=None, mag=None):
        self.seen_y_ = np.array(y, dtype=np.float64)
        self.seen_n_rows_ = len(X)
        self.seen_nb_ = None if nb is None else np.asarray(nb)
        self.seen_mag_ = None if mag is None else np.asarray(mag)
        return super().fit(X, y)

    def _fit(self, X, y):
        counts, _ = np.histogram(y[np.isfinite(y)], bins=self.zgrid_)
        self.nz_ = counts / counts.sum()

    def _estimate_pdf(self, X):
        return self._hist_ensemble(np.tile(self.nz_, (X.shape[0], 1)))


class UnlabelledSpy(Spy):
    _tags = {"unlabelled_rows": True}


def _truth(sim, split, labelled=None):
    cat = sim.catalog[sim.catalog["split"] == split]
    if labelled is not None:
        cat = cat[cat["labelled"] == labelled]
    return cat["redshift"].to_numpy()


def _check_no_leak(spy, sim, with_unlabelled):
    y = spy.seen_y_
    seen = y[np.isfinite(y)]
    # every label given is a labelled training redshift, each exactly once; no test or target redshift at all
    np.testing.assert_array_equal(np.sort(seen), np.sort(_truth(sim, "train", labelled=True)))
    for split in ("test", "target"):
        assert not np.isin(seen, _truth(sim, split)).any(), f"a {split} redshift reached fit"
    assert not np.isin(seen, _truth(sim, "train", labelled=False)).any(), "an unlabelled redshift reached fit"
    n_unlabelled = int(np.sum(~np.isfinite(y)))
    assert n_unlabelled == (len(_truth(sim, "train", labelled=False)) if with_unlabelled else 0)
    assert spy.seen_n_rows_ == len(y)


def test_registry_names_and_errors():
    names = list_datasets()
    assert "dc2" in names and "sims:deep_wide" in names and "sims:cosmos_paus" in names
    with pytest.raises(DatasetError, match="unknown sims preset 'nope'"):
        get_dataset("sims:nope", n=10)
    with pytest.raises(DatasetError, match="unknown dataset 'mystery'"):
        get_dataset("mystery")


def test_sims_dataset_splits_and_inputs(sim):
    data = sims_dataset(sim)
    assert len(data.train) + len(data.validation) + len(data.target) == N
    assert "redshift" not in data.target.columns
    assert data.train["redshift"].isna().sum() == (~sim.train.catalog["labelled"]).sum() > 0
    assert {"narrow_bands", "z_photo", "mag", "ebv", "colors"} <= set(data.inputs["train"])
    assert "narrow_bands" not in data.inputs["validation"]  # narrow bands on the training split only
    assert data.available_inputs("train") >= {"target:mag", "target:colors"}
    assert data.grid == {"zmin": 0.0, "zmax": 3.0, "nzbins": 301}
    with pytest.raises(DatasetError, match="no 'images' for its train split"):
        data.get_input("train", "images")


def test_tags_are_inherited_and_follow_parameters():
    assert Spy.get_class_tag("X_type") == "photometry"            # inherited default
    assert UnlabelledSpy.get_class_tags()["fit_inputs"] == {"nb": "narrow_bands", "mag": "mag"}
    assert UnlabelledSpy.get_class_tag("unlabelled_rows") and not Spy.get_class_tag("unlabelled_rows")
    mtl = pzkit.make_estimator("mtl_nb")
    assert mtl.get_tag("fit_inputs") == {"nb": "narrow_bands"} and mtl.get_tag("unlabelled_rows")
    mtl.set_params(variant="zs+NB+zPAUS")
    assert mtl.get_tag("fit_inputs") == {"nb": "narrow_bands", "z_photo": "z_photo"}
    assert pzkit.make_estimator("bias_cnn").get_tag("X_type") == "images"


@pytest.mark.parametrize("spy_class", [Spy, UnlabelledSpy])
def test_harness_never_gives_test_or_unlabelled_redshifts_to_fit(sim, cache, monkeypatch, spy_class):
    monkeypatch.setenv("PZKIT_CACHE_DIR", cache.rsplit("/sims", 1)[0])
    data = sims_dataset(sim)
    spy = spy_class()
    report = pzkit.evaluate([("spy", spy)], dataset=data, progress=False)
    assert "error" not in report.results[0], report.results[0].get("error")
    _check_no_leak(spy, sim, with_unlabelled=spy_class is UnlabelledSpy)
    # side inputs follow the fitted rows: the narrow bands of exactly those objects
    train = data.train.reset_index(drop=True)
    rows = np.flatnonzero(np.isfinite(train["redshift"])) if spy_class is Spy else np.arange(len(train))
    np.testing.assert_array_equal(spy.seen_nb_, data.inputs["train"]["narrow_bands"][rows])
    np.testing.assert_array_equal(spy.seen_mag_, data.inputs["train"]["mag"][rows])


@pytest.mark.parametrize("spy_class", [Spy, UnlabelledSpy])
def test_cli_fit_on_a_sims_file_never_trains_on_test_or_unlabelled_redshifts(sim, tmp_path, monkeypatch,
                                                                               spy_class):
    path = tmp_path / "sim.hdf5"
    sim.write(path)
    spies = []

    def make_spy(name, **params):
        spies.append(spy_class(**params))
        return spies[-1]

    monkeypatch.setattr(pzkit.registry, "make_estimator", make_spy)
    monkeypatch.setattr(pzkit.persistence, "save", lambda model, path: None)
    assert main(["fit", "spy", "--train", str(path), "-o", str(tmp_path / "m.pzk")]) == 0
    _check_no_leak(spies[0], sim, with_unlabelled=spy_class is UnlabelledSpy)


def test_cli_fit_on_a_catalog_with_a_split_column(sim, tmp_path, monkeypatch, capsys):
    path = tmp_path / "plain.parquet"
    sim.catalog.drop(columns=["domain"]).to_parquet(path)  # a plain catalog: no sims attributes
    spies = []
    monkeypatch.setattr(pzkit.registry, "make_estimator", lambda name, **p: spies.append(Spy(**p)) or spies[-1])
    monkeypatch.setattr(pzkit.persistence, "save", lambda model, path: None)
    args = ["fit", "spy", "--train", str(path), "--bands", "ugrizy", "--mag-column", "mag_{band}_hsc",
            "--err-column", "mag_err_{band}_hsc", "--nondetect", "limit", "--mag-limits",
            ",".join(f"{b}={v}" for b, v in sim.mag_limits.items()), "-o", str(tmp_path / "m.pzk")]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "--split" in err and len(err.strip().splitlines()) == 1
    assert main(args + ["--split", "train"]) == 0
    _check_no_leak(spies[-1], sim, with_unlabelled=False)


def test_companion_image_errors_name_the_file(sim, tmp_path):
    from pzkit.datasets import read_companion_images

    path = tmp_path / "s.hdf5"
    sim.write(path)
    with pytest.raises(DatasetError, match="s_images.hdf5.*does not exist"):
        read_companion_images(path, required=True)
    import h5py

    with h5py.File(tmp_path / "s_images.hdf5", "w") as fh:
        fh.create_dataset("images", data=np.zeros((3, 6, 8, 8), np.float32))
    with pytest.raises(DatasetError, match="has 3 rows but the catalog"):
        read_companion_images(path, ids=sim.catalog["id"].to_numpy())


def test_list_tags_shows_inputs(capsys):
    assert main(["list", "--tags"]) == 0
    out = capsys.readouterr().out
    line = next(line for line in out.splitlines() if line.startswith("mtl_nb"))
    assert "nb=narrow_bands*" in line and "photometry" in line
    assert "images" in next(line for line in out.splitlines() if line.startswith("bias_cnn"))


def test_version(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["--version"])
    assert exc.value.code == 0 and pzkit.__version__ in capsys.readouterr().out


def test_cli_fit_takes_side_inputs_from_named_columns(sim, tmp_path, monkeypatch, capsys):
    nb_cols = [f"mag_{b}" for b in sim.nb_bands]
    table = sim.catalog.drop(columns=["domain"]).join(sim.narrow_bands[nb_cols])
    path = tmp_path / "with_nb.parquet"
    table.to_parquet(path)

    class NeedsNB(Spy):
        _tags = {"required_fit_inputs": ("nb",)}

    spies = []
    monkeypatch.setattr(pzkit.registry, "make_estimator", lambda name, **p: spies.append(NeedsNB(**p)) or spies[-1])
    monkeypatch.setattr(pzkit.persistence, "save", lambda model, path: None)
    args = ["fit", "spy", "--train", str(path), "--split", "train", "--bands", "ugrizy", "--mag-column",
            "mag_{band}_hsc", "--err-column", "mag_err_{band}_hsc", "--nondetect", "limit", "--mag-limits",
            ",".join(f"{b}={v}" for b, v in sim.mag_limits.items()), "-o", str(tmp_path / "m.pzk")]
    assert main(args) == 2
    assert "--column narrow_bands=" in capsys.readouterr().err
    assert main(args + ["--column", "narrow_bands=mag_NB*", "--column", "mag=mag_i_hsc"]) == 0
    rows = (table["split"] == "train").to_numpy() & table["labelled"].to_numpy(dtype=bool)
    np.testing.assert_array_equal(spies[-1].seen_nb_, table.loc[rows, nb_cols].to_numpy())
    np.testing.assert_array_equal(spies[-1].seen_mag_, table.loc[rows, "mag_i_hsc"].to_numpy())
    assert main(args + ["--column", "images=mag_NB455"]) == 2
    assert "takes ['mag', 'narrow_bands']" in capsys.readouterr().err


def test_third_party_datasets_come_from_the_entry_point_group(sim, monkeypatch):
    calls = {}

    def loader(n=None, random_state=0, inputs=()):
        calls.update(n=n, random_state=random_state, inputs=inputs)
        return sims_dataset(sim, name="my_survey")

    class EntryPoint:
        name, value = "my_survey", "my_pkg:loader"

        def load(self):
            return loader

    monkeypatch.setattr(pzkit.datasets, "_entry_points", lambda: {"my_survey": EntryPoint()})
    assert "my_survey" in list_datasets()
    data = get_dataset("my_survey", n=123, random_state=4, inputs=("images",))
    assert data.name == "my_survey" and calls == {"n": 123, "random_state": 4, "inputs": ("images",)}
    monkeypatch.setattr(EntryPoint, "load", lambda self: (lambda **kw: "not a dataset"))
    with pytest.raises(DatasetError, match="returned str, not a pzkit Dataset"):
        get_dataset("my_survey")


def test_labelled_variants_of_one_plugin_get_the_dataset_grid(sim):
    data = sims_dataset(sim)
    report = pzkit.evaluate([("wide_bins", "train_z"), ("narrow_bins", "train_z")], dataset=data,
                            params={"narrow_bins": {"nzbins": 31}}, progress=False)
    wide, narrow = report.results
    assert wide["name"] == "wide_bins" and narrow["name"] == "narrow_bins"
    assert wide["params"]["nzbins"] == data.grid["nzbins"] and narrow["params"]["nzbins"] == 31
    assert wide["params"]["zmax"] == narrow["params"]["zmax"] == data.grid["zmax"]
    assert "wide_bins: 0.0–3.0, 301 points" in report.meta["grid"]


def test_any_catalog_with_a_split_column_is_a_dataset(dc2, tmp_path, capsys):
    import pandas as pd

    table = pd.concat([dc2.train.iloc[:600].assign(split="train"), dc2.validation.iloc[:400].assign(split="test")])
    table["labelled"] = np.arange(len(table)) % 3 != 0
    path = tmp_path / "mine.parquet"
    table.to_parquet(path)
    data = get_dataset(str(path), mag_limits=pzkit.datasets.DC2_MAG_LIMITS)
    assert len(data.train) == 600 and len(data.validation) == 400
    assert data.train["redshift"].isna().sum() == 200 and not data.validation["redshift"].isna().any()
    out = tmp_path / "report"
    assert main(["bench", "train_z", "--dataset", str(path), "--mag-limits", "dc2", "--nondetect", "limit", "--quiet",
                 "--out", str(out)]) == 0
    assert "| train_z |" in capsys.readouterr().out
    table.drop(columns=["split"]).to_parquet(tmp_path / "nosplit.parquet")
    with pytest.raises(DatasetError, match="no 'split' column"):
        get_dataset(str(tmp_path / "nosplit.parquet"))


@pytest.mark.parametrize("values, expected", [(["True", "false", "1"], [True, False, True]),
                                              ([1, 0, 1], [True, False, True]),
                                              ([b"False", b"TRUE", b"0"], [False, True, False])])
def test_labelled_columns_are_read_as_booleans(values, expected):
    from pzkit.datasets import labelled_mask

    np.testing.assert_array_equal(labelled_mask(np.array(values)), expected)


@pytest.mark.parametrize("values", [np.array(["yes", "no"]), np.array([0.0, np.nan]), np.array([2, 0])])
def test_unreadable_labelled_columns_are_refused(values):
    from pzkit.datasets import labelled_mask

    with pytest.raises(DatasetError, match="'labelled' must hold booleans"):
        labelled_mask(values)


def test_text_labelled_column_never_leaks(dc2, tmp_path):
    import pandas as pd

    table = pd.concat([dc2.train.iloc[:300].assign(split="train"), dc2.validation.iloc[:200].assign(split="test")])
    table["labelled"] = np.where(np.arange(len(table)) % 2 == 0, "True", "False")
    data = pzkit.datasets.from_catalog(table, mag_limits=pzkit.datasets.DC2_MAG_LIMITS)
    assert data.train["redshift"].isna().sum() == 150


def test_dataset_inputs_must_match_their_tables(sim):
    import dataclasses

    data = sims_dataset(sim)
    inputs = {**data.inputs, "train": {**data.inputs["train"], "mag": data.inputs["train"]["mag"][:-1]}}
    with pytest.raises(DatasetError, match="input 'mag' of the train split has"):
        dataclasses.replace(data, inputs=inputs)


def test_legacy_private_attributes_still_declare_tags():
    with pytest.warns(DeprecationWarning, match="_allows_unlabelled"):
        class Legacy(PhotoZEstimator):
            _allows_unlabelled = True

    assert Legacy.get_class_tag("unlabelled_rows") is True
    tags = Legacy().get_tags()
    tags["fit_inputs"]["x"] = "y"  # a copy: no estimator changes
    assert PhotoZEstimator.get_class_tags()["fit_inputs"] == {}
