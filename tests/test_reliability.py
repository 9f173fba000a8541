"""Reliability: hostile model files, faults while writing, reproducibility across processes, logging hygiene.

The hypothesis property suite (tests/property/) fuzzes the public API; this file holds the deterministic
fault-injection and safety tests that docs/reliability.md reports.
"""

import ast
import errno
import hashlib
import io
import json
import os
import pathlib
import pickle
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import pzkit
from pzkit.exceptions import ModelFileError, OutputError, PzkitWarning
from pzkit.testing import make_toy_catalog

ROOT = pathlib.Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def fitted():
    X, z = make_toy_catalog(300, random_state=4)
    est = pzkit.make_estimator("knn_local_linear", n_neighbors=10).fit(X[:200], z[:200])
    return est, X[200:]


def _repack(path, payload=None, manifest=None, members=None):
    with zipfile.ZipFile(path) as zf:
        m = json.loads(zf.read("manifest.json"))
        p = zf.read("model.skops")
    if members is not None:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w") as zf:
            for name, data in members.items():
                zf.writestr(name, data)
        p = buf.getvalue()
    if payload is not None:
        p = payload
    m["payload_sha256"] = hashlib.sha256(p).hexdigest()
    m.update(manifest or {})
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", json.dumps(m))
        zf.writestr("model.skops", p)


# ------------------------------------------------------------------------------------------ hostile model files
class _Boom:
    def __init__(self, target):
        self.target = target

    def __reduce__(self):
        return (os.system, (f"touch {self.target}",))


def test_planted_pickle_payload_never_runs(fitted, tmp_path):
    """A pickle with a __reduce__ that runs a shell command, planted three ways (as the whole file, as the
    payload with a valid checksum, as an .npy array inside the skops archive): refused, and the command never ran."""
    est, _ = fitted
    tripwire = tmp_path / "pwned"
    evil = pickle.dumps(_Boom(tripwire))
    whole = tmp_path / "whole.pzk"
    whole.write_bytes(evil)
    payload = tmp_path / "payload.pzk"
    pzkit.save(est, payload)
    _repack(payload, payload=evil)
    npy = tmp_path / "npy.pzk"
    pzkit.save(est, npy)
    with zipfile.ZipFile(npy) as zf:
        inner = zipfile.ZipFile(io.BytesIO(zf.read("model.skops")))
        members = {n: inner.read(n) for n in inner.namelist()}
    arrays = [n for n in members if n.endswith(".npy")]
    assert arrays, "the knn model should store arrays as .npy members"
    buf = io.BytesIO()
    np.save(buf, np.array([_Boom(tripwire)], dtype=object), allow_pickle=True)
    for name in arrays:
        members[name] = buf.getvalue()
    _repack(npy, members=members)
    for path in (whole, payload, npy):
        with pytest.raises(ModelFileError) as info:
            pzkit.load(path).estimate_pdf(fitted[1])
        assert str(path) in str(info.value)
    assert not tripwire.exists()


def test_numpy_exec_through_skops_constructor_is_refused(fitted, tmp_path):
    """Regression: numpy.testing's runstring is exec(); skops's ConstructorFromReduceNode calls whatever the file
    names with arguments from the file, and 'numpy' was a trusted root. Before the schema check this ran code."""
    est, _ = fitted
    tripwire = tmp_path / "pwned"
    path = tmp_path / "m.pzk"
    pzkit.save(est, path)
    with zipfile.ZipFile(path) as zf:
        inner = zipfile.ZipFile(io.BytesIO(zf.read("model.skops")))
        members = {n: inner.read(n) for n in inner.namelist()}
    schema = json.loads(members["schema.json"])

    def jstr(s):
        return {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode", "content": json.dumps(s),
                "is_json": True, "__id__": 1}

    empty = {"__class__": "dict", "__module__": "builtins", "__loader__": "DictNode", "content": {},
             "key_types": {"__class__": "list", "__module__": "builtins", "__loader__": "ListNode", "content": []}}
    schema["content"]["content"]["evil_"] = {
        "__class__": "runstring", "__module__": "numpy.testing._private.utils", "__loader__": "ConstructorFromReduceNode",
        "content": {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode",
                    "content": [jstr(f"open({str(tripwire)!r}, 'w').write('x')"), empty]}}
    schema["content"]["key_types"]["content"].append(
        {"__class__": "str", "__module__": "builtins", "__loader__": "TypeNode", "__id__": 2})
    members["schema.json"] = json.dumps(schema).encode()
    _repack(path, members=members)
    with pytest.raises(ModelFileError, match=r"runstring.*ConstructorFromReduceNode.*refusing"):
        pzkit.load(path)
    assert not tripwire.exists()


def test_real_models_pass_the_load_policy(tmp_path, dc2):
    """The schema policy refuses nothing that pzkit itself writes (pipeline with features and a forest)."""
    pipe = pzkit.make_pipeline(dc2.features(id_column="id"),
                               pzkit.make_estimator("random_forest", n_estimators=3, random_state=0))
    train = dc2.train.iloc[:400]
    pipe.fit(train, train["redshift"])
    pzkit.save(pipe, tmp_path / "p.pzk")
    loaded = pzkit.load(tmp_path / "p.pzk")
    test = dc2.validation.iloc[:30]
    np.testing.assert_array_equal(loaded.predict(test), pipe.predict(test))


def test_missing_plugin_is_named_with_its_version(fitted, tmp_path):
    est, _ = fitted
    path = tmp_path / "m.pzk"
    pzkit.save(est, path)
    m = pzkit.persistence.read_manifest(path)
    m["plugins"][0].update(name="hubble_net", distribution="pzkit-hubble-net", version="2.1.0")
    _repack(path, manifest={"plugins": m["plugins"]})
    with pytest.raises(ModelFileError, match=r"'hubble_net' \(pzkit-hubble-net 2\.1\.0\), which is not installed"):
        pzkit.load(path)


def test_future_pzkit_version_names_both(fitted, tmp_path):
    est, _ = fitted
    path = tmp_path / "m.pzk"
    pzkit.save(est, path)
    _repack(path, manifest={"pzkit_version": "0.9.3"})
    with pytest.raises(ModelFileError, match=rf"pzkit 0\.9\.3.*installed pzkit {pzkit.__version__}"):
        pzkit.load(path)


# ------------------------------------------------------------------------------------------ faults while writing
class _FullDisk:
    """``open`` replacement: files whose name ends in .part accept ``budget`` bytes, then raise ENOSPC."""

    def __init__(self, real_open, budget):
        self.real_open, self.budget, self.tripped, self.written = real_open, budget, 0, 0

    def __call__(self, file, mode="r", *args, **kwargs):
        fh = self.real_open(file, mode, *args, **kwargs)
        if "w" not in mode or not str(file).endswith(".part"):
            return fh
        outer = self

        class Limited:  # the budget is shared by every file: the disk, not the file, is full
            def write(self, data):
                if outer.written + len(data) > outer.budget:
                    outer.tripped += 1
                    fh.write(data[: max(0, outer.budget - outer.written)])
                    outer.written = outer.budget
                    raise OSError(errno.ENOSPC, "No space left on device")
                outer.written += len(data)
                return fh.write(data)

            def __getattr__(self, name):
                return getattr(fh, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                fh.close()
                return False

        return Limited()


def _leftovers(directory):
    return sorted(p.name for p in pathlib.Path(directory).iterdir() if p.name.endswith(".part"))


@pytest.mark.parametrize("fraction", [0.0, 0.001, 0.1, 0.5, 0.99])
def test_disk_full_while_saving_leaves_no_model(fitted, tmp_path, monkeypatch, fraction):
    est, _ = fitted
    size = os.path.getsize(pzkit.save(est, tmp_path / "probe.pzk"))
    os.unlink(tmp_path / "probe.pzk")
    target = tmp_path / "model.pzk"
    full = _FullDisk(open, int(fraction * size))
    monkeypatch.setattr("builtins.open", full)
    with pytest.raises(OutputError, match=r"No space left on device; no output was written"):
        pzkit.save(est, target)
    monkeypatch.undo()
    assert full.tripped and not target.exists() and not _leftovers(tmp_path)


def test_disk_full_keeps_the_previous_model(fitted, tmp_path, monkeypatch):
    est, Xt = fitted
    target = tmp_path / "model.pzk"
    pzkit.save(est, target)
    before = target.read_bytes()
    monkeypatch.setattr("builtins.open", _FullDisk(open, 50))
    with pytest.raises(OutputError):
        pzkit.save(est, target)
    monkeypatch.undo()
    assert target.read_bytes() == before and not _leftovers(tmp_path)
    pzkit.load(target).estimate_pdf(Xt)


def test_permission_error_is_a_pzkit_error(fitted, tmp_path, monkeypatch):
    est, _ = fitted

    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr("tempfile.mkstemp", denied)
    with pytest.raises(OutputError, match="Permission denied; no output was written"):
        pzkit.save(est, tmp_path / "m.pzk")
    assert not (tmp_path / "m.pzk").exists()


def _tiny_report():
    from pzkit.harness import Report

    return Report(meta={"dataset": {"name": "toy", "n_train": 1, "n_test": 1}, "grid": "0-3", "point_estimate": "mode",
                        "random_state": 0, "created": "now", "outlier_threshold": 0.15,
                        "machine": {"cpu_count": 1, "platform": "x", "versions": {"pzkit": pzkit.__version__}}},
                  results=[{"name": "broken", "error": "ValueError: x"}])


@pytest.mark.parametrize("budget", [0, 10, 300, 2000])
def test_disk_full_while_writing_a_report_leaves_no_report(tmp_path, monkeypatch, budget):
    out = tmp_path / "report"
    full = _FullDisk(open, budget)
    monkeypatch.setattr("builtins.open", full)
    with pytest.raises(OutputError, match="no output was written"):
        _tiny_report().write(out)
    monkeypatch.undo()
    assert full.tripped
    assert sorted(p.name for p in out.iterdir()) == [], "a partial report was left behind"


def test_report_write_is_complete_otherwise(tmp_path):
    paths = _tiny_report().write(tmp_path / "r")
    assert sorted(paths) == ["html", "json", "markdown"]
    assert json.loads(pathlib.Path(paths["json"]).read_text())["results"][0]["name"] == "broken"
    mode = os.stat(paths["json"]).st_mode & 0o777
    umask = os.umask(0)
    os.umask(umask)
    assert mode == 0o666 & ~umask, oct(mode)


def test_cli_reports_a_write_failure_without_a_traceback(tmp_path, monkeypatch, capsys):
    from pzkit.cli import main

    X, z = make_toy_catalog(50, random_state=0)
    cols = {f"mag_{b}_lsst": 22 + X[:, min(i, 4)] for i, b in enumerate("ugrizy")}
    cols["redshift"] = z
    import pandas as pd

    cat = tmp_path / "train.parquet"
    pd.DataFrame(cols).to_parquet(cat)
    monkeypatch.setattr("builtins.open", _FullDisk(open, 10))
    rc = main(["fit", "train_z", "--train", str(cat), "-o", str(tmp_path / "m.pzk")])
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert rc == 2 and "error: could not write" in err and "Traceback" not in err
    assert not (tmp_path / "m.pzk").exists() and not _leftovers(tmp_path)


# ------------------------------------------------------------------------------------------ reproducibility
_REPRO = r"""
import sys, warnings
sys.path.insert(0, {prop!r})
warnings.simplefilter("ignore")
import numpy as np, pzkit
from _pzfuzz import tiny_instance, training_data
for name in {names!r}:
    est = tiny_instance(pzkit.get_estimator_class(name), random_state=11)
    X, y, fp, Xt, pp = training_data(est, n_train=120)
    est.fit(X, y, **fp)
    ens = est.estimate_pdf(Xt, **pp)
    np.savez({out!r} + "/" + name + ".npz", **{{k: np.asarray(v) for k, v in ens.objdata.items()}})
"""


def _fit_in_fresh_process(names, out, env_extra):
    os.makedirs(out, exist_ok=True)
    code = _REPRO.format(prop=str(ROOT / "tests" / "property"), names=list(names), out=str(out))
    env = dict(os.environ, **env_extra)
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=1800)
    assert res.returncode == 0, res.stderr[-3000:]
    return {n: dict(np.load(os.path.join(out, f"{n}.npz"))) for n in names}


def _compare_runs(names, tmp_path):
    """Fit in three fresh interpreters: two with different hash seeds and the default threads (must be
    bit-identical), one pinned to one thread: BLAS and torch split their reductions by thread, so that one may
    round differently, within float32 rounding (measured up to 7e-8 relative for the image CNNs)."""
    a = _fit_in_fresh_process(names, tmp_path / "a", {"PYTHONHASHSEED": "1"})
    b = _fit_in_fresh_process(names, tmp_path / "b", {"PYTHONHASHSEED": "2"})
    c = _fit_in_fresh_process(names, tmp_path / "c", {"PYTHONHASHSEED": "3", "OMP_NUM_THREADS": "1",
                                                      "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"})
    differ, threads = [], {}
    for n in names:
        for key in a[n]:
            if not np.array_equal(a[n][key], b[n][key]):
                differ.append(f"{n}:{key}")
            diff = np.max(np.abs(a[n][key] - c[n][key]), initial=0.0)
            scale = np.max(np.abs(a[n][key]), initial=1.0)
            threads[f"{n}:{key}"] = diff / scale
    assert not differ, f"same seed, same threads, different PDFs across processes: {differ}"
    print("max relative difference, 1 thread vs default:", {k: f"{v:.2g}" for k, v in threads.items()})
    worse = {k: v for k, v in threads.items() if not v <= 1e-6}
    assert not worse, f"one thread vs several differs beyond float32 rounding (1e-6 relative): {worse}"
    return threads


@pytest.mark.slow
def test_same_seed_is_bit_identical_across_processes(tmp_path):
    """Every registered plugin (torch and image plugins included, tiny fits)."""
    _compare_runs(pzkit.list_estimators(), tmp_path)


def test_same_seed_is_bit_identical_across_processes_fast(tmp_path):
    """The default-suite version: the cheap plugins."""
    _compare_runs(["train_z", "random_forest", "knn_local_linear"], tmp_path)


# ------------------------------------------------------------------------------------------ logging hygiene
def _sources():
    files = sorted((ROOT / "src" / "pzkit").rglob("*.py"))
    for plugin in sorted((ROOT / "plugins").glob("*/src")):
        files += sorted(plugin.rglob("*.py"))
    return files


# command-line front ends print their output on purpose
_CLI_FILES = {"cli.py"}


def test_no_print_outside_the_command_line():
    offenders = []
    for path in _sources():
        if path.name in _CLI_FILES:
            continue
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print":
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno}")
    assert not offenders, f"print() in library code (use warnings/logging): {offenders}"


def test_warnings_use_pzkit_categories():
    """Every warnings.warn in pzkit and its plugins names a category derived from PzkitWarning."""
    import importlib

    offenders = []
    for path in _sources():
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "warn"
                    and getattr(node.func.value, "id", None) == "warnings"):
                continue
            cat = node.args[1] if len(node.args) > 1 else next((k.value for k in node.keywords if k.arg == "category"),
                                                                None)
            name = getattr(cat, "id", None) or getattr(cat, "attr", None)
            where = f"{path.relative_to(ROOT)}:{node.lineno}"
            if name is None:
                offenders.append(f"{where} (no category: a bare UserWarning)")
                continue
            rel = path.relative_to(ROOT).with_suffix("")
            parts = rel.parts[rel.parts.index("src") + 1:] if "src" in rel.parts else rel.parts
            module = ".".join(p for p in parts if p != "__init__")
            cls = getattr(importlib.import_module(module), name, None)
            if not (isinstance(cls, type) and issubclass(cls, PzkitWarning)):
                offenders.append(f"{where} ({name})")
    assert not offenders, f"warnings outside pzkit's categories: {offenders}"
