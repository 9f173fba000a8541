"""pzkit plugin ``pita``: PITA (Photo-z Inference with a Triple-task Algorithm), semi-supervised photo-z from
images that learns from unlabelled galaxies (spec ``pita.md``; defaults from the authors' ``pita-z`` package)."""

import numpy as np
import torch

from pzkit.exceptions import InputError
from pzkit.nn import grid_bins, seed_everything, select_device, soft_labels
from pzkit.nn.images import (
    ImagePhotoZEstimator,
    LoopCheckpoint,
    check_images,
    check_per_object,
    fit_fingerprint,
    fixed_batch_forward,
    progress,
)

from .nets import KeyEncoder, KeyQueue, PITANet, augment, centre_crop, step_losses, stretch

__all__ = ["PITA"]
__version__ = "0.1.0"

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


class _Cycler:
    """Batches of indices from successive shuffles of a pool (each row once per pass, no per-row loop)."""

    def __init__(self, idx, rng):
        self.idx, self.rng, self.buf = np.asarray(idx), rng, np.empty(0, dtype=np.int64)

    def take(self, k):
        while self.buf.size < k:
            self.buf = np.concatenate([self.buf, self.rng.permutation(self.idx)])
        out, self.buf = self.buf[:k], self.buf[k:]
        return out


class PITA(ImagePhotoZEstimator):
    """PITA: semi-supervised photo-z from multi-band images with three tasks on one shared encoder.

    ``fit(X, y, colors=None)``: ``X`` images (n, bands, S, S); ``y`` redshifts with **NaN for unlabelled
    galaxies**; ``colors`` (n, bands) per-object colour targets: the bands−1 adjacent colours (bluer minus redder,
    in band order) and the last band's magnitude (the paper's F606W−F814W, F814W−F125W, F125W−F160W, m_F160W),
    NaN where a value is missing. Without ``colors`` the targets are computed from the stamps' pixel sums.
    ``predict``/``estimate_pdf`` take images only.

    Network: encoder (``encoder="small"``, pita-z's small CNN without BatchNorm, built from pzkit's
    ConvEncoder; or ``"convnext"``, a small ConvNeXt) → MLP_encoder → ``latent_dim`` (128) latent, then
    a projection head 128→128→``proj_dim`` (64) for MoCo, MLP_colour ``head_widths`` ([128]×5 + [64]) → bands
    and MLP_redshift ``head_widths`` → redshift.

    Losses (mode ``"pita"``, one stage, each batch mixing labelled and unlabelled galaxies):
    ``contrastive_weight`` × InfoNCE (MoCo: a momentum key encoder, ``momentum`` 0.999, a FIFO queue of
    ``queue_size`` negatives, cosine similarity / ``temperature`` 0.1) on all images + ``color_weight`` × MSE of
    the standardised colour targets on every image that has them + ``redshift_weight`` × Huber(δ=``huber_delta``
    0.15) on labelled images only (0 for a batch without labels) + ``bin_weight`` × cross-entropy of the bin head.
    The query view feeds all heads; keys come from the momentum encoder on a second view (as pita-z).

    Modes: ``"pita"`` (above); ``"supervised"`` (the same network and augmentations trained on the labelled
    images only, redshift losses only: the paper's supervised CNN); ``"pretrain_finetune"`` (MoCo/InfoNCE alone on
    all images for ``pretrain_steps``, then the projection head is dropped and the whole network is fine-tuned on
    the labelled images with the redshift losses for ``max_steps``). Ablations are weights set to 0.

    Augmentations per view: horizontal flip (p=0.5) → rotation (``rotation="any"``: uniform angle, bilinear;
    ``"dihedral"``: exact quarter turns) → jitter (U(±``jitter``) px shift of the crop centre) and crop to
    ``crop_size`` → Gaussian noise (``noise_std``, in units of each band's pixel noise σ). None of them changes
    colours. ``reddening`` (max E(B−V), off by default) with ``extinction_coeffs`` (A_b/E(B−V) per band) reddens
    both views of an object by the same E(B−V) ~ U(0, max) and shifts its colour targets by the same amount.
    Evaluation uses the plain centre crop.

    Redshift output and deviations from the paper, and why:

    * **PDF.** The paper regresses one number. pzkit returns a PDF, so MLP_redshift has a second output layer,
      logits over the ``nzbins − 1`` grid bins, trained with cross-entropy on Gaussian soft labels
      (σ = ``label_sigma``) alongside the Huber point head; the PDF is their softmax (``qp.hist``) and
      ``predict`` its median by default. :meth:`predict_point_head` gives the Huber head's value, so the two can
      be compared (benchmarks/pita_candels_like.py reports both): on candels_like the PDF median's σ_NMAD is
      1.3–3.2 % lower than the Huber point's for every mode and label count measured, while the PDF mode's is
      up to 4 % higher (broad, multimodal PDFs), hence ``point_estimate="median"`` here rather than pzkit's
      usual mode.
    * Images are divided by each band's pixel-noise σ (a robust estimate from the training stamps' borders) and
      passed through asinh (the paper does not give its normalisation). Noise is added before the asinh.
    * Training length is counted in optimiser steps (``max_steps``) of ``batch_size`` rows, so that modes get
      the same budget. In ``"pita"`` a fraction ``labelled_fraction`` of each batch is drawn from the labelled
      rows (None: uniform over all rows); the paper does not say how it mixes them.
    * The queue uses only slots already filled, not MoCo's random initial keys (see ``KeyQueue``).
    * Adam (weight decay 1e-5, as pita-z) with a cosine learning-rate decay over the steps; no early stopping.
    * Dereddening by a per-object E(B−V) (pita-z's other ReddeningTransform mode) is not implemented.

    ``checkpoint_dir`` saves the networks, optimiser, schedule, negative queue, samplers and random states every
    ``max_steps // 20`` steps; an interrupted ``fit`` started again with the same parameters and data resumes
    there and ends with the same weights as an uninterrupted fit.
    """

    _tags = {"unlabelled_rows": True, "fit_inputs": {"colors": "colors"}}

    def __init__(self, zmin=0.0, zmax=3.0, nzbins=301, point_estimate="median", random_state=None, mode="pita",
                 encoder="small", encoder_widths=(32, 64, 128), latent_dim=128, proj_dim=64,
                 head_widths=(128, 128, 128, 128, 128, 64), crop_size=64, jitter=4.0, rotation="any",
                 noise_std=0.5, reddening=None, extinction_coeffs=None, queue_size=50000, momentum=0.999,
                 temperature=0.1, contrastive_weight=0.0025, color_weight=1.0, redshift_weight=1.0,
                 bin_weight=1.0, huber_delta=0.15, label_sigma=0.02, labelled_fraction=0.5, max_steps=3000,
                 pretrain_steps=3000, batch_size=128, lr=1e-3, weight_decay=1e-5, device="auto", checkpoint_dir=None,
                 verbose=False):
        super().__init__(zmin=zmin, zmax=zmax, nzbins=nzbins, point_estimate=point_estimate,
                         random_state=random_state)
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
        self.max_steps = max_steps
        self.pretrain_steps = pretrain_steps
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.device = device
        self.checkpoint_dir = checkpoint_dir
        self.verbose = verbose

    # ------------------------------------------------------------------ API
    def fit(self, X, y, colors=None):
        """Fit on images ``X``, redshifts ``y`` (NaN = unlabelled) and optional colour targets ``colors``."""
        return super().fit(X, y, colors=colors)

    def predict_point_head(self, X):
        """The Huber-trained point redshift of MLP_redshift (the paper's output), one per image."""
        X, _ = self._validate_X(X, reset=False)
        return fixed_batch_forward(lambda xb: self.module_.redshift(self.module_.latent(stretch(xb)))[0],
                                   [self._prepare(X)])

    def embed(self, X):
        """The 128-d latent vectors (n, latent_dim) of the centre-cropped images."""
        X, _ = self._validate_X(X, reset=False)
        return fixed_batch_forward(lambda xb: self.module_.latent(stretch(xb)), [self._prepare(X)])

    # ------------------------------------------------------------------ validation
    def _check_params(self):
        if self.mode not in MODES:
            raise InputError(f"mode must be one of {MODES}, got {self.mode!r}")
        if self.encoder not in ENCODERS:
            raise InputError(f"encoder must be one of {ENCODERS}, got {self.encoder!r}")
        if self.rotation not in ROTATIONS:
            raise InputError(f"rotation must be one of {ROTATIONS}, got {self.rotation!r}")
        for name in ("crop_size", "latent_dim", "proj_dim", "queue_size", "batch_size", "max_steps"):
            value = getattr(self, name)
            if not isinstance(value, (int, np.integer)) or value < 1:
                raise InputError(f"{name} must be a positive integer, got {value!r}")
        if not 0.0 <= float(self.momentum) < 1.0:
            raise InputError(f"momentum must lie in [0, 1), got {self.momentum!r}")
        if self.labelled_fraction is not None and not 0.0 < float(self.labelled_fraction) <= 1.0:
            raise InputError(f"labelled_fraction must lie in (0, 1] or be None, got {self.labelled_fraction!r}")
        if self.reddening is not None and self.extinction_coeffs is None:
            raise InputError("reddening needs extinction_coeffs (A_b/E(B−V), one per band)")

    def _validate_X(self, X, reset):
        if reset:
            arr = check_images(X, "X")
            h, w = arr.shape[2:]
            if h != w:
                raise InputError(f"X images must be square for the rotation augmentation, got {h}×{w} pixels")
            if h < self.crop_size:
                raise InputError(f"X images are {h}×{w} pixels, smaller than crop_size={self.crop_size} "
                                 f"(the network input is a {self.crop_size}×{self.crop_size} crop); pass larger "
                                 "stamps or lower crop_size")
        return super()._validate_X(X, reset)

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

        seed = int(self._rng().integers(2**31 - 1))
        gen = seed_everything(seed)
        rng = np.random.default_rng(seed)
        device = select_device(self.device)
        net = self._build_net().to(device)
        images = torch.from_numpy(X / self.pixel_sigma_[None, :, None, None].astype(np.float32)).to(device)
        edges, _ = grid_bins(self.zgrid_)
        labelled = np.isfinite(y)
        soft = np.zeros((n, self.n_bins_), dtype=np.float32)
        soft[labelled] = soft_labels(y[labelled], edges, self.label_sigma)
        data = dict(images=images, y=torch.from_numpy(y.astype(np.float32)).to(device),
                    soft=torch.from_numpy(soft).to(device),
                    colors=torch.from_numpy(((colors - self.color_mean_) / self.color_std_).astype(np.float32))
                    .to(device))
        history = []
        fingerprint = fit_fingerprint(self, X, y, colors) if self.checkpoint_dir else None
        stages = ([("pretrain", self.pretrain_steps), ("supervised", self.max_steps)]
                  if self.mode == "pretrain_finetune" else [(self.mode, self.max_steps)])
        for stage, steps in stages:
            ckpt = LoopCheckpoint(self.checkpoint_dir, f"stage_{stage}", fingerprint)
            history += self._train(net, data, labelled, stage, steps, gen, rng, device, ckpt)
        self.module_ = net.to("cpu").eval()
        keys = ("stage", "step", "total", "contrastive", "colour", "redshift", "bins")
        self.history_ = {k: np.array([h.get(k, np.nan) for h in history], dtype=object if k == "stage" else float)
                         for k in keys}
        self.history_["stage"] = self.history_["stage"].astype(str)
        return self

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

    def _train(self, net, data, labelled, stage, steps, gen, rng, device, ckpt):
        weights = self._stage_weights(stage)
        lab_idx, unl_idx = np.flatnonzero(labelled), np.flatnonzero(~labelled)
        bsize = int(self.batch_size)
        if stage == "supervised":
            samplers = [(_Cycler(lab_idx, rng), bsize)]
        elif stage == "pretrain" or self.labelled_fraction is None or unl_idx.size == 0:
            samplers = [(_Cycler(np.arange(labelled.size), rng), bsize)]
        else:
            n_lab = min(bsize, max(1, int(round(float(self.labelled_fraction) * bsize))))
            samplers = [(_Cycler(lab_idx, rng), n_lab)] + ([(_Cycler(unl_idx, rng), bsize - n_lab)]
                                                           if bsize > n_lab else [])
        contrastive = weights.get("contrastive", 0) > 0
        key_enc = KeyEncoder(net).to(device) if contrastive else None
        queue = KeyQueue(self.queue_size, self.proj_dim, device) if contrastive else None
        opt = torch.optim.Adam(net.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, int(steps)))
        bar = progress(int(steps), f"PITA {stage}", self.verbose, unit="step")
        crop = int(self.crop_size)
        history, log_every = [], max(1, int(steps) // 50)
        save_every, start = max(1, int(steps) // 20), 0
        modules, optimizers = {"net": net, "key_enc": key_enc}, {"opt": opt, "sched": sched}
        resumed = ckpt.load(modules, optimizers, gen, rng)
        if resumed is not None:
            start, history, saved = resumed["step"], resumed["history"], resumed["tensors"]
            for i, (sampler, _) in enumerate(samplers):
                sampler.buf = saved[f"cycler{i}"].numpy()
            if queue is not None:
                queue.keys.copy_(saved["queue"])
                queue.ptr, queue.n_filled = resumed["queue_ptr"], resumed["queue_filled"]
            bar.update(start)
        net.train()
        for step in range(start, int(steps)):
            idx = torch.from_numpy(np.concatenate([s.take(k) for s, k in samplers])).to(device)
            x = data["images"][idx]
            cols = data["colors"][idx]
            if self.reddening is not None:
                x, cols = self._redden(x, cols, gen)
            xq = augment(x, crop, self.jitter, self.rotation, float(self.noise_std), gen)
            xk = augment(x, crop, self.jitter, self.rotation, float(self.noise_std), gen) if contrastive else None
            total, parts = step_losses(net, key_enc, queue, xq, xk, data["y"][idx], data["soft"][idx], cols,
                                       weights, float(self.huber_delta), float(self.temperature))
            opt.zero_grad(set_to_none=True)
            if total.requires_grad:
                total.backward()
                opt.step()
            sched.step()
            if contrastive:
                key_enc.momentum_update(net, float(self.momentum))
                queue.enqueue(parts.pop("keys"))
            if step % log_every == 0 or step == int(steps) - 1:
                history.append(dict(parts, stage=stage, step=step, total=float(total.detach())))
                bar.set_postfix(loss=f"{float(total.detach()):.4f}")
            bar.update(1)
            if ckpt.path is not None and ((step + 1) % save_every == 0 or step + 1 == int(steps)):
                tensors = {f"cycler{i}": torch.from_numpy(s.buf.copy()) for i, (s, _) in enumerate(samplers)}
                if queue is not None:
                    tensors["queue"] = queue.keys
                ckpt.save(modules, optimizers, gen, rng, tensors=tensors, step=step + 1, history=history,
                          queue_ptr=queue.ptr if queue is not None else 0,
                          queue_filled=queue.n_filled if queue is not None else 0)
        bar.close()
        return history

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

    def _estimate_pdf(self, X):
        net = self.module_

        def probs(xb):
            _, logits = net.redshift(net.latent(stretch(xb)))
            return torch.softmax(logits.double(), dim=1)

        p = fixed_batch_forward(probs, [self._prepare(X)])
        return self._hist_ensemble(p)

    # ------------------------------------------------------------------ persistence
    _torch_state_attr = "module_"

    def _new_module(self):
        return self._build_net()

    # ------------------------------------------------------------------ conformance
    @classmethod
    def _conformance_instance(cls):
        return cls(encoder_widths=(8, 16), latent_dim=32, proj_dim=16, head_widths=(32, 32), crop_size=12,
                   jitter=1.0, queue_size=256, momentum=0.99, max_steps=60, pretrain_steps=20, batch_size=32,
                   lr=3e-3, nzbins=61, random_state=0, device="cpu")

    def _conformance_data(self, random_state=0):
        from pzkit.testing import ConformanceData, make_toy_images

        X, z, _ = make_toy_images(n=300, n_bands=3, size=16, random_state=random_state)
        return ConformanceData(X[:200], z[:200], X[200:], z[200:])
