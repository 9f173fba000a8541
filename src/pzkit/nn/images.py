"""Shared pieces of pzkit's image (CNN) plugins: the estimator base, input validation, side-input checks,
augmentation and fixed-shape batched inference.

Written once here for ``bias_cnn``, ``adversarial_da`` and ``pita``; training is :mod:`pzkit.nn.engine`'s.
"""

import numpy as np
import torch

from ..exceptions import InputError, InputTypeError, NotFittedError
from .engine import NeuralPhotoZEstimator

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


def _is_table(X):
    """True for what is read as a feature table rather than images: sparse matrices, DataFrames and arrays of
    at most two dimensions."""
    import scipy.sparse

    if scipy.sparse.issparse(X) or hasattr(X, "columns"):
        return True
    try:
        return np.asarray(X).ndim <= 2  # no copy for arrays; np.ndim would bypass __array__
    except (ValueError, TypeError):  # ragged nested sequences: let the image validation name the problem
        return False


class ImagePhotoZEstimator(NeuralPhotoZEstimator):
    """Base class of the image plugins: ``X`` is an image array (n, bands, height, width), not a feature table.

    Validation (4-D, numeric, finite pixels, band count and stamp size equal to the fitted ones, a minimum
    stamp size ``_min_image_size``) replaces the tabular one. A 2-D table (n, d) is read as d-band 1×1 stamps
    (pre-computed features as images), which is also how scikit-learn's estimator checks exercise these
    estimators. Everything else (labels, grid, qp output, ancil, ``score``, training, persistence) is
    :class:`~pzkit.nn.engine.NeuralPhotoZEstimator`'s. After ``fit``: ``n_bands_in_``, ``image_shape_`` and
    ``n_features_in_`` (= number of bands, for scikit-learn's bookkeeping).
    """

    #: smallest accepted stamp side in pixels (e.g. a crop size)
    _min_image_size = 1
    _tags = {"X_type": "images"}

    def _validate_X(self, X, reset):
        if _is_table(X):
            # a feature table: the tabular validation (scikit-learn's), then d-band 1×1 stamps
            X, ids = super()._validate_X(X, reset)
            if reset:
                self.n_bands_in_, self.image_shape_ = X.shape[1], (1, 1)
            elif tuple(self.image_shape_) != (1, 1):
                raise InputError(f"X is a 2-D table but the estimator was fitted on {self.image_shape_[0]}×"
                                 f"{self.image_shape_[1]} pixel images; pass images (n, bands, height, width)")
            return X.astype(np.float32)[:, :, None, None], ids
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

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
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
