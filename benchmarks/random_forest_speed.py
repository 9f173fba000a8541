"""Per-row cost of ``random_forest``'s compiled loops against sklearn's tree traversal, one thread.

    python benchmarks/random_forest_speed.py       # -> benchmarks/results/random_forest_speed.json

The forest is the scale benchmark's (defaults, 100 trees, fitted on 20,000 ``lsst_like`` objects, seed 7; taken
from the scale cache when it is there); the rows are 4,096 other ``lsst_like`` objects sorted as
``estimate_pdf`` sorts them. Timed, best of ``--repeats``: the compiled walk against ``tree.apply`` over the
100 trees (sklearn), the compiled leaf density, and ``estimate_pdf`` per row on 25,000 fresh rows.
"""

import argparse
import json
import os
import platform
import sys
import time

os.environ["OMP_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)


def best(func, repeats):
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        func()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--out", default=os.path.join(HERE, "results", "random_forest_speed.json"))
    args = p.parse_args(argv)
    import pzkit
    import pzkit.sims
    import scale
    from threadpoolctl import threadpool_limits

    from pzkit_random_forest._kernels import kernel_operands, leaf_density, walk

    model = pzkit.load(scale.fit_model("random_forest"))
    features, est = model.steps[0][1], model.steps[-1][1]
    est.set_params(n_jobs=1)
    sim = pzkit.sims.make("lsst_like", 29_096, random_state=11)
    table = features.transform(sim.catalog)
    X = np.asarray(table, dtype=np.float64)
    X32 = np.ascontiguousarray(X[:4096], dtype=np.float32)
    rows = np.ascontiguousarray(X32[est._traversal_order(X32)])
    n, T = rows.shape[0], len(est.forest_.estimators_)
    kernel = kernel_operands(est._kernel())
    leaves = walk(rows, *est._walk_tables, np.empty((n, T), np.int32))
    out = (np.empty((n, est.zgrid_.size)), np.empty(n), np.empty(n))
    order = np.arange(n)
    res = {}
    with threadpool_limits(1):
        res["walk_us_per_row"] = best(lambda: walk(rows, *est._walk_tables, np.empty((n, T), np.int32)),
                                      args.repeats) / n * 1e6
        res["sklearn_apply_us_per_row"] = best(
            lambda: [t.apply(rows, check_input=False) for t in est.forest_.estimators_], 3) / n * 1e6
        res["density_us_per_row"] = best(
            lambda: leaf_density(leaves, est._leaf_blocks, est.zgrid_, float(est.spread), *kernel, order, *out),
            args.repeats) / n * 1e6
        fresh = table.iloc[4096:] if hasattr(table, "iloc") else table[4096:]
        t0 = time.perf_counter()
        est.estimate_pdf(fresh)
        res["estimate_pdf_us_per_row_fresh_rows"] = (time.perf_counter() - t0) / len(fresh) * 1e6
    res = {k: round(v, 2) for k, v in res.items()}
    res.update(date=time.strftime("%Y-%m-%d"), machine=f"{platform.machine()}, {os.cpu_count()} cores",
               rows=n, trees=T, nodes=int(est._walk_tables[1].shape[0]), leaf_entries=int(est.leaf_pdf_.nnz),
               threads=1, loadavg=os.getloadavg())
    with open(args.out, "w") as fh:
        json.dump(res, fh, indent=1)
    print(json.dumps(res))
    return 0


if __name__ == "__main__":
    sys.exit(main())
