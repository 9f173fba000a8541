"""pzkit.sims: a physically grounded mock-survey generator (optional extra: ``pip install 'pzkit[sims]'``).

Real SED templates (CWW+SB from desc-bpz, CWW from GalSim) with Calzetti dust, Madau (1995) IGM and emission
lines; a Benítez (2000) population with n(z|m); real filter curves (speclite, GalSim HST) plus 40 PAUS-like
narrow bands; photometry precomputed on a (template, z, dust) grid with depth-based noise and DC2/BPZ
non-detection conventions; GalSim bulge+disk stamps with per-component SEDs; named survey domains; presets.

>>> import pzkit.sims
>>> res = pzkit.sims.make("lsst_like", 3000, random_state=0)          # doctest: +SKIP
>>> X = res.train.features().fit_transform(res.train.catalog)         # doctest: +SKIP

Importing this package is light: GalSim, speclite and astropy are imported only when needed.
"""

from pzkit._lazy import lazy_module

_EXPORTS = {
    "make": "pzkit.sims.core",
    "SimResult": "pzkit.sims.core",
    "domain_info": "pzkit.sims.core",
    "get_config": "pzkit.sims.config",
    "list_presets": "pzkit.sims.config",
    "list_domains": "pzkit.sims.config",
    "validate": "pzkit.sims.config",
    "SimsConfigError": "pzkit.sims.config",
    "SIMS_VERSION": "pzkit.sims.config",
    "list_filters": "pzkit.sims.filters",
    "load_filter": "pzkit.sims.filters",
    "default_cache_dir": "pzkit.sims.grid",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_module(__name__, _EXPORTS)
