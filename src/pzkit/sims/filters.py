"""Filter curves by name: real curves from speclite and GalSim, plus synthetic top-hat narrow bands.

Names
-----
* ``<group>-<band>``: any speclite curve, e.g. ``lsst2023-u``, ``sdss2010-r``, ``hsc2017-i``, ``decam2014-g``,
  ``cfht_megacam-u`` (the new MegaCam u, CLAUDS), ``cfht_megacam-ustar`` (the old u*), ``bessell-B``.
* ``hst-<filter>``: HST throughput curves shipped by GalSim: ACS WFC F435W F606W F775W F814W F850LP,
  WFC3 UVIS F275W F336W, WFC3 IR F105W F125W F160W.
* ``tophat-<centre>-<fwhm>``: a rectangle of the given centre and full width (Å), e.g. ``tophat-4550-130``.
* ``paus-NB<ccc>``: the PAUS-like narrow bands, ``tophat-<ccc>0-130`` (NB455 … NB845: 40 bands, 100 Å apart).

Every curve is a photon-counting throughput T(λ) on a wavelength grid in Å.
"""

import functools
import glob
import os
import re

import numpy as np

from .config import SimsConfigError

_HST = {
    "F435W": "ACS_wfc_F435W", "F606W": "ACS_wfc_F606W", "F775W": "ACS_wfc_F775W", "F814W": "ACS_wfc_F814W",
    "F850LP": "ACS_wfc_F850LP", "F275W": "WFC3_uvis_F275W", "F336W": "WFC3_uvis_F336W",
    "F105W": "WFC3_ir_F105W", "F125W": "WFC3_ir_F125W", "F160W": "WFC3_ir_F160W",
}

#: PAUS-like narrow bands: centres 4550 ... 8450 Å, 130 Å wide.
PAUS_CENTRES = np.arange(4550, 8451, 100)
PAUS_NAMES = [f"NB{c // 10}" for c in PAUS_CENTRES]

_TOPHAT = re.compile(r"^tophat-(\d+(?:\.\d+)?)-(\d+(?:\.\d+)?)$")
_PAUS = re.compile(r"^paus-NB(\d{3})$")


def _speclite_dir():
    try:
        import speclite
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    return os.path.join(os.path.dirname(speclite.__file__), "data", "filters")


@functools.lru_cache(maxsize=1)
def speclite_names():
    folder = _speclite_dir()
    if folder is None:  # pragma: no cover
        return ()
    return tuple(sorted(os.path.basename(p)[:-5] for p in glob.glob(os.path.join(folder, "*.ecsv"))))


def list_filters():
    """Every filter name this module resolves (top-hats of any centre/width are also accepted)."""
    return (list(speclite_names()) + [f"hst-{k}" for k in _HST] + [f"paus-{n}" for n in PAUS_NAMES]
            + ["tophat-<centre>-<fwhm>"])


def is_known(name):
    if not isinstance(name, str):
        return False
    if _TOPHAT.match(name):
        return True
    m = _PAUS.match(name)
    if m:
        return int(m.group(1)) * 10 in set(PAUS_CENTRES.tolist())
    if name.startswith("hst-"):
        return name[4:] in _HST
    return name in speclite_names()


def _tophat(centre, fwhm):
    lo, hi = centre - fwhm / 2.0, centre + fwhm / 2.0
    eps = 1e-3
    return np.array([lo - eps, lo, hi, hi + eps]), np.array([0.0, 1.0, 1.0, 0.0])


@functools.lru_cache(maxsize=256)
def load_filter(name):
    """(wave Å, throughput) of filter ``name``, trimmed to where T > 1e-3 max(T) (drops far red leaks)."""
    if not is_known(name):
        raise SimsConfigError(f"unknown filter {name!r}; known: speclite names such as lsst2023-u, "
                              f"hst-F160W, paus-NB455, tophat-<centre>-<fwhm> (see pzkit.sims.list_filters())")
    m = _TOPHAT.match(name)
    if m:
        return _tophat(float(m.group(1)), float(m.group(2)))
    m = _PAUS.match(name)
    if m:
        return _tophat(int(m.group(1)) * 10.0, 130.0)
    if name.startswith("hst-"):
        import galsim.meta_data

        path = os.path.join(galsim.meta_data.share_dir, "bandpasses", _HST[name[4:]] + ".dat")
        data = np.loadtxt(path)
        wave, resp = data[:, 0] * 10.0, data[:, 1]  # nm -> Å
    else:
        import speclite.filters

        curve = speclite.filters.load_filter(name)
        wave, resp = np.asarray(curve.wavelength, dtype=np.float64), np.asarray(curve.response, dtype=np.float64)
    resp = np.clip(resp, 0.0, None)
    keep = np.nonzero(resp > 1e-3 * resp.max())[0]
    lo, hi = max(keep[0] - 1, 0), min(keep[-1] + 2, len(wave))
    return wave[lo:hi].astype(np.float64), resp[lo:hi].astype(np.float64)


def effective_wavelength(name):
    """Photon-weighted mean wavelength ∫T λ dλ / ∫T dλ (Å)."""
    w, t = load_filter(name)
    return float(np.trapezoid(t * w, w) / np.trapezoid(t, w))


def sampling(name, step_broad=5.0, step_narrow=2.0):
    """Integration grid for filter ``name``: (wave, T(wave), weights) with weights = T λ dλ / ∫T/λ dλ, so that
    Σ f_λ·weights is the photon-weighted band f_ν (in units of f_λ·Å²/c, i.e. c dropped)."""
    w, t = load_filter(name)
    width = w[-1] - w[0]
    step = step_narrow if width < 600 else step_broad
    grid = np.arange(w[0], w[-1] + step / 2, step)
    if _TOPHAT.match(name) or _PAUS.match(name):
        # exact edges for a top-hat: sample its interior at `step`, trapezoid weights
        grid = np.linspace(w[1], w[2], int(round((w[2] - w[1]) / step)) + 1)
        tt = np.ones_like(grid)
    else:
        tt = np.interp(grid, w, t)
    # trapezoid weights: interior points have full spacing, ends half of it
    dl = np.empty_like(grid)
    dl[1:-1] = (grid[2:] - grid[:-2]) / 2.0
    dl[0] = (grid[1] - grid[0]) / 2.0
    dl[-1] = (grid[-1] - grid[-2]) / 2.0
    norm = np.sum(tt / grid * dl)
    return grid, tt, tt * grid * dl / norm


def line_response(name, wave_obs):
    """T(λ)·λ / ∫T/λ dλ at observed wavelengths: the band f_ν (same units as :func:`sampling`) of a line of
    unit integrated flux at ``wave_obs``."""
    w, t = load_filter(name)
    grid, tt, _ = sampling(name)
    dl = np.empty_like(grid)
    dl[1:-1] = (grid[2:] - grid[:-2]) / 2.0
    dl[0] = (grid[1] - grid[0]) / 2.0
    dl[-1] = (grid[-1] - grid[-2]) / 2.0
    norm = np.sum(tt / grid * dl)
    lam = np.asarray(wave_obs, dtype=np.float64)
    return np.interp(lam, w, t, left=0.0, right=0.0) * lam / norm


def check_filter(name, field):
    """Raise :class:`SimsConfigError` naming ``field`` when ``name`` is not a known filter."""
    if not is_known(name):
        raise SimsConfigError(
            f"{field}: unknown filter {name!r}; known filters are speclite names (e.g. lsst2023-u, sdss2010-r, "
            f"hsc2017-i, cfht_megacam-ustar, decam2014-g), hst-<F606W|F814W|F125W|F160W|...>, paus-NB455 … "
            f"paus-NB845 and tophat-<centre>-<fwhm>"
        )
