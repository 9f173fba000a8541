"""Shared pieces of pzkit's image (CNN) plugins: input validation, side-input checks, augmentation, a small
convolutional encoder, fixed-shape batched inference and training-loop helpers.

Written once here for ``bias_cnn``, ``adversarial_da`` and ``pita``.
"""

import hashlib
import json
import os
import sys
import warnings

import numpy as np
import torch
from torch import nn

from ..base import PhotoZEstimator
from ..exceptions import InputError, InputTypeError, NotFittedError, PzkitWarning

#: Rows per forward pass at inference. Every pass sees exactly this many rows (the last one zero-padded), so
#: the kernels and their floating-point reductions are the same whatever the caller's chunking: estimating in
#: chunks gives bit-identical PDFs.
INFERENCE_BATCH = 256


# ---------------------------------------------------------------------------------------------- validation
def check_images(X, name="X", n_bands=None, image_shape=None, min_size=1):
    """``X`` as a float32 array (n, bands, height, width) of finite pixels, or a :class:`pzkit` error naming it.

    ``n_bands`` / ``image_shape`` (height, width), when given, are what the estimator was fitted on.
    """
    if hasattr(X, "to_numpy") and not isinstance(X, np.ndarray):
        raise InputTypeError(f"{name} must be an image array (n_objects, n_bands, height, width), "
                             f"not a {type(X).__name__}")
    try:
        arr = np.asarray(X)
    except Exception as exc:  # ragged nested lists and the like
        raise InputTypeError(f"{name} cannot be read as an image array: {exc}") from exc
    if arr.dtype.kind not in "fiub":
        raise InputTypeError(f"{name} must hold numeric pixels, got dtype {arr.dtype}")
    if arr.ndim != 4:
        raise InputError(f"{name} must be a 4-D image array (n_objects, n_bands, height, width); "
                         f"got {arr.ndim}-D with shape {arr.shape}")
    if arr.shape[0] == 0:
        raise InputError(f"{name} holds 0 images (shape {arr.shape}); at least one is needed")
    if n_bands is not None and arr.shape[1] != n_bands:
        raise InputError(f"{name} has {arr.shape[1]} band(s) but the estimator was fitted on {n_bands}")
    if image_shape is not None and tuple(arr.shape[2:]) != tuple(image_shape):
        raise InputError(f"{name} has {arr.shape[2]}×{arr.shape[3]} pixel images but the estimator was fitted "
                         f"on {image_shape[0]}×{image_shape[1]}")
    if min(arr.shape[2:]) < min_size:
        raise InputError(f"{name} images are {arr.shape[2]}×{arr.shape[3]} pixels; at least "
                         f"{min_size}×{min_size} are needed")
    def first_row(mask):
        per_image = mask.reshape(arr.shape[0], -1).any(axis=1)
        return int(per_image.sum()), int(np.flatnonzero(per_image)[0])

    bad = ~np.isfinite(arr)
    if bad.any():
        n_img, first = first_row(bad)
        raise InputError(f"{name} has {int(bad.sum())} NaN/inf pixel(s) in {n_img} image(s) "
                         f"(first at row {first}); mask or inpaint them before estimating")
    if arr.dtype.itemsize > 4 or arr.dtype.kind in "iu":
        # the networks run in float32: a value beyond its range would silently become inf
        huge = np.abs(arr) > np.finfo(np.float32).max
        if huge.any():
            n_img, first = first_row(huge)
            raise InputError(f"{name} has {int(huge.sum())} pixel value(s) beyond the float32 range (±3.4e38) in "
                             f"{n_img} image(s) (first at row {first}); rescale the images")
    return arr.astype(np.float32, copy=False)


def check_per_object(value, name, n_rows, n_cols=None, allow_nan=False, dtype=np.float64):
    """A side input with one entry (``n_cols`` None) or one row of ``n_cols`` per object, or a pzkit error.

    ``n_cols="any"`` accepts any number of columns (2-D). The error names the argument and the expected shape.
    """
    if value is None:
        raise InputError(f"{name} is required")
    try:
        arr = np.asarray(value, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise InputTypeError(f"{name} must be numeric: {exc}") from exc
    if n_cols is None:
        ok = arr.ndim == 1 and arr.shape[0] == n_rows
        expected = f"({n_rows},)"
    else:
        ok = arr.ndim == 2 and arr.shape[0] == n_rows and (n_cols == "any" or arr.shape[1] == n_cols)
        expected = f"({n_rows}, {'n' if n_cols == 'any' else n_cols})"
    if not ok:
        raise InputError(f"{name} must have shape {expected}, one entry per object; got shape {arr.shape}")
    bad = ~np.isfinite(arr) if not allow_nan else np.isinf(arr)
    if bad.any():
        raise InputError(f"{name} has {int(bad.sum())} non-finite value(s) (first at row "
                         f"{int(np.flatnonzero(bad.reshape(arr.shape[0], -1).any(axis=1))[0])})")
    return arr


class ImagePhotoZEstimator(PhotoZEstimator):
    """Base class of the image plugins: ``X`` is an image array (n, bands, height, width), not a feature table.

    Validation (4-D, numeric, finite pixels, band count and stamp size equal to the fitted ones, a minimum
    stamp size ``_min_image_size``) replaces the tabular one; everything else (labels, grid, qp output,
    ancil, ``score``, persistence) is :class:`pzkit.PhotoZEstimator`'s. After ``fit``: ``n_bands_in_``,
    ``image_shape_`` and ``n_features_in_`` (= number of bands, for scikit-learn's bookkeeping).
    """

    #: smallest accepted stamp side in pixels (e.g. a crop size)
    _min_image_size = 1
    _tags = {"X_type": "images"}

    def _validate_X(self, X, reset):
        if not reset:
            if not hasattr(self, "zgrid_"):
                raise NotFittedError(
                    f"This {type(self).__name__} instance is not fitted yet; call fit(X, y) before using it")
            self._check_point_estimate()
            X = check_images(X, "X", self.n_bands_in_, self.image_shape_, self._min_image_size)
        else:
            X = check_images(X, "X", min_size=self._min_image_size)
            self.n_bands_in_ = X.shape[1]
            self.image_shape_ = tuple(int(s) for s in X.shape[2:])
            self.n_features_in_ = X.shape[1]
        return X, None

    # ------------------------------------------------------------------ persistence without pickle
    #: name of the attribute holding the fitted network (a module, or a list of modules for ensembles)
    _torch_state_attr = None

    def _new_module(self):
        """An untrained network of the fitted architecture, into which saved weights are loaded."""
        raise NotImplementedError(f"{type(self).__name__} must implement _new_module() to be saved")

    def __getstate__(self):
        # model files hold the weights as plain arrays: pzkit.load never unpickles torch objects
        attr = self._torch_state_attr
        state = {k: v for k, v in self.__dict__.items() if k != attr}
        if attr is not None and attr in self.__dict__:
            nets = self.__dict__[attr]
            state["_torch_weights"] = ([module_state(m) for m in nets] if isinstance(nets, list)
                                       else module_state(nets))
        return state

    def __setstate__(self, state):
        state = dict(state)
        weights = state.pop("_torch_weights", None)
        self.__dict__.update(state)
        if weights is not None:
            nets = ([load_module_state(self._new_module(), w) for w in weights] if isinstance(weights, list)
                    else load_module_state(self._new_module(), weights))
            self.__dict__[self._torch_state_attr] = nets

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        # scikit-learn's estimator checks feed 2-D tables; an image estimator cannot take them
        tags.input_tags.two_d_array = False
        tags.input_tags.three_d_array = False
        return tags


# ---------------------------------------------------------------------------------------------- augmentation
def dihedral(x, k):
    """One of the 8 symmetries of the square on the last two axes: ``k % 4`` quarter turns, then a flip if k ≥ 4."""
    x = torch.rot90(x, int(k) % 4, dims=(-2, -1))
    return torch.flip(x, dims=(-1,)) if k >= 4 else x


def random_dihedral(x, generator=None):
    """Each image of the batch (B, C, H, H) under an independently drawn 90° rotation and flip."""
    if x.shape[-1] != x.shape[-2]:
        raise InputError(f"rotation augmentation needs square images, got {x.shape[-2]}×{x.shape[-1]}")
    ks = torch.randint(0, 8, (x.shape[0],), generator=generator)
    out = torch.empty_like(x)
    for k in range(8):
        sel = ks == k
        if sel.any():
            out[sel] = dihedral(x[sel], k)
    return out


# ---------------------------------------------------------------------------------------------- modules
class ConvEncoder(nn.Module):
    """Small CNN: blocks of ``convs_per_block`` 3×3 convolutions (+ activation) per width, 2×2 max-pool between
    blocks, global average pool at the end. ``forward`` returns the flat representation (B, ``n_out``)."""

    def __init__(self, n_bands, widths=(32, 64, 128), convs_per_block=2, activation=nn.ReLU, batch_norm=False):
        super().__init__()
        layers, c = [], n_bands
        for i, w in enumerate(widths):
            for _ in range(convs_per_block):
                layers.append(nn.Conv2d(c, w, 3, padding=1))
                if batch_norm:
                    layers.append(nn.BatchNorm2d(w))
                layers.append(activation())
                c = w
            layers.append(nn.MaxPool2d(2) if i < len(widths) - 1 else nn.AdaptiveAvgPool2d(1))
        self.features = nn.Sequential(*layers)
        self.n_out = c

    def forward(self, x):
        return self.features(x).flatten(1)


# ---------------------------------------------------------------------------------------------- loops
def fixed_batch_forward(fn, arrays, batch_size=INFERENCE_BATCH, device="cpu"):
    """``fn(*tensors)`` over ``arrays`` (numpy, same first axis) in passes of exactly ``batch_size`` rows.

    The last pass is zero-padded, so every call runs the same kernels: results do not depend on how the caller
    chunks its rows. Returns the concatenated output as float64 numpy (a tuple if ``fn`` returns a tuple).
    """
    arrays = [np.asarray(a) for a in arrays]
    n = arrays[0].shape[0]
    outs = []
    with torch.no_grad():
        for start in range(0, n, batch_size):
            stop = min(start + batch_size, n)
            batch = []
            for a in arrays:
                block = a[start:stop]
                if stop - start < batch_size:
                    pad = np.zeros((batch_size - (stop - start),) + a.shape[1:], dtype=a.dtype)
                    block = np.concatenate([block, pad])
                batch.append(torch.from_numpy(np.ascontiguousarray(block)).to(device))
            res = fn(*batch)
            res = res if isinstance(res, tuple) else (res,)
            outs.append([r[: stop - start].detach().cpu().double().numpy() for r in res])
    cols = [np.concatenate([o[i] for o in outs]) for i in range(len(outs[0]))]
    return cols[0] if len(cols) == 1 else tuple(cols)


def minibatches(n, batch_size, rng, drop_last=False):
    """Shuffled index arrays covering ``range(n)`` once (an epoch), drawn from the numpy Generator ``rng``."""
    order = rng.permutation(n)
    stop = n - (n % batch_size) if drop_last and n >= batch_size else n
    for start in range(0, stop, batch_size):
        yield order[start:start + batch_size]


def progress(total, desc, verbose, unit="epoch"):
    """A tqdm bar on stderr when ``verbose``, else a no-op object with the same ``update``/``set_postfix``/``close``."""
    if verbose:
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, leave=False)

    class _Silent:
        def update(self, *a, **k):
            pass

        def set_postfix(self, *a, **k):
            pass

        def close(self):
            pass

    return _Silent()


def module_state(module):
    """A module's weights as plain numpy arrays (what model files store: no pickle of torch objects)."""
    return {k: t.detach().cpu().numpy().copy() for k, t in module.state_dict().items()}


def load_module_state(module, state):
    """Load :func:`module_state`'s arrays back into ``module``; returns it in eval mode on the CPU."""
    module.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    return module.to("cpu").eval()


# ---------------------------------------------------------------------------------------------- checkpoints
def fit_fingerprint(estimator, *arrays, exclude=("verbose", "checkpoint_dir")):
    """Hash of an estimator's parameters and its training arrays: a checkpoint resumes only the fit that wrote it."""
    h = hashlib.sha256()
    params = {k: v for k, v in estimator.get_params(deep=False).items() if k not in exclude}
    h.update(repr(sorted(params.items())).encode())
    for a in arrays:
        if a is not None:
            h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class LoopCheckpoint:
    """Checkpoint of a hand-written training loop, for resuming a fit bit-identically after an interruption.

    ``save`` stores the modules' and optimizers' states, the loop's own counters/history (plain Python
    values), and every random state the loop draws from (torch's global RNG, a ``torch.Generator``, a numpy
    ``Generator``) with ``torch.save``; ``load`` reads it back with ``weights_only=True`` (no code can run) only
    if the fingerprint matches, else warns and starts over. Files are written under a temporary name and
    renamed, so a kill leaves the previous or the new checkpoint, never half of one.
    """

    def __init__(self, directory, name, fingerprint):
        self.path = None if directory is None else os.path.join(directory, f"{name}.pt")
        self.fingerprint = fingerprint

    def save(self, modules, optimizers, generator, rng, tensors=None, **loop_state):
        """``modules``/``optimizers``: dicts of objects with ``state_dict`` (schedulers count as optimizers);
        ``tensors``: other state as tensors (e.g. a queue); ``loop_state``: JSON-able counters and history."""
        if self.path is None:
            return
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        state = {
            "fingerprint": self.fingerprint,
            "modules": {k: m.state_dict() for k, m in modules.items() if m is not None},
            "optimizers": {k: o.state_dict() for k, o in optimizers.items() if o is not None},
            "torch_rng": torch.get_rng_state(),
            "generator": generator.get_state() if generator is not None else None,
            # PCG64's state holds 128-bit integers, which weights_only loading does not take: keep it as JSON
            "numpy_rng": json.dumps(rng.bit_generator.state) if rng is not None else None,
            "loop": json.dumps(loop_state, default=float),
            "tensors": dict(tensors or {}),
        }
        tmp = f"{self.path}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    def load(self, modules, optimizers, generator, rng):
        """Restore a matching checkpoint into the given objects; return the saved loop state (with the saved
        ``tensors`` under the key ``"tensors"``), or None."""
        if self.path is None or not os.path.exists(self.path):
            return None
        try:
            state = torch.load(self.path, weights_only=True)
        except Exception as exc:
            raise InputError(f"checkpoint {self.path!r} cannot be read ({exc}); delete it to start over") from exc
        if state.get("fingerprint") != self.fingerprint:
            warnings.warn(f"checkpoint {self.path!r} was written by a fit with other parameters or data; it is "
                          "ignored and overwritten", PzkitWarning, stacklevel=3)
            return None
        for k, m in modules.items():
            if m is not None:
                m.load_state_dict(state["modules"][k])
        for k, o in optimizers.items():
            if o is not None:
                o.load_state_dict(state["optimizers"][k])
        torch.set_rng_state(state["torch_rng"])
        if generator is not None:
            generator.set_state(state["generator"])
        if rng is not None:
            rng.bit_generator.state = json.loads(state["numpy_rng"])
        loop = json.loads(state["loop"])
        loop["tensors"] = state.get("tensors", {})
        return loop
