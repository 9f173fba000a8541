"""pzkit plugin ``train_z``: every object gets the training-set redshift distribution as its PDF."""

import numpy as np

from pzkit import PhotoZEstimator

__all__ = ["TrainZ"]
__version__ = "0.1.0"


class TrainZ(PhotoZEstimator):
    """Training-set n(z) for every object (RAIL's ``TrainZEstimator``; Schmidt et al. 2020, §3.3).

    ``fit`` histograms the training redshifts on the ``nzbins - 1`` bins between grid points; every object
    then gets that histogram as a ``qp.hist`` PDF. Its PIT is perfectly calibrated globally while it carries
    no information about the individual object, which makes it the floor every benchmark reports: a method
    that learns anything must beat it on CDE loss and σ_NMAD.

    The features are validated (shape, finiteness) but not used.

    Parameters
    ----------
    zmin, zmax, nzbins, point_estimate, random_state
        See :class:`pzkit.PhotoZEstimator`. ``random_state`` is accepted for interface uniformity; the
        method has no random step.

    Attributes
    ----------
    zgrid_ : ndarray (nzbins,)
        Grid points, which are the histogram's bin edges.
    nz_ : ndarray (nzbins - 1,)
        The normalised training n(z) density in each bin.
    """

    _tags = {"learns": False}

    def __init__(self, zmin=0.0, zmax=3.0, nzbins=301, point_estimate="mode", random_state=None):
        super().__init__(
            zmin=zmin, zmax=zmax, nzbins=nzbins, point_estimate=point_estimate, random_state=random_state
        )

    def _fit(self, X, y):
        counts, _ = np.histogram(y, bins=self.zgrid_)
        self.nz_ = counts / (counts.sum() * np.diff(self.zgrid_))

    def _estimate_pdf(self, X):
        return self._hist_ensemble(np.broadcast_to(self.nz_, (X.shape[0], self.nz_.size)))
