"""The redshift grid shared by every estimator.

pzkit follows RAIL's convention: ``nzbins`` is the number of grid *points*, ``zgrid = linspace(zmin, zmax,
nzbins)``. Estimators with interpolated output (``qp.interp``) evaluate their PDF on these points; estimators
with histogram output (``qp.hist``) use the ``nzbins - 1`` bins whose edges are these points. The default
0–3 with 301 points is RAIL's DC2 set-up (bins of width 0.01).
"""

import numbers

import numpy as np

from .exceptions import InputError


def check_grid(zmin, zmax, nzbins):
    """Validate grid parameters and return ``zgrid``; the error names the offending parameter."""
    for name, value in (("zmin", zmin), ("zmax", zmax)):
        if not isinstance(value, numbers.Real) or isinstance(value, bool) or not np.isfinite(value):
            raise InputError(f"{name} must be a finite number, got {value!r}")
    if zmin < 0:
        raise InputError(f"zmin must be >= 0 (redshifts are non-negative), got {zmin}")
    if zmax <= zmin:
        raise InputError(f"zmax must be larger than zmin, got zmin={zmin}, zmax={zmax}")
    if not isinstance(nzbins, numbers.Integral) or isinstance(nzbins, bool) or nzbins < 3:
        raise InputError(f"nzbins must be an integer >= 3 (number of grid points), got {nzbins!r}")
    return np.linspace(float(zmin), float(zmax), int(nzbins))


def bin_centres(edges):
    edges = np.asarray(edges, dtype=float)
    return 0.5 * (edges[1:] + edges[:-1])


def nearest_index(grid, z):
    """Index of the grid point nearest each z; ties go to the lower index (as ``np.argmin``)."""
    grid = np.asarray(grid, dtype=float)
    idx = np.searchsorted(grid, z, side="left")
    hi = np.clip(idx, 0, grid.size - 1)
    lo = np.clip(idx - 1, 0, grid.size - 1)
    return np.where(np.abs(grid[lo] - z) <= np.abs(grid[hi] - z), lo, hi)
