"""Torch pieces of PITA: encoders, the three-headed network, the MoCo key encoder and queue, the augmentations
and the per-step loss routing. Kept apart from the estimator so the smoke tests can drive them directly."""

import copy
import math

import torch
import torch.nn.functional as F
from torch import nn

from pzkit.nn import MLP
from pzkit.nn.images import ConvEncoder, random_dihedral


# ---------------------------------------------------------------------------------------------- encoders
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
    """``"small"``: pzkit's ConvEncoder (3×3 convs, no BatchNorm, as pita-z's small CNN); ``"convnext"``."""
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
            loss = (err ** 2).sum() / finite.sum()
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
