"""``pzkit sims``: make mock surveys from the command line.

Wire into ``pzkit.cli.build_parser`` with::

    from .sims.cli import add_subparser as _add_sims
    _add_sims(sub)

Commands::

    pzkit sims make PRESET --n N --out PATH [--seed S] [--images] [--domain D] [--set KEY=VALUE ...]
                           [--no-cache] [--cache-dir DIR] [--quiet]
    pzkit sims list        # presets, their splits and domains
"""

import ast
import json
import sys


def _parse_set(items):
    """``--set a.b.c=value`` pairs -> a nested override dict (values parsed as Python/JSON literals)."""
    from .config import SimsConfigError

    out = {}
    for item in items or []:
        if "=" not in item:
            raise SimsConfigError(f"--set expects KEY=VALUE with a dotted key, got {item!r}")
        key, raw = item.split("=", 1)
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            try:
                value = json.loads(raw)
            except ValueError:
                value = raw
        node = out
        parts = key.strip().split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
            if not isinstance(node, dict):
                raise SimsConfigError(f"--set {key}: {p!r} is set twice")
        node[parts[-1]] = value
    return out


def cmd_make(args):
    import os

    from .config import SimsConfigError
    from .core import make

    ext = os.path.splitext(args.out)[1].lower()
    if ext not in (".hdf5", ".hdf", ".parquet", ".pq"):
        raise SimsConfigError(f"out: unsupported output extension {ext!r}; use .hdf5 or .parquet")
    overrides = _parse_set(args.set)
    images = args.images
    settings = overrides.pop("images", None)
    if settings is not None:
        # image settings travel through make's `images` argument; they mean nothing without stamps, except a
        # catalogue measured on the stamps (images.photometry), which renders them anyway
        if not args.images and "photometry" not in settings:
            raise SimsConfigError("--set images.*: these settings apply to rendered stamps; add --images")
        images = settings
    res = make(args.preset, args.n, random_state=args.seed, cache=not args.no_cache, images=images,
               cache_dir=args.cache_dir, progress=not args.quiet, domain=args.domain, **overrides)
    files = res.write(args.out)
    if not args.quiet:
        print(repr(res), file=sys.stderr)
        print(f"config hash {res.key}", file=sys.stderr)
    for f in files:
        print(f)
    return 0


def cmd_list(args):
    from .config import PRESET_VERSIONS, get_config, list_presets

    for name in list_presets():
        cfg = get_config(name)
        splits = ", ".join(f"{s} ({v['fraction']:.3g}, {v['domain']})" for s, v in cfg["splits"].items())
        versions = sorted(PRESET_VERSIONS[name])
        older = f" (older: {', '.join(f'{name}@{v}' for v in versions[:-1])})" if len(versions) > 1 else ""
        print(f"{name} v{versions[-1]}{older}: {cfg['description']}")
        print(f"    bands: {' '.join(cfg['bands'])}   splits: {splits}")
        print(f"    domains: {', '.join(cfg['domains'])}")
    return 0


def add_subparser(subparsers):
    """Register ``sims`` (with ``make`` and ``list``) on an argparse sub-parsers object."""
    p = subparsers.add_parser("sims", help="mock surveys: SEDs, filters, noise, images, domains (pzkit.sims)")
    sub = p.add_subparsers(dest="sims_command", required=True)

    m = sub.add_parser("make", help="generate a preset and write catalog (+ narrow bands, images)")
    m.add_argument("preset", help="lsst_like, sdss_like, cosmos_paus, flagship_paus, hsc_udf, candels_like or "
                   "deep_wide, optionally name@version (`pzkit sims list`)")
    m.add_argument("--n", type=int, required=True, help="number of galaxies over all splits")
    m.add_argument("--out", "-o", required=True,
                   help="output: .hdf5 (groups photometry, narrow_bands) or .parquet; images -> <stem>_images.hdf5")
    m.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    m.add_argument("--images", action="store_true", help="also render GalSim stamps")
    m.add_argument("--domain", default=None, help="put every split in this domain (e.g. elais_deep)")
    m.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="config override with a dotted key, e.g. --set redshift.max=2.0 (repeatable)")
    m.add_argument("--no-cache", action="store_true", help="neither read nor write the cache")
    m.add_argument("--cache-dir", default=None, help="cache directory (default $PZKIT_CACHE_DIR/sims)")
    m.add_argument("--quiet", action="store_true", help="no progress bars")
    m.set_defaults(func=cmd_make)

    ls = sub.add_parser("list", help="list presets, splits and domains")
    ls.set_defaults(func=cmd_list)
    return p


def main(argv=None):
    """Stand-alone entry point (``python -m pzkit.sims.cli make ...``)."""
    import argparse

    from ..exceptions import PzkitError

    parser = argparse.ArgumentParser(prog="pzkit")
    sub = parser.add_subparsers(dest="command", required=True)
    add_subparser(sub)
    args = parser.parse_args(["sims", *(sys.argv[1:] if argv is None else argv)])
    try:
        return args.func(args)
    except PzkitError as exc:
        print(f"pzkit sims: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
