"""Networks of the mtl_nb plugin: the two-headed trunk and the engine's net with the paper's joint loss."""

import torch
from torch import nn

from pzkit.nn import MLP, RedshiftBinHead
from pzkit.nn.engine import TrainingNet


class _TwoHeads(nn.Module):
    """Shared trunk; a redshift-bin head and a narrow-band-colour head on the last shared layer."""

    def __init__(self, n_features, hidden, dropout, n_bins, n_nb):
        super().__init__()
        self.trunk = MLP(n_features, hidden, dropout=dropout)
        self.z_head = RedshiftBinHead(self.trunk.n_out, n_bins)
        self.nb_head = nn.Linear(self.trunk.n_out, n_nb) if n_nb > 0 else None

    def forward(self, X):
        h = self.trunk(X)
        logits = self.z_head(h)
        if self.nb_head is None or not self.training:
            return logits
        return logits, self.nb_head(h)


class _MTLNet(TrainingNet):
    """skorch net with the paper's joint loss (Eq. 3).

    ``y`` packs, per object, the redshift-bin index (−1 = no redshift label) followed by the narrow-band colour
    targets (NaN = missing, masked). Loss = (1/B) Σ_j [CE_j · has_label_j + λ · MAE_j · has_nb_j], where MAE_j is
    the mean absolute error over the object's finite colours (Eq. 2), so objects without a redshift train only
    the narrow-band head and missing narrow bands are masked, never imputed.
    """

    def __init__(self, module, *args, nb_weight=1.0, **kwargs):
        super().__init__(module, *args, **kwargs)
        self.nb_weight = nb_weight

    def get_loss(self, y_pred, y_true, X=None, training=False):
        y_true = y_true.to(self.device)
        bins = y_true[:, 0].long()
        labelled = bins >= 0
        logits = y_pred[0] if isinstance(y_pred, tuple) else y_pred
        ce = torch.nn.functional.cross_entropy(logits, bins.clamp(min=0), reduction="none")
        total = (ce * labelled).sum()
        if isinstance(y_pred, tuple) and self.nb_weight > 0:
            target = y_true[:, 1:]
            finite = torch.isfinite(target)
            err = torch.where(finite, (y_pred[1] - torch.nan_to_num(target)).abs(), torch.zeros_like(target))
            n_fin = finite.sum(dim=1)
            mae = err.sum(dim=1) / n_fin.clamp(min=1)
            total = total + self.nb_weight * (mae * (n_fin > 0)).sum()
        return total / y_true.shape[0]
