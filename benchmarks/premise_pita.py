"""Premise gate for ``pita``: does photometry beat the supervised CNN at few labels, and lose at many?

    python benchmarks/premise_pita.py [--seeds 3] [--counts 300 1000 3000 10000 20000] [--epochs 30]
                                      [--versions 1 2] [--partial-dir DIR] [--out ...]

PITA's paper (CANDELS) finds a photometry-only model better than the supervised CNN below ~10,000 labels and
worse above: the crossing is why a semi-supervised image model helps. The gate of issue 24 asks for that
crossing inside the label range run. Measured with the comparators only, never with PITA itself:

* ``cnn``: ``pita`` in ``mode="supervised"`` with ``bin_weight=0`` (the paper's supervised CNN: the image
  encoder and the Huber head alone, on labelled images only), read on its Huber head. Its training length grows with the labels:
  ``--epochs`` passes over the labelled images (at least 20 steps of 128 per epoch), so the CNN is not
  starved of steps at the large counts.
* ``mlp``: the paper's photometry MLP on the catalogue colours + m_F160W (dereddened, non-detections at the
  1σ limit), with the CNN's redshift head ([128 × 5, 64] → z), Huber loss and schedule, for the same number of
  optimiser steps: the gated comparator. Reported beside it: a random forest on the same photometry, and
  ``baseline_nn`` (a bin classifier read at its PDF mode; a mode is not comparable with a Huber point under
  σ_NMAD, a core width that favours modes).

Data: ``candels_like``, n = 36,000: 32,400 training galaxies, of which the labelled pool (bright-biased
selection, label fraction raised to 0.75 so that 20,000 labels exist) gives each count's labels, drawn per
seed; 3,600 test galaxies. Version 1's catalogue is the true flux plus Gaussian noise; version 2's is measured
on the stamps in 0.7″ apertures (``images.photometry``); stamps, splits and labels are the same in both, so the
CNN runs once and serves both (checked by a hash of its inputs); the gate reads version 2 (``--versions``).
Stamps 32² at 0.06″ binned 2×2 to 16² (0.12″), the network sees 14² crops (±1 px jitter, quarter turns and
flips: no empty corners); 30 passes over the labels (at least 20 steps of 128 per pass) for the CNN and the MLP
alike. Seeds change the label draw and the network initialisation; the sims realisation is fixed. Each
(version, seed, count) is kept in ``--partial-dir`` and a rerun resumes from it.
"""

import argparse
import json
import os
import time

import numpy as np

from pzkit.harness import machine_info, write_json
from pzkit.metrics import sigma_nmad

SIM = dict(n=36000, random_state=0, images={"stamp_size": 32}, splits={"train": {"labels": {"fraction": 0.75}}})
CNN = dict(mode="supervised", zmin=0.0, zmax=4.0, nzbins=201, encoder="small", encoder_widths=(32, 64, 128),
           crop_size=14, jitter=1.0, rotation="dihedral", noise_std=0.5, batch_size=128, lr=1e-3, device="cpu",
           bin_weight=0.0)


def load(version):
    import hashlib

    from pzkit.sims import make

    res = make(f"candels_like@{version}", **SIM)
    cat = res.catalog
    imgs = res.images
    n, c, s, _ = imgs.shape
    imgs = imgs.reshape(n, c, s // 2, 2, s // 2, 2).sum(axis=(3, 5))  # 2×2 binning keeps the flux
    photometry = res.features().fit_transform(cat)
    train = (cat["split"] == "train").to_numpy()
    pool = np.flatnonzero(train & cat["labelled"].to_numpy(bool))
    test = np.flatnonzero(~train)
    labels = np.concatenate([pool, test]).astype(np.int64).tobytes()
    key = hashlib.sha256(imgs.tobytes() + labels).hexdigest()[:16]   # the CNN's inputs: same in every version
    return dict(imgs=imgs, photometry=photometry, z=cat["redshift"].to_numpy(), pool=pool, test=test, key=key)


def steps_for(n_labels, epochs):
    """Optimiser steps of a fit on ``n_labels`` labels: ``epochs`` passes of 128 rows, at least 20 steps each."""
    return epochs * max(20, -(-n_labels // CNN["batch_size"]))


def huber_mlp(X, z, X_test, steps, seed, threads):
    """The paper's photometry MLP, with the supervised CNN's head, loss and schedule: standardised photometry
    → [128 × 5, 64] → one redshift, Huber(δ = 0.15), Adam 1e-3 with a cosine decay, batches of 128, ``steps``
    steps. Torch's global generator is forked and its thread count restored, so the caller's state is
    untouched."""
    import torch

    from pzkit.nn import MLP

    mean, std = X.mean(axis=0), X.std(axis=0) + 1e-12
    Xs = torch.as_tensor((X - mean) / std, dtype=torch.float32)
    Xt = torch.as_tensor((X_test - mean) / std, dtype=torch.float32)
    zs = torch.as_tensor(z, dtype=torch.float32)
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        trunk = MLP(X.shape[1], (128, 128, 128, 128, 128, 64))
        net = torch.nn.Sequential(trunk, torch.nn.Linear(trunk.n_out, 1))
        opt = torch.optim.Adam(net.parameters(), lr=1e-3)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, steps)
        gen = torch.Generator().manual_seed(seed)
        for _ in range(steps):
            rows = torch.randint(len(zs), (CNN["batch_size"],), generator=gen)
            loss = torch.nn.functional.huber_loss(net(Xs[rows])[:, 0], zs[rows], delta=0.15)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        net.eval()
        with torch.no_grad():
            out = net(Xt)[:, 0].double().numpy()
    torch.set_num_threads(previous_threads)
    return out


def one(data, n_labels, seed, epochs, threads, done=None):
    """σ_NMAD on the test set of the supervised CNN, the Huber photometry MLP, a random forest and
    ``baseline_nn`` on one label draw; the entries already in ``done`` are kept, not refitted (the CNN's
    when ``done["cnn_inputs"]`` matches these stamps and labels)."""
    rng = np.random.default_rng(1000 + seed)
    rows = rng.choice(data["pool"], n_labels, replace=False)
    z, test, X = data["z"], data["test"], data["photometry"]
    out = dict(done or {}, n_labelled=n_labels, seed=seed)
    steps = steps_for(n_labels, epochs)
    settings = json.dumps(CNN, sort_keys=True)
    if "cnn" not in out or out.get("cnn_inputs") != data["key"] or out.get("cnn_settings") != settings:
        from pzkit_pita import PITA

        t0 = time.time()
        cnn = PITA(**CNN, max_epochs=epochs, steps_per_epoch=steps // epochs, random_state=seed, n_threads=threads)
        cnn.fit(data["imgs"][rows], z[rows])
        out["cnn"] = float(sigma_nmad(z[test], cnn.predict_point_head(data["imgs"][test])))
        out["cnn_fit_s"] = round(time.time() - t0, 1)
        out["cnn_inputs"] = data["key"]
        out["cnn_settings"] = settings
    if "mlp" not in out:
        out["mlp"] = float(sigma_nmad(z[test], huber_mlp(X[rows], z[rows], X[test], steps, seed, threads)))
    if "random_forest" not in out:
        from sklearn.ensemble import RandomForestRegressor

        forest = RandomForestRegressor(300, min_samples_leaf=3, n_jobs=threads, random_state=seed)
        forest.fit(X[rows], z[rows])
        out["random_forest"] = float(sigma_nmad(z[test], forest.predict(X[test])))
    if "baseline_nn_mode" not in out:
        from pzkit_baseline_nn import BaselineNN

        # a bin classifier read at its PDF mode: reported, not gated (a mode is not the Huber point the CNN
        # gives, and σ_NMAD, a core width, favours modes)
        n_epochs = max(60, -(-3000 // -(-n_labels // 128)))
        clf = BaselineNN(hidden=(128, 128, 128), zmin=0.0, zmax=4.0, nzbins=401, max_epochs=n_epochs,
                         lr_step=max(1, n_epochs // 3), batch_size=128, early_stopping=True, random_state=seed,
                         n_threads=threads)
        clf.fit(X[rows], z[rows])
        out["baseline_nn_mode"] = float(sigma_nmad(z[test], clf.predict(X[test])))
    print(json.dumps(out), flush=True)
    return out


def summarise(runs, counts):
    rows = []
    for n in counts:
        got = [r for r in runs if r["n_labelled"] == n]
        ratio = np.array([r["cnn"] / r["mlp"] for r in got])
        sem = float(ratio.std(ddof=1) / np.sqrt(len(ratio))) if len(ratio) > 1 else None
        row = {"n_labelled": n, "n_seeds": len(got), "cnn_over_mlp": round(float(ratio.mean()), 3),
               "sem": None if sem is None else round(sem, 3)}
        for key in ("cnn", "mlp", "random_forest", "baseline_nn_mode"):
            row[key] = round(float(np.mean([r[key] for r in got])), 4)
        rows.append(row)
    return rows


def acceptance(rows, preset):
    """A crossing: photometry wins (ratio > 1 by more than 1 s.e.m.) at a smaller count and the CNN wins
    (ratio < 1 by more than 1 s.e.m.) at every larger one from some count on."""
    sem = [r["sem"] or 0.0 for r in rows]
    photo = [r["cnn_over_mlp"] - s > 1 for r, s in zip(rows, sem)]
    image = [r["cnn_over_mlp"] + s < 1 for r, s in zip(rows, sem)]
    crossing = next((i for i in range(1, len(rows)) if all(image[i:]) and any(photo[:i])), None)
    return [{"criterion": "pita premise: the photometry MLP beats the supervised CNN at the smaller label counts and "
                          "loses at the larger ones (a crossing inside the label range run, each side beyond 1 "
                          f"s.e.m. of the seed mean), {preset}",
             "value": {"label_counts": [r["n_labelled"] for r in rows],
                       "cnn_over_mlp": [r["cnn_over_mlp"] for r in rows],
                       "sem": [r["sem"] for r in rows],
                       "crossing_between": None if crossing is None else [rows[crossing - 1]["n_labelled"],
                                                                          rows[crossing]["n_labelled"]]},
             "target": "ratio > 1 below the crossing, < 1 above it", "met": crossing is not None}]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--counts", type=int, nargs="+", default=[300, 1000, 3000, 10000, 20000])
    parser.add_argument("--versions", type=int, nargs="+", default=[1, 2],
                        help="candels_like config versions to run; the gate reads the last")
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--partial-dir", default=os.path.join(os.path.expanduser("~"), ".cache", "pzkit",
                                                              "premise_pita"))
    parser.add_argument("--out", default="benchmarks/results/premise_pita.json")
    args = parser.parse_args()
    os.makedirs(args.partial_dir, exist_ok=True)
    t0 = time.time()
    result = {"machine": machine_info(), "args": vars(args), "network": CNN, "versions": {}}
    cnn_done = {}
    for version in args.versions:
        data = load(version)
        runs = []
        for seed in range(args.seeds):
            for n in args.counts:
                path = os.path.join(args.partial_dir, f"v{version}_n{n}_seed{seed}_epochs{args.epochs}.json")
                done = None
                if os.path.exists(path):
                    with open(path) as fh:
                        done = json.load(fh)
                shared = cnn_done.get((data["key"], n, seed))
                if shared is not None and (done is None or done.get("cnn_inputs") != data["key"]
                                           or done.get("cnn_settings") != shared["cnn_settings"]):
                    done = dict(done or {}, **shared)
                runs.append(one(data, n, seed, args.epochs, args.threads, done))
                cnn_done[(data["key"], n, seed)] = {k: runs[-1][k] for k in ("cnn", "cnn_fit_s", "cnn_inputs",
                                                                             "cnn_settings")}
                if runs[-1] != done:
                    write_json(path, runs[-1])
        rows = summarise(runs, args.counts)
        print(f"candels_like@{version}:")
        for r in rows:
            print(f"  n = {r['n_labelled']:>6}: CNN {r['cnn']:.4f}, MLP {r['mlp']:.4f}, forest "
                  f"{r['random_forest']:.4f}, baseline_nn mode {r['baseline_nn_mode']:.4f}; CNN/MLP "
                  f"{r['cnn_over_mlp']:.3f} ± {r['sem']}")
        result["versions"][str(version)] = {
            "sims": {"preset": f"candels_like@{version}", **SIM}, "n_pool": int(len(data["pool"])),
            "n_test": int(len(data["test"])), "rows": rows, "runs": runs}
    gated = str(args.versions[-1])
    result["gated_version"] = int(gated)
    result["wall_s"] = round(time.time() - t0, 1)
    result["acceptance"] = acceptance(result["versions"][gated]["rows"], f"candels_like@{gated}")
    write_json(args.out, result)
    for row in result["acceptance"]:
        print(f"{'MET' if row['met'] else 'NOT MET'}: {row['criterion']}: {row['value']}")


if __name__ == "__main__":
    main()
