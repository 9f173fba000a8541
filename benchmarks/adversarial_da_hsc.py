"""``adversarial_da`` on the ``hsc_udf`` sims: does the adversarial module transfer a source-field CNN to a
shifted, unlabelled target field?

    OMP_NUM_THREADS=1 python benchmarks/adversarial_da_hsc.py [--seeds 0 1 2] [--n 12000] [--epochs 30]
        [--crop 16] [--models baseline da ...] [--out benchmarks/results/adversarial_da_hsc.json]

For each seed, one sims realisation of ``hsc_udf`` (source: COSMOS-UDF-like, labelled; target: XMM-DEEP-like,
0.3 mag shallower (2–3× the pixel noise), 15 % worse seeing, u* instead of u, r and i zero points shifted
by −0.1/+0.1 (r−i by −0.2), higher E(B−V); target labels withheld). The source is split 5:1 into training
and validation. Every model gets the same network, optimiser, epochs, batches and seed; they differ only in:

* ``baseline``: no adversarial module (the paper's v0);
* ``da``: the adversarial module (inverted-label confusion loss, graft at trunk layer 5, magnitude matching
  among the 30 nearest in i) (v2);
* ``da_no_matching``: the same with uniform target draws;
* ``da_pair``: the "same field or not" pair discriminator;
* ``da_paper_disc``: ``da`` with the paper's discriminator width, (156, 156, 128, 128) + FC 256, instead of
  the CPU-scale (32, 32, 32, 32) + FC 64 (≈ 5× the fit time);
* ``baseline_few_labels`` / ``da_few_labels``: ``n_target_labels`` target objects with labels (drawn like
  spec-z: i < 22.5, z < 2) added to the source training set (the paper's v1 / v3): the field-identity leak.

Target metrics are computed on every target object except those few labelled ones (the same objects for
every model), using the true redshifts only to score: σ_MAD (= σ_NMAD) and outlier rate (|Δz| > 0.15) of the
PDF median; Wasserstein-1 between the stacked-PDF n(z) and the true n(z) in six i bins (< 20, 20–21, …,
24–25); the share of PDFw > 1.5 (overall and at 24 < i < 25); a post-hoc domain probe (logistic regression,
5-fold CV accuracy, balanced source-validation vs target objects, on the standardised, flattened graft-layer
features of member 0, and the same on their channel means); and the source-validation σ_MAD and outlier rate.

CPU scale (what the committed numbers use, one thread per process on a 2-core machine): centre-cropped
16×16 stamps (2.7″) instead of 32×32, branch width 8, trunk (16, 16, 32, 32, 32, 32), FC 64, discriminator
(32, 32, 32, 32) + FC 64 instead of (156, 156, 128, 128), 30 epochs instead of 50, one member instead of
10, 5,000 source / 6,000 target objects instead of ~155,000 / 100,000, 160 bins over 0 < z < 4.
"""

import argparse
import os
import platform
import time

import numpy as np

import pzkit
import pzkit.sims
from pzkit.harness import write_json
from pzkit.metrics import bias_median, outlier_rate, sigma_nmad, wasserstein_nz

MAG_BINS = [(-np.inf, 20.0), (20.0, 21.0), (21.0, 22.0), (22.0, 23.0), (23.0, 24.0), (24.0, 25.0)]
MODELS = ("baseline", "da", "da_no_matching", "da_pair", "baseline_few_labels", "da_few_labels", "da_paper_disc")


def crop(images, size):
    s = images.shape[-1]
    if size >= s:
        return images
    a = (s - size) // 2
    return np.ascontiguousarray(images[:, :, a:a + size, a:a + size])


def probe_accuracy(feat_source, feat_target, seed):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    m = min(len(feat_source), len(feat_target))
    rng = np.random.default_rng(seed)
    a = feat_source[rng.choice(len(feat_source), m, replace=False)]
    b = feat_target[rng.choice(len(feat_target), m, replace=False)]
    X = np.vstack([a, b])
    y = np.r_[np.zeros(m), np.ones(m)]
    clf = make_pipeline(StandardScaler(), LogisticRegression(C=0.1, max_iter=3000))
    return float(cross_val_score(clf, X, y, cv=5).mean())


def evaluate(est, Xs_val, zs_val, Xt, zt, imag_t, seed):
    from pzkit.nn.core import grid_bins

    edges, centres = grid_bins(est.zgrid_)
    out = {}
    ens = est.estimate_pdf(Xt)
    zp = np.asarray(ens.ancil["zmedian"])
    pdfw = np.asarray(ens.ancil["pdfw"])
    probs = est._probabilities(Xt)
    out["target"] = {"n": int(len(zt)), "sigma_mad": float(sigma_nmad(zt, zp)),
                     "outlier_rate": float(outlier_rate(zt, zp)),
                     "bias": bias_median(zt, zp),
                     "pdfw_gt_1.5": float(np.mean(pdfw > 1.5))}
    ok = pdfw < 1.5
    out["target_pdfw_lt_1.5"] = {"n": int(ok.sum()), "sigma_mad": float(sigma_nmad(zt[ok], zp[ok])),
                                 "outlier_rate": float(outlier_rate(zt[ok], zp[ok]))}
    per_bin = []
    for lo, hi in MAG_BINS:
        sel = (imag_t >= lo) & (imag_t < hi)
        row = {"i_lo": lo if np.isfinite(lo) else None, "i_hi": hi, "n": int(sel.sum())}
        if sel.sum() >= 10:
            # the stacked n(z) as the summed class probabilities at the bin centres
            row["w1"] = wasserstein_nz(zt[sel], centres, probs[sel].sum(axis=0))
            row["pdfw_gt_1.5"] = float(np.mean(pdfw[sel] > 1.5))
            row["sigma_mad"] = float(sigma_nmad(zt[sel], zp[sel]))
            row["outlier_rate"] = float(outlier_rate(zt[sel], zp[sel]))
            row["mean_zpred"] = float(zp[sel].mean())
            row["mean_ztrue"] = float(zt[sel].mean())
        per_bin.append(row)
    out["target_by_imag"] = per_bin
    zps = np.asarray(est.predict(Xs_val))
    out["source_val"] = {"n": int(len(zs_val)), "sigma_mad": float(sigma_nmad(zs_val, zps)),
                         "outlier_rate": float(outlier_rate(zs_val, zps))}
    fs, ft = est.graft_features(Xs_val), est.graft_features(Xt[:len(Xs_val) * 2])
    out["probe_accuracy"] = probe_accuracy(fs, ft, seed)
    # the same probe on the channel means (spatially pooled maps): does the domain signal left sit in the
    # spatial layout (the target's wider PSF) or in what the channels respond to?
    channels = int(est.trunk_widths[est.graft_layer - 1])
    out["probe_accuracy_pooled"] = probe_accuracy(fs.reshape(len(fs), channels, -1).mean(axis=2),
                                                  ft.reshape(len(ft), channels, -1).mean(axis=2), seed)
    return out, zp


def run_seed(seed, args, net, results, out_path):
    t0 = time.time()
    res = pzkit.sims.make("hsc_udf", args.n, images=True, random_state=seed)
    src, tgt = res.split("source"), res.split("target")
    mcol = src.mag_column.format(band=src.ref_band)
    Xs_all, zs_all = crop(src.images, args.crop), src.catalog["redshift"].to_numpy()
    ms_all = src.catalog[mcol].to_numpy()
    Xt, zt = crop(tgt.images, args.crop), tgt.catalog["redshift"].to_numpy()
    mt = tgt.catalog[mcol].to_numpy()
    rng = np.random.default_rng(1000 + seed)
    perm = rng.permutation(len(zs_all))
    n_val = len(perm) // 6
    val, tr = perm[:n_val], perm[n_val:]
    # a few "spec-z" labels in the target field, drawn like the paper's: bright and mostly z < 2
    cand = np.flatnonzero((mt < 22.5) & (zt < 2.0))
    lab = rng.choice(cand, min(args.n_target_labels, len(cand)), replace=False)
    keep = np.setdiff1d(np.arange(len(zt)), lab)
    seed_res = {"data_s": round(time.time() - t0, 1), "n_source_train": int(len(tr)), "n_source_val": int(n_val),
                "n_target": int(len(zt)), "n_target_labels": int(len(lab)),
                "target_label_z_range": [float(zt[lab].min()), float(zt[lab].max())] if len(lab) else None,
                "models": {}}
    done = results["seeds"].get(str(seed), {}).get("models", {}) if args.resume else {}
    seed_res["models"].update(done)
    results["seeds"][str(seed)] = seed_res
    for name in args.models:
        if name in done:
            continue
        params = dict(net, random_state=seed)
        X, y, ms = Xs_all[tr], zs_all[tr], ms_all[tr]
        if name.endswith("few_labels"):
            X, y, ms = np.concatenate([X, Xt[lab]]), np.r_[y, zt[lab]], np.r_[ms, mt[lab]]
        if name.startswith("baseline"):
            params["adversarial"] = False
        if name == "da_no_matching":
            params["magnitude_matching"] = False
        if name == "da_pair":
            params["discriminator"] = "pair"
        if name == "da_paper_disc":  # the paper's discriminator width (the plugin's defaults)
            params["disc_widths"], params["disc_fc_widths"] = (156, 156, 128, 128), (256,)
        est = pzkit.make_estimator("adversarial_da", **params)
        t1 = time.time()
        est.fit(X, y, X_target=Xt, mag_source=ms, mag_target=mt)
        fit_s = time.time() - t1
        metrics, zp = evaluate(est, Xs_all[val], zs_all[val], Xt[keep], zt[keep], mt[keep], seed)
        metrics["fit_s"] = round(fit_s, 1)
        metrics["final_disc_acc"] = (float(est.history_[0][-1]["disc_acc"])
                                     if est.adversarial_used_ else None)
        if len(lab):
            lo, hi = zt[lab].min(), zt[lab].max()
            faint = mt[keep] > 23
            metrics["target_faint_frac_pred_in_label_range"] = float(np.mean((zp[faint] >= lo) & (zp[faint] <= hi)))
            metrics["target_faint_frac_true_in_label_range"] = float(
                np.mean((zt[keep][faint] >= lo) & (zt[keep][faint] <= hi)))
        seed_res["models"][name] = metrics
        print(f"seed {seed} {name:20s} fit {fit_s:6.1f}s  target σ {metrics['target']['sigma_mad']:.4f} "
              f"η {metrics['target']['outlier_rate']:.4f}  PDFw>1.5 {metrics['target']['pdfw_gt_1.5']:.3f}  "
              f"probe {metrics['probe_accuracy']:.3f}  source σ {metrics['source_val']['sigma_mad']:.4f} "
              f"η {metrics['source_val']['outlier_rate']:.4f}  W1 "
              + " ".join(f"{r.get('w1', float('nan')):.3f}" for r in metrics["target_by_imag"]), flush=True)
        results["machine"]["loadavg_end"] = list(os.getloadavg())
        write_json(out_path, results)


def _model_summary(rows):
    mean = lambda f: float(np.mean([f(r) for r in rows]))  # noqa: E731
    out = {
        "target_sigma_mad": mean(lambda r: r["target"]["sigma_mad"]),
        "target_outlier_rate": mean(lambda r: r["target"]["outlier_rate"]),
        "target_pdfw_gt_1.5": mean(lambda r: r["target"]["pdfw_gt_1.5"]),
        "target_pdfw_gt_1.5_i24_25": mean(lambda r: r["target_by_imag"][-1].get("pdfw_gt_1.5", np.nan)),
        "target_w1_by_imag": [float(np.mean([r["target_by_imag"][k].get("w1", np.nan) for r in rows]))
                              for k in range(len(MAG_BINS))],
        "target_w1_by_imag_seed_std": [float(np.std([r["target_by_imag"][k].get("w1", np.nan) for r in rows]))
                                       for k in range(len(MAG_BINS))],
        "probe_accuracy": mean(lambda r: r["probe_accuracy"]),
        "source_val_sigma_mad": mean(lambda r: r["source_val"]["sigma_mad"]),
        "source_val_outlier_rate": mean(lambda r: r["source_val"]["outlier_rate"]),
        "fit_s": mean(lambda r: r["fit_s"]),
    }
    pooled = [r["probe_accuracy_pooled"] for r in rows if "probe_accuracy_pooled" in r]
    if pooled:  # added later than the other metrics: runs before it lack it
        out["probe_accuracy_pooled"] = float(np.mean(pooled))
        out["probe_accuracy_pooled_n_seeds"] = len(pooled)
    if "target_faint_frac_pred_in_label_range" in rows[0]:
        out["target_faint_frac_pred_in_label_range"] = mean(lambda r: r["target_faint_frac_pred_in_label_range"])
        out["target_faint_frac_true_in_label_range"] = mean(lambda r: r["target_faint_frac_true_in_label_range"])
    return out


def summarise(results):
    """Means over the seeds each model ran on; every model is compared with the baseline on the same seeds."""
    seeds = results["seeds"]
    summary = {}
    for name in MODELS:
        have = [k for k, s in seeds.items() if name in s["models"]]
        if not have:
            continue
        summary[name] = dict(_model_summary([seeds[k]["models"][name] for k in have]), seeds=[int(k) for k in have])
        if name == "baseline":
            continue
        paired = [k for k in have if "baseline" in seeds[k]["models"]]
        if not paired:
            continue
        s = _model_summary([seeds[k]["models"][name] for k in paired])
        base = _model_summary([seeds[k]["models"]["baseline"] for k in paired])
        summary[name]["vs_baseline"] = {
            "seeds": [int(k) for k in paired],
            "target_sigma_mad_gain": 1 - s["target_sigma_mad"] / base["target_sigma_mad"],
            "target_outlier_gain": 1 - s["target_outlier_rate"] / max(base["target_outlier_rate"], 1e-12),
            "w1_better_in_bins": [bool(a < b) for a, b in zip(s["target_w1_by_imag"], base["target_w1_by_imag"])],
            "pdfw_gt_1.5_change": s["target_pdfw_gt_1.5"] - base["target_pdfw_gt_1.5"],
            "source_sigma_mad_change": s["source_val_sigma_mad"] / base["source_val_sigma_mad"] - 1,
            "source_outlier_change": s["source_val_outlier_rate"] / max(base["source_val_outlier_rate"], 1e-12) - 1,
        }
    return summary


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--n", type=int, default=12000)
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--crop", type=int, default=16)
    ap.add_argument("--n-target-labels", type=int, default=300)
    ap.add_argument("--models", nargs="+", default=list(MODELS), choices=MODELS)
    ap.add_argument("--resume", action="store_true", help="keep the (seed, model) results already in --out")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "adversarial_da_hsc.json"))
    ap.add_argument("--merge", nargs="+", metavar="JSON",
                    help="combine the seeds of result files written by parallel runs into --out, then exit")
    args = ap.parse_args()
    if args.merge:
        import json

        parts = [json.load(open(p)) for p in args.merge]
        seeds = {}
        for part in parts:   # a seed may be split over files by model
            for k, v in part["seeds"].items():
                seeds.setdefault(k, dict(v, models={}))["models"].update(v["models"])
        merged = dict(parts[0], seeds=dict(sorted(seeds.items(), key=lambda kv: int(kv[0]))),
                      wall_s=[p["wall_s"] for p in parts], merged_from=args.merge)
        merged["config"] = dict(merged["config"], models=sorted({m for v in seeds.values() for m in v["models"]},
                                                                key=MODELS.index))
        merged["summary"] = summarise(merged)
        write_json(args.out, merged)
        return
    import torch

    torch.set_num_threads(1)
    net = dict(zmin=0.0, zmax=4.0, nzbins=161, branch_width=8, trunk_widths=(16, 16, 32, 32, 32, 32),
               fc_widths=(64,), graft_layer=5, disc_widths=(32, 32, 32, 32), disc_fc_widths=(64,),
               max_epochs=args.epochs, batch_size=64, lr=1e-3, n_members=1, device="cpu")
    results = {
        "benchmark": "adversarial_da_hsc",
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"description": "2-core CPU container, shared with parallel jobs (load average recorded)",
                    "platform": platform.platform(), "cpus": os.cpu_count(), "torch_threads": 1,
                    "loadavg_start": list(os.getloadavg())},
        "config": {"preset": "hsc_udf", "n": args.n, "crop": args.crop, "epochs": args.epochs,
                   "n_target_labels": args.n_target_labels, "network": net, "models": args.models,
                   "mag_bins": [[None if not np.isfinite(lo) else lo, hi] for lo, hi in MAG_BINS]},
        "seeds": {},
    }
    if args.resume and os.path.exists(args.out):
        import json

        with open(args.out) as fh:
            old = json.load(fh)
        results["seeds"] = old.get("seeds", {})
        results["config"]["models"] = sorted(set(old["config"]["models"]) | set(args.models), key=MODELS.index)
        results["machine"]["earlier_runs"] = [old["machine"]] + old["machine"].get("earlier_runs", [])
    t0 = time.time()
    for seed in args.seeds:
        run_seed(seed, args, net, results, args.out)
        results["summary"] = summarise(results)
        results["wall_s"] = round(time.time() - t0, 1)
        write_json(args.out, results)
    results["summary"] = summarise(results)
    results["wall_s"] = round(time.time() - t0, 1)
    results["machine"]["loadavg_end"] = list(os.getloadavg())
    write_json(args.out, results)
    for name, s in results["summary"].items():
        print(name, {k: (np.round(v, 4) if isinstance(v, float) else v) for k, v in s.items()})


if __name__ == "__main__":
    main()
