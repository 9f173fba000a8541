"""Print Markdown tables from the committed result files, so BENCHMARKS.md quotes the JSON exactly.

    python benchmarks/render_tables.py            # all known result files present in benchmarks/results/
"""

import json
import os
import sys

HERE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def _load(name):
    path = os.path.join(HERE, name)
    if not os.path.exists(path):
        return None
    with open(path) as fh:
        return json.load(fh)


def _row(entry):
    p, d, c = entry["point"], entry["pdf"], entry["cost"]
    theta = entry.get("som", {}).get("mean_theta_deg")
    return (f"| {entry['name']} | {p['sigma_nmad']:.4f} | {100 * p['outlier_rate']:.2f} % | {d['cde_loss']:.3f} | "
            f"{d['pit_ks']:.3f} | {'—' if theta is None else f'{theta:.1f}°'} | {c['fit_seconds']:.1f} | "
            f"{c['estimate_seconds']:.2f} | {c['objects_per_second']:,.0f} |")


HEADER = ("| estimator | σ_NMAD | outliers >0.15 | CDE loss | PIT KS | mean θ (SOM) | fit s | estimate s | obj/s |\n"
          "|---|---|---|---|---|---|---|---|---|")


def harness_table(report):
    meta = report["meta"]
    lines = [f"{meta['created']} · {meta['machine']['cpu_count']} CPU · {meta['machine']['platform']} · "
             f"train {meta['dataset']['n_train']:,} / test {meta['dataset']['n_test']:,}", "", HEADER]
    lines += [_row(e) if "error" not in e else f"| {e['name']} | failed: {e['error']} |" for e in report["results"]]
    return "\n".join(lines)


def rail_table(h2h):
    lines = [f"{h2h['created']} · {h2h['machine']['cpu_count']} CPU · {h2h['machine']['platform']} · "
             f"train {h2h['dataset']['n_train']:,} / test {h2h['dataset']['n_test']:,}", "",
             HEADER.replace("| estimator |", "| family | estimator |").replace("|---|", "|---|---|", 1)]
    for e in h2h["results"]:
        if "error" in e:
            lines.append(f"| {e['family']} | {e['name']} | failed: {e['error']} |")
        else:
            lines.append(f"| {e['family']} " + _row(e))
    ok = {(e["family"], e["name"]): e for e in h2h["results"] if "error" not in e}
    pz = [e for (f, _), e in ok.items() if f == "pzkit" and e["name"] != "train_z"]
    if ("rail", "KNN") in ok and pz:
        knn = ok[("rail", "KNN")]
        lines += ["", "Ratios pzkit / RAIL KNN (quality: σ_NMAD; time: fit + estimate):", "",
                  "| pzkit estimator | σ_NMAD ratio | time ratio |", "|---|---|---|"]
        t_knn = knn["cost"]["fit_seconds"] + knn["cost"]["estimate_seconds"]
        for e in pz:
            t = e["cost"]["fit_seconds"] + e["cost"]["estimate_seconds"]
            lines.append(f"| {e['name']} | {e['point']['sigma_nmad'] / knn['point']['sigma_nmad']:.3f} | "
                         f"{t / t_knn:.3f} |")
    return "\n".join(lines)


def main():
    out = []
    for name, render in (("dc2_bench.json", harness_table), ("dc2_vs_rail.json", rail_table)):
        data = _load(name)
        if data is not None:
            out += [f"### {name}", "", render(data), ""]
    sys.stdout.write("\n".join(out))


if __name__ == "__main__":
    main()
