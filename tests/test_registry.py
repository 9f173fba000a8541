import subprocess
import sys
import textwrap

import pytest

import pzkit
from pzkit.exceptions import PluginError, PluginImportWarning


def test_list_and_make():
    assert "train_z" in pzkit.list_estimators()
    est = pzkit.make_estimator("train_z", nzbins=101)
    assert est.nzbins == 101
    assert isinstance(est, pzkit.PhotoZEstimator)


def test_unknown_estimator_names_installed_ones():
    with pytest.raises(PluginError, match="no pzkit estimator named 'nope'.*train_z"):
        pzkit.get_estimator_class("nope")


def test_bad_parameters_are_reported():
    with pytest.raises(PluginError, match="invalid parameters for estimator 'train_z'"):
        pzkit.make_estimator("train_z", n_neighbours=3)


def test_import_pzkit_is_light():
    code = ("import sys, pzkit; print('torch' in sys.modules, 'sklearn' in sys.modules, 'qp' in sys.modules);"
            "pzkit.list_estimators(); print('torch' in sys.modules, 'sklearn' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False"] * 5


def test_using_a_catalog_plugin_does_not_import_torch():
    code = ("import sys, numpy as np, pzkit; e = pzkit.make_estimator('train_z');"
            "e.fit(np.random.rand(20, 3), np.linspace(0.1, 1, 20)); e.estimate_pdf(np.random.rand(4, 3));"
            "print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"


@pytest.fixture
def fake_plugins(tmp_path, monkeypatch):
    """Two plugins installed the real way (a dist-info with entry_points.txt on sys.path): one broken."""
    for dist, ep_line, module, source in [
        ("broken_plugin", "broken = broken_mod:Broken", "broken_mod", "raise ImportError('libfoo.so not found')"),
        ("good_plugin", "good = good_mod:Good", "good_mod",
         "from pzkit_train_z import TrainZ\nclass Good(TrainZ):\n    pass\n"),
        ("notanestimator_plugin", "notest = notest_mod:Thing", "notest_mod", "class Thing:\n    pass\n"),
    ]:
        info = tmp_path / f"{dist}-1.0.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
        (info / "entry_points.txt").write_text(f"[pzkit.estimators]\n{ep_line}\n")
        (tmp_path / f"{module}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_broken_plugin_warns_and_others_stay_usable(fake_plugins):
    assert {"broken", "good", "train_z"} <= set(pzkit.list_estimators())
    with pytest.warns(PluginImportWarning, match=r"plugin 'broken'.*ImportError: libfoo.so not found"):
        names = pzkit.list_estimators(check_import=True)
    assert "broken" not in names and "good" in names and "train_z" in names
    with pytest.raises(PluginError, match="failed to import"):
        pzkit.make_estimator("broken")
    with pytest.raises(PluginError, match="not point to a pzkit.PhotoZEstimator subclass"):
        pzkit.get_estimator_class("notest")
    assert pzkit.make_estimator("good").nzbins == 301
