"""Does the MTL narrow-band head learn anything on the ``cosmos_paus`` sims? (issue 6 diagnosis)

    python benchmarks/mtl_nb_head_diagnostic.py [--seed 0] [--label-fraction 0.1] [--nb-depth BLUE RED]

One ``mtl_nb`` (zs+NB) fit on 80 % of a sims training sample (the network of ``mtl_nb_cosmos_paus.py``), then the
held-out mean absolute error of its predicted adjacent narrow-band colours against two references: a constant
(the training median of every colour) and a 50-neighbour kNN regression of the colours on the broad-band
features. If the head is no better than the constant, the auxiliary loss carries no information to the trunk.
Also reports the narrow-band magnitude errors. Writes ``benchmarks/results/mtl_nb_head_diagnostic.json``.
"""

import argparse

import numpy as np
import torch
from sklearn.neighbors import KNeighborsRegressor

import pzkit
import pzkit.sims
from pzkit.harness import write_json


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n", type=int, default=42000)
    p.add_argument("--label-fraction", type=float, default=0.1)
    p.add_argument("--nb-depth", type=float, nargs=2, default=None)
    p.add_argument("--out", default="benchmarks/results/mtl_nb_head_diagnostic.json")
    args = p.parse_args()
    overrides = {}
    if args.nb_depth is not None:
        overrides["narrow_bands"] = {"filters": "paus", "depth": list(args.nb_depth), "error_floor": 0.01}
    train = pzkit.sims.make("cosmos_paus", args.n, random_state=args.seed, **overrides).split("train")
    X = train.features().fit_transform(train.catalog)
    mags = train.narrow_bands[[f"mag_{b}" for b in train.nb_bands]].to_numpy()
    colours = mags[:, :-1] - mags[:, 1:]
    y = np.where(train.catalog["labelled"].to_numpy(), train.catalog["redshift"].to_numpy(), np.nan)
    keep = np.random.default_rng(1000 + args.seed).random(len(y)) < args.label_fraction  # as the benchmark
    y = np.where(keep, y, np.nan)
    idx = np.random.default_rng(args.seed).permutation(len(X))
    tr, te = idx[: len(X) * 4 // 5], idx[len(X) * 4 // 5:]
    est = pzkit.make_estimator("mtl_nb", variant="zs+NB", zmin=0.0, zmax=1.5, nzbins=301, random_state=args.seed,
                               hidden=(128, 256, 128), max_epochs=40, lr_step=15, batch_size=256)
    est.fit(X[tr], y[tr], nb=mags[tr])
    module = est.modules_[0].eval()
    with torch.no_grad():
        h = module.trunk(torch.as_tensor((X[te] - est.mean_) / est.scale_, dtype=torch.float32))
        head = module.nb_head(h).numpy()
    finite = np.isfinite(colours[te])

    def mae(pred):
        return float(np.nanmean(np.where(finite, np.abs(pred - colours[te]), np.nan)))

    full = np.isfinite(colours[tr]).all(axis=1)
    knn = KNeighborsRegressor(50).fit(X[tr][full], colours[tr][full])
    errors = train.narrow_bands[[c for c in train.narrow_bands.columns if c.startswith("mag_err")]].to_numpy()
    result = {"seed": args.seed, "label_fraction": args.label_fraction, "nb_depth": args.nb_depth,
              "mae_head": mae(head), "mae_constant_median": mae(np.broadcast_to(np.nanmedian(colours[tr], axis=0),
                                                                               colours[te].shape)),
              "mae_knn_broad_bands": mae(knn.predict(X[te])),
              "median_nb_mag_error": float(np.nanmedian(errors)),
              "median_colour_scatter": float(np.nanmedian(np.nanstd(colours, axis=0)))}
    write_json(args.out, result)
    print(result)


if __name__ == "__main__":
    main()
