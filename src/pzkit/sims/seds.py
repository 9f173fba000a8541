"""Rest-frame spectral energy distributions and the physics applied to them.

* Templates: the CWW+SB set shipped by ``desc-bpz`` (El, Sbc, Scd, Im, SB3, SB2; Benítez 2004), the
  CWW E/Sbc/Scd/Im ``_ext`` set shipped by GalSim (Coleman, Wu & Weedman 1980, extended by Bolzonella
  et al. 2000), or the 31 COSMOS templates shipped by ``pz-rail-base`` (``COSMOS_seds.list``: Polletta et al.
  2007 ellipticals and spirals plus 12 Bruzual & Charlot 2003 starbursts, Ilbert et al. 2009), the SED
  library of COSMOS2015 and of the Euclid Flagship mock. Files are read from the installed packages;
  nothing is downloaded.
* The type scale: galaxies are drawn on a continuous type x in [0, 5] (El, Sbc, Scd, Im, SB3, SB2 at the
  integers, the CWW+SB scale), and every per-type default (dust, line strengths, class boundaries) is given on
  it. A set with more members maps x onto its own template index piecewise-linearly (:data:`TYPE_NODES`).
* Emission lines already present in the templates (the Kinney starbursts carry strong lines) are stripped,
  so that lines are added once, with controlled equivalent widths (:func:`line_fluxes`).
* Internal dust: the Calzetti et al. (2000) starburst law, R_V = 4.05, with linear extrapolation outside
  0.12–2.2 µm; nebular lines see E(B−V)_gas = E(B−V)_star / 0.44.
* Galactic dust: Cardelli, Clayton & Mathis (1989) with O'Donnell (1994) optical coefficients, R_V = 3.1.
* IGM: Madau (1995) Lyman-series blanketing (Lyα–Lyδ) plus photoelectric absorption by Lyman-limit systems.

All wavelengths are in Ångström; template fluxes are f_λ, normalised to a mean of 1 over rest 5000–6000 Å.
"""

import os

import numpy as np

from .config import SimsConfigError

#: Rest wavelengths (Å, air) of the emission lines the simulator adds.
LINES = {
    "OII_3727": 3727.4,
    "Hbeta": 4861.3,
    "OIII_4959": 4958.9,
    "OIII_5007": 5006.8,
    "Halpha": 6562.8,
    "NII_6584": 6583.4,
}

#: Windows (rest Å) where template emission is stripped: f -> min(f, continuum interpolated across the window).
_STRIP_WINDOWS = [
    (1180, 1255),   # Lyα (not modelled: stripped so the SB templates carry no Lyα)
    (3690, 3770),   # [OII]
    (3850, 3890),   # [NeIII]
    (4085, 4120),   # Hδ
    (4320, 4360),   # Hγ
    (4825, 4900),   # Hβ
    (4935, 5045),   # [OIII]4959, 5007
    (5860, 5895),   # HeI
    (6285, 6320),   # [OI]
    (6500, 6640),   # Hα + [NII] (the Kinney spectra have ~20 Å resolution: wide wings)
    (6690, 6765),   # [SII]
]

TEMPLATE_SETS = {
    # name -> (package, file stems), ordered red (early type) -> blue (late type / starburst)
    "cwwsb": ("desc_bpz", ["El_B2004a", "Sbc_B2004a", "Scd_B2004a", "Im_B2004a", "SB3_B2004a", "SB2_B2004a"]),
    "cww": ("galsim", ["CWW_E_ext", "CWW_Sbc_ext", "CWW_Scd_ext", "CWW_Im_ext"]),
    "cosmos": ("rail", ["Ell1_A_0", "Ell2_A_0", "Ell3_A_0", "Ell4_A_0", "Ell5_A_0", "Ell6_A_0", "Ell7_A_0",
                        "S0_A_0", "Sa_A_0", "Sa_A_1", "Sb_A_0", "Sb_A_1", "Sc_A_0", "Sc_A_1", "Sc_A_2", "Sd_A_0",
                        "Sd_A_1", "Sd_A_2", "Sdm_A_0"] + [f"SB{k}_A_0" for k in range(12)]),
}

#: Type scale -> template index, for sets whose members are not the type scale's integers: (x nodes, index
#: nodes), linear in between. COSMOS: the E/S0 class (x < 0.5) spans Ell1…S0, the spiral class (0.5–2.5)
#: S0…Sdm, the irregular/starburst class (> 2.5) Sdm…SB11, the order of the list (red to blue within
#: each family). Sets not listed use their index as the type.
TYPE_NODES = {
    "cosmos": ([0.0, 0.5, 2.5, 5.0], [0.0, 7.0, 18.5, 30.0]),
}

#: Per-template physical defaults (one value per template, red -> blue): mean internal E(B−V) of the disk,
#: intrinsic rest EW(Hα) in Å, [OIII]5007/Hβ and [NII]6584/Hα. The SB templates already carry their own dust
#: (Kinney et al. 1996), so their extra E(B−V) is small.
TEMPLATE_PROPS = {
    "cwwsb": {"dust_mean": [0.03, 0.12, 0.15, 0.12, 0.08, 0.05], "ew_halpha": [1.0, 10.0, 20.0, 35.0, 60.0, 100.0],
              "oiii_hbeta": [0.3, 0.4, 0.7, 1.5, 3.0, 5.0], "nii_halpha": [1.0, 0.4, 0.3, 0.2, 0.12, 0.08]},
    "cww": {"dust_mean": [0.03, 0.12, 0.15, 0.12], "ew_halpha": [1.0, 10.0, 20.0, 35.0],
            "oiii_hbeta": [0.3, 0.4, 0.7, 1.5], "nii_halpha": [1.0, 0.4, 0.3, 0.2]},
    # on the type scale x = 0…5; the Bruzual & Charlot starbursts are dust-free, so they get the dust that
    # Ilbert et al. (2009) apply to the late types (E(B−V) 0–0.5, Calzetti)
    "cosmos": {"dust_mean": [0.03, 0.12, 0.15, 0.15, 0.18, 0.18], "ew_halpha": [1.0, 10.0, 20.0, 35.0, 60.0, 100.0],
               "oiii_hbeta": [0.3, 0.4, 0.7, 1.5, 3.0, 5.0], "nii_halpha": [1.0, 0.4, 0.3, 0.2, 0.12, 0.08]},
}


def n_types(name):
    """Length of the type scale of template set ``name``: its templates sit at x = 0 … n_types − 1."""
    nodes = TYPE_NODES.get(name)
    return len(TEMPLATE_SETS[name][1]) if nodes is None else int(round(nodes[0][-1])) + 1


def type_to_index(name, x):
    """Continuous template index of type ``x`` (identity for sets without :data:`TYPE_NODES`)."""
    nodes = TYPE_NODES.get(name)
    if nodes is None:
        return x
    return np.interp(x, nodes[0], nodes[1])

#: Normalisation window (rest Å) of every template: mean f_λ = 1 here.
NORM_WINDOW = (5000.0, 6000.0)


def _template_dir(package):
    if package == "desc_bpz":
        try:
            import desc_bpz
        except ImportError as exc:  # pragma: no cover - depends on the environment
            raise SimsConfigError(
                "templates: the 'cwwsb' set ships with desc-bpz, which is not installed "
                "(pip install desc-bpz), or use templates='cww' (GalSim)"
            ) from exc
        return os.path.join(os.path.dirname(desc_bpz.__file__), "data_files", "SED")
    if package == "galsim":
        try:
            import galsim.meta_data
        except ImportError as exc:  # pragma: no cover
            raise SimsConfigError("templates: the 'cww' set ships with galsim, which is not installed") from exc
        return os.path.join(galsim.meta_data.share_dir, "SEDs")
    if package == "rail":
        import importlib.util

        spec = importlib.util.find_spec("rail")
        folders = [os.path.join(p, "examples_data", "estimation_data", "data", "SED")
                   for p in (spec.submodule_search_locations or [])] if spec else []
        for folder in folders:
            if os.path.isdir(folder):
                return folder
        raise SimsConfigError("templates: the 'cosmos' set ships with pz-rail-base, which is not installed "
                              "(pip install pz-rail-base)")
    raise SimsConfigError(f"templates: unknown package {package!r}")  # pragma: no cover


def template_files(name):
    """Absolute paths of the files of template set ``name``."""
    if name not in TEMPLATE_SETS:
        raise SimsConfigError(f"templates: unknown template set {name!r}; known: {sorted(TEMPLATE_SETS)}")
    package, stems = TEMPLATE_SETS[name]
    folder = _template_dir(package)
    return [os.path.join(folder, stem + ".sed") for stem in stems]


def _strip_lines(wave, flux):
    out = flux.copy()
    for lo, hi in _STRIP_WINDOWS:
        inside = (wave >= lo) & (wave <= hi)
        if not inside.any():
            continue
        left = (wave >= lo - 40) & (wave < lo)
        right = (wave > hi) & (wave <= hi + 40)
        if not left.any() or not right.any():
            continue
        # a low percentile of the side bands: robust to line wings and noise spikes
        xl, yl = wave[left].mean(), np.percentile(flux[left], 30)
        xr, yr = wave[right].mean(), np.percentile(flux[right], 30)
        cont = yl + (yr - yl) * (wave[inside] - xl) / (xr - xl)
        out[inside] = np.minimum(flux[inside], cont)
    return out


def load_templates(name="cwwsb", strip_lines=True):
    """(names, wave, flux): a common rest wavelength grid (Å) and (n_templates, n_wave) f_λ normalised to a
    mean of 1 over rest 5000–6000 Å, emission lines stripped unless ``strip_lines=False``."""
    files = template_files(name)
    # Common grid: fine (2 Å) where the templates are finely sampled, coarser in the far UV and IR.
    wave = np.unique(np.concatenate([
        np.arange(100.0, 3000.0, 5.0),
        np.arange(3000.0, 9000.0, 2.0),
        np.arange(9000.0, 25000.0, 10.0),
    ]))
    fluxes = []
    names = []
    for path in files:
        data = np.loadtxt(path)
        w, f = data[:, 0], np.clip(data[:, 1], 0.0, None)
        if strip_lines:
            f = _strip_lines(w, f)
        fi = np.interp(wave, w, f, left=0.0, right=f[-1])
        # Beyond the tabulated IR end continue as a Rayleigh-Jeans-like f_λ ∝ λ^-4 tail (only matters at z≈0
        # for HST/NIR bands past 2.2-2.5 µm, which no preset uses).
        beyond = wave > w[-1]
        fi[beyond] = f[-1] * (wave[beyond] / w[-1]) ** -4
        norm = fi[(wave >= NORM_WINDOW[0]) & (wave <= NORM_WINDOW[1])].mean()
        fluxes.append(fi / norm)
        names.append(os.path.basename(path).rsplit(".", 1)[0])
    return names, wave, np.array(fluxes)


# ---------------------------------------------------------------------------------------------- dust laws
def calzetti_k(wave):
    """Calzetti et al. (2000) k(λ) = A_λ / E(B−V)_star, R_V = 4.05; λ in Å. Linear extrapolation outside
    0.12–2.2 µm, clipped at 0."""
    lam = np.asarray(wave, dtype=np.float64) / 1e4
    rv = 4.05

    def blue(x):
        return 2.659 * (-2.156 + 1.509 / x - 0.198 / x**2 + 0.011 / x**3) + rv

    def red(x):
        return 2.659 * (-1.857 + 1.040 / x) + rv

    k = np.where(lam < 0.63, blue(np.clip(lam, 0.12, 0.63)), red(np.clip(lam, 0.63, 2.2)))
    # extrapolations with the end slopes
    s_blue = (blue(0.12) - blue(0.125)) / (0.12 - 0.125)
    s_red = (red(2.2) - red(2.19)) / (2.2 - 2.19)
    k = np.where(lam < 0.12, blue(0.12) + s_blue * (lam - 0.12), k)
    k = np.where(lam > 2.2, red(2.2) + s_red * (lam - 2.2), k)
    return np.clip(k, 0.0, None)


def ccm_a_over_ebv(wave, rv=3.1):
    """Milky-Way A_λ / E(B−V): Cardelli, Clayton & Mathis (1989) with the O'Donnell (1994) optical
    polynomial, R_V = 3.1; λ in Å (valid 0.1–3.3 µm, clamped outside)."""
    x = 1e4 / np.clip(np.asarray(wave, dtype=np.float64), 1000.0, 33000.0)  # inverse microns
    a = np.zeros_like(x)
    b = np.zeros_like(x)
    ir = x < 1.1
    a[ir] = 0.574 * x[ir] ** 1.61
    b[ir] = -0.527 * x[ir] ** 1.61
    opt = (x >= 1.1) & (x < 3.3)
    y = x[opt] - 1.82
    a[opt] = (1 + 0.104 * y - 0.609 * y**2 + 0.701 * y**3 + 1.137 * y**4 - 1.718 * y**5 - 0.827 * y**6
              + 1.647 * y**7 - 0.505 * y**8)
    b[opt] = (1.952 * y + 2.908 * y**2 - 3.989 * y**3 - 7.985 * y**4 + 11.102 * y**5 + 5.491 * y**6
              - 10.805 * y**7 + 3.347 * y**8)
    uv = (x >= 3.3) & (x <= 8.0)
    xu = x[uv]
    fa = np.where(xu >= 5.9, -0.04473 * (xu - 5.9) ** 2 - 0.009779 * (xu - 5.9) ** 3, 0.0)
    fb = np.where(xu >= 5.9, 0.2130 * (xu - 5.9) ** 2 + 0.1207 * (xu - 5.9) ** 3, 0.0)
    a[uv] = 1.752 - 0.316 * xu - 0.104 / ((xu - 4.67) ** 2 + 0.341) + fa
    b[uv] = -3.090 + 1.825 * xu + 1.206 / ((xu - 4.62) ** 2 + 0.263) + fb
    fuv = x > 8.0
    xf = x[fuv] - 8.0
    a[fuv] = -1.073 - 0.628 * xf + 0.137 * xf**2 - 0.070 * xf**3
    b[fuv] = 13.670 + 4.257 * xf - 0.420 * xf**2 + 0.374 * xf**3
    return (a + b / rv) * rv


# ---------------------------------------------------------------------------------------------- IGM
_LYMAN_SERIES = np.array([1215.67, 1025.72, 972.54, 949.74])
_LYMAN_COEF = np.array([3.6e-3, 1.7e-3, 1.18e-3, 9.3e-4])
_LYMAN_LIMIT = 911.75


def madau_transmission(wave_obs, z):
    """Madau (1995) mean IGM transmission exp(−τ_eff) at observed wavelengths ``wave_obs`` (Å) for a source
    at redshift ``z``; broadcasts ``wave_obs`` against ``z``."""
    lam = np.asarray(wave_obs, dtype=np.float64)
    zz = np.asarray(z, dtype=np.float64)
    lam, zz = np.broadcast_arrays(lam, zz)
    tau = np.zeros(lam.shape)
    for lj, aj in zip(_LYMAN_SERIES, _LYMAN_COEF):
        m = (lam < lj * (1 + zz)) & (lam > _LYMAN_LIMIT)
        tau = tau + np.where(m, aj * (lam / lj) ** 3.46, 0.0)
    # photoelectric absorption (Madau 1995, footnote 3), for λ_obs < 912 (1+z)
    xc = np.clip(lam / _LYMAN_LIMIT, 1.0, None)
    xe = 1.0 + zz
    m = lam < _LYMAN_LIMIT * xe
    tpe = (0.25 * xc**3 * (xe**0.46 - xc**0.46) + 9.4 * xc**1.5 * (xe**0.18 - xc**0.18)
           - 0.7 * xc**3 * (xc**-1.32 - xe**-1.32) - 0.023 * (xe**1.68 - xc**1.68))
    tau = tau + np.where(m, np.clip(tpe, 0.0, None), 0.0)
    return np.exp(-np.clip(tau, 0.0, 700.0))
