"""pzkit's own error and warning categories.

Every error raised on bad user input derives from :class:`PzkitError`. Input errors also derive from
``ValueError`` (and not-fitted errors from scikit-learn's ``NotFittedError``) so code written for
scikit-learn keeps catching what it expects.
"""

class PzkitError(Exception):
    """Base class of every error pzkit raises on purpose."""


class InputError(PzkitError, ValueError):
    """Input data are unusable: wrong shape, dtype, values or missing columns. The message names the culprit."""


class InputTypeError(InputError, TypeError):
    """Input data have a type that cannot be converted to numbers."""


class ColumnError(InputError, KeyError):
    """A catalog column is missing or has an unusable dtype."""

    def __str__(self):  # KeyError would otherwise repr() the message
        return str(self.args[0]) if self.args else ""


class NonDetectionError(InputError):
    """Non-detections (99, NaN, inf) were found and the chosen policy refuses them."""


class PluginError(PzkitError, LookupError):
    """A plugin is unknown, failed to import, or does not provide a valid estimator class."""


class ModelFileError(PzkitError, ValueError):
    """A model file was refused: not a pzkit file, tampered, truncated, incompatible, or unsafe to load."""


class OutputError(PzkitError, OSError):
    """An output (model file, report, PDF file) could not be written; nothing that looks complete was left."""


class DatasetError(PzkitError, RuntimeError):
    """A dataset cannot be loaded (usually a missing optional package)."""


class PzkitWarning(UserWarning):
    """Base class of pzkit's warnings."""


class PzkitDeprecationWarning(PzkitWarning, DeprecationWarning):
    """A pzkit interface that still works but will go away; the message says what replaces it."""


class PluginImportWarning(PzkitWarning):
    """A registered plugin failed to import; the other plugins stay usable."""


def __getattr__(name):
    # NotFittedError subclasses scikit-learn's, which imports sklearn (~1 s); it is built on first use so that
    # the registry (and ``pzkit list``) stays fast.
    if name == "NotFittedError":
        from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

        class NotFittedError(PzkitError, _SklearnNotFittedError):
            """An estimator was used before ``fit``."""

        NotFittedError.__module__ = __name__
        globals()["NotFittedError"] = NotFittedError
        return NotFittedError
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
