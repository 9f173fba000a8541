"""Networks of the bias_cnn plugin: the CNN backbones of Lin et al. (2022), the multi-head chain network and
the engine's net for one training phase.

Each backbone maps an image batch (B, n_bands, H, W) plus an optional per-object side vector (B, n_side), such
as the Galactic E(B−V), to a flat **representation** (B, ``n_repr``): the penultimate fully connected layer of
the paper's networks. Output heads (a single softmax over redshift bins, or the bias-CNN multi-channel unit)
sit on top of it and are not part of the backbone, so any image plugin can reuse these.

* :class:`NetS` — the small Net_S1/S2/S3 of the paper's App. D.6: ``depth`` (1–3) 3×3 convolutions of 64
  kernels (stride 1, zero padding), 2×2 average pooling between them, global average pooling, ⊕ side inputs,
  FC256 → FC256 (= representation). The paper's text says ReLU, the authors' code uses PReLU in the conv
  layers: ``conv_activation`` chooses (default ``"relu"``, the paper).
* :class:`NetP` — the inception network of Pasquet et al. (2019) as in the bias paper's code: conv5×5(64) →
  avgpool → Inc(48,64) → Inc(64,92) → avgpool → Inc(92,128) → Inc(92,128) → avgpool → Inc(92,128, no 5×5) →
  flatten ⊕ side → FC1024 → FC1024 (= representation). PReLU (α initialised to 0) in the convolutions, ReLU
  in the FC layers, Xavier weights and bias 0.1. On 64×64 stamps the flattened size is 8·8·348 = 22,272.

* :class:`FlatFeatures` (``"flat"``) — no weights: the flattened input is the representation (frozen-feature
  studies and tests).

``make_backbone("S1" | "S2" | "S3" | "P" | "flat", n_bands, image_size, n_side)`` builds one by name.
"""

import torch
import torch.nn.functional as F
from torch import nn

from pzkit.nn.engine import TrainingNet

def _activation(name, channels=None):
    if name == "relu":
        return nn.ReLU()
    if name == "prelu":
        act = nn.PReLU(channels or 1, init=0.0)
        return act
    raise ValueError(f"activation must be 'relu' or 'prelu', got {name!r}")


def _side(x, side, n_side):
    """Concatenate the side vector (zeros when absent) to the flat features."""
    if n_side == 0:
        return x
    if side is None:
        side = x.new_zeros((x.shape[0], n_side))
    side = side.to(x.dtype).reshape(x.shape[0], n_side)
    return torch.cat([x, side], dim=1)


class NetS(nn.Module):
    """Net_S1/S2/S3 (``depth`` = 1, 2, 3): small CNN with a 256-node representation (App. D.6).

    Parameters
    ----------
    n_bands : int
        Input channels.
    depth : {1, 2, 3}
        Number of conv layers (S1: conv → GAP; S2: conv → pool → conv → GAP; S3: three convs, two pools).
    n_side : int
        Length of the side vector concatenated after global pooling (1 for E(B−V), 0 for none).
    conv_width, fc_width : int
        Kernels per conv layer (paper: 64) and width of the two FC layers (paper: 256).
    conv_activation : {"relu", "prelu"}
        Activation of the conv layers (paper text: ReLU; authors' code: PReLU). FC layers use ReLU.
    """

    def __init__(self, n_bands, depth=2, n_side=1, conv_width=64, fc_width=256, conv_activation="relu"):
        super().__init__()
        if depth not in (1, 2, 3):
            raise ValueError(f"depth must be 1, 2 or 3, got {depth!r}")
        layers, c = [], n_bands
        for i in range(depth):
            if i > 0:
                layers.append(nn.AvgPool2d(2, 2))
            layers += [nn.Conv2d(c, conv_width, 3, padding=1), _activation(conv_activation, conv_width)]
            c = conv_width
        self.conv = nn.Sequential(*layers)
        self.n_side = int(n_side)
        self.fc = nn.Sequential(nn.Linear(c + self.n_side, fc_width), nn.ReLU(),
                                nn.Linear(fc_width, fc_width), nn.ReLU())
        self.n_repr = fc_width

    def representation(self, x, side=None):
        h = self.conv(x).mean(dim=(2, 3))
        return self.fc(_side(h, side, self.n_side))

    def forward(self, x, side=None):
        return self.representation(x, side)


class Inception(nn.Module):
    """Inc(a, b) of Pasquet et al.: concat[1×1(b); 1×1(a)→5×5(b); 1×1(a)→3×3(b); 1×1(a)→avgpool 2×2 stride 1].

    ``with_5x5=False`` drops the 5×5 branch (the last module of Net_P). Output channels: 3b + a (2b + a
    without the 5×5 branch). The stride-1 pooling pads one row and column at the far edge (replicated) so the
    spatial size is kept ("SAME").
    """

    def __init__(self, c_in, a, b, with_5x5=True):
        super().__init__()

        def conv(ci, co, k):
            return nn.Sequential(nn.Conv2d(ci, co, k, padding=k // 2), _activation("prelu", co))

        self.b1 = conv(c_in, b, 1)
        self.b5 = nn.Sequential(conv(c_in, a, 1), conv(a, b, 5)) if with_5x5 else None
        self.b3 = nn.Sequential(conv(c_in, a, 1), conv(a, b, 3))
        self.bp = conv(c_in, a, 1)
        self.n_out = (3 if with_5x5 else 2) * b + a

    def forward(self, x):
        outs = [self.b1(x)]
        if self.b5 is not None:
            outs.append(self.b5(x))
        outs.append(self.b3(x))
        p = self.bp(x)
        outs.append(F.avg_pool2d(F.pad(p, (0, 1, 0, 1), mode="replicate"), 2, stride=1))
        return torch.cat(outs, dim=1)


class NetP(nn.Module):
    """Net_P (Pasquet et al. 2019 as used by Lin et al.): inception CNN with a 1,024-node representation.

    Parameters
    ----------
    n_bands : int
        Input channels.
    image_size : int
        Stamp side in pixels (divisible by 8; the paper uses 64).
    n_side : int
        Side-vector length concatenated to the flattened conv features (1 for E(B−V)).
    fc_width : int
        Width of the two FC layers (paper: 1,024).
    """

    def __init__(self, n_bands, image_size=64, n_side=1, fc_width=1024):
        super().__init__()
        if image_size % 8:
            raise ValueError(f"NetP needs a stamp side divisible by 8, got {image_size}")
        self.stem = nn.Sequential(nn.Conv2d(n_bands, 64, 5, padding=2), _activation("prelu", 64))
        i1 = Inception(64, 48, 64)
        i2 = Inception(i1.n_out, 64, 92)
        i3 = Inception(i2.n_out, 92, 128)
        i4 = Inception(i3.n_out, 92, 128)
        i5 = Inception(i4.n_out, 92, 128, with_5x5=False)
        self.body = nn.Sequential(nn.AvgPool2d(2, 2), i1, i2, nn.AvgPool2d(2, 2), i3, i4, nn.AvgPool2d(2, 2), i5)
        self.n_side = int(n_side)
        n_flat = (image_size // 8) ** 2 * i5.n_out
        self.n_flat = n_flat
        self.fc = nn.Sequential(nn.Linear(n_flat + self.n_side, fc_width), nn.ReLU(),
                                nn.Linear(fc_width, fc_width), nn.ReLU())
        self.n_repr = fc_width
        for mod in self.modules():
            if isinstance(mod, (nn.Conv2d, nn.Linear)):
                nn.init.xavier_uniform_(mod.weight)
                nn.init.constant_(mod.bias, 0.1)

    def representation(self, x, side=None):
        h = self.body(self.stem(x)).flatten(1)
        return self.fc(_side(h, side, self.n_side))

    def forward(self, x, side=None):
        return self.representation(x, side)


#: backbone names accepted by :func:`make_backbone`
BACKBONES = ("S1", "S2", "S3", "P", "flat")


def make_backbone(name, n_bands, image_size, n_side=1, **kwargs):
    """Build a backbone by name: ``"S1"``, ``"S2"``, ``"S3"`` (:class:`NetS`) or ``"P"`` (:class:`NetP`).

    ``kwargs`` go to the class (``conv_width``, ``fc_width``, ``conv_activation`` for NetS; ``fc_width`` for
    NetP). Every backbone has ``representation(x, side)`` and ``n_repr``.
    """
    if name in ("S1", "S2", "S3"):
        return NetS(n_bands, depth=int(name[1]), n_side=n_side, **kwargs)
    if name == "P":
        kwargs = {k: v for k, v in kwargs.items() if k == "fc_width"}
        return NetP(n_bands, image_size=image_size, n_side=n_side, **kwargs)
    if name == "flat":
        return FlatFeatures(n_bands, image_size=image_size, n_side=n_side)
    raise ValueError(f"backbone must be one of {BACKBONES}, got {name!r}")


class FlatFeatures(nn.Module):
    """A backbone without weights: the representation is the flattened input (⊕ side vector).

    For tests and studies on frozen features: feed pre-computed feature vectors as (n, d, 1, 1) "images"
    and every head-level step of a method runs unchanged on them.
    """

    def __init__(self, n_bands, image_size=1, n_side=1):
        super().__init__()
        self.n_side = int(n_side)
        self.n_repr = n_bands * image_size * image_size + self.n_side

    def representation(self, x, side=None):
        return _side(x.flatten(1), side, self.n_side)

    def forward(self, x, side=None):
        return self.representation(x, side)


# ---------------------------------------------------------------------------------------------- chain and training
class _Net(nn.Module):
    """Backbone + named output units: a single head (``baseline``) or m z-heads + a magnitude head per stage."""

    def __init__(self, backbone, m, head_bins):
        super().__init__()
        self.backbone = backbone
        self.m = m
        self.heads = nn.ModuleDict()
        self.mag_heads = nn.ModuleDict()
        for name, nb in head_bins.items():
            self.add_head(name, nb)

    def add_head(self, name, nb):
        r = self.backbone.n_repr
        if name == "baseline":
            self.heads[name] = nn.Linear(r, nb)
        else:
            self.heads[name] = nn.Linear(r, self.m * nb)
            self.mag_heads[name] = nn.Linear(r, self.m)
        return self.heads[name]

    def logits(self, rep, name):
        """(z logits (B, m, nb) or (B, nb) for the baseline, magnitude logits (B, m) or None)."""
        z = self.heads[name](rep)
        if name == "baseline":
            return z, None
        return z.reshape(rep.shape[0], self.m, -1), self.mag_heads[name](rep)

    def density(self, rep, name):
        """Bin probabilities (B, nb): softmax (baseline) or Eq. 2, p(z) = Σ_j p(r_j) p(z | r_j)."""
        z, mag = self.logits(rep, name)
        if mag is None:
            return torch.softmax(z, dim=-1)
        return torch.einsum("bj,bjn->bn", torch.softmax(mag, dim=-1), torch.softmax(z, dim=-1))


class BiasPhaseNet(TrainingNet):
    """The engine's net for one training phase of the chain (end to end, or one head on the frozen backbone).

    ``batch_loss(rows, rng)`` returns the loss of the rows the engine drew (uniformly with replacement, as the
    reference code); ``rng`` is the net's generator, from which the loss draws its augmentations. Only the
    parameters whose names start with one of ``trainable`` (None: all that require a gradient) are optimised.
    """

    def __init__(self, module, *args, batch_loss=None, trainable=None, **kwargs):
        super().__init__(module, *args, **kwargs)
        self.batch_loss = batch_loss
        self.trainable = trainable

    def get_all_learnable_params(self):
        for name, param in self.module_.named_parameters():
            if self.trainable is None and param.requires_grad or (
                    self.trainable is not None and name.startswith(tuple(self.trainable))):
                yield name, param

    def train_step(self, batch, **fit_params):
        loss = self.batch_loss(batch[0].numpy(), self.rng_)
        self.optimizer_.zero_grad()
        loss.backward()
        self.optimizer_.step()
        return {"loss": loss.detach()}
