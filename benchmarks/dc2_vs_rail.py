"""Head-to-head on DC2: RAIL's own estimators against every installed pzkit estimator, in one process,
on the same split, scored by the same pzkit metric code.

Needs the optional benchmark extra (``make bench-rail`` installs it):
``pz-rail-sklearn pz-rail-flexzboost pz-rail-dnf pz-rail-cmnn``.

Usage::

    python benchmarks/dc2_vs_rail.py [--rail KNN FlexZBoost ...] [--pzkit NAME ...] [--n-train N --n-test N]
        [--out benchmarks/results/dc2_vs_rail.json]

RAIL runs with its defaults except the shared set-up: grid 0–3 with 301 points (``zmin``, ``zmax``,
``nzbins``), ``hdf5_groupname="photometry"``, point estimate = mode (RAIL's ``zmode`` ancil). Each RAIL
stage is informed on the training split and estimates the validation split in one chunk.
"""

import argparse
import os
import sys
import tempfile
import time

import numpy as np

import pzkit
from pzkit.harness import machine_info, measure, make_context, score_ensemble, write_json

# name -> (module, informer, estimator, extra config); None informer = estimator needs no training stage
RAIL_ESTIMATORS = {
    "FlexZBoost": ("rail.estimation.algos.flexzboost", "FlexZBoostInformer", "FlexZBoostEstimator", {}),
    "DNF": ("rail.estimation.algos.dnf", "DNFInformer", "DNFEstimator", {}),
    "KNN": ("rail.estimation.algos.k_nearneigh", "KNearNeighInformer", "KNearNeighEstimator", {}),
    "CMNN": ("rail.estimation.algos.cmnn", "CMNNInformer", "CMNNEstimator", {}),
    "SklNeurNet": ("rail.estimation.algos.sklearn_neurnet", "SklNeurNetInformer", "SklNeurNetEstimator", {}),
    "TrainZ": ("rail.estimation.algos.train_z", "TrainZInformer", "TrainZEstimator", {}),
}
GRID = dict(zmin=0.0, zmax=3.0, nzbins=301)


def _as_rail_table(df):
    # fresh writable copies: several RAIL stages replace non-detections in place
    return {"photometry": {c: np.array(df[c], copy=True) for c in df.columns}}


def run_rail(name, train, test, workdir):
    import importlib

    from rail.core.data import DataStore

    DataStore.allow_overwrite = True
    module, informer_name, estimator_name, extra = RAIL_ESTIMATORS[name]
    mod = importlib.import_module(module)
    common = dict(hdf5_groupname="photometry", **GRID, **extra)
    cwd = os.getcwd()
    os.chdir(workdir)  # RAIL stages write their model and output files into the working directory
    try:
        informer = getattr(mod, informer_name).make_stage(name=f"inform_{name}", model=f"{name}.pkl", **common)
        _, fit_s, fit_mb = measure(lambda: informer.inform(_as_rail_table(train)))
        estimator = getattr(mod, estimator_name).make_stage(
            name=f"estimate_{name}", model=informer.get_handle("model"), chunk_size=len(test) + 1, **common)
        handle, est_s, est_mb = measure(lambda: estimator.estimate(_as_rail_table(test)))
    finally:
        os.chdir(cwd)
    ens = handle.data
    return ens, {"fit_seconds": fit_s, "estimate_seconds": est_s,
                 "objects_per_second": len(test) / est_s, "peak_rss_mb": max(fit_mb, est_mb)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rail", nargs="*", default=list(RAIL_ESTIMATORS), help="RAIL estimators to run")
    parser.add_argument("--pzkit", nargs="*", default=None, help="pzkit estimators (default: all installed)")
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--n-test", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="benchmarks/results/dc2_vs_rail.json")
    args = parser.parse_args(argv)

    dc2 = pzkit.datasets.load_dc2()
    rng = np.random.default_rng(args.seed)
    train, test = dc2.train, dc2.validation
    if args.n_train:
        train = train.iloc[np.sort(rng.choice(len(train), args.n_train, replace=False))]
    if args.n_test:
        test = test.iloc[np.sort(rng.choice(len(test), args.n_test, replace=False))]
    y_test = test["redshift"].to_numpy(np.float64)
    ctx = make_context(dc2.features().fit_transform(test), y_test, random_state=args.seed)
    zgrid = np.linspace(GRID["zmin"], GRID["zmax"], GRID["nzbins"])
    results = []

    def record(family, name, ens, zmode, cost):
        metrics, _ = score_ensemble(ens, zmode, zgrid, ctx)
        entry = {"family": family, "name": name, **{k: metrics[k] for k in ("point", "pdf", "bias", "som")},
                 "cost": cost}
        results.append(entry)
        p, d = metrics["point"], metrics["pdf"]
        print(f"{family:>5} {name:<18} σ_NMAD {p['sigma_nmad']:.4f}  out {100 * p['outlier_rate']:5.2f} %  "
              f"CDE {d['cde_loss']:7.3f}  PIT-KS {d['pit_ks']:.3f}  fit {cost['fit_seconds']:7.2f} s  "
              f"est {cost['estimate_seconds']:7.2f} s", flush=True)

    with tempfile.TemporaryDirectory() as workdir:
        for name in args.rail:
            try:
                ens, cost = run_rail(name, train, test, workdir)
            except Exception as exc:
                print(f" rail {name}: FAILED {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
                results.append({"family": "rail", "name": name, "error": f"{type(exc).__name__}: {exc}"})
                continue
            zmode = np.ravel(ens.ancil["zmode"]) if ens.ancil and "zmode" in ens.ancil else \
                pzkit.pdf.summarize(ens, zgrid)["zmode"]
            record("rail", name, ens, zmode, cost)

    names = args.pzkit if args.pzkit is not None else pzkit.list_estimators(check_import=True)
    for name in names:
        est = pzkit.make_estimator(name, **GRID)
        if "random_state" in est.get_params():
            est.set_params(random_state=args.seed)
        pipe = pzkit.make_pipeline(dc2.features(), est)
        _, fit_s, fit_mb = measure(lambda: pipe.fit(train, train["redshift"].to_numpy()))
        ens, est_s, est_mb = measure(lambda: pipe.estimate_pdf(test))
        record("pzkit", name, ens, ens.ancil["zmode"], {"fit_seconds": fit_s, "estimate_seconds": est_s,
                                                         "objects_per_second": len(test) / est_s,
                                                         "peak_rss_mb": max(fit_mb, est_mb)})

    out = {"schema": "pzkit-rail-h2h/1", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": machine_info(), "dataset": {"name": "dc2", "n_train": len(train), "n_test": len(test)},
           "grid": GRID, "point_estimate": "mode", "seed": args.seed, "results": results}
    write_json(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
