"""Science numbers before and after the neural engine: do they move only within seed noise?

Runs, for this checkout and an older one (``--before-src``, e.g. ``git worktree add /tmp/pzkit_before <rev>``),
each version with its own code and its own benchmark scripts, over ``--seeds``:

* ``baseline_nn`` on DC2 (paper settings, ``--dc2-epochs`` epochs): σ_NMAD on the validation split;
* one small configuration of each image benchmark: ``bias_cnn_sdss_like.py`` (Baseline and Step 3 σ_MAD),
  ``adversarial_da_hsc.py`` (source-only and adapted target σ_MAD), ``pita_candels_like.py --part curve``
  (supervised and PITA σ_NMAD of the PDF median).

A metric passes when |mean(after) − mean(before)| ≤ 2·√(sem_after² + sem_before²) + ``--floor`` (the seed
standard errors; the floor keeps two identical-looking seeds from making the test infinitely strict).

    python benchmarks/engine_science.py --before-src /tmp/pzkit_before --seeds 0 1
"""

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

#: the small configurations (same arguments for both versions: the scripts kept their command lines)
CONFIGS = {
    "bias_cnn": ["bias_cnn_sdss_like.py", "--n", "6000", "--n-iter", "1000", "--n-iter-finetune", "600",
                 "--threads", "2"],
    "adversarial_da": ["adversarial_da_hsc.py", "--n", "4000", "--epochs", "6", "--models", "baseline", "da"],
    "pita": ["pita_candels_like.py", "--part", "curve", "--seeds", "1", "--steps", "300", "--counts", "200"],
}


def env_for(src):
    env = dict(os.environ)
    if src is not None:
        paths = [os.path.join(src, "src")] + [os.path.join(src, "plugins", p, "src")
                                               for p in os.listdir(os.path.join(src, "plugins"))]
        env["PYTHONPATH"] = os.pathsep.join(paths + [env.get("PYTHONPATH", "")])
    return env


def dc2_worker(seed, epochs):
    from pzkit.datasets import load_dc2
    from pzkit.metrics import sigma_nmad
    from pzkit_baseline_nn import BaselineNN

    ds = load_dc2()
    feat = ds.features()
    X, y = feat.fit_transform(ds.train), ds.train["redshift"].to_numpy()
    Xv, yv = feat.transform(ds.validation), ds.validation["redshift"].to_numpy()
    est = BaselineNN(random_state=seed, max_epochs=epochs).fit(X, y)
    print(json.dumps({"sigma_nmad": float(sigma_nmad(yv, est.predict(Xv)))}))


def run(cmd, src, cwd, extra_env=None):
    env = env_for(src)
    env.update(extra_env or {})
    out = subprocess.run([sys.executable] + cmd, env=env, cwd=cwd, capture_output=True, text=True)
    if out.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return out.stdout


def one_run(name, version, seed, args, tmp):
    src = args.before_src if version == "before" else None
    root = args.before_src if version == "before" else ROOT
    if name == "baseline_nn_dc2":
        out = run([os.path.abspath(__file__), "--dc2-worker", str(seed), "--dc2-epochs", str(args.dc2_epochs)],
                  src, root)
        return {"sigma_nmad": json.loads(out.strip().splitlines()[-1])["sigma_nmad"]}
    script, *rest = CONFIGS[name]
    path = os.path.join(tmp, f"{name}_{version}_{seed}.json")
    if name == "pita":
        parts = os.path.join(tmp, f"pita_{version}_{seed}")
        os.makedirs(parts, exist_ok=True)
        run([os.path.join(root, "benchmarks", script)] + rest + ["--first-seed", str(seed)], src, root,
            {"PITA_PARTIAL_DIR": parts})
        runs = [r for f in sorted(os.listdir(parts)) for r in json.load(open(os.path.join(parts, f)))["runs"]]
        return {f"{r['method']}_sigma_nmad": r["pdf_median"]["sigma_nmad"] for r in runs}
    run([os.path.join(root, "benchmarks", script)] + rest + ["--seeds", str(seed), "--out", path], src, root)
    res = json.load(open(path))
    if name == "bias_cnn":
        m = res["per_seed"][0]["metrics"]
        return {"baseline_sigma_mad": m["baseline"]["sigma_mad"], "step3_sigma_mad": m["step3"]["sigma_mad"]}
    models = res["seeds"][str(seed)]["models"]
    return {f"{k}_target_sigma_mad": v["target"]["sigma_mad"] for k, v in models.items()}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--before-src")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    ap.add_argument("--configs", nargs="+", default=["baseline_nn_dc2", "bias_cnn", "adversarial_da", "pita"])
    ap.add_argument("--dc2-epochs", type=int, default=100)
    ap.add_argument("--dc2-seeds", type=int, nargs="+", default=None,
                    help="seeds of baseline_nn on DC2 (default: --seeds); its seed noise is small, so more help")
    ap.add_argument("--floor", type=float, default=0.002)
    ap.add_argument("--out", default=os.path.join(HERE, "results", "engine_science.json"))
    ap.add_argument("--partial", default=os.path.join(os.path.expanduser("~"), ".cache", "pzkit",
                                                      "engine_science_partial.json"),
                    help="finished runs, keyed by commits, configuration and seed: a rerun skips them")
    ap.add_argument("--dc2-worker", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.dc2_worker is not None:
        return dc2_worker(args.dc2_worker, args.dc2_epochs)
    if not args.before_src:
        ap.error("--before-src is required")
    from pzkit.harness import machine_info, write_json

    t0 = time.time()
    results, acceptance = {}, []
    before_rev = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=args.before_src, capture_output=True,
                                text=True).stdout.strip()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True,
                            text=True).stdout.strip()
    cache = json.load(open(args.partial)) if os.path.exists(args.partial) else {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.configs:
            per = {"before": [], "after": []}
            seeds = args.dc2_seeds if name == "baseline_nn_dc2" and args.dc2_seeds else args.seeds
            for seed in seeds:
                for version in ("before", "after"):
                    key = f"{version}|{name}|{args.dc2_epochs}|{seed}"
                    if key not in cache:
                        t = time.time()
                        cache[key] = one_run(name, "before" if version == "before" else "new", seed, args, tmp)
                        cache[key]["commit"] = before_rev if version == "before" else commit
                        print(name, version, seed, cache[key], f"{time.time() - t:.0f} s", flush=True)
                        os.makedirs(os.path.dirname(args.partial), exist_ok=True)
                        with open(args.partial, "w") as fh:
                            json.dump(cache, fh)
                    per[version].append(cache[key])
            results[name] = per
            for metric in [m for m in per["after"][0] if m != "commit"]:
                a = np.array([r[metric] for r in per["after"]])
                b = np.array([r[metric] for r in per["before"]])
                sem = np.sqrt(a.var(ddof=1) / a.size + b.var(ddof=1) / b.size) if a.size > 1 else 0.0
                diff = float(a.mean() - b.mean())
                tol = float(2 * sem + args.floor)
                acceptance.append({"criterion": f"{name} {metric}: |after − before| (mean over seeds {seeds})",
                                   "value": round(abs(diff), 5), "target": f"<= {tol:.5f} (2 seed SEM + floor)",
                                   "met": bool(abs(diff) <= tol), "before_mean": round(float(b.mean()), 5),
                                   "after_mean": round(float(a.mean()), 5)})
    commits = sorted({r["commit"] for per in results.values() for rs in per.values() for r in rs})
    write_json(args.out, {"benchmark": "science numbers before/after the neural engine", "commit": commit,
                          "before_commit": before_rev, "run_commits": commits, "seeds": args.seeds, "configs": CONFIGS,
                          "dc2_epochs": args.dc2_epochs, "machine": machine_info(),
                          "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                          "total_s": round(time.time() - t0, 1), "results": results, "acceptance": acceptance})
    print(json.dumps(acceptance, indent=1))


if __name__ == "__main__":
    main()
