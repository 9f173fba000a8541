"""pzkit plugin ``pita``: PITA, semi-supervised photo-z from images that learns from unlabelled galaxies;
see ``docs/plugins/pita.md``."""

from ._estimator import PITA, colours_from_images

__all__ = ["PITA", "colours_from_images"]
__version__ = "0.1.0"
