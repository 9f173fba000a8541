"""The ``pzkit`` command line: list plugins, fit a model, estimate PDFs, benchmark estimators."""

import argparse
import ast
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
    print(f"{'name':<20} {'distribution':<24} {'version':<10} status")
    for name in names:
        info = plugin_info(name)
        try:
            get_estimator_class(name)
            status = "ok"
        except PzkitError as exc:
            status = f"FAILED: {exc}"
        print(f"{name:<20} {str(info['distribution']):<24} {str(info['version']):<10} {status}")
    return 0


def cmd_fit(args):
    import numpy as np

    from .features import read_catalog
    from .persistence import save
    from .pipeline import make_pipeline
    from .registry import make_estimator

    estimator = make_estimator(args.estimator, **_parse_params(args.param))
    features = _features_from_args(args)
    catalog = _catalog(args.dataset, "train", args.train, "pzkit fit needs --train PATH or --dataset dc2")
    columns, _ = read_catalog(catalog, args.group)
    if args.redshift_column not in columns:
        raise PzkitError(f"training catalog has no redshift column {args.redshift_column!r}")
    y = np.asarray(columns[args.redshift_column], dtype=np.float64)
    pipe = make_pipeline(features, estimator)
    t0 = time.perf_counter()
    print(f"fitting {args.estimator} on {len(y)} objects ...", file=sys.stderr)
    pipe.fit(catalog, y)
    print(f"fitted in {time.perf_counter() - t0:.1f} s; writing {args.output}", file=sys.stderr)
    save(pipe, args.output)
    return 0


def cmd_estimate(args):
    from .streaming import estimate_catalog

    if args.input:
        catalog, group = args.input, args.group
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
    from .harness import evaluate
    from .registry import list_estimators

    names = args.estimators
    if not names:
        from .registry import get_estimator_class

        names = []
        for name in list_estimators(check_import=True):
            needs = getattr(get_estimator_class(name), "_required_fit_inputs", ())
            if needs:
                print(f"skipping {name}: it needs {', '.join(needs)} in fit, which {args.dataset} does not have "
                      "(name it explicitly to try anyway)", file=sys.stderr)
            else:
                names.append(name)
    params = {name: {} for name in names}
    for item in args.param or []:
        name, _, rest = item.partition(":")
        if name not in params:
            raise PzkitError(f"--param {item!r}: {name!r} is not among the benchmarked estimators {names}")
        params[name].update(_parse_params([rest]))
    report = evaluate(names, dataset=args.dataset, params=params, random_state=args.seed,
                      progress=not args.quiet, n_train=args.n_train, n_test=args.n_test)
    paths = report.write(args.out)
    print(report.to_markdown())
    for kind, path in paths.items():
        print(f"{kind}: {path}", file=sys.stderr)
    return 0


def build_parser():
    parser = argparse.ArgumentParser(prog="pzkit", description="Photometric-redshift estimators behind one interface.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("list", help="list installed estimator plugins and whether they import")
    p.set_defaults(func=cmd_list)

    p = sub.add_parser("fit", help="fit features + an estimator on a catalog and save the model")
    p.add_argument("estimator", help="entry-point name (see `pzkit list`)")
    p.add_argument("--train", help="training catalog (HDF5/Parquet/FITS via tables_io)")
    p.add_argument("--dataset", choices=("dc2",), help="use a built-in dataset's training split instead")
    p.add_argument("--redshift-column", default="redshift")
    p.add_argument("--param", action="append", metavar="KEY=VALUE", help="estimator parameter (repeatable)")
    p.add_argument("--output", "-o", required=True, help="model file to write (.pzk)")
    _add_catalog_options(p)
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("estimate", help="estimate PDFs for a catalog with a saved model; writes a qp file")
    p.add_argument("--model", "-m", required=True)
    p.add_argument("--input", "-i", help="catalog to estimate")
    p.add_argument("--dataset", choices=("dc2",), help="use a built-in dataset's validation split instead")
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
    p.add_argument("--dataset", default="dc2", choices=("dc2",))
    p.add_argument("--out", default="reports/dc2", help="report directory (report.json/.md/.html)")
    p.add_argument("--param", action="append", metavar="NAME:KEY=VALUE", help="parameter of one estimator")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n-train", type=int, default=None, help="subsample the training split (quick runs)")
    p.add_argument("--n-test", type=int, default=None, help="subsample the validation split (quick runs)")
    p.add_argument("--quiet", action="store_true")
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
