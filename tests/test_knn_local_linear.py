"""Unit tests of the ``knn_local_linear`` plugin: hand-checkable fits, clipping, flags, errors, learning."""

import numpy as np
import pytest

import pzkit
from pzkit.exceptions import InputError

knn = pytest.importorskip("pzkit_knn_local_linear")
KNNLocalLinear = knn.KNNLocalLinear
local_linear_fit = knn.local_linear_fit


def _plane(n=3000, d=3, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.uniform(-1.0, 1.0, (n, d))
    grad = np.array([0.10, 0.20, -0.05])[:d]
    y = 0.8 + X @ grad
    return X, y, grad


# ---------------------------------------------------------------------------------- the batched fit itself
def test_local_linear_fit_recovers_exact_linear_relation():
    rng = np.random.default_rng(1)
    n, k, d = 6, 30, 3
    D = rng.normal(size=(n, k, d))
    c0 = rng.uniform(0.2, 2.0, n)
    grad = rng.normal(size=(n, d))
    z = c0[:, None] + np.einsum("nkd,nd->nk", D, grad)
    w0 = rng.uniform(0.1, 1.0, (n, k))
    coef, resid, keep, scatter = local_linear_fit(D, z, w0, clip_sigma=2.0, max_clip_iter=5)
    np.testing.assert_allclose(coef[:, 0], c0, atol=1e-7)
    np.testing.assert_allclose(coef[:, 1:], grad, atol=1e-7)
    np.testing.assert_allclose(resid, 0.0, atol=1e-7)
    assert keep.all(), "an exact relation must not lose neighbours to the clipping"
    assert np.all(scatter < 1e-9)


def test_clipping_drops_a_planted_outlier():
    rng = np.random.default_rng(2)
    n, k, d = 4, 25, 2
    D = rng.normal(size=(n, k, d))
    z = 1.0 + D @ np.array([0.3, -0.1])
    z_bad = z.copy()
    z_bad[:, 7] += 0.8  # one catastrophic neighbour per query
    w0 = np.ones((n, k))
    coef_noclip, *_ = local_linear_fit(D, z_bad, w0, clip_sigma=None)
    assert np.all(np.abs(coef_noclip[:, 0] - 1.0) > 1e-3), "the outlier should bias the unclipped fit"
    coef, resid, keep, scatter = local_linear_fit(D, z_bad, w0, clip_sigma=2.0, max_clip_iter=5)
    assert not keep[:, 7].any(), "the planted outlier was not clipped"
    assert keep[:, np.arange(k) != 7].all(), "good neighbours were clipped"
    np.testing.assert_allclose(coef[:, 0], 1.0, atol=1e-7)
    np.testing.assert_allclose(resid[:, 7], 0.8, atol=1e-7)  # residuals are reported for clipped ones too


def test_degree_zero_is_the_weighted_mean():
    rng = np.random.default_rng(3)
    z = rng.uniform(0, 1, (3, 10))
    w0 = rng.uniform(0.5, 1, (3, 10))
    coef, *_ = local_linear_fit(np.zeros((3, 10, 2)), z, w0, clip_sigma=None, degree=0)
    np.testing.assert_allclose(coef[:, 0], (w0 * z).sum(1) / w0.sum(1), rtol=1e-9)


# ---------------------------------------------------------------------------------- the estimator
def test_estimator_recovers_a_plane_and_flags_inside():
    X, y, _ = _plane()
    est = KNNLocalLinear(n_neighbors=40).fit(X, y)
    Xq = np.array([[0.0, 0.0, 0.0], [0.3, -0.2, 0.5]])
    fit = est.neighbour_fit(Xq)
    truth = 0.8 + Xq @ np.array([0.10, 0.20, -0.05])
    np.testing.assert_allclose(fit["zfit"], truth, atol=1e-7)
    assert fit["nn_is_inside"].all()
    assert not fit["nn_fallback"].any()
    assert np.all(fit["zerr"] < 1e-9)
    assert np.all(fit["nn_count"] == 40)
    ens = est.estimate_pdf(Xq)
    # the PDF peaks on the grid point nearest the truth (grid step 0.01)
    assert np.all(np.abs(ens.ancil["zmode"] - truth) <= 0.005 + 1e-9)
    for key in ("zfit", "zerr", "nn_count", "nn_avg_z", "nn_is_inside", "nn_fallback"):
        assert np.asarray(ens.ancil[key]).shape == (2,), key


def test_query_outside_the_neighbours_box_is_flagged_and_can_fall_back():
    X, y, grad = _plane()
    Xq = np.array([[0.0, 0.0, 0.0], [1.02, 0.0, 0.0]])  # the second lies just beyond the training range in x1
    flagged = KNNLocalLinear(n_neighbors=30).fit(X, y).neighbour_fit(Xq)
    assert flagged["nn_is_inside"].tolist() == [True, False]
    # default outside="fit": the linear fit extrapolates (SDSS only flags it) -- exact on a plane
    np.testing.assert_allclose(flagged["zfit"], 0.8 + Xq @ grad, atol=1e-7)
    assert not flagged["nn_fallback"].any()
    fallback = KNNLocalLinear(n_neighbors=30, outside="mean").fit(X, y).neighbour_fit(Xq)
    assert fallback["nn_fallback"].tolist() == [False, True]
    assert fallback["zfit"][1] < 0.8 + 1.02 * grad[0]  # the neighbours' mean lies inside their range


def test_far_extrapolation_falls_back_to_the_neighbours_mean():
    X, y, grad = _plane()
    fit = KNNLocalLinear(n_neighbors=30).fit(X, y).neighbour_fit(np.array([[3.0, 0.0, 0.0]]))
    assert not fit["nn_is_inside"][0]
    # the fit (0.8 + 3 * 0.1 = 1.1) would leave the neighbours' redshift range: the clipped mean is used
    assert fit["nn_fallback"][0]
    assert 0.8 < fit["zfit"][0] < 1.0


def test_fit_outside_the_neighbours_redshift_range_falls_back():
    rng = np.random.default_rng(4)
    X = rng.uniform(-1, 1, (500, 2))
    y = rng.uniform(0.5, 0.6, 500)  # no relation: a linear fit far from the data extrapolates noise
    fit = KNNLocalLinear(n_neighbors=20).fit(X, y).neighbour_fit(np.array([[40.0, -40.0]]))
    assert fit["nn_fallback"][0]
    assert 0.5 <= fit["zfit"][0] <= 0.6


def test_too_many_neighbours_is_a_clear_error():
    X, y, _ = _plane(n=50)
    with pytest.raises(InputError, match="n_neighbors = 100 is larger than the training set"):
        KNNLocalLinear(n_neighbors=100).fit(X, y)
    for bad in (0, -3, 2.5, "100"):
        with pytest.raises(InputError, match="n_neighbors"):
            KNNLocalLinear(n_neighbors=bad).fit(X, y)
    KNNLocalLinear(n_neighbors=50).fit(X, y)  # k == n is allowed


@pytest.mark.parametrize("param,value", [("scale", "minmax"), ("weights", "gaussian"), ("outside", "drop"),
                                         ("algorithm", "brute"), ("clip_sigma", -1.0), ("bandwidth", -0.1),
                                         ("chunk_size", 0)])
def test_bad_parameters_raise(param, value):
    X, y, _ = _plane(n=200)
    with pytest.raises(InputError, match=param):
        KNNLocalLinear(n_neighbors=10, **{param: value}).fit(X, y)


def test_nan_and_inf_queries_raise():
    X, y, _ = _plane(n=300)
    est = KNNLocalLinear(n_neighbors=20).fit(X, y)
    for bad in (np.nan, np.inf):
        Xq = np.zeros((3, 3))
        Xq[1, 2] = bad
        with pytest.raises(InputError):
            est.estimate_pdf(Xq)
        with pytest.raises(InputError):
            est.predict(Xq)
        with pytest.raises(InputError):
            est.neighbour_fit(Xq)


def test_sklearn_trees_give_the_same_answer_as_ckdtree():
    X, z = pzkit.testing.make_toy_catalog(700, random_state=5)
    a = KNNLocalLinear(n_neighbors=40).fit(X[:500], z[:500])
    b = KNNLocalLinear(n_neighbors=40, algorithm="kd_tree").fit(X[:500], z[:500])
    c = KNNLocalLinear(n_neighbors=40, algorithm="ball_tree", n_jobs=2).fit(X[:500], z[:500])
    ya = a.estimate_pdf(X[500:]).objdata["yvals"]
    np.testing.assert_allclose(b.estimate_pdf(X[500:]).objdata["yvals"], ya, rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(c.estimate_pdf(X[500:]).objdata["yvals"], ya, rtol=1e-7, atol=1e-10)


def test_chunking_and_threads_do_not_change_the_output():
    X, z = pzkit.testing.make_toy_catalog(700, random_state=6)
    ref = KNNLocalLinear(n_neighbors=40).fit(X[:500], z[:500]).estimate_pdf(X[500:])
    other = KNNLocalLinear(n_neighbors=40, chunk_size=17, n_jobs=2).fit(X[:500], z[:500]).estimate_pdf(X[500:])
    np.testing.assert_allclose(other.objdata["yvals"], ref.objdata["yvals"], rtol=1e-7, atol=1e-10)
    np.testing.assert_array_equal(other.ancil["nn_is_inside"], ref.ancil["nn_is_inside"])


@pytest.mark.parametrize("algorithm, tree_type", [("ckdtree", "cKDTree"), ("kd_tree", "KDTree"),
                                                   ("ball_tree", "BallTree")])
def test_save_load_rebuilds_the_tree(tmp_path, algorithm, tree_type):
    X, z = pzkit.testing.make_toy_catalog(600, random_state=7)
    est = KNNLocalLinear(n_neighbors=30, algorithm=algorithm).fit(X[:400], z[:400])
    assert "tree_" not in est.__getstate__()  # derived state: not in the saved model
    path = tmp_path / "knn.pzk"
    pzkit.save(est, str(path))
    loaded = pzkit.load(str(path))
    assert type(loaded.tree_).__name__ == tree_type
    np.testing.assert_array_equal(loaded.predict(X[400:]), est.predict(X[400:]))


def test_ensemble_with_flags_can_be_written_and_read(tmp_path):
    import qp

    X, z = pzkit.testing.make_toy_catalog(400, random_state=8)
    ens = KNNLocalLinear(n_neighbors=30).fit(X[:300], z[:300]).estimate_pdf(X[300:], ids=np.arange(100))
    path = str(tmp_path / "pdfs.hdf5")
    ens.write_to(path)
    back = qp.read(path)
    np.testing.assert_array_equal(np.ravel(back.ancil["nn_is_inside"]).astype(bool), ens.ancil["nn_is_inside"])
    np.testing.assert_allclose(back.objdata["yvals"], ens.objdata["yvals"])


def test_pdf_is_the_shifted_neighbours_kernel_density():
    """With uniform weights, no clipping and a fixed width, the PDF is the KDE of c0 + residuals."""
    rng = np.random.default_rng(9)
    X = rng.uniform(-1, 1, (400, 2))
    y = 1.0 + 0.2 * X[:, 0] + rng.normal(0, 0.05, 400)
    est = KNNLocalLinear(n_neighbors=50, weights="uniform", clip_sigma=None, bandwidth=0.02,
                         bandwidth_scatter=0.0).fit(X, y)
    xq = np.array([[0.1, -0.3]])
    ens = est.estimate_pdf(xq)
    fit = est.neighbour_fit(xq)
    _, idx = est.tree_.query(xq / est.scale_, k=50)
    D = est.X_train_[idx[0]] - xq[0] / est.scale_
    A = np.c_[np.ones(50), D]
    coef = np.linalg.lstsq(A, y[idx[0]], rcond=None)[0]
    assert fit["zfit"][0] == pytest.approx(coef[0], abs=1e-10)
    pts = coef[0] + (y[idx[0]] - A @ coef)  # = z_j + c·(x_q − x_j)
    g = est.zgrid_
    h = 0.02 * (1.0 + coef[0])
    kde = np.exp(-0.5 * ((g[:, None] - pts[None, :]) / h) ** 2).sum(axis=1)
    kde /= np.trapezoid(kde, g)
    np.testing.assert_allclose(np.atleast_2d(ens.objdata["yvals"])[0], kde, atol=0.02 * kde.max())


def test_learns_on_toy_data_and_beats_the_training_nz():
    from pzkit.metrics import cde_loss, sigma_nmad
    from pzkit_train_z import TrainZ

    X, z = pzkit.testing.make_toy_catalog(3000, random_state=10)
    knn_est = KNNLocalLinear().fit(X[:2000], z[:2000])
    floor = TrainZ().fit(X[:2000], z[:2000])
    zq = z[2000:]
    assert sigma_nmad(zq, knn_est.predict(X[2000:])) < 0.2 * sigma_nmad(zq, floor.predict(X[2000:]))
    assert cde_loss(knn_est.estimate_pdf(X[2000:]), zq, knn_est.zgrid_) < cde_loss(
        floor.estimate_pdf(X[2000:]), zq, floor.zgrid_) - 2.0
    # the local linear fit beats a plain neighbour mean on a smooth relation
    mean_only = knn_est.neighbour_fit(X[2000:])["nn_avg_z"]
    assert sigma_nmad(zq, knn_est.neighbour_fit(X[2000:])["zfit"]) < sigma_nmad(zq, mean_only)
