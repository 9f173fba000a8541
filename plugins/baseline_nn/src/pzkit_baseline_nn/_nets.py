"""The network of the baseline_nn plugin."""

from torch import nn

from pzkit.nn import MLP, RedshiftBinHead


def baseline_network(n_features, hidden, dropout, n_bins):
    """Fully connected trunk (``hidden`` widths, ReLU, ``dropout`` after each layer) → logits over ``n_bins``."""
    trunk = MLP(n_features, hidden, dropout=dropout)
    return nn.Sequential(trunk, RedshiftBinHead(trunk.n_out, n_bins))
