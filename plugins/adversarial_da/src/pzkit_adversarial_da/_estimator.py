"""The ``AdversarialDA`` estimator: band-pair CNN photo-z with unsupervised adversarial domain adaptation.

The method of the HSC-CLAUDS domain-adaptation paper (see ``docs/plugins/adversarial_da.md``): a CNN trained
on a labelled source field (COSMOS UltraDeep) is adapted to one unlabelled target field by an adversarial
module grafted on a layer of its trunk, trained with the inverted-label ("confusion") loss, with
magnitude-matched target sampling and an optional "same field or not" pair discriminator.
"""

import functools

import numpy as np
import torch
from torch import nn

from pzkit.exceptions import InputError
from pzkit.nn.core import grid_bins, z_to_bin
from pzkit.nn.engine import RowIndex
from pzkit.nn.images import ImagePhotoZEstimator, check_images, check_per_object, fixed_batch_forward

from ._nets import AdversarialNet, BandPairNet, Discriminator

_ADV_LOSSES = ("inverted", "grl")
_DISCRIMINATORS = ("domain", "pair")


















# ---------------------------------------------------------------------------------------------- helpers
def magnitude_neighbours(mag_ref, mag_query, k=30, exclude_self=False, chunk=65536):
    """Indices into ``mag_ref`` of the ``k`` nearest reference magnitudes of each query (n_query, min(k, n_ref)).

    1-D nearest neighbours on a sorted array: the k nearest lie in the 2k sorted values around the insertion
    point. ``exclude_self`` (query = reference) drops each object from its own list.
    """
    mag_ref = np.asarray(mag_ref, dtype=np.float64)
    mag_query = np.asarray(mag_query, dtype=np.float64)
    order = np.argsort(mag_ref, kind="stable")
    srt = mag_ref[order]
    n = len(srt)
    kk = min(int(k) + int(exclude_self), n)
    width = min(2 * kk, n)
    out = []
    for start in range(0, len(mag_query), chunk):
        q = mag_query[start:start + chunk]
        pos = np.searchsorted(srt, q)
        lo = np.clip(pos - kk, 0, n - width)
        cand = lo[:, None] + np.arange(width)[None, :]
        d = np.abs(srt[cand] - q[:, None])
        sel = np.argsort(d, axis=1, kind="stable")[:, :kk]
        idx = order[np.take_along_axis(cand, sel, axis=1)]
        if exclude_self:
            own = idx == (start + np.arange(len(q)))[:, None]
            # push each row's own index to the end (stable), then drop the last column
            idx = np.take_along_axis(idx, np.argsort(own, axis=1, kind="stable"), axis=1)[:, : kk - 1]
        out.append(idx)
    return np.concatenate(out) if out else np.zeros((0, kk), dtype=np.int64)


def pdf_width(probs, edges, level=0.68):
    """Width z_hi − z_lo of the central ``level`` interval of histogram PDFs (n, n_bins) on ``edges``."""
    p = np.asarray(probs, dtype=np.float64)
    p = p / p.sum(axis=1, keepdims=True)
    cdf = np.cumsum(p, axis=1)

    def quantile(q):
        idx = np.minimum((cdf < q).sum(axis=1), p.shape[1] - 1)
        rows = np.arange(len(p))
        below = cdf[rows, idx] - p[rows, idx]
        frac = np.clip((q - below) / np.maximum(p[rows, idx], 1e-300), 0.0, 1.0)
        return edges[idx] + frac * (edges[idx + 1] - edges[idx])

    return quantile(0.5 + level / 2) - quantile(0.5 - level / 2)


# ---------------------------------------------------------------------------------------------- estimator
class AdversarialDA(ImagePhotoZEstimator):
    """Band-pair CNN photo-z classifier adapted to one unlabelled target field by an adversarial module.

    Each adjacent band pair goes through its own convolutional branch; a shared trunk and fully connected
    layers give a softmax over the grid's redshift bins, trained with cross-entropy on the labelled source
    stamps ``X``. A discriminator grafted on a trunk layer learns to tell source from target stamps
    (``X_target``, one unlabelled field per model) while the layers upstream learn to confuse it; targets are
    drawn matched to the source objects in reference magnitude (``mag_source``, ``mag_target``). ``predict``
    and ``estimate_pdf`` take stamps only; the ancil holds ``pdfw``, the width of the central 68 % interval.

    Parameters
    ----------
    zmin, zmax, nzbins, point_estimate, random_state
        See :class:`pzkit.PhotoZEstimator`; the defaults are the paper's 360 bins over 0 < z < 6 and the
        PDF median.
    branch_width : int, default 16
        Channels of the two 3×3 convolutions of each band-pair branch.
    trunk_widths : tuple of int, default (32, 32, 64, 64, 96, 96)
        Channels of the trunk's 3×3 convolution + PReLU layers (2×2 average pooling after every second one).
    fc_widths : tuple of int, default (128,)
        Fully connected layers after the global average pooling.
    graft_layer : int, default 5
        Trunk layer (1-based) whose output feeds the discriminator (the paper: the fifth).
    adversarial : bool, default True
        Train with the discriminator; False gives the source-only network (no ``X_target`` needed).
    adversarial_loss : {"inverted", "grl"}, default "inverted"
        The paper's inverted-label (confusion) loss, or a gradient-reversal layer with the DANN schedule.
    adversarial_weight : float, default 1.0
        Weight of the confusion loss (the paper: 1).
    discriminator : {"domain", "pair"}, default "domain"
        Classify feature maps by field, or pairs of feature maps as "same field or not".
    disc_widths : tuple of 4 int, default (156, 156, 128, 128)
        Convolution widths of the discriminator (the paper's).
    disc_fc_widths : tuple of int, default (256,)
        Fully connected layers of the discriminator.
    magnitude_matching : bool, default True
        Draw each source object's target among its ``n_neighbors`` nearest in reference magnitude (False:
        uniform draws; then ``mag_source`` and ``mag_target`` are not needed).
    n_neighbors : int, default 30
        Neighbours in reference magnitude for the matching and the pair partners.
    max_epochs : int, default 50
        Passes over the source stamps (the paper: 50).
    batch_size : int, default 64
        Source rows per optimiser step, with as many target rows.
    lr : float, default 1e-3
        Adam learning rate of the network and the discriminator.
    weight_decay : float, default 0.0
        Adam weight decay.
    augment : bool, default True
        Random 90° rotations and flips of the training stamps (square stamps only).
    n_members, device, precision, n_threads, callbacks, checkpoint_dir, verbose
        See :class:`pzkit.nn.engine.NeuralPhotoZEstimator`.

    Attributes
    ----------
    modules_ : list of torch.nn.Module
        The fitted networks, one per ensemble member (the discriminator is not kept).
    history_ : list of list of dict
        Per member, one row per training epoch, with ``train_loss`` and ``phase`` (``"adversarial"`` or
        ``"source_only"``).
    scale_ : ndarray of shape (n_bands,)
        Per-band pixel scale of the ``asinh(pixel / scale)`` normalisation, from the source stamps.
    adversarial_used_ : bool
        Whether the discriminator was trained.

    Notes
    -----
    The paper, pzkit's implementation of it and every deviation from it are described in
    ``docs/plugins/adversarial_da.md``.
    """

    _tags = {"fit_inputs": {"X_target": "target:images", "mag_source": "mag", "mag_target": "target:mag"},
             "required_fit_inputs": ("X_target", "mag_source", "mag_target")}

    def __init__(self, zmin=0.0, zmax=6.0, nzbins=361, point_estimate="median", random_state=None,
                 branch_width=16, trunk_widths=(32, 32, 64, 64, 96, 96), fc_widths=(128,), graft_layer=5,
                 adversarial=True, adversarial_loss="inverted", adversarial_weight=1.0, discriminator="domain",
                 disc_widths=(156, 156, 128, 128), disc_fc_widths=(256,), magnitude_matching=True,
                 n_neighbors=30, max_epochs=50, batch_size=64, lr=1e-3, weight_decay=0.0, augment=True,
                 n_members=1, device="auto", precision="float32", n_threads="auto", callbacks=None,
                 checkpoint_dir=None, verbose=0):
        super().__init__(zmin=zmin, zmax=zmax, nzbins=nzbins, point_estimate=point_estimate,
                         random_state=random_state, max_epochs=max_epochs, batch_size=batch_size, lr=lr,
                         n_members=n_members, device=device, precision=precision, n_threads=n_threads,
                         callbacks=callbacks, checkpoint_dir=checkpoint_dir, verbose=verbose)
        self.branch_width = branch_width
        self.trunk_widths = trunk_widths
        self.fc_widths = fc_widths
        self.graft_layer = graft_layer
        self.adversarial = adversarial
        self.adversarial_loss = adversarial_loss
        self.adversarial_weight = adversarial_weight
        self.discriminator = discriminator
        self.disc_widths = disc_widths
        self.disc_fc_widths = disc_fc_widths
        self.magnitude_matching = magnitude_matching
        self.n_neighbors = n_neighbors
        self.weight_decay = weight_decay
        self.augment = augment

    # ------------------------------------------------------------------ public API
    def fit(self, X, y, X_target=None, mag_source=None, mag_target=None):
        """Fit on labelled source stamps ``X`` (n, bands, H, W) and redshifts ``y``, adapting to the
        unlabelled target stamps ``X_target`` (one field) matched by reference magnitude."""
        return super().fit(X, y, X_target=X_target, mag_source=mag_source, mag_target=mag_target)

    def graft_features(self, X, member=0):
        """Feature maps at the graft layer, flattened (n, C·H·W): what the adversarial module sees."""
        X, _ = self._validate_X(X, reset=False)
        net = self.modules_[member]
        return fixed_batch_forward(lambda xb: net.upstream(self._normalise(xb)).flatten(1), [X])

    # ------------------------------------------------------------------ fit
    def _check_params(self):
        widths = tuple(self.trunk_widths)
        if len(widths) < 1 or any(int(w) < 1 for w in widths):
            raise InputError(f"trunk_widths must be a non-empty sequence of positive widths, got {self.trunk_widths!r}")
        if not (isinstance(self.graft_layer, (int, np.integer)) and 1 <= self.graft_layer <= len(widths)):
            raise InputError(f"graft_layer must be an integer trunk layer in 1..{len(widths)} "
                             f"(len(trunk_widths)), got {self.graft_layer!r}")
        if self.adversarial_loss not in _ADV_LOSSES:
            raise InputError(f"adversarial_loss must be one of {_ADV_LOSSES}, got {self.adversarial_loss!r}")
        if self.discriminator not in _DISCRIMINATORS:
            raise InputError(f"discriminator must be one of {_DISCRIMINATORS}, got {self.discriminator!r}")
        self._check_engine_params(positive_ints=("n_neighbors", "branch_width"))
        if self.discriminator == "pair" and self.batch_size < 4:
            raise InputError(f"batch_size must be >= 4 with discriminator='pair', got {self.batch_size}")

    def _fit(self, X, y, X_target=None, mag_source=None, mag_target=None):
        self._check_params()
        n = X.shape[0]
        if X_target is None:
            if self.adversarial:
                raise InputError("X_target is required when adversarial=True: pass the unlabelled images of the "
                                 "target field (or set adversarial=False for the source-only network)")
            Xt = None
        else:
            Xt = check_images(X_target, "X_target", min_size=self._min_image_size)
            if Xt.shape[1] != X.shape[1]:
                raise InputError(f"X_target has {Xt.shape[1]} band(s) but the source images X have {X.shape[1]}; "
                                 "source and target must be observed in the same bands")
            if Xt.shape[2:] != X.shape[2:]:
                raise InputError(f"X_target stamps are {Xt.shape[2]}×{Xt.shape[3]} pixels but the source stamps "
                                 f"X are {X.shape[2]}×{X.shape[3]}")
        use_adv = bool(self.adversarial) and Xt is not None
        ms = mt = None
        if use_adv and self.magnitude_matching:
            for name, value in (("mag_source", mag_source), ("mag_target", mag_target)):
                if value is None:
                    raise InputError(f"{name} is required when magnitude_matching=True (reference magnitudes "
                                     "pair each source object with a target of similar brightness); pass it or "
                                     "set magnitude_matching=False")
            ms = check_per_object(mag_source, "mag_source", n)
            mt = check_per_object(mag_target, "mag_target", Xt.shape[0])
        if self.augment and X.shape[2] != X.shape[3]:
            raise InputError(f"augment=True rotates the stamps and needs square images; X is "
                             f"{X.shape[2]}×{X.shape[3]}")

        edges, _ = grid_bins(self.zgrid_)
        self.n_bins_ = len(edges) - 1
        bins = z_to_bin(y, edges)
        rng = self._rng()
        sample = X[rng.choice(n, size=min(n, 512), replace=False)] if n > 512 else X
        flat = np.moveaxis(sample, 1, 0).reshape(X.shape[1], -1)
        med = np.median(flat, axis=1, keepdims=True)
        scale = 1.4826 * np.median(np.abs(flat - med), axis=1)
        fallback = np.abs(flat).max(axis=1)
        self.scale_ = np.where(scale > 0, scale, np.where(fallback > 0, fallback, 1.0)).astype(np.float32)

        nn_st = nn_ss = nn_tt = None
        if use_adv and self.magnitude_matching:
            nn_st = magnitude_neighbours(mt, ms, self.n_neighbors)
            if self.discriminator == "pair":
                nn_ss = magnitude_neighbours(ms, ms, self.n_neighbors, exclude_self=n > 1)
                nn_tt = magnitude_neighbours(mt, mt, self.n_neighbors, exclude_self=Xt.shape[0] > 1)

        bsz = min(int(self.batch_size), n)
        data = {"X": X, "bins": bins, "Xt": Xt, "nn_st": nn_st, "nn_ss": nn_ss, "nn_tt": nn_tt,
                "n_steps": int(self.max_epochs) * max(n // bsz, 1)}

        def train_member(member, seed):
            net = self._build_net()
            disc = None
            if use_adv:
                with torch.no_grad():
                    shape = tuple(net.upstream(torch.zeros((1,) + X.shape[1:])).shape[1:])
                if self.discriminator == "pair":
                    shape = (shape[0], shape[1], 2 * shape[2])
                disc = functools.partial(Discriminator, shape, tuple(self.disc_widths), tuple(self.disc_fc_widths))
            trainer = AdversarialNet(
                net, discriminator=disc, data=data, adversarial_loss=self.adversarial_loss,
                adversarial_weight=self.adversarial_weight, pair=self.discriminator == "pair", augment=self.augment,
                normalise=self._normalise, criterion=nn.CrossEntropyLoss, optimizer=torch.optim.Adam, lr=self.lr,
                optimizer__weight_decay=self.weight_decay, batch_size=bsz, drop_last=True, train_split=None,
                device=self.device_, precision=self.precision, seed=seed, verbose=0)
            rows = self._train(trainer, RowIndex(n), phase="adversarial" if use_adv else "source_only",
                               member=member)
            return trainer.module_, rows

        self._fit_members(train_member, X, bins, Xt)
        self.adversarial_used_ = use_adv
        return self

    def _build_net(self):
        return BandPairNet(self.n_bands_in_, self.n_bins_, self.branch_width, tuple(self.trunk_widths),
                           tuple(self.fc_widths), int(self.graft_layer))

    def _normalise(self, xb):
        scale = torch.as_tensor(self.scale_, device=xb.device)[None, :, None, None]
        return torch.asinh(xb / scale)

    # ------------------------------------------------------------------ estimate
    def _probabilities(self, X):
        def forward(xb):
            xb = self._normalise(xb)
            return torch.stack([torch.softmax(net(xb), dim=1) for net in self.modules_]).mean(0)

        return fixed_batch_forward(forward, [X])

    def _estimate_pdf(self, X):
        probs = self._probabilities(X)
        edges, _ = grid_bins(self.zgrid_)
        ens = self._hist_ensemble(probs)
        ens.set_ancil({"pdfw": pdf_width(probs, edges)})
        return ens

    # ------------------------------------------------------------------ persistence
    def _new_module(self):
        return self._build_net()

    # ------------------------------------------------------------------ conformance
    @classmethod
    def _conformance_instance(cls):
        return cls(zmax=3.0, nzbins=61, branch_width=4, trunk_widths=(8, 8, 16, 16, 16), fc_widths=(32,),
                   graft_layer=4, disc_widths=(8, 8, 8, 8), disc_fc_widths=(16,), max_epochs=12, batch_size=32,
                   lr=3e-3, n_neighbors=10)

    @classmethod
    def _sklearn_check_params(cls):
        # scikit-learn's checks pass no target field: the source-only network
        return {"adversarial": False, "max_epochs": 2}

    def _conformance_data(self, random_state):
        from pzkit.testing import ConformanceData, make_toy_images

        X, z, mag = make_toy_images(360, n_bands=3, size=12, random_state=random_state)
        # the target field: another draw with 2.5× the pixel noise and a 0.2 mag zero-point offset in the last band
        Xt, _, mag_t = make_toy_images(200, n_bands=3, size=12, random_state=random_state + 1, noise=0.05)
        Xt = Xt * np.array([1.0, 1.0, 10 ** (-0.4 * 0.2)], dtype=np.float32)[None, :, None, None]
        return ConformanceData(X[:240], z[:240], X[240:], z[240:],
                               fit_params={"X_target": Xt, "mag_source": mag[:240], "mag_target": mag_t})
