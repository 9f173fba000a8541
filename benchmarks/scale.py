"""Survey-scale benchmark: streaming throughput and peak memory, kill -9 and resume, Dask, compact storage.

    python benchmarks/scale.py                      # everything at the default sizes (1M rows + 250k)
    python benchmarks/scale.py --parts storage      # only the DC2 storage-accuracy table
    python benchmarks/scale.py --sizes 10000000 --parts throughput --estimators random_forest
    python benchmarks/scale.py --parts light        # lighter settings: throughput on 1M rows vs DC2 accuracy
    python benchmarks/scale.py --parts light --light-rows 10000000 --light-only random_forest_n_estimators30
    python benchmarks/scale.py --parts ceiling      # the stream's own cost (train_z: no per-object model work)

The catalogs are LSST-like photometry made with ``pzkit.sims.make("lsst_like", ...)`` in pieces of 250,000
rows (different seeds, ids offset so they stay unique), written to Parquet (row groups of 100,000) in
``$PZKIT_CACHE_DIR/scale`` (default ``~/.cache/pzkit/scale``); they are never committed. Each estimate runs in
a fresh subprocess so that its peak RSS (``ru_maxrss``) is its own. Every throughput number is stored with
``os.getloadavg()`` before and after: the machine these were measured on is shared with other jobs.
Results are merged into ``benchmarks/results/scale.json`` part by part.
"""

import argparse
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
# The environment every measured subprocess gets, taken before anything runs. A distributed LocalCluster (the
# dask part) leaves its worker settings in this process's os.environ (MALLOC_TRIM_THRESHOLD_=65536,
# MALLOC_MMAP_THRESHOLD_, OMP/OPENBLAS/MKL_NUM_THREADS=1, ...), and a child started after it inherited them:
# the ceiling part then ran at 84k objects/s instead of 149k (MALLOC_TRIM_THRESHOLD_=65536 alone: 46k).
CLEAN_ENV = dict(os.environ)
RESULTS = os.path.join(HERE, "results", "scale.json")
PIECE = 250_000
BANDS = "ugrizy"


def cache_dir():
    root = os.environ.get("PZKIT_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".cache", "pzkit")
    d = os.path.join(os.path.expanduser(root), "scale")
    os.makedirs(d, exist_ok=True)
    return d


def load():
    return os.getloadavg()


# ------------------------------------------------------------------------------------------ data and models
def make_catalog(n, seed=100):
    """Parquet catalog of ``n`` LSST-like objects (id + ugrizy magnitudes and errors); reused when present."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    import pzkit.sims

    path = os.path.join(cache_dir(), f"lsst_like_{n}_s{seed}.parquet")
    if os.path.exists(path):
        return path, None
    cols = ["id"] + [f"mag_{b}_lsst" for b in BANDS] + [f"mag_err_{b}_lsst" for b in BANDS]
    tmp = path + ".tmp"
    t0 = time.perf_counter()
    writer = None
    done = 0
    for k, start in enumerate(range(0, n, PIECE)):
        m = min(PIECE, n - start)
        # every row of both splits is used as a photometric target (photometry only)
        sim = pzkit.sims.make("lsst_like", m, random_state=seed + k, cache=False)
        cat = sim.catalog
        table = pa.table({c: (cat[c].to_numpy() + start if c == "id" else cat[c].to_numpy()) for c in cols})
        if writer is None:
            writer = pq.ParquetWriter(tmp, table.schema)
        writer.write_table(table, row_group_size=100_000)
        done += m
        print(f"  catalog {done:,}/{n:,} rows, {done / (time.perf_counter() - t0):,.0f} gal/s", file=sys.stderr)
    writer.close()
    os.replace(tmp, path)
    return path, {"rows": n, "seconds": time.perf_counter() - t0, "gal_per_s": n / (time.perf_counter() - t0),
                  "loadavg_after": load()}


def fit_model(name, params=None, tag="", n_train=20_000, seed=7):
    """``name`` with ``params`` (and ``n_jobs=-1``) fitted on an lsst_like training sample; saved as .pzk."""
    import pzkit
    import pzkit.sims

    path = os.path.join(cache_dir(), f"{name}{tag}_{n_train}.pzk")
    if not os.path.exists(path):
        sim = pzkit.sims.make("lsst_like", n_train, random_state=seed)
        train = sim.catalog  # both splits: the benchmark is about speed, not about a held-out score
        features = pzkit.PhotometryFeatures(bands=BANDS, nondetect="limit", mag_limits=sim.mag_limits,
                                            id_column="id")
        # n_jobs=-1: both cores, as the throughput goal is stated for 2 cores
        jobs = {} if name == "train_z" else {"n_jobs": -1}  # train_z has nothing to parallelise
        model = pzkit.make_pipeline(features, pzkit.make_estimator(name, **jobs, **(params or {})))
        t0 = time.perf_counter()
        model.fit(train, train["redshift"])
        pzkit.save(model, path)
        print(f"  fitted {name}{tag} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    warm_up(path)
    return path


def warm_up(path):
    """One small estimate with the saved model, so that compiled code (the random forest's numba loops) is
    compiled and cached on disk before any timed run: a cold cache added ~4 s to the first child's time."""
    import pzkit
    import pzkit.sims

    sim = pzkit.sims.make("lsst_like", 200, random_state=1)
    pzkit.load(path).estimate_pdf(sim.catalog)


def fit_models():
    return {name: fit_model(name) for name in ("knn_local_linear", "random_forest")}


# ------------------------------------------------------------------------------------------ one run (child)
def child_run(args):
    """Runs in a subprocess: one streaming estimate; prints one JSON line."""
    from pzkit.streaming import estimate_catalog

    l0 = load()
    res = estimate_catalog(args.model, args.input, args.output, storage=args.storage, chunk_size=args.chunk_size,
                           overwrite=args.overwrite, progress=False)
    rss = peak_rss_mb()
    print(json.dumps({"n_rows": res.n_rows, "seconds": res.seconds, "objects_per_second": res.objects_per_second,
                      "n_resumed": res.n_resumed, "bytes_per_object": res.bytes_per_object, "peak_rss_mb": rss,
                      "loadavg_before": l0, "loadavg_after": load()}))


def peak_rss_mb():
    """This process's peak resident memory (VmHWM). ``ru_maxrss`` is not used: Linux carries it over from the
    parent through fork + exec, so a child of a big benchmark process would report the parent's peak."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def spawn(model, catalog, output, storage="quantiles", chunk_size=25_000, overwrite=True):
    cmd = [sys.executable, os.path.abspath(__file__), "_run", "--model", model, "--input", catalog, "--output",
           output, "--storage", storage, "--chunk-size", str(chunk_size)] + (["--overwrite"] if overwrite else [])
    return cmd


def run_child(*a, **k):
    out = subprocess.run(spawn(*a, **k), capture_output=True, text=True, env=CLEAN_ENV)
    if out.returncode != 0:
        raise RuntimeError(f"child failed: {out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------ parts
def part_throughput(models, sizes, estimators, chunk_size, repeats=1):
    """End-to-end streaming throughput; with ``repeats`` > 1 every (estimator, size) runs that many times,
    estimators alternating, and the row keeps the lower median with every run (this machine's speed drifts by
    10–20 % over minutes, so one run is not a measurement of a 10 % change)."""
    rows = []
    for n in sizes:
        catalog, gen = make_catalog(n)
        if gen:
            rows.append({"kind": "catalog", **gen})
        runs = {name: [] for name in estimators}
        for _ in range(repeats):
            for name in estimators:
                out = os.path.join(cache_dir(), f"out_{name}_{n}.hdf5")
                r = run_child(models[name], catalog, out, "quantiles", chunk_size)
                print(f"  {name} {n:,}: {r['objects_per_second']:,.0f} obj/s, peak RSS {r['peak_rss_mb']:.0f} MB, "
                      f"load {r['loadavg_before']}", file=sys.stderr)
                runs[name].append(r)
        for name in estimators:
            r = dict(sorted(runs[name], key=lambda x: x["objects_per_second"])[(len(runs[name]) - 1) // 2])  # lower median
            if repeats > 1:
                r["objects_per_second_runs"] = [x["objects_per_second"] for x in runs[name]]
                r["peak_rss_mb"] = max(x["peak_rss_mb"] for x in runs[name])
            r.update(estimator=name, rows=n, storage="quantiles", chunk_size=chunk_size, repeats=repeats)
            rows.append(r)
    return rows


def _read_output(path):
    import h5py

    with h5py.File(path, "r") as fh:
        return fh["ancil/id"][:], fh["data/locs"][:], {k: fh["ancil"][k][:] for k in fh["ancil"]}


def part_kill(models, n, estimator, chunk_size):
    """kill -9 in the middle of an n-row run, rerun, compare with an uninterrupted run's output."""
    catalog, _ = make_catalog(n)
    ref = os.path.join(cache_dir(), f"out_{estimator}_{n}.hdf5")
    if not os.path.exists(ref):
        run_child(models[estimator], catalog, ref, "quantiles", chunk_size)
    out = os.path.join(cache_dir(), f"killed_{estimator}_{n}.hdf5")
    for p in (out, out + ".partial"):
        if os.path.isdir(p):
            shutil.rmtree(p)
        elif os.path.exists(p):
            os.unlink(p)
    n_chunks = -(-n // chunk_size)
    proc = subprocess.Popen(spawn(models[estimator], catalog, out, "quantiles", chunk_size, overwrite=False),
                            env=CLEAN_ENV, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    parts = out + ".partial"
    t0 = time.perf_counter()
    while proc.poll() is None:
        done = len([f for f in os.listdir(parts) if f.endswith(".npz")]) if os.path.isdir(parts) else 0
        if done >= n_chunks // 2:
            break
        time.sleep(0.1)
    assert proc.poll() is None, "finished before the kill"
    time.sleep(0.5 * (time.perf_counter() - t0) / max(done, 1))  # kill in the middle of the next chunk
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    at_kill = len([f for f in os.listdir(parts) if f.endswith(".npz")])
    leftovers = [f for f in os.listdir(parts) if ".tmp-" in f]
    output_after_kill = os.path.exists(out)
    r = run_child(models[estimator], catalog, out, "quantiles", chunk_size, overwrite=False)
    ids_ref, locs_ref, anc_ref = _read_output(ref)
    ids, locs, anc = _read_output(out)
    return {"estimator": estimator, "rows": n, "chunk_size": chunk_size, "n_chunks": n_chunks,
            "chunks_finished_at_kill": at_kill, "partial_chunk_files_at_kill": len(leftovers),
            "final_output_existed_after_kill": output_after_kill, "rerun_resumed_chunks": r["n_resumed"],
            "rerun_seconds": r["seconds"], "output_rows": int(ids.size),
            "lost": int(np.setdiff1d(ids_ref, ids).size), "duplicated": int(ids.size - np.unique(ids).size),
            "identical_to_uninterrupted": bool(np.array_equal(ids, ids_ref) and np.array_equal(locs, locs_ref)
                                                and all(np.array_equal(anc[k], anc_ref[k]) for k in anc_ref)),
            "loadavg": load()}


def part_dask(models, n, estimator):
    """Dask LocalCluster with 1 and 2 single-threaded workers vs plain streaming of the same catalog."""
    import dask
    import dask.dataframe as dd
    from distributed import Client, LocalCluster

    import pzkit
    import pzkit.distributed as pzd

    catalog, _ = make_catalog(n)
    model = pzkit.load(models[estimator])
    model.steps[-1][1].set_params(n_jobs=1)  # one thread per worker: parallelism comes from the workers
    single = os.path.join(cache_dir(), f"{estimator}_1thread.pzk")
    pzkit.save(model, single)
    rows = []
    r = run_child(single, catalog, os.path.join(cache_dir(), "dask_ref.hdf5"), "quantiles", 25_000)
    rows.append({"mode": "streaming, 1 thread", **r})
    r = run_child(models[estimator], catalog, os.path.join(cache_dir(), "dask_ref2.hdf5"), "quantiles", 25_000)
    rows.append({"mode": "streaming, 2 threads (n_jobs=-1)", **r})
    for workers in (1, 2):
        out_dir = os.path.join(cache_dir(), f"dask_out_{workers}")
        shutil.rmtree(out_dir, ignore_errors=True)
        l0 = load()
        t0 = time.perf_counter()
        with dask.config.set(pzd.worker_config()), \
                LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cl, \
                Client(cl):
            t1 = time.perf_counter()
            ddf = dd.read_parquet(catalog, columns=pzd.required_columns(model), split_row_groups=True)
            # partitions of 25,000 rows, as the streaming chunks: enough of them to keep two workers busy
            ddf = ddf.repartition(npartitions=max(1, n // 25_000))
            out = pzd.estimate_partitions(model, ddf, storage="quantiles")
            out.to_parquet(out_dir)
            t2 = time.perf_counter()
        written = dd.read_parquet(out_dir, columns=["id"]).compute()
        rows.append({"mode": f"dask LocalCluster, {workers} worker(s) x 1 thread", "n_rows": int(len(written)),
                     "partitions": int(ddf.npartitions), "cluster_start_seconds": t1 - t0,
                     "seconds": t2 - t1, "objects_per_second": n / (t2 - t1),
                     "objects_per_second_incl_cluster_start": n / (time.perf_counter() - t0),
                     "loadavg_before": l0, "loadavg_after": load()})
        print(f"  dask {workers}: {rows[-1]['objects_per_second']:,.0f} obj/s", file=sys.stderr)
    return rows


LIGHT = [("knn_local_linear", {}), ("knn_local_linear", {"n_neighbors": 50}), ("knn_local_linear", {"n_neighbors": 30}),
         ("random_forest", {}), ("random_forest", {"n_estimators": 30}),
         ("random_forest", {"n_estimators": 30, "min_samples_leaf": 5})]


def part_light(n, chunk_size, only=None):
    """Lighter settings than the defaults: streaming throughput on ``n`` rows against accuracy on DC2 (fitted on
    the DC2 training split, scored on its validation split by the shared harness): what speed costs."""
    import pzkit

    catalog, _ = make_catalog(n)
    rows = []
    for name, params in LIGHT:
        tag = "".join(f"_{k}{v}" for k, v in params.items())
        if only and name + tag not in only:
            continue
        model = fit_model(name, params, tag)
        r = run_child(model, catalog, os.path.join(cache_dir(), f"light_{name}{tag}.hdf5"), "quantiles", chunk_size)
        report = pzkit.evaluate([(name + tag, pzkit.make_estimator(name, n_jobs=-1, **params))], "dc2",
                                progress=False)
        res = report.results[0]
        row = {"estimator": name, "params": params, "rows": n, "objects_per_second": r["objects_per_second"],
               "peak_rss_mb": r["peak_rss_mb"], "loadavg_before": r["loadavg_before"],
               "dc2_sigma_nmad": res["point"]["sigma_nmad"], "dc2_outlier_rate": res["point"]["outlier_rate"],
               "dc2_cde_loss": res["pdf"]["cde_loss"], "dc2_pit_ks": res["pdf"]["pit_ks"]}
        print(f"  {name}{tag}: {row['objects_per_second']:,.0f} obj/s, DC2 σ_NMAD {row['dc2_sigma_nmad']:.4f} "
              f"CDE {row['dc2_cde_loss']:.3f}", file=sys.stderr)
        rows.append(row)
    return rows


def part_ceiling(n, chunk_size):
    """The stream's own cost: ``train_z`` (every PDF is the training n(z), no per-object model work) through the
    same read → features → ensemble → summaries → encode → write path, with quantile and point storage."""
    catalog, _ = make_catalog(n)
    model = fit_model("train_z")
    rows = []
    for storage in ("quantiles", "point"):
        r = run_child(model, catalog, os.path.join(cache_dir(), f"ceiling_{storage}.hdf5"), storage, chunk_size)
        rows.append({"estimator": "train_z", "storage": storage, "rows": n, **r})
        print(f"  train_z {storage}: {r['objects_per_second']:,.0f} obj/s", file=sys.stderr)
    return rows


def part_storage():
    """Bytes per galaxy and accuracy cost on DC2 of each representation, for knn_local_linear and random_forest."""
    import tempfile

    import qp

    import pzkit
    from pzkit.datasets import load_dc2
    from pzkit.metrics.pdf import cde_loss, pit_stats, pit_values
    from pzkit.storage import Storage, write_ensemble

    dc2 = load_dc2()
    z = dc2.validation["redshift"].to_numpy()
    rows = []
    tmp = tempfile.mkdtemp()
    for name in ("knn_local_linear", "random_forest"):
        model = pzkit.make_pipeline(dc2.features(id_column="id"), pzkit.make_estimator(name, random_state=0))
        model.fit(dc2.train, dc2.train["redshift"])
        ens = model.estimate_pdf(dc2.validation)
        zgrid = model.steps[-1][1].zgrid_
        base = None
        for kind, opts in [("grid", {}), ("quantiles", {"n_quantiles": 16}), ("quantiles", {"n_quantiles": 32}),
                           ("quantiles", {"n_quantiles": 64}), ("mixmod", {"n_components": 3}), ("point", {})]:
            store = Storage(kind, **opts)
            t0 = time.perf_counter()
            data, ancil = store.encode(ens)
            encode_s = time.perf_counter() - t0
            path = os.path.join(tmp, f"{name}_{kind}_{len(rows)}.hdf5")
            write_ensemble(ens, path, store)
            row = {"estimator": name, "storage": kind, **opts, "encode_objects_per_second": ens.npdf / encode_s,
                   "pdf_bytes_per_object": sum(v.nbytes for v in data.values()) / ens.npdf,
                   "ancil_bytes_per_object": sum(np.asarray(v).nbytes for v in ancil.values()) / ens.npdf,
                   "file_bytes_per_object": os.path.getsize(path) / ens.npdf}
            if kind != "point":
                back = qp.read(path)
                cdf = np.asarray(back.cdf(z[:, None])).ravel()
                row["cdf_at_truth_range"] = [float(cdf.min()), float(cdf.max())]
                row["cde_loss"] = float(cde_loss(back, z, zgrid))
                try:
                    row["pit_ks"] = float(pit_stats(pit_values(back, z))["ks"])
                except pzkit.InputError as exc:  # recorded, not hidden: qp's CDF of this representation is broken
                    row["pit_error"] = str(exc)
                    row["pit_ks"] = float(pit_stats(np.clip(cdf, 0, 1))["ks"])
                    row["pit_ks_note"] = "CDF clipped to [0, 1] before the KS test"
                if base is None:
                    base = row
                row["delta_cde_loss"] = row["cde_loss"] - base["cde_loss"]
                row["delta_pit_ks"] = row["pit_ks"] - base["pit_ks"]
            rows.append(row)
            print(f"  {name} {kind} {opts}: {row['pdf_bytes_per_object']:.0f} B/obj, "
                  f"CDE {row.get('cde_loss', float('nan')):.3f}, KS {row.get('pit_ks', float('nan')):.3f}",
                  file=sys.stderr)
    shutil.rmtree(tmp, ignore_errors=True)
    return rows


# ------------------------------------------------------------------------------------------ main
def merge_results(update):
    from pzkit.harness import machine_info, write_json

    data = {}
    if os.path.exists(RESULTS):
        with open(RESULTS) as fh:
            data = json.load(fh)
    data.update(update)
    data["machine"] = {**machine_info(), "note": "2-core CPU container; the 1-minute load average is recorded with "
                                             "every number (other jobs on the machine show up there)"}
    data["date"] = time.strftime("%Y-%m-%d")
    write_json(RESULTS, data)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd")
    c = sub.add_parser("_run")
    for a in ("--model", "--input", "--output", "--storage"):
        c.add_argument(a, required=True)
    c.add_argument("--chunk-size", type=int, required=True)
    c.add_argument("--overwrite", action="store_true")
    p.add_argument("--parts", default="throughput,kill,dask,storage",
                   help="comma-separated: throughput, kill, dask, storage, light (lighter settings: speed vs DC2 "
                        "accuracy), ceiling (the stream's own cost, with train_z)")
    p.add_argument("--light-rows", type=int, default=1_000_000)
    p.add_argument("--light-only", nargs="*", default=None, metavar="NAME",
                   help="light settings to run, by model name, e.g. random_forest_n_estimators30 (default: all)")
    p.add_argument("--sizes", type=int, nargs="+", default=[250_000, 1_000_000])
    p.add_argument("--estimators", nargs="+", default=["knn_local_linear", "random_forest"])
    p.add_argument("--chunk-size", type=int, default=25_000)
    p.add_argument("--repeats", type=int, default=1,
                   help="throughput part: runs per (estimator, size), alternating; the lower median is kept")
    p.add_argument("--kill-rows", type=int, default=1_000_000)
    p.add_argument("--kill-estimator", default="random_forest")
    p.add_argument("--dask-rows", type=int, default=250_000)
    # kNN by default: its model is 2 MB; the default random forest is ~240 MB, which each worker must receive
    p.add_argument("--dask-estimator", default="knn_local_linear")
    args = p.parse_args(argv)
    if args.cmd == "_run":
        return child_run(args)
    parts = args.parts.split(",")
    models = fit_models() if set(parts) - {"storage", "light", "ceiling"} else {}
    if "throughput" in parts:
        rows = part_throughput(models, args.sizes, args.estimators, args.chunk_size, args.repeats)
        old = {}
        if os.path.exists(RESULTS):
            old = {(r.get("estimator"), r.get("rows"), r.get("kind")): r
                   for r in json.load(open(RESULTS)).get("throughput", [])}
        for r in rows:
            old[(r.get("estimator"), r.get("rows"), r.get("kind"))] = r
        merge_results({"throughput": list(old.values())})
    if "kill" in parts:
        merge_results({"kill9": part_kill(models, args.kill_rows, args.kill_estimator, args.chunk_size)})
    if "dask" in parts:
        merge_results({"dask": part_dask(models, args.dask_rows, args.dask_estimator)})
    if "storage" in parts:
        merge_results({"storage_dc2": part_storage()})
    if "ceiling" in parts:
        merge_results({"pipeline_ceiling": part_ceiling(args.light_rows, args.chunk_size)})
    if "light" in parts:
        rows = part_light(args.light_rows, args.chunk_size, args.light_only)
        key = lambda r: (r["estimator"], json.dumps(r["params"], sort_keys=True), r["rows"])  # noqa: E731
        old = {}
        if os.path.exists(RESULTS):
            old = {key(r): r for r in json.load(open(RESULTS)).get("light_models", [])}
        old.update({key(r): r for r in rows})
        merge_results({"light_models": list(old.values())})
    return 0


if __name__ == "__main__":
    sys.exit(main())
