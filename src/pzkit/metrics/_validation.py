"""Input checks shared by the metric modules (private).

Every public metric validates its arrays here so that bad input fails loudly, with the name of the offending
argument, instead of producing a silent NaN. Errors are :class:`pzkit.exceptions.InputError`, which derives from
``ValueError``.
"""

import numpy as np

try:  # the project's error class (a ValueError subclass); fall back to ValueError if it is ever absent
    from ..exceptions import InputError
except ImportError:  # pragma: no cover
    InputError = ValueError


def as_1d(x, name, *, allow_empty=False, finite=True):
    """Return ``x`` as a 1-D float64 array; raise ``InputError`` (a ValueError) naming ``name`` if unusable."""
    try:
        arr = np.asarray(x, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise InputError(f"{name} must be a 1-D array of numbers: {exc}") from None
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise InputError(f"{name} must be 1-D, got shape {arr.shape}")
    if not allow_empty and arr.size == 0:
        raise InputError(f"{name} must not be empty")
    if finite and not np.all(np.isfinite(arr)):
        bad = int(np.count_nonzero(~np.isfinite(arr)))
        raise InputError(f"{name} contains {bad} non-finite value(s) (NaN or inf)")
    return arr


def check_pair(z_true, z_pred, names=("z_true", "z_pred")):
    """Validate a (truth, prediction) pair: 1-D, finite, non-empty, equal lengths, 1 + z_true > 0."""
    a = as_1d(z_true, names[0])
    b = as_1d(z_pred, names[1])
    if a.shape != b.shape:
        raise InputError(f"{names[0]} and {names[1]} must have equal lengths, got {a.size} and {b.size}")
    if np.any(a <= -1.0):
        raise InputError(f"{names[0]} must be > -1 so that 1 + {names[0]} > 0")
    return a, b


def check_same_length(ref_name, ref, **others):
    """Raise unless every array in ``others`` has the length of ``ref``."""
    for name, arr in others.items():
        if arr.shape[0] != ref.shape[0]:
            raise InputError(f"{name} must have the same length as {ref_name} ({ref.shape[0]}), got {arr.shape[0]}")


def check_positive_scalar(value, name, *, allow_zero=False):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise InputError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(v) or v < 0 or (v == 0 and not allow_zero):
        kind = "non-negative" if allow_zero else "positive"
        raise InputError(f"{name} must be a finite {kind} number, got {value!r}")
    return v


def check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_grid(zgrid, name="zgrid", min_size=2):
    """A strictly increasing, finite 1-D grid with at least ``min_size`` points."""
    g = as_1d(zgrid, name)
    if g.size < min_size:
        raise InputError(f"{name} must have at least {min_size} points, got {g.size}")
    if np.any(np.diff(g) <= 0):
        raise InputError(f"{name} must be strictly increasing")
    return g


def get_rng(random_state):
    """``numpy.random.Generator`` from None / int / Generator / RandomState-like seed."""
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    if random_state is None or isinstance(random_state, (int, np.integer)):
        if random_state is not None and random_state < 0:
            raise InputError(f"random_state must be a non-negative integer, got {random_state!r}")
        return np.random.default_rng(random_state)
    raise InputError(f"random_state must be None, an int or a numpy Generator, got {type(random_state).__name__}")
