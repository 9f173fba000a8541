"""The one training engine of pzkit's torch plugins, built on skorch.

A plugin describes *what* to train; the engine owns *how*:

* :class:`TrainingNet` — a thin :class:`skorch.NeuralNet` subclass. It adds a per-net numpy ``Generator`` and
  ``torch.Generator`` (``rng_``, ``generator_``) seeded from ``seed``, a step counter ``steps_done_``, batches
  drawn from ``rng_`` (a shuffled pass over the rows, or ``steps_per_epoch`` batches from :meth:`draw_batch`),
  optional bfloat16 autocast, per-batch loss parts averaged into the epoch's history row, and
  :meth:`get_extra_state` / :meth:`set_extra_state` for state a checkpoint must carry (a queue, sampler buffers).
  A plugin overrides ``get_loss`` (standard supervised step) or ``train_step`` (anything else), as in skorch.
* callbacks — :class:`LearningRateSchedule`, :class:`ResumableCheckpoint` (bit-exact resume),
  :class:`TrainingProgress`, :class:`ThreadBudget`; skorch's ``EarlyStopping`` and ``History`` as they are.
* :class:`NeuralPhotoZEstimator` — the estimator base: parameters every torch plugin shares (``max_epochs``,
  ``batch_size``, ``lr``, ``n_members``, ``device``, ``precision``, ``n_threads``, ``callbacks``,
  ``checkpoint_dir``, ``verbose``), ensemble members from seeds derived from ``random_state``, one
  :meth:`~NeuralPhotoZEstimator._train` call per training phase, randomness confined to local generators, and
  model files that hold the weights as plain arrays.
"""

import contextlib
import hashlib
import json
import os
import random
import sys
import time
import warnings

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback
from skorch.history import History

from ..base import PhotoZEstimator
from ..exceptions import InputError, PzkitWarning
from .core import select_device

PRECISIONS = ("float32", "bf16-mixed")


# ---------------------------------------------------------------------------------------------- randomness
@contextlib.contextmanager
def local_random_state(seed, cuda=False):
    """Run the block with torch's global generator seeded from ``seed``; afterwards the global torch (CPU and
    CUDA), numpy and ``random`` states are exactly what they were.

    Dropout and weight initialisation draw from torch's global generator and cannot be given another one;
    forking it (``torch.random.fork_rng``) is how a fit stays free of global side effects. ``cuda=True`` (a
    fit on a GPU) forks the CUDA generators too, initialising CUDA first if needed.
    """
    py_state, np_state = random.getstate(), np.random.get_state()
    if cuda:
        torch.cuda.init()
    devices = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(int(seed))
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


# ---------------------------------------------------------------------------------------------- threads
def _cpu_times():
    """(busy, total) jiffies of the whole machine from /proc/stat, or None where it is not readable."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(v) for v in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


class _CpuMonitor:
    """Cores kept busy by *other* processes since the previous reading (machine busy − this process)."""

    def __init__(self):
        self.last = None
        self.estimate = None

    @staticmethod
    def sample():
        return _cpu_times(), time.process_time(), time.monotonic()

    def others_busy(self, min_interval=0.05, wait=True):
        """The estimate over the time since the previous reading. Without a reading at least ``min_interval``
        old, ``wait=True`` sleeps that long to take one; ``wait=False`` returns the previous estimate (None at
        first)."""
        now = self.sample()
        if now[0] is None:
            return None
        if self.last is None or now[2] - self.last[2] < min_interval:
            if not wait:
                self.last = self.last or now
                return self.estimate
            if self.last is None:
                self.last = now
            time.sleep(max(0.0, min_interval - (now[2] - self.last[2])))
            now = self.sample()
        (b0, t0), c0, w0 = self.last
        (b1, t1), c1, w1 = now
        self.last = now
        if t1 <= t0 or w1 <= w0:
            return self.estimate
        machine = (os.cpu_count() or 1) * (b1 - b0) / (t1 - t0)
        own = (c1 - c0) / (w1 - w0)
        self.estimate = max(0.0, machine - own)
        return self.estimate


#: inference reads the CPU counters without waiting: the estimate covers the time since the previous call
_INFERENCE_MONITOR = _CpuMonitor()


def available_threads():
    """Cores this process may use (its CPU affinity where the OS exposes it)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # macOS, Windows
        return os.cpu_count() or 1


def check_threads(n_threads):
    if n_threads in (None, "auto"):
        return n_threads
    if isinstance(n_threads, bool) or not isinstance(n_threads, (int, np.integer)) or n_threads < 1:
        raise InputError(f"n_threads must be 'auto', None or a positive integer, got {n_threads!r}")
    return int(n_threads)


@contextlib.contextmanager
def torch_threads(n):
    """Run the block with ``n`` torch intra-op threads (None: unchanged), restoring the previous count."""
    before = torch.get_num_threads()
    if n is not None and n != before:
        torch.set_num_threads(int(n))
    try:
        yield
    finally:
        if torch.get_num_threads() != before:
            torch.set_num_threads(before)


class ThreadBudget(Callback):
    """Keeps torch's intra-op thread count at the number of cores other processes leave idle.

    A parallel region ends when its slowest thread does; a thread sharing its core with another busy process
    is descheduled for whole time slices, and every operation waits for it. On a 2-core machine with one
    competing process that made a small network's fit 3–10× slower than on one thread. The budget is read from
    the machine's CPU counters (minus this process's own use) before training and at each epoch.
    """

    def __init__(self, max_threads=None, min_interval=1.0):
        self.max_threads = max_threads
        self.min_interval = min_interval

    def _set(self):
        others = self.monitor.others_busy()
        if others is None:
            return
        cap = self.max_threads or available_threads()
        torch.set_num_threads(int(max(1, min(cap, round(available_threads() - others)))))

    def on_train_begin(self, net, **kwargs):
        self.monitor = _CpuMonitor()
        self.last = time.monotonic()
        self._set()

    def on_epoch_begin(self, net, **kwargs):
        if time.monotonic() - self.last >= self.min_interval:
            self.last = time.monotonic()
            self._set()


# ---------------------------------------------------------------------------------------------- the net
class _TrainBatches:
    """One epoch of training batches: a shuffled pass over the rows (``steps_per_epoch`` None) or
    ``steps_per_epoch`` batches of rows chosen by ``net.draw_batch``; all draws come from ``net.rng_``."""

    def __init__(self, net, dataset):
        self.net, self.dataset = net, dataset

    def __iter__(self):
        net, n = self.net, len(self.dataset)
        if net.steps_per_epoch is None:
            order = net.rng_.permutation(n)
            bs = int(net.batch_size)
            stop = n - n % bs if net.drop_last and n >= bs else n
            batches = (order[i:i + bs] for i in range(0, stop, bs))
        else:
            batches = (net.draw_batch(n) for _ in range(int(net.steps_per_epoch)))
        for idx in batches:
            yield net.make_batch(self.dataset, idx)


class _SequentialBatches(torch.utils.data.DataLoader):
    """Validation batches in row order, each fetched with one fancy-indexing call."""

    def __init__(self, dataset, batch_size=128, **_):
        sampler = torch.utils.data.BatchSampler(torch.utils.data.SequentialSampler(dataset), batch_size, False)
        super().__init__(dataset, batch_size=None, sampler=sampler)


class RowIndex(torch.utils.data.Dataset):
    """A dataset of row numbers: for plugins whose batches are assembled in ``train_step`` (augmentation,
    paired domains, side inputs), the iterator hands out the rows and the net looks them up."""

    def __init__(self, n):
        self.n = int(n)

    def __len__(self):
        return self.n

    def __getitem__(self, idx):
        return torch.as_tensor(idx), torch.as_tensor(idx)


class TrainingNet(NeuralNet):
    """skorch's ``NeuralNet`` with pzkit's batching, local generators and resumable state.

    Parameters (beyond skorch's)
    ----------------------------
    seed : int
        Seed of ``rng_`` (numpy) and ``generator_`` (torch), the net's only random sources besides torch's
        global generator, which :class:`NeuralPhotoZEstimator` forks around training.
    steps_per_epoch : int or None
        None: an epoch is one shuffled pass over the rows. Otherwise an epoch is this many batches, each
        chosen by :meth:`draw_batch` (default: rows uniformly with replacement).
    drop_last : bool
        In a shuffled pass, drop the last incomplete batch.
    precision : {"float32", "bf16-mixed"}
        ``"bf16-mixed"`` runs training under bfloat16 autocast (weights and optimiser stay float32).
    """

    def __init__(self, module, *args, seed=0, steps_per_epoch=None, drop_last=False, precision="float32",
                 **kwargs):
        kwargs.setdefault("iterator_valid", _SequentialBatches)
        super().__init__(module, *args, **kwargs)
        self.seed = seed
        self.steps_per_epoch = steps_per_epoch
        self.drop_last = drop_last
        self.precision = precision

    # ------------------------------------------------------------------ state
    def initialize(self):
        super().initialize()
        self.rng_ = np.random.default_rng(int(self.seed))
        self.generator_ = torch.Generator().manual_seed(int(self.seed))
        self.steps_done_ = 0
        return self

    def get_extra_state(self):
        """State beyond modules, optimisers, history and generators that a checkpoint must carry:
        ``(tensors, values)``, a dict of tensors and a JSON-able dict."""
        return {}, {}

    def set_extra_state(self, tensors, values):
        """Restore what :meth:`get_extra_state` returned."""

    # ------------------------------------------------------------------ batches
    def get_iterator(self, dataset, training=False):
        if training:
            return _TrainBatches(self, dataset)
        return super().get_iterator(dataset, training=training)

    def draw_batch(self, n_rows):
        """Row indices of the next batch when ``steps_per_epoch`` is set."""
        return self.rng_.integers(0, n_rows, int(self.batch_size))

    def make_batch(self, dataset, idx):
        """The batch skorch's step receives for rows ``idx`` (one fancy-indexing call, arrays as tensors)."""
        return torch.utils.data.default_convert(dataset[idx])

    # ------------------------------------------------------------------ loop hooks
    def fit_loop(self, X, y=None, epochs=None, **fit_params):
        autocast = contextlib.nullcontext()
        if self.precision == "bf16-mixed":
            autocast = torch.autocast(torch.device(self.device).type, dtype=torch.bfloat16)
        with autocast:
            return super().fit_loop(X, y, epochs=epochs, **fit_params)

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        super().on_batch_end(net, batch=batch, training=training, **kwargs)
        if training:
            self.steps_done_ += 1
            for key, value in (kwargs.get("parts") or {}).items():
                self.history.record_batch(key, float(value))

    def on_epoch_end(self, net, **kwargs):
        super().on_epoch_end(net, **kwargs)
        batches = self.history[-1]["batches"]
        keys = {k for b in batches for k in b} - {"train_loss", "train_batch_size", "valid_loss",
                                                   "valid_batch_size"}
        for key in sorted(keys):
            values = [b[key] for b in batches if key in b]
            self.history.record(key, float(np.nanmean(values)) if np.isfinite(values).any() else float("nan"))

    def _set_training(self, training=True):
        # skorch switches every module's mode at every batch; walking the module tree each step costs ~5 % of a
        # small CNN's step, so switch only when the mode changes
        if getattr(self, "_training_mode", None) is not training:
            super()._set_training(training)
            self._training_mode = training

    def initialize_module(self):
        self._training_mode = None
        return super().initialize_module()

    def _zero_grad_optimizer(self, set_to_none=None):
        super()._zero_grad_optimizer(set_to_none=True)


# ---------------------------------------------------------------------------------------------- callbacks
class LearningRateSchedule(Callback):
    """Sets every optimiser's learning rate from a function of the epoch (``unit="epoch"``) or of the step.

    Stateless: the rate depends only on the counters a checkpoint restores, so a resumed fit follows the
    schedule exactly (a re-created torch scheduler would apply a decay twice at a boundary).
    """

    def __init__(self, fn, unit="epoch"):
        self.fn = fn
        self.unit = unit

    def _apply(self, net, count):
        lr = float(self.fn(count))
        for name in net._optimizers:
            for group in getattr(net, name + "_").param_groups:
                group["lr"] = lr

    def on_epoch_begin(self, net, **kwargs):
        if self.unit == "epoch":
            self._apply(net, len(net.history) - 1)  # skorch has already opened this epoch's row

    def on_batch_begin(self, net, training=False, **kwargs):
        if self.unit == "step" and training:
            self._apply(net, net.steps_done_)


def constant_then_drop(lr, lr_late, drop_at):
    """Step function: ``lr`` before ``drop_at``, ``lr_late`` from it on."""
    return lambda count: lr if count < drop_at else lr_late


def step_decay(lr, step, gamma):
    """``lr · gamma^(count // step)`` (torch's ``StepLR``)."""
    return lambda count: lr * gamma ** (count // step)


def cosine_decay(lr, total):
    """``lr · (1 + cos(π count / total)) / 2`` (torch's ``CosineAnnealingLR`` to 0)."""
    return lambda count: lr * 0.5 * (1.0 + np.cos(np.pi * min(count, total) / max(total, 1)))


class TrainingProgress(Callback):
    """A tqdm bar over the phase's epochs on stderr, showing the latest training loss."""

    def __init__(self, desc, total, initial=0):
        self.desc, self.total, self.initial = desc, total, initial

    def on_train_begin(self, net, **kwargs):
        from tqdm.auto import tqdm

        self.bar = tqdm(total=self.total, initial=self.initial, desc=self.desc, unit="epoch", file=sys.stderr,
                        leave=False)

    def on_epoch_end(self, net, **kwargs):
        self.bar.set_postfix(loss=f"{net.history[-1, 'train_loss']:.4f}")
        self.bar.update(1)

    def on_train_end(self, net, **kwargs):
        self.bar.close()


def _jsonable(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


class ResumableCheckpoint(Callback):
    """Saves, after every epoch, everything needed to continue training bit-identically.

    The file holds every module and optimiser of the net, skorch's history, the step counter, the net's
    generators, torch's global generator and the net's extra state, written with ``torch.save`` (tensors and
    plain values only; read back with ``weights_only=True``, so loading runs no code) under a temporary name
    and renamed: a kill at any moment leaves the previous or the new epoch, never half of one.
    """

    def __init__(self, path, fingerprint):
        self.path = path
        self.fingerprint = fingerprint

    def on_epoch_end(self, net, **kwargs):
        tensors, values = net.get_extra_state()
        state = {
            "fingerprint": self.fingerprint,
            "modules": {name: getattr(net, name + "_").state_dict() for name in net._modules},
            "optimizers": {name: getattr(net, name + "_").state_dict() for name in net._optimizers},
            "history": json.dumps(net.history.to_list(), default=_jsonable),
            "steps_done": int(net.steps_done_),
            "torch_rng": torch.get_rng_state(),
            "generator": net.generator_.get_state(),
            # PCG64's state holds 128-bit integers, which weights_only loading refuses: keep it as JSON
            "numpy_rng": json.dumps(net.rng_.bit_generator.state),
            "extra_tensors": dict(tensors),
            "extra_values": json.dumps(values, default=_jsonable),
        }
        os.makedirs(os.path.dirname(self.path) or ".", exist_ok=True)
        tmp = f"{self.path}.tmp"
        torch.save(state, tmp)
        os.replace(tmp, self.path)

    def restore(self, net):
        """Load a matching checkpoint into the initialised ``net``; return the epochs it had completed."""
        if not os.path.exists(self.path):
            return 0
        try:
            state = torch.load(self.path, weights_only=True)
        except Exception as exc:
            raise InputError(f"checkpoint {self.path!r} cannot be read ({exc}); delete it to start over") from exc
        if state.get("fingerprint") != self.fingerprint:
            warnings.warn(f"checkpoint {self.path!r} was written by a fit with other parameters or data; it is "
                          "ignored and overwritten", PzkitWarning, stacklevel=2)
            return 0
        for name, sd in state["modules"].items():
            getattr(net, name + "_").load_state_dict(sd)
        for name, sd in state["optimizers"].items():
            getattr(net, name + "_").load_state_dict(sd)
        net.history = History(json.loads(state["history"]))
        net.steps_done_ = state["steps_done"]
        torch.set_rng_state(state["torch_rng"])
        net.generator_.set_state(state["generator"])
        net.rng_.bit_generator.state = json.loads(state["numpy_rng"])
        net.set_extra_state(state["extra_tensors"], json.loads(state["extra_values"]))
        return len(net.history)


# ---------------------------------------------------------------------------------------------- estimator base
def fit_fingerprint(estimator, *arrays, exclude=("verbose", "checkpoint_dir", "n_threads", "callbacks")):
    """Hash of an estimator's parameters and its training arrays: a checkpoint resumes only the fit that wrote it."""
    h = hashlib.sha256()
    params = {k: v for k, v in estimator.get_params(deep=False).items() if k not in exclude}
    h.update(repr(sorted(params.items())).encode())
    for a in arrays:
        if a is None:
            continue
        for part in (a.values() if isinstance(a, dict) else [a]):
            h.update(np.ascontiguousarray(part).tobytes())
    return h.hexdigest()


def module_state(module):
    """A module's weights as plain numpy arrays (what model files store: no pickle of torch objects)."""
    return {k: t.detach().cpu().numpy().copy() for k, t in module.state_dict().items()}


def load_module_state(module, state):
    """Load :func:`module_state`'s arrays back into ``module``; returns it in eval mode on the CPU."""
    module.load_state_dict({k: torch.from_numpy(np.asarray(v)) for k, v in state.items()})
    return module.to("cpu").eval()


class NeuralPhotoZEstimator(PhotoZEstimator):
    """Base class of every torch plugin: the parameters, ensemble, training phases and persistence they share.

    A subclass implements ``_fit`` (usually: prepare data, then ``self._fit_members(train_member)`` where
    ``train_member(member, seed)`` builds a :class:`TrainingNet` subclass and calls :meth:`_train` once per
    training phase), ``_new_module()`` (an untrained network of the fitted architecture, for loading) and
    ``_estimate_pdf``. Fitted networks are ``modules_`` (one per ensemble member) and the training record is
    ``history_`` (one list of epoch rows per member; multi-phase plugins tag each row with its ``phase``).

    Parameters
    ----------
    max_epochs : int
        Training length of the main phase, in epochs.
    batch_size : int
        Rows per training batch.
    lr : float
        Learning rate of the main phase.
    n_members : int
        Networks trained from different seeds (derived from ``random_state``); their PDFs are averaged.
    device : {"auto", "cpu", "cuda", ...}
        ``"auto"``: CUDA when available, else CPU. Fitted networks are kept on the CPU.
    precision : {"float32", "bf16-mixed"}
        Training under bfloat16 autocast; inference is always float32/float64.
    n_threads : "auto", int or None
        torch CPU threads during fit and predict. ``"auto"``: for an estimator whose results do not depend on
        the thread count (tag ``thread_invariant``), the cores other processes leave idle, re-read at each
        epoch, never more than torch's own setting; for the others torch's setting, unchanged, so that the same
        seed gives the same model whatever the machine's load. None leaves torch's setting alone.
    callbacks : list of skorch callbacks or (name, callback) pairs, optional
        Added to every training phase, as in skorch (e.g. ``skorch.callbacks.EpochTimer``).
    checkpoint_dir : str, optional
        Save each member's training state there after every epoch; a ``fit`` interrupted and started again
        with the same parameters and data resumes and ends with the same weights as an uninterrupted fit.
    verbose : int
        Progress bars on stderr when > 0.

    Attributes
    ----------
    modules_ : list of torch.nn.Module
        The fitted networks (on the CPU, in eval mode), one per ensemble member.
    history_ : list of list of dict
        Per member, one row per training epoch: ``epoch``, ``train_loss``, ``dur``, the method's own loss parts,
        ``phase`` (the training phase) and ``member``.
    """

    #: convolution kernels sum in an order that depends on the thread count: a network's results are assumed
    #: to depend on it unless a subclass (with a test proving it) says otherwise
    _tags = {"thread_invariant": False}

    def __init__(self, zmin=0.0, zmax=3.0, nzbins=301, point_estimate="mode", random_state=None, max_epochs=100,
                 batch_size=512, lr=1e-3, n_members=1, device="auto", precision="float32", n_threads="auto",
                 callbacks=None, checkpoint_dir=None, verbose=0):
        super().__init__(zmin=zmin, zmax=zmax, nzbins=nzbins, point_estimate=point_estimate,
                         random_state=random_state)
        self.max_epochs = max_epochs
        self.batch_size = batch_size
        self.lr = lr
        self.n_members = n_members
        self.device = device
        self.precision = precision
        self.n_threads = n_threads
        self.callbacks = callbacks
        self.checkpoint_dir = checkpoint_dir
        self.verbose = verbose

    # ------------------------------------------------------------------ public entry points run under the thread budget
    def fit(self, X, y, **side_inputs):
        # "auto" never uses more threads than the caller's torch setting (OMP_NUM_THREADS, set_num_threads)
        self._thread_cap = torch.get_num_threads()
        try:
            with self._thread_context(fitting=True):
                return super().fit(X, y, **side_inputs)
        finally:
            self.__dict__.pop("_thread_cap", None)

    def estimate_pdf(self, X, ids=None, **side_inputs):
        with self._thread_context(fitting=False):
            return super().estimate_pdf(X, ids=ids, **side_inputs)

    def predict(self, X, **side_inputs):
        with self._thread_context(fitting=False):
            return super().predict(X, **side_inputs)

    def _adapts_threads(self):
        return check_threads(self.n_threads) == "auto" and self.get_tag("thread_invariant")

    def _thread_context(self, fitting):
        n = check_threads(self.n_threads)
        if n == "auto" and not self._adapts_threads():
            n = None
        if n == "auto":
            if fitting:  # the ThreadBudget callback adjusts it during training
                return torch_threads(None)
            others = _INFERENCE_MONITOR.others_busy(wait=False)
            cap = min(available_threads(), torch.get_num_threads())
            n = None if others is None else int(max(1, min(cap, round(available_threads() - others))))
        return torch_threads(n)

    # ------------------------------------------------------------------ validation
    def _check_engine_params(self, positive_ints=()):
        for name in ("max_epochs", "batch_size", "n_members") + tuple(positive_ints):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if isinstance(self.lr, bool) or not isinstance(self.lr, (float, int, np.floating)) or not self.lr > 0:
            raise InputError(f"lr must be a positive number, got {self.lr!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        check_threads(self.n_threads)
        if self.callbacks is not None and not isinstance(self.callbacks, (list, tuple)):
            raise InputError(f"callbacks must be a list of skorch callbacks, got {type(self.callbacks).__name__}")

    # ------------------------------------------------------------------ training
    def _fit_members(self, train_member, *fingerprint_arrays):
        """Train ``n_members`` networks: ``train_member(member, seed)`` returns ``(module, history_rows)``.

        Sets ``modules_`` and ``history_``. Each member trains with torch's global generator forked and seeded
        from its own seed, so the caller's global random states are untouched.
        """
        self.device_ = select_device(self.device)
        seeds = self._rng().integers(0, 2**31 - 1, size=int(self.n_members))
        self._fingerprint = (fit_fingerprint(self, *fingerprint_arrays, seeds) if self.checkpoint_dir else None)
        modules, histories = [], []
        try:
            for member, seed in enumerate(seeds):
                with local_random_state(seed, cuda=str(self.device_).startswith("cuda")):
                    module, rows = train_member(member, int(seed))
                modules.append(module.to("cpu").eval())
                histories.append(rows)
        finally:
            self.__dict__.pop("_fingerprint", None)
        self.modules_ = modules
        self.history_ = histories

    def _train(self, net, X, y=None, *, phase, member, max_epochs=None):
        """Run one training phase of ``net`` (an uninitialised :class:`TrainingNet`) on ``(X, y)``.

        Adds the engine's callbacks (thread budget, progress, checkpoint) and the user's ``callbacks``, resumes
        from a matching checkpoint, trains the remaining epochs and returns the history rows (without
        per-batch records), each tagged with ``phase`` and ``member``. Raises ``KeyboardInterrupt`` if training
        was interrupted (skorch alone would return a silently under-trained network).
        """
        max_epochs = int(self.max_epochs if max_epochs is None else max_epochs)
        extra = []
        if self._adapts_threads():
            extra.append(("thread_budget", ThreadBudget(max_threads=self.__dict__.get("_thread_cap"))))
        ckpt = None
        if self.checkpoint_dir is not None and self.__dict__.get("_fingerprint"):
            ckpt = ResumableCheckpoint(os.path.join(self.checkpoint_dir, f"member{member}_{phase}.pt"),
                                       self._fingerprint)
            extra.append(("checkpoint", ckpt))
        progress = None
        if self.verbose:
            desc = f"{type(self).__name__} member {member + 1}/{self.n_members} {phase}"
            progress = TrainingProgress(desc, max_epochs)
            extra.append(("progress", progress))
        user = [cb if isinstance(cb, tuple) else (f"user_{i}", cb) for i, cb in enumerate(self.callbacks or [])]
        net.set_params(callbacks=list(net.callbacks or []) + extra + user, max_epochs=max_epochs)
        net.initialize()
        done = ckpt.restore(net) if ckpt is not None else 0
        if progress is not None:
            progress.initial = done
        if done < max_epochs:
            with torch_threads(None if check_threads(self.n_threads) in ("auto", None) else self.n_threads):
                net.partial_fit(X, y, epochs=max_epochs - done)
        if len(net.history) < max_epochs and not _stopped_early(net):
            where = f"; the checkpoint in {self.checkpoint_dir!r} resumes it" if ckpt else ""
            raise KeyboardInterrupt(f"training of member {member + 1} ({phase}) was interrupted after "
                                    f"{len(net.history)} of {max_epochs} epochs{where}")
        return [dict({k: v for k, v in row.items() if k != "batches"}, phase=phase, member=member)
                for row in net.history]

    # ------------------------------------------------------------------ persistence without pickle
    def _new_module(self):
        """An untrained network of the fitted architecture, into which saved weights are loaded."""
        raise NotImplementedError(f"{type(self).__name__} must implement _new_module() to be saved")

    def __getstate__(self):
        state = {k: v for k, v in super().__getstate__().items() if k not in ("modules_", "_inference_cache")}
        if "modules_" in self.__dict__:
            state["module_states_"] = [module_state(m) for m in self.modules_]
        return state

    def __setstate__(self, state):
        state = dict(state)
        weights = state.pop("module_states_", None)
        self.__dict__.update(state)  # _new_module needs the fitted shapes
        if weights is not None:
            state["modules_"] = [load_module_state(self._new_module(), w) for w in weights]
        super().__setstate__(state)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.non_deterministic = False
        return tags


def _stopped_early(net):
    # skorch's EarlyStopping ends training by raising KeyboardInterrupt too; tell it from a real interrupt
    cb = dict(net.callbacks_).get("early_stopping")
    return cb is not None and getattr(cb, "misses_", 0) >= cb.patience
