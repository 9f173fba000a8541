"""``make()``: generate (or read from the cache) a mock survey, and the :class:`SimResult` it returns."""

import json
import os
import tempfile

import numpy as np

from .catalog import AB_NJY, SIGMA1_OFFSET, band_filters, generate_split, mw_coefficient, nb_filters
from .config import SimsConfigError, config_hash, get_config
from .filters import effective_wavelength
from .grid import default_cache_dir

_FILE_VERSION = 1


def _split_counts(splits, n):
    names = list(splits)
    if n < len(names):
        raise SimsConfigError(f"n: need at least one galaxy per split ({len(names)} splits: {names}), got {n}")
    raw = np.array([splits[s]["fraction"] for s in names]) * n
    counts = np.maximum(np.floor(raw).astype(int), 1)
    while counts.sum() > n:
        counts[int(np.argmax(counts))] -= 1
    order = np.argsort(-(raw - np.floor(raw)))
    i = 0
    while counts.sum() < n:
        counts[order[i % len(order)]] += 1
        i += 1
    return dict(zip(names, counts.tolist()))


def domain_info(cfg, domain_name):
    """Filters, 5σ depths, 1σ limits, Galactic extinction coefficients, PSF and pixel scale of a domain."""
    dom = cfg["domains"][domain_name]
    filt = band_filters(cfg, domain_name)
    info = {
        "filters": dict(filt),
        "depths": {b: float(dom["depth"][b]) for b in filt},
        "mag_limits": {b: round(float(dom["depth"][b]) + SIGMA1_OFFSET, 4) for b in filt},
        "extinction_coeffs": {b: round(mw_coefficient(f), 4) for b, f in filt.items()},
        "psf_fwhm": {b: float(dom["psf_fwhm"][b]) for b in filt},
        "pixel_scale": float(dom["pixel_scale"]),
        "zp_offset": {b: float((dom.get("zp_offset") or {}).get(b, 0.0)) for b in filt},
        "ebv_mw": dict(dom.get("ebv_mw") or {}),
    }
    nb_names, nb_f = nb_filters(cfg)
    if nb_names:
        from .catalog import nb_depths

        d = nb_depths(cfg, len(nb_f))
        info["nb_depths"] = dict(zip(nb_names, d.round(4).tolist()))
        info["nb_mag_limits"] = dict(zip(nb_names, (d + SIGMA1_OFFSET).round(4).tolist()))
    return info


class SimResult:
    """A simulated survey: catalog, optional narrow bands and images, and how to read them.

    Attributes
    ----------
    catalog : pandas.DataFrame
        One row per galaxy: ``id``, ``split``, ``domain``, ``redshift`` (the truth, for every row),
        ``labelled`` (whether a method may train on this row's label), ``mag_{band}_{survey}`` and
        ``mag_err_{band}_{survey}`` (observed; non-detections 99 with the 1σ limit as error),
        ``mag_true_{band}_{survey}`` (noise-free), ``ebv`` (Galactic E(B−V)), and physical truth columns.
    narrow_bands : pandas.DataFrame or None
        Aligned with ``catalog`` (same index): ``flux_{nb}``, ``flux_err_{nb}`` (nJy), ``mag_{nb}``,
        ``mag_err_{nb}``; NaN where the band was not observed (rows of splits without narrow bands) and, for
        magnitudes, where the flux is not positive.
    images : numpy.ndarray or None
        float32 (N, n_bands, S, S) in nJy per pixel (m = 31.4 − 2.5 log10(sum)), rows aligned with ``catalog``.
    """

    def __init__(self, catalog, config, narrow_bands=None, images=None, image_info=None, key=None, path=None):
        self.catalog = catalog
        self.config = config
        self.narrow_bands = narrow_bands
        self.images = images
        self.image_info = image_info or {}
        self.key = key
        self.path = path
        self.survey = config["survey"]
        self.bands = list(config["bands"])
        self.ref_band = config["ref_band"]
        self.mag_column = "mag_{band}_" + self.survey
        self.err_column = "mag_err_{band}_" + self.survey
        self.true_mag_column = "mag_true_{band}_" + self.survey
        self.redshift_column = "redshift"
        self.id_column = "id"
        self.nb_bands = list(nb_filters(config)[0]) or None
        self.nb_wavelengths = ({n: effective_wavelength(f) for n, f in zip(*nb_filters(config))}
                               if self.nb_bands else None)
        doms = list(dict.fromkeys(catalog["domain"].tolist())) if len(catalog) else [
            config["splits"][next(iter(config["splits"]))]["domain"]]
        self.domain_names = doms
        self.domains = {d: domain_info(config, d) for d in doms}
        first = self.domains[doms[0]]
        #: 1σ point-source limiting magnitudes (the replacement for non-detections, as DC2's limits).
        self.mag_limits = dict(first["mag_limits"])
        #: 5σ point-source depths.
        self.depths = dict(first["depths"])
        #: A_band / E(B−V) for dereddening with the ``ebv`` column.
        self.extinction_coeffs = dict(first["extinction_coeffs"])
        self.filters = dict(first["filters"])
        self.image_zeropoint = AB_NJY

    # ------------------------------------------------------------------ access
    def __len__(self):
        return len(self.catalog)

    def __repr__(self):
        parts = [f"{s}={int((self.catalog['split'] == s).sum())}" for s in self.splits]
        extra = []
        if self.narrow_bands is not None:
            extra.append(f"{len(self.nb_bands)} narrow bands")
        if self.images is not None:
            extra.append(f"images {tuple(self.images.shape[1:])}")
        return (f"SimResult({self.config['name']!r}, n={len(self)}, {', '.join(parts)}, domains={self.domain_names}"
                + (", " + ", ".join(extra) if extra else "") + ")")

    @property
    def splits(self):
        """Names of the splits present, in config order."""
        present = set(self.catalog["split"].unique()) if len(self.catalog) else set()
        return [s for s in self.config["splits"] if s in present]

    def subset(self, rows):
        """A new SimResult restricted to ``rows`` (boolean mask or integer positions); images and narrow
        bands follow the rows."""
        rows = np.asarray(rows)
        idx = np.nonzero(rows)[0] if rows.dtype == bool else rows
        cat = self.catalog.iloc[idx]
        nb = None if self.narrow_bands is None else self.narrow_bands.iloc[idx]
        images = None if self.images is None else self.images[idx]
        return SimResult(cat, self.config, nb, images, self.image_info, self.key, self.path)

    def split(self, name):
        """The rows of split ``name`` (``"train"``, ``"test"``, ``"source"``, ``"target"`` … see ``splits``)."""
        if name not in self.splits:
            raise KeyError(f"no split {name!r} in {self.config['name']}; splits: {self.splits}")
        return self.subset((self.catalog["split"] == name).to_numpy())

    __getitem__ = split

    def __getattr__(self, name):
        # result.train, result.test, result.source, result.target, ... for the splits the preset defines
        if name.startswith("_") or "catalog" not in self.__dict__:
            raise AttributeError(name)
        if name in self.config.get("splits", {}):
            return self.split(name)
        raise AttributeError(f"{type(self).__name__!s} has no attribute {name!r} (splits: {self.splits})")

    @property
    def labelled(self):
        """The rows whose redshift a method may train on."""
        return self.subset(self.catalog["labelled"].to_numpy(dtype=bool))

    @property
    def unlabelled(self):
        return self.subset(~self.catalog["labelled"].to_numpy(dtype=bool))

    def features(self, deredden=True, **overrides):
        """A :class:`pzkit.PhotometryFeatures` for the broad bands: colours + the reference magnitude,
        non-detections replaced by the 1σ limits, dereddened with ``ebv`` (unless ``deredden=False``)."""
        from ..features import PhotometryFeatures

        params = dict(bands=list(self.bands), mag_column=self.mag_column, err_column=self.err_column,
                      ref_band=self.ref_band, nondetect="limit", mag_limits=dict(self.mag_limits))
        if deredden:
            params.update(ebv_column="ebv", extinction_coeffs=dict(self.extinction_coeffs))
        params.update(overrides)
        return PhotometryFeatures(**params)

    # ------------------------------------------------------------------ output
    def write(self, path, progress=False):
        """Write the catalog (group ``photometry``), narrow bands and images.

        ``.hdf5``: groups ``photometry`` and ``narrow_bands`` written with tables_io (readable by
        ``tables_io.read`` and ``PhotometryFeatures(groupname="photometry")``), the config as JSON in the file
        attributes. ``.parquet``/``.pq``: the catalog via tables_io and ``<stem>_narrow_bands.parquet``.
        Images (if any) go to ``<stem>_images.hdf5``: datasets ``images`` (N, bands, S, S) float32 in nJy/pixel
        and ``id``. Returns the list of files written.
        """
        import h5py
        import tables_io

        path = os.fspath(path)
        stem, ext = os.path.splitext(path)
        ext = ext.lower()
        folder = os.path.dirname(os.path.abspath(path))
        os.makedirs(folder, exist_ok=True)
        cat = _to_numpy_dict(self.catalog)
        written = []
        meta = {"config": json.dumps(self.config), "key": self.key or "", "pzkit_sims_file": _FILE_VERSION,
                "image_info": json.dumps(self.image_info, default=float)}
        if ext == ".h5":
            raise SimsConfigError("out: use .hdf5 (tables_io reads .h5 files as pandas HDF5, which "
                                  "PhotometryFeatures(groupname=...) cannot read back) or .parquet")
        if ext in (".hdf5", ".hdf"):
            groups = {"photometry": cat}
            if self.narrow_bands is not None:
                groups["narrow_bands"] = _to_numpy_dict(self.narrow_bands)
            tables_io.write(groups, path)
            with h5py.File(path, "a") as fh:
                for k, v in meta.items():
                    fh.attrs[k] = v
            written.append(path)
        elif ext in (".parquet", ".pq"):
            import pandas as pd

            tables_io.write(pd.DataFrame(cat), path)
            written.append(path)
            if self.narrow_bands is not None:
                p = f"{stem}_narrow_bands{ext}"
                tables_io.write(pd.DataFrame(_to_numpy_dict(self.narrow_bands)), p)
                written.append(p)
        else:
            raise SimsConfigError(f"out: unsupported output extension {ext!r}; use .hdf5 or .parquet")
        if self.images is not None:
            p = f"{stem}_images.hdf5"
            with h5py.File(p, "w") as fh:
                fh.create_dataset("images", data=self.images, compression="gzip", compression_opts=1,
                                  chunks=(min(256, len(self.images)),) + self.images.shape[1:])
                fh.create_dataset("id", data=self.catalog["id"].to_numpy())
                for k, v in meta.items():
                    fh.attrs[k] = v
            written.append(p)
        return written


def _to_numpy_dict(df):
    out = {}
    for c in df.columns:
        v = df[c].to_numpy()
        if v.dtype == object or v.dtype.kind in "UO" or str(df[c].dtype) in ("string", "str"):
            v = np.asarray(df[c].astype(str).to_numpy(), dtype="S")
        out[str(c)] = v
    return out


# ----------------------------------------------------------------------------------------------- cache IO
def _write_h5(path, groups, attrs):
    import h5py

    folder = os.path.dirname(path)
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, suffix=".h5.tmp")
    os.close(fd)
    try:
        with h5py.File(tmp, "w") as fh:
            for k, v in attrs.items():
                fh.attrs[k] = v
            for gname, data in groups.items():
                if isinstance(data, np.ndarray):
                    fh.create_dataset(gname, data=data)
                    continue
                g = fh.create_group(gname)
                for col, arr in data.items():
                    g.create_dataset(col, data=arr)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def _read_h5(path):
    import h5py

    out = {}
    with h5py.File(path, "r") as fh:
        attrs = dict(fh.attrs)
        for gname in fh:
            obj = fh[gname]
            if hasattr(obj, "keys"):
                out[gname] = {c: obj[c][()] for c in obj}
            else:
                out[gname] = obj[()]
    return out, attrs


def _frame(cols, order=None):
    import pandas as pd

    data = {}
    for c in (order or cols):
        v = cols[c]
        if isinstance(v, np.ndarray) and v.dtype.kind == "S":
            v = v.astype(str)
        data[c] = v
    return pd.DataFrame(data)


# ----------------------------------------------------------------------------------------------- make
def make(preset, n, random_state=0, cache=True, images=False, cache_dir=None, progress=False, domain=None,
         version=None, **overrides):
    """Generate a mock survey (or read it from the cache).

    Parameters
    ----------
    preset : str or dict
        ``"lsst_like"``, ``"sdss_like"``, ``"cosmos_paus"``, ``"flagship_paus"``, ``"hsc_udf"``,
        ``"candels_like"``, ``"deep_wide"`` (see :func:`list_presets`), optionally ``"name@version"``, or a
        full config dict.
    n : int
        Total number of galaxies over all splits (each split gets its ``fraction``).
    random_state : int
        Seed; the same config, ``n`` and seed give the same output, bit for bit.
    cache : bool
        Read from and write to the cache directory, keyed by a hash of (config, n, seed, version).
    images : bool or dict
        Also render GalSim stamps (cached separately; the catalog is identical with or without images, unless
        ``images["photometry"]`` asks for catalogue magnitudes measured on them, see
        :mod:`pzkit.sims.photometry`; then the stamps are always rendered).
        A dict both asks for images and overrides the config's ``images`` section, e.g.
        ``images={"stamp_size": 64, "method": "exact"}``.
    cache_dir : str, optional
        Defaults to ``$PZKIT_CACHE_DIR/sims`` or ``~/.cache/pzkit/sims``.
    progress : bool
        Show tqdm progress bars.
    domain : str, optional
        Put every split in this domain (e.g. ``make("hsc_udf", n, domain="elais_deep")``).
    version : int, optional
        Config version of the preset (default: the newest); an older version gives exactly its old output.
    **overrides
        Deep-merged into the preset config, e.g. ``redshift={"max": 2.0}``,
        ``domains={"wfd": {"depth": {"u": 25.0}}}``, ``splits={"target": {"domain": "deep2_deep"}}``,
        ``narrow_bands=None``.
    """
    if isinstance(images, dict):   # images={"stamp_size": 64, ...}: render, with these image settings
        overrides["images"] = images
        images = True
    cfg = get_config(preset, domain=domain, version=version, **overrides)
    measured = cfg.get("images", {}).get("photometry") is not None
    images = bool(images) or measured     # a catalogue measured on the stamps needs the stamps
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise SimsConfigError(f"n: must be a positive integer, got {n!r}")
    n = int(n)
    if random_state is None:
        random_state = int(np.random.SeedSequence().entropy % (2**63))
        cache = False
    if isinstance(random_state, bool) or not isinstance(random_state, (int, np.integer)) or random_state < 0:
        raise SimsConfigError(f"random_state: must be a non-negative integer or None, got {random_state!r}")
    random_state = int(random_state)
    key = config_hash(cfg, n, random_state)
    cache_dir = os.path.expanduser(cache_dir) if cache_dir else default_cache_dir()
    folder = os.path.join(cache_dir, f"{cfg['name']}_{key}")
    cat_path = os.path.join(folder, "catalog.h5")
    img_path = os.path.join(folder, "images.h5")

    loaded = None
    if cache and os.path.exists(cat_path):
        try:
            loaded, attrs = _read_h5(cat_path)
            if attrs.get("key") != key:
                loaded = None
        except OSError:
            loaded = None
    if loaded is None:
        cat_cols, nb_cols, order = _generate(cfg, n, random_state, cache_dir, progress)
        if cache:
            groups = {"catalog": {c: (np.asarray(v, dtype="S") if np.asarray(v).dtype.kind in "UO" else v)
                                  for c, v in cat_cols.items()}}
            if nb_cols is not None:
                groups["narrow_bands"] = nb_cols
            attrs = {"key": key, "config": json.dumps(cfg), "order": json.dumps(order),
                     "nb_order": json.dumps(list(nb_cols) if nb_cols is not None else [])}
            try:
                _write_h5(cat_path, groups, attrs)
            except OSError:
                pass
    else:
        order = json.loads(attrs["order"])
        cat_cols = loaded["catalog"]
        nb_cols = loaded.get("narrow_bands")
        if nb_cols is not None:
            nb_cols = {c: nb_cols[c] for c in json.loads(attrs["nb_order"])}
    catalog = _frame(cat_cols, order)
    nb = _frame(nb_cols) if nb_cols is not None else None
    if nb is not None:
        nb.index = catalog.index

    imgs, info = None, None
    if images:
        if cache and os.path.exists(img_path):
            try:
                d, a = _read_h5(img_path)
                imgs, info = d["images"], json.loads(a["info"])
            except (OSError, KeyError):
                imgs = None
        if imgs is None:
            imgs, info = _render_all(cfg, catalog, random_state, progress)
            if cache:
                try:
                    _write_h5(img_path, {"images": imgs}, {"key": key, "info": json.dumps(info, default=float)})
                except OSError:
                    pass
    if measured:
        from .photometry import with_measured_photometry

        catalog = with_measured_photometry(cfg, catalog, imgs, info)
    return SimResult(catalog, cfg, nb, imgs, info, key, folder if cache else None)


def _generate(cfg, n, random_state, cache_dir, progress):
    counts = _split_counts(cfg["splits"], n)
    children = np.random.SeedSequence(random_state).spawn(len(counts) + 1)
    models = {}
    all_cols, all_nb = [], []
    nb_names = nb_filters(cfg)[0]
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=n, desc=f"catalog {cfg['name']}", unit="gal")
    offset = 0
    for (name, count), ss in zip(counts.items(), children[:-1]):
        rng = np.random.default_rng(ss)
        cols, nb = generate_split(cfg, name, count, rng, cache_dir, models)
        head = {"id": np.arange(offset, offset + count, dtype=np.int64),
                "split": np.full(count, name), "domain": np.full(count, cfg["splits"][name]["domain"])}
        offset += count
        all_cols.append({**head, **cols})
        all_nb.append(nb)
        if bar is not None:
            bar.update(count)
    if bar is not None:
        bar.close()
    order = list(all_cols[0])
    for c in all_cols[1:]:
        for k in c:
            if k not in order:
                order.append(k)
    cat = {}
    for k in order:
        parts = []
        for c in all_cols:
            if k in c:
                parts.append(np.asarray(c[k]))
            else:
                n_rows = len(c["id"])
                parts.append(np.full(n_rows, np.nan))
        cat[k] = np.concatenate(parts)
    nb_cols = None
    if nb_names and any(x is not None for x in all_nb):
        nb_cols = {"id": cat["id"]}
        blocks = {k: [] for k in ("flux", "flux_err", "mag", "mag_err")}
        for c, nb in zip(all_cols, all_nb):
            rows = len(c["id"])
            if nb is None:
                for k in blocks:
                    blocks[k].append(np.full((rows, len(nb_names)), np.nan))
                continue
            f, e = nb["flux"], nb["flux_err"]
            with np.errstate(divide="ignore", invalid="ignore"):
                pos = f > 0
                mag = np.where(pos, AB_NJY - 2.5 * np.log10(f), np.nan)
                merr = np.where(pos, 2.5 / np.log(10) * e / f, np.nan)
            blocks["flux"].append(f)
            blocks["flux_err"].append(e)
            blocks["mag"].append(mag)
            blocks["mag_err"].append(merr)
        arrays = {k: np.concatenate(v) for k, v in blocks.items()}
        for kind, prefix in (("flux", "flux_"), ("flux_err", "flux_err_"), ("mag", "mag_"), ("mag_err", "mag_err_")):
            for j, name in enumerate(nb_names):
                nb_cols[f"{prefix}{name}"] = arrays[kind][:, j]
    return cat, nb_cols, order


def _render_all(cfg, catalog, random_state, progress):
    from .images import render

    seed = int(np.random.SeedSequence(random_state).spawn(len(cfg["splits"]) + 1)[-1].generate_state(1)[0])
    stamp = int(cfg["images"].get("stamp_size", 32))
    out = np.empty((len(catalog), len(cfg["bands"]), stamp, stamp), dtype=np.float32)
    infos = {}
    doms = catalog["domain"].to_numpy()
    for d_i, dom in enumerate(dict.fromkeys(doms.tolist())):
        rows = np.nonzero(doms == dom)[0]
        cols = {c: catalog[c].to_numpy()[rows] for c in catalog.columns}
        imgs, info = render(cfg, dom, cols, seed + d_i, progress=progress)
        out[rows] = imgs
        infos[dom] = info
    first = infos[next(iter(infos))]
    info = dict(first)
    info["domains"] = infos
    return out, info
