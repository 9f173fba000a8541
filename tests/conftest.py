import numpy as np
import pytest

from pzkit.testing import make_toy_catalog


@pytest.fixture(scope="session")
def toy():
    X, z = make_toy_catalog(900, random_state=1)
    return X[:600], z[:600], X[600:], z[600:]


@pytest.fixture(scope="session")
def dc2():
    from pzkit.datasets import load_dc2

    return load_dc2()


@pytest.fixture
def rng():
    return np.random.default_rng(12345)
