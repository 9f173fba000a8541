"""GPU smoke test: every torch plugin fits and predicts a tiny case with ``device="cuda"``, matching the CPU.

For each of the five torch plugins: fit its conformance instance on its conformance data once on the CPU and
once on CUDA (same seed), predict the test rows with both, and compare. Kernels differ between devices, so the
weights are not bit-equal; the target is agreement of the point estimates: median |Δz|/(1+z) ≤ 0.05 between
the two fits, and both finite. Runs in well under 3 minutes on one GPU.

    python benchmarks/gpu_smoke.py [--out benchmarks/results/gpu_smoke.json]

Without a CUDA device it says so, writes nothing and exits with status 2.
"""

import argparse
import os
import sys
import time

import numpy as np

PLUGINS = ("baseline_nn", "mtl_nb", "bias_cnn", "adversarial_da", "pita")
TOLERANCE = 0.05


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(os.path.dirname(__file__), "results", "gpu_smoke.json"))
    args = ap.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("gpu_smoke: no CUDA device visible; nothing measured")
        return 2
    import pzkit
    from pzkit.harness import machine_info, write_json
    from pzkit.testing import _data_for

    t0 = time.time()
    rows, acceptance = [], []
    for name in PLUGINS:
        est = pzkit.get_estimator_class(name)._conformance_instance().set_params(random_state=0)
        data = _data_for(est)
        preds, secs = {}, {}
        for device in ("cpu", "cuda"):
            t = time.time()
            fitted = est.set_params(device=device).fit(data.X_train, data.y_train, **data.fit_params)
            preds[device] = fitted.predict(data.X_test, **data.predict_params)
            secs[device] = round(time.time() - t, 2)
        dz = np.abs(preds["cuda"] - preds["cpu"]) / (1 + preds["cpu"])
        ok = bool(np.isfinite(preds["cuda"]).all() and np.median(dz) <= TOLERANCE)
        rows.append({"plugin": name, "seconds": secs, "median_dz": float(np.median(dz)), "max_dz": float(dz.max())})
        acceptance.append({"criterion": f"{name}: fit + predict on CUDA, median |Δz|/(1+z) against the CPU fit",
                           "value": round(float(np.median(dz)), 4), "target": f"<= {TOLERANCE}", "met": ok})
        print(rows[-1], flush=True)
    total = round(time.time() - t0, 1)
    acceptance.append({"criterion": "whole smoke test wall time (s)", "value": total, "target": "<= 180",
                       "met": total <= 180})
    write_json(args.out, {"benchmark": "GPU smoke test", "machine": machine_info(),
                          "device": torch.cuda.get_device_name(0),
                          "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "rows": rows,
                          "acceptance": acceptance})
    return 0 if all(a["met"] for a in acceptance) else 1


if __name__ == "__main__":
    sys.exit(main())
