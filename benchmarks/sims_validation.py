"""Validation of pzkit.sims against the acceptance criteria of issue 4; writes numbers and plots.

    python benchmarks/sims_validation.py [--out benchmarks/results/sims_validation.json] [--img docs/img] [--quick]

1. Colour–redshift tracks of the templates through the real LSST filters, the simulated galaxies on them,
   and the u-dropout at z ≳ 2.5.
2. lsst_like vs RAIL's DC2: the same kNN methods (knn_local_linear if installed, sklearn kNN), the same
   features and the same train/test sizes (10,225 / 20,449); σ_NMAD ratio sims / DC2 (target: within 2).
3. cosmos_paus: kNN on broad bands vs broad + the 40 narrow bands (labelled train rows -> held-out rows).
4. Stamp flux in a large aperture (the whole stamp) vs the catalog magnitude: pulls.
5. sdss_like: a random forest on inner (r < 1.5″) and outer (1.5–4″) aperture colours from the stamps vs the
   same forest on integrated colours, with a control without colour gradients.
6. hsc_udf domains: the shifts between source and targets.
"""

import argparse
import json
import os
import sys
import time

import numpy as np

from pzkit.metrics import bias_median, outlier_rate, sigma_nmad


def metrics(zp, zs, thr=0.15):
    if len(zs) == 0:  # an empty selection (e.g. a magnitude bin of a --quick run): NaN, as numpy gives
        return {"sigma_nmad": float("nan"), "outlier_frac": float("nan"), "bias": float("nan"), "n": 0}
    return {"sigma_nmad": round(sigma_nmad(zs, zp), 5), "outlier_frac": round(outlier_rate(zs, zp, thr), 4),
            "bias": round(bias_median(zs, zp), 5), "n": int(len(zs))}


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "figure.dpi": 90, "savefig.dpi": 90})
    return plt


def _save(fig, path):
    fig.savefig(path, bbox_inches="tight")
    import matplotlib.pyplot as plt

    plt.close(fig)
    print(f"  wrote {path} ({os.path.getsize(path) // 1024} KB)")


# ----------------------------------------------------------------------------------------------- 1 tracks
def colour_tracks(img):
    import pzkit.sims as sims
    from pzkit.sims.grid import PhotGrid, templates

    plt = _plt()
    bands = "ugrizy"
    pg = PhotGrid("cwwsb", [f"lsst2023-{b}" for b in bands])
    z = np.linspace(0.0, 3.5, 351)
    names = templates("cwwsb")[0]
    res = sims.make("lsst_like", 6000, random_state=11)
    cat = res.catalog
    mt = np.column_stack([cat[f"mag_true_{b}_lsst"] for b in bands]) - np.outer(cat["ebv"], [
        res.extinction_coeffs[b] for b in bands])
    fig, axes = plt.subplots(2, 2, figsize=(8, 5.6), sharex=True)
    out = {}
    colors = plt.cm.coolwarm(np.linspace(0.95, 0.05, len(names)))
    for ax, (j, lab) in zip(axes.ravel(), enumerate(["u−g", "g−r", "r−i", "i−z"])):
        ax.scatter(cat["redshift"], mt[:, j] - mt[:, j + 1], s=1, c="0.65", alpha=0.35, lw=0, rasterized=True,
                   label="lsst_like (noise-free, dereddened)")
        for k, name in enumerate(names):
            m = -2.5 * np.log10(pg.continuum(np.full(len(z), float(k)), z, np.zeros(len(z))))
            ax.plot(z, m[:, j] - m[:, j + 1], color=colors[k], lw=1.2, label=name.replace("_B2004a", ""))
        ax.set_ylabel(lab)
        ax.set_ylim(-0.7, 3.5 if j == 0 else 2.2)
    axes[1, 0].set_xlabel("redshift")
    axes[1, 1].set_xlabel("redshift")
    axes[0, 0].axvspan(2.5, 3.5, color="y", alpha=0.15)
    axes[0, 0].text(2.55, 3.1, "u-dropouts", fontsize=7)
    axes[0, 1].legend(fontsize=6, ncol=2, loc="upper right", markerscale=6)
    fig.suptitle("Template colour tracks through the LSST curves (E(B−V)=0) and the simulated galaxies")
    _save(fig, os.path.join(img, "sims_colour_tracks.png"))
    ug = mt[:, 0] - mt[:, 1]
    zz = cat["redshift"].to_numpy()
    hi = zz > 2.8
    mid = (zz > 1.5) & (zz < 2.2)
    out["median_u_minus_g_z_1.5_2.2"] = round(float(np.median(ug[mid])), 3)
    out["median_u_minus_g_z_gt_2.8"] = round(float(np.median(ug[hi])), 3)
    out["frac_u_minus_g_gt_1.5_z_gt_2.8"] = round(float(np.mean(ug[hi] > 1.5)), 3)
    out["frac_u_minus_g_gt_1.5_z_lt_2.2"] = round(float(np.mean(ug[zz < 2.2] > 1.5)), 3)
    out["frac_u_nondetected_z_gt_2.8"] = round(float(np.mean(cat["mag_u_lsst"].to_numpy()[hi] == 99)), 3)
    out["n_z_gt_2.8"] = int(hi.sum())

    # n(z | m) and type fractions vs magnitude
    fig, axes = plt.subplots(1, 2, figsize=(8, 2.8))
    res2 = sims.make("lsst_like", 30674, random_state=0)
    c2 = res2.catalog
    i = c2["mag_true_i_lsst"].to_numpy()
    bins = np.linspace(0, 3, 61)
    nzm = {}
    for lo, hi_ in [(16, 22), (22, 23.5), (23.5, 24.5), (24.5, 25.3)]:
        sel = (i >= lo) & (i < hi_)
        axes[0].hist(c2["redshift"][sel], bins=bins, histtype="step", density=True, label=f"{lo} ≤ i < {hi_}")
        nzm[f"{lo}-{hi_}"] = {"median_z": round(float(np.median(c2['redshift'][sel])), 3),
                              "iqr_z": round(float(np.subtract(*np.percentile(c2['redshift'][sel], [75, 25]))), 3)}
    try:
        from pzkit.datasets import load_dc2

        dz = load_dc2().validation["redshift"]
        axes[0].hist(dz, bins=bins, histtype="step", density=True, color="k", ls="--", label="DC2 (all)")
    except Exception:  # pragma: no cover - DC2 optional
        pass
    axes[0].set_xlabel("redshift")
    axes[0].set_ylabel("n(z | i)")
    axes[0].legend(fontsize=6)
    mb = np.arange(18, 25.31, 0.5)
    mc = 0.5 * (mb[1:] + mb[:-1])
    cls = c2["sed_class"].to_numpy()
    for k, lab in enumerate(["E/S0", "spiral", "irregular/SB"]):
        fr = [np.mean(cls[(i >= a) & (i < b)] == k) for a, b in zip(mb[:-1], mb[1:])]
        axes[1].plot(mc, fr, marker="o", ms=2, label=lab)
    axes[1].set_xlabel("i (true)")
    axes[1].set_ylabel("class fraction")
    axes[1].legend(fontsize=6)
    fig.suptitle("lsst_like population: n(z|m) widens with magnitude; the early-type fraction rises towards bright i")
    _save(fig, os.path.join(img, "sims_nz.png"))
    out["n_z_given_m_lsst_like"] = nzm
    return out


# ----------------------------------------------------------------------------------------------- 2 DC2
def lsst_vs_dc2(img, quick=False):
    import pzkit
    import pzkit.sims as sims
    from pzkit.datasets import load_dc2
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    dc2 = load_dc2()
    n_tr, n_te = len(dc2.train), len(dc2.validation)
    res = sims.make("lsst_like", n_tr + n_te, random_state=0)
    tr, te = res.train, res.test
    assert len(tr) == n_tr and len(te) == n_te
    data = {
        "DC2": (dc2.features(), dc2.train, dc2.validation),
        "lsst_like": (res.features(), tr.catalog, te.catalog),
    }
    methods = {"sklearn_knn": lambda: make_pipeline(StandardScaler(), KNeighborsRegressor(20, weights="distance"))}
    if "knn_local_linear" in pzkit.list_estimators():
        methods = {"knn_local_linear": lambda: pzkit.make_estimator("knn_local_linear"), **methods}
    out = {"n_train": n_tr, "n_test": n_te, "features": "adjacent colours + i (non-detections -> 1σ limits; sims dereddened)"}
    preds = {}
    for mname, make_m in methods.items():
        out[mname] = {}
        for dname, (ftr, trn, tst) in data.items():
            t0 = time.perf_counter()
            if mname == "knn_local_linear":
                model = pzkit.make_pipeline(ftr, make_m())
                model.fit(trn, trn["redshift"])
                zp = model.predict(tst)
            else:
                X = ftr.fit_transform(trn)
                zp = make_m().fit(X, trn["redshift"]).predict(ftr.transform(tst))
            out[mname][dname] = metrics(zp, tst["redshift"].to_numpy())
            out[mname][dname]["seconds"] = round(time.perf_counter() - t0, 1)
            preds[(mname, dname)] = (tst["redshift"].to_numpy(), np.asarray(zp))
        out[mname]["ratio_sims_over_dc2"] = round(out[mname]["lsst_like"]["sigma_nmad"]
                                                  / out[mname]["DC2"]["sigma_nmad"], 3)
        print(f"  {mname}: {out[mname]}")
    # per-z-bin for the first method
    m0 = next(iter(methods))
    zs, zp = preds[(m0, "lsst_like")]
    out[m0]["lsst_like_by_z"] = {f"{a}-{b}": metrics(zp[(zs >= a) & (zs < b)], zs[(zs >= a) & (zs < b)])
                                 for a, b in [(0, 0.5), (0.5, 1.0), (1.0, 1.5), (1.5, 2.5), (2.5, 3.0)]}
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.6), sharey=True)
    for ax, d in zip(axes, ["DC2", "lsst_like"]):
        zs, zp = preds[(m0, d)]
        ax.scatter(zs, zp, s=1, alpha=0.25, lw=0, rasterized=True)
        ax.plot([0, 3], [0, 3], "k-", lw=0.5)
        o = out[m0][d]
        ax.set_title(f"{d}: σ_NMAD={o['sigma_nmad']:.4f}, η={o['outlier_frac']:.3f}")
        ax.set_xlabel("true z")
        ax.set_xlim(0, 3)
        ax.set_ylim(0, 3)
    axes[0].set_ylabel(f"photo-z ({m0})")
    _save(fig, os.path.join(img, "sims_lsst_vs_dc2.png"))
    return out


# ----------------------------------------------------------------------------------------------- 3 NB
def cosmos_nb(img, quick=False):
    import pzkit.sims as sims
    from sklearn.model_selection import KFold
    from sklearn.neighbors import KNeighborsRegressor
    from sklearn.preprocessing import StandardScaler

    n = 35000 if quick else 70000
    res = sims.make("cosmos_paus", n, random_state=0)
    tr = res.train
    lab = tr.labelled
    c = lab.catalog
    z = c["redshift"].to_numpy()
    rng = np.random.default_rng(0)
    perm = rng.permutation(len(z))
    a, b = perm[: len(z) // 2], perm[len(z) // 2:]
    ftr = res.features()
    xb = ftr.fit_transform(c)
    nb = lab.narrow_bands
    fi = 10 ** (-0.4 * (c["mag_i_cosmos"].to_numpy() - 31.4))
    ratio = np.column_stack([nb[f"flux_{k}"].to_numpy() for k in res.nb_bands]) / fi[:, None]
    sb = StandardScaler().fit(xb[a])
    sn = StandardScaler().fit(ratio[a])
    XB, XN = sb.transform(xb), sn.transform(ratio)

    def knn(Xtr, ztr, Xte, k=10):
        return KNeighborsRegressor(k, weights="distance").fit(Xtr, ztr).predict(Xte)

    def chi2_knn(Xtr, ztr, Xq, Eq, k=10, chunk=1000):
        out = np.empty(len(Xq))
        x2 = (Xtr**2).T
        for s0 in range(0, len(Xq), chunk):
            q, w = Xq[s0:s0 + chunk], 1.0 / Eq[s0:s0 + chunk] ** 2
            d = (q**2 * w).sum(1)[:, None] - 2 * (q * w) @ Xtr.T + w @ x2
            idx = np.argpartition(d, k, axis=1)[:, :k]
            dd = np.sqrt(np.clip(np.take_along_axis(d, idx, 1), 0, None))
            wt = 1.0 / (dd + 1e-6)
            out[s0:s0 + chunk] = (ztr[idx] * wt).sum(1) / wt.sum(1)
        return out

    # NB weight chosen by 3-fold CV inside the training half (no peeking at the test half)
    weights = [0.1, 0.2, 0.3, 0.5, 1.0]
    cv = {}
    for w in weights:
        s = []
        for itr, iva in KFold(3, shuffle=True, random_state=0).split(a):
            X = np.hstack([XB, w * XN])
            s.append(sigma_nmad(z[a][iva], knn(X[a][itr], z[a][itr], X[a][iva])))
        cv[w] = float(np.mean(s))
    w_best = min(cv, key=cv.get)
    zb = knn(XB[a], z[a], XB[b])
    zn1 = knn(np.hstack([XB, XN])[a], z[a], np.hstack([XB, XN])[b])
    zn = knn(np.hstack([XB, w_best * XN])[a], z[a], np.hstack([XB, w_best * XN])[b])
    # a χ²-kNN (colour-matched nearest neighbours, as CMNN): distances in units of the query's own errors
    bands = res.bands
    mg = np.column_stack([c[f"mag_{k}_cosmos"] for k in bands])
    eg = np.column_stack([c[f"mag_err_{k}_cosmos"] for k in bands])
    colr, ecol = mg[:, :-1] - mg[:, 1:], np.sqrt(eg[:, :-1] ** 2 + eg[:, 1:] ** 2)
    en = np.column_stack([nb[f"flux_err_{k}"].to_numpy() for k in res.nb_bands]) / fi[:, None]
    xq = np.hstack([colr, c["mag_i_cosmos"].to_numpy()[:, None]])
    eq = np.hstack([ecol, np.full((len(z), 1), 0.3)])    # a soft 0.3 mag "error" on the i magnitude
    zc_b = chi2_knn(xq[a], z[a], xq[b], eq[b])
    zc_n = chi2_knn(np.hstack([xq, ratio])[a], z[a], np.hstack([xq, ratio])[b], np.hstack([eq, en])[b])
    imag = c["mag_i_cosmos"].to_numpy()[b]
    out = {"n_train_rows": len(tr), "n_labelled": len(lab), "labelled_frac": round(len(lab) / len(tr), 3),
           "held_out": len(b), "nb_weight_cv": {str(k): round(v, 5) for k, v in cv.items()}, "nb_weight": w_best,
           "broad": metrics(zb, z[b]), "broad+nb (weight 1, raw)": metrics(zn1, z[b]),
           "broad+nb (cv weight)": metrics(zn, z[b]),
           "chi2_knn broad": metrics(zc_b, z[b]), "chi2_knn broad+nb": metrics(zc_n, z[b]), "by_i": {}}
    for lo, hi in [(17, 21), (21, 22), (22, 22.5), (22.5, 23)]:
        s = (imag >= lo) & (imag < hi)
        out["by_i"][f"{lo}-{hi}"] = {"broad": metrics(zb[s], z[b][s]), "broad+nb": metrics(zn[s], z[b][s]),
                                     "chi2 broad": metrics(zc_b[s], z[b][s]), "chi2 broad+nb": metrics(zc_n[s], z[b][s])}
    out["improvement_sigma_nmad"] = round(1 - out["broad+nb (cv weight)"]["sigma_nmad"] / out["broad"]["sigma_nmad"], 3)
    out["improvement_sigma_nmad_chi2"] = round(1 - out["chi2_knn broad+nb"]["sigma_nmad"]
                                               / out["chi2_knn broad"]["sigma_nmad"], 3)
    print(f"  cosmos_paus: broad {out['broad']} | broad+NB {out['broad+nb (cv weight)']} (w={w_best}) | "
          f"chi2 {out['chi2_knn broad']} -> {out['chi2_knn broad+nb']}")
    # sensitivity to the (guessed) NB depth
    sweep = {}
    for depth in ([23.5, 23.0], [24.0, 23.5]):
        r2 = sims.make("cosmos_paus", n, random_state=0, narrow_bands={"depth": depth})
        l2 = r2.train.labelled
        nb2 = l2.narrow_bands
        rat2 = np.column_stack([nb2[f"flux_{k}"].to_numpy() for k in r2.nb_bands]) / fi[:, None]
        XN2 = StandardScaler().fit(rat2[a]).transform(rat2)
        zz = knn(np.hstack([XB, w_best * XN2])[a], z[a], np.hstack([XB, w_best * XN2])[b])
        sweep[f"{depth[0]}-{depth[1]}"] = metrics(zz, z[b])
    out["nb_depth_sweep (same galaxies, kNN cv weight)"] = sweep
    print(f"  depth sweep: {sweep}")

    plt = _plt()
    fig, axes = plt.subplots(1, 3, figsize=(10, 3.1))
    # an emission-line galaxy's SED: 40 NBs + 6 BBs
    nbf = np.array([res.nb_wavelengths[k] for k in res.nb_bands])
    ew = c["ew_halpha"].to_numpy()
    cand = np.nonzero((imag < 21.0) & (z[b] > 0.12) & (z[b] < 0.6))[0]
    j = b[cand[np.argmax(ew[b][cand])]] if len(cand) else b[0]       # a bright strong-line galaxy
    from pzkit.sims.filters import effective_wavelength

    bb_l = [effective_wavelength(res.filters[k]) for k in res.bands]
    fl = np.array([nb[f"flux_{k}"].iat[j] for k in res.nb_bands])
    fe = np.array([nb[f"flux_err_{k}"].iat[j] for k in res.nb_bands])
    ft = np.array([10 ** (-0.4 * (c[f"mag_{k}_cosmos"].iat[j] - 31.4)) for k in res.bands])
    axes[0].errorbar(nbf, fl, fe, fmt="o", ms=2, lw=0.6, label="40 narrow bands")
    axes[0].plot(bb_l, ft, "s", ms=5, mfc="none", label="u B V r i z")
    for name, lam in [("[OII]", 3727), ("Hβ", 4861), ("[OIII]", 5007), ("Hα", 6563)]:
        lo = lam * (1 + z[j])
        if 4400 < lo < 8600:
            axes[0].axvline(lo, color="0.7", lw=0.6, ls=":")
            axes[0].text(lo, axes[0].get_ylim()[1] * 0.97 if axes[0].get_ylim()[1] > 0 else 1, name, fontsize=6,
                         rotation=90, va="top")
    axes[0].set_xlim(3000, 9500)
    axes[0].set_xlabel("λ (Å)")
    axes[0].set_ylabel("flux (nJy)")
    axes[0].set_title(f"z={z[j]:.3f}, i={c['mag_i_cosmos'].iat[j]:.1f}, EW(Hα)={ew[j]:.0f} Å", fontsize=7)
    axes[0].legend(fontsize=6)
    for ax, zp, lab_ in [(axes[1], zb, "broad bands"), (axes[2], zn, f"broad + NB (w={w_best})")]:
        ax.scatter(z[b], zp, s=1, alpha=0.3, lw=0, rasterized=True)
        ax.plot([0, 1.5], [0, 1.5], "k-", lw=0.5)
        ax.set_xlim(0, 1.5)
        ax.set_ylim(0, 1.5)
        m = metrics(zp, z[b])
        ax.set_title(f"kNN, {lab_}: σ_NMAD={m['sigma_nmad']:.4f}", fontsize=7)
        ax.set_xlabel("true z")
    axes[1].set_ylabel("photo-z")
    _save(fig, os.path.join(img, "sims_cosmos_nb.png"))
    return out


# ----------------------------------------------------------------------------------------------- 4 stamp flux
def stamp_flux(img, quick=False):
    import pzkit.sims as sims

    out = {"stamp_size": 64}
    n = 1000 if quick else 2000
    # a large aperture: the whole of a 64×64 stamp (12.8″); the default 32×32 stamps are checked below
    res = sims.make("lsst_like", n, random_state=5, images={"stamp_size": 64})
    cat, ims = res.catalog, res.images
    info = res.image_info
    s = ims.shape[-1]
    from pzkit.sims import images as I

    noise_free, _ = I.render(res.config, "wfd", {k: cat[k].to_numpy() for k in cat.columns}, seed=0, noise=False)
    pulls = {}
    for j, b in enumerate(res.bands):
        m = cat[f"mag_{b}_lsst"].to_numpy()
        det = m != 99
        f_cat = 10 ** (-0.4 * (m - 31.4))
        s_cat = cat[f"mag_err_{b}_lsst"].to_numpy() * f_cat / 1.0857
        f_st = ims[:, j].sum(axis=(1, 2))
        s_st = info["pixel_noise"][b] * s
        p = (f_st - f_cat) / np.sqrt(s_st**2 + s_cat**2)
        p = p[det]
        f_true = 10 ** (-0.4 * (cat[f"mag_true_{b}_lsst"].to_numpy() - 31.4))
        pulls[b] = p
        enc = noise_free[:, j].sum(axis=(1, 2)) / f_true
        contained = enc[det] > 0.995
        out[b] = {"pull_mean": round(float(np.mean(p)), 3), "pull_std": round(float(np.std(p)), 3),
                  "pull_median": round(float(np.median(p)), 3), "frac_abs_pull_lt_3": round(float(np.mean(np.abs(p) < 3)), 4),
                  "contained_frac": round(float(np.mean(contained)), 4),
                  "pull_std_contained": round(float(np.std(p[contained])), 3),
                  "pull_mean_contained": round(float(np.mean(p[contained])), 3),
                  "pull_std_by_mag": {f"{lo}-{hi}": round(float(np.std(p[(m[det] >= lo) & (m[det] < hi)])), 3)
                                      for lo, hi in [(15, 21), (21, 23), (23, 24.5), (24.5, 30)]
                                      if np.sum((m[det] >= lo) & (m[det] < hi)) > 5},
                  "noise_free_enclosed_median": round(float(np.median(enc)), 5)}
    print(f"  stamp flux (lsst_like): {out}")
    # enclosed flux (noise-free) for every preset with its default stamp
    enc = {}
    for preset in ["lsst_like", "sdss_like", "hsc_udf", "candels_like", "cosmos_paus"]:
        r = sims.make(preset, 300, random_state=0)
        dom = r.domain_names[0]
        rows = (r.catalog["domain"] == dom).to_numpy()
        cols = {k: r.catalog[k].to_numpy()[rows] for k in r.catalog.columns}
        im, _ = I.render(r.config, dom, cols, seed=0, noise=False)
        ref = r.bands.index(r.ref_band)
        ft = 10 ** (-0.4 * (cols[f"mag_true_{r.ref_band}_{r.survey}"] - 31.4))
        frac = im[:, ref].sum(axis=(1, 2)) / ft
        enc[preset] = {"stamp": int(r.config["images"]["stamp_size"]), "pixel_scale": r.domains[dom]["pixel_scale"],
                       "enclosed_median": round(float(np.median(frac)), 4),
                       "enclosed_p05": round(float(np.percentile(frac, 5)), 4),
                       "frac_above_0.95": round(float(np.mean(frac > 0.95)), 3)}
    out["enclosed_flux_ref_band_noise_free"] = enc
    print(f"  enclosed: {enc}")

    plt = _plt()
    fig = plt.figure(figsize=(10, 3.4))
    gs = fig.add_gridspec(2, 7, width_ratios=[1] * 6 + [2.3])
    # example stamps: gri composite-like (asinh) from several presets
    examples = []
    for preset, bands in [("lsst_like", "irg"), ("sdss_like", "irg"), ("hsc_udf", "irg"),
                          ("candels_like", ["F160W", "F814W", "F606W"])]:
        r = sims.make(preset, 60, random_state=1, images=True)
        idx = np.argsort(r.catalog[f"mag_{r.ref_band}_{r.survey}"].to_numpy())[:3]
        for k in idx:
            rgb = np.stack([r.images[k, r.bands.index(bb)] for bb in bands], axis=-1)
            examples.append((preset, rgb, r.catalog["redshift"].iat[k]))
    for k, (preset, rgb, zz) in enumerate(examples[:12]):
        ax = fig.add_subplot(gs[k // 6, k % 6])
        x = np.arcsinh(rgb / np.percentile(rgb, 99) * 3)
        ax.imshow(np.clip(x / x.max(), 0, 1), origin="lower")
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"{preset.split('_')[0]} z={zz:.2f}", fontsize=6)
    ax = fig.add_subplot(gs[:, 6])
    bins = np.linspace(-5, 5, 41)
    for b in ["g", "r", "i"]:
        ax.hist(pulls[b], bins=bins, histtype="step", density=True, label=b)
    xx = np.linspace(-5, 5, 200)
    ax.plot(xx, np.exp(-xx**2 / 2) / np.sqrt(2 * np.pi), "k--", lw=0.7, label="N(0,1)")
    ax.set_xlabel("(stamp sum − catalog flux) / σ")
    ax.legend(fontsize=6)
    ax.set_title("lsst_like 64×64: stamp vs catalog", fontsize=7)
    _save(fig, os.path.join(img, "sims_stamps.png"))
    return out


# ----------------------------------------------------------------------------------------------- 5 RF apertures
def rf_apertures(img, quick=False):
    import pzkit.sims as sims
    from sklearn.ensemble import RandomForestRegressor

    n = 6000 if quick else 10000
    seeds = [0] if quick else [0, 1, 2]
    r_in, r_out = 1.5, 4.0
    sets = ["A: catalog integrated colours + r", "B: stamp total-aperture colours + r",
            "C: stamp inner + outer aperture colours + r", "D: A + inner + outer aperture colours"]
    out = {"n": n, "seeds": seeds, "split": "70/30", "r_inner_arcsec": r_in, "r_outer_arcsec": r_out,
           "rf": "RandomForestRegressor(200, min_samples_leaf=3)", "outlier_threshold": 0.05, "runs": []}
    keep_pred = None
    for seed in seeds:
        for grad in (True, False):
            res = sims.make("sdss_like", n, random_state=seed, images={"colour_gradients": grad},
                            splits={"train": {"fraction": 0.7}, "test": {"fraction": 0.3}})
            c, im = res.catalog, res.images
            s = im.shape[-1]
            yy, xx = np.mgrid[:s, :s]
            rr = np.hypot(xx[None] - (s / 2 - 0.5 + c["dx"].to_numpy())[:, None, None],
                          yy[None] - (s / 2 - 0.5 + c["dy"].to_numpy())[:, None, None])
            sc = res.domains["sdss"]["pixel_scale"]

            def ap(mask):
                return np.einsum("nbij,nij->nb", im, mask.astype(np.float32))

            R = np.array([res.extinction_coeffs[b] for b in res.bands])

            def mag(f):
                return 31.4 - 2.5 * np.log10(np.clip(f, 1.0, None)) - c["ebv"].to_numpy()[:, None] * R

            def col(m):
                return m[:, :-1] - m[:, 1:]

            mi, mo, mt = mag(ap(rr < r_in / sc)), mag(ap((rr >= r_in / sc) & (rr < r_out / sc))), mag(ap(rr < r_out / sc))
            A = res.features().fit_transform(c)
            X = {sets[0]: A, sets[1]: np.c_[col(mt), mt[:, 2]], sets[2]: np.c_[col(mi), col(mo), mt[:, 2]],
                 sets[3]: np.c_[A, col(mi), col(mo)]}
            trm = (c["split"] == "train").to_numpy()
            z = c["redshift"].to_numpy()
            run = {"seed": seed, "colour_gradients": grad,
                   "median_abs_inner_minus_outer_g_r": round(float(np.median(np.abs(col(mi)[:, 1] - col(mo)[:, 1]))), 4)}
            for k, x in X.items():
                rf = RandomForestRegressor(200, min_samples_leaf=3, n_jobs=2, random_state=0).fit(x[trm], z[trm])
                zp = rf.predict(x[~trm])
                run[k] = metrics(zp, z[~trm], thr=0.05)
                if seed == seeds[0] and grad and k in (sets[0], sets[3]):
                    keep_pred = keep_pred or {}
                    keep_pred[k] = (z[~trm], zp)
            out["runs"].append(run)
            print(f"  sdss RF seed={seed} gradients={grad}: " + ", ".join(
                f"{k[:1]}={run[k]['sigma_nmad']:.4f}" for k in sets))
    summ = {}
    for grad in (True, False):
        rows = [r for r in out["runs"] if r["colour_gradients"] == grad]
        summ["gradients" if grad else "control (no gradients)"] = {
            k: {"sigma_nmad_mean": round(float(np.mean([r[k]["sigma_nmad"] for r in rows])), 5),
                "sigma_nmad_std": round(float(np.std([r[k]["sigma_nmad"] for r in rows])), 5),
                "outlier_frac_mean": round(float(np.mean([r[k]["outlier_frac"] for r in rows])), 4)} for k in sets}
    out["summary"] = summ
    g = summ["gradients"]
    out["improvement_D_over_A"] = round(1 - g[sets[3]]["sigma_nmad_mean"] / g[sets[0]]["sigma_nmad_mean"], 3)
    out["improvement_C_over_B"] = round(1 - g[sets[2]]["sigma_nmad_mean"] / g[sets[1]]["sigma_nmad_mean"], 3)
    c_ = summ["control (no gradients)"]
    out["control_improvement_C_over_B"] = round(1 - c_[sets[2]]["sigma_nmad_mean"] / c_[sets[1]]["sigma_nmad_mean"], 3)
    out["control_improvement_D_over_A"] = round(1 - c_[sets[3]]["sigma_nmad_mean"] / c_[sets[0]]["sigma_nmad_mean"], 3)

    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(7.5, 3.4), sharey=True)
    for ax, k in zip(axes, [sets[0], sets[3]]):
        zs, zp = keep_pred[k]
        ax.scatter(zs, zp, s=1.5, alpha=0.35, lw=0, rasterized=True)
        ax.plot([0, 0.4], [0, 0.4], "k-", lw=0.5)
        m = metrics(zp, zs, 0.05)
        ax.set_title(f"{k.split(':')[0]}: σ_NMAD={m['sigma_nmad']:.4f}, η(0.05)={m['outlier_frac']:.3f}", fontsize=7)
        ax.set_xlabel("true z")
        ax.set_xlim(0, 0.4)
        ax.set_ylim(0, 0.4)
    axes[0].set_ylabel("RF photo-z")
    fig.suptitle("sdss_like: integrated colours (A) vs + inner/outer aperture colours from the stamps (D)")
    _save(fig, os.path.join(img, "sims_rf_apertures.png"))
    return out


# ----------------------------------------------------------------------------------------------- 6 domains
def domains(img):
    import pzkit.sims as sims

    plt = _plt()
    out = {}
    fig, axes = plt.subplots(1, 2, figsize=(8, 2.9))
    for d in sims.list_domains("hsc_udf"):
        r = sims.make("hsc_udf", 4000, random_state=0, domain=d)
        c = r.catalog
        ri = (c["mag_r_hsc"] - c["mag_i_hsc"]).to_numpy()
        ri_t = (c["mag_true_r_hsc"] - c["mag_true_i_hsc"]).to_numpy()
        ug = (c["mag_u_hsc"] - c["mag_g_hsc"]).to_numpy()
        ok = (c["mag_u_hsc"] != 99).to_numpy()
        out[d] = {"u_filter": r.filters["u"], "depth_i": r.depths["i"], "psf_fwhm_i": r.domains[d]["psf_fwhm"]["i"],
                  "ebv_mean": round(float(c["ebv"].mean()), 4), "median_r_i_obs_minus_true": round(float(np.median(ri - ri_t)), 3),
                  "median_err_i": round(float(c["mag_err_i_hsc"].median()), 4), "median_u_g": round(float(np.median(ug[ok])), 3)}
        axes[0].hist(ri, bins=np.linspace(-0.5, 1.5, 61), histtype="step", density=True, label=d)
        axes[1].hist(c["mag_err_i_hsc"], bins=np.geomspace(0.003, 0.3, 50), histtype="step", density=True, label=d)
    axes[0].set_xlabel("observed r − i")
    axes[1].set_xlabel("i error (mag)")
    axes[1].set_xscale("log")
    axes[0].legend(fontsize=6)
    fig.suptitle("hsc_udf domains: zero points (xmm_deep r−i −0.2), depth, seeing, u vs u*, Galactic E(B−V)")
    _save(fig, os.path.join(img, "sims_domains.png"))
    print(f"  domains: {out}")
    return out


def bad_configs():
    import pzkit.sims as sims

    out = {}
    for label, kw in [("unknown filter", {"bands": {"u": "lsst2023-q"}}),
                      ("negative depth", {"domains": {"wfd": {"depth": {"u": -1.0}}}}),
                      ("inverted redshift range", {"redshift": {"min": 3.0, "max": 1.0}})]:
        try:
            sims.get_config("lsst_like", **kw)
            out[label] = "no error!"
        except ValueError as exc:
            out[label] = f"{type(exc).__name__}: {exc}"
    print(f"  bad configs: {out}")
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    here = os.path.dirname(os.path.abspath(__file__))
    ap.add_argument("--out", default=os.path.join(here, "results", "sims_validation.json"))
    ap.add_argument("--img", default=os.path.join(here, "..", "docs", "img"))
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--only", nargs="*", default=None, help="subset of: tracks dc2 nb stamps rf domains errors")
    args = ap.parse_args(argv)
    os.makedirs(args.img, exist_ok=True)
    results = {}
    if os.path.exists(args.out) and args.only:
        with open(args.out) as fh:
            results = json.load(fh)
    steps = {"tracks": lambda: colour_tracks(args.img), "dc2": lambda: lsst_vs_dc2(args.img, args.quick),
             "nb": lambda: cosmos_nb(args.img, args.quick), "stamps": lambda: stamp_flux(args.img, args.quick),
             "rf": lambda: rf_apertures(args.img, args.quick), "domains": lambda: domains(args.img),
             "errors": bad_configs}
    for name, fn in steps.items():
        if args.only and name not in args.only:
            continue
        t0 = time.perf_counter()
        print(f"[{name}]")
        results[name] = fn()
        results[name + "_seconds"] = round(time.perf_counter() - t0, 1)
    import pzkit.sims as sims

    results["sims_version"] = sims.SIMS_VERSION
    results["quick"] = bool(args.quick)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(results, fh, indent=2)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
