"""pzkit plugin ``baseline_nn``: a fully connected classifier over redshift bins (Cabayol et al. 2023, the
single-task baseline); see ``docs/plugins/baseline_nn.md``."""

from ._estimator import BaselineNN
from ._nets import baseline_network

__all__ = ["BaselineNN", "baseline_network"]
__version__ = "0.1.0"
