"""``TorchPhotoZEstimator``: the engine's base for networks on feature tables (baseline_nn, mtl_nb)."""

import copy

import numpy as np
import torch
from skorch.callbacks import EarlyStopping
from skorch.dataset import ValidSplit

from ..exceptions import InputError
from .core import z_to_bin
from .engine import LearningRateSchedule, NeuralPhotoZEstimator, TrainingNet, step_decay

_INFERENCE_BATCH = 8192


class TorchPhotoZEstimator(NeuralPhotoZEstimator):
    """Classifier networks over the grid's redshift bins, on a standardised feature table.

    A subclass implements ``_build_module(n_features, n_bins)``, returning a ``torch.nn.Module`` that maps a
    float32 batch (B, n_features) to logits (B, n_bins). It may override ``_training_data`` and
    ``_net_class`` (a :class:`~pzkit.nn.engine.TrainingNet` subclass with its own ``get_loss``) for multi-task
    losses and side inputs.

    Training: Adam at ``lr`` divided by ``1/lr_gamma`` every ``lr_step`` epochs, cross-entropy against the
    redshift bin, optional early stopping on a ``valid_fraction`` hold-out. The PDF is the members' averaged
    softmax as a ``qp.hist`` on the bins between grid points; inference runs in float64 so that results do not
    depend on how rows are batched.

    Parameters
    ----------
    lr_step, lr_gamma : int, float
        Step decay of the learning rate (epochs, factor).
    standardize : bool
        z-score the features with the training set's mean and standard deviation.
    early_stopping, valid_fraction, patience
        skorch's ``EarlyStopping`` on the validation loss of a ``valid_fraction`` hold-out.
    Other parameters
        See :class:`pzkit.nn.engine.NeuralPhotoZEstimator`.
    """

    _derived_attributes = ("_inference_cache",)
    #: matrix products split the output, not the sums, across threads: 1- and 2-thread fits are bit-identical
    #: (tests/test_engine.py checks it), so the thread count may follow the machine's load
    _tags = {"thread_invariant": True}

    def __init__(self, zmin=0.0, zmax=3.0, nzbins=301, point_estimate="mode", random_state=None, max_epochs=100,
                 batch_size=512, lr=1e-3, lr_step=25, lr_gamma=0.1, n_members=1, standardize=True,
                 early_stopping=False, valid_fraction=0.1, patience=10, device="auto", precision="float32",
                 n_threads="auto", callbacks=None, checkpoint_dir=None, verbose=0):
        super().__init__(zmin=zmin, zmax=zmax, nzbins=nzbins, point_estimate=point_estimate,
                         random_state=random_state, max_epochs=max_epochs, batch_size=batch_size, lr=lr,
                         n_members=n_members, device=device, precision=precision, n_threads=n_threads,
                         callbacks=callbacks, checkpoint_dir=checkpoint_dir, verbose=verbose)
        self.lr_step = lr_step
        self.lr_gamma = lr_gamma
        self.standardize = standardize
        self.early_stopping = early_stopping
        self.valid_fraction = valid_fraction
        self.patience = patience

    # ------------------------------------------------------------------ to implement / override
    def _build_module(self, n_features, n_bins):
        raise NotImplementedError(f"{type(self).__name__} must implement _build_module(n_features, n_bins)")

    def _net_class(self):
        return TrainingNet

    def _net_params(self):
        """Extra keyword arguments of ``_net_class()`` (e.g. a loss weight)."""
        return {}

    def _training_data(self, Xs, y, **side_inputs):
        """(X, y) as skorch receives them; default: features and the bin index of each redshift."""
        return Xs, z_to_bin(y, self.zgrid_)

    # ------------------------------------------------------------------ training
    def _standardise(self, X):
        return ((X - self.mean_) / self.scale_).astype(np.float32)

    def _fit(self, X, y, **side_inputs):
        self._check_engine_params(positive_ints=("lr_step",))
        if self.early_stopping and not 0 < self.valid_fraction < 1:
            raise InputError(f"valid_fraction must lie in (0, 1), got {self.valid_fraction!r}")
        if self.standardize:
            self.mean_ = X.mean(axis=0)
            scale = X.std(axis=0)
            self.scale_ = np.where(scale > 0, scale, 1.0)
        else:
            self.mean_ = np.zeros(X.shape[1])
            self.scale_ = np.ones(X.shape[1])
        self.n_bins_ = len(self.zgrid_) - 1
        Xt, yt = self._training_data(self._standardise(X), y, **side_inputs)

        def train_member(member, seed):
            callbacks = [("lr_schedule", LearningRateSchedule(step_decay(self.lr, self.lr_step, self.lr_gamma)))]
            train_split = None
            if self.early_stopping:
                train_split = ValidSplit(self.valid_fraction, stratified=False, random_state=seed)
                callbacks.append(("early_stopping", EarlyStopping(patience=self.patience, load_best=True)))
            net = self._net_class()(
                module=self._build_module(X.shape[1], self.n_bins_), criterion=torch.nn.CrossEntropyLoss,
                optimizer=torch.optim.Adam, lr=self.lr, batch_size=self.batch_size, train_split=train_split,
                callbacks=callbacks, device=self.device_, precision=self.precision, seed=seed, verbose=0,
                **self._net_params())
            rows = self._train(net, Xt, yt, phase="train", member=member)
            return net.module_, rows

        self._fit_members(train_member, Xt, yt)
        self._rebuild_derived_state()

    # ------------------------------------------------------------------ inference
    def _rebuild_derived_state(self):
        # float64 copies, built once after fit/load, so predict never mutates the estimator
        self._inference_cache = [copy.deepcopy(m).double().eval() for m in self.modules_]

    def _new_module(self):
        return self._build_module(self.n_features_in_, self.n_bins_)

    def _member_probabilities(self, X):
        Xs = torch.from_numpy((X - self.mean_) / self.scale_)
        out = np.zeros((X.shape[0], self.n_bins_))
        with torch.no_grad():
            for module in self._inference_cache:
                for start in range(0, X.shape[0], _INFERENCE_BATCH):
                    logits = module(Xs[start:start + _INFERENCE_BATCH])
                    out[start:start + _INFERENCE_BATCH] += torch.softmax(logits, dim=1).numpy()
        return out / len(self.modules_)

    def _estimate_pdf(self, X, **side_inputs):
        probs = self._member_probabilities(X)
        return self._hist_ensemble(probs / np.diff(self.zgrid_)[None, :])
