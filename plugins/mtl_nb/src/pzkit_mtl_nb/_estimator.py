"""The ``MTLNarrowBand`` estimator: photo-z network with narrow-band photometry as an auxiliary task."""

import warnings

import numpy as np

from pzkit.exceptions import InputError, PzkitWarning
from pzkit.nn import TorchPhotoZEstimator, z_to_bin

from ._nets import _MTLNet, _TwoHeads

VARIANTS = ("zs", "zs+NB", "zs+zPAUS", "zs+NB+zPAUS")






class MTLNarrowBand(TorchPhotoZEstimator):
    """Multi-task photo-z network: broad bands in, p(z) and narrow-band colours out (Cabayol et al. 2023).

    The trunk of :class:`pzkit_baseline_nn.BaselineNN` carries two heads: a softmax over the grid's redshift
    bins and a linear layer predicting the adjacent narrow-band colours. The loss is the cross-entropy on
    objects with a redshift label plus ``nb_weight`` times the mean absolute error of each object's finite
    narrow-band colours. Narrow bands are needed in ``fit`` only (``fit(X, y, nb=..., z_photo=None)``, ``y`` NaN
    where there is no spec-z); ``predict`` and ``estimate_pdf`` take broad-band features alone.

    Parameters
    ----------
    variant : {"zs", "zs+NB", "zs+zPAUS", "zs+NB+zPAUS"}, default "zs+NB"
        The paper's training variants: "NB" adds the narrow-band loss, "zPAUS" labels objects without
        spec-z with the high-precision photo-z ``z_photo`` passed to ``fit``.
    nb_weight : float, default 1.0
        Weight of the narrow-band loss (λ; the paper uses 1).
    nb_kind : {"magnitudes", "colors"}, default "magnitudes"
        What ``nb`` holds: narrow-band magnitudes (turned into adjacent colours) or the colours themselves.
    hidden, dropout
        Widths of the shared hidden layers and the dropout after each, as :class:`pzkit_baseline_nn.BaselineNN`.
    max_epochs, batch_size, lr, n_members, device, precision, n_threads, callbacks, checkpoint_dir, verbose
        See :class:`pzkit.nn.engine.NeuralPhotoZEstimator` (the paper: Adam, 100 epochs, lr 1e-3).
    lr_step, lr_gamma, standardize, early_stopping, valid_fraction, patience
        See :class:`pzkit.nn.TorchPhotoZEstimator` (the paper: lr divided by 10 every 25 epochs).
    zmin, zmax, nzbins, point_estimate, random_state
        See :class:`pzkit.PhotoZEstimator`.

    Attributes
    ----------
    modules_ : list of torch.nn.Module
        The fitted networks, one per ensemble member (the narrow-band head is not used at inference).
    history_ : list of list of dict
        Per member, one row per training epoch, with ``train_loss`` and ``phase``.
    n_nb_targets_ : int
        Number of narrow-band colour targets (0 for the variants without "NB").

    Notes
    -----
    ``nb`` is (n, n_bands), NaN (or 99, ±inf) where a band is missing; missing values are masked in the loss,
    never imputed. With metadata routing, request the side inputs with
    ``est.set_fit_request(nb=True, z_photo=True)``. Passing ``nb`` to ``predict`` or ``estimate_pdf`` is an
    error. The paper, pzkit's implementation of it and every deviation from it are described in
    ``docs/plugins/mtl_nb.md``.
    """

    _tags = {"unlabelled_rows": True, "fit_inputs": {"nb": "narrow_bands", "z_photo": "z_photo"},
             "required_fit_inputs": ("nb",)}

    def __init__(self, variant="zs+NB", nb_weight=1.0, nb_kind="magnitudes", hidden=(300, 500, 1000, 500, 300),
                 dropout=0.02, zmin=0.0, zmax=3.0, nzbins=301, point_estimate="mode", random_state=None,
                 max_epochs=100, batch_size=512, lr=1e-3, lr_step=25, lr_gamma=0.1, n_members=1, standardize=True,
                 early_stopping=False, valid_fraction=0.1, patience=10, device="auto", precision="float32",
                 n_threads="auto", callbacks=None, checkpoint_dir=None, verbose=0):
        super().__init__(zmin=zmin, zmax=zmax, nzbins=nzbins, point_estimate=point_estimate,
                         random_state=random_state, max_epochs=max_epochs, batch_size=batch_size, lr=lr,
                         lr_step=lr_step, lr_gamma=lr_gamma, n_members=n_members, standardize=standardize,
                         early_stopping=early_stopping, valid_fraction=valid_fraction, patience=patience,
                         device=device, precision=precision, n_threads=n_threads, callbacks=callbacks,
                         checkpoint_dir=checkpoint_dir, verbose=verbose)
        self.variant = variant
        self.nb_weight = nb_weight
        self.nb_kind = nb_kind
        self.hidden = hidden
        self.dropout = dropout

    def get_tags(self):
        """Class tags, with the inputs of this ``variant`` only (``nb`` for the NB variants, ``z_photo`` for
        the zPAUS ones)."""
        tags = super().get_tags()
        variant = str(self.variant)
        keep = {k for k, used in (("nb", "NB" in variant), ("z_photo", "zPAUS" in variant)) if used}
        tags["fit_inputs"] = {k: v for k, v in tags["fit_inputs"].items() if k in keep}
        tags["required_fit_inputs"] = tuple(k for k in tags["required_fit_inputs"] if k in keep) + (
            ("z_photo",) if "z_photo" in keep else ())
        return tags

    # ------------------------------------------------------------------ API with side inputs
    def fit(self, X, y, nb=None, z_photo=None):
        """Fit on broad-band features ``X``, redshifts ``y`` (NaN = no spec-z), narrow bands ``nb`` and, for
        the zPAUS variants, the high-precision photo-z ``z_photo``."""
        if self.variant not in VARIANTS:
            raise InputError(f"variant must be one of {VARIANTS}, got {self.variant!r}")
        if self.nb_kind not in ("magnitudes", "colors"):
            raise InputError(f"nb_kind must be 'magnitudes' or 'colors', got {self.nb_kind!r}")
        if not (isinstance(self.nb_weight, (int, float)) and self.nb_weight >= 0):
            raise InputError(f"nb_weight must be a non-negative number, got {self.nb_weight!r}")
        return super().fit(X, y, nb=nb, z_photo=z_photo)

    def predict(self, X, nb=None):
        self._refuse_nb(nb, "predict")
        return super().predict(X)

    def estimate_pdf(self, X, ids=None, nb=None):
        self._refuse_nb(nb, "estimate_pdf")
        return super().estimate_pdf(X, ids=ids)

    @staticmethod
    def _refuse_nb(nb, method):
        if nb is not None:
            raise InputError(
                f"nb was passed to {method}: mtl_nb uses narrow bands only as a training target; {method} takes "
                "broad-band features alone (drop nb, or use a narrow-band photo-z method if you have them)"
            )

    # ------------------------------------------------------------------ training data
    def _nb_targets(self, nb, n):
        nb = np.asarray(nb, dtype=np.float64)
        if nb.ndim != 2 or nb.shape[0] != n:
            raise InputError(f"nb must be an array of shape (n_samples={n}, n_bands), got shape {nb.shape}")
        if nb.shape[1] < (3 if self.nb_kind == "magnitudes" else 2):
            raise InputError(f"nb has {nb.shape[1]} columns: too few narrow bands to form colour targets")
        nb = np.where(np.isfinite(nb) & (np.abs(nb) < 90), nb, np.nan)  # 99 / inf mark missing bands
        return nb[:, :-1] - nb[:, 1:] if self.nb_kind == "magnitudes" else nb

    def _training_data(self, Xs, y, nb=None, z_photo=None):
        n = Xs.shape[0]
        labels = y.copy()
        if "zPAUS" in self.variant:
            if z_photo is None:
                raise InputError(f"variant {self.variant!r} needs z_photo, the high-precision photo-z labels")
            z_photo = np.asarray(z_photo, dtype=np.float64)
            if z_photo.shape != (n,):
                raise InputError(f"z_photo must have shape ({n},), got {z_photo.shape}")
            fill = np.isnan(labels) & np.isfinite(z_photo)
            labels[fill] = np.clip(z_photo[fill], self.zgrid_[0], self.zgrid_[-1])
        elif z_photo is not None:
            warnings.warn(f"z_photo is ignored by variant {self.variant!r}", PzkitWarning, stacklevel=3)
        uses_nb = "NB" in self.variant
        if uses_nb:
            if nb is None:
                raise InputError(f"variant {self.variant!r} needs nb, the narrow-band photometry of the training set")
            targets = self._nb_targets(nb, n)
        else:
            if nb is not None:
                warnings.warn(f"nb is ignored by variant {self.variant!r}", PzkitWarning, stacklevel=3)
            targets = np.zeros((n, 0))
        labelled = np.isfinite(labels)
        if not labelled.any():
            raise InputError("no object has a redshift label: the redshift head cannot be trained")
        keep = labelled | (np.isfinite(targets).any(axis=1) if uses_nb else False)
        bins = np.where(labelled, z_to_bin(np.where(labelled, labels, self.zgrid_[0]), self.zgrid_), -1)
        self.n_nb_targets_ = targets.shape[1]
        packed = np.column_stack([bins.astype(np.float32), targets.astype(np.float32)])
        return Xs[keep], packed[keep]

    # ------------------------------------------------------------------ network
    def _net_class(self):
        return _MTLNet

    def _net_params(self):
        return {"nb_weight": self.nb_weight}

    def _build_module(self, n_features, n_bins):
        return _TwoHeads(n_features, self.hidden, self.dropout, n_bins, getattr(self, "n_nb_targets_", 0))

    @classmethod
    def _conformance_instance(cls):
        return cls(variant="zs", hidden=(32, 32), max_epochs=15, batch_size=64, lr_step=10)
