"""Stacked and recalibrated PDFs on DC2, next to their members, through the shared harness (issue 28).

    python benchmarks/stacking_dc2.py [--parts select standard bright] [--cv 3]
                                      [--partial-dir ~/.cache/pzkit/stacking_dc2]
                                      [--out benchmarks/results/stacking_dc2.json]

Three parts, each kept in ``--partial-dir`` per estimator (a rerun resumes):

``select``
    The stack is chosen on the training split only. The members (``knn_local_linear``, ``random_forest``,
    ``baseline_nn``, seed 0) are fitted on ``--cv`` shuffled folds of the DC2 training set; their out-of-fold
    PDFs are pooled three ways (linear pool with CDE-fitted weights, log pool with log-score-fitted weights,
    and the product of the PDFs, a log pool with weights 1) and each pool is read at its mode and median.
    The candidate with the lowest out-of-fold σ_NMAD is the stack of the other parts.
``standard``
    DC2's standard split (train 10,225 / validation 20,449): the members, ``CalibratedPhotoZ`` on the random
    forest and the kNN, the stacks (the linear pool, and the selected one), and the selected stack
    recalibrated, each through ``pzkit.evaluate``.
``bright``
    Training only on DC2 training galaxies with i < 23.5 (2,576), tested on the whole validation set:
    the members, the catalogue methods recalibrated with ``magnitude_column`` = i, the selected stack and
    its recalibrated version, and RAIL's FlexZBoost and KNN on the same split when installed
    (``make bench-rail``).

The issue's acceptance is computed from the parts present; the JSON carries it as ``acceptance``.
"""

import argparse
import json
import os
import sys
import tempfile
import time

import numpy as np

import pzkit
from pzkit.calibration import CalibratedPhotoZ
from pzkit.harness import evaluate, machine_info, make_context, score_ensemble, write_json
from pzkit.metrics import sigma_nmad
from pzkit.model_selection import fit_members, make_folds
from pzkit.pdf import summarize_interp
from pzkit.stacking import StackedPhotoZ, fit_pool_weights, pool_pdfs

MEMBERS = ("knn_local_linear", "random_forest", "baseline_nn")
BRIGHT_LIMIT = 23.5
MAG_COLUMN = 5  # the DC2 features: u-g, g-r, r-i, i-z, z-y, mag_i
CANDIDATES = {"linear_cde": dict(pool="linear", scoring="cde_loss"),
              "log_logscore": dict(pool="log", scoring="log_score"),
              "product": dict(pool="log", weights=[1.0, 1.0, 1.0])}


def members():
    return [(name, pzkit.make_estimator(name, random_state=0)) for name in MEMBERS]


def select(args):
    """Out-of-fold σ_NMAD and CDE loss of every candidate pool on the training split."""
    data = pzkit.get_dataset("dc2")
    X = data.features().fit_transform(data.train)
    y = data.train[data.redshift_column].to_numpy(np.float64)
    zgrid = np.linspace(0.0, 3.0, 301)
    folds = make_folds(args.cv, X, y, random_state=0)
    t0 = time.perf_counter()
    _, oof = fit_members([est for _, est in members()], X, y, zgrid, folds, final=False, verbose=1,
                         desc="select: out-of-fold PDFs")
    rows = []
    for name, options in CANDIDATES.items():
        options = dict(options)
        weights = options.pop("weights", None)
        if weights is None:
            weights = fit_pool_weights(oof, y, zgrid, **options)
        pooled = pool_pdfs(oof, weights, zgrid, pool=options["pool"])
        summary = summarize_interp(zgrid, pooled)
        for point in ("mode", "median"):
            rows.append({"candidate": name, "point_estimate": point, "weights": np.round(weights, 4).tolist(),
                         "oof_sigma_nmad": float(sigma_nmad(y, summary[f"z{point}"]))})
            print(f"select {name:13s} {point:6s} weights {np.round(weights, 3)}  out-of-fold σ_NMAD "
                  f"{rows[-1]['oof_sigma_nmad']:.4f}", flush=True)
    for i, (name, _) in enumerate(members()):
        rows.append({"candidate": f"member:{name}", "point_estimate": "mode",
                     "oof_sigma_nmad": float(sigma_nmad(y, zgrid[np.argmax(oof[i], axis=1)]))})
    best = min((r for r in rows if not r["candidate"].startswith("member:")), key=lambda r: r["oof_sigma_nmad"])
    return {"cv": args.cv, "seconds": time.perf_counter() - t0, "candidates": rows, "selected": best}


def selected_stack(sel, cv):
    best = sel["selected"]
    options = dict(CANDIDATES[best["candidate"]])
    return StackedPhotoZ(estimators=members(), cv=cv, point_estimate=best["point_estimate"], random_state=0,
                         **options)


def variants(part, sel, cv):
    stack = selected_stack(sel, cv)
    label = f"stack_{sel['selected']['candidate']}_{sel['selected']['point_estimate']}"
    mag = {"magnitude_column": MAG_COLUMN} if part == "bright" else {}
    out = [(name, est) for name, est in members()]
    out += [(f"calibrated_{name}", CalibratedPhotoZ(pzkit.make_estimator(name, random_state=0), cv=cv,
                                                    random_state=0, **mag))
            for name in ("knn_local_linear", "random_forest")]
    if part == "standard":  # the published method, without the n(z) tail mixture: the control of the edges
        out += [(f"bordoloi_{name}", CalibratedPhotoZ(pzkit.make_estimator(name, random_state=0), cv=cv,
                                                      tail_weight=None, random_state=0))
                for name in ("knn_local_linear", "random_forest")]
    if part == "standard" and label != "stack_linear_cde_mode":
        out.append(("stack_linear_cde_mode", StackedPhotoZ(estimators=members(), cv=cv, random_state=0)))
    out.append((label, stack))
    out.append((f"calibrated_{label}", CalibratedPhotoZ(stack, cv=cv, random_state=0,
                                                        point_estimate=stack.point_estimate, **mag)))
    return out


def dataset(part):
    data = pzkit.get_dataset("dc2")
    if part == "bright":
        mag = data.features().fit_transform(data.train)[:, MAG_COLUMN]
        data = data.take("train", np.flatnonzero(mag < BRIGHT_LIMIT))
    return data


MAG_BINS = (16.0, 22.0, 23.0, 23.5, 24.0, 24.5, 25.0, 30.0)


def pit_by_magnitude(pit, mag):
    """PIT KS and the standard deviation of the probit of the PIT (1 when calibrated) per i-magnitude bin."""
    from scipy.stats import kstest, norm

    rows = []
    for lo, hi in zip(MAG_BINS[:-1], MAG_BINS[1:]):
        sel = (mag >= lo) & (mag < hi)
        if sel.sum() < 50:
            continue
        u = np.clip(pit[sel], 1e-3, 1 - 1e-3)
        rows.append({"i_min": lo, "i_max": hi, "n": int(sel.sum()), "pit_ks": float(kstest(u, "uniform").statistic),
                     "probit_sd": float(np.std(norm.ppf(u)))})
    return rows


def calibration_summary(label, model, data, ens):
    """What a CalibratedPhotoZ learned: ε and the edge bins of N per magnitude bin."""
    if not isinstance(model, CalibratedPhotoZ):
        return None
    return {"tail_weight": model.tail_weight_, "magnitude_edges": model.magnitude_edges_.tolist(),
            "pit_density_first_last": model.pit_density_[:, [0, -1]].tolist(),
            "n_pit_bins": int(model.pit_density_.shape[1])}


def sigma_nmad_boot_se(z_true, z_phot, n_boot=200, seed=0):
    """Bootstrap standard error of σ_NMAD over the test objects."""
    rng = np.random.default_rng(seed)
    n = z_true.size
    return float(np.std([sigma_nmad(z_true[i], z_phot[i]) for i in (rng.integers(0, n, n) for _ in range(n_boot))]))


def entry_of(report, label):
    entry = report.results[0]
    if "error" in entry:
        raise RuntimeError(f"{label}: {entry['error']}")
    arrays = report.arrays[label]
    return {"name": label, "sigma_nmad_boot_se": sigma_nmad_boot_se(arrays["z_true"], arrays["z_phot"]), "class": entry["class"], "point": entry["point"], "pdf": entry["pdf"],
            "cost": entry["cost"], "n_fit_rows": entry.get("n_fit_rows"),
            "pit_hist50": np.histogram(arrays["pit"], bins=50, range=(0, 1))[0].tolist(),
            "pit_by_magnitude": pit_by_magnitude(arrays["pit"], arrays["magnitude"]),
            **({"calibration": entry["extra"]["calibration"]} if "calibration" in entry.get("extra", {}) else {})}


def run_rail_on(part, data):
    """RAIL FlexZBoost and KNN on the same split, scored by the same code; skipped when not installed."""
    try:
        import rail.estimation.algos.flexzboost  # noqa: F401
        import rail.estimation.algos.k_nearneigh  # noqa: F401
    except ImportError as exc:
        return {"skipped": f"RAIL estimators not importable ({exc}); run `make bench-rail`"}
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from dc2_vs_rail import run_rail

    test = data.validation
    y_test = test[data.redshift_column].to_numpy(np.float64)
    ctx = make_context(data.features().fit_transform(test), y_test, random_state=0)
    zgrid = np.linspace(0.0, 3.0, 301)
    out = {}
    with tempfile.TemporaryDirectory() as workdir:
        for name in ("FlexZBoost", "KNN"):
            ens, cost = run_rail(name, data.train, test, workdir)
            zmode = np.ravel(ens.ancil["zmode"]) if ens.ancil and "zmode" in ens.ancil else \
                pzkit.pdf.summarize(ens, zgrid)["zmode"]
            try:
                metrics, arrays = score_ensemble(ens, zmode, zgrid, ctx)
            except pzkit.InputError:  # qp.mixmod's CDF can round just above 1: score it on the grid instead
                from pzkit.pdf import interp_ensemble, pdf_on_grid

                ens = interp_ensemble(zgrid, pdf_on_grid(ens, zgrid))
                metrics, arrays = score_ensemble(ens, zmode, zgrid, ctx)
            out[f"rail_{name}"] = {"name": f"rail_{name}", "point": metrics["point"], "pdf": metrics["pdf"],
                                   "cost": cost, "pit_hist50": np.histogram(arrays["pit"], 50, (0, 1))[0].tolist(),
                                   "pit_by_magnitude": pit_by_magnitude(arrays["pit"], arrays["magnitude"])}
            print(f"{part} rail_{name}: σ_NMAD {metrics['point']['sigma_nmad']:.4f} CDE "
                  f"{metrics['pdf']['cde_loss']:.3f} KS {metrics['pdf']['pit_ks']:.3f}", flush=True)
    return out


def run_part(part, sel, partial_dir, cv):
    results = {}
    data = dataset(part)
    for label, est in variants(part, sel, cv):
        path = os.path.join(partial_dir, f"{part}_{label}.json")
        if os.path.exists(path):
            with open(path) as fh:
                results[label] = json.load(fh)
            continue
        t0 = time.perf_counter()
        report = evaluate([(label, est)], dataset=data, progress=False, random_state=0,
                          extra_metrics={"calibration": calibration_summary})
        results[label] = entry_of(report, label)
        write_json(path, results[label])
        r = results[label]
        print(f"{part} {label}: σ_NMAD {r['point']['sigma_nmad']:.4f} out {100 * r['point']['outlier_rate']:.2f} % "
              f"CDE {r['pdf']['cde_loss']:.3f} KS {r['pdf']['pit_ks']:.3f} edges {r['pdf']['pit_edge_low']:.2f} "
              f"{r['pdf']['pit_edge_high']:.2f} fit {r['cost']['fit_seconds']:.0f} s ({time.perf_counter() - t0:.0f} s)",
              flush=True)
    path = os.path.join(partial_dir, f"{part}_rail.json")
    if os.path.exists(path):
        with open(path) as fh:
            rail = json.load(fh)
    else:
        rail = run_rail_on(part, data) if part == "bright" else {}
        if "skipped" not in rail:
            write_json(path, rail)
    results.update({k: v for k, v in rail.items() if k != "skipped"})
    if "skipped" in rail:
        results["rail_skipped"] = rail["skipped"]
    return results


def bad_input_errors():
    """The three bad inputs of the issue, each must raise a one-line error."""
    X = np.random.default_rng(0).normal(size=(60, 3))
    y = np.random.default_rng(1).uniform(0.1, 2.0, 60)
    cases = {
        "a stack of one member": lambda: StackedPhotoZ([("rf", pzkit.make_estimator("random_forest"))]).fit(X, y),
        "members with different grids": lambda: StackedPhotoZ(
            [("rf", pzkit.make_estimator("random_forest")),
             ("knn", pzkit.make_estimator("knn_local_linear", zmax=4.0))]).fit(X, y),
        "a magnitude column that does not exist": lambda: CalibratedPhotoZ(
            pzkit.make_estimator("random_forest"), magnitude_column="mag_i").fit(X, y),
    }
    out = {}
    for name, case in cases.items():
        try:
            case()
        except pzkit.InputError as exc:
            out[name] = {"error": f"{type(exc).__name__}: {exc}", "one_line": "\n" not in str(exc)}
        else:
            out[name] = {"error": None, "one_line": False}
    return out


def acceptance(out):
    acc = []

    def add(criterion, value, target, met):
        acc.append({"criterion": criterion, "value": value, "target": target, "met": bool(met)})

    std = out.get("standard", {})
    sel = out.get("select", {}).get("selected")
    if std and sel:
        label = f"calibrated_stack_{sel['candidate']}_{sel['point_estimate']}"
        s = std.get(label)
        if s:
            se = s.get("sigma_nmad_boot_se")
            add(f"DC2 standard split: σ_NMAD of {label} (bootstrap s.e. {se:.5f})" if se else
                f"DC2 standard split: σ_NMAD of {label}", s["point"]["sigma_nmad"], "<= 0.0175",
                s["point"]["sigma_nmad"] <= 0.0175)
            add(f"DC2 standard split: outliers of {label}", s["point"]["outlier_rate"], "<= 0.022",
                s["point"]["outlier_rate"] <= 0.022)
            add(f"DC2 standard split: CDE loss of {label}", s["pdf"]["cde_loss"], "<= -8.3",
                s["pdf"]["cde_loss"] <= -8.3)
            add(f"DC2 standard split: PIT KS of {label}", s["pdf"]["pit_ks"], "<= 0.02", s["pdf"]["pit_ks"] <= 0.02)
            member_fit = sum(std[m]["cost"]["fit_seconds"] for m in MEMBERS if m in std)
            extra = s["cost"]["fit_seconds"] - member_fit
            add(f"DC2 standard split: extra fit time of {label} over its members' fits (s, 2 cores)", extra,
                "<= 300", extra <= 300)
        for name in ("random_forest", "knn_local_linear"):
            edges = {label: [std[label]["pdf"]["pit_edge_low"], std[label]["pdf"]["pit_edge_high"]]
                     for label in (name, f"calibrated_{name}") if label in std}
            within = [max(max(v), 1 / min(v)) <= 1.3 for v in edges.values() if min(v) > 0]
            if edges:
                add(f"DC2 PIT edges of {name}: first/last of 50 bins within 1.3x of uniform, calibrated or by default",
                    edges, "in [1/1.3, 1.3]", any(within))
    br = out.get("bright", {})
    if br and sel:
        stack = f"stack_{sel['candidate']}_{sel['point_estimate']}"
        rails = {k: br[k]["pdf"]["cde_loss"] for k in ("rail_FlexZBoost", "rail_KNN") if k in br}
        for label in (f"calibrated_{stack}", "calibrated_random_forest", "calibrated_knn_local_linear"):
            if label not in br:
                continue
            ks = br[label]["pdf"]["pit_ks"]
            add(f"DC2 i < 23.5 training: PIT KS of {label}", ks, "<= 0.08", ks <= 0.08)
            cde = br[label]["pdf"]["cde_loss"]
            if rails:
                add(f"DC2 i < 23.5 training: CDE loss of {label} below RAIL FlexZBoost's and KNN's",
                    {"value": cde, **rails}, "< min(RAIL)", cde < min(rails.values()))
            else:
                add(f"DC2 i < 23.5 training: CDE loss of {label} below RAIL FlexZBoost's and KNN's", cde,
                    "< min(RAIL): RAIL not run", False)
            base = label.replace("calibrated_", "")
            if base in br:
                loss = br[label]["point"]["sigma_nmad"] / br[base]["point"]["sigma_nmad"] - 1
                add(f"DC2 i < 23.5 training: σ_NMAD lost to the calibration by {base}", loss, "<= 0.05", loss <= 0.05)
    bad = out.get("bad_input")
    if bad:
        for name, r in bad.items():
            add(f"bad input ({name}) gives a one-line error", r["error"], "one-line InputError", r["one_line"])
    return acc


def markdown(out):
    """The BENCHMARKS.md tables, printed from the results."""
    lines = []
    sel = out.get("select")
    if sel:
        lines += ["| candidate | point | weights | out-of-fold σ_NMAD |", "|---|---|---|---|"]
        lines += [f"| {r['candidate']} | {r['point_estimate']} | {r.get('weights', '')} | {r['oof_sigma_nmad']:.4f} |"
                  for r in sel["candidates"]]
    for part in ("standard", "bright"):
        rows = out.get(part)
        if not rows:
            continue
        lines += ["", f"{part}:", "", "| estimator | σ_NMAD | outliers | CDE loss | PIT KS | PIT first / last bin of 50 "
                  "| fit s |", "|---|---|---|---|---|---|---|"]
        for label, r in rows.items():
            if not isinstance(r, dict):
                continue
            p, d = r["point"], r["pdf"]
            edges = f"{d['pit_edge_low']:.2f} / {d['pit_edge_high']:.2f}" if "pit_edge_low" in d else "—"
            lines.append(f"| {label} | {p['sigma_nmad']:.4f} | {100 * p['outlier_rate']:.2f} % | {d['cde_loss']:.3f} | "
                         f"{d['pit_ks']:.3f} | {edges} | {r['cost']['fit_seconds']:.0f} |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--parts", nargs="+", default=["select", "standard", "bright"],
                        choices=["select", "standard", "bright"])
    parser.add_argument("--cv", type=int, default=3, help="folds of every out-of-fold fit (default 3)")
    parser.add_argument("--partial-dir", default=os.path.expanduser("~/.cache/pzkit/stacking_dc2"))
    parser.add_argument("--out", default="benchmarks/results/stacking_dc2.json")
    args = parser.parse_args(argv)
    os.makedirs(args.partial_dir, exist_ok=True)
    out = {"machine": machine_info(), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "grid": {"zmin": 0.0, "zmax": 3.0, "nzbins": 301}, "members": list(MEMBERS), "cv": args.cv,
           "bright_limit_i": BRIGHT_LIMIT}
    sel_path = os.path.join(args.partial_dir, f"select_cv{args.cv}.json")
    if os.path.exists(sel_path):
        with open(sel_path) as fh:
            out["select"] = json.load(fh)
    elif "select" in args.parts or {"standard", "bright"} & set(args.parts):
        out["select"] = select(args)
        write_json(sel_path, out["select"])
    print(f"selected stack: {out['select']['selected']}", flush=True)
    for part in ("standard", "bright"):
        if part in args.parts:
            out[part] = run_part(part, out["select"], args.partial_dir, args.cv)
    out["bad_input"] = bad_input_errors()
    out["acceptance"] = acceptance(out)
    for a in out["acceptance"]:
        print(f"{'MET ' if a['met'] else 'NOT '} {a['criterion']}: {a['value']} (target {a['target']})")
    write_json(args.out, out)
    print(markdown(out))
    print(f"wrote {args.out}")



if __name__ == "__main__":
    main()
