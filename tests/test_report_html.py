"""The HTML report renders: a real headless Chromium opens it and we check the screenshot is not blank; the
comparison figure and the reasons for undefined values are in it."""

import shutil
import subprocess

import numpy as np
import pytest
from scipy import stats

import pzkit
from pzkit.harness import Report
from pzkit.metrics.report import make_context, score_ensemble
from pzkit.report_html import COMPARISON_ALT, write_html

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def html_report(dc2, tmp_path_factory):
    rep = pzkit.evaluate(["train_z"], dataset=dc2, n_train=1500, n_test=1500, progress=False)
    out = tmp_path_factory.mktemp("report")
    return rep.write(out)


def test_html_is_self_contained(html_report):
    text = open(html_report["html"], encoding="utf-8").read()
    assert text.count("data:image/png;base64,") == 2  # the comparison figure + one figure per estimator
    assert f"<img alt='{COMPARISON_ALT}'" in text
    assert "<script" not in text and "http://" not in text and "https://" not in text
    assert "<td>train_z</td>" in text


@pytest.mark.skipif(CHROMIUM is None, reason="SKIPPED: headless Chromium not installed (apt-get install chromium)")
def test_html_screenshot_in_headless_chromium(html_report, tmp_path):
    shot = tmp_path / "shot.png"
    cmd = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
           "--disable-background-networking", "--disable-component-update", "--disable-sync",
           f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,2000", f"--screenshot={shot}",
           "file://" + html_report["html"]]
    subprocess.run(cmd, check=True, capture_output=True, timeout=120)
    from matplotlib.image import imread

    img = imread(str(shot))
    assert img.shape[0] >= 1000 and img.shape[1] >= 1000
    # the plots put many distinct colours on the page; a blank or error page has a handful
    colours = np.unique((img[..., :3] * 255).astype(np.uint8).reshape(-1, 3), axis=0)
    assert len(colours) > 500, f"screenshot looks blank ({len(colours)} distinct colours)"


def _toy_report(n=300, seed=0):
    """A two-estimator report scored on Gaussian PDFs (no fitting): a sharp estimator and a biased, wide one."""
    qp = pytest.importorskip("qp")
    rng = np.random.default_rng(seed)
    z = rng.uniform(0.1, 2.0, n)
    feats = np.column_stack([np.sin(z), np.cos(z), 0.3 * z, rng.uniform(20, 25, n)]) + rng.normal(0, 0.05, (n, 4))
    ctx = make_context(feats, z, som_iter=5)
    ctx.n_boot = 10
    grid = np.linspace(0.0, 3.0, 151)
    meta = {"dataset": {"name": "toy", "n_train": 0, "n_test": n}, "grid": "0–3, 151 points",
            "point_estimate": "mode", "outlier_threshold": 0.15, "random_state": seed, "created": "now",
            "machine": {"cpu_count": 1, "platform": "test", "versions": {"pzkit": pzkit.__version__}}}
    report = Report(meta=meta)
    for name, shift, width in (("sharp", 0.0, 0.03), ("wide", 0.05, 0.15)):
        mu = z + shift + rng.normal(0, width, n) * (1 + z)
        ens = qp.interp.create_ensemble(grid, stats.norm.pdf(grid[None, :], mu[:, None], width * (1 + z[:, None])))
        metrics, arrays = score_ensemble(ens, mu, grid, ctx)
        report.results.append({"name": name, **metrics, "cost": {"fit_seconds": 0.0, "estimate_seconds": 1.0,
                                                                 "objects_per_second": float(n)}})
        report.arrays[name] = arrays
    return report


def test_comparison_figure_and_undefined_reasons(tmp_path):
    report = _toy_report()
    text = open(write_html(report, tmp_path / "r.html"), encoding="utf-8").read()
    # the comparison figure comes first, then one figure per estimator
    first = text.index("data:image/png;base64,")
    assert text.index(f"<img alt='{COMPARISON_ALT}'") < first < text.index("<img alt='plots for sharp'")
    assert text.count("data:image/png;base64,") == 3
    # 300 objects on 120 SOM cells: θ is undefined, and the table cites why instead of a silent dash
    why = report.results[0]["som"]["undefined"]["mean_theta_deg"]
    assert why.startswith("fewer than 30 objects in every SOM cell")
    assert "undefined<sup>1</sup>" in text and f"<li>{why}</li>" in text and "—" not in text
    for header in ("σ_atten / σ_scatter", "Δz slope vs z_spec", "Δz slope vs z_phot", "mode collapse (TV)"):
        assert header in text
    slope = report.results[1]["bias"]["residual_vs_z_spec"]["slope_high"]
    assert f"{slope:+.3f}" in text
