"""Networks of the adversarial_da plugin: the band-pair CNN, the adversarial module and the two-player
training step (as the engine's net)."""

import math
import warnings

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from pzkit.exceptions import PzkitWarning
from pzkit.nn.core import MLP
from pzkit.nn.engine import TrainingNet
from pzkit.nn.images import random_dihedral


class AdversarialDAWarning(PzkitWarning):
    """A setting of :class:`AdversarialDA` that is accepted but probably not what was meant."""


# ---------------------------------------------------------------------------------------------- modules
class _AdjacentPairs(nn.Module):
    """(B, bands, H, W) → (B, 2·(bands−1), H, W): the adjacent band pairs (b, b+1) stacked, ready for a
    grouped convolution (one group per pair = one "modality" branch of Ait Ouahmed et al. 2024)."""

    def __init__(self, n_bands):
        super().__init__()
        if n_bands >= 2:
            idx = np.ravel([[b, b + 1] for b in range(n_bands - 1)])
        else:  # a single band is its own (degenerate) branch
            idx = np.zeros(1, dtype=np.int64)
        self.register_buffer("idx", torch.as_tensor(idx, dtype=torch.long), persistent=False)
        self.n_groups = max(n_bands - 1, 1)
        self.n_out = len(idx)

    def forward(self, x):
        return x.index_select(1, self.idx)


def _pool():
    # ceil_mode keeps a 1-pixel map alive, so tiny stamps (the conformance toy) still go through every stage
    return nn.AvgPool2d(2, ceil_mode=True)


class BandPairNet(nn.Module):
    """Band-pair branches → merged channels → shared conv trunk → FC → logits over the redshift bins.

    ``upstream`` ends at the output of trunk layer ``graft_layer`` (the adversarial module's input);
    ``downstream`` is the rest. Trunk layer i (1-based) is conv3×3 + PReLU, followed by a 2×2 average pool
    when i is even and not the last layer.
    """

    def __init__(self, n_bands, n_bins, branch_width=16, trunk_widths=(32, 32, 64, 64, 96, 96), fc_widths=(128,),
                 graft_layer=5):
        super().__init__()
        pairs = _AdjacentPairs(n_bands)
        g, bw = pairs.n_groups, int(branch_width)
        branches = nn.Sequential(
            nn.Conv2d(pairs.n_out, g * bw, 3, padding=1, groups=g), nn.PReLU(g * bw),
            nn.Conv2d(g * bw, g * bw, 3, padding=1, groups=g), nn.PReLU(g * bw),
        )
        trunk, c = [], g * bw
        for i, w in enumerate(trunk_widths, start=1):
            layer = [nn.Conv2d(c, int(w), 3, padding=1), nn.PReLU(int(w))]
            if i % 2 == 0 and i < len(trunk_widths):
                layer.append(_pool())
            trunk.append(nn.Sequential(*layer))
            c = int(w)
        self.upstream = nn.Sequential(pairs, branches, *trunk[:graft_layer])
        head = MLP(c, list(fc_widths), activation=nn.PReLU)
        self.downstream = nn.Sequential(*trunk[graft_layer:], nn.AdaptiveAvgPool2d(1), nn.Flatten(), head,
                                        nn.Linear(head.n_out, n_bins))

    def forward(self, x):
        return self.downstream(self.upstream(x))


class Discriminator(nn.Module):
    """The paper's adversarial module: conv3×3 (widths[0]), conv3×3 (widths[1]), pool, conv (widths[2]),
    conv (widths[3]), pool (a pool after every pair of convs), flatten, FC layers, 2 logits.

    ``in_shape`` (C, H, W) is the shape of the feature maps it receives (W doubled in pair mode).
    """

    def __init__(self, in_shape, widths=(156, 156, 128, 128), fc_widths=(256,)):
        super().__init__()
        layers, c = [], in_shape[0]
        for i, w in enumerate(widths, start=1):
            layers += [nn.Conv2d(c, int(w), 3, padding=1), nn.PReLU(int(w))]
            if i % 2 == 0:
                layers.append(_pool())
            c = int(w)
        self.convs = nn.Sequential(*layers, nn.Flatten())
        with torch.no_grad():
            n_flat = self.convs(torch.zeros((1,) + tuple(in_shape))).shape[1]
        head = MLP(n_flat, list(fc_widths), activation=nn.PReLU)
        self.head = nn.Sequential(head, nn.Linear(head.n_out, 2))

    def forward(self, f):
        return self.head(self.convs(f))


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, lam):
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return -ctx.lam * grad, None


# ---------------------------------------------------------------------------------------------- one training step
def _domain_batch(fs, ft, pair_feats=None, generator=None):
    """Discriminator inputs and true labels.

    ``domain`` mode (``pair_feats`` None): source features → 0, target features → 1.
    ``pair`` mode: ``pair_feats = (fs2, ft2)`` are magnitude-matched same-field partners of the first q source
    and of target items q..2q−1 (q = B//4). Pairs: q source–source, q target–target, B−2q source–target
    (its own matched target), concatenated along the width axis in a random left/right order;
    label 0 = same field, 1 = different fields.
    """
    if pair_feats is None:
        feats = torch.cat([fs, ft])
        labels = torch.cat([torch.zeros(len(fs), dtype=torch.long), torch.ones(len(ft), dtype=torch.long)])
        return feats, labels.to(fs.device)
    fs2, ft2 = pair_feats
    q = len(fs2)
    left = torch.cat([fs[:q], ft[q:2 * q], fs[2 * q:]])
    right = torch.cat([fs2, ft2, ft[2 * q:]])
    labels = torch.cat([torch.zeros(2 * q, dtype=torch.long), torch.ones(len(fs) - 2 * q, dtype=torch.long)])
    swap = (torch.rand(len(left), generator=generator) < 0.5).to(fs.device)[:, None, None, None]
    a, b = torch.where(swap, right, left), torch.where(swap, left, right)
    return torch.cat([a, b], dim=-1), labels.to(fs.device)


def adversarial_step(net, disc, optimizer, xs, bins, xt=None, *, loss="inverted", weight=1.0, grl_lambda=1.0,
                     partners=None, generator=None):
    """One iteration: redshift CE on the source batch and, when ``disc`` is given, both adversarial objectives.

    ``net`` has ``upstream`` (up to the graft layer) and ``downstream``; ``optimizer`` holds the main and the
    discriminator parameters as two groups with the same learning rate.

    ``loss="inverted"`` (the paper): the discriminator's parameters get only the gradient of the domain CE
    with the true labels; the main parameters get the redshift CE plus ``weight`` × the confusion CE (the same
    CE with the labels inverted), which reaches only the layers upstream of the graft point. ``loss="grl"``:
    a gradient-reversal layer with factor ``grl_lambda`` on the features (DANN).
    ``partners`` = (source partner images, target partner images) switches on the pair discriminator.
    Returns the losses and the discriminator's accuracy on this batch as floats.
    """
    fs = net.upstream(xs)
    loss_z = F.cross_entropy(net.downstream(fs), bins)
    out = {"loss_z": float(loss_z.detach())}
    optimizer.zero_grad(set_to_none=True)
    if disc is None:
        loss_z.backward()
        optimizer.step()
        return out
    ft = net.upstream(xt)
    pair_feats = None if partners is None else (net.upstream(partners[0]), net.upstream(partners[1]))
    feats, labels = _domain_batch(fs, ft, pair_feats, generator)
    if loss == "grl":
        logits = disc(_GradReverse.apply(feats, float(grl_lambda) * float(weight)))
        loss_d = F.cross_entropy(logits, labels)
        (loss_z + loss_d).backward()
        loss_c = F.cross_entropy(logits.detach(), 1 - labels)
    else:
        logits = disc(feats)
        loss_d = F.cross_entropy(logits, labels)
        loss_c = F.cross_entropy(logits, 1 - labels)
        main = [p for p in net.parameters() if p.requires_grad]
        # the confusion gradient flows through the discriminator to the features but is not accumulated
        # into the discriminator's weights; they learn from the true labels only
        torch.autograd.backward(loss_z + float(weight) * loss_c, inputs=main, retain_graph=True)
        torch.autograd.backward(loss_d, inputs=list(disc.parameters()))
    optimizer.step()
    out.update(loss_d=float(loss_d.detach()), loss_c=float(loss_c.detach()),
               disc_acc=float((logits.argmax(1) == labels).float().mean()))
    return out


# ---------------------------------------------------------------------------------------------- the skorch net
class AdversarialNet(TrainingNet):
    """The engine's net with the two-player update as its ``train_step`` (see :func:`adversarial_step`).

    Batches are row numbers of the source stamps (a shuffled pass per epoch, last incomplete batch dropped);
    ``train_step`` draws each row's magnitude-matched target (and pair partners) from ``rng_`` and augments
    with ``generator_``. ``discriminator`` (a callable returning the adversary module, or None) is built in
    ``initialize_module`` as ``discriminator_``, so it is optimised, checkpointed and moved to the device with the
    main network.
    """

    def __init__(self, module, *args, discriminator=None, data=None, adversarial_loss="inverted",
                 adversarial_weight=1.0, pair=False, augment=True, normalise=None, **kwargs):
        super().__init__(module, *args, **kwargs)
        self.discriminator = discriminator
        self.data = data
        self.adversarial_loss = adversarial_loss
        self.adversarial_weight = adversarial_weight
        self.pair = pair
        self.augment = augment
        self.normalise = normalise

    def initialize_module(self):
        super().initialize_module()
        if self.discriminator is not None:
            self.discriminator_ = self.discriminator()
        return self

    def _prep(self, arr, idx):
        xb = self.normalise(torch.from_numpy(arr[idx]).to(self.device))
        return random_dihedral(xb.cpu(), self.generator_).to(self.device) if self.augment else xb

    def train_step(self, batch, **fit_params):
        self._set_training(True)
        d, rng = self.data, self.rng_
        idx = batch[0].numpy()
        xs = self._prep(d["X"], idx)
        disc = getattr(self, "discriminator_", None)
        kwargs, xt = {}, None
        if disc is not None:
            nn_st, nt = d["nn_st"], d["Xt"].shape[0]
            t_idx = (nn_st[idx, rng.integers(0, nn_st.shape[1], len(idx))] if nn_st is not None
                     else rng.integers(0, nt, len(idx)))
            xt = self._prep(d["Xt"], t_idx)
            if self.pair:
                q = len(idx) // 4
                s_anchor, t_anchor = idx[:q], t_idx[q:2 * q]
                nn_ss, nn_tt = d["nn_ss"], d["nn_tt"]
                s_part = (nn_ss[s_anchor, rng.integers(0, nn_ss.shape[1], q)]
                          if nn_ss is not None and nn_ss.shape[1] > 0 else rng.integers(0, d["X"].shape[0], q))
                t_part = (nn_tt[t_anchor, rng.integers(0, nn_tt.shape[1], q)]
                          if nn_tt is not None and nn_tt.shape[1] > 0 else rng.integers(0, nt, q))
                kwargs["partners"] = (self._prep(d["X"], s_part), self._prep(d["Xt"], t_part))
            p = self.steps_done_ / max(d["n_steps"] - 1, 1)
            kwargs["grl_lambda"] = 2.0 / (1.0 + math.exp(-10.0 * p)) - 1.0
        out = adversarial_step(self.module_, disc, self.optimizer_, xs, torch.from_numpy(d["bins"][idx]).to(self.device),
                               xt, loss=self.adversarial_loss, weight=self.adversarial_weight,
                               generator=self.generator_, **kwargs)
        return {"loss": torch.tensor(out["loss_z"]), "parts": out}

    def on_epoch_end(self, net, **kwargs):
        super().on_epoch_end(net, **kwargs)
        if not np.isfinite(self.history[-1, "loss_z"]):
            warnings.warn("adversarial_da: the redshift loss became non-finite; lower lr", AdversarialDAWarning,
                          stacklevel=2)
