"""MTL-NB on the ``cosmos_paus`` sims: does predicting narrow bands during training improve broad-band photo-z?

    python benchmarks/mtl_nb_cosmos_paus.py [--seeds 5] [--n 21000] [--paper-size] [--label-fraction F]
                                            [--no-controls] [--nb-weights λ ...] [--nb-depth BLUE RED]
                                            [--out ...]

A configuration over the shared harness (:func:`pzkit.study.run_study`): per seed one sims realisation
(train: i < 23 with 40 narrow bands, about a third with spec-z, a high-precision photo-z for all; test:
i < 25, broad bands only), these estimators with the same network settings and seed, and σ68, σ_NMAD, outlier
rate and bias on the deep test set overall, at i > 23 and at true z > 1:

* ``baseline``: ``baseline_nn`` on the spec-z objects (the paper's "zs"), with as many optimizer steps as the
  MTL net (epochs scaled by n_train / n_labelled), so that training length is not what differs;
* ``mtl``: ``mtl_nb`` variant ``zs+NB``;
* ``zpaus``: ``mtl_nb`` variant ``zs+zPAUS`` (headroom: labels for every training object);
* controls on the first seed (every seed with ``--controls-all-seeds``): ``lambda0`` (``nb_weight=0``, the
  ablation), ``shuffled`` (narrow-band rows permuted across objects) and ``avg2``/``avg4``/``avg10``
  (targets averaged over groups of 2, 4, 10 consecutive bands).

Paired differences are against ``lambda0`` where it ran (same net, batches and steps), else the baseline.
``--partial-dir DIR`` keeps every finished seed and resumes from it.
By default the network is scaled down (hidden 128:256:128, 40 epochs, lr ÷10 every 15); ``--paper-size``
uses the paper's 300:500:1000:500:300 and 100 epochs.
"""

import argparse
import time

from pzkit.datasets import sims_dataset
from pzkit.harness import machine_info, write_json
from pzkit.sims import make
from pzkit.sims.config import get_config
from pzkit.study import run_study

#: The config version the committed results (benchmarks/results/mtl_nb_cosmos_paus*.json) were made with;
#: version 2 (zCOSMOS-like labels, COSMOS templates) is the calibrated one: ``--version 2``.
PRESET = "cosmos_paus@1"
GRID = {"zmin": 0.0, "zmax": 1.5, "nzbins": 301}


def shuffled(nb, rng):
    """Narrow-band rows permuted across objects: the targets keep their distribution, lose their object."""
    return nb[rng.permutation(len(nb))]


def averaged(group):
    def average(nb, rng):
        n_groups = nb.shape[1] // group
        return nb[:, : n_groups * group].reshape(len(nb), n_groups, group).mean(axis=2)

    average.__name__ = f"averaged_over_{group}_bands"
    return average


def _label_fraction(preset):
    labels = get_config(preset)["splits"]["train"]["labels"]
    if labels.get("samples") is not None:
        return sum(sample["fraction"] for sample in labels["samples"])
    return labels["fraction"]


def configuration(net, label_fraction, controls, nb_weights):
    """(estimators, params, input transforms, control label) of one study."""
    fraction = _label_fraction(PRESET) * label_fraction
    # equal optimizer steps: the baseline sees only the labelled fraction of the training rows per epoch
    base = dict(net, max_epochs=int(round(net["max_epochs"] / fraction)), lr_step=int(round(net["lr_step"] / fraction)))
    estimators = [("baseline", "baseline_nn"), ("mtl", "mtl_nb"), ("zpaus", "mtl_nb")]
    params = {"baseline": {**GRID, **base}, "mtl": {**GRID, **net, "variant": "zs+NB"},
              "zpaus": {**GRID, **net, "variant": "zs+zPAUS"}}
    transforms = {}
    for w in nb_weights:
        estimators.append((f"lambda{w:g}", "mtl_nb"))
        params[f"lambda{w:g}"] = {**GRID, **net, "variant": "zs+NB", "nb_weight": w}
    if controls:
        estimators += [("lambda0", "mtl_nb"), ("shuffled", "mtl_nb")] + [(f"avg{g}", "mtl_nb") for g in (2, 4, 10)]
        params["lambda0"] = {**GRID, **net, "variant": "zs+NB", "nb_weight": 0.0}
        for label in ["shuffled"] + [f"avg{g}" for g in (2, 4, 10)]:
            params[label] = {**GRID, **net, "variant": "zs+NB"}
        transforms = {"shuffled": {"narrow_bands": shuffled},
                      **{f"avg{g}": {"narrow_bands": averaged(g)} for g in (2, 4, 10)}}
    control = "lambda0" if controls or 0.0 in nb_weights else "baseline"
    return estimators, params, transforms, control


def acceptance(runs):
    """Issue 25's numbers, from the study whose control is λ = 0 (same net, batches and steps)."""
    study = next((s for s in runs if s["control"] == "lambda0"), None)
    if study is None:
        return [{"criterion": "zs+NB against λ = 0", "value": None, "target": "a study with the λ = 0 control",
                 "met": False}]
    deep = study["paired"]["mtl"]["i>23"]
    s68, out = deep["sigma_68"], deep["outlier_rate"]
    cosmos = study["paired"]["mtl"]["i<23"]["sigma_68"]
    two_sem = s68["sem"] is not None and s68["mean"] is not None and -s68["mean"] > 2 * s68["sem"]
    rows = [
        {"criterion": "zs+NB vs λ = 0: relative σ68 change at i > 23 (mean over seeds)", "value": s68["mean"],
         "target": "<= -0.08", "met": s68["mean"] is not None and s68["mean"] <= -0.08},
        {"criterion": "zs+NB vs λ = 0: σ68 gain at i > 23 above 2 s.e.m.", "value": s68["sem"],
         "target": "-mean > 2 s.e.m.", "met": two_sem},
        {"criterion": "zs+NB vs λ = 0: σ68 at i > 23 better in every seed", "value": s68["n_seeds"],
         "target": ">= 5 seeds, all better", "met": s68["better_in_every_seed"] and s68["n_seeds"] >= 5},
        {"criterion": "zs+NB vs λ = 0: relative outlier change at i > 23", "value": out["mean"],
         "target": "<= -0.20", "met": out["mean"] is not None and out["mean"] <= -0.20},
        {"criterion": "zs+NB vs λ = 0: relative σ68 change at i < 23 (COSMOS-style)", "value": cosmos["mean"],
         "target": "<= -0.05", "met": cosmos["mean"] is not None and cosmos["mean"] <= -0.05},
    ]
    return rows


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--n", type=int, default=21000, help="galaxies per realisation (4/7 train, 3/7 test)")
    parser.add_argument("--paper-size", action="store_true")
    parser.add_argument("--label-fraction", type=float, default=1.0,
                        help="scale the sims' spec-z fraction of the training split (diagnostic: fewer labels leave "
                             "more room for what the narrow bands of unlabelled objects add)")
    parser.add_argument("--no-controls", action="store_true", help="skip the controls")
    parser.add_argument("--controls-all-seeds", action="store_true", help="controls on every seed, not the first")
    parser.add_argument("--nb-depth", type=float, nargs=2, default=None, metavar=("BLUE", "RED"),
                        help="5σ depths of the narrow bands (sims default 23.0 22.5): deeper bands, less noisy targets")
    parser.add_argument("--nb-weights", type=float, nargs="*", default=(),
                        help="extra zs+NB fits with these narrow-band loss weights λ on every seed")
    parser.add_argument("--version", type=int, default=1, help="config version of cosmos_paus (1: the committed "
                        "results; 2: calibrated premises, docs/sims.md)")
    parser.add_argument("--out", default="benchmarks/results/mtl_nb_cosmos_paus.json")
    parser.add_argument("--partial-dir", default=None,
                        help="keep each finished seed here and resume from it (runs longer than a session)")
    args = parser.parse_args()
    global PRESET
    PRESET = f"cosmos_paus@{args.version}"
    if args.paper_size:
        net = dict(hidden=(300, 500, 1000, 500, 300), max_epochs=100, lr_step=25, batch_size=512)
    else:
        net = dict(hidden=(128, 256, 128), max_epochs=40, lr_step=15, batch_size=256)
    overrides = {}
    if args.nb_depth is not None:
        overrides["narrow_bands"] = {"filters": "paus", "depth": list(args.nb_depth), "error_floor": 0.01}
    if args.label_fraction != 1.0:
        labels = get_config(PRESET)["splits"]["train"]["labels"]
        if labels.get("samples") is not None:
            scaled = [{**s, "fraction": s["fraction"] * args.label_fraction} for s in labels["samples"]]
            overrides["splits"] = {"train": {"labels": {"samples": scaled}}}
        else:
            overrides["splits"] = {"train": {"labels": {"fraction": labels["fraction"] * args.label_fraction}}}

    def dataset(seed):
        return sims_dataset(make(PRESET, args.n, random_state=seed, **overrides))

    dataset.__name__ = f"sims:{PRESET} n={args.n}" + (f" with {overrides}" if overrides else "")
    subsets = {"i>23": lambda test: test["mag_i_cosmos"].to_numpy() > 23,
               "i<23": lambda test: test["mag_i_cosmos"].to_numpy() < 23,
               "z>1": lambda test: test["redshift"].to_numpy() > 1}
    seeds = list(range(args.seeds))
    runs = []
    with_controls = [] if args.no_controls else (seeds if args.controls_all_seeds else seeds[:1])
    for group, controls in ((with_controls, True), ([s for s in seeds if s not in with_controls], False)):
        if group:
            estimators, params, transforms, control = configuration(net, args.label_fraction, controls,
                                                                    args.nb_weights)
            runs.append(run_study(estimators, dataset, seeds=group, params=params, subsets=subsets,
                                  control=control, input_transforms=transforms, progress=False,
                                  partial_dir=args.partial_dir))
    for study in runs:
        for label, by_subset in study.get("paired", {}).items():
            s = by_subset["i>23"]["sigma_68"]
            if s["mean"] is not None:
                print(f"{label:<9} vs {study['control']}: σ68 at i > 23 {100 * s['mean']:+.1f} % "
                      f"(s.e.m. {100 * (s['sem'] or 0):.1f} %, {s['n_seeds']} seeds)")
    result = {"created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "network": net, "n": args.n,
              "label_fraction": args.label_fraction, "nb_weights": list(args.nb_weights), "nb_depth": args.nb_depth,
              "machine": machine_info(), "studies": runs, "acceptance": acceptance(runs)}
    write_json(args.out, result)
    for row in result["acceptance"]:
        print(f"{'MET' if row['met'] else 'NOT MET'}: {row['criterion']}: {row['value']} (target {row['target']})")


if __name__ == "__main__":
    main()
