"""pzkit estimators as RAIL stages, exercised in-process with RAIL's own classes (no mocks).

The ceci pipeline run (inform -> estimate -> RAIL's evaluator, as subprocesses) is tests/test_rail_pipeline.py.
"""

import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

pytest.importorskip("rail.core.stage", reason="the rail extra (pz-rail-base) is not installed")

import qp  # noqa: E402
import tables_io  # noqa: E402
from rail.core.data import DataStore, TableHandle  # noqa: E402

import pzkit  # noqa: E402
from pzkit import metrics as M  # noqa: E402
from pzkit.rail import PzkitEstimator, PzkitInformer, PzkitModelHandle, features_params, split_columns  # noqa: E402

INSTALLED = pzkit.list_estimators()
#: the "real" pzkit plugin next to train_z: knn_local_linear, else any other installed one
REAL = "knn_local_linear" if "knn_local_linear" in INSTALLED else next((n for n in INSTALLED if n != "train_z"), None)
ESTIMATORS = ["train_z"] + ([REAL] if REAL else [])
PARAMS = {"knn_local_linear": {"n_neighbors": 30}, "random_forest": {"n_estimators": 10, "random_state": 0}}
N_TRAIN, N_TEST = 600, 250


@pytest.fixture(scope="module")
def files(tmp_path_factory, dc2):
    """DC2 subsets as RAIL-style HDF5 tables (columns under the group ``photometry``)."""
    d = tmp_path_factory.mktemp("rail_data")
    rng = np.random.default_rng(0)
    out = {}
    for name, table, n in (("train", dc2.train, N_TRAIN), ("test", dc2.validation, N_TEST)):
        sub = table.iloc[np.sort(rng.choice(len(table), size=n, replace=False))].reset_index(drop=True)
        path = str(d / f"{name}.hdf5")
        tables_io.write({"photometry": {c: sub[c].to_numpy() for c in sub.columns}}, path)
        out[name], out[f"{name}_path"] = sub, path
    return out


@pytest.fixture(scope="module", autouse=True)
def rail_store():
    """RAIL keeps one global DataStore; let the tests reuse stage names."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(DataStore, "allow_overwrite", True)
        yield


@pytest.fixture(autouse=True)
def in_tmp_path(monkeypatch, tmp_path):
    """RAIL stages write their outputs into the working directory."""
    monkeypatch.chdir(tmp_path)


@pytest.fixture(scope="module")
def models(files, rail_store, tmp_path_factory):
    """One informed model file per estimator, shared by the tests that only estimate."""
    d = tmp_path_factory.mktemp("rail_models")
    cwd = os.getcwd()
    os.chdir(d)
    try:
        paths = {}
        for name in ESTIMATORS:
            inform(name, files)
            paths[name] = str(d / f"inform_{name}.pzk")
        return paths
    finally:
        os.chdir(cwd)


def as_rail(df):
    return {"photometry": {c: df[c].to_numpy() for c in df.columns}}


def inform(name, files, stage_name=None, **config):
    stage_name = stage_name or f"inform_{name}"
    stage = PzkitInformer.make_stage(name=stage_name, estimator=name, estimator_params=PARAMS.get(name, {}),
                                     hdf5_groupname="photometry", model=f"{stage_name}.pzk", **config)
    stage.inform(as_rail(files["train"]))
    return stage


def estimate(model, path, stage_name, chunk_size=10**6, **config):
    stage = PzkitEstimator.make_stage(name=stage_name, model=model, hdf5_groupname="photometry", id_col="id",
                                      chunk_size=chunk_size, **config)
    return stage.estimate(TableHandle(f"{stage_name}_input", path=path)).data


# --------------------------------------------------------------------------- discovery
def test_import_pzkit_does_not_import_rail_or_ceci():
    code = (
        "import sys, pzkit; pzkit.make_estimator('train_z'); pzkit.PhotometryFeatures()\n"
        "import pzkit.metrics, pzkit.scoring, pzkit.tables, pzkit.pipeline\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('rail', 'ceci'))\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_rail_discovers_the_stages():
    import rail.stages
    from ceci.stage import PipelineStage
    from rail.core import RailEnv

    assert "rail.pzkit" in RailEnv.list_rail_packages()
    rail.stages.import_and_attach_all(silent=True)  # RAIL's own discovery of every rail.* package
    assert rail.stages.PzkitInformer is PzkitInformer
    assert rail.stages.PzkitEstimator is PzkitEstimator
    assert "PzkitInformer" in RailEnv._stage_dict["CatInformer"]
    assert "PzkitEstimator" in RailEnv._stage_dict["CatEstimator"]
    # ceci finds them by name, as a pipeline file names them
    assert PipelineStage.get_stage("PzkitInformer", "rail.pzkit") is PzkitInformer
    cmd = PzkitEstimator.generate_command({"model": "m.pzk", "input": "in.hdf5"}, "cfg.yml", {"output": "o.hdf5"})
    assert cmd.startswith("python3 -m ceci rail.pzkit.stages.PzkitEstimator")


# --------------------------------------------------------------------------- inform / estimate
@pytest.mark.parametrize("name", ESTIMATORS)
def test_inform_writes_a_pzkit_model_and_estimate_matches_pzkit(name, files, tmp_path):
    stage = inform(name, files)
    path = tmp_path / f"inform_{name}.pzk"
    assert path.exists() and zipfile.is_zipfile(path)  # pzkit.save's format, not a pickle
    model = pzkit.load(path)
    assert isinstance(model, pzkit.PhotoZPipeline)
    assert pzkit.persistence.read_manifest(path)["plugins"][0]["name"] == name

    ens = estimate(stage.get_handle("model"), files["test_path"], f"estimate_{name}")
    assert isinstance(ens, qp.Ensemble) and ens.npdf == N_TEST
    for key in ("zmode", "zmedian", "zmean", "zstd", "id", "redshift"):
        assert key in ens.ancil, key
    np.testing.assert_array_equal(np.ravel(ens.ancil["id"]), files["test"]["id"].to_numpy())
    np.testing.assert_array_equal(np.ravel(ens.ancil["redshift"]), files["test"]["redshift"].to_numpy())

    # the same estimator fitted directly with pzkit gives the same PDFs
    direct = pzkit.make_pipeline(stage.make_features(), pzkit.make_estimator(name, **PARAMS.get(name, {})))
    direct.fit(files["train"], files["train"]["redshift"])
    ref = direct.estimate_pdf(files["test"])
    for key in ref.objdata:
        np.testing.assert_allclose(ens.objdata[key], ref.objdata[key], rtol=0, atol=1e-12)
    np.testing.assert_array_equal(np.ravel(ens.ancil["zmode"]), ref.ancil["zmode"])


@pytest.mark.parametrize("name", ESTIMATORS)
def test_chunked_estimation_equals_one_shot(name, files, models, monkeypatch):
    chunks = []
    original = PzkitEstimator._process_chunk

    def recording(self, start, end, data, first):
        chunks.append((start, end))
        return original(self, start, end, data, first)

    monkeypatch.setattr(PzkitEstimator, "_process_chunk", recording)
    chunked = estimate(models[name], files["test_path"], f"chunked_{name}", chunk_size=100)
    assert len(chunks) == -(-N_TEST // 100) and chunks[-1][1] == N_TEST
    chunks.clear()
    one = estimate(models[name], files["test_path"], f"one_{name}")
    assert chunks == [(0, N_TEST)]
    assert chunked.npdf == one.npdf == N_TEST
    for key in one.objdata:
        np.testing.assert_allclose(chunked.objdata[key], one.objdata[key], rtol=0, atol=1e-12)
    assert set(chunked.ancil) == set(one.ancil)
    for key in one.ancil:  # ids exactly; summaries to rounding (a matrix product over 100 vs 250 rows)
        a, b = np.ravel(chunked.ancil[key]), np.ravel(one.ancil[key])
        if a.dtype.kind == "f":
            np.testing.assert_allclose(a, b, rtol=0, atol=1e-12, err_msg=key)
        else:
            np.testing.assert_array_equal(a, b, err_msg=key)


def test_estimate_from_a_model_path_and_in_memory_tables(files, models):
    ens_file = estimate(models["train_z"], files["test_path"], "est_from_path")
    stage = PzkitEstimator.make_stage(name="est_mem", model=models["train_z"], hdf5_groupname="photometry",
                                      output_mode="return")
    ens_mem = stage.estimate(as_rail(files["test"])).data  # RAIL processes in-memory data as one chunk
    # the file was read back with qp.read, which normalises again and may move the last bit (pzkit.pdf)
    np.testing.assert_allclose(ens_mem.objdata["pdfs"], ens_file.objdata["pdfs"], rtol=1e-15, atol=0)


# --------------------------------------------------------------------------- RAIL's evaluators = pzkit.metrics
def test_rail_evaluators_report_pzkit_metrics(files, models):
    from qp.metrics.metrics import _calculate_grid_parameters
    from rail.core.data import QPOrTableHandle
    from rail.evaluation.evaluator import OldEvaluator
    from rail.evaluation.single_evaluator import SingleEvaluator

    estimate(models[ESTIMATORS[-1]], files["test_path"], "estimate_eval")
    ens = qp.read("output_estimate_eval.hdf5")  # the file RAIL wrote, as a pipeline's next stage reads it
    z = files["test"]["redshift"].to_numpy()

    single = SingleEvaluator.make_stage(
        name="single_eval", metrics=["cdeloss", "brier", "point_bias", "point_stats_sigma_mad",
                                     "point_stats_iqr", "point_outlier_rate"],
        point_estimates=["zmode"], truth_point_estimates=["redshift"], hdf5_groupname="photometry",
        force_exact=True)
    out = single.evaluate(QPOrTableHandle("ens_eval", path="output_estimate_eval.hdf5"),
                          QPOrTableHandle("truth_eval", path=files["test_path"]))
    rail = {k: float(np.ravel(v)[0]) for k, v in out["summary"].data.items()}
    zmode = np.ravel(ens.ancil["zmode"])
    point = M.point_metrics(z, zmode)
    expected = {
        "cdeloss_redshift": M.cde_loss(ens, z, np.linspace(0.0, 2.5, 301)),  # RAIL's default CDE grid
        "brier_redshift": M.brier_score(ens, z, _calculate_grid_parameters((0.0, 3.0), 0.01).grid_values),
        "point_bias_zmode_redshift": point["bias_median"],
        "point_stats_sigma_mad_zmode_redshift": point["sigma_nmad"],
        "point_stats_iqr_zmode_redshift": point["sigma_iqr"],
        "point_outlier_rate_zmode_redshift": point["outlier_rate_lsst"],
    }
    assert set(rail) == set(expected)
    for key, value in expected.items():
        assert abs(rail[key] - value) <= 1e-6, (key, rail[key], value)

    # RAIL's older evaluator stage reports the PIT tests, a CDE loss on its own grid and point metrics of the
    # mode it recomputes on that grid
    old = OldEvaluator.make_stage(name="old_eval", hdf5_groupname="photometry", zmin=0.0, zmax=3.0, nzbins=301)
    table = {k: float(np.ravel(v)[0]) for k, v in old.evaluate(ens, as_rail(files["test"])).data.items()}
    grid = np.linspace(0.0, 3.0, 302)
    pit = M.pit_stats(M.pit_values(ens, z))
    mode = np.squeeze(ens.mode(grid=grid))
    pm = M.point_metrics(z, mode)
    pairs = {
        "PIT_KS_stat": pit["ks"], "PIT_CvM_stat": pit["cvm"], "PIT_AD_stat": pit["ad"],
        "CDE_stat": M.cde_loss(ens, z, grid), "POINT_Bias": pm["bias_median"], "POINT_SigmaMAD": pm["sigma_nmad"],
        "POINT_SimgaIQR": pm["sigma_iqr"], "POINT_OutlierRate": pm["outlier_rate_lsst"],
    }
    for key, value in pairs.items():
        assert abs(table[key] - value) <= 1e-6, (key, table[key], value)


# --------------------------------------------------------------------------- configuration
def test_features_follow_rail_shared_parameters():
    from rail.core.common_params import SHARED_PARAMS

    params = features_params(SHARED_PARAMS["bands"], SHARED_PARAMS["err_bands"], SHARED_PARAMS["ref_band"],
                             SHARED_PARAMS["mag_limits"], SHARED_PARAMS["nondetect_val"])
    assert params["bands"] == list("ugrizy")
    assert params["mag_column"] == "mag_{band}_lsst" and params["err_column"] == "mag_err_{band}_lsst"
    assert params["ref_band"] == "i" and params["nondetect"] == "limit" and params["nondetect_value"] == 99.0
    assert params["mag_limits"] == pytest.approx(pzkit.datasets.DC2_MAG_LIMITS)

    # other surveys' column names (e.g. a RAIL catalog tag) map the same way
    labels, template = split_columns(["u_cModelMag", "g_cModelMag", "r_cModelMag"])
    assert labels == ["u", "g", "r"] and template == "{band}_cModelMag"
    assert split_columns(["HSC_g", "HSC_r"]) == (["g", "r"], "HSC_{band}")
    with pytest.raises(pzkit.InputError, match="pattern"):
        split_columns(["mag_u", "mag_u"])
    with pytest.raises(pzkit.InputError, match="unknown PhotometryFeatures"):
        features_params(["mag_u", "mag_g"], overrides={"colour": 1})
    # explicit PhotometryFeatures settings win
    params = features_params(["a", "b"], overrides={"bands": "gri", "mag_column": "{band}mag", "ref_band": "r"})
    assert params["bands"] == "gri" and params["mag_column"] == "{band}mag" and params["ref_band"] == "r"


def test_column_names_are_configurable(files):
    renamed = files["train"].rename(columns={f"mag_{b}_lsst": f"{b}_mag" for b in "ugrizy"})
    stage = PzkitInformer.make_stage(
        name="inform_renamed", estimator="train_z", hdf5_groupname="", model="renamed.pzk",
        bands=[f"{b}_mag" for b in "ugrizy"], ref_band="i_mag",
        mag_limits={f"{b}_mag": v for b, v in pzkit.datasets.DC2_MAG_LIMITS.items()}, redshift_col="redshift")
    stage.inform(renamed)
    features = pzkit.load("renamed.pzk").steps[0][1]
    assert features.mag_column == "{band}_mag" and features.ref_band == "i"
    with pytest.raises(KeyError, match="mag_u_lsst"):  # RAIL's default names are not in this table
        PzkitInformer.make_stage(name="inform_wrong", estimator="train_z", hdf5_groupname="",
                                 model="wrong.pzk").inform(renamed)


def test_configuration_errors_name_the_problem(files, models):
    with pytest.raises(ValueError, match="zmin"):
        PzkitInformer.make_stage(name="bad_grid", estimator="train_z", estimator_params={"zmin": 0.1},
                                 hdf5_groupname="photometry", model="bad.pzk").inform(as_rail(files["train"]))
    with pytest.raises(pzkit.PluginError, match="no_such_method"):
        PzkitInformer.make_stage(name="bad_name", estimator="no_such_method", hdf5_groupname="photometry",
                                 model="bad.pzk").inform(as_rail(files["train"]))
    with pytest.raises(ValueError, match="redshift grid"):
        estimate(models["train_z"], files["test_path"], "est_grid", nzbins=101)


def test_a_bare_estimator_model_gets_the_stage_features(files, tmp_path):
    features = pzkit.PhotometryFeatures(nondetect="limit", mag_limits=pzkit.datasets.DC2_MAG_LIMITS)
    est = pzkit.make_estimator("train_z").fit(features.fit_transform(files["train"]), files["train"]["redshift"])
    pzkit.save(est, tmp_path / "bare.pzk")
    ens = estimate(str(tmp_path / "bare.pzk"), files["test_path"], "est_bare")
    ref = est.estimate_pdf(features.transform(files["test"]))
    # read back with qp.read, which normalises again and may move the last bit (pzkit.pdf)
    np.testing.assert_allclose(ens.objdata["pdfs"], ref.objdata["pdfs"], rtol=1e-15, atol=0)


@pytest.mark.parametrize("routing", [False, True])
def test_side_inputs_reach_fit(files, monkeypatch, routing):
    import sklearn

    from pzkit import PhotoZEstimator

    class SideInput(PhotoZEstimator):
        def fit(self, X, y, nb=None):
            if nb is None:
                raise pzkit.InputError("needs nb")
            return super().fit(X, y, nb=nb)

        def _fit(self, X, y, nb):
            self.nb_shape_ = nb.shape

        def _estimate_pdf(self, X):
            return self._interp_ensemble(np.ones((X.shape[0], self.zgrid_.size)))

    monkeypatch.setattr(pzkit, "make_estimator", lambda name, **p: SideInput(**p))
    stage = PzkitInformer.make_stage(name="inform_side", estimator="side", hdf5_groupname="photometry",
                                     side_inputs={"nb": ["mag_err_u_lsst", "mag_err_g_lsst"]}, output_mode="return")
    with sklearn.config_context(enable_metadata_routing=routing):
        stage.inform(as_rail(files["train"]))
    assert stage.model.steps[-1][1].nb_shape_ == (N_TRAIN, 2)


def test_model_handle_reads_pzkit_model_files(models):
    assert PzkitModelHandle.suffix == "pzk" and models["train_z"].endswith(".pzk")
    assert isinstance(PzkitModelHandle("m", path=models["train_z"]).read(), pzkit.PhotoZPipeline)
