"""Catalogue photometry measured on the stamps, as a survey pipeline measures it (with ``sep``).

The default catalogue of :func:`pzkit.sims.make` is the true flux plus Gaussian noise from the depth: an
ideal measurement. A survey's catalogue is measured from its pixels, with errors the pixels themselves do not
have. With ``images={"photometry": {"method": "aperture", "diameter": D}}`` the catalogue magnitudes are
instead measured on the rendered stamps:

* the centre is the windowed centroid (``sep.winpos``) in the reference band, as a detection would give;
* every band is summed in the same circular aperture of ``D`` arcsec there (``sep.sum_circle``, exact
  sub-pixel overlap), so colours carry the band-to-band PSF differences and the light outside the aperture
  that a real aperture catalogue carries;
* errors are the pixel noise summed over the aperture plus the domain's calibration floor; fluxes ≤ 0 are
  non-detections (magnitude 99, error = the band's 1σ limit), as in the default catalogue.

The ideal photometry stays available as ``mag_gauss_{band}_{survey}`` and ``mag_err_gauss_{band}_{survey}``
for controls. Stamps are processed as mosaics (one ``sep`` call per band per chunk), not object by object.
"""

import math

import numpy as np

from .catalog import _LN10_04, AB_NJY, SIGMA1_OFFSET
_CHUNK = 4096


def _mosaic(stamps):
    """(n, S, S) stamps -> one C-contiguous float64 image of ceil(√n) × ceil(√n) stamps, and each stamp's
    origin (x0, y0) in it."""
    n, size = stamps.shape[0], stamps.shape[-1]
    side = int(math.ceil(math.sqrt(n)))
    image = np.zeros((side * size, side * size), dtype=np.float64)
    rows, cols = np.divmod(np.arange(n), side)
    tiles = image.reshape(side, size, side, size)
    tiles[rows, :, cols, :] = stamps
    return image, cols * size, rows * size


def measure(cfg, catalog, images, info):
    """Aperture magnitudes and errors measured on ``images`` (aligned with ``catalog``): a dict of columns
    ``mag_{band}_{survey}`` and ``mag_err_{band}_{survey}``."""
    import sep

    spec = cfg["images"]["photometry"]
    bands = list(cfg["bands"])
    survey = cfg["survey"]
    ref = bands.index(cfg["ref_band"])
    n, size = images.shape[0], images.shape[-1]
    flux = np.empty((n, len(bands)))
    flux_err = np.empty((n, len(bands)))
    limits = np.empty((n, len(bands)))   # 1σ point-source limits: the error given to a non-detection
    domains = catalog["domain"].to_numpy()
    domain_info = info.get("domains", {}) if info else {}
    for name in dict.fromkeys(domains.tolist()):
        dom = cfg["domains"][name]
        meta = domain_info.get(name, info)
        scale = float(meta["pixel_scale"])
        noise = np.array([meta["pixel_noise"][b] for b in bands])
        radius = min(0.5 * float(spec["diameter"]) / scale, 0.5 * size - 1.0)
        window = max(float(min(meta["psf_fwhm"].values())) / scale / 2.3548, 1.0)
        floor = float(dom.get("error_floor", 0.0))
        rows_all = np.flatnonzero(domains == name)
        limits[rows_all] = np.array([float(dom["depth"][b]) + SIGMA1_OFFSET for b in bands])
        for start in range(0, rows_all.size, _CHUNK):
            rows = rows_all[start:start + _CHUNK]
            centre = 0.5 * (size - 1)   # a detection knows the stamp it cut, not the sub-pixel offset
            detection, x0, y0 = _mosaic(images[rows, ref])
            x, y, _ = sep.winpos(detection, x0 + centre, y0 + centre, window)
            lost = ~np.isfinite(x) | (np.abs(x - x0 - centre) > radius) | (np.abs(y - y0 - centre) > radius)
            x = np.where(lost, x0 + centre, x)
            y = np.where(lost, y0 + centre, y)
            for j in range(len(bands)):
                mosaic = detection if j == ref else _mosaic(images[rows, j])[0]
                f, e, _ = sep.sum_circle(mosaic, x, y, radius, err=float(noise[j]), subpix=0)
                flux[rows, j] = f
                flux_err[rows, j] = np.sqrt(e**2 + (floor * _LN10_04 * np.maximum(f, 0.0)) ** 2)
    out = {}
    for j, b in enumerate(bands):
        det = flux[:, j] > 0
        with np.errstate(divide="ignore", invalid="ignore"):
            out[f"mag_{b}_{survey}"] = np.where(det, AB_NJY - 2.5 * np.log10(flux[:, j]), 99.0)
            out[f"mag_err_{b}_{survey}"] = np.where(det, 2.5 / math.log(10) * flux_err[:, j] / flux[:, j],
                                                    limits[:, j])
    return out


def with_measured_photometry(cfg, catalog, images, info):
    """``catalog`` with its magnitudes measured on ``images``; the ideal ones renamed ``mag_gauss_*``."""
    measured = measure(cfg, catalog, images, info)
    survey = cfg["survey"]
    out = catalog.copy()
    for b in cfg["bands"]:
        for kind in ("mag", "mag_err"):
            name = f"{kind}_{b}_{survey}"
            out[f"{kind}_gauss_{b}_{survey}"] = out[name].to_numpy()
            out[name] = measured[name]
    return out
