"""DC2 benchmark of the classical catalog plugins (issue 5): ``train_z``, ``knn_local_linear`` and
``random_forest`` on the full DC2 split (train 10,225 / validation 20,449), grid 0–3 with 301 points,
point estimate = mode, every number from the shared harness (``pzkit.evaluate``), defaults only.

Also, in the same process:

* RAIL's KNN (``KNearNeighInformer``/``KNearNeighEstimator`` from pz-rail-sklearn) on the same split,
  scored by the same metric code, for the speed comparison — when ``rail.estimation.algos.k_nearneigh``
  can be imported (``make bench-rail`` installs it); skipped with a note otherwise;
* ``estimate_pdf`` throughput on ``--throughput-rows`` rows (default 1,000,000: the validation features
  tiled), in chunks of ``--chunk`` rows, for ``knn_local_linear`` with n_jobs = 1 and 2 and for
  ``random_forest`` with n_jobs = 2;
* the SOM per-cell slope θ (the paper's attenuation bias) of every method, from the harness's SOM-cell
  diagnostic (``pzkit.metrics.som_cell_diagnostics``; 10×12 map trained on the validation colours).

Usage::

    python benchmarks/dc2_classical.py [--out benchmarks/results/dc2_classical.json]
        [--throughput-rows 1000000] [--chunk 100000] [--no-rail] [--no-throughput]
"""

import argparse
import os
import sys
import time

import numpy as np

import pzkit
from pzkit.harness import machine_info, measure, make_context, score_ensemble, write_json

NAMES = ["train_z", "knn_local_linear", "random_forest"]
TARGETS = {  # issue 5, "Required numbers"
    "knn_local_linear": {"sigma_nmad": 0.0225, "outlier_rate": 0.03, "cde_loss": -6.0, "pit_ks": 0.05},
    "random_forest": {"sigma_nmad": 0.0220, "outlier_rate": 0.03, "cde_loss": -6.0, "pit_ks": 0.05},
}
GRID = dict(zmin=0.0, zmax=3.0, nzbins=301)


def _row(entry):
    p, d, c = entry["point"], entry["pdf"], entry["cost"]
    return {"sigma_nmad": p["sigma_nmad"], "outlier_rate": p["outlier_rate"], "bias_median": p["bias_median"],
            "cde_loss": d["cde_loss"], "pit_ks": d["pit_ks"], "crps": d.get("crps"),
            "fit_seconds": c["fit_seconds"], "estimate_seconds": c["estimate_seconds"],
            "objects_per_second": c["objects_per_second"], "peak_rss_mb": c["peak_rss_mb"],
            "som_mean_theta_deg": (entry.get("som") or {}).get("mean_theta_deg"),
            "som_weighted_mean_theta_deg": (entry.get("som") or {}).get("weighted_mean_theta_deg")}


def _print_row(family, name, row):
    theta = row.get("som_mean_theta_deg")
    print(f"{family:>5} {name:<17} σ_NMAD {row['sigma_nmad']:.4f}  out {100 * row['outlier_rate']:5.2f} %  "
          f"CDE {row['cde_loss']:7.3f}  PIT-KS {row['pit_ks']:.3f}  fit {row['fit_seconds']:6.2f} s  "
          f"est {row['estimate_seconds']:6.2f} s  {row['objects_per_second']:9,.0f} obj/s  "
          f"θ {'n/a' if theta is None else f'{theta:.1f}°'}", flush=True)


def run_rail_knn(dc2):
    """RAIL's KNN on the same split in this process, scored with the harness's metric code."""
    try:
        import rail.estimation.algos.k_nearneigh  # noqa: F401
    except ImportError as exc:
        return {"skipped": f"pz-rail-sklearn not importable ({exc}); run `make bench-rail` to install it"}
    import tempfile

    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from dc2_vs_rail import run_rail

    test = dc2.validation
    y_test = test["redshift"].to_numpy(np.float64)
    ctx = make_context(dc2.features().fit_transform(test), y_test, random_state=0)
    zgrid = np.linspace(GRID["zmin"], GRID["zmax"], GRID["nzbins"])
    with tempfile.TemporaryDirectory() as workdir:
        ens, cost = run_rail("KNN", dc2.train, test, workdir)
    zmode = np.ravel(ens.ancil["zmode"])
    note = "scored as returned (qp.mixmod)"
    try:
        metrics, _ = score_ensemble(ens, zmode, zgrid, ctx)
    except pzkit.InputError as exc:
        # qp.mixmod's CDF can round to just above 1, which pit_stats refuses ("pit values must lie in
        # [0, 1]"); score the same PDFs evaluated on the grid instead (an interp ensemble, renormalised on
        # 0-3) and say so
        import qp

        note = f"scored as qp.interp on the 301-point grid: the mixmod ensemble failed scoring ({exc})"
        ens = qp.Ensemble(qp.interp, data=dict(xvals=zgrid, yvals=np.atleast_2d(ens.pdf(zgrid))))
        metrics, _ = score_ensemble(ens, zmode, zgrid, ctx)
    entry = {"name": "rail KNN", **{k: metrics[k] for k in ("point", "pdf", "som")}, "cost": cost,
             "scoring_note": note}
    print(f"rail KNN: {note}", flush=True)
    return entry


def throughput(dc2, name, n_rows, chunk, **params):
    """estimate_pdf objects/s of a default-fitted estimator on ``n_rows`` tiled validation rows."""
    feats = dc2.features()
    Xtr = feats.fit_transform(dc2.train)
    Xv = feats.transform(dc2.validation)
    X = np.tile(Xv, (int(np.ceil(n_rows / len(Xv))), 1))[:n_rows]
    est = pzkit.make_estimator(name, **params)
    if "random_state" in est.get_params():
        est.set_params(random_state=0)
    est.fit(Xtr, dc2.train["redshift"].to_numpy(np.float64))
    est.estimate_pdf(X[:1000])  # warm-up (imports, allocations)
    total = 0.0
    peak = 0.0
    for start in range(0, n_rows, chunk):
        _, sec, mb = measure(lambda s=start: est.estimate_pdf(X[s:s + chunk]))
        total += sec
        peak = max(peak, mb)
    return {"estimator": name, "params": params, "rows": n_rows, "chunk": chunk, "seconds": total,
            "objects_per_second": n_rows / total, "peak_rss_mb": peak}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/dc2_classical.json")
    parser.add_argument("--throughput-rows", type=int, default=1_000_000)
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--no-rail", action="store_true")
    parser.add_argument("--no-throughput", action="store_true")
    args = parser.parse_args(argv)

    dc2 = pzkit.datasets.load_dc2()
    report = pzkit.evaluate(NAMES, dataset=dc2, random_state=0, progress=False)
    summary = {}
    for entry in report.results:
        if "error" in entry:
            print(f"pzkit {entry['name']}: FAILED {entry['error']}", flush=True)
            summary[entry["name"]] = {"error": entry["error"]}
            continue
        summary[entry["name"]] = _row(entry)
        _print_row("pzkit", entry["name"], summary[entry["name"]])

    rail = None if args.no_rail else run_rail_knn(dc2)
    if rail is not None and "skipped" not in rail:
        summary["rail KNN"] = _row(rail)
        _print_row("rail", "KNN", summary["rail KNN"])
        ours = summary.get("knn_local_linear", {})
        if "fit_seconds" in ours:
            rail_total = summary["rail KNN"]["fit_seconds"] + summary["rail KNN"]["estimate_seconds"]
            ours_total = ours["fit_seconds"] + ours["estimate_seconds"]
            summary["knn_local_linear"]["speedup_vs_rail_knn"] = rail_total / ours_total
            print(f"knn_local_linear fit + estimate is {rail_total / ours_total:.1f}x faster than RAIL KNN "
                  f"({ours_total:.2f} s vs {rail_total:.2f} s)", flush=True)
    elif rail is not None:
        print(f"rail KNN: {rail['skipped']}", flush=True)

    checks = {}
    for name, targets in TARGETS.items():
        row = summary.get(name, {})
        checks[name] = {k: {"target": v, "measured": row.get(k), "met": row.get(k) is not None and row[k] <= v}
                        for k, v in targets.items()}
        print(f"{name}: " + ", ".join(f"{k} {'OK' if c['met'] else 'MISSED'}" for k, c in checks[name].items()))

    tput = []
    if not args.no_throughput:
        for name, params in (("knn_local_linear", {"n_jobs": 1}), ("knn_local_linear", {"n_jobs": 2}),
                             ("random_forest", {"n_jobs": 2})):
            t = throughput(dc2, name, args.throughput_rows, args.chunk, **params)
            tput.append(t)
            print(f"throughput {name} {params}: {t['objects_per_second']:,.0f} obj/s on {t['rows']:,} rows "
                  f"({t['seconds']:.1f} s, chunks of {t['chunk']:,}, peak RSS {t['peak_rss_mb']:.0f} MB)", flush=True)

    out = {"schema": "pzkit-dc2-classical/1",
           "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "command": "python benchmarks/dc2_classical.py " + " ".join(argv if argv is not None else sys.argv[1:]),
           "machine": machine_info(), "summary": summary, "targets": checks,
           "rail_knn": rail, "throughput": tput, "report": report.to_dict()}
    write_json(args.out, out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
