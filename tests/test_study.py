"""Multi-seed studies over the harness: per-seed subsets, summaries and paired differences, input controls."""

import numpy as np
import pytest

from pzkit.datasets import sims_dataset
from pzkit.sims import make
from pzkit.study import mean_sem, run_study, subset_metrics


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    cache = str(tmp_path_factory.mktemp("pzcache"))

    def build(seed):
        return sims_dataset(make("deep_wide", 500, random_state=seed, cache_dir=cache))

    return build


def test_mean_sem_by_hand():
    stats = mean_sem([1.0, 2.0, 3.0, None])
    assert stats["mean"] == 2.0 and stats["std"] == pytest.approx(1.0) and stats["n_seeds"] == 3
    assert stats["sem"] == pytest.approx(1.0 / np.sqrt(3))
    assert mean_sem([]) == {"mean": None, "std": None, "sem": None, "n_seeds": 0}


def test_subset_metrics_are_undefined_below_the_minimum_count():
    z = np.linspace(0.1, 1.0, 30)
    assert subset_metrics(z, z, np.arange(30) < 10) is None
    full = subset_metrics(z, z + 0.3 * (1 + z), np.ones(30, bool))
    assert full["n"] == 30 and full["outlier_rate"] == 1.0 and full["bias_median"] == pytest.approx(0.3)


def test_study_summarises_seeds_and_pairs_against_the_control(dataset):
    result = run_study([("coarse", "train_z"), ("control", "train_z"), ("same", "train_z")], dataset, seeds=[0, 1],
                       params={"coarse": {"nzbins": 7}},
                       subsets={"bright": lambda test: test["mag_i_hsc"].to_numpy() < 23}, control="control",
                       progress=False)
    assert [s["seed"] for s in result["seeds"]] == [0, 1]
    assert set(result["summary"]) == {"coarse", "control", "same"}
    assert result["summary"]["control"]["all"]["sigma_68"]["n_seeds"] == 2
    # an identical estimator changes nothing, seed by seed; a coarser grid changes something
    same = result["paired"]["same"]["all"]["sigma_68"]
    assert same["mean"] == 0.0 and not same["better_in_every_seed"]
    assert result["paired"]["coarse"]["all"]["sigma_68"]["mean"] != 0.0
    bright = result["seeds"][0]["subsets"]["control"]["bright"]
    assert bright is None or bright["n"] < result["seeds"][0]["subsets"]["control"]["all"]["n"]


def test_input_transforms_reach_one_variant_only(dataset, monkeypatch):
    import pzkit
    from pzkit.base import PhotoZEstimator

    seen = {}

    class NBSpy(PhotoZEstimator):
        _tags = {"fit_inputs": {"nb": "narrow_bands"}, "learns": False}

        def fit(self, X, y, nb=None):
            seen[self.label] = np.asarray(nb)
            return super().fit(X, y)

        def __init__(self, label="", zmin=0.0, zmax=3.0, nzbins=301, point_estimate="mode", random_state=None):
            super().__init__(zmin=zmin, zmax=zmax, nzbins=nzbins, point_estimate=point_estimate,
                             random_state=random_state)
            self.label = label

        def _fit(self, X, y):
            self.nz_ = np.histogram(y, bins=self.zgrid_)[0] + 1.0

        def _estimate_pdf(self, X):
            return self._hist_ensemble(np.tile(self.nz_, (X.shape[0], 1)))

    monkeypatch.setattr(pzkit.registry, "make_estimator", lambda name, **p: NBSpy(**p))

    def reverse_rows(nb, rng):
        return nb[::-1]

    result = run_study([("plain", "spy"), ("reversed", "spy")], dataset, seeds=[0],
                       params={"plain": {"label": "plain"}, "reversed": {"label": "reversed"}},
                       input_transforms={"reversed": {"narrow_bands": reverse_rows}}, progress=False)
    np.testing.assert_array_equal(seen["reversed"], seen["plain"][::-1])
    entries = {r["name"]: r for r in result["seeds"][0]["results"]}
    assert entries["reversed"]["input_transforms"] == {"narrow_bands": "reverse_rows"}
    assert "input_transforms" not in entries["plain"]


def test_a_study_resumes_from_its_finished_seeds(dataset, tmp_path, monkeypatch):
    import pzkit.harness

    first = run_study(["train_z"], dataset, seeds=[0, 1], partial_dir=str(tmp_path), progress=False)
    assert len(list(tmp_path.glob("study_*_seed*.json"))) == 2
    calls = []
    monkeypatch.setattr(pzkit.harness, "evaluate", lambda *a, **k: calls.append(k) or None)
    again = run_study(["train_z"], dataset, seeds=[0, 1], partial_dir=str(tmp_path), progress=False)
    assert calls == [] and again["summary"] == first["summary"]
    # another configuration is another study: nothing reused
    with pytest.raises(AttributeError):
        run_study(["train_z"], dataset, seeds=[0], params={"train_z": {"nzbins": 31}}, partial_dir=str(tmp_path),
                  progress=False)


def test_extra_metrics_see_each_fitted_model(dataset):
    import pzkit

    def grid_size(label, model, data, ens):
        return {"nzbins": int(model.zgrid_.size), "n_test": ens.npdf} if label == "coarse" else None

    def broken(label, model, data, ens):
        raise RuntimeError("paper metric failed")

    report = pzkit.evaluate([("coarse", "train_z"), "train_z"], dataset=dataset(0), params={"coarse": {"nzbins": 11}},
                            extra_metrics={"grid": grid_size, "broken": broken}, progress=False)
    coarse, plain = report.results
    assert coarse["extra"]["grid"] == {"nzbins": 11, "n_test": len(report.dataset.validation)}
    assert "grid" not in plain["extra"] and plain["extra"]["broken"]["error"].startswith("RuntimeError")
    assert coarse["point"]["sigma_nmad"] > 0  # the harness's own numbers are still there


def test_a_partial_file_of_another_configuration_is_refused(dataset, tmp_path):
    from pzkit.exceptions import OutputError

    run_study(["train_z"], dataset, seeds=[0], partial_dir=str(tmp_path), progress=False)
    (saved,) = tmp_path.glob("study_*_seed0.json")
    import json

    content = json.loads(saved.read_text())
    content["spec"]["n"] = 12345  # as if written by another configuration under the same name
    saved.write_text(json.dumps(content))
    with pytest.raises(OutputError, match="another study configuration"):
        run_study(["train_z"], dataset, seeds=[0], partial_dir=str(tmp_path), progress=False)
