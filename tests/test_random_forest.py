"""Unit tests of the ``random_forest`` plugin: the forest density on hand-checkable forests, memory, errors,
learning."""

import numpy as np
import pytest

import pzkit
from pzkit.exceptions import InputError

rf = pytest.importorskip("pzkit_random_forest")
RandomForestPZ = rf.RandomForestPZ


def _two_leaves():
    """1-D data a depth-1 tree splits at x = 0: z = 0.5 on the left, z in {2.0, 2.2} on the right."""
    X = np.r_[np.linspace(-2, -1, 10), np.linspace(1, 2, 10)][:, None]
    y = np.r_[np.full(10, 0.5), np.tile([2.0, 2.2], 5)]
    return X, y


def _stump(**kw):
    params = dict(n_estimators=1, bootstrap=False, max_depth=1, bandwidth=0.0, spread=1.0, random_state=0)
    params.update(kw)
    return RandomForestPZ(**params)


def test_density_is_the_leaf_redshift_distribution():
    X, y = _two_leaves()
    est = _stump().fit(X, y)
    ens = est.estimate_pdf(np.array([[1.5], [-1.5]]))
    vals = np.atleast_2d(ens.objdata["yvals"])
    g = est.zgrid_
    right, left = vals
    # right leaf: half the mass on z = 2.0 and half on z = 2.2, nothing elsewhere
    assert set(np.flatnonzero(right > 1e-9)) == {int(np.argmin(np.abs(g - 2.0))), int(np.argmin(np.abs(g - 2.2)))}
    assert right[np.argmin(np.abs(g - 2.0))] == pytest.approx(right[np.argmin(np.abs(g - 2.2))])
    assert np.flatnonzero(left > 1e-9).tolist() == [int(np.argmin(np.abs(g - 0.5)))]
    np.testing.assert_allclose(ens.ancil["zforest"], [2.1, 0.5])
    np.testing.assert_allclose(ens.ancil["zforest_std"], [0.0, 0.0])
    np.testing.assert_allclose(ens.ancil["zmean"], [2.1, 0.5], atol=1e-9)


def test_spread_shrinks_the_leaf_distribution_about_its_mean():
    X, y = _two_leaves()
    est = _stump(spread=0.5).fit(X, y)
    row = np.atleast_2d(est.estimate_pdf(np.array([[1.5]])).objdata["yvals"])[0]
    g = est.zgrid_
    # 2.0 and 2.2 move to 2.1 -/+ 0.05 = 2.05 and 2.15; mean and symmetry are kept
    assert set(np.flatnonzero(row > 1e-9)) == {int(np.argmin(np.abs(g - 2.05))), int(np.argmin(np.abs(g - 2.15)))}
    assert est.predict(np.array([[1.5]]), ) in (pytest.approx(2.05), pytest.approx(2.15))
    est.set_params(point_estimate="mean")
    assert est.predict(np.array([[1.5]]))[0] == pytest.approx(2.1)


def test_weights_average_over_trees():
    """Two stumps on different features: the density is the average of the two leaves' distributions."""
    rng = np.random.default_rng(0)
    X = rng.uniform(-1, 1, (400, 2))
    y = 1.0 + 0.5 * (X[:, 0] > 0) + 0.25 * (X[:, 1] > 0)
    est = RandomForestPZ(n_estimators=2, bootstrap=False, max_depth=1, max_features=1, bandwidth=0.0, spread=1.0,
                         random_state=3).fit(X, y)
    xq = np.array([[0.5, 0.5]])
    dens = np.atleast_2d(est.estimate_pdf(xq).objdata["yvals"])[0]
    # hand computation of Meinshausen's weights from the two fitted stumps
    leaves = est.forest_.apply(X)
    qleaf = est.forest_.apply(xq)[0]
    w = np.zeros(len(y))
    for t in range(2):
        same = leaves[:, t] == qleaf[t]
        w[same] += 1.0 / same.sum() / 2
    expected = np.zeros_like(dens)
    for value in np.unique(y):
        expected[np.argmin(np.abs(est.zgrid_ - value))] += w[y == value].sum()
    expected /= np.trapezoid(expected, est.zgrid_)
    np.testing.assert_allclose(dens, expected, atol=1e-5)


def test_leaf_distributions_are_normalised_and_zforest_is_the_forest_mean():
    X, z = pzkit.testing.make_toy_catalog(600, random_state=1)
    est = RandomForestPZ(n_estimators=15, random_state=0).fit(X[:400], z[:400])
    np.testing.assert_allclose(np.asarray(est.leaf_pdf_.sum(axis=1)).ravel(), 1.0, rtol=1e-5)
    ens = est.estimate_pdf(X[400:])
    np.testing.assert_allclose(ens.ancil["zforest"], est.forest_.predict(X[400:]), rtol=1e-10)
    assert np.all(ens.ancil["zforest_std"] >= 0)


def test_memory_shrinks_with_max_samples_and_min_samples_leaf():
    X, z = pzkit.testing.make_toy_catalog(3000, random_state=2)
    full = RandomForestPZ(n_estimators=10, random_state=0).fit(X, z)
    small = RandomForestPZ(n_estimators=10, random_state=0, max_samples=0.2, min_samples_leaf=5).fit(X, z)
    assert small.model_nbytes_ < 0.5 * full.model_nbytes_
    # the documented estimate: ≈ T·(100·s/m + 24) bytes per training row
    per_row = full.model_nbytes_ / (10 * 3000)
    assert 50 < per_row < 200, per_row


def test_n_jobs_and_chunking_do_not_change_the_output():
    X, z = pzkit.testing.make_toy_catalog(700, random_state=3)
    a = RandomForestPZ(n_estimators=12, random_state=5).fit(X[:500], z[:500]).estimate_pdf(X[500:])
    b = RandomForestPZ(n_estimators=12, random_state=5, n_jobs=2, chunk_size=33).fit(X[:500], z[:500])
    np.testing.assert_allclose(b.estimate_pdf(X[500:]).objdata["yvals"], a.objdata["yvals"], rtol=1e-6, atol=1e-10)


@pytest.mark.parametrize("param,value", [("bandwidth", -0.01), ("spread", 0.0), ("spread", 1.5),
                                         ("n_estimators", 0), ("max_features", "everything"), ("chunk_size", 0)])
def test_bad_parameters_raise(param, value):
    X, z = pzkit.testing.make_toy_catalog(100, random_state=4)
    with pytest.raises(InputError, match=param):
        RandomForestPZ(**{"n_estimators": 3, param: value}).fit(X, z)


def test_nan_and_inf_queries_raise():
    X, z = pzkit.testing.make_toy_catalog(200, random_state=5)
    est = RandomForestPZ(n_estimators=5, random_state=0).fit(X, z)
    for bad in (np.nan, np.inf):
        Xq = X[:3].copy()
        Xq[1, 2] = bad
        with pytest.raises(InputError):
            est.estimate_pdf(Xq)
        with pytest.raises(InputError):
            est.predict(Xq)


def test_learns_on_toy_data_and_beats_the_training_nz():
    from pzkit.metrics import cde_loss, sigma_nmad
    from pzkit_train_z import TrainZ

    X, z = pzkit.testing.make_toy_catalog(3000, random_state=6)
    est = RandomForestPZ(n_estimators=30, random_state=0).fit(X[:2000], z[:2000])
    floor = TrainZ().fit(X[:2000], z[:2000])
    zq = z[2000:]
    assert sigma_nmad(zq, est.predict(X[2000:])) < 0.2 * sigma_nmad(zq, floor.predict(X[2000:]))
    assert cde_loss(est.estimate_pdf(X[2000:]), zq, est.zgrid_) < cde_loss(
        floor.estimate_pdf(X[2000:]), zq, floor.zgrid_) - 2.0


def test_output_rows_follow_the_input_order_whatever_the_traversal_order():
    # estimate_pdf walks the trees in an internal row order (sorted for cache locality) and must put every
    # row back: a permuted input gives the permuted output, and each row equals its own single-row estimate
    X, z = pzkit.testing.make_toy_catalog(900, random_state=6)
    est = RandomForestPZ(n_estimators=8, random_state=1, chunk_size=50).fit(X[:600], z[:600])
    Xq = X[600:]
    perm = np.random.default_rng(0).permutation(len(Xq))
    a = est.estimate_pdf(Xq)
    b = est.estimate_pdf(Xq[perm])
    np.testing.assert_allclose(b.objdata["yvals"], a.objdata["yvals"][perm], rtol=1e-6, atol=1e-10)
    np.testing.assert_allclose(b.ancil["zforest"], a.ancil["zforest"][perm], rtol=1e-12)
    for i in (0, 137, 299):
        one = est.estimate_pdf(Xq[i:i + 1])
        np.testing.assert_allclose(np.atleast_2d(one.objdata["yvals"])[0], a.objdata["yvals"][i], rtol=1e-6, atol=1e-10)
        np.testing.assert_allclose(one.ancil["zforest"][0], a.ancil["zforest"][i], rtol=1e-12)


def test_compiled_tables_are_left_out_of_the_state_and_rebuilt_on_load():
    import pickle

    X, z = pzkit.testing.make_toy_catalog(500, random_state=3)
    est = RandomForestPZ(n_estimators=5, random_state=0).fit(X[:400], z[:400])
    state = est.__getstate__()
    assert "_walk_tables" not in state and "_leaf_blocks" not in state
    loaded = pickle.loads(pickle.dumps(est))
    for mine, theirs in zip(loaded._walk_tables + (loaded._leaf_blocks,), est._walk_tables + (est._leaf_blocks,)):
        np.testing.assert_array_equal(mine, theirs)
    np.testing.assert_array_equal(loaded.estimate_pdf(X[400:]).objdata["yvals"],
                                  est.estimate_pdf(X[400:]).objdata["yvals"])


def test_compiled_walk_reaches_sklearns_leaves_also_on_the_thresholds():
    """The walk compares float32 rows with thresholds rounded down to float32; sklearn compares float64(x) with
    the float64 threshold. Rows placed exactly on every threshold and one float32 step either side must reach
    the same leaf in every tree as sklearn's ``apply`` (the walk returns leaf numbers, ``leaf_index_``)."""
    from pzkit_random_forest._kernels import walk

    X, z = pzkit.testing.make_toy_catalog(1500, random_state=4)
    est = RandomForestPZ(n_estimators=6, random_state=2).fit(X[:1000], z[:1000])
    rows = [np.asarray(X[1000:], dtype=np.float32)]
    for tree in est.forest_.estimators_[:2]:
        t = tree.tree_
        split = np.flatnonzero(t.children_left != -1)
        base = np.repeat(np.median(X, axis=0)[None, :].astype(np.float32), split.size, axis=0)
        at = t.threshold[split].astype(np.float32)
        for value in (at, np.nextafter(at, np.float32(np.inf)), np.nextafter(at, np.float32(-np.inf))):
            r = base.copy()
            r[np.arange(split.size), t.feature[split]] = value
            rows.append(r)
    X32 = np.ascontiguousarray(np.concatenate(rows))
    expected = est._walk_tables[1][est.forest_.apply(X32) + est.node_offset_[None, :], 0]
    assert expected.min() >= 0
    got = walk(X32, *est._walk_tables, np.empty(expected.shape, dtype=np.int32))
    np.testing.assert_array_equal(got, expected)


def test_compiled_density_equals_the_leaf_mixture_shrunk_and_smoothed():
    """Reference computed the plain way: the rows' leaf memberships Q (1/T each) times the leaf distributions
    L, normalised, every grid point moved to z̄ + spread·(z − z̄) and deposited linearly, times the kernel."""
    from scipy.sparse import csr_matrix

    X, z = pzkit.testing.make_toy_catalog(1400, random_state=8)
    est = RandomForestPZ(n_estimators=7, random_state=3, spread=0.6, bandwidth=0.02).fit(X[:1000], z[:1000])
    Xq = X[1000:]
    leaves = est.leaf_index_[est.forest_.apply(Xq.astype(np.float32)) + est.node_offset_[None, :]]
    n, T = leaves.shape
    Q = csr_matrix((np.full(n * T, 1.0 / T), (np.repeat(np.arange(n), T), leaves.ravel())),
                   shape=(n, est.leaf_pdf_.shape[0]))
    P = np.asarray((Q @ est.leaf_pdf_.astype(np.float64)).todense())
    P /= P.sum(axis=1, keepdims=True)
    g = est.zgrid_
    zbar = P @ g
    pos = (zbar[:, None] + 0.6 * (g[None, :] - zbar[:, None]) - g[0]) / (g[1] - g[0])
    j = np.clip(np.floor(pos).astype(int), 0, g.size - 2)
    f = np.clip(pos - j, 0.0, 1.0)
    S = np.zeros_like(P)
    for r in range(n):  # the test's own slow loop: one row at a time
        np.add.at(S[r], j[r], P[r] * (1 - f[r]))
        np.add.at(S[r], j[r] + 1, P[r] * f[r])
    ref = S @ est._kernel()
    ref /= np.trapezoid(ref, g, axis=1)[:, None]
    got = est.estimate_pdf(Xq).objdata["yvals"]
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-12 * ref.max())
    tree_pred = np.stack([t.predict(Xq) for t in est.forest_.estimators_], axis=1)
    np.testing.assert_allclose(est.estimate_pdf(Xq).ancil["zforest"], tree_pred.mean(axis=1), rtol=1e-12)
    np.testing.assert_allclose(est.estimate_pdf(Xq).ancil["zforest_std"], tree_pred.std(axis=1), rtol=1e-9,
                               atol=1e-12)
