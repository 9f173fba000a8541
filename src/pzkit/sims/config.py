"""Simulation configs: the presets, overrides (deep merge), validation naming the bad field, and the hash.

A config is a plain JSON-serialisable nested dict, so that it can be printed, stored with the output and
hashed. ``get_config(preset, **overrides)`` returns a validated copy; every field is documented in
``docs/sims.md``.
"""

import copy
import hashlib
import json
import math

from ..exceptions import InputError

#: Bump when the generator changes in a way that changes its output for the same config and seed.
SIMS_VERSION = "1"

#: The newest config version. A preset's version changes when its physics changes; older versions stay
#: available (``get_config("cosmos_paus", version=1)`` or ``"cosmos_paus@1"``) and give the same output as
#: before, bit for bit. Version-1 configs carry no ``version`` key, so their hashes are unchanged.
CONFIG_VERSION = 2


class SimsConfigError(InputError):
    """A simulation config is invalid; the message starts with the dotted path of the bad field."""


# ----------------------------------------------------------------------------------------------- defaults
_BPZ_POPULATION = {
    # Benítez (2000) HDF-N prior, Table 1 (also in desc-bpz prior_hdfn_gen.py): p(T|m) p(z|T,m) for the
    # classes E/S0, spiral, irregular/starburst. z_m = z0 + km (m − m0) for m ≥ m0; brighter than m0 the
    # simulator uses z_m(m0)·10^(0.2 (m − m0)) (Euclidean: distance ∝ 10^(0.2 m) at fixed luminosity).
    "alpha": [2.465, 1.806, 0.906],
    "z0": [0.431, 0.390, 0.0626],
    "km": [0.0913, 0.0636, 0.123],
    "f0": [0.35, 0.50],
    "kt": [0.450, 0.147],
    "m0": 20.0,
    # class boundaries in continuous template index (None = last template)
    "class_edges": [0.0, 0.5, 2.5, None],
}

_GALAXY = {
    # bulge-to-total in rest V (intrinsic): clip(bt0·exp(−t/bt_scale) + N(0, bt_scatter), 0, 1)
    "bt0": 0.85, "bt_scale": 1.1, "bt_scatter": 0.10,
    # bulge SED type t_b = clip(bulge_type_slope·t + N(0, bulge_type_scatter), 0, bulge_type_max)
    "bulge_type_slope": 0.2, "bulge_type_scatter": 0.1, "bulge_type_max": 1.0,
    # disk SED type t_d = clip(t + disk_shift·exp(−t/2) + N(0, disk_type_scatter), 0, K−1): disks bluer than
    # the integrated type, with their own scatter (SED diversity beyond a one-parameter family)
    "disk_shift": 0.9, "disk_type_scatter": 0.0,
    # internal dust of the disk: E(B−V) ~ Gamma(2, mean/2) with mean per template (None = template-set default);
    # the bulge gets bulge_dust_fraction of the disk's E(B−V)
    "dust_mean": None, "bulge_dust_fraction": 0.25, "dust_max": 1.0,
}

_LINES = {
    # intrinsic rest EW(Hα) per template (Å; None = template-set default), log-normal scatter, evolution
    # EW ∝ (1+z)^ew_evolution up to ew_evolution_zmax (Fumagalli et al. 2012; Sobral et al. 2014)
    "ew_halpha": None, "ew_scatter_dex": 0.25, "ew_evolution": 1.5, "ew_evolution_zmax": 2.5,
    # intrinsic flux ratios: [OII]/Hα, Hβ = Hα/2.86 (case B), [OIII]5007/Hβ and [NII]6584/Hα per template
    # (None = template-set default); [OIII]4959 = [OIII]5007/2.98
    "oii_halpha": 1.0, "oiii_hbeta": None, "nii_halpha": None, "ratio_scatter_dex": 0.15,
    # nebular attenuation E(B−V)_gas = E(B−V)_star / gas_to_star (Calzetti 2000)
    "gas_to_star": 0.44,
}

_SIZES = {
    # disks: Shen et al. (2003) late-type size–luminosity relation (R50 in kpc), scatter in ln R from σ1
    # (faint) to σ2 (bright), times (1+z)^evolution (van der Wel et al. 2014)
    "disk": {"alpha": 0.21, "beta": 0.53, "gamma": -1.31, "M0": -20.52, "sigma1": 0.48, "sigma2": 0.25,
             "evolution": -0.75},
    # bulges: Shen et al. (2003) early-type relation log R50 = −0.4 a M + b; bulges of disk galaxies are
    # bulge_ratio × the disk size (blended in log by B/T)
    "bulge": {"a": 0.65, "b": -5.06, "sigma": 0.30, "evolution": -1.48, "bulge_ratio": 0.3},
    "disk_thickness": 0.2,   # intrinsic axis ratio of an edge-on disk
    "bulge_q": [0.75, 0.15],  # mean, sigma of the bulge axis ratio (clipped to 0.4–1)
}

_NOISE = {
    # (optional) "law": "sky" (default: σ independent of the flux, sky-limited) or "poisson" (σ ∝ √flux with
    # S/N = 5 at the 5σ depth; broad bands only)
    "extended": True,          # errors grow with galaxy size: σ ∝ sqrt(1 + σ_gal²/σ_psf²)
    "nondetect_sigma": 0.0,    # non-detection when observed flux <= nondetect_sigma × σ (0: flux <= 0, as DC2)
}

_IMAGES = {
    "stamp_size": 32,
    "method": "fast",          # "fast": GalSim draws bulge and disk with the core PSF, per-band Gaussian
                               # broadening in Fourier space; "exact": one GalSim convolution per band
    "bulge_trunc": 5.0,        # de Vaucouleurs truncation radius in half-light radii
    "center_jitter": 0.5,      # uniform sub-pixel offset of the centre, ± pixels
    "colour_gradients": True,  # False (a control): bulge and disk get the galaxy's integrated SED
    # (optional) "photometry": {"method": "aperture", "diameter": arcsec}: catalogue magnitudes measured on the
    # stamps (pzkit.sims.photometry); absent: the true flux plus Gaussian noise
    "n_jobs": 1,
    "chunk_size": 256,
}

_COSMOLOGY = {"H0": 70.0, "Om0": 0.3}

_TOP_KEYS = {"name", "version", "survey", "bands", "ref_band", "templates", "redshift", "magnitude", "population", "galaxy",
             "lines", "sizes", "noise", "images", "cosmology", "narrow_bands", "domains", "splits", "description"}


def _ground(depth, fwhm, pixel, ebv, ebv_sigma, floor=0.005, zp=None, filters=None, beta=3.5):
    dom = {
        "depth": dict(depth),
        "psf_fwhm": dict(fwhm),
        "psf": {"type": "moffat", "beta": beta},
        "pixel_scale": pixel,
        "zp_offset": dict(zp or {}),
        "filters": dict(filters or {}),
        "ebv_mw": {"mean": ebv, "sigma": ebv_sigma},
        "error_floor": floor,
    }
    return dom


def _split(fraction, domain, mag_min=None, mag_max=None, labels=1.0, z_soft_max=None, z_width=0.1,
           mag_soft_max=None, mag_width=0.5, narrow_bands=False, zpaus=False):
    return {
        "fraction": fraction, "domain": domain, "mag_min": mag_min, "mag_max": mag_max,
        "labels": {"fraction": labels, "z_soft_max": z_soft_max, "z_width": z_width,
                   "mag_soft_max": mag_soft_max, "mag_width": mag_width},
        "narrow_bands": narrow_bands, "zpaus": zpaus,
    }


def _base(name, survey, bands, ref_band, zmin, zmax, mmin, mmax, slope, domains, splits, description):
    return {
        "name": name,
        "description": description,
        "survey": survey,
        "bands": bands,
        "ref_band": ref_band,
        "templates": "cwwsb",
        "redshift": {"min": zmin, "max": zmax},
        "magnitude": {"min": mmin, "max": mmax, "slope": slope},
        "population": copy.deepcopy(_BPZ_POPULATION),
        "galaxy": copy.deepcopy(_GALAXY),
        "lines": copy.deepcopy(_LINES),
        "sizes": copy.deepcopy(_SIZES),
        "noise": copy.deepcopy(_NOISE),
        "images": copy.deepcopy(_IMAGES),
        "cosmology": copy.deepcopy(_COSMOLOGY),
        "narrow_bands": None,
        "domains": domains,
        "splits": splits,
    }


def _lsst_like():
    bands = {b: f"lsst2023-{b}" for b in "ugrizy"}
    # 5σ point-source depths: RAIL's DC2 1σ limits (lsst_def_maglims) − 2.5 log10(5), i.e. LSST 10-year coadds
    depth = {"u": 26.04, "g": 27.29, "r": 27.31, "i": 26.87, "z": 26.23, "y": 25.30}
    fwhm = {"u": 0.92, "g": 0.87, "r": 0.83, "i": 0.80, "z": 0.78, "y": 0.76}
    domains = {"wfd": _ground(depth, fwhm, 0.2, 0.04, 0.02)}
    splits = {"train": _split(1 / 3, "wfd"), "test": _split(2 / 3, "wfd")}
    return _base("lsst_like", "lsst", bands, "i", 0.0, 3.0, 16.0, 25.3, 0.33, domains, splits,
                 "LSST 10-year WFD-like: ugrizy, i < 25.3, z < 3; 1/3 train, 2/3 test (as DC2)")


def _sdss_like():
    bands = {b: f"sdss2010-{b}" for b in "ugriz"}
    depth = {"u": 22.0, "g": 22.2, "r": 22.2, "i": 21.3, "z": 20.5}
    fwhm = {"u": 1.53, "g": 1.44, "r": 1.32, "i": 1.26, "z": 1.29}
    domains = {"sdss": _ground(depth, fwhm, 0.396, 0.03, 0.015, floor=0.01)}
    splits = {"train": _split(0.9, "sdss"), "test": _split(0.1, "sdss")}
    return _base("sdss_like", "sdss", bands, "r", 0.01, 0.4, 14.0, 17.8, 0.55, domains, splits,
                 "SDSS Main Galaxy Sample-like: ugriz, dereddened r < 17.8, z < 0.4; 90% train, 10% test")


def _cosmos_paus():
    bands = {"u": "cfht_megacam-ustar", "B": "bessell-B", "V": "bessell-V", "r": "hsc2017-r", "i": "hsc2017-i",
             "z": "hsc2017-z"}
    depth = {"u": 26.0, "B": 26.5, "V": 25.8, "r": 26.0, "i": 25.7, "z": 25.2}
    fwhm = {"u": 0.90, "B": 0.95, "V": 1.30, "r": 1.00, "i": 0.95, "z": 1.15}
    domains = {"cosmos": _ground(depth, fwhm, 0.15, 0.018, 0.003)}
    cfg = _base("cosmos_paus", "cosmos", bands, "i", 0.0, 1.5, 17.0, 25.0, 0.33, domains, {}, (
        "COSMOS+PAUS-like (Cabayol et al. 2023, §2): u B V r i z + 40 PAUS-like narrow bands; train: i < 23 with "
        "narrow bands, 1/3 labelled (biased to z < 1.2) and zpaus photo-z for all; test: i < 25, broad bands only"))
    # NB depths (5σ): PAUS design "~22.5 AB in the narrow bands" (Bauer et al., ASP Conf. Ser.), the MTL paper's
    # guess 22.5–23, blue NBs deeper than red ones; 0.8% inter-band calibration
    # (Serrano et al. 2023) -> 0.01 mag floor
    cfg["narrow_bands"] = {"filters": "paus", "depth": [23.0, 22.5], "error_floor": 0.01}
    cfg["splits"] = {
        "train": _split(4 / 7, "cosmos", mag_max=23.0, labels=1 / 3, z_soft_max=1.1, z_width=0.1,
                        mag_soft_max=22.5, mag_width=0.5, narrow_bands=True, zpaus=True),
        "test": _split(3 / 7, "cosmos", mag_max=25.0),
    }
    return cfg


# Version 2 of the narrow-band presets: what the multi-task narrow-band paper's data carry and version 1 did not
# (docs/sims.md, "Premises"): the 31 COSMOS2015 templates (the SED library of COSMOS2015 and of the Flagship
# mock), SED type scatter at fixed class, the observed scatter of line strengths, and spectroscopic samples
# selected as zCOSMOS-bright and the fainter compilation were.
_GALAXY_V2 = {"disk_type_scatter": 0.3}
# EW(Hα) at fixed type and mass scatters by ~0.3 dex (Fumagalli et al. 2012; Sobral et al. 2014); line ratios
# at fixed type by ~0.2 dex ([OIII]/Hβ, [NII]/Hα: Kewley et al. 2013)
_LINES_V2 = {"ew_scatter_dex": 0.3, "ratio_scatter_dex": 0.2}
#: zCOSMOS DR3 bright: 15 < i < 22.5, 0.1 < z < 1.2 (Lilly et al. 2009), ~9,400 of the ~33,000 i < 23 galaxies
#: of PAUS+COSMOS; plus 2,693 from the Alarcon et al. (2021) compilation with no such cuts (C3R2, DEIMOS, …).
_ZCOSMOS_LABELS = {"samples": [
    {"name": "zcosmos_bright", "fraction": 9400 / 33000, "mag_max": 22.5, "z_min": 0.1, "z_max": 1.2},
    {"name": "compilation", "fraction": 2693 / 33000},
]}


def _cosmos_paus_v2():
    cfg = deep_merge(_cosmos_paus(), {
        "version": 2, "templates": "cosmos", "galaxy": _GALAXY_V2, "lines": _LINES_V2,
        "description": (
            "COSMOS+PAUS-like (Cabayol et al. 2023, §2), version 2: u B V r i z + 40 PAUS-like narrow bands, "
            "31 COSMOS templates; train: i < 23 with narrow bands, spec-z as zCOSMOS-bright (i < 22.5, "
            "0.1 < z < 1.2) plus a fainter compilation (~37 % in all), zpaus photo-z for all; test: i < 25, "
            "broad bands only")})
    cfg["splits"]["train"]["labels"] = copy.deepcopy(_ZCOSMOS_LABELS)
    return cfg


def _flagship_paus():
    # Cabayol et al. (2023) §5: CFHT u, DECam griz, Euclid NISP Y J H at the paper's 5σ depths (footnote 7)
    bands = {"u": "cfht_megacam-u", "g": "decam2014-g", "r": "decam2014-r", "i": "decam2014-i",
             "z": "decam2014-z", "Y": "Euclid-Y", "J": "Euclid-J", "H": "Euclid-H"}
    depth = {"u": 25.25, "g": 24.65, "r": 24.15, "i": 24.35, "z": 23.95, "Y": 24.0, "J": 24.0, "H": 24.0}
    fwhm = {"u": 0.90, "g": 1.00, "r": 0.95, "i": 0.90, "z": 0.90, "Y": 0.30, "J": 0.33, "H": 0.36}
    # The authors' Flagship errors (their code; the paper does not describe them): S/N = 5·10^(0.2 (m_5σ − m)),
    # i.e. ∝ √flux, from the magnitude alone (no size term), capped at S/N ≈ 24 (a 0.045 mag floor)
    domains = {"flagship": _ground(depth, fwhm, 0.2, 0.0, 0.0, floor=0.045)}
    cfg = _base("flagship_paus", "flagship", bands, "i", 0.0, 1.5, 17.0, 25.0, 0.33, domains, {}, (
        "Euclid Flagship-like (Cabayol et al. 2023, §5): CFHT u, DECam griz, Euclid YJH at the paper's depths, "
        "31 COSMOS templates; train: i < 23 with 40 PAUS-like narrow bands, a random third with spec-z "
        "(10,000 of 30,000) and zpaus photo-z for all; test: i < 25, broad bands only"))
    cfg = deep_merge(cfg, {"version": 2, "templates": "cosmos", "galaxy": _GALAXY_V2, "lines": _LINES_V2,
                           "noise": {"law": "poisson", "extended": False}})
    cfg["narrow_bands"] = {"filters": "paus", "depth": [23.0, 22.5], "error_floor": 0.01}
    cfg["splits"] = {
        "train": _split(0.5, "flagship", mag_max=23.0, narrow_bands=True, zpaus=True),
        "test": _split(0.5, "flagship", mag_max=25.0),
    }
    cfg["splits"]["train"]["labels"] = {"samples": [{"name": "spec", "fraction": 1 / 3}]}
    for split in cfg["splits"].values():   # the authors' samples are cut on noise-free i, as a mock can be
        split["select_on"] = "true"
    return cfg


_HSC_FWHM = {"u": 0.90, "g": 0.80, "r": 0.75, "i": 0.62, "z": 0.68, "y": 0.72}
_HSC_UD = {"u": 27.4, "g": 27.0, "r": 26.8, "i": 26.5, "z": 26.0, "y": 25.5}
_HSC_DEEP = {"u": 27.0, "g": 26.5, "r": 26.1, "i": 25.9, "z": 25.3, "y": 24.5}
_HSC_BANDS = {"u": "cfht_megacam-u", "g": "hsc2017-g", "r": "hsc2017-r", "i": "hsc2017-i", "z": "hsc2017-z",
              "y": "hsc2017-y"}


def _worse_seeing():
    return {b: round(v * 1.15, 3) for b, v in _HSC_FWHM.items()}


def _shifted_field():
    """An HSC-Deep-like field 0.3 mag shallower, 15 % worse seeing, u*, r/i zero points ∓0.1, more dust."""
    return _ground({b: v - 0.3 for b, v in _HSC_DEEP.items()}, _worse_seeing(), 0.168, 0.025, 0.005,
                   zp={"r": -0.1, "i": 0.1}, filters={"u": "cfht_megacam-ustar"})


def _hsc_udf():
    bands = dict(_HSC_BANDS)
    worse = _worse_seeing()
    domains = {
        # source: HSC UltraDeep COSMOS + CLAUDS u (COSMOS has both u and u*)
        "cosmos_udf": _ground(_HSC_UD, _HSC_FWHM, 0.168, 0.018, 0.003),
        # targets (the adversarial-DA paper's fields): depth, seeing, u vs u*, Galactic E(B−V), zero points
        "cosmos_deep": _ground(_HSC_DEEP, _HSC_FWHM, 0.168, 0.018, 0.003, filters={"u": "cfht_megacam-ustar"}),
        "xmm_deep": _shifted_field(),
        "elais_deep": _ground(_HSC_DEEP, _HSC_FWHM, 0.168, 0.010, 0.003),
        "deep2_deep": _ground(_HSC_DEEP, worse, 0.168, 0.055, 0.010),
    }
    for dom in domains.values():
        dom["depth"] = {b: round(v, 3) for b, v in dom["depth"].items()}
    splits = {
        "source": _split(0.5, "cosmos_udf"),
        # target labels exist (for evaluation) but are withheld from training: labels fraction 0
        "target": _split(0.5, "xmm_deep", labels=0.0),
    }
    return _base("hsc_udf", "hsc", bands, "i", 0.0, 4.0, 17.0, 25.0, 0.33, domains, splits, (
        "HSC-SSP UltraDeep COSMOS + CLAUDS u (source, labelled) and a shifted target field (default xmm_deep: "
        "u*, shallower, worse seeing, r−i zero-point shift −0.2, higher E(B−V)); targets: cosmos_deep, xmm_deep, "
        "elais_deep, deep2_deep"))


def _deep_wide():
    bands = dict(_HSC_BANDS)
    domains = {
        # the calibration field: HSC UltraDeep COSMOS-like broad bands, where the narrow bands and spec-z are
        "deep": _ground(_HSC_UD, _HSC_FWHM, 0.168, 0.018, 0.003),
        # the survey the methods are applied to: shallower, worse seeing, u*, zero points, more dust
        "wide": _shifted_field(),
    }
    domains["wide"]["depth"] = {b: round(v, 3) for b, v in domains["wide"]["depth"].items()}
    splits = {
        # spec-z for a bright-biased, low-z-biased subset, as a real spectroscopic sample; PAUS-like narrow
        # bands and their photo-z for every training galaxy
        "train": _split(0.5, "deep", labels=0.4, z_soft_max=1.5, z_width=0.2, mag_soft_max=23.5, mag_width=0.5,
                        narrow_bands=True, zpaus=True),
        # the unlabelled target domain for domain adaptation: no label is ever given to a method
        "target": _split(0.25, "wide", labels=0.0),
        # scored with its true redshifts, never fitted on
        "test": _split(0.25, "wide"),
    }
    cfg = _base("deep_wide", "hsc", bands, "i", 0.0, 3.0, 17.0, 25.0, 0.33, domains, splits, (
        "Everything every method needs, in one survey: a deep calibration field (HSC-UD-like ugrizy, images, "
        "40 PAUS-like narrow bands and their photo-z, spec-z for a bright- and low-z-biased 40 %) and a wide "
        "field (shallower, worse seeing, u*, zero-point shifts) split into an unlabelled target pool and the "
        "test set; z < 3, i < 25"))
    cfg["narrow_bands"] = {"filters": "paus", "depth": [23.0, 22.5], "error_floor": 0.01}
    return cfg


def _candels_like():
    bands = {"F606W": "hst-F606W", "F814W": "hst-F814W", "F125W": "hst-F125W", "F160W": "hst-F160W"}
    depth = {"F606W": 27.2, "F814W": 27.0, "F125W": 26.6, "F160W": 26.4}
    fwhm = {"F606W": 0.09, "F814W": 0.10, "F125W": 0.16, "F160W": 0.18}
    dom = _ground(depth, fwhm, 0.06, 0.012, 0.004, floor=0.01)
    dom["psf"] = {"type": "airy", "diameter": 2.4, "obscuration": 0.33}
    splits = {
        "train": _split(0.9, "candels", labels=0.22, mag_soft_max=24.5, mag_width=0.6),
        "test": _split(0.1, "candels"),
    }
    cfg = _base("candels_like", "hst", bands, "F160W", 0.0, 4.0, 18.0, 26.0, 0.30, {"candels": dom}, splits,
                "CANDELS-like HST F606W F814W F125W F160W, H < 26, z < 4; train: ~20% labelled (biased bright) + "
                "unlabelled, test: labelled")
    cfg["images"]["stamp_size"] = 48
    return cfg


def _candels_like_v2():
    # a survey catalogue is measured on the pixels: colours in 0.7″-diameter apertures, the aperture of the
    # 3D-HST/CANDELS catalogues (Skelton et al. 2014), here on images that are not PSF-matched
    return deep_merge(_candels_like(), {
        "version": 2, "images": {"photometry": {"method": "aperture", "diameter": 0.7}},
        "description": (
            "CANDELS-like HST F606W F814W F125W F160W, H < 26, z < 4, version 2: catalogue magnitudes measured "
            "on the stamps in 0.7″ apertures (not PSF-matched); train: ~20% labelled (biased bright) + "
            "unlabelled, test: labelled")})


#: preset -> {version: builder}; the highest version is the default.
PRESET_VERSIONS = {
    "lsst_like": {1: _lsst_like},
    "sdss_like": {1: _sdss_like},
    "cosmos_paus": {1: _cosmos_paus, 2: _cosmos_paus_v2},
    "flagship_paus": {2: _flagship_paus},
    "hsc_udf": {1: _hsc_udf},
    "candels_like": {1: _candels_like, 2: _candels_like_v2},
    "deep_wide": {1: _deep_wide},
}
#: preset -> builder of its newest version.
PRESETS = {name: versions[max(versions)] for name, versions in PRESET_VERSIONS.items()}


def list_presets():
    """Names of the built-in presets (each at its newest version; ``name@version`` selects another)."""
    return sorted(PRESETS)


def parse_preset(preset, version=None):
    """``(name, version)`` of ``"name"`` or ``"name@version"``; the version defaults to the newest."""
    name, _, tail = str(preset).partition("@")
    if name not in PRESET_VERSIONS:
        raise SimsConfigError(f"preset: unknown preset {name!r}; known: {list_presets()}")
    if tail:
        if version is not None:
            raise SimsConfigError(f"version: given twice ({preset!r} and version={version!r})")
        if not tail.isdigit():
            raise SimsConfigError(f"preset: version in {preset!r} must be an integer")
        version = int(tail)
    versions = PRESET_VERSIONS[name]
    if version is None:
        version = max(versions)
    if isinstance(version, bool) or not isinstance(version, int) or version not in versions:
        raise SimsConfigError(f"version: preset {name!r} has version(s) {sorted(versions)}, got {version!r}")
    return name, version


def list_domains(preset):
    """Domain names a preset defines (the first one is the default source domain)."""
    return list(get_config(preset)["domains"])


# ----------------------------------------------------------------------------------------------- merge
def deep_merge(base, override, path=""):
    """A copy of ``base`` updated by ``override``: dicts merge recursively, other values replace;
    a value of None deletes the key (an optional field then takes its default, e.g. ``narrow_bands=None``
    switches narrow bands off and ``splits={"test": None}`` drops a split)."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        here = f"{path}.{key}" if path else str(key)
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value, here)
        else:
            out[key] = copy.deepcopy(value)
    return out


def get_config(preset, domain=None, version=None, **overrides):
    """The validated config of ``preset`` (a name, ``"name@version"``, or a config dict) with ``overrides``
    deep-merged in.

    ``domain`` is a shortcut that puts every split in that domain (e.g. ``domain="elais_deep"``);
    ``version`` picks an older version of a preset (default: the newest, see :data:`PRESET_VERSIONS`).
    """
    if isinstance(preset, dict):
        if version is not None:
            raise SimsConfigError("version: only a preset name takes a version, not a config dict")
        cfg = copy.deepcopy(preset)
    else:
        name, version = parse_preset(preset, version)
        cfg = PRESET_VERSIONS[name][version]()
    if overrides:
        cfg = deep_merge(cfg, overrides)
    if domain is not None:
        if domain not in cfg.get("domains", {}):
            raise SimsConfigError(f"domain: unknown domain {domain!r}; known: {sorted(cfg.get('domains', {}))}")
        for split in cfg.get("splits", {}).values():
            if isinstance(split, dict):
                split["domain"] = domain
    validate(cfg)
    return cfg


def config_hash(cfg, n, random_state):
    payload = json.dumps({"config": cfg, "n": int(n), "random_state": random_state, "version": SIMS_VERSION},
                         sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


# ----------------------------------------------------------------------------------------------- validation
def _num(value, field, lo=None, hi=None, lo_open=False, allow_none=False):
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SimsConfigError(f"{field}: must be a finite number, got {value!r}")
    if lo is not None and (value < lo or (lo_open and value == lo)):
        raise SimsConfigError(f"{field}: must be {'>' if lo_open else '>='} {lo}, got {value!r}")
    if hi is not None and value > hi:
        raise SimsConfigError(f"{field}: must be <= {hi}, got {value!r}")


def _dict(value, field):
    if not isinstance(value, dict):
        raise SimsConfigError(f"{field}: must be a mapping, got {type(value).__name__}")
    return value


def _per_band(mapping, bands, field, check, required=True):
    _dict(mapping, field)
    for b in mapping:
        if b not in bands:
            raise SimsConfigError(f"{field}.{b}: {b!r} is not one of bands {list(bands)}")
    if required:
        missing = [b for b in bands if b not in mapping]
        if missing:
            raise SimsConfigError(f"{field}: missing band(s) {missing}")
    for b, v in mapping.items():
        check(v, f"{field}.{b}")


_SAMPLE_KEYS = {"name", "fraction", "mag_min", "mag_max", "z_min", "z_max"}


def _label_samples(labels, field):
    extra = sorted(set(labels) - {"samples"})
    if extra:
        raise SimsConfigError(f"{field}.{extra[0]}: not used with samples (each sample has its own fraction and "
                              "hard cuts); remove it, or override with samples=None to use it")
    samples = labels["samples"]
    if not isinstance(samples, (list, tuple)) or not samples:
        raise SimsConfigError(f"{field}.samples: a non-empty list of samples")
    total = 0.0
    for i, s in enumerate(samples):
        here = f"{field}.samples[{i}]"
        _dict(s, here)
        unknown = sorted(set(s) - _SAMPLE_KEYS)
        if unknown:
            raise SimsConfigError(f"{here}.{unknown[0]}: unknown field; known: {sorted(_SAMPLE_KEYS)}")
        _num(s.get("fraction"), f"{here}.fraction", lo=0.0, hi=1.0)
        total += s["fraction"]
        for key in ("mag_min", "mag_max"):
            _num(s.get(key), f"{here}.{key}", lo=5.0, hi=40.0, allow_none=True)
        for key in ("z_min", "z_max"):
            _num(s.get(key), f"{here}.{key}", lo=0.0, hi=6.0, allow_none=True)
    if total > 1.0 + 1e-9:
        raise SimsConfigError(f"{field}.samples: fractions must sum to <= 1, got {total:.6g}")


def validate(cfg):
    """Check a config; raise :class:`SimsConfigError` whose message starts with the bad field's path."""
    from .filters import check_filter
    from .seds import TEMPLATE_SETS

    _dict(cfg, "config")
    unknown = sorted(set(cfg) - _TOP_KEYS)
    if unknown:
        raise SimsConfigError(f"{unknown[0]}: unknown config field; known: {sorted(_TOP_KEYS)}")
    for key in ("name", "survey", "bands", "ref_band", "redshift", "magnitude", "domains", "splits"):
        if cfg.get(key) is None:
            raise SimsConfigError(f"{key}: required field is missing")
    ver = cfg.get("version", 1)
    if isinstance(ver, bool) or not isinstance(ver, int) or not 1 <= ver <= CONFIG_VERSION:
        raise SimsConfigError(f"version: must be an integer from 1 to {CONFIG_VERSION}, got {ver!r}")
    survey = cfg["survey"]
    if not isinstance(survey, str) or not survey.isidentifier():
        raise SimsConfigError(f"survey: must be an identifier used in column names, got {survey!r}")
    bands = _dict(cfg["bands"], "bands")
    if len(bands) < 2:
        raise SimsConfigError("bands: need at least two bands")
    for b, name in bands.items():
        if not isinstance(b, str) or not b.isidentifier():
            raise SimsConfigError(f"bands.{b}: band names must be identifiers")
        check_filter(name, f"bands.{b}")
    if cfg["ref_band"] not in bands:
        raise SimsConfigError(f"ref_band: {cfg['ref_band']!r} is not one of bands {list(bands)}")
    if cfg.get("templates", "cwwsb") not in TEMPLATE_SETS:
        raise SimsConfigError(f"templates: unknown template set {cfg.get('templates')!r}; "
                              f"known: {sorted(TEMPLATE_SETS)}")

    z = _dict(cfg["redshift"], "redshift")
    _num(z.get("min"), "redshift.min", lo=0.0)
    _num(z.get("max"), "redshift.max", lo=0.0, hi=6.0)
    if not z["min"] < z["max"]:
        raise SimsConfigError(f"redshift: min ({z['min']}) must be < max ({z['max']})")
    m = _dict(cfg["magnitude"], "magnitude")
    _num(m.get("min"), "magnitude.min", lo=5.0, hi=40.0)
    _num(m.get("max"), "magnitude.max", lo=5.0, hi=40.0)
    _num(m.get("slope"), "magnitude.slope", lo=-2.0, hi=2.0)
    if not m["min"] < m["max"]:
        raise SimsConfigError(f"magnitude: min ({m['min']}) must be < max ({m['max']})")

    pop = _dict(cfg.get("population", {}), "population")
    for key in ("alpha", "z0", "km"):
        vals = pop.get(key)
        if not isinstance(vals, (list, tuple)) or len(vals) != 3:
            raise SimsConfigError(f"population.{key}: needs 3 values (E/S0, spiral, irregular)")
        for i, v in enumerate(vals):
            _num(v, f"population.{key}[{i}]", lo=0.0 if key != "alpha" else 0.0, lo_open=key == "alpha")
    for key in ("f0", "kt"):
        vals = pop.get(key)
        if not isinstance(vals, (list, tuple)) or len(vals) != 2:
            raise SimsConfigError(f"population.{key}: needs 2 values (E/S0, spiral)")
        for i, v in enumerate(vals):
            _num(v, f"population.{key}[{i}]", lo=0.0)
    if sum(pop["f0"]) > 1:
        raise SimsConfigError("population.f0: the E/S0 and spiral fractions must sum to <= 1")

    noise = _dict(cfg.get("noise", {}), "noise")
    _num(noise.get("nondetect_sigma", 0.0), "noise.nondetect_sigma", lo=0.0)
    if noise.get("law", "sky") not in ("sky", "poisson"):
        raise SimsConfigError(f"noise.law: 'sky' or 'poisson', got {noise.get('law')!r}")
    images = _dict(cfg.get("images", {}), "images")
    size = images.get("stamp_size", 32)
    if isinstance(size, bool) or not isinstance(size, int) or size < 8 or size > 512:
        raise SimsConfigError(f"images.stamp_size: must be an integer in [8, 512], got {size!r}")
    if images.get("method", "fast") not in ("fast", "exact"):
        raise SimsConfigError(f"images.method: must be 'fast' or 'exact', got {images.get('method')!r}")
    _num(images.get("bulge_trunc", 5.0), "images.bulge_trunc", lo=1.0)
    _num(images.get("center_jitter", 0.5), "images.center_jitter", lo=0.0, hi=5.0)
    nj = images.get("n_jobs", 1)
    if isinstance(nj, bool) or not isinstance(nj, int) or nj < 1:
        raise SimsConfigError(f"images.n_jobs: must be a positive integer, got {nj!r}")
    phot = images.get("photometry")
    if phot is not None:
        _dict(phot, "images.photometry")
        if phot.get("method") != "aperture":
            raise SimsConfigError(f"images.photometry.method: 'aperture', got {phot.get('method')!r}")
        _num(phot.get("diameter"), "images.photometry.diameter", lo=0.0, lo_open=True, hi=60.0)
    cs = images.get("chunk_size", 256)
    if isinstance(cs, bool) or not isinstance(cs, int) or cs < 1:
        raise SimsConfigError(f"images.chunk_size: must be a positive integer, got {cs!r}")
    cosmo = _dict(cfg.get("cosmology", {}), "cosmology")
    _num(cosmo.get("H0", 70.0), "cosmology.H0", lo=1.0, lo_open=True)
    _num(cosmo.get("Om0", 0.3), "cosmology.Om0", lo=0.0, hi=1.0)

    nb = cfg.get("narrow_bands")
    if nb is not None:
        _dict(nb, "narrow_bands")
        filters = nb.get("filters", "paus")
        if filters != "paus":
            if not isinstance(filters, (list, tuple)) or not filters:
                raise SimsConfigError("narrow_bands.filters: 'paus' or a non-empty list of filter names")
            for i, f in enumerate(filters):
                check_filter(f, f"narrow_bands.filters[{i}]")
        depth = nb.get("depth")
        if isinstance(depth, (list, tuple)):
            n_nb = 40 if filters == "paus" else len(filters)
            if len(depth) not in (2, n_nb):
                raise SimsConfigError(f"narrow_bands.depth: one 5σ depth, [bluest, reddest], or one per filter "
                                      f"({n_nb}); got {len(depth)} values")
            for i, d in enumerate(depth):
                _num(d, f"narrow_bands.depth[{i}]", lo=0.0, lo_open=True, hi=40.0)
        else:
            _num(depth, "narrow_bands.depth", lo=0.0, lo_open=True, hi=40.0)
        _num(nb.get("error_floor", 0.0), "narrow_bands.error_floor", lo=0.0, hi=1.0)

    domains = _dict(cfg["domains"], "domains")
    if not domains:
        raise SimsConfigError("domains: at least one domain is needed")
    for name, dom in domains.items():
        f = f"domains.{name}"
        _dict(dom, f)

        def _depth(v, field):
            if isinstance(v, (int, float)) and not isinstance(v, bool) and v <= 0:
                raise SimsConfigError(f"{field}: a 5σ depth must be a positive AB magnitude, got {v}")
            _num(v, field, lo=0.0, lo_open=True, hi=40.0)

        def _fwhm(v, field):
            _num(v, field, lo=0.0, lo_open=True, hi=10.0)

        def _zp(v, field):
            _num(v, field, lo=-2.0, hi=2.0)

        def _filter(v, field):
            check_filter(v, field)

        _per_band(dom.get("depth", {}), bands, f"{f}.depth", _depth)
        _per_band(dom.get("psf_fwhm", {}), bands, f"{f}.psf_fwhm", _fwhm)
        _per_band(dom.get("zp_offset", {}), bands, f"{f}.zp_offset", _zp, required=False)
        _per_band(dom.get("filters", {}), bands, f"{f}.filters", _filter, required=False)
        _num(dom.get("pixel_scale"), f"{f}.pixel_scale", lo=0.0, lo_open=True, hi=10.0)
        _num(dom.get("error_floor", 0.0), f"{f}.error_floor", lo=0.0, hi=1.0)
        psf = _dict(dom.get("psf", {"type": "moffat"}), f"{f}.psf")
        if psf.get("type") not in ("moffat", "gaussian", "kolmogorov", "airy"):
            raise SimsConfigError(f"{f}.psf.type: one of moffat, gaussian, kolmogorov, airy; got {psf.get('type')!r}")
        ebv = _dict(dom.get("ebv_mw", {"mean": 0.0, "sigma": 0.0}), f"{f}.ebv_mw")
        _num(ebv.get("mean", 0.0), f"{f}.ebv_mw.mean", lo=0.0, hi=5.0)
        _num(ebv.get("sigma", 0.0), f"{f}.ebv_mw.sigma", lo=0.0, hi=5.0)

    splits = _dict(cfg["splits"], "splits")
    if not splits:
        raise SimsConfigError("splits: at least one split is needed")
    total = 0.0
    for name, sp in splits.items():
        f = f"splits.{name}"
        _dict(sp, f)
        _num(sp.get("fraction"), f"{f}.fraction", lo=0.0, lo_open=True, hi=1.0)
        total += sp["fraction"]
        if sp.get("domain") not in domains:
            raise SimsConfigError(f"{f}.domain: unknown domain {sp.get('domain')!r}; known: {sorted(domains)}")
        _num(sp.get("mag_min"), f"{f}.mag_min", lo=5.0, hi=40.0, allow_none=True)
        _num(sp.get("mag_max"), f"{f}.mag_max", lo=5.0, hi=40.0, allow_none=True)
        lo = sp.get("mag_min") if sp.get("mag_min") is not None else m["min"]
        hi = sp.get("mag_max") if sp.get("mag_max") is not None else m["max"]
        if not lo < hi:
            raise SimsConfigError(f"{f}: mag_min ({lo}) must be < mag_max ({hi})")
        if lo < m["min"] or hi > m["max"]:
            raise SimsConfigError(f"{f}: magnitude range [{lo}, {hi}] must lie inside magnitude "
                                  f"[{m['min']}, {m['max']}]")
        if sp.get("select_on", "observed") not in ("observed", "true"):
            raise SimsConfigError(f"{f}.select_on: 'observed' (a survey) or 'true' (a mock selected on noise-free "
                                  f"magnitudes), got {sp.get('select_on')!r}")
        labels = _dict(sp.get("labels", {"fraction": 1.0}), f"{f}.labels")
        if labels.get("samples") is not None:
            _label_samples(labels, f"{f}.labels")
        else:
            _num(labels.get("fraction", 1.0), f"{f}.labels.fraction", lo=0.0, hi=1.0)
        if sp.get("narrow_bands") and nb is None:
            raise SimsConfigError(f"{f}.narrow_bands: the config defines no narrow_bands")
    if abs(total - 1.0) > 1e-6:
        raise SimsConfigError(f"splits: fractions must sum to 1, got {total:.6g}")
    return cfg
