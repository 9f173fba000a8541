"""The ``BaselineNN`` estimator: a fully connected classifier over redshift bins (Cabayol et al., single task)."""

from pzkit.nn import TorchPhotoZEstimator

from ._nets import baseline_network


class BaselineNN(TorchPhotoZEstimator):
    """Fully connected photo-z classifier over redshift bins: the single-task baseline of Cabayol et al. (2023).

    A multilayer perceptron (ReLU, dropout after every hidden layer) maps the feature table to a softmax over
    the ``nzbins - 1`` bins between grid points. It is trained with cross-entropy against the bin of each
    redshift, with Adam and a step-decayed learning rate. The PDF is the softmax, averaged over the
    ``n_members`` networks, as a ``qp.hist``. The same network is the trunk of
    :class:`pzkit_mtl_nb.MTLNarrowBand`.

    Parameters
    ----------
    hidden : tuple of int, default (300, 500, 1000, 500, 300)
        Widths of the hidden layers.
    dropout : float, default 0.02
        Dropout probability after each hidden layer.
    zmin, zmax, nzbins, point_estimate, random_state
        See :class:`pzkit.PhotoZEstimator`.
    lr_step, lr_gamma, standardize, early_stopping, valid_fraction, patience
        Learning-rate step decay, feature standardisation and early stopping: see
        :class:`pzkit.nn.TorchPhotoZEstimator`.
    max_epochs, batch_size, lr, n_members, device, precision, n_threads, callbacks, checkpoint_dir, verbose
        See :class:`pzkit.nn.engine.NeuralPhotoZEstimator`.

    Attributes
    ----------
    modules_, history_
        Fitted networks and training record: see :class:`pzkit.nn.engine.NeuralPhotoZEstimator`.
    mean_, scale_ : ndarray of shape (n_features,)
        The feature standardisation (zeros and ones when ``standardize=False``).

    Notes
    -----
    The paper, pzkit's implementation of it and every deviation from it are described in
    ``docs/plugins/baseline_nn.md``.
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
