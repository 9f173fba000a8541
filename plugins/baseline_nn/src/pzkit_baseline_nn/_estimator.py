"""The ``BaselineNN`` estimator: a fully connected classifier over redshift bins (Cabayol et al., single task)."""

from pzkit.nn import TorchPhotoZEstimator

from ._nets import baseline_network


class BaselineNN(TorchPhotoZEstimator):
    """The single-task baseline network of the PAUS multi-task paper (Cabayol et al. 2023, §3.2).

    Architecture (paper): fully connected layers of widths 300:500:1000:500:300, each followed by a 2 %
    dropout layer, and a softmax output over redshift bins. Training (paper): cross-entropy against the
    spec-z bin, Adam, 100 epochs, learning rate 1e-3 divided by 10 every 25 epochs. ``n_members`` networks
    trained from different seeds are averaged (the paper trains ten networks for out-of-sample predictions;
    averaging them is pzkit's ensemble option).

    Choices where the paper is silent or differs from pzkit's needs (see specs/mtl_nb.md):

    * activation: ReLU (the paper does not say; the authors' code uses ReLU);
    * output bins: the ``nzbins - 1`` bins between grid points (the paper: 1,500 bins of 0.001 over 0–1.5;
      on DC2's 0–3 grid the default is 300 bins of 0.01), so the output is a ``qp.hist``;
    * batch size: 512 (not stated; the authors' code uses 500);
    * inputs: whatever features it is given (the paper: 5 broad-band colours; with ``PhotometryFeatures``
      the reference magnitude is added). ``standardize=True`` z-scores them, which the paper does not do
      (its code feeds raw colours); set ``standardize=False`` to be literal. Standardising makes training
      insensitive to the magnitude column's scale;
    * early stopping: off by default (faithful); ``early_stopping=True`` holds out ``valid_fraction``.

    Parameters
    ----------
    hidden : tuple of int
        Widths of the hidden layers.
    dropout : float
        Dropout probability after each hidden layer.
    zmin, zmax, nzbins, point_estimate, random_state
        See :class:`pzkit.PhotoZEstimator`.
    max_epochs, batch_size, lr, lr_step, lr_gamma, n_members, standardize, early_stopping, valid_fraction,
    patience, device, precision, checkpoint_dir, verbose
        See :class:`pzkit.nn.TorchPhotoZEstimator`.
    """

    def __init__(self, hidden=(300, 500, 1000, 500, 300), dropout=0.02, zmin=0.0, zmax=3.0, nzbins=301,
                 point_estimate="mode", random_state=None, max_epochs=100, batch_size=512, lr=1e-3, lr_step=25,
                 lr_gamma=0.1, n_members=1, standardize=True, early_stopping=False, valid_fraction=0.1,
                 patience=10, device="auto", precision="float32", n_threads="auto", callbacks=None,
                 checkpoint_dir=None, verbose=0):
        super().__init__(zmin=zmin, zmax=zmax, nzbins=nzbins, point_estimate=point_estimate,
                         random_state=random_state, max_epochs=max_epochs, batch_size=batch_size, lr=lr,
                         lr_step=lr_step, lr_gamma=lr_gamma, n_members=n_members, standardize=standardize,
                         early_stopping=early_stopping, valid_fraction=valid_fraction, patience=patience,
                         device=device, precision=precision, n_threads=n_threads, callbacks=callbacks,
                         checkpoint_dir=checkpoint_dir, verbose=verbose)
        self.hidden = hidden
        self.dropout = dropout

    def _build_module(self, n_features, n_bins):
        return baseline_network(n_features, self.hidden, self.dropout, n_bins)

    @classmethod
    def _conformance_instance(cls):
        return cls(hidden=(32, 32), max_epochs=15, batch_size=64, lr_step=10)
