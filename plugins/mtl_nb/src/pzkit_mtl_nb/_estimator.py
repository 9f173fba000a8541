"""The ``MTLNarrowBand`` estimator: photo-z network with narrow-band photometry as an auxiliary task."""

import warnings

import numpy as np

from pzkit.exceptions import InputError, PzkitWarning
from pzkit.nn import TorchPhotoZEstimator, z_to_bin

from ._nets import _MTLNet, _TwoHeads

VARIANTS = ("zs", "zs+NB", "zs+zPAUS", "zs+NB+zPAUS")






class MTLNarrowBand(TorchPhotoZEstimator):
    """Multi-task photo-z network: broad bands in, p(z) and narrow-band colours out (Cabayol et al. 2023).

    The trunk is the single-task baseline of :class:`pzkit_baseline_nn.BaselineNN` (300:500:1000:500:300,
    2 % dropout, ReLU) and the redshift head is a softmax over the grid's bins. An extra linear output layer on
    the last shared layer predicts the adjacent narrow-band colours (39 for the 40 PAUS bands). The loss is
    cross-entropy on objects with a redshift label plus ``nb_weight`` (λ, 1 in the paper) times the mean
    absolute error over each object's finite narrow-band colours (Eqs. 1–3); objects without a redshift train
    only the narrow-band head. Narrow bands are needed in ``fit`` only: ``predict`` and ``estimate_pdf`` take
    broad-band features, and the narrow-band head is dropped at inference.

    Variants of the paper (``variant``):

    * ``"zs"``: redshift loss on spec-z objects only, no narrow-band loss (the baseline inside this class;
      unlabelled objects are ignored);
    * ``"zs+NB"``: the MTL network; spec-z for the redshift loss, narrow bands on every object that has them;
    * ``"zs+zPAUS"``: objects without spec-z get the high-precision photo-z ``z_photo`` as their label;
    * ``"zs+NB+zPAUS"``: both.

    Parameters
    ----------
    variant : {"zs", "zs+NB", "zs+zPAUS", "zs+NB+zPAUS"}
    nb_weight : float
        λ, the weight of the narrow-band loss (Eq. 3 uses 1).
    nb_kind : {"magnitudes", "colors"}
        What ``nb`` holds: narrow-band magnitudes (turned into adjacent colours, as the paper's targets) or the
        colours themselves.
    hidden, dropout
        Trunk widths and dropout, as :class:`~pzkit_baseline_nn.BaselineNN`.
    zmin, zmax, nzbins, point_estimate, random_state, max_epochs, batch_size, lr, lr_step, lr_gamma, n_members,
    standardize, early_stopping, valid_fraction, patience, device, precision, checkpoint_dir, verbose
        See :class:`pzkit.nn.TorchPhotoZEstimator` (paper: Adam, 100 epochs, lr 1e-3 ÷10 every 25 epochs).

    Notes
    -----
    ``fit(X, y, nb=None, z_photo=None)``: ``y`` has NaN for objects without spec-z; ``nb`` is (n, n_bands) with
    NaN (or 99 / ±inf) where a band is missing; ``z_photo`` (n,) is the second, high-precision label of the
    zPAUS variants. With metadata routing, request them with ``est.set_fit_request(nb=True, z_photo=True)``.
    ``nb`` passed to ``predict``/``estimate_pdf`` is refused with an error: the method's point is that narrow
    bands are not available for the objects it is applied to, and silently ignoring them would hide a mistake.

    Deviations (see specs/mtl_nb.md): output bins are the ``nzbins − 1`` grid bins (paper: 1,500 bins of 0.001
    over 0–1.5); features are z-scored by default (paper: raw colours; ``standardize=False`` is literal);
    narrow-band targets are used as given (raw colours, as the paper); batch size 512 (not stated).
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
