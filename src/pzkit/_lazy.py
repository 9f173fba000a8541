"""Module-level lazy attributes (PEP 562), shared by ``pzkit`` and ``pzkit.sims`` so imports stay light."""

import importlib


def lazy_module(module_name, exports, submodules=()):
    """``(__getattr__, __dir__)`` for a module whose names in ``exports`` (name -> defining module) and
    ``submodules`` are imported on first access and then cached in the module's namespace."""
    namespace = importlib.import_module(module_name).__dict__

    def __getattr__(name):
        if name in exports:
            value = getattr(importlib.import_module(exports[name]), name)
            namespace[name] = value
            return value
        if name in submodules:
            return importlib.import_module(f"{module_name}.{name}")
        raise AttributeError(f"module {module_name!r} has no attribute {name!r}")

    def __dir__():
        return sorted(set(namespace) | set(exports) | set(submodules))

    return __getattr__, __dir__
