"""Foundation acceptance numbers: the README's two commands in a fresh clone, and `import pzkit` cost.

    python benchmarks/foundation.py [--repo .] [--out benchmarks/results/foundation.json]

Clones the repository's HEAD into a new temporary directory, runs `make bench` (set-up + main job) and
`make test` there with wall-clock timing, then measures `python -X importtime -c "import pzkit"` with the
fresh environment (median of 5) and checks that neither `import pzkit` nor `pzkit.list_estimators()`
imports torch. The result carries an ``acceptance`` list; ``--rescore`` recomputes it for an existing result.
"""

import argparse
import json
import os
import platform
import re
import statistics
import subprocess
import tempfile
import time


def _run(cmd, cwd):
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    return proc, time.perf_counter() - t0


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--repo", default=".")
    parser.add_argument("--out", default="benchmarks/results/foundation.json")
    parser.add_argument("--rescore", action="store_true",
                        help="recompute the acceptance list of the existing --out result without running anything")
    args = parser.parse_args()
    if args.rescore:
        with open(args.out) as fh:
            result = json.load(fh)
        result["acceptance"] = acceptance(result)
        with open(args.out, "w") as fh:
            json.dump(result, fh, indent=2)
        for row in result["acceptance"]:
            print(f"{'MET' if row['met'] else 'NOT MET'}: {row['criterion']}: {row['value']}")
        return
    repo = os.path.abspath(args.repo)
    commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True).stdout.strip()
    result = {"commit": commit, "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count()},
              "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    with tempfile.TemporaryDirectory() as tmp:
        clone = os.path.join(tmp, "pzkit")
        subprocess.run(["git", "clone", "-q", repo, clone], check=True)
        for target in ("bench", "test"):
            proc, wall = _run(["make", target], clone)
            tail = (proc.stdout + proc.stderr).strip().splitlines()[-12:]
            result[f"make_{target}"] = {"returncode": proc.returncode, "wall_seconds": round(wall, 1), "tail": tail}
            print(f"make {target}: rc={proc.returncode} wall={wall:.1f} s")
            print("\n".join("    " + line for line in tail))
        py = os.path.join(clone, ".venv", "bin", "python")
        totals = []
        for _ in range(5):
            proc, _ = _run([py, "-X", "importtime", "-c", "import pzkit"], clone)
            last = [line for line in proc.stderr.splitlines() if line.rstrip().endswith("| pzkit")][-1]
            totals.append(int(re.split(r"\|", last)[1]))
            torch_lines = [line for line in proc.stderr.splitlines() if "torch" in line]
        check = ("import sys, pzkit; a = 'torch' in sys.modules; pzkit.list_estimators(check_import=True); "
                 "print(a, 'torch' in sys.modules)")
        proc, _ = _run([py, "-c", check], clone)
        result["import"] = {"importtime_cumulative_us_median": statistics.median(totals),
                            "importtime_samples_us": totals, "torch_lines_in_importtime": len(torch_lines),
                            "torch_after_import_and_list": proc.stdout.strip()}
        print(f"import pzkit: median {statistics.median(totals)} µs cumulative; torch lines: {len(torch_lines)}; "
              f"torch imported after import / after list(check_import=True): {proc.stdout.strip()}")
    result["acceptance"] = acceptance(result)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as fh:
        json.dump(result, fh, indent=2)
    for row in result["acceptance"]:
        print(f"{'MET' if row['met'] else 'NOT MET'}: {row['criterion']}: {row['value']}")


#: the default suite's budget on an idle 2-core machine (DEVELOPERS.md), and pzkit's import cost goal
TEST_BUDGET_S = 300.0
IMPORT_BUDGET_US = 50_000


def acceptance(result):
    """The foundation's numbers against their targets, from a result of :func:`main`."""
    bench, test, imp = result["make_bench"], result["make_test"], result["import"]
    summary = next((line for line in reversed(test["tail"]) if " passed" in line), "")
    no_failures = test["returncode"] == 0 and " failed" not in summary and " error" not in summary
    return [
        {"criterion": "make bench in a fresh clone exits 0", "value": bench["returncode"], "target": "0",
         "met": bench["returncode"] == 0},
        {"criterion": "make test in a fresh clone: no failure", "value": summary, "target": "exit 0, 0 failed",
         "met": no_failures},
        {"criterion": "make test wall seconds", "value": test["wall_seconds"], "target": f"<= {TEST_BUDGET_S:.0f}",
         "met": test["wall_seconds"] <= TEST_BUDGET_S},
        {"criterion": "import pzkit cumulative µs (median of 5)", "value": imp["importtime_cumulative_us_median"],
         "target": f"<= {IMPORT_BUDGET_US}", "met": imp["importtime_cumulative_us_median"] <= IMPORT_BUDGET_US},
        {"criterion": "torch imported by import pzkit / by list_estimators(check_import=True)",
         "value": imp["torch_after_import_and_list"], "target": "False before the plugins are imported",
         "met": imp["torch_after_import_and_list"].split()[:1] == ["False"] and imp["torch_lines_in_importtime"] == 0},
    ]


if __name__ == "__main__":
    main()
