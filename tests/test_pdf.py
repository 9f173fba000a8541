import numpy as np
import pytest
import qp

from pzkit.pdf import hist_ensemble, interp_ensemble, summarize


def test_hist_summaries_by_hand():
    edges = np.array([0.0, 1.0, 2.0, 4.0])
    # masses 0.25, 0.5, 0.25 -> densities 0.25, 0.5, 0.125
    ens = hist_ensemble(edges, np.array([[0.25, 0.5, 0.125]]))
    s = summarize(ens, edges)
    assert s["zmode"][0] == 1.5
    assert s["zmedian"][0] == pytest.approx(1.5)  # CDF(1)=0.25, CDF(2)=0.75
    mean = 0.25 * 0.5 + 0.5 * 1.5 + 0.25 * 3.0
    assert s["zmean"][0] == pytest.approx(mean)
    second = 0.25 * (0.25 + 1 / 12) + 0.5 * (2.25 + 1 / 12) + 0.25 * (9.0 + 4 / 12)
    assert s["zstd"][0] == pytest.approx(np.sqrt(second - mean**2))


def test_uniform_interp_summaries():
    x = np.linspace(0, 2, 201)
    s = summarize(interp_ensemble(x, np.ones((3, x.size))), x)
    np.testing.assert_allclose(s["zmedian"], 1.0)
    np.testing.assert_allclose(s["zmean"], 1.0)
    np.testing.assert_allclose(s["zstd"], 2 / np.sqrt(12), rtol=1e-4)


def test_summaries_agree_with_qp_on_gaussians(rng):
    x = np.linspace(0, 3, 601)
    mu = rng.uniform(0.5, 2.5, 50)
    sig = rng.uniform(0.05, 0.2, 50)
    y = np.exp(-0.5 * ((x[None] - mu[:, None]) / sig[:, None]) ** 2)
    ens = interp_ensemble(x, y)
    s = summarize(ens, x)
    np.testing.assert_allclose(s["zmedian"], np.ravel(ens.median()), atol=2e-3)
    np.testing.assert_allclose(s["zmean"], np.ravel(ens.mean()), atol=1e-3)
    np.testing.assert_allclose(s["zmean"], mu, atol=1e-3)
    np.testing.assert_allclose(s["zstd"], sig, rtol=1e-2)
    np.testing.assert_allclose(s["zmode"], mu, atol=0.005 + 1e-9)


def test_generic_representation_is_evaluated_on_grid():
    x = np.linspace(0, 3, 3001)
    ens = qp.Ensemble(qp.stats.norm, data=dict(loc=np.array([[1.0], [2.0]]), scale=np.array([[0.1], [0.2]])))
    s = summarize(ens, x)
    np.testing.assert_allclose(s["zmean"], [1.0, 2.0], atol=1e-4)
    np.testing.assert_allclose(s["zstd"], [0.1, 0.2], rtol=1e-3)


def test_empty_pdf_is_refused():
    with pytest.raises(ValueError, match="zero or non-finite total probability"):
        hist_ensemble(np.linspace(0, 1, 5), np.zeros((2, 4)))
