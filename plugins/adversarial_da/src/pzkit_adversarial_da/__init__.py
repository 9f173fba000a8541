"""pzkit plugin ``adversarial_da``: band-pair CNN photo-z with unsupervised adversarial domain adaptation
(the HSC-CLAUDS paper's method); see ``docs/plugins/adversarial_da.md``."""

from ._estimator import AdversarialDA, magnitude_neighbours, pdf_width
from ._nets import AdversarialDAWarning, AdversarialNet, BandPairNet, Discriminator, adversarial_step

__all__ = ["AdversarialDA", "AdversarialDAWarning", "AdversarialNet", "BandPairNet", "Discriminator",
           "adversarial_step", "magnitude_neighbours", "pdf_width"]
__version__ = "0.1.0"
