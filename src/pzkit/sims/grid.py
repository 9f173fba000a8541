"""Photometry precomputed on a (template, redshift, dust) grid, cached on disk, and interpolated.

For each filter and template set the grid holds the photon-weighted band f_ν

    G[k, z, E] = ∫ S_k(λ/(1+z))/(1+z) · T_IGM(λ, z) · 10^(−0.4 k_Calzetti(λ/(1+z)) E) · T(λ) λ dλ / ∫ T(λ)/λ dλ

on z = 0 … 6 (Δz = 0.005) and E(B−V) = 0 … 1 (ΔE = 0.1), in units where the template is normalised to a
mean f_λ of 1 over rest 5000–6000 Å (the speed of light is dropped; only flux ratios matter). Galaxies are
interpolated bilinearly in (z, E) on log G and linearly between adjacent templates in flux, which is exact
for the continuous type because an SED mixture integrates linearly. Emission lines are added exactly, per
galaxy, from the filter curve at the observed line wavelength (:meth:`PhotGrid.lines`).
"""

import hashlib
import os
import tempfile

import numpy as np

from . import filters as _filters
from . import seds

GRID_VERSION = "2"
Z_MAX = 6.0
DZ = 0.005
DE = 0.1
E_MAX = 1.0
Z_GRID = np.linspace(0.0, Z_MAX, int(round(Z_MAX / DZ)) + 1)
E_GRID = np.linspace(0.0, E_MAX, int(round(E_MAX / DE)) + 1)
#: Rest-frame V-like top-hat used for absolute magnitudes (sizes).
V_FILTER = "tophat-5500-1000"

_MEMO = {}
_TEMPLATES = {}


def default_cache_dir():
    """``$PZKIT_CACHE_DIR/sims`` if set, else ``~/.cache/pzkit/sims``."""
    root = os.environ.get("PZKIT_CACHE_DIR")
    if root:
        return os.path.join(os.path.expanduser(root), "sims")
    return os.path.join(os.path.expanduser("~"), ".cache", "pzkit", "sims")


def templates(template_set):
    if template_set not in _TEMPLATES:
        _TEMPLATES[template_set] = seds.load_templates(template_set)
    return _TEMPLATES[template_set]


def _grid_key(template_set, filter_name):
    h = hashlib.sha256()
    h.update(f"{GRID_VERSION}|{template_set}|{filter_name}|{Z_MAX}|{DZ}|{E_MAX}|{DE}".encode())
    w, t = _filters.load_filter(filter_name)
    lam, _, weights = _filters.sampling(filter_name)
    h.update(np.ascontiguousarray(lam).tobytes())
    h.update(np.ascontiguousarray(weights).tobytes())
    h.update(np.ascontiguousarray(w).tobytes())
    h.update(np.ascontiguousarray(t).tobytes())
    _, wave_t, flux_t = templates(template_set)     # the processed (line-stripped, normalised) templates
    h.update(np.ascontiguousarray(wave_t).tobytes())
    h.update(np.ascontiguousarray(flux_t).tobytes())
    return h.hexdigest()[:16]


def compute_filter_grid(template_set, filter_name):
    """G[k, z, E] for one filter (see the module docstring); no caching."""
    _, wave_t, flux_t = templates(template_set)
    lam, _, weights = _filters.sampling(filter_name)
    nz, ne, nk = len(Z_GRID), len(E_GRID), flux_t.shape[0]
    out = np.empty((nk, nz, ne))
    chunk = max(1, int(4e6 // max(len(lam), 1) // nk))
    for start in range(0, nz, chunk):
        z = Z_GRID[start:start + chunk]
        rest = lam[None, :] / (1.0 + z[:, None])                       # (z, l)
        igm = seds.madau_transmission(lam[None, :], z[:, None])         # (z, l)
        base = igm * weights[None, :] / (1.0 + z[:, None])              # (z, l)
        sk = np.stack([np.interp(rest, wave_t, f) for f in flux_t])     # (k, z, l)
        a = sk * base[None]
        kcal = -0.4 * np.log(10.0) * seds.calzetti_k(rest)              # (z, l)
        for ie, e in enumerate(E_GRID):
            out[:, start:start + chunk, ie] = np.einsum("kzl,zl->kz", a, np.exp(kcal * e))
    return out


def filter_grid(template_set, filter_name, cache_dir=None):
    """G[k, z, E] for one filter, from memory, the disk cache, or computed (and then cached)."""
    key = _grid_key(template_set, filter_name)
    if key in _MEMO:
        return _MEMO[key]
    folder = os.path.join(cache_dir or default_cache_dir(), "grids")
    safe = filter_name.replace("/", "_")
    path = os.path.join(folder, f"{template_set}_{safe}_{key}.npy")
    grid = None
    if os.path.exists(path):
        try:
            grid = np.load(path)
        except (OSError, ValueError):
            grid = None
    if grid is None or grid.shape != (len(templates(template_set)[0]), len(Z_GRID), len(E_GRID)):
        grid = compute_filter_grid(template_set, filter_name)
        try:
            os.makedirs(folder, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=folder, suffix=".npy.tmp")
            with os.fdopen(fd, "wb") as fh:
                np.save(fh, grid)
            os.replace(tmp, path)
        except OSError:  # read-only cache: keep the grid in memory only
            pass
    _MEMO[key] = grid
    return grid


class PhotGrid:
    """Band fluxes of continuous-type, dusty, redshifted templates for a list of filters."""

    def __init__(self, template_set, filter_names, cache_dir=None):
        self.template_set = template_set
        self.filter_names = list(filter_names)
        grids = [filter_grid(template_set, f, cache_dir) for f in self.filter_names]
        g = np.stack(grids, axis=-1)                                     # (k, z, e, b)
        floor = np.maximum(g.max(axis=(1, 2), keepdims=True), 1e-300) * 1e-15
        self.n_templates = g.shape[0]
        self._log = np.log(np.maximum(g, floor)).reshape(-1, g.shape[-1])  # (k*z*e, b)
        self._nz, self._ne = g.shape[1], g.shape[2]
        self._resp = []
        for f in self.filter_names:
            w, t = _filters.load_filter(f)
            lam, tt, _ = _filters.sampling(f)
            dl = np.empty_like(lam)
            if len(lam) > 1:
                dl[1:-1] = (lam[2:] - lam[:-2]) / 2.0
                dl[0] = (lam[1] - lam[0]) / 2.0
                dl[-1] = (lam[-1] - lam[-2]) / 2.0
            else:  # pragma: no cover
                dl[:] = 1.0
            self._resp.append((w, t, float(np.sum(tt / lam * dl))))
        self.span = (min(r[0][0] for r in self._resp), max(r[0][-1] for r in self._resp))
        # top-hats (4-point curves) are evaluated in one vectorised step
        self._tophat = np.array([len(w) == 4 and t[1] == t[2] == 1.0 for w, t, _ in self._resp])
        if self._tophat.any():
            idx = np.nonzero(self._tophat)[0]
            self._th_idx = idx
            self._th_lo = np.array([self._resp[j][0][1] for j in idx])
            self._th_hi = np.array([self._resp[j][0][2] for j in idx])
            self._th_norm = np.array([self._resp[j][2] for j in idx])

    def continuum(self, t, z, ebv):
        """(N, n_filters) band f_ν of the continuum of continuous type ``t`` at ``z`` with E(B−V) ``ebv``."""
        t = np.asarray(t, dtype=np.float64)
        k0 = np.clip(np.floor(t).astype(np.int64), 0, self.n_templates - 2)
        wt = np.clip(t - k0, 0.0, 1.0)
        fz = np.clip(np.asarray(z, dtype=np.float64), 0.0, Z_MAX) / DZ
        iz = np.clip(np.floor(fz).astype(np.int64), 0, self._nz - 2)
        wz = (fz - iz)[:, None]
        fe = np.clip(np.asarray(ebv, dtype=np.float64), 0.0, E_MAX) / DE
        ie = np.clip(np.floor(fe).astype(np.int64), 0, self._ne - 2)
        we = (fe - ie)[:, None]
        out = None
        for dk, wk in ((0, 1.0 - wt), (1, wt)):
            base = ((k0 + dk) * self._nz + iz) * self._ne + ie
            lg = ((1 - wz) * ((1 - we) * self._log[base] + we * self._log[base + 1])
                  + wz * ((1 - we) * self._log[base + self._ne] + we * self._log[base + self._ne + 1]))
            term = wk[:, None] * np.exp(lg)
            out = term if out is None else out + term
        return out

    def line_response(self, wave_obs):
        """(N, n_filters): band f_ν of a line of unit integrated flux at observed wavelengths ``wave_obs``."""
        lam = np.asarray(wave_obs, dtype=np.float64)
        out = np.empty((lam.shape[0], len(self._resp)))
        for j, (w, t, norm) in enumerate(self._resp):
            if not self._tophat[j]:
                out[:, j] = np.interp(lam, w, t, left=0.0, right=0.0) * lam / norm
        if self._tophat.any():
            lc = lam[:, None]
            inside = (lc >= self._th_lo[None, :]) & (lc <= self._th_hi[None, :])
            out[:, self._th_idx] = np.where(inside, lc / self._th_norm[None, :], 0.0)
        return out


def template_value(template_set, t, wave_rest):
    """(N, n_wave) rest-frame normalised f_λ of continuous type ``t`` at ``wave_rest`` (Å, dust-free)."""
    _, wave_t, flux_t = templates(template_set)
    vals = np.stack([np.interp(wave_rest, wave_t, f) for f in flux_t])  # (k, n_wave)
    t = np.asarray(t, dtype=np.float64)
    k0 = np.clip(np.floor(t).astype(np.int64), 0, flux_t.shape[0] - 2)
    wt = np.clip(t - k0, 0.0, 1.0)[:, None]
    return (1 - wt) * vals[k0] + wt * vals[k0 + 1]
