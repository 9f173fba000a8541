"""Torch pieces of PITA: encoders, the three-headed network, the MoCo key encoder and queue, the augmentations
and the per-step loss routing. Kept apart from the estimator so the smoke tests can drive them directly."""

import copy
import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from pzkit.nn import MLP
from pzkit.nn.engine import TrainingNet
from pzkit.nn.images import random_dihedral


# ---------------------------------------------------------------------------------------------- encoders
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


class _ChannelsLayerNorm(nn.LayerNorm):
    """LayerNorm over the channel axis of a (B, C, H, W) tensor, as ConvNeXt's stem and downsampling use."""

    def forward(self, x):
        return super().forward(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


class ConvNeXtBlock(nn.Module):
    """ConvNeXt block (Liu et al. 2022): depthwise 7×7 → LayerNorm → 1×1 (4×) → GELU → 1×1 → layer scale, residual."""

    def __init__(self, dim, layer_scale=1e-6):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim)
        self.pw1 = nn.Linear(dim, 4 * dim)
        self.pw2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(torch.full((dim,), float(layer_scale)))

    def forward(self, x):
        h = self.dwconv(x).permute(0, 2, 3, 1)
        h = self.pw2(F.gelu(self.pw1(self.norm(h))))
        return x + (self.gamma * h).permute(0, 3, 1, 2)


class ConvNeXtEncoder(nn.Module):
    """A small ConvNeXt: stem (k×k conv, stride k, LayerNorm), stages of ConvNeXt blocks with LayerNorm + 2×2
    stride-2 convolutions between them, global average pool and a final LayerNorm.

    ConvNeXt-Tiny is ``widths=(96, 192, 384, 768), depths=(3, 3, 9, 3), stem=4`` on 224² images; the defaults
    here are scaled to 20–64 px stamps (stem 2 so that a 64-px crop keeps 32 px in the first stage).
    """

    def __init__(self, n_bands, widths=(32, 64, 128), depths=None, stem=2):
        super().__init__()
        depths = tuple(depths) if depths is not None else (2,) * len(widths)
        layers = [nn.Conv2d(n_bands, widths[0], stem, stride=stem), _ChannelsLayerNorm(widths[0])]
        for i, (w, d) in enumerate(zip(widths, depths)):
            if i > 0:
                layers += [_ChannelsLayerNorm(widths[i - 1]), nn.Conv2d(widths[i - 1], w, 2, stride=2)]
            layers += [ConvNeXtBlock(w) for _ in range(d)]
        self.features = nn.Sequential(*layers)
        self.norm = nn.LayerNorm(widths[-1])
        self.n_out = widths[-1]

    def forward(self, x):
        return self.norm(self.features(x).mean(dim=(2, 3)))


def make_encoder(kind, n_bands, widths):
    """``"small"``: ConvEncoder (3×3 convs, no BatchNorm, as pita-z's small CNN); ``"convnext"``."""
    if kind == "small":
        return ConvEncoder(n_bands, widths=tuple(widths), convs_per_block=2, batch_norm=False)
    return ConvNeXtEncoder(n_bands, widths=tuple(widths))


# ---------------------------------------------------------------------------------------------- network
class PITANet(nn.Module):
    """Encoder → MLP_encoder → latent; projection head (MoCo), MLP_colour and MLP_redshift on the latent.

    MLP_redshift ends in two outputs trained together: the paper's Huber point estimate (``z_point``) and
    logits over the redshift bins (``z_bins``), whose softmax is the PDF pzkit returns.
    """

    def __init__(self, n_bands, n_bins, encoder="small", encoder_widths=(32, 64, 128), latent_dim=128,
                 proj_dim=64, head_widths=(128, 128, 128, 128, 128, 64)):
        super().__init__()
        self.encoder = make_encoder(encoder, n_bands, encoder_widths)
        n = self.encoder.n_out
        self.mlp_encoder = nn.Sequential(nn.Linear(n, 2 * latent_dim), nn.ReLU(), nn.Linear(2 * latent_dim, latent_dim))
        self.projection = nn.Sequential(nn.Linear(latent_dim, 128), nn.ReLU(), nn.Linear(128, proj_dim))
        head_widths = tuple(head_widths)
        self.color_head = nn.Sequential(MLP(latent_dim, head_widths), nn.Linear(head_widths[-1], n_bands))
        self.z_trunk = MLP(latent_dim, head_widths)
        self.z_point = nn.Linear(head_widths[-1], 1)
        self.z_bins = nn.Linear(head_widths[-1], n_bins)

    def latent(self, x):
        return self.mlp_encoder(self.encoder(x))

    def query_path(self):
        """The modules the momentum key encoder copies, in a fixed order (their parameters pair up)."""
        return nn.ModuleList([self.encoder, self.mlp_encoder, self.projection])

    def redshift(self, h):
        t = self.z_trunk(h)
        return self.z_point(t)[:, 0], self.z_bins(t)


class KeyEncoder(nn.Module):
    """MoCo's key encoder: a frozen copy of encoder → MLP_encoder → projection, updated only by momentum."""

    def __init__(self, net):
        super().__init__()
        self.path = copy.deepcopy(net.query_path())
        for p in self.path.parameters():
            p.requires_grad_(False)

    def forward(self, x):
        h = x
        for m in self.path:
            h = m(h)
        return h

    @torch.no_grad()
    def momentum_update(self, net, momentum):
        """θ_k ← m θ_k + (1 − m) θ_q (He et al. 2020, Eq. 2)."""
        for pk, pq in zip(self.path.parameters(), net.query_path().parameters()):
            pk.mul_(momentum).add_(pq.detach(), alpha=1.0 - momentum)


class KeyQueue:
    """FIFO dictionary of the last ``size`` normalised keys (MoCo's negatives).

    Only slots already written are used as negatives: MoCo fills an empty queue with random vectors, which on a
    data set smaller than the queue would stay there for most of the training.
    """

    def __init__(self, size, dim, device="cpu"):
        self.keys = torch.zeros(int(size), int(dim), device=device)
        self.ptr = 0
        self.n_filled = 0

    @torch.no_grad()
    def enqueue(self, keys):
        keys = F.normalize(keys.detach(), dim=1)[-self.keys.shape[0]:]
        idx = (self.ptr + torch.arange(keys.shape[0], device=keys.device)) % self.keys.shape[0]
        self.keys[idx] = keys
        self.ptr = int((self.ptr + keys.shape[0]) % self.keys.shape[0])
        self.n_filled = min(self.n_filled + keys.shape[0], self.keys.shape[0])

    def negatives(self):
        return self.keys[: self.n_filled]


def info_nce(q, k, negatives, temperature):
    """InfoNCE: cross-entropy of picking the positive key among itself and the negatives, cosine / τ, batch mean."""
    q = F.normalize(q, dim=1)
    k = F.normalize(k, dim=1)
    logits = torch.cat([(q * k).sum(dim=1, keepdim=True), q @ negatives.T], dim=1) / temperature
    return F.cross_entropy(logits, torch.zeros(q.shape[0], dtype=torch.long, device=q.device))


# ---------------------------------------------------------------------------------------------- augmentation
def augment(x, crop, jitter, rotation, noise_std, generator):
    """One augmented view per image of (B, C, S, S): flip (p=0.5) → rotation → jitter + crop → Gaussian noise.

    Rotation ``"any"`` draws a uniform angle with bilinear interpolation (the paper); ``"dihedral"`` uses exact
    quarter turns and flips; ``None`` none. Jitter moves the crop centre by U(−jitter, jitter) pixels per axis.
    All bands get the same geometric transform and noise is independent per pixel, so colours are unchanged.
    """
    b, _, s, _ = x.shape
    if rotation == "dihedral":
        x = random_dihedral(x, generator)
        angle = torch.zeros(b)
        flip = torch.zeros(b, dtype=torch.bool)
    else:
        flip = torch.rand(b, generator=generator) < 0.5
        angle = (torch.rand(b, generator=generator) * 2 * math.pi) if rotation == "any" else torch.zeros(b)
    shift = (torch.rand(b, 2, generator=generator) * 2 - 1) * float(jitter)
    scale = crop / s
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    fx = torch.where(flip, -1.0, 1.0)
    # affine_grid maps output coordinates to input ones (normalised to [-1, 1]): the flip acts on the output's x
    theta = torch.stack([torch.stack([cos * fx, -sin, 2 * shift[:, 0] / s], dim=1),
                         torch.stack([sin * fx, cos, 2 * shift[:, 1] / s], dim=1)], dim=1).to(x)
    grid = F.affine_grid(theta, (b, x.shape[1], crop, crop), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if noise_std > 0:
        out = out + noise_std * torch.randn(out.shape, generator=generator).to(out)
    return out


def centre_crop(x, crop):
    o0 = (x.shape[-2] - crop) // 2
    o1 = (x.shape[-1] - crop) // 2
    return x[..., o0:o0 + crop, o1:o1 + crop]


def stretch(x):
    """Pixel values in units of each band's noise σ → asinh: linear at the noise level, logarithmic for bright
    cores. The same per-pixel map for every object, so flux ratios stay decodable."""
    return torch.asinh(x)


# ---------------------------------------------------------------------------------------------- losses
def step_losses(net, key_encoder, queue, x_query, x_key, y, soft, colors, weights, huber_delta, temperature):
    """The losses of one training step, routed by which targets each row has.

    ``y`` (B,) is NaN for unlabelled rows: they enter the contrastive and colour losses only. ``colors``
    (B, n_bands) standardised targets, NaN where missing (masked element-wise). ``soft`` (B, n_bins) bin targets
    (rows of unlabelled objects ignored). ``weights`` maps ``contrastive``/``colour``/``redshift``/``bins`` to
    the loss weights; a weight of 0 skips that task's computation. Returns ``(total, parts)``; ``parts`` holds
    detached floats and, under ``"keys"``, the keys to enqueue after the optimiser step.
    """
    h = net.latent(stretch(x_query))
    total = h.new_zeros(())
    parts = {}
    if weights.get("contrastive", 0) > 0:
        q = net.projection(h)
        with torch.no_grad():
            k = key_encoder(stretch(x_key))
        loss = info_nce(q, k, queue.negatives(), temperature)
        total = total + weights["contrastive"] * loss
        parts["contrastive"] = float(loss.detach())
        parts["keys"] = k
    if weights.get("colour", 0) > 0 and colors is not None:
        finite = torch.isfinite(colors)
        if finite.any():
            pred = net.color_head(h)
            err = torch.where(finite, pred - torch.nan_to_num(colors), torch.zeros_like(pred))
            # the paper's L2: summed over the colour vector, averaged over the rows that have targets
            loss = (err ** 2).sum() / finite.any(dim=1).sum()
            total = total + weights["colour"] * loss
            parts["colour"] = float(loss.detach())
    labelled = torch.isfinite(y)
    if (weights.get("redshift", 0) > 0 or weights.get("bins", 0) > 0) and labelled.any():
        point, logits = net.redshift(h[labelled])
        huber = F.huber_loss(point, y[labelled], delta=huber_delta)
        ce = -(soft[labelled] * F.log_softmax(logits, dim=1)).sum(dim=1).mean()
        total = total + weights.get("redshift", 0) * huber + weights.get("bins", 0) * ce
        parts["redshift"] = float(huber.detach())
        parts["bins"] = float(ce.detach())
    # a batch without labels gives a zero redshift loss (the paper), not a skipped step
    return total, parts


# ---------------------------------------------------------------------------------------------- training
class _Cycler:
    """Batches of indices from successive shuffles of a pool (each row once per pass, no per-row loop)."""

    def __init__(self, idx, rng):
        self.idx, self.rng, self.buf = np.asarray(idx), rng, np.empty(0, dtype=np.int64)

    def take(self, k):
        while self.buf.size < k:
            self.buf = np.concatenate([self.buf, self.rng.permutation(self.idx)])
        out, self.buf = self.buf[:k], self.buf[k:]
        return out


class PITATrainingNet(TrainingNet):
    """The engine's net for one PITA training phase.

    Each batch mixes rows from ``pools`` (``[(row indices, rows per batch), ...]``, cycled without
    replacement); ``train_step`` augments two views with ``generator_``, computes :func:`step_losses`, takes the
    optimiser step and, when the contrastive loss is on, updates the momentum key encoder (``key_encoder_``,
    built from the module in ``initialize_module``) and the negative queue. The queue and the pools' buffers
    are checkpointed as extra state.
    """

    def __init__(self, module, *args, data=None, pools=(), weights=None, queue_size=4096, proj_dim=64,
                 momentum=0.999, temperature=0.1, huber_delta=0.15, crop=64, jitter=0.0, rotation=None,
                 noise_std=0.0, redden=None, **kwargs):
        super().__init__(module, *args, **kwargs)
        self.data = data
        self.pools = pools
        self.weights = weights
        self.queue_size = queue_size
        self.proj_dim = proj_dim
        self.momentum = momentum
        self.temperature = temperature
        self.huber_delta = huber_delta
        self.crop = crop
        self.jitter = jitter
        self.rotation = rotation
        self.noise_std = noise_std
        self.redden = redden

    @property
    def contrastive(self):
        return self.weights.get("contrastive", 0) > 0

    def initialize_module(self):
        super().initialize_module()
        if self.contrastive:
            self.key_encoder_ = KeyEncoder(self.module_)
        return self

    def initialize(self):
        super().initialize()
        self.cyclers_ = [_Cycler(idx, self.rng_) for idx, _ in self.pools]
        self.queue_ = KeyQueue(self.queue_size, self.proj_dim, self.device) if self.contrastive else None
        return self

    def draw_batch(self, n_rows):
        return np.concatenate([c.take(k) for c, (_, k) in zip(self.cyclers_, self.pools)])

    def get_extra_state(self):
        tensors = {f"cycler{i}": torch.from_numpy(c.buf.copy()) for i, c in enumerate(self.cyclers_)}
        values = {}
        if self.queue_ is not None:
            tensors["queue"] = self.queue_.keys
            values = {"queue_ptr": self.queue_.ptr, "queue_filled": self.queue_.n_filled}
        return tensors, values

    def set_extra_state(self, tensors, values):
        for i, c in enumerate(self.cyclers_):
            c.buf = tensors[f"cycler{i}"].numpy()
        if self.queue_ is not None:
            self.queue_.keys.copy_(tensors["queue"])
            self.queue_.ptr, self.queue_.n_filled = values["queue_ptr"], values["queue_filled"]

    def train_step(self, batch, **fit_params):
        self._set_training(True)
        d, gen = self.data, self.generator_
        idx = batch[0].to(self.device)
        x, cols = d["images"][idx], d["colors"][idx]
        if self.redden is not None:
            x, cols = self.redden(x, cols, gen)
        view = (self.crop, self.jitter, self.rotation, float(self.noise_std), gen)
        xq = augment(x, *view)
        xk = augment(x, *view) if self.contrastive else None
        total, parts = step_losses(self.module_, getattr(self, "key_encoder_", None), self.queue_, xq, xk,
                                   d["y"][idx], d["soft"][idx], cols, self.weights, float(self.huber_delta),
                                   float(self.temperature))
        self.optimizer_.zero_grad(set_to_none=True)
        if total.requires_grad:
            total.backward()
            self.optimizer_.step()
        if self.contrastive:
            self.key_encoder_.momentum_update(self.module_, float(self.momentum))
            self.queue_.enqueue(parts.pop("keys"))
        return {"loss": total.detach(), "parts": parts}
