"""PITA on the ``candels_like`` sims: label-count curve against the supervised CNN, and ablations.

    OMP_NUM_THREADS=1 python benchmarks/pita_candels_like.py --part curve     [--seeds 3] [--steps 1000]
    OMP_NUM_THREADS=1 python benchmarks/pita_candels_like.py --part ablations [--seeds 3]
    OMP_NUM_THREADS=1 python benchmarks/pita_candels_like.py --part reference  # RF on catalogue colours
    python benchmarks/pita_candels_like.py --merge      # -> benchmarks/results/pita_candels_like.json

Data: one sims realisation, ``candels_like`` n = 18,000 (train 16,200 / test 1,800), 32² stamps binned 2×2 to
16² (0.12″ pixels), with the training split's label fraction raised from 0.22 to 0.40 (label selection still
biased bright, as the preset) so that 5,000 labels exist. For each label count L and seed, L rows are drawn
from the labelled training rows; every other training row (≈ 16,200 − L) is unlabelled (y = NaN), colours for
all from the catalogue (F606W−F814W, F814W−F125W, F125W−F160W, m_F160W; non-detections NaN, masked). Test:
the 1,800 held-out test galaxies (all with redshifts).

Methods (same encoder, same steps × batch size, same augmentations and seed):
``pita`` (contrastive + colour + redshift), ``supervised`` (labelled rows only), ablations at 1,000 labels:
``pita_no_colour`` (color_weight 0), ``pita_no_contrastive`` (contrastive_weight 0), ``pretrain_finetune``
(MoCo alone for the same number of steps, then fine-tuning for ``--steps``). Reference: a random forest on
the catalogue colours + m_F160W (observed, and noise-free) with the same labelled subsets.
σ_NMAD is reported for the PDF median (``predict``'s default for this plugin), the PDF mode and the Huber head.

CPU scale (2 shared cores, one thread per fit): small CNN widths (16, 32, 64), 12-px crops of the 16-px stamps,
batch 64, ``--steps`` optimiser steps, MoCo queue 4,096 and momentum 0.99 (0.999 barely moves the key encoder
in 1,000 steps). The pita-z defaults (queue 50,000, momentum 0.999, 64-px crops of 108-px stamps, ConvNeXt) are
for the GPU-scale run, which was not done here.
"""

import argparse
import glob
import json
import os
import platform
import time

import numpy as np

OUT = os.path.join(os.path.dirname(__file__), "results", "pita_candels_like.json")
PARTIAL = os.environ.get("PITA_PARTIAL_DIR", "/tmp/pita_benchmark_parts")
SIM = dict(n=18000, random_state=0, images={"stamp_size": 32}, splits={"train": {"labels": {"fraction": 0.4}}})
#: the preset's 5σ depths (config._candels_like); CANDELS-Deep/GOODS reach ~1 mag deeper (Grogin et al. 2011)
_DEPTH = {"F606W": 27.2, "F814W": 27.0, "F125W": 26.6, "F160W": 26.4}
VARIANTS = {
    "default": SIM,
    # diagnostic: the same preset cut at F160W < 24.5, where photometric noise no longer dominates
    "bright": dict(SIM, n=10000, magnitude={"max": 24.5}),
    # diagnostic: the preset 1 mag deeper in every band (CANDELS-Deep-like), where the colours hold more
    # redshift information than the labels can teach a CNN to read
    "deep": dict(SIM, domains={"candels": {"depth": {b: d + 1.0 for b, d in _DEPTH.items()}}}),
}
LABEL_COUNTS = (500, 1000, 2000, 5000)
SETTINGS = dict(encoder="small", encoder_widths=(16, 32, 64), crop_size=12, jitter=1.0, rotation="any",
                noise_std=0.5, queue_size=4096, momentum=0.99, batch_size=64, lr=2e-3, zmin=0.0, zmax=4.0,
                nzbins=201, labelled_fraction=0.5, device="cpu",
                # the issue-9 runs' settings (before the paper's 1:1:1 became the default); the colour loss is
                # now summed over the colour vector, so reruns differ from the committed numbers
                contrastive_weight=0.0025, point_estimate="median")
METHODS = {
    "pita": dict(mode="pita"),
    "supervised": dict(mode="supervised"),
    "pita_no_colour": dict(mode="pita", color_weight=0.0),
    "pita_no_contrastive": dict(mode="pita", contrastive_weight=0.0),
    "pretrain_finetune": dict(mode="pretrain_finetune"),
}


def load_data(sim=None):
    import pzkit.sims

    res = pzkit.sims.make("candels_like", **(sim or SIM))
    cat = res.catalog
    imgs = res.images
    n, c, s, _ = imgs.shape
    imgs = imgs.reshape(n, c, s // 2, 2, s // 2, 2).sum(axis=(3, 5))  # 2×2 binning keeps the flux
    mags = np.column_stack([cat[f"mag_{b}_hst"].to_numpy(dtype=float) for b in res.bands])
    mags[mags >= 90] = np.nan  # non-detections (99): no colour target for that band
    colors = np.column_stack([mags[:, :-1] - mags[:, 1:], mags[:, -1:]])
    train = (cat["split"] == "train").to_numpy()
    true = np.column_stack([cat[f"mag_true_{b}_hst"].to_numpy(dtype=float) for b in res.bands])
    true_colors = np.column_stack([true[:, :-1] - true[:, 1:], true[:, -1:]])
    ap = aperture_colours(imgs)
    return dict(X=imgs[train], z=cat["redshift"].to_numpy()[train], colors=colors[train],
                colors_test=colors[~train], true_colors=true_colors[train], true_colors_test=true_colors[~train],
                aperture_colors=ap[train], aperture_colors_test=ap[~train],
                labelled=cat["labelled"].to_numpy()[train], X_test=imgs[~train],
                z_test=cat["redshift"].to_numpy()[~train], mag_test=mags[~train, -1], bands=list(res.bands))


def aperture_colours(imgs, sigma_px=1.5):
    """Colours measured from the stamps the CNNs see (2×2-binned): a Gaussian-weighted aperture (σ = 1.5 binned
    px) at the stamp centre in every band, magnitudes of the positive fluxes, adjacent colours + the last
    magnitude as for the catalogue. A random forest on these tells whether the images still hold the redshift
    information of the catalogue photometry, i.e. whether a CNN's shortfall is in reading them."""
    n, c, s, _ = imgs.shape
    r = np.arange(s) - (s - 1) / 2.0
    w = np.exp(-0.5 * (r[:, None] ** 2 + r[None, :] ** 2) / sigma_px**2)
    flux = np.einsum("ncij,ij->nc", imgs.astype(np.float64), w) / (w * w).sum()
    mags = np.where(flux > 0, -2.5 * np.log10(np.where(flux > 0, flux, 1.0)), np.nan)
    return np.column_stack([mags[:, :-1] - mags[:, 1:], mags[:, -1:]])


def metrics(z, zp):
    from pzkit.metrics import bias_mean, outlier_rate, sigma_nmad

    return {"sigma_nmad": float(sigma_nmad(z, zp)), "outlier_rate": float(outlier_rate(z, zp)),
            "bias": float(bias_mean(z, zp))}


def run_one(data, method, n_lab, seed, steps, settings=SETTINGS):
    import torch

    from pzkit.metrics import cde_loss
    from pzkit_pita import PITA

    torch.set_num_threads(1)
    rng = np.random.default_rng(1000 + seed)
    chosen = rng.choice(np.flatnonzero(data["labelled"]), n_lab, replace=False)
    y = np.full(data["z"].shape, np.nan)
    y[chosen] = data["z"][chosen]
    # --steps counts optimiser steps; the engine counts epochs of steps_per_epoch steps
    per_epoch = 100 if steps % 100 == 0 else steps
    est = PITA(random_state=seed, max_epochs=steps // per_epoch, pretrain_epochs=steps // per_epoch,
               steps_per_epoch=per_epoch, **settings, **METHODS[method])
    t0 = time.time()
    est.fit(data["X"], y, colors=data["colors"])
    fit_s = time.time() - t0
    ens = est.estimate_pdf(data["X_test"])
    zt = data["z_test"]
    out = {"method": method, "n_labelled": n_lab, "n_unlabelled": int(np.isnan(y).sum()), "seed": seed,
           "steps": steps, "fit_seconds": round(fit_s, 1),
           "pdf_mode": metrics(zt, ens.ancil["zmode"]), "pdf_median": metrics(zt, ens.ancil["zmedian"]),
           "huber_point": metrics(zt, est.predict_point_head(data["X_test"])),
           "cde_loss": float(cde_loss(ens, zt, est.zgrid_))}
    print(json.dumps({k: out[k] for k in ("method", "n_labelled", "seed", "fit_seconds")}),
          "σ_NMAD mode/median/huber", round(out["pdf_mode"]["sigma_nmad"], 4),
          round(out["pdf_median"]["sigma_nmad"], 4), round(out["huber_point"]["sigma_nmad"], 4), flush=True)
    return out


def run_reference(data, n_lab, seed):
    """Random forest on the catalogue colours + m_F160W, same labelled subset as :func:`run_one`: how much
    redshift information the photometry holds at this label count (and on noise-free magnitudes, and on
    colours measured from the CNNs' own input stamps, :func:`aperture_colours`)."""
    from sklearn.ensemble import RandomForestRegressor

    rng = np.random.default_rng(1000 + seed)
    chosen = rng.choice(np.flatnonzero(data["labelled"]), n_lab, replace=False)
    out = {"method": "rf_catalogue_colours", "n_labelled": n_lab, "seed": seed}
    for name, tr, te in (("observed", data["colors"], data["colors_test"]),
                         ("noise_free", data["true_colors"], data["true_colors_test"]),
                         ("aperture", data["aperture_colors"], data["aperture_colors_test"])):
        fill = np.nanmedian(tr, axis=0)
        ftr = np.where(np.isfinite(tr), tr, fill)[chosen]
        fte = np.where(np.isfinite(te), te, fill)
        rf = RandomForestRegressor(200, min_samples_leaf=3, n_jobs=1, random_state=seed).fit(ftr, data["z"][chosen])
        out[name] = metrics(data["z_test"], rf.predict(fte))
    print(json.dumps(out), flush=True)
    return out


def rf_reference(runs):
    """Mean σ_NMAD of the random-forest reference runs, per colour kind and label count."""
    reference = {}
    for r in runs:
        if r["method"].startswith("rf_"):
            for k in ("observed", "noise_free", "aperture"):
                if k in r:  # the aperture colours were added later: older reference runs lack them
                    reference.setdefault(f"{k}@{r['n_labelled']}", []).append(r[k]["sigma_nmad"])
    return {k: float(np.mean(v)) for k, v in sorted(reference.items())}


def summarise(runs):
    groups = {}
    for r in runs:
        if r["method"].startswith("rf_"):
            continue
        groups.setdefault((r["method"], r["n_labelled"]), []).append(r)
    table = []
    for (method, n_lab), rs in sorted(groups.items()):
        row = {"method": method, "n_labelled": n_lab, "n_seeds": len(rs)}
        for est in ("pdf_mode", "pdf_median", "huber_point"):
            for m in ("sigma_nmad", "outlier_rate", "bias"):
                vals = np.array([r[est][m] for r in rs])
                row[f"{est}.{m}"] = float(vals.mean())
                row[f"{est}.{m}_sem"] = float(vals.std(ddof=1) / np.sqrt(len(vals))) if len(vals) > 1 else None
        row["cde_loss"] = float(np.mean([r["cde_loss"] for r in rs]))
        row["fit_seconds"] = float(np.mean([r["fit_seconds"] for r in rs]))
        table.append(row)
    key = {(r["method"], r["n_labelled"]): r for r in table}
    acceptance = {}
    for n_lab in LABEL_COUNTS:
        p, s = key.get(("pita", n_lab)), key.get(("supervised", n_lab))
        if p and s:
            # the primary point estimate is predict()'s default, the PDF median (see the plugin's docstring)
            acceptance[f"pita_over_supervised_nmad_at_{n_lab}"] = (
                p["pdf_median.sigma_nmad"] / s["pdf_median.sigma_nmad"])
            for est in ("pdf_mode", "huber_point"):
                acceptance[f"{est}:pita_over_supervised_nmad_at_{n_lab}"] = (
                    p[f"{est}.sigma_nmad"] / s[f"{est}.sigma_nmad"])
    if acceptance:
        ratios = [acceptance.get(f"pita_over_supervised_nmad_at_{n}") for n in LABEL_COUNTS]
        done = [r for r in ratios if r is not None]
        acceptance["at_1000_at_least_15pct_lower"] = (
            None if ratios[1] is None else bool(ratios[1] <= 0.85))
        acceptance["pita_at_least_as_good_at_every_count"] = bool(all(r <= 1.0 for r in done))
        acceptance["gain_largest_at_smallest_count"] = bool(done and ratios[0] is not None
                                                            and ratios[0] == min(done))
    if key:
        acceptance["pdf_vs_huber_point_nmad_ratio"] = {
            f"{m}@{n}": {"mode": key[(m, n)]["pdf_mode.sigma_nmad"] / key[(m, n)]["huber_point.sigma_nmad"],
                         "median": key[(m, n)]["pdf_median.sigma_nmad"] / key[(m, n)]["huber_point.sigma_nmad"]}
            for (m, n) in key}
    return table, acceptance


def partial_path(part, variant, first_seed, steps, counts, overrides):
    """The partial-results file of one run: every setting that differs from the part's defaults is in its
    name, so runs with other settings never overwrite each other (a rerun of the same command replaces its
    own file)."""
    name = part + ("" if variant == "default" else f"_{variant}") + (f"_from_seed{first_seed}" if first_seed else "")
    if part != "reference" and steps != 1000:  # the reference is a random forest: no steps
        name += f"_steps{steps}"
    if part != "ablations" and tuple(counts) != LABEL_COUNTS:  # the ablations run at 1,000 labels only
        name += "_counts" + "_".join(map(str, counts))
    name += "".join(f"_{k}-{v}" for k, v in overrides.items())
    return os.path.join(PARTIAL, name + ".json")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("curve", "ablations", "reference"))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--first-seed", type=int, default=0, help="run seeds first-seed … first-seed + seeds − 1")
    ap.add_argument("--steps", type=int, default=1000)
    ap.add_argument("--counts", type=int, nargs="*", default=list(LABEL_COUNTS))
    ap.add_argument("--merge", action="store_true")
    ap.add_argument("--variant", choices=tuple(VARIANTS), default="default",
                    help="bright: F160W < 24.5 (n = 10,000); deep: every depth +1 mag (diagnostics)")
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE",
                    help="probe: override a PITA setting (VALUE as JSON, e.g. noise_std=0 crop_size=14); such "
                         "runs are kept apart from the summaries, under 'probes'")
    args = ap.parse_args()
    overrides = {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)}
    os.makedirs(PARTIAL, exist_ok=True)
    if args.part:
        t0 = time.time()
        data = load_data(VARIANTS[args.variant])
        load_s = time.time() - t0
        runs = []
        jobs = {"curve": [(m, n) for n in args.counts for m in ("supervised", "pita")],
                "ablations": [(m, 1000) for m in ("pita_no_colour", "pita_no_contrastive", "pretrain_finetune")],
                "reference": [("rf", n) for n in args.counts]}[args.part]
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for method, n_lab in jobs:
                runs.append(run_reference(data, n_lab, seed) if args.part == "reference"
                            else run_one(data, method, n_lab, seed, args.steps, dict(SETTINGS, **overrides)))
                part = {"part": args.part, "runs": runs, "data_seconds": round(load_s, 1),
                        "wall_seconds": round(time.time() - t0, 1), "loadavg_end": os.getloadavg(),
                        "steps": args.steps, "seeds": args.seeds}
                part["variant"] = args.variant
                if overrides:
                    part["overrides"] = overrides
                path = partial_path(args.part, args.variant, args.first_seed, args.steps, args.counts, overrides)
                with open(path, "w") as fh:
                    json.dump(part, fh)
        print("wall seconds", round(time.time() - t0, 1), "load", os.getloadavg())
    if args.merge:
        from pzkit.harness import write_json

        all_parts = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(PARTIAL, "*.json")))]
        probes = [dict(r, variant=p["variant"], overrides=p["overrides"]) for p in all_parts if "overrides" in p
                  for r in p["runs"]]
        all_parts = [p for p in all_parts if "overrides" not in p]
        parts = [p for p in all_parts if p.get("variant", "default") == "default"]
        runs = [r for p in parts for r in p["runs"]]
        table, acceptance = summarise(runs)
        diagnostics = {}
        for name in VARIANTS:
            vparts = [p for p in all_parts if name != "default" and p.get("variant") == name]
            vruns = [r for p in vparts for r in p["runs"]]
            if vruns:
                vtable, vacc = summarise(vruns)
                diagnostics[name] = {"sims": {"preset": "candels_like", **VARIANTS[name]}, "summary": vtable,
                                     "ratios": vacc, "parts": [{k: v for k, v in p.items() if k != "runs"}
                                                               for p in vparts], "runs": vruns,
                                     "reference_rf_catalogue_colours_sigma_nmad": rf_reference(vruns)}
        reference = rf_reference(runs)
        groups = {}
        for r in probes:
            groups.setdefault((r["variant"], json.dumps(r["overrides"], sort_keys=True), r["steps"]), []).append(r)
        probe_summaries = []
        for (variant, overrides, steps), rs in sorted(groups.items()):
            ptable, pratios = summarise(rs)
            probe_summaries.append({"variant": variant, "overrides": json.loads(overrides), "steps": steps,
                                    "summary": ptable,
                                    "ratios": {k: v for k, v in pratios.items() if k.startswith("pita_over")}})
        write_json(OUT, {
            "benchmark": "pita_candels_like", "date": time.strftime("%Y-%m-%d"),
            "machine": f"2-core CPU container, shared with parallel jobs ({platform.processor() or platform.machine()})",
            "torch_threads": 1, "gpu": None, "full_scale_run": "not done (no GPU lent to this session)",
            "sims": {"preset": "candels_like", **SIM, "binning": "2x2 -> 16 px stamps"},
            "settings": SETTINGS, "methods": METHODS,
            "parts": [{k: v for k, v in p.items() if k != "runs"} for p in parts],
            "summary": table, "acceptance": acceptance,
            "reference_rf_catalogue_colours_sigma_nmad": reference, "runs": runs,
            "diagnostic_variants": diagnostics, "probes": probes, "probe_summaries": probe_summaries})
        print("RF on catalogue colours, σ_NMAD:", json.dumps(reference))
        print(json.dumps(acceptance, indent=1))
        for row in table:
            print(f"{row['method']:22s} {row['n_labelled']:5d}  NMAD mode {row['pdf_mode.sigma_nmad']:.4f}"
                  f" median {row['pdf_median.sigma_nmad']:.4f} huber {row['huber_point.sigma_nmad']:.4f}"
                  f"  outl {row['pdf_mode.outlier_rate']:.3f}  fit {row['fit_seconds']:.0f}s")
        for ps in probe_summaries:
            print(f"probe {ps['variant']} {ps['overrides']} {ps['steps']} steps:")
            for row in ps["summary"]:
                print(f"  {row['method']:20s} {row['n_labelled']:5d} n_seeds {row['n_seeds']}  NMAD median "
                      f"{row['pdf_median.sigma_nmad']:.4f}")
        for name, diag in diagnostics.items():
            print(f"{name} variant:")
            for row in diag["summary"]:
                print(f"  {row['method']:20s} {row['n_labelled']:5d} n_seeds {row['n_seeds']}  NMAD median "
                      f"{row['pdf_median.sigma_nmad']:.4f} huber {row['huber_point.sigma_nmad']:.4f}"
                      f"  outl {row['pdf_median.outlier_rate']:.3f}")

if __name__ == "__main__":
    main()
