"""A real ceci/RAIL pipeline on DC2: inform -> estimate -> RAIL's evaluator, for train_z and knn_local_linear.

Runs ``examples/rail_pipeline.py`` with the small setting (1,000 training / 500 test galaxies): it writes the DC2
inputs, runs ``ceci examples/rail_pipeline.yml`` (every stage a subprocess, as in production) and compares. This
test then checks, independently of the example's own comparison, that the metrics RAIL's evaluator reported equal
``pzkit.metrics`` on the ensembles the pipeline wrote, to 1e-6.
"""

import json
import os
import subprocess
import sys
import zipfile

import numpy as np
import pytest

pytest.importorskip("rail.core.stage", reason="the rail extra (pz-rail-base) is not installed")

import pzkit  # noqa: E402
from pzkit import metrics as M  # noqa: E402

pytestmark = pytest.mark.skipif("knn_local_linear" not in pzkit.list_estimators(),
                                reason="examples/rail_pipeline.yml uses the knn_local_linear plugin")
ESTIMATORS = {"train_z": "train_z", "knn": "knn_local_linear"}  # stage-name suffix -> pzkit entry point
EXAMPLE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "examples", "rail_pipeline.py")


def run_example(cwd, *args):
    """``python examples/rail_pipeline.py`` with the small setting, as tests/test_examples.py runs examples."""
    env = dict(os.environ, PZKIT_EXAMPLES_SMALL="1", MPLBACKEND="Agg")
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")  # ceci runs `python3 -m ...`
    return subprocess.run([sys.executable, EXAMPLE, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=600)


@pytest.fixture(scope="module")
def pipeline_run(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("rail_pipeline")
    done = run_example(cwd, "--out", "out")
    assert done.returncode == 0, f"rail_pipeline.py failed:\n{done.stdout[-6000:]}\n{done.stderr[-4000:]}"
    return cwd / "out", done.stdout


def test_ceci_ran_every_stage(pipeline_run):
    out, stdout = pipeline_run
    assert "$ " in stdout and "rail_pipeline.yml" in stdout  # the example ran ceci on the pipeline file
    for suffix, name in ESTIMATORS.items():
        for stage in ("inform", "estimate", "evaluate"):
            log = out / "logs" / f"{stage}_{suffix}.out"
            assert log.exists(), log
            assert "Stage complete" in log.read_text(), log
        model = out / f"model_{suffix}.pzk"
        assert zipfile.is_zipfile(model)  # written by pzkit.save, never a pickle
        fitted = pzkit.load(model)
        assert isinstance(fitted, pzkit.PhotoZPipeline) and pzkit.registry.name_of(fitted[-1]) == name


def test_rail_evaluator_metrics_equal_pzkit(pipeline_run):
    import qp
    import tables_io
    from qp.metrics.metrics import _calculate_grid_parameters

    out, _ = pipeline_run
    truth = tables_io.read(str(out / "dc2_test.hdf5"))["photometry"]
    z = np.asarray(truth["redshift"], dtype=np.float64)
    report = {}
    for suffix in ESTIMATORS:
        ens = qp.read(str(out / f"pz_{suffix}.hdf5"))
        assert ens.npdf == z.size == 500
        np.testing.assert_array_equal(np.ravel(ens.ancil["id"]), truth["id"])
        rail = {k: float(np.ravel(v)[0]) for k, v in tables_io.read(str(out / f"summary_{suffix}.hdf5")).items()}
        zmode = np.ravel(ens.ancil["zmode"])
        point = M.point_metrics(z, zmode)
        mine = {
            "cdeloss_redshift": M.cde_loss(ens, z, np.linspace(0.0, 2.5, 301)),  # SingleEvaluator's default grid
            "brier_redshift": M.brier_score(ens, z, _calculate_grid_parameters((0.0, 3.0), 0.01).grid_values),
            "point_bias_zmode_redshift": point["bias_median"],
            "point_stats_sigma_mad_zmode_redshift": point["sigma_nmad"],
            "point_stats_iqr_zmode_redshift": point["sigma_iqr"],
            "point_outlier_rate_zmode_redshift": point["outlier_rate_lsst"],
        }
        assert set(rail) == set(mine)
        report[suffix] = {k: abs(rail[k] - mine[k]) for k in mine}
        for key in mine:
            assert abs(rail[key] - mine[key]) <= 1e-6, (suffix, key, rail[key], mine[key])
    # the example's own comparison says the same
    with open(out / "comparison.json") as fh:
        example = json.load(fh)
    assert max(v["abs_diff"] for r in example.values() for v in r.values()) <= 1e-6
    # the real plugin learns something: it beats the training-set n(z) on σ_NMAD
    rail_knn = tables_io.read(str(out / "summary_knn.hdf5"))
    rail_tz = tables_io.read(str(out / "summary_train_z.hdf5"))
    assert float(np.ravel(rail_knn["point_stats_sigma_mad_zmode_redshift"])[0]) < float(
        np.ravel(rail_tz["point_stats_sigma_mad_zmode_redshift"])[0])
