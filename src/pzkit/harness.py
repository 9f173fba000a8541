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

    def to_dict(self):
        return {"schema": REPORT_SCHEMA, "meta": self.meta, "results": self.results}

    def to_markdown(self):
        cols = [
            ("estimator", lambda r: r["name"]),
            ("σ_NMAD", lambda r: f"{r['point']['sigma_nmad']:.4f}"),
            ("bias", lambda r: f"{r['point']['bias_median']:+.4f}"),
            ("outliers >0.15", lambda r: f"{100 * r['point']['outlier_rate']:.2f} %"),
            ("CDE loss", lambda r: f"{r['pdf']['cde_loss']:.3f}"),
            ("PIT KS", lambda r: f"{r['pdf']['pit_ks']:.3f}"),
            ("cov68", lambda r: f"{r['pdf']['coverage_68']:.2f}"),
            ("CRPS", lambda r: f"{r['pdf']['crps']:.4f}"),
            ("fit s", lambda r: f"{r['cost']['fit_seconds']:.2f}"),
            ("estimate s", lambda r: f"{r['cost']['estimate_seconds']:.2f}"),
            ("obj/s", lambda r: f"{r['cost']['objects_per_second']:,.0f}"),
            ("peak RSS MB", lambda r: f"{r['cost']['peak_rss_mb']:.0f}"),
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


def _resolve_dataset(dataset):
    if isinstance(dataset, str):
        if dataset == "dc2":
            from .datasets import load_dc2

            return load_dc2()
        raise InputError(f"unknown dataset {dataset!r}; known: 'dc2'")
    return dataset


def _subsample(table, n, rng):
    if n is None or n >= len(table):
        return table
    idx = np.sort(rng.choice(len(table), size=n, replace=False))
    return table.iloc[idx]


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


def evaluate(estimators, dataset="dc2", params=None, random_state=0, progress=True, n_train=None, n_test=None,
             features=None, outlier_threshold=0.15, tomo_edges=DEFAULT_TOMO_EDGES):
    """Fit and score every estimator on one dataset and split; returns a :class:`Report`.

    Parameters
    ----------
    estimators : list of str or (name, estimator) pairs
        Entry-point names (instantiated with ``params[name]``) or already-built estimators.
    dataset : "dc2" or :class:`pzkit.datasets.Dataset`
    params : dict name -> dict, optional
        Parameters per named estimator.
    random_state : int
        Seed of the subsampling, the SOM and every estimator that takes ``random_state``.
    n_train, n_test : int, optional
        Subsample the splits (quick runs); the full splits by default.
    features : PhotometryFeatures, optional
        Feature transformer; ``dataset.features()`` by default (colours + reference magnitude).
    outlier_threshold : float
        |Δz| threshold of the outlier rate (0.15; the SDSS papers use 0.05).
    tomo_edges : sequence of float
        Tomographic bin edges in z_photo for the n(z) metrics.
    """
    from sklearn.base import clone
    from tqdm.auto import tqdm

    from .pipeline import make_pipeline
    from .registry import make_estimator

    data = _resolve_dataset(dataset)
    rng = np.random.default_rng(random_state)
    train = _subsample(data.train, n_train, rng)
    test = _subsample(data.validation, n_test, rng)
    y_train = train[data.redshift_column].to_numpy(np.float64)
    y_test = test[data.redshift_column].to_numpy(np.float64)
    feats = features if features is not None else data.features()
    params = params or {}

    named = []
    for item in estimators:
        if isinstance(item, str):
            p = dict(params.get(item, {}))
            est = make_estimator(item, **p)
            if "random_state" in est.get_params() and "random_state" not in p:
                est.set_params(random_state=random_state)
            named.append((item, est))
        else:
            named.append(tuple(item))

    base_feats = data.features()
    ctx = make_context(base_feats.fit_transform(test), y_test, outlier_threshold=outlier_threshold,
                       tomo_edges=tomo_edges, random_state=random_state)
    first = named[0][1] if named else None
    meta = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine_info(),
        "dataset": {"name": data.name, "n_train": len(train), "n_test": len(test), "source": data.source,
                    "redshift_column": data.redshift_column},
        "split": {"train": "train", "test": "validation", "n_train_requested": n_train,
                  "n_test_requested": n_test},
        "random_state": random_state,
        "features": {k: v for k, v in feats.get_params().items()},
        "grid": None if first is None else f"{first.zmin}–{first.zmax}, {first.nzbins} points",
        "point_estimate": None if first is None else first.point_estimate,
        "outlier_threshold": outlier_threshold,
        "tomographic_edges": list(tomo_edges),
    }
    report = Report(meta=meta)
    bar = tqdm(named, desc="benchmark", unit="estimator", disable=not progress)
    for name, est in bar:
        bar.set_postfix_str(f"{name}: fit")
        pipe = make_pipeline(clone(feats), est)
        entry = {"name": name, "class": f"{type(est).__module__}.{type(est).__qualname__}",
                 "params": est.get_params(deep=False)}
        try:
            _, fit_s, fit_mb = measure(lambda: pipe.fit(train, y_train))
            bar.set_postfix_str(f"{name}: estimate_pdf")
            ens, est_s, est_mb = measure(lambda: pipe.estimate_pdf(test))
        except Exception as exc:  # one failing method must not lose the others' results
            entry["error"] = f"{type(exc).__name__}: {exc}"
            report.results.append(entry)
            continue
        bar.set_postfix_str(f"{name}: metrics")
        fitted = pipe.steps[-1][1]
        key = {"mode": "zmode", "median": "zmedian", "mean": "zmean"}[fitted.point_estimate]
        metrics, arrays = score_ensemble(ens, ens.ancil[key], fitted.zgrid_, ctx)
        entry.update(metrics)
        entry["cost"] = {"fit_seconds": fit_s, "estimate_seconds": est_s,
                         "objects_per_second": len(test) / est_s if est_s > 0 else float("inf"),
                         "peak_rss_mb": max(fit_mb, est_mb)}
        report.results.append(entry)
        report.arrays[name] = arrays
    return report
