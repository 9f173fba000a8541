"""Property suite (hypothesis). ``HYPOTHESIS_PROFILE=ci`` (default) or ``thorough``; see _pzfuzz.py.

At the end of the session the number of cases per entry point and their outcomes are printed; with
``PZKIT_FUZZ_LEDGER=path.json`` they are also written there (docs/reliability.md quotes them).
"""

import json
import os
import sys

sys.path.insert(0, os.path.dirname(__file__))

import _pzfuzz  # noqa: E402  (registers and loads the hypothesis profile)


def pytest_terminal_summary(terminalreporter):
    ledger = _pzfuzz.LEDGER
    if not ledger:
        return
    tr = terminalreporter
    tr.section(f"pzkit property suite: cases per entry point (profile {_pzfuzz.PROFILE})")
    total = 0
    for entry in sorted(ledger):
        counts = ledger[entry]
        n = sum(counts.values())
        total += n
        detail = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
        tr.write_line(f"{entry:<44} {n:>6}  ({detail})")
    tr.write_line(f"{'total':<44} {total:>6}")
    path = os.environ.get("PZKIT_FUZZ_LEDGER")
    if path:
        with open(path, "w") as fh:
            json.dump({"profile": _pzfuzz.PROFILE, "cases": {k: dict(v) for k, v in ledger.items()}}, fh, indent=2)
