"""``TorchPhotoZEstimator``: the skorch-based base class of pzkit's neural photo-z estimators."""

import copy
import hashlib
import json
import os
import sys
import warnings

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, EarlyStopping
from skorch.dataset import ValidSplit
from skorch.history import History
from torch.utils.data import BatchSampler, DataLoader, RandomSampler, SequentialSampler

from ..base import PhotoZEstimator
from ..exceptions import InputError, PzkitWarning
from .core import seed_everything, select_device, z_to_bin

_INFERENCE_BATCH = 8192
PRECISIONS = ("float32", "bf16-mixed")


class _BatchIterator(DataLoader):
    """skorch iterator that fetches each mini-batch with one fancy-indexing call.

    skorch's default (a DataLoader over single rows, then collation) spends about a third of a tabular
    network's epoch gathering rows one by one; the batches, their order and the RNG use are the same.
    """

    def __init__(self, dataset, batch_size=128, shuffle=False, **_):
        sampler = RandomSampler(dataset) if shuffle else SequentialSampler(dataset)
        super().__init__(dataset, batch_size=None, sampler=BatchSampler(sampler, batch_size, drop_last=False))


class _MixedPrecision(torch.nn.Module):
    """Runs the wrapped module under bfloat16 autocast and returns float32 outputs (weights stay float32)."""

    def __init__(self, inner, device_type):
        super().__init__()
        self.inner = inner
        self.device_type = device_type

    def forward(self, *args, **kwargs):
        with torch.autocast(self.device_type, dtype=torch.bfloat16):
            out = self.inner(*args, **kwargs)
        return tuple(o.float() for o in out) if isinstance(out, tuple) else out.float()


class _StepDecay(Callback):
    """Learning rate ``lr · gamma^(epoch // step)``, set at the start of each epoch.

    The same schedule as torch's ``StepLR``, but stateless: it depends only on the epoch number, so training
    resumed from a checkpoint follows it exactly (a re-created ``StepLR`` applies the decay twice at a boundary).
    """

    def __init__(self, lr, step, gamma):
        self.lr, self.step, self.gamma = lr, step, gamma

    def on_epoch_begin(self, net, **kwargs):
        epoch = len(net.history) - 1  # skorch has already opened this epoch's history row
        for group in net.optimizer_.param_groups:
            group["lr"] = self.lr * self.gamma ** (epoch // self.step)


class _EpochCheckpoint(Callback):
    """Saves everything needed to continue a member's training bit-identically after each epoch.

    The file (``torch.save`` of tensors and plain Python values only, read back with ``weights_only=True``)
    holds the weights, the optimizer state, skorch's history and the torch/numpy RNG states; it is written
    to a temporary name and renamed, so a kill at any moment leaves either the previous or the new epoch.
    """

    def __init__(self, path, fingerprint):
        self.path = path
        self.fingerprint = fingerprint

    def on_epoch_end(self, net, **kwargs):
        state = {
            "fingerprint": self.fingerprint,
            "module": net.module_.state_dict(),
            "optimizer": net.optimizer_.state_dict(),
            "history": json.loads(json.dumps(net.history.to_list(), default=float)),
            "torch_rng": torch.get_rng_state(),
            "numpy_rng": json.dumps(np.random.get_state(legacy=False), default=_jsonable),
        }
        tmp = f"{self.path}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.path)


def _jsonable(value):
    return value.tolist() if isinstance(value, np.ndarray) else int(value)


class _EpochProgress(Callback):
    """One tqdm bar per network over epochs, with the latest training loss."""

    def __init__(self, desc):
        self.desc = desc

    def on_train_begin(self, net, **kwargs):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=net.max_epochs, desc=self.desc, unit="epoch", file=sys.stderr, leave=False)

    def on_epoch_end(self, net, **kwargs):
        self.bar.set_postfix(loss=f"{net.history[-1, 'train_loss']:.4f}")
        self.bar.update(1)

    def on_train_end(self, net, **kwargs):
        self.bar.close()


class TorchPhotoZEstimator(PhotoZEstimator):
    """Base class of the torch plugins: classifier networks over the grid's redshift bins, trained with skorch.

    A subclass implements ``_build_module(n_features, n_bins)``, returning a ``torch.nn.Module`` that maps a
    float32 batch (B, n_features) to logits (B, n_bins). It may override ``_training_targets`` /
    ``_net_class`` for multi-task losses and side inputs.

    The base class standardises the features (if ``standardize``), trains ``n_members`` networks from seeds
    derived from ``random_state`` with skorch (Adam, learning rate ``lr`` divided by ``1/lr_gamma`` every
    ``lr_step`` epochs, optional early stopping on a validation fraction), and returns the average of the
    members' softmax outputs as a ``qp.hist`` PDF on the bins between grid points. Inference runs in float64
    so that results do not depend on how rows are batched.

    Model files hold the weights as plain arrays (through ``__getstate__``), so ``pzkit.load`` never unpickles.

    ``precision="bf16-mixed"`` trains under bfloat16 autocast (weights and optimizer stay float32; inference
    is always float64): about 2× faster on CPUs with AVX-512-BF16/AMX and on GPUs, at a small accuracy cost
    that the benchmarks report. ``checkpoint_dir`` saves each member's state after every epoch; a ``fit``
    interrupted (Ctrl-C, kill, crash) and started again with the same parameters and data resumes from the
    last completed epoch and gives the same model as an uninterrupted fit. An interrupted ``fit`` raises
    (skorch alone would return a silently under-trained network).
    """

    def __init__(self, zmin=0.0, zmax=3.0, nzbins=301, point_estimate="mode", random_state=None, max_epochs=100,
                 batch_size=512, lr=1e-3, lr_step=25, lr_gamma=0.1, n_members=1, standardize=True,
                 early_stopping=False, valid_fraction=0.1, patience=10, device="auto", precision="float32",
                 checkpoint_dir=None, verbose=0):
        super().__init__(zmin=zmin, zmax=zmax, nzbins=nzbins, point_estimate=point_estimate,
                         random_state=random_state)
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.lr_step = lr_step
        self.lr_gamma = lr_gamma
        self.n_members = n_members
        self.standardize = standardize
        self.early_stopping = early_stopping
        self.valid_fraction = valid_fraction
        self.patience = patience
        self.device = device
        self.precision = precision
        self.checkpoint_dir = checkpoint_dir
        self.verbose = verbose

    # ------------------------------------------------------------------ to implement / override
    def _build_module(self, n_features, n_bins):
        raise NotImplementedError(f"{type(self).__name__} must implement _build_module(n_features, n_bins)")

    def _net_class(self):
        return NeuralNet

    def _criterion(self):
        return torch.nn.CrossEntropyLoss

    def _training_data(self, Xs, y, **side_inputs):
        """(X, y) as skorch receives them; default: features and the bin index of each redshift."""
        return Xs, z_to_bin(y, self.zgrid_)

    # ------------------------------------------------------------------ training
    def _check_torch_params(self):
        for name in ("max_epochs", "batch_size", "n_members", "lr_step"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if not (isinstance(self.lr, (float, int)) and self.lr > 0):
            raise InputError(f"lr must be a positive number, got {self.lr!r}")
        if self.early_stopping and not 0 < self.valid_fraction < 1:
            raise InputError(f"valid_fraction must lie in (0, 1), got {self.valid_fraction!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")

    def _standardise(self, X):
        return ((X - self.mean_) / self.scale_).astype(np.float32)

    def _fit(self, X, y, **side_inputs):
        self._check_torch_params()
        if self.standardize:
            self.mean_ = X.mean(axis=0)
            scale = X.std(axis=0)
            self.scale_ = np.where(scale > 0, scale, 1.0)
        else:
            self.mean_ = np.zeros(X.shape[1])
            self.scale_ = np.ones(X.shape[1])
        device = select_device(self.device)
        n_bins = len(self.zgrid_) - 1
        Xt, yt = self._training_data(self._standardise(X), y, **side_inputs)
        seeds = self._rng().integers(0, 2**31 - 1, size=self.n_members)
        fingerprint = self._checkpoint_fingerprint(Xt, yt, seeds) if self.checkpoint_dir else None
        modules, histories = [], []
        for m, seed in enumerate(seeds):
            seed_everything(seed)
            callbacks = [("lr_schedule", _StepDecay(self.lr, self.lr_step, self.lr_gamma))]
            train_split = None
            if self.early_stopping:
                train_split = ValidSplit(self.valid_fraction, stratified=False, random_state=int(seed))
                callbacks.append(("early_stopping", EarlyStopping(patience=self.patience, load_best=True)))
            if self.verbose:
                callbacks.append(("progress", _EpochProgress(f"{type(self).__name__} member {m + 1}/{self.n_members}")))
            path = None
            if fingerprint is not None:
                os.makedirs(self.checkpoint_dir, exist_ok=True)
                path = os.path.join(self.checkpoint_dir, f"member{m}.pt")
                callbacks.append(("checkpoint", _EpochCheckpoint(path, fingerprint)))
            module = self._build_module(X.shape[1], n_bins)
            if self.precision == "bf16-mixed":
                module = _MixedPrecision(module, torch.device(device).type)
            net = self._net_class()(
                module=module,
                criterion=self._criterion(),
                optimizer=torch.optim.Adam,
                lr=self.lr,
                max_epochs=self.max_epochs,
                batch_size=self.batch_size,
                iterator_train=_BatchIterator,
                iterator_valid=_BatchIterator,
                iterator_train__shuffle=True,
                train_split=train_split,
                callbacks=callbacks,
                device=device,
                verbose=0,
            )
            done = self._resume(net, path, fingerprint)
            if done < self.max_epochs:
                net.partial_fit(Xt, yt, epochs=self.max_epochs - done)
            if len(net.history) < self.max_epochs and not self._stopped_early(net):
                where = f"; the checkpoint in {self.checkpoint_dir!r} resumes it" if path else ""
                raise KeyboardInterrupt(f"training of member {m + 1} was interrupted after "
                                        f"{len(net.history)} of {self.max_epochs} epochs{where}")
            trained = net.module_.to("cpu").eval()
            modules.append(trained.inner if isinstance(trained, _MixedPrecision) else trained)
            histories.append([float(h["train_loss"]) for h in net.history])
        self.modules_ = modules
        self.loss_history_ = histories
        self.n_bins_ = n_bins
        self._prepare_inference()

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_fingerprint(self, Xt, yt, seeds):
        """Hash of the parameters and training data: a checkpoint resumes only the fit that wrote it."""
        h = hashlib.sha256()
        params = {k: v for k, v in self.get_params(deep=False).items() if k not in ("verbose", "checkpoint_dir")}
        h.update(repr(sorted(params.items())).encode())
        for part in (Xt, yt, seeds):
            arrays = part.values() if isinstance(part, dict) else [part]
            for a in arrays:
                h.update(np.ascontiguousarray(a).tobytes())
        return h.hexdigest()

    @staticmethod
    def _stopped_early(net):
        # skorch's EarlyStopping ends training by raising KeyboardInterrupt too; tell it from a real interrupt
        cb = dict(net.callbacks_).get("early_stopping")
        return cb is not None and getattr(cb, "misses_", 0) >= cb.patience

    def _resume(self, net, path, fingerprint):
        """Load a matching checkpoint into ``net``; return the number of epochs it had completed (0 if none)."""
        net.initialize()
        if path is None or not os.path.exists(path):
            return 0
        try:
            state = torch.load(path, weights_only=True)
        except Exception as exc:  # a truncated file from a crash mid-write cannot happen (rename), but be clear
            raise InputError(f"checkpoint {path!r} cannot be read ({exc}); delete it to start over") from exc
        if state.get("fingerprint") != fingerprint:
            warnings.warn(f"checkpoint {path!r} was written by a fit with other parameters or data; "
                          "it is ignored and overwritten", PzkitWarning, stacklevel=4)
            return 0
        net.module_.load_state_dict(state["module"])
        net.optimizer_.load_state_dict(state["optimizer"])
        net.history = History(state["history"])
        torch.set_rng_state(state["torch_rng"])
        np_state = json.loads(state["numpy_rng"])
        np.random.set_state(np_state)
        return len(net.history)

    # ------------------------------------------------------------------ inference
    def _prepare_inference(self):
        # float64 copies, built once after fit/load, so predict never mutates the estimator
        self._inference_cache = [copy.deepcopy(m).double().eval() for m in self.modules_]

    def _logits(self, module, X64):
        return module(X64)

    def _member_probabilities(self, X):
        Xs = torch.from_numpy((X - self.mean_) / self.scale_)
        out = np.zeros((X.shape[0], self.n_bins_))
        with torch.no_grad():
            for module in self._inference_cache:
                for start in range(0, X.shape[0], _INFERENCE_BATCH):
                    logits = self._logits(module, Xs[start:start + _INFERENCE_BATCH])
                    out[start:start + _INFERENCE_BATCH] += torch.softmax(logits, dim=1).numpy()
        return out / len(self.modules_)

    def _estimate_pdf(self, X, **side_inputs):
        probs = self._member_probabilities(X)
        return self._hist_ensemble(probs / np.diff(self.zgrid_)[None, :])

    # ------------------------------------------------------------------ persistence without pickle
    def __getstate__(self):
        state = {k: v for k, v in self.__dict__.items() if k not in ("modules_", "_inference_cache")}
        if "modules_" in self.__dict__:
            state["module_states_"] = [
                {name: t.detach().cpu().numpy().copy() for name, t in m.state_dict().items()} for m in self.modules_
            ]
        return state

    def __setstate__(self, state):
        state = dict(state)
        weights = state.pop("module_states_", None)
        self.__dict__.update(state)
        if weights is not None:
            modules = []
            for member in weights:
                module = self._build_module(self.n_features_in_, self.n_bins_)
                module.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in member.items()})
                modules.append(module.eval())
            self.modules_ = modules
            self._prepare_inference()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags

