"""Safe, versioned model files: ``pzkit.save(est, path)`` and ``pzkit.load(path)``.

A model file is a zip archive with two members:

* ``manifest.json`` – format name and version, the pzkit version that wrote it, the object's class, the
  plugins (entry-point name, distribution, version) it contains, and the SHA-256 of the payload;
* ``model.skops`` – the fitted object serialised with `skops <https://skops.readthedocs.io>`_, which stores
  arrays with ``allow_pickle=False`` and rebuilds objects from an explicit list of trusted types.

Loading never unpickles. Before anything is built, the manifest is checked (format, versions, checksum)
and every type the payload names must come from pzkit, scikit-learn, numpy, scipy or an installed pzkit
plugin; anything else is refused with the list of offending types.

Trusting whole packages is not enough on its own: skops can call a named object with arguments from the
file (``ConstructorFromReduceNode``), and numpy ships ``numpy.testing``'s ``runstring`` (an ``exec``). So the
payload's schema is also walked node by node before anything is imported from it: a node may only name a
class (of the container type its loader builds), functions only as numpy/scipy ufuncs, and the loaders that
call or bind a named object (constructor-from-reduce, method, partial, operator) are refused outright;
modules named ``__main__``, ``test(s)`` or ``testing`` are refused without being imported. Real pzkit models
use none of these (the conformance suite saves and loads every plugin's model).
"""

import hashlib
import io
import json
import os
import sys
import zipfile

from . import __version__
from .exceptions import ModelFileError

FORMAT = "pzkit-model"
FORMAT_VERSION = 1
_MANIFEST = "manifest.json"
_PAYLOAD = "model.skops"
TRUSTED_ROOTS = ("pzkit", "sklearn", "numpy", "scipy")


def _compatible(written, installed):
    """Same major version, and for 0.x the same minor too (semantic versioning)."""
    w = [int(p) if p.isdigit() else p for p in str(written).split(".")[:2]]
    i = [int(p) if p.isdigit() else p for p in str(installed).split(".")[:2]]
    return w[0] == i[0] and (w[0] != 0 or w[1:2] == i[1:2])


def _estimators_in(obj):
    from .base import PhotoZEstimator

    if isinstance(obj, PhotoZEstimator):
        yield obj
    for _, step in getattr(obj, "steps", []) or []:
        yield from _estimators_in(step)
    # meta-estimators (StackedPhotoZ, CalibratedPhotoZ): the fitted members' plugins are recorded too
    for member in list(getattr(obj, "estimators_", None) or []) + [getattr(obj, "estimator_", None)]:
        if member is not None:
            yield from _estimators_in(member)


def _plugin_records(obj):
    from .registry import name_of, plugin_info

    records = []
    for est in _estimators_in(obj):
        name = name_of(est)
        if name is not None:
            info = plugin_info(name)
            info["class"] = f"{type(est).__module__}.{type(est).__qualname__}"
            records.append(info)
    return records


def save(estimator, path):
    """Write a fitted pzkit estimator or pipeline to ``path`` atomically (a temporary file, then rename).

    A failed write (full disk, no permission) raises :class:`~pzkit.exceptions.OutputError` and leaves
    nothing at ``path`` (an older file there is kept unchanged).
    """
    import skops.io

    try:
        payload = skops.io.dumps(estimator)
    except Exception as exc:
        raise ModelFileError(f"cannot serialise {type(estimator).__name__}: {type(exc).__name__}: {exc}") from exc
    manifest = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "pzkit_version": __version__,
        "python": sys.version.split()[0],
        "object": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
        "plugins": _plugin_records(estimator),
        "payload_sha256": hashlib.sha256(payload).hexdigest(),
    }
    from .harness import atomic_outputs

    path = os.fspath(path)
    # a full disk or a permission error raises OutputError and leaves no file that looks like a model
    with atomic_outputs([path]) as tmps:
        with open(tmps[path], "wb") as fh:
            with zipfile.ZipFile(fh, "w", compression=zipfile.ZIP_DEFLATED) as zf:
                zf.writestr(_MANIFEST, json.dumps(manifest, indent=2, sort_keys=True))
                zf.writestr(_PAYLOAD, payload)
            fh.flush()
            os.fsync(fh.fileno())
    return path


def read_manifest(path):
    """The manifest of a model file (dict), after checking that it is a pzkit model file at all."""
    manifest, _ = _read(path)
    return manifest


def _read(path):
    path = os.fspath(path)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        raise ModelFileError(f"cannot read model file {path}: {exc}") from exc
    try:
        with zipfile.ZipFile(io.BytesIO(raw)) as zf:
            names = set(zf.namelist())
            if _MANIFEST not in names or _PAYLOAD not in names:
                raise ModelFileError(f"{path} is not a pzkit model file (members {sorted(names)})")
            manifest = json.loads(zf.read(_MANIFEST))
            payload = zf.read(_PAYLOAD)
    except ModelFileError:
        raise
    except Exception as exc:  # zipfile/zlib raise many types on damaged data (BadZipFile, zlib.error, EOFError, ...)
        raise ModelFileError(
            f"{path} is not a readable pzkit model file (truncated, corrupted or another format): {exc}"
        ) from exc
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        fmt = manifest.get("format") if isinstance(manifest, dict) else type(manifest).__name__
        raise ModelFileError(f"{path} is not a pzkit model file (format {fmt!r})")
    plugins = manifest.get("plugins", [])
    if not isinstance(manifest.get("pzkit_version"), str) or not (
        isinstance(plugins, list) and all(isinstance(r, dict) and isinstance(r.get("name"), str) for r in plugins)
    ):
        raise ModelFileError(f"{path} has a damaged manifest (pzkit_version or plugins are malformed)")
    version = manifest.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} uses model-file format version {version!r}; this pzkit {__version__} reads up to "
            f"version {FORMAT_VERSION}: upgrade pzkit"
        )
    if hashlib.sha256(payload).hexdigest() != manifest.get("payload_sha256"):
        raise ModelFileError(f"{path} failed its checksum: the payload was modified or truncated")
    return manifest, payload


def _check_versions(path, manifest):
    from .registry import plugin_info
    from .exceptions import PluginError

    written = manifest.get("pzkit_version", "?")
    if not _compatible(written, __version__):
        raise ModelFileError(
            f"{path} was written by pzkit {written}, which is incompatible with the installed pzkit {__version__}"
        )
    for record in manifest.get("plugins", []):
        try:
            installed = plugin_info(record["name"])
        except PluginError as exc:
            raise ModelFileError(
                f"{path} needs pzkit plugin {record['name']!r} ({record.get('distribution')} "
                f"{record.get('version')}), which is not installed"
            ) from exc
        if record.get("version") and installed["version"] and not _compatible(record["version"], installed["version"]):
            raise ModelFileError(
                f"{path} was written by plugin {record['name']!r} version {record['version']}, which is "
                f"incompatible with the installed version {installed['version']}"
            )


def _trusted_roots():
    from .registry import _entry_points

    roots = set(TRUSTED_ROOTS)
    roots.update(ep.module.split(".")[0] for ep in _entry_points().values())
    return roots


#: skops loaders that call, or hand back bound to data from the file, the object they name.
_CALLING_LOADERS = ("ConstructorFromReduceNode", "MethodNode", "PartialNode", "OperatorFuncNode")
#: loaders that build an instance of the named type; the type must subclass the container.
_CONTAINER_LOADERS = {"DictNode": dict, "DefaultDictNode": dict, "ListNode": list, "SetNode": (set, frozenset),
                      "TupleNode": tuple}


_SAFE_BUILTINS = {"str", "int", "float", "bool", "complex", "bytes", "bytearray", "list", "tuple", "dict", "set",
                  "frozenset", "slice", "NoneType", "object", "type"}
#: module path components never imported from a model file: scripts and test helpers (numpy.testing's exec)
_REFUSED_MODULE_PARTS = {"__main__", "test", "tests", "testing", "_testing", "conftest"}


def _plain_data_type(cls):
    """numpy/scipy classes a model may hold: arrays, scalars, dtypes, sparse matrices, random generators.

    ``numpy.memmap`` (an ndarray subclass that opens files) and the like are not among them.
    """
    import numpy as np

    if cls in (np.ndarray, np.ma.MaskedArray, np.dtype) or issubclass(cls, (np.generic, np.dtype)):
        return True
    if issubclass(cls, (np.random.Generator, np.random.RandomState, np.random.BitGenerator,
                        np.random.SeedSequence)):
        return True
    import scipy.sparse

    return issubclass(cls, (scipy.sparse.spmatrix, getattr(scipy.sparse, "sparray", scipy.sparse.spmatrix)))


def _schema_nodes(node):
    if isinstance(node, dict):
        if "__loader__" in node:
            yield node
        for value in node.values():
            yield from _schema_nodes(value)
    elif isinstance(node, list):
        for value in node:
            yield from _schema_nodes(value)


def _ufunc_names():
    try:
        from skops.io._trusted_types import NUMPY_UFUNC_TYPE_NAMES, SCIPY_UFUNC_TYPE_NAMES
    except ImportError:  # pragma: no cover - older/newer skops layout: allow no function at all
        return set()
    return set(NUMPY_UFUNC_TYPE_NAMES) | set(SCIPY_UFUNC_TYPE_NAMES)


def _node_problem(node, roots, ufuncs):
    """Why one schema node is unsafe to build, or None."""
    import importlib

    loader, module, name = node.get("__loader__"), node.get("__module__"), node.get("__class__")
    if not isinstance(module, str) or not isinstance(name, str):
        return None  # CachedNode and the like: references to nodes checked elsewhere
    qual = f"{module}.{name}"
    if loader in _CALLING_LOADERS:
        return f"{qual} ({loader}: would call or bind an object named by the file)"
    # every node is checked, even one skops would skip (a repeated __id__ is served from its memo): what the
    # file names must be loadable, not merely unused
    if module == "builtins":
        return None if name in _SAFE_BUILTINS else f"{qual} (a builtin that is not a plain data type)"
    parts = module.split(".")
    if parts[0] not in roots:
        return f"{qual} (outside pzkit, its plugins, scikit-learn, numpy and scipy)"
    if any(p in _REFUSED_MODULE_PARTS or p.startswith(("test_", "_test")) for p in parts):
        return f"{qual} (test or __main__ module)"
    try:
        obj = getattr(importlib.import_module(module), name)
    except Exception as exc:
        return f"{qual} (cannot be imported: {type(exc).__name__})"
    if loader == "FunctionNode":
        return None if qual in ufuncs else f"{qual} (a function, not a numpy/scipy ufunc)"
    if not isinstance(obj, type):
        return f"{qual} (not a class, used by {loader})"
    if parts[0] in ("numpy", "scipy") and not _plain_data_type(obj):
        return f"{qual} (a numpy/scipy class that is not an array, scalar, dtype, sparse matrix or random generator)"
    base = _CONTAINER_LOADERS.get(loader)
    if loader == "NdArrayNode":  # skops calls the named type on the array: only array and scalar types
        import numpy as np

        base = (np.ndarray, np.generic)
    if base is not None and not issubclass(obj, base):
        names = "/".join(b.__name__ for b in (base if isinstance(base, tuple) else (base,)))
        return f"{qual} (not a {names} subclass, used by {loader})"
    return None


def _check_schema(path, payload, roots, manifest_object):
    try:
        with zipfile.ZipFile(io.BytesIO(payload)) as zf:
            schema = json.loads(zf.read("schema.json"))
    except Exception as exc:
        raise ModelFileError(f"{path}: unreadable payload: {type(exc).__name__}: {exc}") from exc
    # the file must build the object its manifest announces, not a type, function or array in its place
    if not isinstance(schema, dict):
        schema = {}
    top = f"{schema.get('__module__')}.{schema.get('__class__')}"
    if schema.get("__loader__") != "ObjectNode" or top != manifest_object:
        raise ModelFileError(f"{path}: the payload builds {top!r} (with {schema.get('__loader__')!r}) but the "
                             f"manifest announces {manifest_object!r}; refusing to load it")
    ufuncs = _ufunc_names()
    problems = []
    for node in _schema_nodes(schema):
        problem = _node_problem(node, roots, ufuncs)
        if problem is not None and problem not in problems:
            problems.append(problem)
    if problems:
        raise ModelFileError(f"{path} asks to build objects pzkit does not load: {problems}; refusing to load it")


def load(path):
    """Load a model written by :func:`save`. Refuses, with the reason, any file that is not safe to build."""
    import skops.io

    manifest, payload = _read(path)
    _check_versions(path, manifest)
    try:
        types = skops.io.get_untrusted_types(data=payload)
    except Exception as exc:
        raise ModelFileError(f"{path}: unreadable payload: {type(exc).__name__}: {exc}") from exc
    roots = _trusted_roots()
    refused = [t for t in types if t.split(".")[0] not in roots]
    if refused:
        raise ModelFileError(
            f"{path} refers to types outside pzkit, its plugins, scikit-learn, numpy and scipy: {refused}; "
            "refusing to load it"
        )
    _check_schema(path, payload, roots, manifest.get("object"))
    try:
        obj = skops.io.loads(payload, trusted=types)
    except Exception as exc:
        raise ModelFileError(f"{path}: payload could not be loaded: {type(exc).__name__}: {exc}") from exc
    built = f"{type(obj).__module__}.{type(obj).__qualname__}"
    if built != manifest.get("object"):
        raise ModelFileError(f"{path}: the payload built a {built}, but the manifest announces {manifest.get('object')!r}")
    return obj
