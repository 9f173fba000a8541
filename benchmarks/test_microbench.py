"""pytest-benchmark micro benchmarks of ``fit`` and ``estimate_pdf`` for every installed plugin at fixed sizes.

Run (outside the default test suite) and save a JSON that later runs compare against::

    make microbench                                   # = pytest benchmarks --benchmark-only --benchmark-autosave
    .venv/bin/pytest benchmarks --benchmark-only --benchmark-compare   # compare with the last saved run
"""

import numpy as np
import pytest

import pzkit

N_TRAIN = 5_000
N_TEST = 5_000
NAMES = pzkit.list_estimators()


@pytest.fixture(scope="module")
def data():
    dc2 = pzkit.datasets.load_dc2()
    feats = dc2.features()
    X = feats.fit_transform(dc2.train.iloc[:N_TRAIN])
    y = dc2.train["redshift"].to_numpy()[:N_TRAIN]
    Xt = feats.transform(dc2.validation.iloc[:N_TEST])
    return X, y, Xt


@pytest.mark.parametrize("name", NAMES)
def test_fit(benchmark, name, data):
    X, y, _ = data
    benchmark.extra_info.update(n_train=N_TRAIN, estimator=name)
    est = benchmark.pedantic(lambda: pzkit.make_estimator(name, random_state=0).fit(X, y), rounds=3, iterations=1)
    assert hasattr(est, "zgrid_")


@pytest.mark.parametrize("name", NAMES)
def test_estimate_pdf(benchmark, name, data):
    X, y, Xt = data
    est = pzkit.make_estimator(name, random_state=0).fit(X, y)
    benchmark.extra_info.update(n_test=N_TEST, estimator=name)
    ens = benchmark.pedantic(lambda: est.estimate_pdf(Xt), rounds=3, iterations=1)
    assert ens.npdf == N_TEST and np.all(np.isfinite(ens.ancil["zmode"]))
