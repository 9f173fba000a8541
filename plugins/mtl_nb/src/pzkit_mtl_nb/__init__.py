"""pzkit plugin ``mtl_nb``: photo-z network with narrow-band photometry as an auxiliary task (Cabayol et al.
2023); see ``docs/plugins/mtl_nb.md``."""

from ._estimator import VARIANTS, MTLNarrowBand

__all__ = ["MTLNarrowBand", "VARIANTS"]
__version__ = "0.1.0"
