"""The shared evaluation harness: any set of estimators, one dataset, one split, one report."""

import contextlib
import datetime
import json
import os
import platform
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from . import __version__
from .exceptions import InputError, OutputError
from .metrics.report import DEFAULT_TOMO_EDGES, ScoringContext, make_context, score_ensemble  # noqa: F401

REPORT_SCHEMA = "pzkit-report/1"


@dataclass
class Report:
    """Results of :func:`evaluate`: ``meta`` (machine, versions, dataset, split, seed) and one entry per
    estimator with its parameters, costs and metrics."""

    meta: dict
    results: list = field(default_factory=list)
    arrays: dict = field(default_factory=dict, repr=False)  # per-estimator arrays for the plots, not in JSON
    dataset: object = field(default=None, repr=False)  # the Dataset scored (after subsampling), not in JSON

    def to_dict(self):
        return {"schema": REPORT_SCHEMA, "meta": self.meta, "results": self.results}

    def to_markdown(self):
        def num(section, key, fmt, scale=1.0):
            def get(r):
                value = r.get(section, {}).get(key)
                return "undefined" if value is None else format(scale * value, fmt)
            return get

        cols = [
            ("estimator", lambda r: r["name"]),
            ("σ_NMAD", num("point", "sigma_nmad", ".4f")),
            ("bias", num("point", "bias_median", "+.4f")),
            (f"outliers >{self.meta.get('outlier_threshold', 0.15)} (%)", num("point", "outlier_rate", ".2f", 100.0)),
            ("CDE loss", num("pdf", "cde_loss", ".3f")),
            ("PIT KS", num("pdf", "pit_ks", ".3f")),
            ("cov68", num("pdf", "coverage_68", ".2f")),
            ("CRPS", num("pdf", "crps", ".4f")),
            ("fit s", num("cost", "fit_seconds", ".2f")),
            ("estimate s", num("cost", "estimate_seconds", ".2f")),
            ("obj/s", num("cost", "objects_per_second", ",.0f")),
            ("peak RSS MB", num("cost", "peak_rss_mb", ".0f")),
        ]
        m = self.meta
        lines = [
            f"# pzkit benchmark: {m['dataset']['name']}",
            "",
            f"train {m['dataset']['n_train']:,} / test {m['dataset']['n_test']:,}; grid {m['grid']}; "
            f"point estimate = {m['point_estimate']}; seed {m['random_state']}; {m['created']}; "
            f"{m['machine']['cpu_count']} CPU, {m['machine']['platform']}",
            "",
            "| " + " | ".join(c for c, _ in cols) + " |",
            "|" + "|".join("---" for _ in cols) + "|",
        ]
        for r in self.results:
            if "error" in r:
                lines.append(f"| {r['name']} | failed: {r['error']} |")
            else:
                lines.append("| " + " | ".join(f(r) for _, f in cols) + " |")
        return "\n".join(lines) + "\n"

    def write(self, directory, html=True):
        """Write report.json, report.md and (with plots) report.html into ``directory``.

        All files are first written under temporary names and renamed only once every one of them is
        complete: a full disk or a permission error raises :class:`~pzkit.exceptions.OutputError` and leaves
        no new report file behind (an older report in ``directory`` is left as it was).
        """
        paths = {"json": os.path.join(directory, "report.json"), "markdown": os.path.join(directory, "report.md")}
        if html:
            paths["html"] = os.path.join(directory, "report.html")
        writers = {
            "json": lambda tmp: _dump_json(tmp, self.to_dict()),
            "markdown": lambda tmp: _write_text(tmp, self.to_markdown()),
        }
        if html:
            from .report_html import write_html

            writers["html"] = lambda tmp: write_html(self, tmp)
        with atomic_outputs(paths.values()) as tmps:
            for kind, path in paths.items():
                writers[kind](tmps[path])
        return paths


@contextlib.contextmanager
def atomic_outputs(paths):
    """Write several output files all-or-nothing: yields ``{final path: temporary path}``.

    The temporary files live next to their targets (same file system, so the final ``os.replace`` is atomic)
    and are renamed only when the block finishes without error. On any error, every temporary file is
    removed and an ``OSError`` becomes :class:`~pzkit.exceptions.OutputError` naming the path, the reason and
    the fact that no output was written.
    """
    paths = [os.fspath(p) for p in paths]
    tmps = {}
    try:
        for path in paths:
            directory = os.path.dirname(os.path.abspath(path))
            os.makedirs(directory, exist_ok=True)
            fd, tmp = tempfile.mkstemp(prefix=f".{os.path.basename(path)}.", suffix=".part", dir=directory)
            tmps[path] = tmp
            os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600; the output gets the usual permissions
            os.close(fd)
        yield dict(tmps)
        for path in paths:
            os.replace(tmps.pop(path), path)
    except OSError as exc:
        what = paths[0] if len(paths) == 1 else f"{len(paths)} files in {os.path.dirname(paths[0]) or '.'}"
        raise OutputError(f"could not write {what}: {exc.strerror or exc}; no output was written "
                          f"(temporary files removed)") from exc
    finally:
        for tmp in tmps.values():
            try:
                os.unlink(tmp)
            except OSError:
                pass


def _umask():
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_text(path, text):
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())


def _dump_json(path, obj):
    with open(path, "w") as fh:
        json.dump(obj, fh, indent=2, default=_json_default)
        fh.flush()
        os.fsync(fh.fileno())


def write_json(path, obj):
    """Write ``obj`` as indented JSON (numpy scalars and arrays converted), creating the directory.

    Atomic: a temporary file renamed into place, so a failed write (full disk, permissions) leaves no
    truncated JSON and raises :class:`~pzkit.exceptions.OutputError`.
    """
    with atomic_outputs([path]) as tmps:
        _dump_json(tmps[os.fspath(path)], obj)
    return path


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return repr(obj)


def machine_info():
    import sklearn

    versions = {"pzkit": __version__, "python": sys.version.split()[0], "numpy": np.__version__,
                "scikit-learn": sklearn.__version__}
    try:
        import qp

        versions["qp"] = qp.__version__
    except Exception:  # pragma: no cover - qp is a hard dependency
        pass
    return {"platform": platform.platform(), "processor": platform.machine(), "cpu_count": os.cpu_count(),
            "versions": versions}


def _subsample_rows(n_rows, n, rng):
    if n is None or n >= n_rows:
        return None
    return np.sort(rng.choice(n_rows, size=n, replace=False))


def _rss_bytes():
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):  # not Linux: fall back to the lifetime maximum
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def measure(func, interval=0.01):
    """Run ``func``; return (result, wall seconds, peak resident memory in MB while it ran).

    The peak is sampled from a background thread every ``interval`` seconds, which costs far less than
    tracing allocations and so leaves the timing honest.
    """
    peak = [_rss_bytes()]
    done = threading.Event()

    def sample():
        while not done.wait(interval):
            peak[0] = max(peak[0], _rss_bytes())

    thread = threading.Thread(target=sample, daemon=True)
    thread.start()
    t0 = time.perf_counter()
    try:
        out = func()
    finally:
        elapsed = time.perf_counter() - t0
        done.set()
        thread.join()
    peak[0] = max(peak[0], _rss_bytes())
    return out, elapsed, peak[0] / 2**20


def _named_estimators(estimators, params, random_state):
    from .registry import make_estimator

    named = []
    for item in estimators:
        label, entry = (item, item) if isinstance(item, str) else item
        if isinstance(entry, str):
            p = dict(params.get(label, {}))
            est = make_estimator(entry, **p)
            if "random_state" in est.get_params() and "random_state" not in p:
                est.set_params(random_state=random_state)
            named.append((label, est, set(p), entry))
        else:
            named.append((label, entry, None, None))  # built by the caller: used exactly as given
    return named


def _shared_or_each(named, describe):
    """One description when every estimator shares it, else ``name=description`` for each."""
    values = [(name, describe(est)) for name, est, _, _ in named]
    if len({v for _, v in values}) <= 1:
        return values[0][1] if values else None
    return "; ".join(f"{name}: {v}" for name, v in values)


def needed_inputs(estimator):
    """Dataset inputs an estimator's tags ask for (``images`` for image methods, plus its fit and predict
    inputs)."""
    tags = estimator.get_tags()
    names = set(tags["fit_inputs"].values()) | set(tags["predict_inputs"].values())
    if tags["X_type"] == "images":
        names.add("images")
    return names


def missing_inputs(estimator, data):
    """The inputs an estimator cannot do without that ``data`` lacks, as ``"keyword (input)"`` strings."""
    tags = estimator.get_tags()
    have_train, have_test = data.available_inputs("train"), data.available_inputs("validation")
    missing = []
    if tags["X_type"] == "images" and not ("images" in have_train and "images" in have_test):
        missing.append("X (images)")
    for kw in tags["required_fit_inputs"]:
        name = tags["fit_inputs"].get(kw, kw)
        if name not in have_train:
            missing.append(f"{kw} ({name})")
    return missing


def route_inputs(estimator, data, split, rows=None):
    """``(X, side inputs)`` for one split, routed by the estimator's tags: X is the split's images for image
    methods and its table otherwise; side inputs are the tagged inputs the dataset has, restricted to
    ``rows`` (target-domain inputs are never restricted: they belong to another split)."""
    tags = estimator.get_tags()
    table = data.train if split == "train" else data.validation
    wanted = tags["fit_inputs"] if split == "train" else tags["predict_inputs"]
    have = data.available_inputs(split)

    def pick(values):
        return values if rows is None else np.asarray(values)[rows]

    X = pick(data.get_input(split, "images")) if tags["X_type"] == "images" else (
        table if rows is None else table.iloc[rows])
    side = {}
    for kw, name in wanted.items():
        if name in have:
            value = data.get_input(split, name)
            side[kw] = value if name.startswith("target:") else pick(value)
    return X, side


def evaluate(estimators, dataset="dc2", params=None, random_state=0, progress=True, n_train=None, n_test=None,
             features=None, outlier_threshold=0.15, tomo_edges=None, n=None, input_transforms=None,
             dataset_options=None, extra_metrics=None, calibrate=()):
    """Fit and score every estimator on one dataset and split; returns a :class:`Report`.

    Each estimator gets the inputs its tags ask for (``X_type``, ``fit_inputs``, ``predict_inputs``): image
    methods the stamps, photometry methods the catalog turned into features by ``features``. Training rows
    without a label are given (with NaN redshift) only to methods tagged ``unlabelled_rows``; the others are
    fitted on the labelled rows. Test redshifts are used for scoring only.

    Parameters
    ----------
    estimators : list of str, (label, entry-point name) or (label, estimator) pairs
        Entry-point names, or labelled variants of one (``("mtl_lambda0", "mtl_nb")`` with
        ``params={"mtl_lambda0": {"nb_weight": 0}}``), instantiated with the dataset's ``bench_params``, its
        redshift grid and ``params[label]``, which wins; or already-built estimators, used as given.
    dataset : str or :class:`pzkit.datasets.Dataset`
        Any name :func:`pzkit.datasets.get_dataset` knows: ``"dc2"``, ``"sims:<preset>"``, a sims file path.
    params : dict label -> dict, optional
        Parameters per named estimator.
    random_state : int
        Seed of the sims, the subsampling, the SOM and every estimator that takes ``random_state``.
    n_train, n_test : int, optional
        Subsample the splits (quick runs); the full splits by default.
    features : PhotometryFeatures, optional
        Feature transformer; ``dataset.features()`` by default (colours + reference magnitude).
    outlier_threshold : float
        |Δz| threshold of the outlier rate (0.15; the SDSS papers use 0.05).
    tomo_edges : sequence of float, optional
        Tomographic bin edges in z_photo for the n(z) metrics; by default DC2's for grids to z = 3, five
        equal bins of the dataset's grid otherwise.
    n : int, optional
        Catalog size of a ``sims:<preset>`` dataset.
    input_transforms : dict label -> {input name: callable(values, rng) -> values}, optional
        Controls that alter a training input of one estimator, e.g. narrow bands permuted across objects;
        ``rng`` is a Generator seeded by ``random_state``. Recorded in the report by the callables' names.
    dataset_options : dict, optional
        Passed to :func:`pzkit.datasets.get_dataset` (column names of a catalog file, see ``from_catalog``).
    extra_metrics : dict name -> callable(label, model, data, ens) -> dict or None, optional
        A paper's own numbers, computed on each fitted model (``data`` is the :class:`~pzkit.datasets.Dataset`
        scored, ``ens`` the test PDFs); a callable returns None where it does not apply to that estimator.
        Stored under ``"extra"`` in the estimator's entry; an error there is recorded, not raised.
    calibrate : sequence of str, optional
        Labels of ``estimators`` to score a second time recalibrated, as ``calibrated_<label>``:
        :class:`pzkit.CalibratedPhotoZ` around a clone of the estimator (3 folds, seeded by ``random_state``),
        next to the original.
    """
    from sklearn.base import clone
    from tqdm.auto import tqdm

    from .datasets import get_dataset

    params = params or {}
    named = _named_estimators(estimators, params, random_state)
    needed = set().union(*(needed_inputs(est) for _, est, _, _ in named)) if named else set()
    data = get_dataset(dataset, n=n, random_state=random_state, inputs=needed, progress=progress,
                       **(dataset_options or {}))
    for _, est, given, entry in named:
        if given is None:
            continue
        defaults = {**(data.grid or {}), **data.bench_params.get(entry, {})}
        est.set_params(**{k: v for k, v in defaults.items() if k not in given and k in est.get_params()})

    by_label = {label: est for label, est, _, _ in named}
    unknown = [label for label in calibrate if label not in by_label]
    if unknown:
        raise InputError(f"calibrate: {unknown} are not among the estimators {list(by_label)}")
    if calibrate:
        from .calibration import CalibratedPhotoZ

        named += [(f"calibrated_{label}", CalibratedPhotoZ(clone(by_label[label]), cv=3, random_state=random_state),
                   None, None) for label in calibrate]

    rng = np.random.default_rng(random_state)
    rows = _subsample_rows(len(data.train), n_train, rng)
    if rows is not None:
        data = data.take("train", rows)
    rows = _subsample_rows(len(data.validation), n_test, rng)
    if rows is not None:
        data = data.take("validation", rows)
    y_train = data.train[data.redshift_column].to_numpy(np.float64)
    y_test = data.validation[data.redshift_column].to_numpy(np.float64)
    labelled = np.flatnonzero(np.isfinite(y_train))
    feats = features if features is not None else data.features()

    first = named[0][1] if named else None
    if tomo_edges is None:
        grid = {**{"zmin": 0.0, "zmax": 3.0}, **(data.grid or {})}
        # a meta-estimator (StackedPhotoZ, CalibratedPhotoZ) with no grid of its own takes its members' grid
        zmin = grid["zmin"] if first is None or first.zmin is None else first.zmin
        zmax = grid["zmax"] if first is None or first.zmax is None else first.zmax
        tomo_edges = DEFAULT_TOMO_EDGES if (zmin, zmax) == (0.0, 3.0) else tuple(np.linspace(zmin, zmax, 6))
    base_feats = data.features()
    ctx = make_context(base_feats.fit_transform(data.validation), y_test, outlier_threshold=outlier_threshold,
                       tomo_edges=tomo_edges, random_state=random_state,
                       train_features=base_feats.fit_transform(data.train))
    meta = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "dataset": {"name": data.name, "n_train": len(data.train), "n_train_labelled": int(labelled.size),
                    "n_test": len(data.validation), "n_target": None if data.target is None else len(data.target),
                    "inputs": {split: sorted(v) for split, v in data.inputs.items()}, "source": data.source,
                    "redshift_column": data.redshift_column},
        "split": {"train": "train", "test": "validation", "n_train_requested": n_train,
                  "n_test_requested": n_test},
        "random_state": random_state,
        "features": {k: v for k, v in feats.get_params().items()},
        "grid": _shared_or_each(named, lambda e: f"{e.zmin}–{e.zmax}, {e.nzbins} points"),
        "point_estimate": _shared_or_each(named, lambda e: e.point_estimate),
        "outlier_threshold": outlier_threshold,
        "tomographic_edges": [float(e) for e in tomo_edges],
    }
    report = Report(meta=meta, dataset=data)
    bar = tqdm(named, desc="benchmark", unit="estimator", disable=not progress)
    for name, est, _, _ in bar:
        tags = est.get_tags()
        entry = {"name": name, "class": f"{type(est).__module__}.{type(est).__qualname__}",
                 "params": est.get_params(deep=False),
                 **({"input_transforms": {k: getattr(f, "__name__", repr(f))
                                          for k, f in input_transforms[name].items()}}
                    if name in (input_transforms or {}) else {}),
                 "inputs": {"X": tags["X_type"], "fit": dict(tags["fit_inputs"]),
                            "predict": dict(tags["predict_inputs"]), "unlabelled_rows": tags["unlabelled_rows"]}}
        missing = missing_inputs(est, data)
        if missing:
            entry["error"] = f"{data.name} lacks {', '.join(missing)}"
            report.results.append(entry)
            continue
        fit_rows = None if tags["unlabelled_rows"] else labelled
        entry["n_fit_rows"] = len(y_train) if fit_rows is None else int(fit_rows.size)
        bar.set_postfix_str(f"{name}: fit")
        try:
            X_fit, fit_side = route_inputs(est, data, "train", fit_rows)
            transforms = (input_transforms or {}).get(name, {})
            for kw, input_name in tags["fit_inputs"].items():
                if kw in fit_side and input_name in transforms:
                    fit_side[kw] = transforms[input_name](fit_side[kw], np.random.default_rng(random_state))
            X_test, test_side = route_inputs(est, data, "validation")
            y_fit = y_train if fit_rows is None else y_train[fit_rows]
            if tags["X_type"] == "images":
                fit_features = to_features = (lambda X: X)
            else:  # the catalog becomes features inside the timed calls, as a fitted pipeline would do it
                step = clone(feats)
                fit_features, to_features = step.fit_transform, step.transform
            _, fit_s, fit_mb = measure(lambda: est.fit(fit_features(X_fit), y_fit, **fit_side))
            bar.set_postfix_str(f"{name}: estimate_pdf")
            ens, est_s, est_mb = measure(lambda: est.estimate_pdf(to_features(X_test), **test_side))
        except Exception as exc:  # one failing method must not lose the others' results
            entry["error"] = f"{type(exc).__name__}: {exc}"
            report.results.append(entry)
            continue
        bar.set_postfix_str(f"{name}: metrics")
        metrics, arrays = score_ensemble(ens, ens.ancil[est.point_column()], est.zgrid_, ctx)
        entry.update(metrics)
        extra = {}
        for metric_name, func in (extra_metrics or {}).items():
            try:
                value = func(name, est, data, ens)
            except Exception as exc:  # a paper metric that fails must not lose the harness's own numbers
                value = {"error": f"{type(exc).__name__}: {exc}"}
            if value is not None:
                extra[metric_name] = value
        if extra:
            entry["extra"] = extra
        entry["cost"] = {"fit_seconds": fit_s, "estimate_seconds": est_s,
                         "objects_per_second": len(y_test) / est_s if est_s > 0 else float("inf"),
                         "peak_rss_mb": max(fit_mb, est_mb)}
        report.results.append(entry)
        report.arrays[name] = arrays
    return report
