"""pzkit estimators inside a real RAIL pipeline: inform -> estimate -> RAIL's evaluator, run by ceci.

The pipeline file is ``examples/rail_pipeline.yml`` (stage settings in ``examples/rail_pipeline_config.yml``):
for ``train_z`` and ``knn_local_linear`` it runs a ``PzkitInformer`` (fits the estimator, writes a ``.pzk``
model with ``pzkit.save``), a ``PzkitEstimator`` (qp ensembles, chunk by chunk) and RAIL's ``SingleEvaluator``.
This script writes the DC2 train/test tables that the pipeline reads, runs ``ceci`` on it exactly as a RAIL user
would, and then compares the metrics RAIL's evaluator reported with ``pzkit.metrics`` on the same ensembles.

    python examples/rail_pipeline.py                 # full DC2: 10,225 train / 20,449 test galaxies
    python examples/rail_pipeline.py --small         # 1,000 / 500 (also: PZKIT_EXAMPLES_SMALL=1)

Outputs (models, PDFs, RAIL metric tables, logs, comparison.json) go to ``--out`` (default rail_pipeline_out/).
Needs the ``rail`` extra (pz-rail-base, which brings ceci) and the ``knn_local_linear`` plugin.
"""

import argparse
import json
import os
import subprocess
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
PIPELINE = os.path.join(HERE, "rail_pipeline.yml")
STAGE_CONFIG = os.path.join(HERE, "rail_pipeline_config.yml")
ESTIMATORS = ("train_z", "knn")  # the suffixes of the stage names in rail_pipeline.yml

#: RAIL SingleEvaluator summary key -> how to compute the same number with pzkit.metrics
RAIL_TO_PZKIT = {
    "cdeloss_redshift": "cde_loss on RAIL's default grid linspace(0, 2.5, 301)",
    "brier_redshift": "brier_score (qp convention) on qp's grid for limits (0, 3), dx 0.01",
    "point_bias_zmode_redshift": "bias_median",
    "point_stats_sigma_mad_zmode_redshift": "sigma_nmad",
    "point_stats_iqr_zmode_redshift": "sigma_iqr",
    "point_outlier_rate_zmode_redshift": "outlier_rate_lsst",
}


def pzkit_metrics(ens, z_true):
    """The numbers RAIL's SingleEvaluator reports, computed with pzkit.metrics on the same ensemble."""
    from qp.metrics.metrics import _calculate_grid_parameters

    from pzkit import metrics as M

    zmode = np.ravel(ens.ancil["zmode"])
    point = M.point_metrics(z_true, zmode)
    return {
        "cdeloss_redshift": M.cde_loss(ens, z_true, np.linspace(0.0, 2.5, 301)),
        "brier_redshift": M.brier_score(ens, z_true, _calculate_grid_parameters((0.0, 3.0), 0.01).grid_values),
        "point_bias_zmode_redshift": point["bias_median"],
        "point_stats_sigma_mad_zmode_redshift": point["sigma_nmad"],
        "point_stats_iqr_zmode_redshift": point["sigma_iqr"],
        "point_outlier_rate_zmode_redshift": point["outlier_rate_lsst"],
    }


def write_inputs(out, n_train, n_test, seed=0):
    """RAIL-style HDF5 tables (columns under the group ``photometry``) with DC2 subsets."""
    import tables_io

    from pzkit.datasets import load_dc2

    dc2 = load_dc2()
    rng = np.random.default_rng(seed)
    paths = {}
    for name, table, n in (("train", dc2.train, n_train), ("test", dc2.validation, n_test)):
        if n is not None and n < len(table):
            table = table.iloc[np.sort(rng.choice(len(table), size=n, replace=False))]
        paths[name] = os.path.join(out, f"dc2_{name}.hdf5")
        tables_io.write({"photometry": {c: table[c].to_numpy() for c in table.columns}}, paths[name])
    return paths


def run_ceci(out, inputs):
    """``ceci examples/rail_pipeline.yml key=value ...``: the command a RAIL user runs."""
    bindir = os.path.dirname(sys.executable)
    ceci = os.path.join(bindir, "ceci")
    if not os.path.exists(ceci):  # the console script is missing (e.g. a zipapp): same entry point
        ceci = None
    cmd = [ceci] if ceci else [sys.executable, "-c", "import sys; from ceci.main import main; sys.exit(main())"]
    cmd += [PIPELINE, f"config={STAGE_CONFIG}", f"inputs.input_train={inputs['train']}",
            f"inputs.input_test={inputs['test']}", f"output_dir={out}", f"log_dir={os.path.join(out, 'logs')}"]
    env = dict(os.environ)
    # ceci launches every stage as `python3 -m ceci ...`: make that this interpreter
    env["PATH"] = bindir + os.pathsep + env.get("PATH", "")
    print("$", " ".join(cmd), flush=True)
    done = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if done.returncode != 0:
        logs = os.path.join(out, "logs")
        tails = ""
        for name in sorted(os.listdir(logs)) if os.path.isdir(logs) else []:
            with open(os.path.join(logs, name)) as fh:
                tails += f"\n--- {name}\n" + "".join(fh.readlines()[-15:])
        raise RuntimeError(f"ceci failed ({done.returncode}):\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}{tails}")
    for line in done.stdout.splitlines():
        if "completed successfully" in line or "Pipeline successful" in line:
            print("  " + line.strip())
    return done


def compare(out, inputs):
    """RAIL's reported metrics next to pzkit's on the ensembles the pipeline wrote."""
    import qp
    import tables_io

    z_true = np.asarray(tables_io.read(inputs["test"])["photometry"]["redshift"], dtype=np.float64)
    result = {}
    for name in ESTIMATORS:
        ens = qp.read(os.path.join(out, f"pz_{name}.hdf5"))
        rail_summary = tables_io.read(os.path.join(out, f"summary_{name}.hdf5"))
        rail = {k: float(np.ravel(v)[0]) for k, v in rail_summary.items()}
        mine = pzkit_metrics(ens, z_true)
        result[name] = {k: {"rail": rail[k], "pzkit": mine[k], "abs_diff": abs(rail[k] - mine[k])} for k in mine}
    return result


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", default=os.environ.get("PZKIT_EXAMPLES_SMALL") == "1",
                        help="1,000 training / 500 test galaxies (also set by PZKIT_EXAMPLES_SMALL=1)")
    parser.add_argument("--n-train", type=int, default=None)
    parser.add_argument("--n-test", type=int, default=None)
    parser.add_argument("--out", default="rail_pipeline_out")
    args = parser.parse_args(argv)
    n_train = args.n_train or (1000 if args.small else None)
    n_test = args.n_test or (500 if args.small else None)

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    inputs = write_inputs(out, n_train, n_test)
    run_ceci(out, inputs)
    result = compare(out, inputs)
    with open(os.path.join(out, "comparison.json"), "w") as fh:
        json.dump(result, fh, indent=2)

    print(f"\n{'metric':40s} " + " ".join(f"{n + ' (RAIL)':>16s} {n + ' (pzkit)':>16s}" for n in ESTIMATORS))
    for key in RAIL_TO_PZKIT:
        print(f"{key:40s} " + " ".join(f"{result[n][key]['rail']:16.6g} {result[n][key]['pzkit']:16.6g}"
                                       for n in ESTIMATORS))
    print("\nBoth columns use RAIL's definitions. point_outlier_rate is the LSST SRD rule, |Δz| > max(0.06, 3σ_IQR):"
          "\nthe cut widens with the scatter, so a method as broad as train_z has few 'outliers' by it. The"
          "\n'outliers' column of `pzkit bench` is the fixed |Δz| > 0.15 (pzkit.metrics.outlier_rate); the LSST"
          "\nrule is pzkit.metrics.outlier_rate_lsst. See docs/metrics.md.")
    worst = max(v["abs_diff"] for r in result.values() for v in r.values())
    print(f"\nlargest |RAIL - pzkit| over all metrics: {worst:.2e}  (outputs in {out})")
    return 0 if worst <= 1e-6 else 1


if __name__ == "__main__":
    sys.exit(main())
