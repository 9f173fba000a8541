"""The cost of ``knn_local_linear``'s exact 100-neighbour search, per object and thread, with every exact method
at hand: the floor under the kNN's survey-scale throughput (issue 10).

    python benchmarks/knn_search_floor.py            # -> benchmarks/results/knn_search_floor.json

Data: the scale benchmark's training sample (20,000 ``lsst_like`` objects, seed 7) as the reference set and
16,384 other ``lsst_like`` objects as queries, both as the kNN sees them (``PhotometryFeatures`` colours +
magnitude, scaled by the training standard deviations: 6-D). One thread everywhere; best of ``--repeats``.
Methods: scipy's ``cKDTree`` (the plugin's default; also with the queries sorted lexicographically, for cache
locality), scikit-learn's ``KDTree`` (single- and dual-tree), ``pykdtree`` when it is installed (it is not a
pzkit dependency), and a grouped search that exploits the queries' density: queries are grouped by their
nearest of M "centres" c, and a group's neighbours lie within d_k(c) + 2·max|q − c| of c (triangle inequality),
so one ball query per group gives a candidate set that is searched by brute force. Every method's neighbours
are checked against cKDTree's (distances equal to 1e-12).
"""

import argparse
import json
import os
import platform
import sys
import time

# one thread for every library, set before any is imported: pykdtree's OpenMP pool ignores threadpoolctl and
# otherwise runs on both cores (21 µs/object "per thread" measured that way, 37 µs on one)
os.environ["OMP_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402

HERE = os.path.dirname(os.path.abspath(__file__))
K = 100


def features(n, seed):
    import pzkit
    import pzkit.sims

    sim = pzkit.sims.make("lsst_like", n, random_state=seed)
    feats = pzkit.PhotometryFeatures(bands="ugrizy", nondetect="limit", mag_limits=sim.mag_limits)
    return np.asarray(feats.fit_transform(sim.catalog), dtype=np.float64)


def best(func, repeats):
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = func()
        times.append(time.perf_counter() - t0)
    return min(times), out


def grouped_search(tree, X_ref, Xq, n_centres, seed=0):
    """Exact k-NN by candidate sets per group of queries (see the module docstring); returns distances, the mean
    candidate-set size and the mean group size."""
    from scipy.spatial import cKDTree

    centres = X_ref[np.random.default_rng(seed).choice(len(X_ref), n_centres, replace=False)]
    dc, g = cKDTree(centres).query(Xq, k=1)
    dk = tree.query(centres, k=K)[0][:, -1]
    order = np.argsort(g, kind="stable")
    bounds = np.flatnonzero(np.r_[True, g[order][1:] != g[order][:-1], True])
    rmax = np.zeros(n_centres)
    np.maximum.at(rmax, g, dc)
    used = g[order][bounds[:-1]]
    cand = tree.query_ball_point(centres[used], dk[used] + 2 * rmax[used] + 1e-12, workers=1)
    dist = np.empty((len(Xq), K))
    for gi, (a, b) in enumerate(zip(bounds[:-1], bounds[1:])):
        rows, ci = order[a:b], np.asarray(cand[gi])
        diff = Xq[rows][:, None, :] - X_ref[ci][None, :, :]
        dd = np.einsum("ijk,ijk->ij", diff, diff)
        part = np.take_along_axis(dd, np.argpartition(dd, K - 1, axis=1)[:, :K], 1)
        dist[rows] = np.sqrt(np.sort(part, axis=1))
    return dist, float(np.mean([len(c) for c in cand])), len(Xq) / len(used)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n-train", type=int, default=20_000)
    p.add_argument("--n-query", type=int, default=16_384)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--out", default=os.path.join(HERE, "results", "knn_search_floor.json"))
    args = p.parse_args(argv)
    from scipy.spatial import cKDTree
    from sklearn.neighbors import KDTree
    from threadpoolctl import threadpool_limits

    X_ref, Xq = features(args.n_train, 7), features(args.n_query, 11)
    s = X_ref.std(axis=0)
    X_ref, Xq = X_ref / s, Xq / s
    rows = []

    def record(method, seconds, dist, ref, **extra):
        us = seconds / len(Xq) * 1e6
        err = float(np.abs(dist - ref).max()) if ref is not None else 0.0
        rows.append(dict(method=method, us_per_object=round(us, 2), max_distance_difference=err, **extra))
        print(f"  {method}: {us:.1f} µs/object (max |Δd| {err:.1e}) {extra or ''}", file=sys.stderr)

    with threadpool_limits(1):
        tree = cKDTree(X_ref, leafsize=32)
        sec, (ref, _) = best(lambda: tree.query(Xq, k=K, workers=1), args.repeats)
        record("scipy cKDTree (leafsize 32, the plugin's default)", sec, ref, None)
        order = np.lexsort(Xq.T[::-1])
        sec, (d, _) = best(lambda: tree.query(Xq[order], k=K, workers=1), args.repeats)
        record("scipy cKDTree, queries sorted", sec, d, ref[order])
        kd = KDTree(X_ref, leaf_size=32)
        sec, (d, _) = best(lambda: kd.query(Xq, k=K), args.repeats)
        record("sklearn KDTree", sec, d, ref)
        sec, (d, _) = best(lambda: kd.query(Xq, k=K, dualtree=True), 1)
        record("sklearn KDTree, dual tree", sec, d, ref)
        try:
            from pykdtree.kdtree import KDTree as PyKDTree
        except ImportError:
            print("  pykdtree not installed: skipped", file=sys.stderr)
        else:
            for leaf in (16, 32, 64):
                pk = PyKDTree(X_ref, leafsize=leaf)
                sec, (d, _) = best(lambda: pk.query(Xq, k=K), args.repeats)
                record(f"pykdtree (leafsize {leaf})", sec, d, ref)
        for m in (500, 2000, 4000):
            sec, (d, n_cand, group) = best(lambda: grouped_search(tree, X_ref, Xq, m), 1)
            record(f"grouped candidate search, {m} centres", sec, d, ref, mean_candidates=round(n_cand),
                   mean_group_size=round(group, 1))

    fastest = min(r["us_per_object"] for r in rows)
    result = {
        "date": time.strftime("%Y-%m-%d"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "k": K, "n_train": args.n_train, "n_query": args.n_query, "dimensions": int(X_ref.shape[1]),
        "threads": 1, "methods": rows,
        "fastest_us_per_object": fastest,
        "two_core_ceiling_objects_per_second_search_only": round(2e6 / fastest),
        "loadavg": os.getloadavg(),
    }
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=1)
    print(json.dumps({k: v for k, v in result.items() if k != "methods"}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
