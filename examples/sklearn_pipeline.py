"""pzkit inside scikit-learn, on RAIL's DC2 test catalog.

1. a ``Pipeline`` of ``PhotometryFeatures`` + a pzkit estimator, with ``estimate_pdf`` through it;
2. ``GridSearchCV`` over an estimator parameter, scored with pzkit scorers (σ_NMAD, CDE loss, outlier rate);
3. ``cross_val_predict`` and ``clone``;
4. the PDFs as a qp ensemble plus a table of point estimates (astropy Table or pandas DataFrame).

    python examples/sklearn_pipeline.py            # full DC2: 10,225 train / 20,449 test galaxies
    python examples/sklearn_pipeline.py --small    # 1,000 / 500 (also: PZKIT_EXAMPLES_SMALL=1)

Uses the ``knn_local_linear`` plugin when it is installed, else ``train_z``.
"""

import argparse
import os
import sys

import numpy as np
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold, cross_val_predict

import pzkit
from pzkit import metrics
from pzkit.datasets import load_dc2
from pzkit.scoring import make_scorer
from pzkit.tables import estimate_table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--small", action="store_true", default=os.environ.get("PZKIT_EXAMPLES_SMALL") == "1",
                        help="1,000 training / 500 test galaxies (also set by PZKIT_EXAMPLES_SMALL=1)")
    parser.add_argument("--out", default="sklearn_pipeline_out", help="where the PDFs and the table are written")
    args = parser.parse_args(argv)

    dc2 = load_dc2()
    train, test = dc2.train, dc2.validation
    if args.small:
        rng = np.random.default_rng(0)
        train = train.iloc[np.sort(rng.choice(len(train), 1000, replace=False))]
        test = test.iloc[np.sort(rng.choice(len(test), 500, replace=False))]
    y = train["redshift"].to_numpy()

    # 1. features + estimator in one sklearn Pipeline (a PhotoZPipeline: it also has estimate_pdf)
    name = "knn_local_linear" if "knn_local_linear" in pzkit.list_estimators() else "train_z"
    features = pzkit.PhotometryFeatures(bands="ugrizy", nondetect="limit", mag_limits=dc2.mag_limits,
                                        id_column="id")
    pipe = pzkit.make_pipeline(features, pzkit.make_estimator(name))
    print(pipe)

    # 2. grid search over an estimator parameter, scored by pzkit metrics (negated: higher is better)
    step = pipe.steps[-1][0]
    values = [20, 50] if args.small else [20, 50, 100]
    grid = {f"{step}__n_neighbors": values} if name == "knn_local_linear" else {f"{step}__nzbins": [101, 301]}
    scoring = {"nmad": make_scorer("nmad"), "cde_loss": make_scorer("cde_loss"),
               "outlier_rate": make_scorer("outlier_rate")}
    cv = KFold(3, shuffle=True, random_state=0)  # the DC2 files are ordered: shuffle before splitting
    search = GridSearchCV(pipe, grid, scoring=scoring, refit="cde_loss", cv=cv).fit(train, y)
    print(f"\nGridSearchCV over {list(grid)[0]} (scores are −metric):")
    for i, params in enumerate(search.cv_results_["params"]):
        scores = "  ".join(f"{k} {search.cv_results_[f'mean_test_{k}'][i]:+.4f}" for k in scoring)
        print(f"  {params}  {scores}")
    print(f"best by CDE loss: {search.best_params_}")
    best = search.best_estimator_

    # 3. cross_val_predict and clone
    z_cv = cross_val_predict(clone(best), train, y, cv=cv)
    print(f"\ncross_val_predict on the training set: σ_NMAD = {metrics.sigma_nmad(y, z_cv):.4f}")

    # 4. PDFs of the test set: a qp ensemble, and a table of point estimates (RAIL's column names)
    table, ens = estimate_table(best, test, kind="pandas", quantiles=[0.16, 0.84], return_ensemble=True)
    z_true = test["redshift"].to_numpy()
    point = metrics.point_metrics(z_true, table["zmode"].to_numpy())
    print(f"\ntest set: {ens.npdf} PDFs ({type(ens).__module__}.{type(ens).__name__}), "
          f"σ_NMAD {point['sigma_nmad']:.4f}, outliers {100 * point['outlier_rate']:.2f} %, "
          f"CDE loss {metrics.cde_loss(ens, z_true, best[-1].zgrid_):.3f}")
    print(table.head())
    os.makedirs(args.out, exist_ok=True)
    ens.write_to(os.path.join(args.out, "pdfs.hdf5"))  # qp.read and RAIL read it back
    table.to_csv(os.path.join(args.out, "point_estimates.csv"), index=False)
    print(f"\nwrote {args.out}/pdfs.hdf5 and {args.out}/point_estimates.csv")
    return 0


if __name__ == "__main__":
    sys.exit(main())
