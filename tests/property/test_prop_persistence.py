"""Property tests of pzkit.load on damaged and hostile model files: identical model or ModelFileError."""

import hashlib
import io
import json
import os
import zipfile

import numpy as np
import pytest
from _pzfuzz import examples, outcome_of
from hypothesis import given
from hypothesis import strategies as st

import pzkit
from pzkit.exceptions import ModelFileError
from pzkit.testing import make_toy_catalog


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    X, z = make_toy_catalog(300, random_state=2)
    est = pzkit.make_estimator("random_forest", n_estimators=3, random_state=0).fit(X[:200], z[:200])
    path = tmp_path_factory.mktemp("model") / "m.pzk"
    pzkit.save(est, path)
    return path.read_bytes(), est.estimate_pdf(X[200:]).objdata["yvals"], X[200:]


def _load_bytes(tmp_path, raw, name="x.pzk"):
    path = tmp_path / name
    path.write_bytes(raw)
    return outcome_of(lambda: pzkit.load(path), "pzkit.load")


def _assert_identical_or_refused(ok, out, reference, Xt):
    if ok:  # a change the format does not depend on (zip padding, a manifest comment): same model
        np.testing.assert_array_equal(out.estimate_pdf(Xt).objdata["yvals"], reference)
    else:
        assert isinstance(out, ModelFileError), f"{type(out).__name__}: {out}"


@examples(60)
@given(flips=st.lists(st.tuples(st.floats(0, 1, exclude_max=True), st.integers(1, 255)), min_size=1, max_size=4))
def test_flipped_bytes(saved, tmp_path_factory, flips):
    raw, reference, Xt = saved
    data = bytearray(raw)
    for pos, mask in flips:
        data[int(pos * len(data))] ^= mask
    ok, out = _load_bytes(tmp_path_factory.mktemp("f"), bytes(data))
    _assert_identical_or_refused(ok, out, reference, Xt)


@examples(40)
@given(frac=st.floats(0, 1, exclude_max=True), garbage=st.binary(max_size=64))
def test_truncated_or_extended(saved, tmp_path_factory, frac, garbage):
    raw, reference, Xt = saved
    cut = int(frac * len(raw))
    ok, out = _load_bytes(tmp_path_factory.mktemp("t"), raw[:cut] + garbage)
    if not garbage:
        assert not ok and isinstance(out, ModelFileError), "a truncated file loaded"
    else:
        _assert_identical_or_refused(ok, out, reference, Xt)


JSONISH = st.recursive(st.none() | st.booleans() | st.integers(-5, 5) | st.text(max_size=8) | st.floats(allow_nan=False),
                       lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
                       max_leaves=6)


@examples(40)
@given(key=st.sampled_from(["format", "format_version", "pzkit_version", "plugins", "payload_sha256", "object",
                            "python", "__new__"]), value=JSONISH)
def test_manifest_fields(saved, tmp_path_factory, key, value):
    raw, reference, Xt = saved
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        manifest, payload = json.loads(zf.read("manifest.json")), zf.read("model.skops")
    manifest[key] = value
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        zf.writestr("model.skops", payload)
    ok, out = _load_bytes(tmp_path_factory.mktemp("m"), buf.getvalue())
    _assert_identical_or_refused(ok, out, reference, Xt)
    if ok:
        assert key in ("object", "python", "__new__", "plugins") or manifest == json.loads(json.dumps(manifest))


# names an attacker would plant; the first one really executes code if skops builds it
HOSTILE = [("numpy.testing._private.utils", "runstring"), ("os", "system"), ("builtins", "eval"),
           ("builtins", "exec"), ("numpy", "load"), ("numpy", "memmap"), ("subprocess", "Popen"),
           ("pzkit.cli", "main"), ("numpy.f2py.__main__", "main"), ("scipy.io", "savemat"),
           ("numpy.lib.format", "open_memmap"), ("sklearn.utils._testing", "assert_run_python_script_without_output"),
           ("pzkit.persistence", "save"), ("shutil", "rmtree")]
LOADERS = ["ObjectNode", "FunctionNode", "ConstructorFromReduceNode", "MethodNode", "TypeNode", "NdArrayNode",
           "DictNode", "ListNode", "TupleNode", "PartialNode", "ReduceNode", "RandomStateNode"]


def _jstr(s):
    return {"__class__": "str", "__module__": "builtins", "__loader__": "JsonNode", "content": json.dumps(s),
            "is_json": True, "__id__": 1}


@examples(60)
@given(target=st.sampled_from(HOSTILE), loader=st.sampled_from(LOADERS), data=st.data())
def test_hostile_payload_never_runs(saved, tmp_path_factory, target, loader, data):
    """Rewrite one node of the skops schema to name a hostile callable (checksum recomputed, as an attacker
    would): pzkit.load must refuse it before anything runs."""
    raw, _, _ = saved
    tmp = tmp_path_factory.mktemp("h")
    tripwire = tmp / "pwned"
    with zipfile.ZipFile(io.BytesIO(raw)) as zf:
        manifest, payload = json.loads(zf.read("manifest.json")), zf.read("model.skops")
    with zipfile.ZipFile(io.BytesIO(payload)) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    schema = json.loads(members["schema.json"])
    nodes = []

    def walk(node):
        if isinstance(node, dict):
            if "__loader__" in node and node.get("__module__") != "builtins":
                nodes.append(node)
            for v in node.values():
                walk(v)
        elif isinstance(node, list):
            for v in node:
                walk(v)

    walk(schema)
    node = nodes[data.draw(st.integers(0, len(nodes) - 1))]
    node["__module__"], node["__class__"], node["__loader__"] = target[0], target[1], loader
    code = f"open({str(tripwire)!r}, 'w').write('pwned')"
    node["content"] = {"__class__": "tuple", "__module__": "builtins", "__loader__": "TupleNode",
                       "content": [_jstr(code), {"__class__": "dict", "__module__": "builtins",
                                                 "__loader__": "DictNode", "content": {},
                                                 "key_types": {"__class__": "list", "__module__": "builtins",
                                                               "__loader__": "ListNode", "content": []}}]}
    members["schema.json"] = json.dumps(schema).encode()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for n, b in members.items():
            zf.writestr(n, b)
    manifest["payload_sha256"] = hashlib.sha256(buf.getvalue()).hexdigest()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as zf:
        zf.writestr("manifest.json", json.dumps(manifest))
        zf.writestr("model.skops", buf.getvalue())
    ok, res = _load_bytes(tmp, out.getvalue())
    assert not tripwire.exists(), f"loading ran code planted as {target} via {loader}"
    assert not ok and isinstance(res, ModelFileError), f"hostile {target} via {loader} loaded: {res!r}"
    assert not os.path.exists(tripwire)
