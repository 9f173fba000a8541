"""The ``PITA`` estimator: PITA (Photo-z Inference with a Triple-task Algorithm), semi-supervised photo-z from
images that learns from unlabelled galaxies (Khederlarian et al., arXiv:2602.10207; defaults from the authors'
``pita-z`` package); see ``docs/plugins/pita.md``."""

import numpy as np
import torch

from pzkit.base import POINT_ESTIMATES
from pzkit.exceptions import InputError
from pzkit.nn import grid_bins, select_device, soft_labels
from pzkit.nn.engine import LearningRateSchedule, RowIndex, cosine_decay
from pzkit.nn.images import ImagePhotoZEstimator, check_per_object, fixed_batch_forward

from ._nets import PITANet, PITATrainingNet, centre_crop, stretch


MODES = ("pita", "pretrain_finetune", "supervised")
ENCODERS = ("small", "convnext")
ROTATIONS = ("any", "dihedral", None)


def colours_from_images(X):
    """Adjacent colours + the last band's magnitude from the stamps' pixel sums (zero point 0): the colour
    targets when no catalogue photometry is given. A band with a sum ≤ 0 gives NaN (masked in the loss)."""
    flux = X.reshape(X.shape[0], X.shape[1], -1).sum(axis=2, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        mag = np.where(flux > 0, -2.5 * np.log10(np.where(flux > 0, flux, 1.0)), np.nan)
    return np.concatenate([mag[:, :-1] - mag[:, 1:], mag[:, -1:]], axis=1)






class PITA(ImagePhotoZEstimator):
    """PITA: semi-supervised photo-z from multi-band images, with three tasks on one shared encoder.

    A CNN encoder maps augmented crops of the images to a latent vector that feeds three tasks: a MoCo
    contrastive loss on every image, a regression of the colour targets ``colors`` on every image that has
    them, and a redshift head (the paper's Huber-loss point estimate and, as an extension, a softmax over the
    grid's bins for the PDF) on labelled images only, so unlabelled galaxies (NaN in ``y``) still shape the
    encoder. ``mode`` selects this joint
    training, pre-training then fine-tuning, or supervised training. ``predict``/``estimate_pdf`` take images.

    Parameters
    ----------
    zmin, zmax, nzbins, random_state
        See :class:`pzkit.PhotoZEstimator`.
    point_estimate : {"head", "mode", "median", "mean"}, default "head"
        What ``predict`` returns: the Huber head's redshift (the paper's output, clipped to the grid; ancil
        column ``zhead`` of ``estimate_pdf``) or a summary of the PDF.
    mode : {"pita", "pretrain_finetune", "supervised"}, default "pita"
        The three tasks trained together; contrastive pre-training on all images, then fine-tuning on the
        labelled ones; or the redshift tasks on the labelled images only.
    encoder : {"small", "convnext"}, default "small"
        pita-z's small CNN (3×3 convolutions, no BatchNorm) or a small ConvNeXt.
    encoder_widths : tuple of int, default (32, 64, 128)
        Channels of the encoder's stages.
    latent_dim : int, default 128
        Size of the latent vector.
    proj_dim : int, default 64
        Output size of the contrastive projection head.
    head_widths : tuple of int, default (128, 128, 128, 128, 128, 64)
        Hidden widths of the colour head and of the redshift head.
    crop_size : int, default 64
        Side of the crop the network sees, in pixels.
    jitter : float, default 4.0
        Largest random shift of the crop centre during training, in pixels.
    rotation : {"any", "dihedral", None}, default "any"
        Training rotations: uniform angle (bilinear), exact quarter turns and flips, or none.
    noise_std : float, default 0.5
        Gaussian noise added during training, in units of each band's pixel noise.
    reddening : float or None, default None
        Largest E(B−V) of the reddening augmentation (None: off).
    extinction_coeffs : array-like of shape (n_bands,) or None, default None
        A_b / E(B−V) per band; required by ``reddening``.
    queue_size : int, default 50000
        Number of negatives in the MoCo queue.
    momentum : float, default 0.999
        Momentum of the key encoder's update.
    temperature : float, default 0.1
        Temperature of the InfoNCE loss.
    contrastive_weight, color_weight, redshift_weight, bin_weight : float, default 1, 1, 1, 1
        Weights of the contrastive, colour, Huber redshift and bin cross-entropy losses (0 drops a task). The
        paper weighs its three tasks 1:1:1 and has no bin head (``bin_weight=0``: no trained PDF).
    huber_delta : float, default 0.15
        δ of the Huber redshift loss.
    label_sigma : float, default 0.02
        Width of the Gaussian soft labels of the bin head.
    labelled_fraction : float or None, default 0.5
        Share of each batch drawn from the labelled rows in mode ``"pita"`` (None: uniform over all rows).
    max_epochs : int, default 30
        Length of the main training phase, in epochs of ``steps_per_epoch`` optimiser steps.
    pretrain_epochs : int, default 30
        Length of the contrastive pre-training of mode ``"pretrain_finetune"``, in the same epochs.
    steps_per_epoch : int, default 100
        Optimiser steps per epoch.
    batch_size : int, default 128
        Rows per optimiser step.
    lr : float, default 1e-3
        Adam learning rate at the start of each phase (cosine decay to 0 over the phase).
    weight_decay : float, default 1e-5
        Adam weight decay.
    n_members, device, precision, n_threads, callbacks, checkpoint_dir, verbose
        See :class:`pzkit.nn.engine.NeuralPhotoZEstimator`.

    Attributes
    ----------
    modules_, history_
        Fitted networks and training record (see :class:`pzkit.nn.engine.NeuralPhotoZEstimator`); the
        ``phase`` of a history row is ``"pita"``, ``"pretrain"`` or ``"supervised"``.
    pixel_sigma_ : ndarray of shape (n_bands,)
        Per-band pixel noise, by which the images are divided.
    color_mean_, color_std_ : ndarray of shape (n_bands,)
        Standardisation of the colour targets.

    Notes
    -----
    The paper, pzkit's implementation of it and every deviation from it (among them the PDF output) are
    described in ``docs/plugins/pita.md``.
    """

    _tags = {"unlabelled_rows": True, "fit_inputs": {"colors": "colors"}}
    point_estimate_columns = {**POINT_ESTIMATES, "head": "zhead"}

    def __init__(self, zmin=0.0, zmax=3.0, nzbins=301, point_estimate="head", random_state=None, mode="pita",
                 encoder="small", encoder_widths=(32, 64, 128), latent_dim=128, proj_dim=64,
                 head_widths=(128, 128, 128, 128, 128, 64), crop_size=64, jitter=4.0, rotation="any",
                 noise_std=0.5, reddening=None, extinction_coeffs=None, queue_size=50000, momentum=0.999,
                 temperature=0.1, contrastive_weight=1.0, color_weight=1.0, redshift_weight=1.0,
                 bin_weight=1.0, huber_delta=0.15, label_sigma=0.02, labelled_fraction=0.5, max_epochs=30,
                 pretrain_epochs=30, steps_per_epoch=100, batch_size=128, lr=1e-3, weight_decay=1e-5, n_members=1,
                 device="auto", precision="float32", n_threads="auto", callbacks=None, checkpoint_dir=None,
                 verbose=0):
        super().__init__(zmin=zmin, zmax=zmax, nzbins=nzbins, point_estimate=point_estimate,
                         random_state=random_state, max_epochs=max_epochs, batch_size=batch_size, lr=lr,
                         n_members=n_members, device=device, precision=precision, n_threads=n_threads,
                         callbacks=callbacks, checkpoint_dir=checkpoint_dir, verbose=verbose)
        self.mode = mode
        self.encoder = encoder
        self.encoder_widths = encoder_widths
        self.latent_dim = latent_dim
        self.proj_dim = proj_dim
        self.head_widths = head_widths
        self.crop_size = crop_size
        self.jitter = jitter
        self.rotation = rotation
        self.noise_std = noise_std
        self.reddening = reddening
        self.extinction_coeffs = extinction_coeffs
        self.queue_size = queue_size
        self.momentum = momentum
        self.temperature = temperature
        self.contrastive_weight = contrastive_weight
        self.color_weight = color_weight
        self.redshift_weight = redshift_weight
        self.bin_weight = bin_weight
        self.huber_delta = huber_delta
        self.label_sigma = label_sigma
        self.labelled_fraction = labelled_fraction
        self.pretrain_epochs = pretrain_epochs
        self.steps_per_epoch = steps_per_epoch
        self.weight_decay = weight_decay

    # ------------------------------------------------------------------ API
    def fit(self, X, y, colors=None):
        """Fit on images ``X``, redshifts ``y`` (NaN = unlabelled) and optional colour targets ``colors``."""
        return super().fit(X, y, colors=colors)

    def predict_point_head(self, X):
        """The Huber head's redshift (the paper's output), one per image, unclipped."""
        X, _ = self._validate_X(X, reset=False)
        return fixed_batch_forward(lambda xb: self._forward(xb)[1], [self._prepare(X)])

    def embed(self, X):
        """The 128-d latent vectors (n, latent_dim) of the centre-cropped images."""
        X, _ = self._validate_X(X, reset=False)
        return fixed_batch_forward(lambda xb: self.modules_[0].latent(stretch(xb)), [self._prepare(X)])

    # ------------------------------------------------------------------ validation
    def _check_params(self):
        if self.mode not in MODES:
            raise InputError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.encoder not in ENCODERS:
            raise InputError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.rotation not in ROTATIONS:
            raise InputError(f"rotation must be one of {ROTATIONS}, got {self.rotation!r}")
        self._check_engine_params(positive_ints=("crop_size", "latent_dim", "proj_dim", "queue_size",
                                                 "steps_per_epoch"))
        if self.mode == "pretrain_finetune":
            self._check_engine_params(positive_ints=("pretrain_epochs",))
        if not 0.0 <= float(self.momentum) < 1.0:
            raise InputError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        if self.labelled_fraction is not None and not 0.0 < float(self.labelled_fraction) <= 1.0:
            raise InputError(f"labelled_fraction must lie in (0, 1] or be None, got {self.labelled_fraction!r}")
        if self.reddening is not None and self.extinction_coeffs is None:
            raise InputError("reddening needs extinction_coeffs (A_b/E(B−V), one per band)")

    def _validate_X(self, X, reset):
        X, ids = super()._validate_X(X, reset)
        if reset:
            h, w = X.shape[2:]
            if h != w:
                raise InputError(f"X images must be square for the rotation augmentation, got {h}×{w} pixels")
            if h < self.crop_size:
                raise InputError(f"X images are {h}×{w} pixels, smaller than crop_size={self.crop_size} "
                                 f"(the network input is a {self.crop_size}×{self.crop_size} crop); pass larger "
                                 "stamps or lower crop_size")
        return X, ids

    # ------------------------------------------------------------------ fit
    def _fit(self, X, y, colors=None):
        self._check_params()
        n, n_bands = X.shape[:2]
        if colors is None:
            colors = colours_from_images(X)
        else:
            colors = check_per_object(colors, "colors", n, n_bands, allow_nan=True)
        if self.reddening is not None:
            coeffs = check_per_object(np.atleast_2d(self.extinction_coeffs), "extinction_coeffs", 1, n_bands)[0]
            self.extinction_coeffs_ = coeffs
        self.color_mean_ = np.nanmean(colors, axis=0) if np.isfinite(colors).any() else np.zeros(n_bands)
        self.color_mean_ = np.nan_to_num(self.color_mean_)
        std = np.nanstd(colors, axis=0) if np.isfinite(colors).any() else np.ones(n_bands)
        self.color_std_ = np.where(np.isfinite(std) & (std > 0), std, 1.0)
        self.pixel_sigma_ = self._pixel_sigma(X)
        self.n_bins_ = len(self.zgrid_) - 1

        device = select_device(self.device)
        images = torch.from_numpy(X / self.pixel_sigma_[None, :, None, None].astype(np.float32)).to(device)
        edges, _ = grid_bins(self.zgrid_)
        labelled = np.isfinite(y)
        soft = np.zeros((n, self.n_bins_), dtype=np.float32)
        soft[labelled] = soft_labels(y[labelled], edges, self.label_sigma)
        data = dict(images=images, y=torch.from_numpy(y.astype(np.float32)).to(device),
                    soft=torch.from_numpy(soft).to(device),
                    colors=torch.from_numpy(((colors - self.color_mean_) / self.color_std_).astype(np.float32))
                    .to(device))
        phases = ([("pretrain", self.pretrain_epochs), ("supervised", self.max_epochs)]
                  if self.mode == "pretrain_finetune" else [(self.mode, self.max_epochs)])

        def train_member(member, seed):
            module, rows = self._build_net(), []
            for k, (phase, epochs) in enumerate(phases):
                steps = int(epochs) * int(self.steps_per_epoch)
                net = PITATrainingNet(
                    module, data=data, pools=self._pools(phase, labelled), weights=self._stage_weights(phase),
                    queue_size=self.queue_size, proj_dim=self.proj_dim, momentum=self.momentum,
                    temperature=self.temperature, huber_delta=self.huber_delta, crop=int(self.crop_size),
                    jitter=self.jitter, rotation=self.rotation, noise_std=self.noise_std,
                    redden=self._redden if self.reddening is not None else None,
                    criterion=torch.nn.MSELoss, optimizer=torch.optim.Adam, lr=self.lr,
                    optimizer__weight_decay=self.weight_decay, batch_size=self.batch_size,
                    steps_per_epoch=int(self.steps_per_epoch), train_split=None, device=device,
                    precision=self.precision, seed=seed + k, verbose=0,
                    callbacks=[("lr_schedule", LearningRateSchedule(cosine_decay(self.lr, steps), unit="step"))])
                rows += self._train(net, RowIndex(n), phase=phase, member=member, max_epochs=int(epochs))
                module = net.module_
            return module, rows

        self._fit_members(train_member, X, y, colors)
        return self

    def _pools(self, phase, labelled):
        """Where each batch's rows come from: ``[(row indices, rows per batch), ...]``."""
        lab_idx, unl_idx = np.flatnonzero(labelled), np.flatnonzero(~labelled)
        bsize = int(self.batch_size)
        if phase == "supervised":
            return [(lab_idx, bsize)]
        if phase == "pretrain" or self.labelled_fraction is None or unl_idx.size == 0:
            return [(np.arange(labelled.size), bsize)]
        n_lab = min(bsize, max(1, int(round(float(self.labelled_fraction) * bsize))))
        return [(lab_idx, n_lab)] + ([(unl_idx, bsize - n_lab)] if bsize > n_lab else [])

    def _build_net(self):
        return PITANet(self.n_bands_in_, self.n_bins_, encoder=self.encoder, encoder_widths=self.encoder_widths,
                       latent_dim=self.latent_dim, proj_dim=self.proj_dim, head_widths=self.head_widths)

    @staticmethod
    def _pixel_sigma(X):
        """Per-band pixel noise: 1.4826 × MAD of the stamps' 2-pixel border, where the sky dominates."""
        border = np.concatenate([X[:, :, :2, :].reshape(X.shape[0], X.shape[1], -1),
                                 X[:, :, -2:, :].reshape(X.shape[0], X.shape[1], -1),
                                 X[:, :, 2:-2, :2].reshape(X.shape[0], X.shape[1], -1),
                                 X[:, :, 2:-2, -2:].reshape(X.shape[0], X.shape[1], -1)], axis=2)
        border = border.transpose(1, 0, 2).reshape(X.shape[1], -1).astype(np.float64)
        med = np.median(border, axis=1, keepdims=True)
        sigma = 1.4826 * np.median(np.abs(border - med), axis=1)
        fallback = np.std(X.reshape(X.shape[0], X.shape[1], -1), axis=(0, 2))
        sigma = np.where(sigma > 0, sigma, fallback)
        return np.where(sigma > 0, sigma, 1.0)

    def _stage_weights(self, stage):
        if stage == "pita":
            return {"contrastive": self.contrastive_weight, "colour": self.color_weight,
                    "redshift": self.redshift_weight, "bins": self.bin_weight}
        if stage == "pretrain":
            return {"contrastive": 1.0}
        return {"redshift": self.redshift_weight, "bins": self.bin_weight}

    def _redden(self, x, cols, gen):
        """The same random E(B−V) for both views: fluxes dimmed by 10^(−0.4 R_b E), colour targets shifted."""
        coeffs = torch.as_tensor(self.extinction_coeffs_, dtype=x.dtype, device=x.device)
        ebv = torch.rand(x.shape[0], generator=gen).to(x) * float(self.reddening)
        x = x * (10.0 ** (-0.4 * ebv[:, None] * coeffs[None, :]))[:, :, None, None]
        shift = torch.cat([coeffs[:-1] - coeffs[1:], coeffs[-1:]])[None, :] * ebv[:, None]
        std = torch.as_tensor(self.color_std_, dtype=x.dtype, device=x.device)
        return x, cols + shift / std

    # ------------------------------------------------------------------ inference
    def _prepare(self, X):
        return np.ascontiguousarray(centre_crop(X, int(self.crop_size))
                                    / self.pixel_sigma_[None, :, None, None].astype(np.float32))

    def _forward(self, xb):
        """Bin probabilities and Huber-head redshift of a batch, averaged over the members."""
        probs, point = 0.0, 0.0
        for net in self.modules_:
            z, logits = net.redshift(net.latent(stretch(xb)))
            probs = probs + torch.softmax(logits.double(), dim=1)
            point = point + z.double()
        return probs / len(self.modules_), point / len(self.modules_)

    def _estimate_pdf(self, X):
        p, head = fixed_batch_forward(self._forward, [self._prepare(X)])
        ens = self._hist_ensemble(p)
        ens.set_ancil({"zhead": np.clip(head, self.zgrid_[0], self.zgrid_[-1])})
        return ens

    # ------------------------------------------------------------------ persistence
    def _new_module(self):
        return self._build_net()

    # ------------------------------------------------------------------ conformance
    @classmethod
    def _conformance_instance(cls):
        return cls(encoder_widths=(8, 16), latent_dim=32, proj_dim=16, head_widths=(32, 32), crop_size=12,
                   jitter=1.0, queue_size=256, momentum=0.99, max_epochs=6, pretrain_epochs=2, steps_per_epoch=10, batch_size=32,
                   lr=3e-3, nzbins=61, random_state=0, device="cpu")

    @classmethod
    def _sklearn_check_params(cls):
        # scikit-learn's checks feed (n, d) tables, read as d-band 1×1 stamps: a 1-pixel crop, one conv block
        return {"crop_size": 1, "jitter": 0.0, "encoder_widths": (8,), "max_epochs": 2, "steps_per_epoch": 5}

    def _conformance_data(self, random_state=0):
        from pzkit.testing import ConformanceData, make_toy_images

        X, z, _ = make_toy_images(n=300, n_bands=3, size=16, random_state=random_state)
        return ConformanceData(X[:200], z[:200], X[200:], z[200:])
