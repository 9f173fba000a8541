"""Why the Flagship labels-for-all premise is small in ``flagship_paus``: a random-forest diagnostic.

    python benchmarks/premise_mtl_nb_flagship.py [--out benchmarks/results/premise_mtl_nb_flagship.json]

For ``flagship_paus`` (seed 0) and a few variants of it, a random forest on the 7 adjacent broad-band colours
(a fast stand-in for the paper's network: on the preset its 10k → 30k gain, 4.9 %, is within a point of the
network's labels-for-all gain in ``premise_mtl_nb.json``, 4.5 %) measures, at 23 < i < 25:

* the learning curve with 3,000 / 10,000 / 30,000 random true-z labels from the i < 23 training split, and
  the 10k → 30k gain (the premise: the paper's zs → zs+zPAUS gain at i > 23 is 11 %);
* the information floor: a forest trained on half of the faint test galaxies themselves, scored on the other
  half.

Variants: the preset; its SED model with more line scatter, more dust, twice the type scatter, and the
version-1 CWW+SB set; and the sky-limited, size-dependent errors of the other presets with selection on
observed magnitudes (what ``flagship_paus`` used before it followed the authors' code).
"""

import argparse
import time

import numpy as np

from pzkit.harness import machine_info, write_json
from pzkit.metrics import sigma_68
from pzkit.sims import make

VARIANTS = {
    "flagship_paus": {},
    "more_line_scatter": {"lines": {"ew_scatter_dex": 0.4, "ratio_scatter_dex": 0.3}},
    "more_dust": {"galaxy": {"dust_mean": [0.03, 0.15, 0.25, 0.3, 0.3, 0.3]}},
    "double_type_scatter": {"galaxy": {"disk_type_scatter": 0.6}},
    "v1_cwwsb_seds": {"templates": "cwwsb", "galaxy": {"disk_type_scatter": 0.0, "dust_mean": None},
                      "lines": {"ew_scatter_dex": 0.25, "ratio_scatter_dex": 0.15}},
    "sky_noise_observed_selection": {"noise": {"law": "sky", "extended": True},
                                     "domains": {"flagship": {"error_floor": 0.005}},
                                     "splits": {"train": {"select_on": "observed"}, "test": {"select_on": "observed"}}},
}


def _colours(result):
    return result.features().fit_transform(result.catalog)[:, :-1]


def variant(overrides, seed=0):
    from sklearn.ensemble import RandomForestRegressor

    sim = make("flagship_paus", 60000, random_state=seed, **overrides)
    train, test = sim.train, sim.test
    X_train, X_test = _colours(train), _colours(test)
    z_train, z_test = train.catalog["redshift"].to_numpy(), test.catalog["redshift"].to_numpy()
    i_test = test.catalog["mag_i_flagship"].to_numpy()
    faint = (i_test >= 23) & (i_test < 25)

    def forest():
        return RandomForestRegressor(100, min_samples_leaf=5, n_jobs=2, random_state=seed)

    order = np.random.default_rng(seed).permutation(len(z_train))
    curve = {}
    for n in (3000, 10000, 30000):
        rows = order[:n]
        curve[n] = sigma_68(z_test[faint], forest().fit(X_train[rows], z_train[rows]).predict(X_test[faint]))
    half = np.random.default_rng(seed).random(len(z_test)) < 0.5
    floor = sigma_68(z_test[~half & faint],
                     forest().fit(X_test[half & faint], z_test[half & faint]).predict(X_test[~half & faint]))
    return {"sigma68_by_n_labels": {str(k): round(v, 5) for k, v in curve.items()},
            "gain_10k_to_30k": round(1 - curve[30000] / curve[10000], 4), "faint_trained_floor": round(floor, 5)}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="benchmarks/results/premise_mtl_nb_flagship.json")
    args = parser.parse_args()
    t0 = time.perf_counter()
    rows = {}
    for name, overrides in VARIANTS.items():
        rows[name] = {"overrides": overrides, **variant(overrides)}
        r = rows[name]
        print(f"{name:30s} σ68(i>23) 3k/10k/30k {list(r['sigma68_by_n_labels'].values())} "
              f"gain {100 * r['gain_10k_to_30k']:.1f} %, floor {r['faint_trained_floor']:.4f}", flush=True)
    # a diagnostic, not an issue acceptance number
    write_json(args.out, {"machine": machine_info(), "wall_s": round(time.perf_counter() - t0, 1), "variants": rows,
                          "acceptance": []})


if __name__ == "__main__":
    main()
