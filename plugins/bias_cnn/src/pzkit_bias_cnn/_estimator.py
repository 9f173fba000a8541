r"""The ``BiasCNN`` estimator: CNN photo-z classification with the bias correction of Lin et al. (arXiv:2202.09964).

See :class:`BiasCNN`. The model-agnostic Step 4 is :class:`pzkit.calibration.ZPhotCalibrator`; the network-free
pieces of Steps 2–3 are in :mod:`pzkit_bias_cnn._steps`.
"""

import copy

import numpy as np
import torch
import torch.nn.functional as F

from pzkit.exceptions import InputError
from pzkit.nn.engine import LearningRateSchedule, RowIndex, constant_then_drop
from pzkit.nn.images import ImagePhotoZEstimator, check_per_object, dihedral, fixed_batch_forward

from ._nets import BACKBONES, BiasPhaseNet, _Net, make_backbone
from ._steps import AUG_PROBS, balance, fit_label_model, mag_labels, mag_rows, row_outputs, z_bins


#: stage names: what ``stage`` / ``extra_stages`` accept
STAGES = ("baseline", "step1", "step2", "step3", "step3a", "step3b", "step3_skip2")
_STEP3 = {  # variant -> (soft labels, mean shift, after Step 2)
    "step3": (True, True, True),
    "step3a": (False, True, True),
    "step3b": (True, False, True),
    "step3_skip2": (True, True, False),
}
_ALIASES = {"step3\\2": "step3_skip2", "3\\2": "step3_skip2", "3a": "step3a", "3b": "step3b", "3": "step3"}


def _stage_name(s):
    s = _ALIASES.get(s, s)
    if s not in STAGES:
        raise InputError(f"stage must be one of {STAGES} (or '3a', '3b', 'step3\\2'), got {s!r}")
    return s


def preprocess_eq1(X, scale=1.0):
    """The paper's Eq. 1 after multiplying by ``scale``: I = √(I0+1) − 1 for I0 ≥ 0, −√(−I0+1) + 1 otherwise."""
    I0 = np.asarray(X, dtype=np.float32) * np.float32(scale)
    return (np.sign(I0) * (np.sqrt(np.abs(I0) + 1.0) - 1.0)).astype(np.float32)






class BiasCNN(ImagePhotoZEstimator):
    r"""CNN photo-z classifier with the bias correction of Lin et al. (2022): pzkit plugin ``bias_cnn``.

    A CNN reads image stamps ``X`` (n, bands, H, W) with the reference magnitude ``mag`` (and optionally the
    Galactic ``ebv``) and classifies the redshift into the grid's bins. Step 1 trains a multi-channel output
    (one redshift head per magnitude range and a magnitude head) end to end; Step 2 fine-tunes the redshift
    heads on a training set balanced in (redshift, magnitude) cells; Step 3 retrains them with soft,
    mean-shifted labels on an extended grid. ``stage`` picks the output; Step 4 is
    :class:`pzkit.calibration.ZPhotCalibrator`. The PDFs are not calibrated posteriors: use the z_mode.

    Parameters
    ----------
    zmin, zmax, nzbins, point_estimate, random_state
        See :class:`pzkit.PhotoZEstimator`; the defaults are the paper's SDSS grid (180 bins over 0–0.4).
    stage : str, default "step3"
        Output stage, one of :data:`STAGES` (aliases ``"3a"``, ``"3b"``, ``"step3\2"``); earlier stages of
        the chain are kept and readable with :meth:`predict_stage` and :meth:`stage_probabilities`.
    extra_stages : tuple of str, default ()
        Further Step-3 variants trained on the same chains.
    backbone : {"S1", "S2", "S3", "P", "flat"}, default "S2"
        The paper's Net_S1/S2/S3 or Net_P; ``"flat"`` takes pre-computed features as (n, d, 1, 1) arrays.
    conv_width : int, default 64
        Net_S convolution width (the paper: 64).
    fc_width : int or None, default None
        Net_S fully connected width (None: 256, the paper's); for Net_P, replaces its 1024 when given.
    conv_activation : {"relu", "prelu"}, default "relu"
        Net_S convolution activation (the paper's text: ReLU; the authors' code: PReLU).
    n_mag_outputs : int, default 6
        m, the number of redshift heads of the multi-channel output (the paper: 6 for SDSS, 10 for CFHTLS).
    mag_min, mag_step : float, default 12.5, 0.5
        The 2m − 1 interlaced magnitude rows: width ``mag_step``, starting at ``mag_min``.
    th : int, default 200
        Step-2 cap on the objects per (redshift bin, magnitude row) cell (SDSS 200, CFHTLS-Wide 100, Deep 5).
    ext_low, ext_high : int or None, default None
        Bins appended below / above the grid in Step 3 (None: half the number of bins).
    label_fit_cap : int, default 60000
        Largest number of objects used to fit the Step-3 label model (Eqs. 4–8).
    shift_hist : {"output", "row"}, default "output"
        Magnitude histogram of the Eq. 8 mean shift: the magnitude output's (paper) or the input row's (code).
    tune_mag_head : bool, default False
        Also fine-tune the magnitude head in Steps 2–3.
    max_epochs : int, default 120
        Length of the Baseline / Step-1 training, in epochs of ``steps_per_epoch`` optimiser steps.
    steps_per_epoch : int, default 1000
        Optimiser steps per epoch, in every training phase.
    batch_size : int, default 128
        Batch size of the Baseline / Step-1 training.
    lr, lr_late : float, default 1e-4, 2e-5
        Adam learning rate of the Baseline / Step-1 training, before and from ``lr_drop_epoch`` on.
    lr_drop_epoch : int, default 60
        Epoch at which the learning rate drops from ``lr`` to ``lr_late``.
    finetune_epochs : int, default 40
        Length of each Step-2 / Step-3 head training, in epochs of ``steps_per_epoch`` steps.
    batch_size_finetune : int, default 32
        Batch size of the Step-2 / Step-3 head training.
    lr_finetune : float, default 2e-5
        Adam learning rate of the Step-2 / Step-3 head training.
    augment : bool, default True
        Random 90° rotations and flips during training.
    pixel_scale : float, default 1.0
        Multiplies the pixels before the Eq. 1 stretch (the paper: 1 for SDSS, 1e−3 for CFHTLS).
    preprocess : {"eq1", None}, default "eq1"
        The paper's Eq. 1 stretch of the pixels, or raw pixels.
    cache_mb : float, default 2048.0
        Largest in-memory cache of frozen representations (of the 8 rotations/flips) for Steps 2–3.
    n_members, device, precision, n_threads, callbacks, checkpoint_dir, verbose
        See :class:`pzkit.nn.engine.NeuralPhotoZEstimator`; each member is an independent chain.

    Attributes
    ----------
    modules_ : list of torch.nn.Module
        The fitted networks (backbone and the heads of every trained stage), one per ensemble member.
    history_ : list of list of dict
        Per member, one row per training epoch, with ``train_loss`` and ``phase`` (the stage trained).
    stage_ : str
        The fitted output stage.
    zgrid_ : ndarray
        The output grid; after a Step-3 stage, the extended grid.
    label_models_ : dict
        Per Step-3 variant, per member: the fitted σ1 and the sizes of the label-fitting and training sets.

    Notes
    -----
    The paper, pzkit's implementation of it, the choices made where the paper is ambiguous and every
    deviation from it are described in ``docs/plugins/bias_cnn.md``.
    """

    _tags = {"fit_inputs": {"mag": "mag", "ebv": "ebv"}, "predict_inputs": {"mag": "mag", "ebv": "ebv"},
             "required_fit_inputs": ("mag",)}

    def __init__(self, zmin=0.0, zmax=0.4, nzbins=181, point_estimate="mode", random_state=None, stage="step3",
                 extra_stages=(), backbone="S2", conv_width=64, fc_width=None, conv_activation="relu",
                 n_mag_outputs=6, mag_min=12.5, mag_step=0.5, th=200, ext_low=None, ext_high=None,
                 label_fit_cap=60000, shift_hist="output", tune_mag_head=False, n_members=1, max_epochs=120,
                 steps_per_epoch=1000, batch_size=128, lr=1e-4, lr_late=2e-5, lr_drop_epoch=60, finetune_epochs=40,
                 batch_size_finetune=32, lr_finetune=2e-5, augment=True, pixel_scale=1.0, preprocess="eq1",
                 cache_mb=2048.0, device="auto", precision="float32", n_threads="auto", callbacks=None,
                 checkpoint_dir=None, verbose=0):
        super().__init__(zmin=zmin, zmax=zmax, nzbins=nzbins, point_estimate=point_estimate,
                         random_state=random_state, max_epochs=max_epochs, batch_size=batch_size, lr=lr,
                         n_members=n_members, device=device, precision=precision, n_threads=n_threads,
                         callbacks=callbacks, checkpoint_dir=checkpoint_dir, verbose=verbose)
        self.stage = stage
        self.extra_stages = extra_stages
        self.backbone = backbone
        self.conv_width = conv_width
        self.fc_width = fc_width
        self.conv_activation = conv_activation
        self.n_mag_outputs = n_mag_outputs
        self.mag_min = mag_min
        self.mag_step = mag_step
        self.th = th
        self.ext_low = ext_low
        self.ext_high = ext_high
        self.label_fit_cap = label_fit_cap
        self.shift_hist = shift_hist
        self.tune_mag_head = tune_mag_head
        self.steps_per_epoch = steps_per_epoch
        self.lr_late = lr_late
        self.lr_drop_epoch = lr_drop_epoch
        self.finetune_epochs = finetune_epochs
        self.batch_size_finetune = batch_size_finetune
        self.lr_finetune = lr_finetune
        self.augment = augment
        self.pixel_scale = pixel_scale
        self.preprocess = preprocess
        self.cache_mb = cache_mb

    # ------------------------------------------------------------------ public API with explicit side inputs
    def fit(self, X, y, mag=None, ebv=None):
        """Fit on stamps ``X`` (n, bands, H, W), spec-z ``y``, reference magnitudes ``mag`` (n,) and optional
        Galactic ``ebv`` (n,)."""
        return super().fit(X, y, mag=mag, ebv=ebv)

    def predict(self, X, mag=None, ebv=None):
        """Point estimates (z_mode by default) of the fitted ``stage``."""
        return super().predict(X, mag=mag, ebv=ebv)

    def estimate_pdf(self, X, ids=None, mag=None, ebv=None):
        """``qp.hist`` ensemble of the (member-averaged) stage densities on ``zgrid_`` (not calibrated posteriors)."""
        return super().estimate_pdf(X, ids=ids, mag=mag, ebv=ebv)

    def stage_probabilities(self, X, stage=None, mag=None, ebv=None):
        """(bin edges, bin probabilities (n, nb)) of any fitted stage, averaged over members."""
        if not hasattr(self, "modules_"):
            self._validate_X(X, reset=False)  # raises NotFittedError
        stage = self.stage_ if stage is None else _stage_name(stage)
        if stage not in self.head_bins_:
            raise InputError(f"stage {stage!r} was not fitted; fitted stages: {sorted(self.head_bins_)}")
        X, _ = self._validate_X(X, reset=False)
        with self._thread_context(fitting=False):
            return self._edges_for(stage), self._probs(X, stage, mag, ebv)

    def predict_stage(self, X, stage, mag=None, ebv=None):
        """z_mode (centre of the most probable bin; may lie outside [zmin, zmax] for Step-3 stages) of a fitted
        stage."""
        edges, p = self.stage_probabilities(X, stage, mag=mag, ebv=ebv)
        centres = 0.5 * (edges[1:] + edges[:-1])
        return centres[np.argmax(p, axis=1)]

    # ------------------------------------------------------------------ parameters
    def _check_params(self):
        stage = _stage_name(self.stage)
        extras = tuple(_stage_name(s) for s in (self.extra_stages or ()))
        for s in extras:
            if s not in _STEP3:
                raise InputError(f"extra_stages may only hold Step-3 variants {tuple(_STEP3)}, got {s!r}")
        if extras and stage not in _STEP3 and stage != "step2":
            raise InputError("extra_stages need stage 'step2' or a Step-3 variant")
        if self.backbone not in BACKBONES:
            raise InputError(f"backbone must be one of {BACKBONES}, got {self.backbone!r}")
        self._check_engine_params(positive_ints=("n_mag_outputs", "th", "label_fit_cap", "steps_per_epoch",
                                                 "finetune_epochs", "batch_size_finetune", "conv_width"))
        v = self.lr_drop_epoch
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise InputError(f"lr_drop_epoch must be a non-negative integer, got {v!r}")
        for name in ("lr_late", "lr_finetune", "mag_step", "pixel_scale", "cache_mb"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float, np.floating)) or not v > 0:
                raise InputError(f"{name} must be a positive number, got {v!r}")
        for name in ("ext_low", "ext_high"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0):
                raise InputError(f"{name} must be None or a non-negative integer, got {v!r}")
        if self.shift_hist not in ("output", "row"):
            raise InputError(f"shift_hist must be 'output' or 'row', got {self.shift_hist!r}")
        if self.preprocess not in ("eq1", None):
            raise InputError(f"preprocess must be 'eq1' or None, got {self.preprocess!r}")
        if self.conv_activation not in ("relu", "prelu"):
            raise InputError(f"conv_activation must be 'relu' or 'prelu', got {self.conv_activation!r}")
        return stage, extras

    # ------------------------------------------------------------------ side inputs
    def _prep(self, X):
        return preprocess_eq1(X, self.pixel_scale) if self.preprocess == "eq1" else np.asarray(X, np.float32)

    def _side_inputs(self, n, mag, ebv, fitting):
        needs_mag = (self.stage_ if not fitting else _stage_name(self.stage)) != "baseline"
        rows = None
        if mag is not None or needs_mag:
            if mag is None:
                raise InputError("mag (the per-object reference magnitude, e.g. dereddened r) is required")
            m = check_per_object(mag, "mag", n, allow_nan=True)
            if fitting:
                finite = m[np.isfinite(m)]
                self.mag_fill_ = float(finite.max()) if finite.size else float("inf")
            rows = mag_rows(m, self.mag_min, self.mag_step, 2 * self.n_mag_outputs - 1, fill=self.mag_fill_)
        if fitting:
            self.uses_ebv_ = ebv is not None
        if ebv is None:
            if self.uses_ebv_:
                raise InputError("ebv is required: the estimator was fitted with an E(B−V) side input")
            side = np.zeros((n, 0), dtype=np.float32)
        else:
            if not self.uses_ebv_:
                raise InputError("ebv was given but the estimator was fitted without an E(B−V) side input")
            side = check_per_object(ebv, "ebv", n).astype(np.float32)[:, None]
        return rows, side

    # ------------------------------------------------------------------ fit
    def _fit(self, X, y, mag=None, ebv=None):
        stage, extras = self._check_params()
        self.stage_ = stage
        n = len(self.zgrid_) - 1
        self.n_bins_ = n
        self.width_ = float(self.zgrid_[1] - self.zgrid_[0])
        self.zgrid_initial_ = self.zgrid_.copy()
        self.ext_low_ = n // 2 if self.ext_low is None else int(self.ext_low)
        self.ext_high_ = n // 2 if self.ext_high is None else int(self.ext_high)
        self.mag_fill_ = float("inf")
        self.label_models_ = {}
        rows, side = self._side_inputs(X.shape[0], mag, ebv, fitting=True)
        self.n_side_ = side.shape[1]
        Xp = self._prep(X)
        zbin = z_bins(y, self.zmin, self.width_, n)
        self.n_balanced_ = []

        def train_member(member, seed):
            return self._fit_member(Xp, side, y, zbin, rows, seed, member, stage, extras)

        self._fit_members(train_member, X, y, mag, ebv)
        self.modules_ = [m.to(memory_format=torch.contiguous_format) for m in self.modules_]
        self.head_bins_ = {name: (self.n_bins_ext_ if name in _STEP3 else n) for name in self.modules_[0].heads.keys()}
        if stage in _STEP3:
            self.zgrid_ = self._edges_for(stage)

    @property
    def n_bins_ext_(self):
        return self.n_bins_ + self.ext_low_ + self.ext_high_

    def _edges_for(self, stage):
        w, n = self.width_, self.n_bins_
        if stage in _STEP3:
            lo, hi = self.ext_low_, self.ext_high_
            return np.linspace(self.zmin - lo * w, self.zmin + (n + hi) * w, n + lo + hi + 1)
        return self.zgrid_initial_.copy()

    def _skeleton(self, head_bins):
        kw = {}
        if self.backbone in ("S1", "S2", "S3"):
            kw = {"conv_width": self.conv_width, "fc_width": self.fc_width or 256,
                  "conv_activation": self.conv_activation}
        elif self.backbone == "P" and self.fc_width:
            kw = {"fc_width": self.fc_width}
        bb = make_backbone(self.backbone, self.n_bands_in_, self.image_shape_[0], n_side=self.n_side_, **kw)
        return _Net(bb, self.n_mag_outputs, head_bins)

    def _channels_last(self, t):
        return t.contiguous(memory_format=torch.channels_last) if t.ndim == 4 and t.shape[-1] > 1 else t

    def _augmentable(self):
        h, w = self.image_shape_
        return bool(self.augment) and h == w and h > 1

    def _draw_ks(self, rng, size):
        if not self._augmentable():
            return np.zeros(size, dtype=np.int64)
        return rng.choice(8, size=size, p=AUG_PROBS)

    def _images(self, Xp, idx, ks):
        x = torch.from_numpy(Xp[idx])
        if ks.any():
            kt = torch.from_numpy(ks)
            out = torch.empty_like(x)
            for k in np.unique(ks):
                sel = kt == int(k)
                out[sel] = dihedral(x[sel], int(k))
            x = out
        return self._channels_last(x.to(self.device_))

    @staticmethod
    def _targets(outs, cen, sig, m, nb, dev):
        """Label tensor (B, m, nb): flat 1/nb on inactive heads, Gaussian (σ in bins) or one-hot on active ones."""
        B = outs.shape[0]
        y = torch.full((B, m, nb), 1.0 / nb, dtype=torch.float32, device=dev)
        grid = torch.arange(nb, dtype=torch.float32, device=dev)
        for slot in range(2):
            act = np.flatnonzero(outs[:, slot] >= 0)
            if act.size == 0:
                continue
            c = torch.as_tensor(cen[act, slot], dtype=torch.float32, device=dev)
            s = torch.as_tensor(sig[act, slot], dtype=torch.float32, device=dev)
            hard = s < 0.1
            g = torch.exp(-0.5 * ((grid[None, :] - c[:, None]) / torch.where(hard, 1.0, s)[:, None]) ** 2)
            onehot = F.one_hot(torch.clamp(torch.floor(c), 0, nb - 1).long(), nb).float()
            g = torch.where(hard[:, None], onehot, g)
            g = g / g.sum(dim=1, keepdim=True).clamp_min(1e-30)
            y[torch.as_tensor(act, device=dev), torch.as_tensor(outs[act, slot], device=dev)] = g
        return y

    def _multi_loss(self, net, rep, name, outs, cen, sig, maglab):
        zlog, maglog = net.logits(rep, name)
        y = self._targets(outs, cen, sig, self.n_mag_outputs, zlog.shape[-1], rep.device)
        loss = -(y * torch.log_softmax(zlog, dim=-1)).sum(dim=(1, 2))
        loss = loss - (torch.as_tensor(maglab, device=rep.device) * torch.log_softmax(maglog, dim=-1)).sum(dim=1)
        return loss.mean()

    def _phase(self, chain, net, n_rows, batch_size, epochs, lr, name, batch_loss, trainable=None, lr_fn=None):
        """Train one phase of a chain (``{"member", "seed", "rows"}``) with the engine; appends its history."""
        callbacks = [("lr_schedule", LearningRateSchedule(lr_fn, unit="step"))] if lr_fn is not None else []
        trainer = BiasPhaseNet(net, batch_loss=batch_loss, trainable=trainable, criterion=torch.nn.CrossEntropyLoss,
                               optimizer=torch.optim.Adam, lr=lr, batch_size=batch_size,
                               steps_per_epoch=int(self.steps_per_epoch), train_split=None, device=self.device_,
                               precision=self.precision, seed=chain["seed"] + 1 + len(chain["phases"]),
                               callbacks=callbacks, verbose=0)
        chain["rows"] += self._train(trainer, RowIndex(n_rows), phase=name, member=chain["member"],
                                     max_epochs=epochs)
        chain["phases"].append(name)

    def _fit_member(self, Xp, side, y, zbin, rows, seed, member, stage, extras):
        """One chain: Baseline or Step 1 end to end, then (optionally) Step 2 and the Step-3 variants on the
        frozen representation. Returns the network and its history rows (one ``phase`` per trained head)."""
        dev, m, n = self.device_, self.n_mag_outputs, self.n_bins_
        rng = np.random.default_rng(seed)  # draws outside the training phases (label-fit subsample)
        chain = {"member": member, "seed": seed, "rows": [], "phases": []}
        first = "baseline" if stage == "baseline" else "step1"
        net = self._skeleton({first: n}).to(dev)
        net.backbone = net.backbone.to(memory_format=torch.channels_last) if Xp.shape[-1] > 1 else net.backbone
        N = Xp.shape[0]
        side_t = torch.from_numpy(side)

        # ---------------- Baseline / Step 1: end to end
        if rows is not None:
            outs_all = row_outputs(rows)
            maglab_all = mag_labels(rows, m).astype(np.float32)
        zhard = zbin.astype(np.float64)

        def loss_e2e(idx, r):
            rep = net.backbone.representation(self._images(Xp, idx, self._draw_ks(r, idx.size)),
                                              side_t[idx].to(dev))
            if first == "baseline":
                zlog, _ = net.logits(rep, "baseline")
                return F.cross_entropy(zlog, torch.from_numpy(zbin[idx]).to(dev))
            o = outs_all[idx]
            return self._multi_loss(net, rep, "step1", o, np.stack([zhard[idx]] * 2, 1), np.zeros((idx.size, 2)),
                                    maglab_all[idx])

        drop_at = int(self.lr_drop_epoch) * int(self.steps_per_epoch)
        self._phase(chain, net, N, self.batch_size, self.max_epochs, self.lr, first, loss_e2e,
                    lr_fn=constant_then_drop(self.lr, self.lr_late, drop_at))
        if stage in ("baseline", "step1"):
            self.n_balanced_.append(0)
            return net, chain["rows"]

        # ---------------- frozen representation for Steps 2–3
        for p in net.backbone.parameters():
            p.requires_grad_(False)
        net.backbone.eval()
        variants = [s for s in (stage,) + tuple(extras) if s in _STEP3]
        needs_step2 = stage == "step2" or any(_STEP3[v][2] for v in variants)
        sub = balance(zbin, rows, self.th, np.random.default_rng(seed + 1), member=member, n_members=self.n_members) \
            if needs_step2 else np.arange(0)
        pool = np.arange(N) if any(not _STEP3[v][2] for v in variants) else sub
        rep_of = self._rep_cache(net, Xp, side, pool)

        def head_training(name, train_idx, cen, sig, src=None):
            if src is not None:
                net.heads[name] = copy.deepcopy(net.heads[src])
            trainable = [f"heads.{name}."]
            net.mag_heads[name] = copy.deepcopy(net.mag_heads["step1"])
            if self.tune_mag_head:
                trainable.append(f"mag_heads.{name}.")
            else:
                for p in net.mag_heads[name].parameters():
                    p.requires_grad_(False)

            def loss_ft(j, r):
                gidx = train_idx[j]
                rep = rep_of(gidx, self._draw_ks(r, j.size))
                return self._multi_loss(net, rep, name, outs_all[gidx], cen[j], sig[j], maglab_all[gidx])

            self._phase(chain, net, train_idx.size, self.batch_size_finetune, self.finetune_epochs, self.lr_finetune,
                        name, loss_ft, trainable=trainable)

        if needs_step2:
            net.add_head("step2", n).to(dev)
            head_training("step2", sub, np.stack([zhard[sub]] * 2, 1), np.zeros((sub.size, 2)), src="step1")
        for v in variants:
            soft, shift, after2 = _STEP3[v]
            train_idx = sub if after2 else np.arange(N)
            src = "step2" if after2 else "step1"
            fit_idx = train_idx
            if fit_idx.size > self.label_fit_cap:
                fit_idx = np.sort(rng.choice(train_idx, self.label_fit_cap, replace=False))
            with torch.no_grad():
                p = torch.cat([net.density(rep_of(fit_idx[a:a + 4096], np.zeros(min(4096, fit_idx.size - a), int)), src)
                               for a in range(0, fit_idx.size, 4096)])
            zp = self.zmin + (p.argmax(dim=1).cpu().numpy() + 0.5) * self.width_
            lm = fit_label_model(y[fit_idx], zp, zbin[fit_idx], rows[fit_idx], n, m, self.width_, self.zmin)
            cen, sig = lm.centres(zbin[train_idx], rows[train_idx], shift=shift, shift_hist=self.shift_hist)
            cen = cen + self.ext_low_
            if not soft:
                sig = np.where(np.isfinite(sig), 0.0, sig)
            net.add_head(v, self.n_bins_ext_).to(dev)   # re-initialised, extended
            head_training(v, train_idx, cen, sig)
            self.label_models_.setdefault(v, []).append(
                {"sigma1": lm.sigma1.tolist(), "n_label_fit": int(fit_idx.size), "n_train": int(train_idx.size)})
        self.n_balanced_.append(int(sub.size))
        return net, chain["rows"]

    def _rep_cache(self, net, Xp, side, pool):
        """A function (global indices, transform ks) -> representation tensor, backed by a cache of the 8 (or 1)
        dihedral transforms of ``pool`` when it fits in ``cache_mb``, else computed on the fly (no grad)."""
        dev = self.device_
        n_t = 8 if self._augmentable() else 1
        size_mb = n_t * pool.size * net.backbone.n_repr * 4 / 2**20
        side_t = torch.from_numpy(side)
        if size_mb > self.cache_mb:
            def on_the_fly(gidx, ks):
                with torch.no_grad():
                    return net.backbone.representation(self._images(Xp, gidx, ks), side_t[gidx].to(dev))
            return on_the_fly
        pos = np.full(Xp.shape[0], -1, dtype=np.int64)
        pos[pool] = np.arange(pool.size)
        cache = torch.empty((n_t, pool.size, net.backbone.n_repr), dtype=torch.float32, device=dev)
        with torch.no_grad():
            for k in range(n_t):
                for a in range(0, pool.size, 512):
                    g = pool[a:a + 512]
                    cache[k, a:a + g.size] = net.backbone.representation(
                        self._images(Xp, g, np.full(g.size, k, dtype=np.int64)), side_t[g].to(dev))

        def cached(gidx, ks):
            return cache[torch.from_numpy(np.asarray(ks)).to(dev), torch.from_numpy(pos[gidx]).to(dev)]
        return cached

    # ------------------------------------------------------------------ inference
    def _probs(self, X, stage, mag, ebv):
        rows, side = self._side_inputs(X.shape[0], mag, ebv, fitting=False)
        Xp = self._prep(X)
        total = None
        for net in self.modules_:
            def fn(x, s, net=net):
                rep = net.backbone.representation(x, s)
                return net.density(rep, stage)
            p = fixed_batch_forward(fn, [Xp, side])
            total = p if total is None else total + p
        return total / len(self.modules_)

    def _estimate_pdf(self, X, mag=None, ebv=None):
        p = self._probs(X, self.stage_, mag, ebv)
        return self._hist_ensemble(p / np.diff(self.zgrid_)[None, :])

    # ------------------------------------------------------------------ persistence without pickle
    def _new_module(self):
        return self._skeleton(self.head_bins_)

    # ------------------------------------------------------------------ conformance
    @classmethod
    def _conformance_instance(cls):
        return cls(zmin=0.0, zmax=2.5, nzbins=26, backbone="S1", conv_width=16, fc_width=32, n_mag_outputs=2,
                   mag_min=-1.0, mag_step=0.5, th=6, max_epochs=16, steps_per_epoch=50, batch_size=32, lr=3e-3,
                   lr_late=1e-3, lr_drop_epoch=12, finetune_epochs=6, batch_size_finetune=32, lr_finetune=3e-3)

    @classmethod
    def _sklearn_check_params(cls):
        # scikit-learn's checks pass no magnitudes: the Baseline stage, which needs none
        return {"stage": "baseline", "max_epochs": 2, "steps_per_epoch": 5}

    def _conformance_data(self, random_state=0):
        from pzkit.testing import ConformanceData, make_toy_images

        X, z, mag = make_toy_images(400, random_state=random_state)
        tr, te = slice(0, 300), slice(300, 400)
        return ConformanceData(X[tr], z[tr], X[te], z[te], fit_params={"mag": mag[tr]},
                               predict_params={"mag": mag[te]})
