import hashlib
import io
import json
import pickle
import zipfile

import numpy as np
import pytest

import pzkit
from pzkit.exceptions import ModelFileError


@pytest.fixture
def model_file(tmp_path, toy):
    X, y, Xt, _ = toy
    est = pzkit.make_estimator("train_z").fit(X, y)
    path = tmp_path / "m.pzk"
    pzkit.save(est, path)
    return path, est, Xt


def _rewrite(path, manifest=None, payload=None):
    with zipfile.ZipFile(path) as zf:
        m = json.loads(zf.read("manifest.json"))
        p = zf.read("model.skops")
    if payload is not None:
        p = payload
        m["payload_sha256"] = hashlib.sha256(p).hexdigest()
    if manifest is not None:
        m.update(manifest)
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", json.dumps(m))
        zf.writestr("model.skops", p)


def test_round_trip_identical(model_file):
    path, est, Xt = model_file
    loaded = pzkit.load(path)
    np.testing.assert_array_equal(loaded.estimate_pdf(Xt).objdata["pdfs"], est.estimate_pdf(Xt).objdata["pdfs"])
    manifest = pzkit.persistence.read_manifest(path)
    assert manifest["plugins"][0]["name"] == "train_z"
    assert manifest["pzkit_version"] == pzkit.__version__


def test_pipeline_round_trip(tmp_path, dc2):
    pipe = pzkit.make_pipeline(dc2.features(), pzkit.make_estimator("train_z"))
    pipe.fit(dc2.train.iloc[:500], dc2.train["redshift"].iloc[:500])
    pzkit.save(pipe, tmp_path / "p.pzk")
    loaded = pzkit.load(tmp_path / "p.pzk")
    test = dc2.validation.iloc[:50]
    np.testing.assert_array_equal(loaded.predict(test), pipe.predict(test))


def test_tampered_payload_is_refused(model_file):
    path, _, _ = model_file
    with zipfile.ZipFile(path) as zf:
        m, p = zf.read("manifest.json"), bytearray(zf.read("model.skops"))
    p[len(p) // 2] ^= 0xFF
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("manifest.json", m)
        zf.writestr("model.skops", bytes(p))
    with pytest.raises(ModelFileError, match="checksum"):
        pzkit.load(path)


def test_truncated_file_is_refused(model_file):
    path, _, _ = model_file
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="truncated, corrupted or another format"):
        pzkit.load(path)


def test_pickle_file_is_refused_without_executing(tmp_path):
    class Boom:
        def __reduce__(self):
            return (open, (str(tmp_path / "pwned"), "w"))

    path = tmp_path / "evil.pzk"
    path.write_bytes(pickle.dumps(Boom()))
    with pytest.raises(ModelFileError):
        pzkit.load(path)
    assert not (tmp_path / "pwned").exists()


def test_payload_naming_foreign_types_is_refused(model_file, tmp_path):
    """A valid skops payload that would build os.system / subprocess objects is refused before loading."""
    import os

    import skops.io

    path, _, _ = model_file
    payload = skops.io.dumps({"f": os.system, "g": io.BytesIO})
    _rewrite(path, payload=payload)
    with pytest.raises(ModelFileError, match=r"(posix|os)\.system.*refusing to load"):
        pzkit.load(path)


def test_incompatible_versions_are_named(model_file):
    path, _, _ = model_file
    _rewrite(path, manifest={"pzkit_version": "7.2.0"})
    with pytest.raises(ModelFileError, match=r"pzkit 7\.2\.0.*installed pzkit 0\.1\.0"):
        pzkit.load(path)


def test_incompatible_plugin_version_is_named(model_file):
    path, _, _ = model_file
    m = pzkit.persistence.read_manifest(path)
    m["plugins"][0]["version"] = "3.0"
    _rewrite(path, manifest={"plugins": m["plugins"]})
    with pytest.raises(ModelFileError, match=r"plugin 'train_z' version 3\.0.*installed version 0\.1\.0"):
        pzkit.load(path)


def test_newer_format_is_refused(model_file):
    path, _, _ = model_file
    _rewrite(path, manifest={"format_version": 99})
    with pytest.raises(ModelFileError, match="format version 99"):
        pzkit.load(path)


def test_foreign_zip_is_refused(tmp_path):
    path = tmp_path / "x.pzk"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("hello.txt", "hi")
    with pytest.raises(ModelFileError, match="not a pzkit model file"):
        pzkit.load(path)
