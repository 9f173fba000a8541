import json

import pytest

import pzkit
from pzkit.harness import REPORT_SCHEMA


@pytest.fixture(scope="module")
def report(dc2):
    return pzkit.evaluate(["train_z"], dataset=dc2, n_train=2000, n_test=1500, random_state=3, progress=False)


def test_report_contents(report):
    (entry,) = report.results
    assert entry["name"] == "train_z" and "error" not in entry
    assert report.meta["dataset"]["n_train"] == 2000 and report.meta["dataset"]["n_test"] == 1500
    # the training n(z) has a calibrated PIT but no per-object information
    assert entry["pdf"]["pit_ks"] < 0.1
    assert entry["point"]["sigma_nmad"] > 0.1
    assert entry["cost"]["fit_seconds"] > 0 and entry["cost"]["peak_rss_mb"] > 0


def test_report_files(report, tmp_path):
    paths = report.write(tmp_path)
    data = json.loads(open(paths["json"]).read())
    assert data["schema"] == REPORT_SCHEMA
    assert data["meta"]["random_state"] == 3 and data["meta"]["machine"]["versions"]["pzkit"] == pzkit.__version__
    md = open(paths["markdown"]).read()
    assert "| train_z |" in md and "σ_NMAD" in md


def test_a_failing_estimator_is_reported_not_fatal(dc2):
    bad = pzkit.make_estimator("train_z", zmax=0.5)  # DC2 labels reach z~3: refused by fit
    rep = pzkit.evaluate([("too_narrow", bad), "train_z"], dataset=dc2, n_train=500, n_test=200, progress=False)
    assert "outside the grid" in rep.results[0]["error"]
    assert "error" not in rep.results[1]
