import numpy as np
import pytest
import sklearn
from sklearn.model_selection import GridSearchCV, cross_val_predict

import pzkit
from pzkit import PhotoZEstimator


class SideInputEstimator(PhotoZEstimator):
    """Toy method with a per-object side input ``nb`` needed in fit only (like mtl_nb's narrow bands)."""

    def __init__(self, zmin=0.0, zmax=3.0, nzbins=301, point_estimate="mode", random_state=None):
        super().__init__(zmin=zmin, zmax=zmax, nzbins=nzbins, point_estimate=point_estimate,
                         random_state=random_state)

    def fit(self, X, y, nb=None):
        if nb is None:
            raise pzkit.InputError("SideInputEstimator.fit needs nb")
        return super().fit(X, y, nb=nb)

    def _fit(self, X, y, nb):
        self.nb_rows_ = len(nb)
        self.shift_ = float(np.mean(nb))

    def _estimate_pdf(self, X):
        g = self.zgrid_
        mu = np.clip(np.abs(X[:, 0]) + self.shift_, 0.1, 2.9)
        return self._interp_ensemble(np.exp(-0.5 * ((g[None] - mu[:, None]) / 0.1) ** 2))


def test_estimate_pdf_through_pipeline_carries_ids(dc2):
    pipe = pzkit.make_pipeline(dc2.features(id_column="id"), pzkit.make_estimator("train_z"))
    pipe.fit(dc2.train.iloc[:300], dc2.train["redshift"].iloc[:300])
    ens = pipe.estimate_pdf(dc2.validation.iloc[:20])
    assert ens.npdf == 20
    np.testing.assert_array_equal(ens.ancil["id"], dc2.validation["id"].iloc[:20].to_numpy())
    np.testing.assert_array_equal(pipe.predict(dc2.validation.iloc[:20]), ens.ancil["zmode"])


def test_grid_search_and_cross_val_predict(toy):
    X, y, _, _ = toy
    gs = GridSearchCV(pzkit.make_estimator("train_z"), {"nzbins": [31, 301]}, cv=3).fit(X, y)
    assert gs.best_params_["nzbins"] in (31, 301)
    assert np.all(np.isfinite(gs.cv_results_["mean_test_score"]))
    assert np.all(gs.cv_results_["mean_test_score"] <= 0)  # score is -σ_NMAD
    pred = cross_val_predict(pzkit.make_estimator("train_z"), X, y, cv=3)
    assert pred.shape == y.shape


def test_side_inputs_are_routed_through_pipeline(toy):
    X, y, Xt, _ = toy
    nb = np.full(len(y), 0.2)
    with sklearn.config_context(enable_metadata_routing=True):
        est = SideInputEstimator().set_fit_request(nb=True)
        pipe = pzkit.make_pipeline(sklearn.preprocessing.StandardScaler(), est)
        pipe.fit(X, y, nb=nb)
        assert pipe[-1].nb_rows_ == len(y) and pipe[-1].shift_ == pytest.approx(0.2)
        ens = pipe.estimate_pdf(Xt)
        assert ens.npdf == len(Xt)
        # cross_validate routes nb to each fold's fit
        from sklearn.model_selection import cross_validate

        res = cross_validate(pipe, X, y, params={"nb": nb}, cv=3)
        assert len(res["test_score"]) == 3


def test_missing_side_input_is_an_error(toy):
    X, y, _, _ = toy
    with pytest.raises(pzkit.InputError, match="needs nb"):
        SideInputEstimator().fit(X, y)
