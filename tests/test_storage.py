"""pzkit.storage: compact PDF representations written in qp's layout and read back by qp."""

import numpy as np
import pytest
import qp

from pzkit import pdf as _pdf
from pzkit.exceptions import InputError
from pzkit.storage import REPRESENTATIONS, Storage, fit_mixture, grid_quantiles, read, write_ensemble

X = np.linspace(0.0, 3.0, 301)


@pytest.fixture(scope="module")
def ens():
    rng = np.random.default_rng(0)
    mu = rng.uniform(0.2, 2.5, (500, 1))
    y = np.exp(-0.5 * ((X - mu) / 0.08) ** 2) + 0.4 * np.exp(-0.5 * ((X - mu - 0.3) / 0.05) ** 2)
    e = _pdf.interp_ensemble(X, y)
    e.set_ancil(dict(id=np.arange(500) * 7, zmode=mu[:, 0]))
    return e


@pytest.mark.parametrize("kind", ["grid", "quantiles", "mixmod"])
@pytest.mark.parametrize("ext", [".hdf5", ".pq"])
def test_written_files_are_read_by_qp(ens, tmp_path, kind, ext):
    path = tmp_path / f"out{ext}"
    write_ensemble(ens, path, kind)
    back = qp.read(str(path))
    assert back.npdf == ens.npdf
    np.testing.assert_array_equal(np.ravel(back.ancil["id"]), np.arange(500) * 7)
    store = Storage(kind)
    data, _ = store.encode(ens)
    for key, value in data.items():  # qp normalises again on read (interp rows, mixture weights)
        np.testing.assert_allclose(back.objdata[key], value, rtol=1e-12 if kind == "grid" else 1e-6, atol=1e-300)
    # the compact forms stay close to the PDF they encode; qp's piecewise-linear rebuild from n quantiles is
    # off by up to ~1.7/n in the CDF (measured: 0.098, 0.053, 0.028 for n = 16, 32, 64 on these PDFs)
    err = np.abs(back.cdf(X) - ens.cdf(X)).max()
    assert err < {"grid": 1e-12, "quantiles": 2.0 / store.n_quantiles, "mixmod": 0.05}[kind]
    cdf = back.cdf(np.linspace(-0.5, 3.5, 801))
    # qp's quadratic quant CDF must not overshoot; 1e-6 is float32 rounding (pzkit's PIT tolerance)
    assert cdf.min() >= -1e-6 and cdf.max() <= 1 + 1e-6


def test_point_is_a_plain_table(ens, tmp_path):
    for ext in (".hdf5", ".pq"):
        table = read(write_ensemble(ens, tmp_path / f"p{ext}", "point")[0])
        assert list(table.columns) == ["id", "zmode"] and len(table) == 500


@pytest.mark.filterwarnings("ignore:There are non-finite values in the locs:RuntimeWarning")  # qp's own ppf(0)
def test_quantiles_equal_qp_ppf(ens):
    store = Storage("quantiles", n_quantiles=20, dtype="float64")
    mine = store.encode(ens)[0]["locs"]
    ref = qp.convert(ens, "quant", quants=store.quants).objdata["locs"]
    np.testing.assert_allclose(mine[:, 1:-1], ref[:, 1:-1], atol=1e-12)
    assert np.all(np.diff(mine, axis=1) >= 0)


def test_quantiles_do_not_depend_on_row_position(ens):
    x = np.ravel(ens.metadata["xvals"])
    from pzkit.storage import _grid_of

    _, cdf = _grid_of(ens)
    q = Storage().quants
    whole = grid_quantiles(x, cdf, q)
    np.testing.assert_array_equal(whole[-100:], grid_quantiles(x, cdf[-100:], q))


def test_mixture_recovers_two_gaussians():
    y = 0.7 * np.exp(-0.5 * ((X - 0.8) / 0.05) ** 2) / 0.05 + 0.3 * np.exp(-0.5 * ((X - 1.6) / 0.1) ** 2) / 0.1
    e = _pdf.interp_ensemble(X, y[None, :])
    from pzkit.storage import _grid_of

    means, stds, weights = fit_mixture(*_grid_of(e), n_components=2, n_iter=200)
    order = np.argsort(means[0])
    np.testing.assert_allclose(means[0, order], [0.8, 1.6], atol=2e-3)
    np.testing.assert_allclose(stds[0, order], [0.05, 0.1], atol=3e-3)
    np.testing.assert_allclose(weights[0, order], [0.7, 0.3], atol=5e-3)


def test_bad_options_and_overwrite(ens, tmp_path):
    with pytest.raises(InputError, match="storage must be one of"):
        Storage("wavelets")
    with pytest.raises(InputError, match="n_quantiles"):
        Storage("quantiles", n_quantiles=1)
    with pytest.raises(InputError, match="unknown format"):
        write_ensemble(ens, tmp_path / "x.csv")
    write_ensemble(ens, tmp_path / "x.hdf5")
    with pytest.raises(InputError, match="exists"):
        write_ensemble(ens, tmp_path / "x.hdf5")
    assert set(REPRESENTATIONS) == {"grid", "quantiles", "mixmod", "point"}
