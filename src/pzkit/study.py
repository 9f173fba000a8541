"""Multi-seed studies over the shared harness: the same estimators and variants on several realisations,
point metrics on named subsets of the test split, and per-seed paired differences against a control.

A benchmark script is then a configuration: the dataset, the estimators with their parameters, the seeds,
the subsets and the control (see ``benchmarks/mtl_nb_cosmos_paus.py``)::

    from pzkit.study import run_study

    result = run_study(["baseline_nn", ("mtl", "mtl_nb"), ("lambda0", "mtl_nb")], "sims:cosmos_paus",
                       seeds=range(5), n=21000, params={"lambda0": {"nb_weight": 0.0}},
                       subsets={"i>23": lambda test: test["mag_i_cosmos"] > 23}, control="lambda0")
"""

import numpy as np

#: Point metrics a study reports on every subset, as names of :mod:`pzkit.metrics` functions.
STUDY_METRICS = ("sigma_68", "sigma_nmad", "outlier_rate", "bias_median")


def subset_metrics(z_true, z_phot, mask, min_count=20):
    """:data:`STUDY_METRICS` of the objects in ``mask``; None (undefined) below ``min_count`` objects."""
    from . import metrics as M

    mask = np.asarray(mask, dtype=bool)
    if mask.sum() < min_count:
        return None
    out = {name: float(getattr(M, name)(z_true[mask], z_phot[mask])) for name in STUDY_METRICS}
    out["n"] = int(mask.sum())
    return out


def mean_sem(values):
    """Mean, standard deviation and standard error of the mean of ``values`` (NaN-free), and their count."""
    v = np.asarray([x for x in values if x is not None and np.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return {"mean": None, "std": None, "sem": None, "n_seeds": 0}
    std = float(np.std(v, ddof=1)) if v.size > 1 else None
    return {"mean": float(v.mean()), "std": std, "sem": None if std is None else std / np.sqrt(v.size),
            "n_seeds": int(v.size)}


def _study_spec(estimators, dataset, n, params, subsets, input_transforms, evaluate_kwargs):
    """Everything that defines one seed's result, as JSON-ready data: the estimators (entry points with their
    plugin versions, built ones by their full parameters), the dataset, the rules' source code, pzkit's
    version. A partial file is reused only for the same spec."""
    import inspect

    from . import __version__
    from .exceptions import PluginError
    from .registry import plugin_info

    def code(obj):
        # the name, the source and the values it closes over (a function's source alone hides them)
        name = getattr(obj, "__name__", None) or repr(obj)
        closure = inspect.getclosurevars(obj).nonlocals if inspect.isfunction(obj) else {}
        try:
            source = inspect.getsource(obj).strip()
        except (OSError, TypeError):
            source = ""
        return f"{name}: {source} {sorted((k, repr(v)) for k, v in closure.items())}"

    def describe(item):
        label, entry = (item, item) if isinstance(item, str) else item
        if isinstance(entry, str):
            try:
                return [label, entry, plugin_info(entry)["version"]]
            except PluginError:  # not an installed entry point (make_estimator will say so)
                return [label, entry, None]
        return [label, type(entry).__qualname__, repr(sorted(entry.get_params(deep=False).items()))]

    return {"pzkit": __version__, "estimators": [describe(e) for e in estimators],
            "dataset": code(dataset) if callable(dataset) else str(dataset), "n": n, "params": params or {},
            "subsets": {k: code(v) for k, v in sorted(subsets.items())},
            "transforms": {k: {i: code(f) for i, f in v.items()} for k, v in (input_transforms or {}).items()},
            "evaluate": {k: code(v) if callable(v) else v for k, v in evaluate_kwargs.items()}}


def run_study(estimators, dataset, seeds=(0,), n=None, params=None, subsets=None, control=None,
              input_transforms=None, progress=True, partial_dir=None, **evaluate_kwargs):
    """Run :func:`pzkit.evaluate` once per seed and summarise across seeds.

    Parameters
    ----------
    estimators, params, input_transforms
        As in :func:`pzkit.evaluate` (labelled variants: ``("lambda0", "mtl_nb")`` with ``params["lambda0"]``).
    dataset : str or callable(seed) -> Dataset
        A dataset name (``sims:<preset>`` is regenerated with each seed, ``n`` objects), or a function of the
        seed, e.g. a preset with overrides: ``lambda seed: sims_dataset(make(preset, n, seed, **overrides))``.
    seeds : iterable of int
        The ``random_state`` of each run: the realisation of a ``sims:<preset>`` name or of a ``dataset``
        function, the subsampling, the SOM and every estimator named by entry point (a built estimator keeps
        its own ``random_state``; a :class:`~pzkit.datasets.Dataset` object is the same for every seed).
    subsets : dict name -> callable(test table) -> boolean mask, optional
        Parts of the test split to score separately; ``"all"`` is always there.
    partial_dir : str, optional
        Keep each finished seed there (one JSON file, named by a hash of the configuration) and reuse it when
        the same study runs again: a study longer than one session is resumed seed by seed.
    control : str, optional
        Label whose metrics every other estimator is compared with, seed by seed: relative change
        ``metric / control − 1`` (negative is better for every study metric but the bias), with mean and s.e.m.
    **evaluate_kwargs
        Passed to :func:`pzkit.evaluate` (``n_train``, ``features``, ``outlier_threshold``, ...).

    Returns
    -------
    dict
        ``seeds``: per seed the harness entries (JSON-ready) and ``subsets`` {label: {subset: metrics}};
        ``summary`` {label: {subset: {metric: mean/std/sem}}}; ``paired`` (with ``control``) {label: {subset:
        {metric: mean/std/sem of the relative change, "better_in_every_seed"}}}.
    """
    from .harness import evaluate

    subsets = {"all": lambda table: np.ones(len(table), dtype=bool), **(subsets or {})}
    import json
    import os

    from .exceptions import OutputError
    from .harness import write_json

    import hashlib

    spec = json.loads(json.dumps(_study_spec(estimators, dataset, n, params, subsets, input_transforms,
                                             evaluate_kwargs), sort_keys=True, default=repr))
    key = hashlib.sha256(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:16]
    per_seed = []
    for seed in seeds:
        partial = None if partial_dir is None else os.path.join(partial_dir, f"study_{key}_seed{int(seed)}.json")
        if partial is not None and os.path.exists(partial):
            with open(partial) as fh:
                saved = json.load(fh)
            if saved.get("spec") != spec:
                raise OutputError(f"partial file {partial} belongs to another study configuration; move it away")
            per_seed.append(saved["result"])
            continue
        data = dataset(int(seed)) if callable(dataset) else dataset
        report = evaluate(estimators, dataset=data, params=params, random_state=int(seed), n=n,
                          progress=progress, input_transforms=input_transforms, **evaluate_kwargs)
        test = report.dataset.validation
        masks = {name: np.asarray(rule(test), dtype=bool) for name, rule in subsets.items()}
        scored = {}
        for label, arrays in report.arrays.items():
            scored[label] = {name: subset_metrics(arrays["z_true"], arrays["z_phot"], m) for name, m in masks.items()}
        failed = {r["name"]: r["error"] for r in report.results if "error" in r}
        kept = ("name", "params", "input_transforms", "n_fit_rows", "point", "pdf", "cost", "extra", "error")
        results = [{k: r[k] for k in kept if k in r} for r in report.results]
        per_seed.append({"seed": int(seed), "dataset": report.meta["dataset"], "results": results,
                         "subsets": scored, "failed": failed})
        if partial is not None and not failed:  # a failed estimator is retried when the study runs again
            write_json(partial, {"spec": spec, "result": per_seed[-1]})
    labels = list(dict.fromkeys(label for s in per_seed for label in s["subsets"]))
    summary = {label: {name: {metric: mean_sem([(s["subsets"].get(label, {}).get(name) or {}).get(metric)
                                                for s in per_seed])
                              for metric in STUDY_METRICS}
                       for name in subsets}
               for label in labels}
    out = {"estimators": [e if isinstance(e, str) else list(e) if isinstance(e[1], str) else e[0]
                          for e in estimators],
           "dataset": getattr(dataset, "__name__", str(dataset)), "n": n, "seeds": per_seed, "summary": summary}
    if control is not None:
        out["control"] = control
        out["paired"] = {label: {name: _paired(per_seed, label, control, name) for name in subsets}
                         for label in labels if label != control}
    return out


def _paired(per_seed, label, control, subset):
    out = {}
    for metric in STUDY_METRICS:
        changes = []
        for s in per_seed:
            a = (s["subsets"].get(label, {}).get(subset) or {}).get(metric)
            b = (s["subsets"].get(control, {}).get(subset) or {}).get(metric)
            changes.append(None if a is None or b is None or b == 0 else a / b - 1.0)
        stats = mean_sem(changes)
        valid = [c for c in changes if c is not None]
        if metric != "bias_median":
            stats["better_in_every_seed"] = bool(valid) and len(valid) == len(changes) and all(c < 0 for c in valid)
        out[metric] = stats
    return out
