"""Device choice, redshift-bin utilities and small modules shared by the torch plugins."""

import numpy as np
import torch
from torch import nn

from ..exceptions import InputError


def select_device(device="auto"):
    """``"cuda"`` when a GPU is visible and ``device="auto"``, else ``"cpu"``; an explicit choice is checked."""
    if device in (None, "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise InputError(f"device={device!r} was requested but no CUDA device is available")
    return str(device)


def grid_bins(zgrid):
    """Bin edges and centres of the classifier output: the ``len(zgrid) - 1`` bins between grid points."""
    edges = np.asarray(zgrid, dtype=np.float64)
    return edges, 0.5 * (edges[1:] + edges[:-1])


def z_to_bin(z, edges):
    """Index of the bin holding each redshift; the last edge belongs to the last bin (floor convention)."""
    idx = np.searchsorted(edges, np.asarray(z, dtype=np.float64), side="right") - 1
    return np.clip(idx, 0, len(edges) - 2).astype(np.int64)


def soft_labels(z, edges, sigma):
    """Gaussian soft labels: bin probabilities of N(z, sigma) integrated over each bin, renormalised (n, n_bins)."""
    from scipy.special import erf

    z = np.asarray(z, dtype=np.float64)[:, None]
    cdf = 0.5 * (1 + erf((edges[None, :] - z) / (np.sqrt(2) * sigma)))
    p = np.diff(cdf, axis=1)
    p /= p.sum(axis=1, keepdims=True)
    return p.astype(np.float32)


def class_weights(bins, n_bins, power=1.0, floor=1.0):
    """Inverse-frequency class weights (count + floor)^-power, normalised to mean 1 over occupied bins.

    With ``floor=0`` an empty bin would get an infinite weight; it never occurs as a target, so it gets 0.
    """
    counts = np.bincount(bins, minlength=n_bins).astype(np.float64)
    occupied = counts > 0
    w = np.zeros(n_bins)
    w[occupied] = (counts[occupied] + floor) ** (-power)
    w[~occupied] = float(floor) ** (-power) if floor > 0 else 0.0
    w /= w[occupied].mean()
    return w.astype(np.float32)


class MLP(nn.Sequential):
    """Fully connected trunk: Linear → activation → Dropout for each width in ``widths``."""

    def __init__(self, n_in, widths, dropout=0.0, activation=nn.ReLU):
        layers = []
        for width in widths:
            layers += [nn.Linear(n_in, width), activation()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            n_in = width
        super().__init__(*layers)
        self.n_out = n_in


class RedshiftBinHead(nn.Linear):
    """Linear layer from a representation to logits over the redshift bins (softmax gives p(z) per bin)."""

    def __init__(self, n_in, n_bins):
        super().__init__(n_in, n_bins)
