"""The ``pzkit`` command line: list plugins, fit a model, estimate PDFs, benchmark estimators."""

import argparse
import ast
import os
import re
import sys
import time
import warnings

from .exceptions import PzkitError


def _parse_params(items):
    params = {}
    for item in items or []:
        if "=" not in item:
            raise PzkitError(f"--param expects key=value, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            params[key] = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            params[key] = raw
    return params


def _parse_limits(text):
    from .datasets import DC2_MAG_LIMITS

    if text is None:
        return None
    if text.lower() in ("dc2", "rail", "lsst"):
        return dict(DC2_MAG_LIMITS)
    limits = {}
    for part in text.split(","):
        band, _, value = part.partition("=")
        try:
            limits[band.strip()] = float(value)
        except ValueError as exc:
            raise PzkitError(f"--mag-limits expects band=value pairs or 'dc2', got {part!r}") from exc
    return limits


def _add_catalog_options(p):
    p.add_argument("--group", default=None, help="HDF5 group holding the columns (e.g. 'photometry')")
    p.add_argument("--bands", default="ugrizy", help="band names in wavelength order (default: ugrizy)")
    p.add_argument("--mag-column", default="mag_{band}_lsst", help="magnitude column template")
    p.add_argument("--err-column", default="mag_err_{band}_lsst", help="magnitude-error column template")
    p.add_argument("--ref-band", default="i", help="reference-magnitude band (default: i)")
    p.add_argument("--include-errors", action="store_true", help="add magnitude errors to the features")
    p.add_argument("--nondetect", choices=("raise", "limit", "nan"), default="raise",
                   help="non-detection policy (99/NaN/inf): refuse, replace by --mag-limits, or pass NaN")
    p.add_argument("--mag-limits", default=None, help="'dc2' or band=mag pairs, e.g. u=27.79,g=29.04,...")
    p.add_argument("--id-column", default=None, help="id column carried into the output")


def _features_from_args(args):
    from .features import PhotometryFeatures

    return PhotometryFeatures(
        bands=args.bands, mag_column=args.mag_column, err_column=args.err_column, ref_band=args.ref_band,
        include_errors=args.include_errors, nondetect=args.nondetect, mag_limits=_parse_limits(args.mag_limits),
        id_column=args.id_column, groupname=args.group,
    )


def _catalog(dataset, split, path, missing_message):
    """The catalog a command works on: a split of a built-in dataset, or a file path."""
    if dataset == "dc2":
        from .datasets import load_dc2

        return getattr(load_dc2(), split)
    if path:
        return path
    raise PzkitError(missing_message)


def cmd_list(args):
    from .registry import get_estimator_class, list_estimators, plugin_info

    names = list_estimators()
    if not names:
        print("no pzkit estimator plugins installed")
        return 0
    if not args.tags:
        # no plugin is imported (torch plugins take seconds): `--tags` imports each one and shows its inputs
        print(f"{'name':<20} {'distribution':<24} {'version':<10} entry point")
        for name in names:
            info = plugin_info(name)
            print(f"{name:<20} {str(info['distribution']):<24} {str(info['version']):<10} {info['entry_point']}")
        print("(`pzkit list --tags` imports every plugin and shows what it consumes)", file=sys.stderr)
        return 0
    print(f"{'name':<20} {'status':<8} {'X':<11} {'unlabelled':<11} {'fit inputs':<44} predict inputs")
    for name in names:
        try:
            tags = get_estimator_class(name)().get_tags()
        except PzkitError as exc:
            print(f"{name:<20} FAILED: {exc}")
            continue
        fit = ", ".join(f"{k}={v}" + ("*" if k in tags["required_fit_inputs"] else "")
                        for k, v in tags["fit_inputs"].items()) or "-"
        pred = ", ".join(f"{k}={v}" for k, v in tags["predict_inputs"].items()) or "-"
        print(f"{name:<20} {'ok':<8} {tags['X_type']:<11} {'yes' if tags['unlabelled_rows'] else 'no':<11} "
              f"{fit:<44} {pred}")
    print("(* required; inputs are named as in pzkit.datasets.INPUTS)", file=sys.stderr)
    return 0


def _is_sims_file(path):
    from .datasets import _is_sims_file as is_sims

    return bool(path) and os.path.exists(path) and is_sims(path)


def _catalog_options(args):
    """``from_catalog`` options for a catalog file given as ``--dataset`` (``pzkit bench``)."""
    return dict(bands=args.bands, mag_column=args.mag_column, err_column=args.err_column, ref_band=args.ref_band,
                nondetect=None if args.nondetect == "raise" else args.nondetect,
                mag_limits=_parse_limits(args.mag_limits), groupname=args.group, id_column=args.id_column,
                redshift_column=args.redshift_column)


def _fit_on_dataset(args, estimator):
    """Fit through the harness's routing: the dataset's training split, its labelled rows (all rows, with NaN
    for the unlabelled ones, for methods tagged ``unlabelled_rows``), the side inputs the tags ask for."""
    import numpy as np

    from .datasets import get_dataset
    from .harness import missing_inputs, needed_inputs, route_inputs
    from .pipeline import make_pipeline

    data = get_dataset(args.dataset or args.train, n=args.n, random_state=args.seed, inputs=needed_inputs(estimator),
                       **_catalog_options(args))
    missing = missing_inputs(estimator, data)
    if missing:
        raise PzkitError(f"{args.estimator} needs {', '.join(missing)}, which {data.name} does not have")
    y = data.train[data.redshift_column].to_numpy(np.float64)
    tags = estimator.get_tags()
    rows = None if tags["unlabelled_rows"] else np.flatnonzero(np.isfinite(y))
    X, side = route_inputs(estimator, data, "train", rows)
    y = y if rows is None else y[rows]
    split = data.source.get("splits", {}).get("train", "train")
    print(f"fitting {args.estimator} on the {split} split of {data.name}: {len(y)} objects, "
          f"{int(np.isfinite(y).sum())} labelled" + (f"; side inputs {sorted(side)}" if side else ""),
          file=sys.stderr)
    if tags["X_type"] == "images":
        return estimator.fit(X, y, **side)
    # side inputs go to the estimator only (the features step takes none), so the steps are fitted in turn
    features = data.features(id_column=data.id_column)
    estimator.fit(features.fit_transform(X), y, **side)
    return make_pipeline(features, estimator)


def _side_inputs_from_columns(estimator, columns, specs):
    """Side inputs of ``fit`` from catalog columns: ``--column INPUT=COL[,COL...]`` (shell-style patterns
    allowed, e.g. ``narrow_bands=mag_NB*``), matched to the estimator's ``fit_inputs`` tag."""
    import fnmatch

    import numpy as np

    given = {}
    for spec in specs or []:
        name, sep, cols = spec.partition("=")
        if not sep or not cols:
            raise PzkitError(f"--column expects INPUT=COLUMN[,COLUMN...], got {spec!r}")
        chosen = []
        for pattern in cols.split(","):
            hits = [c for c in columns if fnmatch.fnmatchcase(c, pattern.strip())]
            if not hits:
                raise PzkitError(f"--column {spec}: the catalog has no column matching {pattern.strip()!r}")
            chosen += [c for c in hits if c not in chosen]
        try:
            arrays = [np.asarray(columns[c], dtype=np.float64) for c in chosen]
        except (TypeError, ValueError) as exc:
            raise PzkitError(f"--column {spec}: columns {chosen} are not all numeric ({exc})") from exc
        given[name.strip()] = arrays[0] if len(arrays) == 1 and "*" not in cols else np.column_stack(arrays)
    wanted = estimator.get_tag("fit_inputs")
    unknown = set(given) - set(wanted.values())
    if unknown:
        raise PzkitError(f"--column {', '.join(sorted(unknown))}: {type(estimator).__name__} takes "
                         f"{sorted(wanted.values()) or 'no side input'}")
    side = {kw: given[name] for kw, name in wanted.items() if name in given}
    missing = [f"{kw} ({wanted[kw]})" for kw in estimator.get_tag("required_fit_inputs") if kw not in side]
    if missing:
        raise PzkitError(f"{type(estimator).__name__} needs {', '.join(missing)}: name the catalog columns with "
                         f"--column {wanted[estimator.get_tag('required_fit_inputs')[0]]}=COL,COL,..., or use a "
                         "`pzkit sims make` file / --dataset sims:<preset>")
    return side


def cmd_fit(args):
    import numpy as np

    from .features import read_catalog
    from .persistence import save
    from .pipeline import make_pipeline
    from .registry import make_estimator

    estimator = make_estimator(args.estimator, **_parse_params(args.param))
    t0 = time.perf_counter()
    if (args.dataset and args.dataset != "dc2") or _is_sims_file(args.train):
        if args.split not in (None, "train"):
            raise PzkitError(f"--split {args.split}: a dataset (sims:<preset>, a sims file, --dataset FILE) is "
                             "fitted on its training split only")
        if args.column or args.include_errors:
            raise PzkitError(f"{'--column' if args.column else '--include-errors'} applies to a plain --train "
                             "catalog; a dataset brings its own side inputs and features")
        model = _fit_on_dataset(args, estimator)
    else:
        if estimator.get_tag("X_type") == "images":
            raise PzkitError(f"{args.estimator} takes images: give --dataset sims:<preset> or a `pzkit sims make` "
                             "file (with its companion images) as --train")
        features = _features_from_args(args)
        catalog = _catalog(args.dataset, "train", args.train, "pzkit fit needs --train PATH or --dataset NAME")
        columns, _ = read_catalog(catalog, args.group)
        side = _side_inputs_from_columns(estimator, columns, args.column)
        if args.redshift_column not in columns:
            raise PzkitError(f"training catalog has no redshift column {args.redshift_column!r}")
        y = np.asarray(columns[args.redshift_column], dtype=np.float64)
        keep = np.ones(len(y), dtype=bool)
        if "split" in columns:
            if args.split is None:
                values = sorted(set(np.asarray(columns["split"]).astype(str)))
                raise PzkitError(f"the catalog has a 'split' column ({', '.join(values)}): name the rows to train "
                                 "on with --split (e.g. --split train); pzkit never trains on test rows")
            keep &= np.asarray(columns["split"]).astype(str) == args.split
            if not keep.any():
                raise PzkitError(f"--split {args.split}: no row of the catalog has split == {args.split!r}")
        elif args.split is not None:
            raise PzkitError(f"--split {args.split}: the catalog has no 'split' column")
        if "labelled" in columns:
            from .datasets import labelled_mask

            unlabelled = ~labelled_mask(columns["labelled"])
            if estimator.get_tag("unlabelled_rows"):
                y = np.where(unlabelled, np.nan, y)
            else:
                keep &= ~unlabelled
        if not keep.all():
            catalog = {k: np.asarray(v)[keep] for k, v in columns.items()}
            y = y[keep]
            side = {k: v[keep] for k, v in side.items()}
        print(f"fitting {args.estimator} on {len(y)} objects" + (f"; side inputs {sorted(side)}" if side else "")
              + " ...", file=sys.stderr)
        estimator.fit(features.fit_transform(catalog), y, **side)
        model = make_pipeline(features, estimator)
    print(f"fitted in {time.perf_counter() - t0:.1f} s; writing {args.output}", file=sys.stderr)
    save(model, args.output)
    return 0


def _estimate_images(args):
    """Estimate with an image model: stamps from the input's companion file, side inputs from the catalog."""
    from .datasets import sims_inputs
    from .persistence import load

    model = load(args.model)
    if args.storage != "grid":
        raise PzkitError("--storage: image models write the full grid (--storage grid)")
    if not args.input:
        raise PzkitError("pzkit estimate with an image model needs --input, a `pzkit sims make` file")
    if os.path.exists(args.output) and not args.overwrite:
        raise PzkitError(f"output {args.output!r} exists: pass --overwrite to replace it")
    table, inputs = sims_inputs(args.input, ("images",) + tuple(model.get_tag("predict_inputs").values()))
    side = {kw: inputs[name] for kw, name in model.get_tag("predict_inputs").items() if name in inputs}
    t0 = time.perf_counter()
    ens = model.estimate_pdf(inputs["images"], ids=table["id"].to_numpy(), **side)
    ens.write_to(args.output)
    seconds = time.perf_counter() - t0
    print(f"wrote {ens.npdf} objects (grid) to {args.output} in {seconds:.1f} s", file=sys.stderr)
    return 0


def _model_takes_images(path):
    from .persistence import load

    try:
        model = load(path)
    except PzkitError:
        return False  # the streaming path reports the bad model file
    return getattr(model, "get_tag", None) is not None and model.get_tag("X_type") == "images"


def cmd_estimate(args):
    from .streaming import estimate_catalog

    if args.input and _model_takes_images(args.model):
        if not _is_sims_file(args.input):
            raise PzkitError(f"--input {args.input}: an image model reads its stamps from a `pzkit sims make` "
                             "file's companion <stem>_images.hdf5")
        return _estimate_images(args)
    if args.input:
        catalog, group = args.input, args.group
        if _is_sims_file(args.input) and group is None:
            group = "photometry"
    elif args.dataset == "dc2":
        from .datasets import dc2_path

        catalog, group = dc2_path("validation"), args.group
    else:
        raise PzkitError("pzkit estimate needs --input PATH or --dataset dc2")
    options = {}
    if args.storage == "quantiles":
        options["n_quantiles"] = args.n_quantiles
    elif args.storage == "mixmod":
        options["n_components"] = args.n_components
    result = estimate_catalog(args.model, catalog, args.output, storage=args.storage, chunk_size=args.chunk_size,
                              overwrite=args.overwrite, groupname=group, id_column=args.id_column,
                              progress=not args.quiet, storage_options=options)
    resumed = f", {result.n_resumed} of {result.n_chunks} chunks resumed" if result.n_resumed else ""
    print(f"wrote {result.n_rows} objects ({args.storage}, {result.bytes_per_object:.0f} bytes/object) to "
          f"{', '.join(result.paths)} in {result.seconds:.1f} s ({result.objects_per_second:,.0f} objects/s{resumed})",
          file=sys.stderr)
    return 0


def cmd_bench(args):
    from .datasets import get_dataset
    from .harness import evaluate, missing_inputs, needed_inputs
    from .registry import list_estimators, make_estimator

    names = args.estimators
    if not names:
        names = list_estimators(check_import=True)
        candidates = {name: make_estimator(name) for name in names}
        needed = set().union(*(needed_inputs(e) for e in candidates.values()))
        data = get_dataset(args.dataset, n=args.n, random_state=args.seed, inputs=needed, progress=not args.quiet,
                           **_catalog_options(args))
        names = []
        for name, est in candidates.items():
            missing = missing_inputs(est, data)
            if missing:
                print(f"skipping {name}: it needs {', '.join(missing)}, which {data.name} does not have "
                      "(name it explicitly to try anyway)", file=sys.stderr)
            else:
                names.append(name)
    params = {name: {} for name in names}
    for item in args.param or []:
        name, _, rest = item.partition(":")
        if name not in params:
            raise PzkitError(f"--param {item!r}: {name!r} is not among the benchmarked estimators {names}")
        params[name].update(_parse_params([rest]))
    out = args.out or os.path.join("reports", re.sub(r"[^A-Za-z0-9_.-]+", "_", os.path.basename(args.dataset)))
    t0 = time.perf_counter()
    report = evaluate(names, dataset=args.dataset, params=params, random_state=args.seed, n=args.n,
                      progress=not args.quiet, n_train=args.n_train, n_test=args.n_test,
                      dataset_options=_catalog_options(args), calibrate=args.calibrate or ())
    report.meta["wall_seconds"] = time.perf_counter() - t0
    paths = report.write(out)
    print(report.to_markdown())
    failed = [r["name"] for r in report.results if "error" in r]
    for kind, path in paths.items():
        print(f"{kind}: {path}", file=sys.stderr)
    print(f"{len(report.results)} rows, {len(failed)} failed{': ' + ', '.join(failed) if failed else ''}; "
          f"{report.meta['wall_seconds']:.0f} s", file=sys.stderr)
    return 0


def build_parser():
    from . import __version__

    parser = argparse.ArgumentParser(prog="pzkit", description="Photometric-redshift estimators behind one interface.")
    parser.add_argument("--version", action="version", version=f"pzkit {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list installed estimator plugins (with --tags: what each consumes)")
    p.add_argument("--tags", action="store_true",
                   help="import every plugin and show its tags: X type, fit/predict inputs, unlabelled rows")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("fit", help="fit features + an estimator on a catalog and save the model")
    p.add_argument("estimator", help="entry-point name (see `pzkit list`)")
    p.add_argument("--train", help="training catalog (HDF5/Parquet/FITS via tables_io); a `pzkit sims make` "
                   "file brings its narrow bands, companion images and labels, and only its labelled training "
                   "rows are fitted")
    p.add_argument("--dataset", help="use a dataset's training split instead: dc2, sims:<preset> (see "
                   "`pzkit sims list`) or a registered dataset")
    p.add_argument("--split", default=None,
                   help="with a catalog that has a 'split' column: the split to train on (required there)")
    p.add_argument("--n", type=int, default=None, help="catalog size of a sims:<preset> dataset")
    p.add_argument("--seed", type=int, default=0, help="seed of a sims:<preset> dataset")
    p.add_argument("--column", action="append", metavar="INPUT=COL[,COL...]",
                   help="a side input of fit from catalog columns, e.g. --column 'narrow_bands=mag_NB*' "
                        "(names as in pzkit.datasets.INPUTS; repeatable)")
    p.add_argument("--redshift-column", default="redshift")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="estimator parameter (repeatable)")
    p.add_argument("--output", "-o", required=True, help="model file to write (.pzk)")
    _add_catalog_options(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("estimate", help="estimate PDFs for a catalog with a saved model; writes a qp file")
    p.add_argument("--model", "-m", required=True)
    p.add_argument("--input", "-i", help="catalog to estimate")
    p.add_argument("--dataset", choices=("dc2",), help="use DC2's validation split instead")
    p.add_argument("--group", default=None, help="HDF5 group holding the columns")
    p.add_argument("--output", "-o", required=True,
                   help="PDF file to write: .hdf5 (one file, qp layout) or .pq/.parquet (qp's Parquet layout)")
    p.add_argument("--storage", choices=("grid", "quantiles", "mixmod", "point"), default="grid",
                   help="PDF representation: the full grid, qp quantiles, a Gaussian mixture, or point "
                        "estimates + summaries only (default: grid)")
    p.add_argument("--n-quantiles", type=int, default=32, help="quantiles per object with --storage quantiles")
    p.add_argument("--n-components", type=int, default=3, help="Gaussians per object with --storage mixmod")
    p.add_argument("--id-column", default=None, help="catalog column written as 'id' when the model has none")
    p.add_argument("--chunk-size", type=int, default=25_000,
                   help="rows per chunk (bounds memory; a resumed run must use the same value)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an existing output and discard a partial run (otherwise a partial run resumes)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_estimate)

    p = sub.add_parser("bench", help="head-to-head benchmark of estimators on one dataset; writes a report")
    p.add_argument("estimators", nargs="*", help="entry-point names (default: every installed plugin)")
    p.add_argument("--dataset", default="dc2",
                   help="dc2 (default), sims:<preset> (e.g. sims:deep_wide, which every method can run on), a "
                        "`pzkit sims make` file, or a registered dataset")
    p.add_argument("--n", type=int, default=None,
                   help="catalog size of a sims:<preset> dataset (default pzkit.datasets.DEFAULT_SIMS_N)")
    p.add_argument("--out", default=None, help="report directory (report.json/.md/.html); default reports/<dataset>")
    p.add_argument("--param", action="append", metavar="NAME:KEY=VALUE", help="parameter of one estimator")
    p.add_argument("--calibrate", action="append", metavar="NAME",
                   help="also score NAME recalibrated (pzkit.CalibratedPhotoZ, 3 folds) as calibrated_NAME")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=None, help="subsample the training split (quick runs)")
    p.add_argument("--n-test", type=int, default=None, help="subsample the validation split (quick runs)")
    p.add_argument("--quiet", action="store_true")
    p.add_argument("--redshift-column", default="redshift", help="redshift column of a catalog file --dataset")
    _add_catalog_options(p)  # for a catalog file given as --dataset (it needs a 'split' column)
    p.set_defaults(func=cmd_bench)

    from .sims.cli import add_subparser as add_sims_subparser  # light: galsim is imported only when run

    add_sims_subparser(sub)
    return parser


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "estimate" and args.chunk_size < 1:
        parser.error("--chunk-size must be >= 1")
    try:
        return args.func(args)
    except PzkitError as exc:
        print(f"pzkit {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    warnings.simplefilter("default")
    sys.exit(main())
