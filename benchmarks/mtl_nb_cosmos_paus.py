"""MTL-NB on the ``cosmos_paus`` sims: does predicting narrow bands during training improve broad-band photo-z?

    python benchmarks/mtl_nb_cosmos_paus.py [--seeds 5] [--n 21000] [--paper-size] [--label-fraction F]
                                            [--no-controls] [--nb-weights λ ...] [--nb-depth BLUE RED]
                                            [--out ...]

For each seed, one sims realisation (train: i < 23 with 40 narrow bands, about a third with spec-z, a
high-precision photo-z for all; test: i < 25, broad bands only) and these fits, all with the same network
settings and seed:

* ``baseline``: ``baseline_nn`` on the spec-z objects (the paper's "zs"), with as many optimizer steps as the
  MTL net (epochs scaled by n_train / n_labelled), so that training length is not what differs;
* ``mtl``: ``mtl_nb`` variant ``zs+NB`` (spec-z for the redshift head, narrow bands on every training object);
* ``zpaus``: ``mtl_nb`` variant ``zs+zPAUS`` (the simulated high-precision photo-z as the label of every
  training object without spec-z): how much the unlabelled objects could help if their redshifts were known;
* controls on the first seed: ``lambda0`` (``nb_weight=0``), ``shuffled`` (narrow-band rows permuted across
  objects), and the resolution sweep ``avg2``/``avg4``/``avg10`` (targets averaged over groups of 2, 4, 10
  consecutive bands before forming colours).

Metrics on the deep test set, overall, at i > 23 and at true z > 1: σ68, σ_NMAD, outlier rate (|Δz| > 0.15).

CPU budget: by default the network is scaled down (hidden 128:256:128, 40 epochs, lr ÷10 every 15) so that
the whole study runs in minutes on 2 cores; ``--paper-size`` uses the paper's 300:500:1000:500:300 and
100 epochs (4 min per fit on 2 idle cores at n = 42,000; `mtl_nb_cosmos_paus_paper_size.json`). The headline
numbers use the scaled-down setting.
"""

import argparse
import json
import os
import time

import numpy as np

import pzkit
from pzkit.harness import write_json
from pzkit.metrics import outlier_rate, sigma_68, sigma_nmad


def _metrics(z, zp, mask):
    if mask.sum() < 20:
        return None
    return {"n": int(mask.sum()), "sigma68": float(sigma_68(z[mask], zp[mask])),
            "sigma_nmad": float(sigma_nmad(z[mask], zp[mask])), "outliers": float(outlier_rate(z[mask], zp[mask]))}


def _average_bands(nb, group):
    n_groups = nb.shape[1] // group
    return nb[:, : n_groups * group].reshape(len(nb), n_groups, group).mean(axis=2)


def run_seed(seed, n, net, controls, label_fraction=1.0, nb_weights=(), nb_depth=None):
    overrides = {}
    if nb_depth is not None:  # diagnostic: deeper narrow bands (5σ depths of the bluest and reddest band)
        overrides["narrow_bands"] = {"filters": "paus", "depth": list(nb_depth), "error_floor": 0.01}
    sims = pzkit.sims.make("cosmos_paus", n, random_state=seed, **overrides)
    train, test = sims.split("train"), sims.split("test")
    feats = train.features()
    X = feats.fit_transform(train.catalog)
    Xt = feats.transform(test.catalog)
    y = np.where(train.catalog["labelled"].to_numpy(), train.catalog["redshift"].to_numpy(), np.nan)
    if label_fraction < 1:  # label-starved diagnostic: keep a random fraction of the spec-z, narrow bands for all
        keep = np.random.default_rng(1000 + seed).random(len(y)) < label_fraction
        y = np.where(keep, y, np.nan)
    nb = train.narrow_bands[[f"mag_{b}" for b in train.nb_bands]].to_numpy()
    zt = test.catalog["redshift"].to_numpy()
    imag = test.catalog[test.mag_column.format(band=test.ref_band)].to_numpy()
    masks = {"all": np.ones(len(zt), bool), "i>23": imag > 23, "z>1": zt > 1}
    common = dict(zmin=0.0, zmax=1.5, nzbins=301, random_state=seed, **net)
    # The baseline sees only the labelled third, so per epoch it takes a third of the optimizer steps of the MTL
    # net. Equal steps (epochs and schedule scaled by n_train / n_labelled) make the comparison about the
    # narrow bands and not about training length; the lambda=0 and shuffled controls check exactly that.
    lab = np.isfinite(y)
    scale = len(y) / lab.sum()
    base = dict(common, max_epochs=int(round(net["max_epochs"] * scale)), lr_step=int(round(net["lr_step"] * scale)))

    runs = {"baseline": lambda: pzkit.make_estimator("baseline_nn", **base).fit(X[lab], y[lab]),
            "mtl": lambda: pzkit.make_estimator("mtl_nb", variant="zs+NB", **common).fit(X, y, nb=nb),
            # headroom diagnostic: labels for every training object (the paper's zs+zPAUS). If this beats the
            # baseline and zs+NB does not, the unlabelled objects carry information the auxiliary task fails to pass on
            "zpaus": lambda: pzkit.make_estimator("mtl_nb", variant="zs+zPAUS", **common).fit(
                X, y, z_photo=train.catalog["zpaus"].to_numpy())}
    for w in nb_weights:  # λ sweep on every seed (nb_weight=0 is the lambda0 control)
        runs[f"lambda{w:g}"] = (lambda w=w: pzkit.make_estimator("mtl_nb", variant="zs+NB", nb_weight=w, **common)
                                .fit(X, y, nb=nb))
    if controls:
        rng = np.random.default_rng(seed)
        runs["lambda0"] = lambda: pzkit.make_estimator("mtl_nb", variant="zs+NB", nb_weight=0.0, **common).fit(X, y, nb=nb)
        runs["shuffled"] = lambda: pzkit.make_estimator("mtl_nb", variant="zs+NB", **common).fit(
            X, y, nb=nb[rng.permutation(len(nb))])
        for group in (2, 4, 10):
            runs[f"avg{group}"] = (lambda g=group: pzkit.make_estimator("mtl_nb", variant="zs+NB", **common).fit(
                X, y, nb=_average_bands(nb, g)))
    out = {"seed": seed, "n_train": len(X), "n_labelled": int(np.isfinite(y).sum()), "n_test": len(Xt), "runs": {}}
    for name, fit in runs.items():
        t0 = time.perf_counter()
        est = fit()
        zp = est.predict(Xt)
        out["runs"][name] = {"fit_seconds": time.perf_counter() - t0,
                             **{k: _metrics(zt, zp, m) for k, m in masks.items()}}
        r = out["runs"][name]
        print(f"seed {seed} {name:<9} σ68 all {r['all']['sigma68']:.4f}  i>23 {r['i>23']['sigma68']:.4f}  "
              f"z>1 {r['z>1']['sigma68']:.4f}  outliers all {100 * r['all']['outliers']:.2f} % "
              f"i>23 {100 * r['i>23']['outliers']:.2f} %  ({r['fit_seconds']:.0f} s)", flush=True)
    return out


def summarise(seeds):
    summary = {}
    for run in seeds[0]["runs"]:
        for subset in ("all", "i>23", "z>1"):
            for metric in ("sigma68", "sigma_nmad", "outliers"):
                vals = [s["runs"][run][subset][metric] for s in seeds if run in s["runs"] and s["runs"][run][subset]]
                summary.setdefault(run, {}).setdefault(subset, {})[metric] = {
                    "mean": float(np.mean(vals)), "std": float(np.std(vals)), "n_seeds": len(vals)}
    gains = {}
    for subset in ("all", "i>23", "z>1"):
        per_seed = [(s["runs"]["baseline"][subset], s["runs"]["mtl"][subset]) for s in seeds]
        gains[subset] = {
            "sigma68_reduction_mean": float(np.mean([1 - m["sigma68"] / b["sigma68"] for b, m in per_seed])),
            "sigma68_reduction_std": float(np.std([1 - m["sigma68"] / b["sigma68"] for b, m in per_seed])),
            "outlier_reduction_mean": float(np.mean([1 - m["outliers"] / b["outliers"] for b, m in per_seed
                                                     if b["outliers"] > 0])),
            "outlier_reduction_std": float(np.std([1 - m["outliers"] / b["outliers"] for b, m in per_seed
                                                   if b["outliers"] > 0])),
        }
    return summary, gains


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n", type=int, default=21000, help="galaxies per realisation (4/7 train, 3/7 test)")
    parser.add_argument("--paper-size", action="store_true")
    parser.add_argument("--label-fraction", type=float, default=1.0,
                        help="keep this random fraction of the sims' spec-z labels (diagnostic: less label "
                             "information leaves more room for what the narrow bands of unlabelled objects add)")
    parser.add_argument("--no-controls", action="store_true", help="skip the seed-0 controls")
    parser.add_argument("--nb-depth", type=float, nargs=2, default=None, metavar=("BLUE", "RED"),
                        help="5σ depths of the narrow bands (sims default 23.0 22.5): deeper bands, less noisy targets")
    parser.add_argument("--nb-weights", type=float, nargs="*", default=(),
                        help="extra zs+NB fits with these narrow-band loss weights λ on every seed")
    parser.add_argument("--out", default="benchmarks/results/mtl_nb_cosmos_paus.json")
    args = parser.parse_args()
    if args.paper_size:
        net = dict(hidden=(300, 500, 1000, 500, 300), max_epochs=100, lr_step=25, batch_size=512)
    else:
        net = dict(hidden=(128, 256, 128), max_epochs=40, lr_step=15, batch_size=256)
    seeds = [run_seed(seed, args.n, net, controls=(seed == 0 and not args.no_controls),
                      label_fraction=args.label_fraction, nb_weights=args.nb_weights, nb_depth=args.nb_depth)
             for seed in range(args.seeds)]
    summary, gains = summarise(seeds)
    result = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "network": net, "n": args.n,
              "label_fraction": args.label_fraction, "nb_weights": list(args.nb_weights),
              "nb_depth": args.nb_depth,
              "machine": {"cpu_count": os.cpu_count()}, "seeds": seeds, "summary": summary, "mtl_gain": gains}
    write_json(args.out, result)
    print(json.dumps(gains, indent=2))


if __name__ == "__main__":
    main()
