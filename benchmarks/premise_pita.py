"""Premise gate for ``pita``: does photometry beat the supervised CNN at few labels, and lose at many?

    python benchmarks/premise_pita.py [--runs benchmarks/results/pita_candels_like.json] [--out ...]

PITA's paper (CANDELS) finds a photometry-only model better than the supervised CNN below ~10,000 labels and
worse above: the crossing is why a semi-supervised image model helps. The gate of issue 24 asks for that
crossing inside the label range the benchmark runs. This script reads the runs of
``benchmarks/pita_candels_like.py`` (``candels_like``, 3 seeds per label count): the supervised CNN (the
Huber head, the paper's point output) against the random forest on the catalogue colours + F160W that the same
benchmark fits on the same labelled objects (a stand-in for the paper's photometry MLP), per label count.
"""

import argparse
import json

from pzkit.harness import machine_info, write_json


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", default="benchmarks/results/pita_candels_like.json")
    parser.add_argument("--out", default="benchmarks/results/premise_pita.json")
    args = parser.parse_args()
    with open(args.runs) as fh:
        bench = json.load(fh)
    reference = bench["reference_rf_catalogue_colours_sigma_nmad"]
    rows = []
    for s in bench["summary"]:
        if s["method"] != "supervised":
            continue
        n = s["n_labelled"]
        photometry = reference.get(f"observed@{n}")
        if photometry is None:
            continue
        cnn = s["huber_point.sigma_nmad"]
        rows.append({"n_labelled": n, "cnn_sigma_nmad": round(cnn, 4), "photometry_sigma_nmad": round(photometry, 4),
                     "cnn_over_photometry": round(cnn / photometry, 3), "n_seeds": s["n_seeds"]})
    rows.sort(key=lambda r: r["n_labelled"])
    photometry_wins = [r["cnn_over_photometry"] > 1 for r in rows]
    crossing = any(a and not b for a, b in zip(photometry_wins, photometry_wins[1:]))
    for r in rows:
        print(f"n = {r['n_labelled']:>6}: CNN {r['cnn_sigma_nmad']:.4f}, photometry {r['photometry_sigma_nmad']:.4f}, "
              f"CNN/photometry {r['cnn_over_photometry']:.3f}")
    counts = [r["n_labelled"] for r in rows]
    acceptance = [{"criterion": "pita premise: photometry beats the supervised CNN at the smaller label counts and "
                                "loses at the larger ones (a crossing inside the label range run)",
                   "value": {"label_counts": counts, "cnn_over_photometry": [r["cnn_over_photometry"] for r in rows]},
                   "target": "a change from > 1 to < 1 with rising label count", "met": bool(crossing)}]
    for row in acceptance:
        print(f"{'MET' if row['met'] else 'NOT MET'}: {row['criterion']}")
    write_json(args.out, {"machine": machine_info(), "args": vars(args), "source_date": bench.get("date"),
                          "sims": bench.get("sims"), "rows": rows, "acceptance": acceptance})


if __name__ == "__main__":
    main()
