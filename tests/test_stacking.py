"""StackedPhotoZ, CalibratedPhotoZ and the out-of-fold machinery they share."""

import numpy as np
import pytest
from scipy.stats import norm

import pzkit
from pzkit.base import PhotoZEstimator
from pzkit.calibration import CalibratedPhotoZ
from pzkit.metrics import cde_loss, pit_stats, pit_values
from pzkit.model_selection import cross_val_pdf, make_folds, pdf_values_on_grid, trapezoid_weights
from pzkit.pdf import hist_ensemble
from pzkit.stacking import StackedPhotoZ, fit_pool_weights, pool_pdfs
from pzkit.testing import check_photoz_estimator, make_toy_catalog

ZGRID = np.linspace(0.0, 3.0, 301)


def gauss(mu, sigma, zgrid=ZGRID):
    return norm.pdf(zgrid[None, :], np.atleast_1d(mu)[:, None], np.atleast_1d(sigma)[:, None])


class GaussianGuess(PhotoZEstimator):
    """Test estimator: a Gaussian of fixed width centred on feature 0 (clipped to the grid); learns nothing."""

    def __init__(self, width=0.05, zmin=0.0, zmax=3.0, nzbins=301, point_estimate="mode", random_state=None):
        super().__init__(zmin=zmin, zmax=zmax, nzbins=nzbins, point_estimate=point_estimate,
                         random_state=random_state)
        self.width = width

    def _fit(self, X, y):
        self.n_seen_ = X.shape[0]

    def _estimate_pdf(self, X):
        return self._interp_ensemble(gauss(np.clip(X[:, 0], 0.1, 2.9), self.width, self.zgrid_))


class Memoriser(PhotoZEstimator):
    """Test estimator: perfect on the rows it was fitted on, the uniform PDF on any other row."""

    def _fit(self, X, y):
        self.rows_ = {tuple(np.round(x, 12)): z for x, z in zip(X, y)}

    def _estimate_pdf(self, X):
        out = np.ones((X.shape[0], self.zgrid_.size))
        for i, x in enumerate(X):
            z = self.rows_.get(tuple(np.round(x, 12)))
            if z is not None:
                out[i] = gauss(z, 0.005, self.zgrid_)[0] + 1e-9
        return self._interp_ensemble(out)


def noisy_guess_data(n, sigma, rng, outliers=0.0):
    z = rng.uniform(0.3, 2.5, n)
    guess = z + sigma * rng.standard_normal(n)
    bad = rng.random(n) < outliers
    guess[bad] = rng.uniform(0.1, 2.9, bad.sum())
    mag = rng.uniform(20.0, 25.0, n)
    return np.column_stack([guess, mag]), z


# --------------------------------------------------------------------------- pooling, by hand
def test_linear_pool_is_the_weighted_mixture():
    p = np.stack([gauss(1.0, 0.1), gauss(2.0, 0.1)])
    pooled = pool_pdfs(p, [0.25, 0.75], ZGRID)
    np.testing.assert_allclose(pooled, 0.25 * p[0] + 0.75 * p[1], rtol=1e-6)


def test_log_pool_of_two_gaussians_is_the_precision_weighted_gaussian():
    # N(1.0, 0.1) × N(1.3, 0.2): mean (1.0/0.01 + 1.3/0.04) / (1/0.01 + 1/0.04) = 1.06, σ² = 1/(100 + 25)
    p = np.stack([gauss(1.0, 0.1), gauss(1.3, 0.2)])
    pooled = pool_pdfs(p, [1.0, 1.0], ZGRID, pool="log", floor=1e-12)
    np.testing.assert_allclose(pooled, gauss(1.06, np.sqrt(1 / 125.0)), atol=2e-3 * pooled.max())


def test_fitted_weights_prefer_the_member_that_knows():
    rng = np.random.default_rng(0)
    z = rng.uniform(0.3, 2.5, 400)
    good, bad = gauss(z + 0.02 * rng.standard_normal(400), 0.03), gauss(rng.uniform(0.3, 2.5, 400), 0.03)
    values = np.stack([good, bad])
    for pool, scoring in (("linear", "cde_loss"), ("linear", "log_score"), ("log", "log_score")):
        w = fit_pool_weights(values, z, ZGRID, pool=pool, scoring=scoring)
        assert w[0] > 5 * w[1], (pool, scoring, w)


def test_hist_members_are_read_at_bin_centres_without_a_shift():
    centres = 0.5 * (ZGRID[1:] + ZGRID[:-1])
    ens = hist_ensemble(ZGRID, norm.pdf(centres, 1.2, 0.1)[None, :])
    values = pdf_values_on_grid(ens, ZGRID)
    assert ZGRID[np.argmax(values[0])] == pytest.approx(1.2)
    np.testing.assert_allclose(values[0] @ trapezoid_weights(ZGRID), 1.0, atol=1e-6)


# --------------------------------------------------------------------------- out-of-fold PDFs
def test_cross_val_pdf_never_shows_a_model_its_own_rows():
    X = np.random.default_rng(0).normal(size=(90, 3))
    y = np.random.default_rng(1).uniform(0.1, 2.5, 90)
    oof = cross_val_pdf(Memoriser(), X, y, cv=3, random_state=0)
    # every row is predicted by a clone that did not memorise it: the uniform PDF everywhere
    np.testing.assert_allclose(oof, 1.0 / 3.0, rtol=1e-9)


def test_integer_cv_shuffles_a_sorted_catalogue():
    X = np.arange(30.0)[:, None]
    folds = make_folds(3, X, X[:, 0], random_state=0)
    assert all(np.ptp(test) > 10 for _, test in folds)  # not three contiguous blocks
    assert sorted(np.concatenate([t for _, t in folds]).tolist()) == list(range(30))


def test_stack_weights_come_from_out_of_fold_pdfs():
    """A member that memorises its training rows would win an in-sample weight fit; out of fold it has 0 weight."""
    rng = np.random.default_rng(0)
    X, y = noisy_guess_data(300, 0.05, rng)
    stack = StackedPhotoZ([("memo", Memoriser()), ("guess", GaussianGuess(width=0.05))], cv=3, random_state=0)
    stack.fit(X, y)
    assert stack.weights_[1] > 0.95, stack.weights_
    assert stack.cv_scores_["stack"] <= min(stack.cv_scores_["memo"], stack.cv_scores_["guess"]) + 1e-9


# --------------------------------------------------------------------------- the stack as an estimator
def test_stack_beats_or_matches_its_best_member_on_held_out_data():
    X, y = make_toy_catalog(900, random_state=0)
    Xt, yt = make_toy_catalog(400, random_state=1)
    knn = pzkit.make_estimator("knn_local_linear", n_neighbors=20)
    rf = pzkit.make_estimator("random_forest", n_estimators=30, random_state=0)
    stack = StackedPhotoZ([("knn", knn), ("rf", rf)], cv=3, random_state=0).fit(X, y)
    zgrid = stack.zgrid_
    member = min(cde_loss(est.estimate_pdf(Xt), yt, zgrid) for est in stack.estimators_)
    assert cde_loss(stack.estimate_pdf(Xt), yt, zgrid) <= member + 0.05 * abs(member)


def test_stack_members_by_entry_point_name_and_nested_params():
    stack = StackedPhotoZ([("knn", "knn_local_linear"), ("rf", pzkit.make_estimator("random_forest"))])
    stack.set_params(rf__n_estimators=7)
    assert stack.get_params()["rf__n_estimators"] == 7
    X, y = make_toy_catalog(200)
    stack.set_params(knn=pzkit.make_estimator("knn_local_linear", n_neighbors=15), cv=2, random_state=0)
    stack.fit(X, y)
    assert stack.named_estimators_["knn"].n_neighbors == 15
    assert stack.named_estimators_["rf"].n_estimators == 7
    assert stack.estimators[1][1].get_params()["random_state"] is None  # the given members are never changed


def test_stack_grid_is_given_to_members():
    X, y = make_toy_catalog(200, zmax=1.8)
    stack = StackedPhotoZ([("a", "knn_local_linear"), ("b", "random_forest")], zmax=2.0, nzbins=201,
                          weights=[1, 1], random_state=0).fit(X, y)
    assert stack.zgrid_.size == 201 and stack.zgrid_[-1] == 2.0
    assert all(est.zgrid_.size == 201 for est in stack.estimators_)
    assert stack.weights_.tolist() == [0.5, 0.5]


def test_stack_in_a_pipeline_and_grid_search():
    from sklearn.model_selection import GridSearchCV
    from sklearn.preprocessing import StandardScaler

    X, y = make_toy_catalog(240)
    stack = StackedPhotoZ([("knn", pzkit.make_estimator("knn_local_linear", n_neighbors=15)),
                           ("rf", pzkit.make_estimator("random_forest", n_estimators=10))], cv=2, random_state=0)
    pipe = pzkit.make_pipeline(StandardScaler(), stack).fit(X, y)
    assert pipe.estimate_pdf(X[:5]).npdf == 5
    search = GridSearchCV(stack, {"pool": ["linear", "log"], "rf__max_depth": [None, 4]}, cv=2).fit(X, y)
    assert set(search.best_params_) == {"pool", "rf__max_depth"}


def test_saved_stack_records_its_members_plugins(tmp_path):
    X, y = make_toy_catalog(150)
    stack = StackedPhotoZ._conformance_instance().fit(X, y)
    pzkit.save(stack, tmp_path / "stack.pzk")
    names = {p["name"] for p in pzkit.persistence.read_manifest(tmp_path / "stack.pzk")["plugins"]}
    assert {"stacked", "knn_local_linear", "random_forest"} <= names
    loaded = pzkit.load(tmp_path / "stack.pzk")
    np.testing.assert_array_equal(loaded.predict(X[:20]), stack.predict(X[:20]))


@pytest.mark.parametrize("make, message", [
    (lambda: StackedPhotoZ([("rf", pzkit.make_estimator("random_forest"))]), "at least two members"),
    (lambda: StackedPhotoZ([("rf", pzkit.make_estimator("random_forest")),
                            ("knn", pzkit.make_estimator("knn_local_linear", zmax=4.0))]), "grids differ"),
    (lambda: StackedPhotoZ([("a", "random_forest"), ("a", "knn_local_linear")]), "unique"),
    (lambda: StackedPhotoZ([("a", "random_forest"), ("b", object())]), "not a pzkit estimator"),
    (lambda: StackedPhotoZ([("a", "random_forest"), ("b", "knn_local_linear")], pool="mean"), "pool"),
    (lambda: StackedPhotoZ([("a", "random_forest"), ("b", "knn_local_linear")], weights=[1, -1]), "weights"),
    (lambda: CalibratedPhotoZ("random_forest", magnitude_column="mag_i"), "magnitude_column 'mag_i'"),
    (lambda: CalibratedPhotoZ("random_forest", magnitude_column=9), "magnitude_column 9"),
    (lambda: CalibratedPhotoZ(), "estimator"),
])
def test_bad_input_gives_a_one_line_error(make, message):
    X, y = make_toy_catalog(60)
    with pytest.raises(pzkit.InputError, match=message) as info:
        make().fit(X, y)
    assert "\n" not in str(info.value)


def test_calibrated_magnitude_column_by_name_from_a_dataframe():
    import pandas as pd

    rng = np.random.default_rng(0)
    X, y = noisy_guess_data(600, 0.05, rng)
    frame = pd.DataFrame(X, columns=["guess", "mag_i"])
    cal = CalibratedPhotoZ(GaussianGuess(width=0.05), magnitude_column="mag_i", n_magnitude_bins=2, cv=3,
                           random_state=0).fit(frame, y)
    assert cal.magnitude_edges_.size == 1 and 21.5 < cal.magnitude_edges_[0] < 23.5


# --------------------------------------------------------------------------- recalibration
def test_recalibration_repairs_over_confident_pdfs_and_their_pit_edges():
    """PDFs 1.6× too narrow (DC2's kNN and forest are 1.2–1.5×), plus 4 % catastrophic outliers: PIT piles
    up at 0 and 1 until recalibrated."""
    rng = np.random.default_rng(0)
    X, y = noisy_guess_data(6000, 0.08, rng, outliers=0.04)
    Xt, yt = noisy_guess_data(6000, 0.08, np.random.default_rng(1), outliers=0.04)
    raw = GaussianGuess(width=0.05).fit(X, y)
    cal = CalibratedPhotoZ(GaussianGuess(width=0.05), cv=3, random_state=0).fit(X, y)
    before = pit_stats(pit_values(raw.estimate_pdf(Xt), yt))
    after = pit_stats(pit_values(cal.estimate_pdf(Xt), yt))
    assert before["ks"] > 0.1 and before["edge_low"] > 3
    assert after["ks"] < 0.03, after
    assert 1 / 1.3 < after["edge_low"] < 1.3 and 1 / 1.3 < after["edge_high"] < 1.3, after
    assert 0.0 < cal.tail_weight_ < 0.2
    # the width comes out near the true scatter 0.08: the central 68 % interval of a recalibrated PDF
    p = pdf_values_on_grid(cal.estimate_pdf(Xt[:200]), cal.zgrid_)
    cdf = np.cumsum(p * trapezoid_weights(cal.zgrid_), axis=1)
    width = np.median([np.interp(0.84, c, cal.zgrid_) - np.interp(0.16, c, cal.zgrid_) for c in cdf]) / 2
    assert 0.065 < width < 0.1, width


def test_recalibration_by_magnitude_broadens_faint_objects_more():
    rng = np.random.default_rng(0)
    z = rng.uniform(0.3, 2.5, 6000)
    mag = rng.uniform(20.0, 25.0, 6000)
    sigma = np.where(mag < 22.5, 0.02, 0.08)  # faint objects scatter 4× more than the model believes
    X = np.column_stack([z + sigma * rng.standard_normal(6000), mag])
    cal = CalibratedPhotoZ(GaussianGuess(width=0.02), cv=3, magnitude_column=1, n_magnitude_bins=2,
                           random_state=0).fit(X, z)
    bright, faint = cal.pit_density_
    assert faint[0] > 3 * bright[0] and faint[-1] > 3 * bright[-1]  # edge excess only where the PDFs are too narrow


def test_conformance_of_the_calibrated_estimator():
    check_photoz_estimator(CalibratedPhotoZ._conformance_instance())


def test_calibrated_reuses_the_estimator_pdfs_on_the_grid():
    X, y = noisy_guess_data(300, 0.05, np.random.default_rng(0))
    cal = CalibratedPhotoZ(GaussianGuess(width=0.05), cv=3, tail_weight=None, n_pit_bins=10, random_state=0)
    cal.fit(X, y)
    flat = CalibratedPhotoZ(GaussianGuess(width=0.05), cv=3, tail_weight=None, n_pit_bins=10, random_state=0)
    flat.fit(X, y).pit_density_[:] = 1.0  # a uniform N leaves every PDF as it was
    ref = GaussianGuess(width=0.05).fit(X, y).estimate_pdf(X[:10])
    np.testing.assert_allclose(pdf_values_on_grid(flat.estimate_pdf(X[:10]), flat.zgrid_),
                               pdf_values_on_grid(ref, flat.zgrid_) /
                               (pdf_values_on_grid(ref, flat.zgrid_) @ trapezoid_weights(flat.zgrid_))[:, None],
                               rtol=1e-9)


# --------------------------------------------------------------------------- RAIL
def test_stack_as_a_rail_stage(dc2, tmp_path, monkeypatch):
    pytest.importorskip("rail.core.stage", reason="the rail extra (pz-rail-base) is not installed")
    from rail.core.data import DataStore

    from pzkit.rail import PzkitInformer

    monkeypatch.setattr(DataStore, "allow_overwrite", True)
    monkeypatch.chdir(tmp_path)
    train = dc2.train.iloc[:400].reset_index(drop=True)
    stage = PzkitInformer.make_stage(
        name="inform_stacked", estimator="stacked", hdf5_groupname="photometry", model="stacked.pzk",
        estimator_params={"estimators": [["knn", "knn_local_linear"], ["rf", "random_forest"]], "cv": 2,
                          "random_state": 0})
    stage.inform({"photometry": {c: train[c].to_numpy() for c in train.columns}})
    model = pzkit.load(tmp_path / "stacked.pzk")
    assert isinstance(model.steps[-1][1], StackedPhotoZ)
    assert model.steps[-1][1].weights_.shape == (2,)


def test_harness_scores_meta_estimators_next_to_their_members():
    stack = StackedPhotoZ._conformance_instance()
    cal = CalibratedPhotoZ(pzkit.make_estimator("random_forest", n_estimators=10), cv=2, random_state=0)
    report = pzkit.evaluate([("stack", stack), ("calibrated_rf", cal), "random_forest"], dataset="dc2",
                            n_train=400, n_test=300, progress=False,
                            params={"random_forest": {"n_estimators": 10}})
    rows = {r["name"]: r for r in report.results}
    assert not any("error" in r for r in rows.values()), rows
    for r in rows.values():
        assert {"pit_edge_low", "pit_edge_high"} <= set(r["pdf"])


def test_a_calibrated_stack_takes_the_members_grid():
    X, y = make_toy_catalog(240)
    stack = StackedPhotoZ._conformance_instance().set_params(pool="log", weights=[1, 1])
    assert stack.zmin is None and stack.resolved_grid() == (0.0, 3.0, 301)
    cal = CalibratedPhotoZ(stack, cv=2, random_state=0).fit(X, y)
    assert cal.zgrid_.size == 301 and cal.estimator_.zgrid_.size == 301


def test_bench_scores_a_calibrated_variant_next_to_its_estimator(tmp_path, capsys):
    from pzkit.cli import main

    rc = main(["bench", "random_forest", "--calibrate", "random_forest", "--param", "random_forest:n_estimators=10",
               "--n-train", "400", "--n-test", "300", "--quiet", "--out", str(tmp_path)])
    assert rc == 0
    import json

    rows = {r["name"]: r for r in json.loads((tmp_path / "report.json").read_text())["results"]}
    assert set(rows) == {"random_forest", "calibrated_random_forest"}
    assert rows["calibrated_random_forest"]["params"]["estimator"].startswith("RandomForestPZ(")
    with pytest.raises(pzkit.InputError, match="calibrate"):
        pzkit.evaluate(["random_forest"], calibrate=["knn"], n_train=100, n_test=100, progress=False)


def test_parallel_member_fits_give_the_same_stack():
    X, y = make_toy_catalog(300)
    one = StackedPhotoZ._conformance_instance().fit(X, y)
    two = StackedPhotoZ._conformance_instance().set_params(n_jobs=2).fit(X, y)
    np.testing.assert_array_equal(one.weights_, two.weights_)
    np.testing.assert_array_equal(one.predict(X[:50]), two.predict(X[:50]))
