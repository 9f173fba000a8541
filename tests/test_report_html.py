"""The HTML report renders: a real headless Chromium opens it and we check the screenshot is not blank."""

import shutil
import subprocess

import numpy as np
import pytest

import pzkit

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")


@pytest.fixture(scope="module")
def html_report(dc2, tmp_path_factory):
    rep = pzkit.evaluate(["train_z"], dataset=dc2, n_train=1500, n_test=1500, progress=False)
    out = tmp_path_factory.mktemp("report")
    return rep.write(out)


def test_html_is_self_contained(html_report):
    text = open(html_report["html"], encoding="utf-8").read()
    assert text.count("data:image/png;base64,") == 1  # one figure per estimator
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
