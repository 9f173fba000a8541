"""Plugin discovery through the ``pzkit.estimators`` entry-point group.

A plugin is any installed distribution that declares, in its ``pyproject.toml``::

    [project.entry-points."pzkit.estimators"]
    my_method = "my_package:MyEstimator"

where ``MyEstimator`` subclasses :class:`pzkit.PhotoZEstimator`. Nothing is imported until a plugin is
asked for, so ``import pzkit`` never imports torch; a plugin that fails to import is reported with a
:class:`~pzkit.exceptions.PluginImportWarning` naming it and its error, and the others stay usable.
"""

import importlib.metadata
import sys
import warnings

from .exceptions import PluginError, PluginImportWarning

GROUP = "pzkit.estimators"


def _entry_points():
    eps = {}
    for ep in importlib.metadata.entry_points(group=GROUP):
        eps.setdefault(ep.name, ep)  # first one on sys.path wins, as for imports
    return eps


def _load(ep):
    try:
        cls = ep.load()
    except Exception as exc:  # any import-time failure of third-party code
        raise PluginError(
            f"pzkit plugin {ep.name!r} ({ep.value}) failed to import: {type(exc).__name__}: {exc}"
        ) from exc
    from .base import PhotoZEstimator

    if not (isinstance(cls, type) and issubclass(cls, PhotoZEstimator)):
        raise PluginError(
            f"pzkit plugin {ep.name!r} ({ep.value}) does not point to a pzkit.PhotoZEstimator subclass"
        )
    return cls


def list_estimators(check_import=False):
    """Names of the installed estimator plugins, sorted.

    With ``check_import=True`` every plugin is imported; one that fails is left out of the list with a
    :class:`~pzkit.exceptions.PluginImportWarning` saying why.
    """
    eps = _entry_points()
    if not check_import:
        return sorted(eps)
    names = []
    for name in sorted(eps):
        try:
            _load(eps[name])
        except PluginError as exc:
            warnings.warn(str(exc), PluginImportWarning, stacklevel=2)
        else:
            names.append(name)
    return names


def plugin_info(name):
    """Entry point, distribution name and version of an installed plugin (no import)."""
    ep = _get_entry_point(name)
    dist = getattr(ep, "dist", None)
    return {
        "name": name,
        "entry_point": ep.value,
        "distribution": dist.name if dist is not None else None,
        "version": dist.version if dist is not None else None,
    }


def _get_entry_point(name):
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none installed"
        raise PluginError(f"no pzkit estimator named {name!r}; installed: {known}")
    return eps[name]


def get_estimator_class(name):
    """The estimator class registered under ``name``; raises PluginError naming the problem."""
    return _load(_get_entry_point(name))


def make_estimator(name, **params):
    """Instantiate the estimator registered under ``name`` with ``params``."""
    cls = get_estimator_class(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise PluginError(f"invalid parameters for estimator {name!r}: {exc}") from exc


def name_of(estimator_or_class):
    """Entry-point name under which a class is registered, or None."""
    cls = estimator_or_class if isinstance(estimator_or_class, type) else type(estimator_or_class)
    for name, ep in _entry_points().items():
        # the class exists, so the module its entry point names is imported if it is the right plugin
        module = sys.modules.get(ep.module)
        if module is not None and getattr(module, ep.attr, None) is cls:
            return name
    return None
