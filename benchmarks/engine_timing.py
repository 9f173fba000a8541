"""Fit times of the five torch plugins on the one training engine: idle machine and a busy one.

Two measurements (issue 23), each fit in a fresh subprocess so that no thread setting leaks between runs:

* ``--part idle``: ``baseline_nn`` fits DC2 (``--epochs``), the other torch plugins their conformance data
  with longer training;
  median of ``--repeats`` fits with this checkout and, with ``--before-src``, with an older checkout
  (``git worktree add /tmp/pzkit_before <rev>``), alternated. Target: the engine's median within ±15 % of
  the older code's.
* ``--part contention``: ``baseline_nn`` on DC2 (paper settings, ``--epochs`` epochs), alternated pairs of an
  idle fit and a fit while one CPU-bound process (a Python busy loop) occupies a core, for torch's fixed
  thread count (``n_threads=None``: the behaviour before the engine) and the engine's ``n_threads="auto"``.
  Target: contended / idle ≤ 1.5 with ``"auto"``.

    python benchmarks/engine_timing.py --part idle --before-src /tmp/pzkit_before
    python benchmarks/engine_timing.py --part contention
    python benchmarks/engine_timing.py --part bound        # 1-thread vs 2-thread idle: the contention floor
"""

import argparse
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: training length of the idle-timing fits, in each code version's own parameter names
IDLE_PARAMS = {
    "new": {
        "mtl_nb": {"max_epochs": 300},
        "bias_cnn": {"max_epochs": 36, "steps_per_epoch": 50, "lr_drop_epoch": 27, "finetune_epochs": 18},
        "adversarial_da": {"max_epochs": 80},
        "pita": {"max_epochs": 80, "pretrain_epochs": 1, "steps_per_epoch": 10},
    },
    "before": {
        "mtl_nb": {"max_epochs": 300},
        "bias_cnn": {"n_iter": 1800, "lr_drop_at": 1350, "n_iter_finetune": 900},
        "adversarial_da": {"max_epochs": 80},
        "pita": {"max_steps": 800, "pretrain_steps": 10},
    },
}
#: the idle comparison: baseline_nn on DC2 (``--epochs``), the others on their conformance data
IDLE_PLUGINS = ("baseline_nn_dc2", "mtl_nb", "bias_cnn", "adversarial_da", "pita")

BUSY_LOOP = "while True:\n    pass\n"


def worker(args):
    """Fit one plugin once; print a JSON line with the fit's wall and CPU time."""
    import pzkit

    if args.plugin == "baseline_nn_dc2":
        from pzkit.datasets import load_dc2

        ds = load_dc2()
        feat = ds.features()
        X, y = feat.fit_transform(ds.train), ds.train["redshift"].to_numpy()
        est = pzkit.make_estimator("baseline_nn", random_state=0, max_epochs=args.epochs)
        if args.n_threads != "default":
            est.set_params(n_threads=None if args.n_threads == "none" else args.n_threads)
        fit_params = {}
    else:
        cls = pzkit.get_estimator_class(args.plugin)
        est = cls._conformance_instance().set_params(random_state=0, **IDLE_PARAMS[args.version][args.plugin])
        from pzkit.testing import _data_for

        data = _data_for(est)
        X, y, fit_params = data.X_train, data.y_train, data.fit_params
    cpu0, wall0 = time.process_time(), time.perf_counter()
    est.fit(X, y, **fit_params)
    print(json.dumps({"wall_s": time.perf_counter() - wall0, "cpu_s": time.process_time() - cpu0}))


def run_worker(plugin, version="new", src=None, n_threads="default", epochs=20):
    """One fit in a fresh interpreter (``src``: an older checkout put first on the path)."""
    env = dict(os.environ)
    if src is not None:  # an older checkout first on the path: its pzkit and plugins shadow the installed ones
        paths = [os.path.join(src, "src")] + [os.path.join(src, "plugins", p, "src") for p in os.listdir(
            os.path.join(src, "plugins"))]
        env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")])
        env["PYTHONPATH"] += os.pathsep + HERE
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--plugin", plugin, "--version", version,
           "--n-threads", str(n_threads), "--epochs", str(epochs)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=src or ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def busy_process():
    return subprocess.Popen([sys.executable, "-c", BUSY_LOOP])


def idle_part(args):
    rows, acceptance = [], []
    for plugin in args.plugins:
        times = {"new": [], "before": []}
        cpu = {"new": [], "before": []}
        for rep in range(args.repeats):
            order = ("new", "before") if rep % 2 == 0 else ("before", "new")
            for version in order:
                if version == "before" and not args.before_src:
                    continue
                res = run_worker(plugin, version, src=args.before_src if version == "before" else None,
                                 epochs=args.epochs)
                times[version].append(res["wall_s"])
                cpu[version].append(res["cpu_s"])
        row = {"plugin": plugin, "new_s": [round(t, 2) for t in times["new"]],
               "new_median_s": round(float(np.median(times["new"])), 2),
               "new_cpu_median_s": round(float(np.median(cpu["new"])), 2)}
        if args.before_src:
            ratio = float(np.median(times["new"]) / np.median(times["before"]))
            row.update(before_s=[round(t, 2) for t in times["before"]],
                       before_median_s=round(float(np.median(times["before"])), 2),
                       before_cpu_median_s=round(float(np.median(cpu["before"])), 2), ratio=round(ratio, 3))
            acceptance.append({"criterion": f"{plugin}: idle fit time, engine / before (median of {args.repeats})",
                               "value": round(ratio, 3), "target": "0.85–1.15", "met": bool(0.85 <= ratio <= 1.15)})
        print(row, flush=True)
        rows.append(row)
    return {"rows": rows, "acceptance": acceptance}


def contention_part(args):
    rows = {"none": {"idle": [], "busy": []}, "auto": {"idle": [], "busy": []}}
    for rep in range(args.repeats):
        for setting in (("none", "auto") if rep % 2 == 0 else ("auto", "none")):
            idle = run_worker("baseline_nn_dc2", n_threads=setting, epochs=args.epochs)["wall_s"]
            proc = busy_process()
            try:
                time.sleep(1.0)  # let the competitor reach full speed
                busy = run_worker("baseline_nn_dc2", n_threads=setting, epochs=args.epochs)["wall_s"]
            finally:
                proc.kill()
                proc.wait()
            rows[setting]["idle"].append(round(idle, 2))
            rows[setting]["busy"].append(round(busy, 2))
            print(setting, "idle", round(idle, 1), "busy", round(busy, 1), flush=True)
    summary = {}
    for setting, r in rows.items():
        ratios = np.array(r["busy"]) / np.array(r["idle"])
        summary[setting] = dict(r, ratios=[round(float(x), 3) for x in ratios],
                                median_ratio=round(float(np.median(ratios)), 3))
    ratio = summary["auto"]["median_ratio"]
    acceptance = [
        {"criterion": "baseline_nn DC2 fit with one competing CPU-bound process / idle, n_threads='auto' "
                      f"(median of {args.repeats} alternated pairs)",
         "value": ratio, "target": "<= 1.5", "met": bool(ratio <= 1.5)},
        {"criterion": "the same ratio before the engine (torch's fixed thread count, n_threads=None); reported",
         "value": summary["none"]["median_ratio"], "target": "reported", "met": True},
    ]
    return {"epochs": args.epochs, "settings": summary, "acceptance": acceptance}


def bound_part(args):
    """The best any thread setting can do with one core taken: a 1-thread fit on the idle machine, against the
    default (2-thread) idle fit, alternated. A competitor on one core leaves one core, so the contended /
    idle ratio cannot go below this."""
    t1, t2 = [], []
    for rep in range(args.repeats):
        for n in ((1, "auto") if rep % 2 == 0 else ("auto", 1)):
            wall = run_worker("baseline_nn_dc2", n_threads=n, epochs=args.epochs)["wall_s"]
            (t1 if n == 1 else t2).append(round(wall, 2))
            print(n, round(wall, 1), flush=True)
    bound = float(np.median(t1) / np.median(t2))
    return {"epochs": args.epochs, "one_thread_idle_s": t1, "auto_idle_s": t2,
            "acceptance": [{"criterion": "lower bound of the contended / idle ratio: 1-thread idle fit / 2-thread "
                                         f"idle fit (median of {args.repeats}); reported",
                            "value": round(bound, 3), "target": "reported", "met": True}]}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("idle", "contention", "bound"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20, help="baseline_nn DC2 epochs")
    ap.add_argument("--plugins", nargs="*", default=list(IDLE_PLUGINS))
    ap.add_argument("--before-src", default=None, help="checkout of the code to compare with (idle part)")
    ap.add_argument("--out", default=None)
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--plugin", help=argparse.SUPPRESS)
    ap.add_argument("--version", default="new", help=argparse.SUPPRESS)
    ap.add_argument("--n-threads", default="default", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        if args.n_threads not in ("default", "none", "auto"):
            args.n_threads = int(args.n_threads)
        return worker(args)
    if args.part is None:
        ap.error("--part is required")
    from pzkit.harness import machine_info, write_json

    t0 = time.time()
    result = {"idle": idle_part, "contention": contention_part, "bound": bound_part}[args.part](args)
    before_rev = None
    if args.before_src:
        before_rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=args.before_src,
                                    capture_output=True, text=True).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    out = {"benchmark": f"engine timing ({args.part})", "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "commit": commit, "before_commit": before_rev, "machine": machine_info(),
           "platform": platform.platform(), "repeats": args.repeats, "total_s": round(time.time() - t0, 1),
           **result}
    path = args.out or os.path.join(HERE, "results", f"engine_timing_{args.part}.json")
    write_json(path, out)
    print(json.dumps(out["acceptance"], indent=1))


if __name__ == "__main__":
    main()
