"""Every script in examples/ runs, as a smoke test, with the small-size setting.

Contract for examples: honour ``PZKIT_EXAMPLES_SMALL=1`` (a few thousand objects at most, well under a minute
on two cores), write outputs only below the working directory, and exit with status 0. Each example also takes
``--small`` for people running it by hand.
"""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EXAMPLES_DIR = os.path.join(ROOT, "examples")
EXAMPLES = sorted(f for f in os.listdir(EXAMPLES_DIR) if f.endswith(".py")) if os.path.isdir(EXAMPLES_DIR) else []
#: examples whose small run is done by a dedicated test, which also checks what the example produced
#: (running them twice would only double the suite's time)
COVERED_ELSEWHERE = {"rail_pipeline.py": "test_rail_pipeline.py"}
TIMEOUT_S = 300


def run_example(script, cwd, *args):
    env = dict(os.environ, PZKIT_EXAMPLES_SMALL="1", MPLBACKEND="Agg")
    # examples that start pipelines (ceci runs each stage as `python3 -m ...`) must find this interpreter first
    env["PATH"] = os.path.dirname(sys.executable) + os.pathsep + env.get("PATH", "")
    return subprocess.run([sys.executable, os.path.join(EXAMPLES_DIR, script), *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=TIMEOUT_S)


@pytest.mark.parametrize("script", [e for e in EXAMPLES if e not in COVERED_ELSEWHERE])
def test_example_runs_with_the_small_setting(script, tmp_path):
    done = run_example(script, tmp_path)
    assert done.returncode == 0, f"{script} failed:\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"


def test_every_example_is_smoke_tested():
    assert "sklearn_pipeline.py" in EXAMPLES and "rail_pipeline.py" in EXAMPLES
    for script, test_file in COVERED_ELSEWHERE.items():
        with open(os.path.join(ROOT, "tests", test_file)) as fh:
            assert script in fh.read(), f"{test_file} should run examples/{script}"
