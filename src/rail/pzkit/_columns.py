"""RAIL's column conventions → :class:`pzkit.PhotometryFeatures` settings (no rail import here)."""

import os

from pzkit.exceptions import InputError

#: PhotometryFeatures parameters a stage's ``features`` dictionary may set.
FEATURE_KEYS = (
    "bands", "mag_column", "err_column", "ref_band", "include_errors", "include_fluxes", "nondetect",
    "nondetect_value", "mag_limits", "limit_error", "ebv_column", "extinction_coeffs", "id_column", "groupname",
)


def split_columns(columns, what="bands"):
    """Column names that share one pattern → (labels, template with ``{band}``).

    ``["mag_u_lsst", "mag_g_lsst"]`` → ``(["u", "g"], "mag_{band}_lsst")``. The labels are what is left after
    removing the longest common prefix and suffix; they must be non-empty and distinct, so that the template
    gives back exactly the given names.
    """
    cols = [str(c) for c in columns]
    if len(cols) < 2:
        raise InputError(f"{what} needs at least two columns, got {cols}")
    prefix = os.path.commonprefix(cols)
    suffix = os.path.commonprefix([c[::-1] for c in cols])[::-1]
    shortest = min(len(c) for c in cols)
    # the prefix and suffix must not overlap, and each label must keep at least one character
    while prefix and len(prefix) + len(suffix) >= shortest:
        if len(suffix) >= len(prefix):
            suffix = suffix[1:]
        else:
            prefix = prefix[:-1]
    while suffix and len(prefix) + len(suffix) >= shortest:
        suffix = suffix[1:]
    labels = [c[len(prefix): len(c) - len(suffix)] for c in cols]
    if any(not lab for lab in labels) or len(set(labels)) != len(labels):
        raise InputError(f"cannot find one '{{band}}' pattern shared by the {what} columns {cols}")
    template = prefix + "{band}" + suffix
    if [template.format(band=lab) for lab in labels] != cols:  # pragma: no cover - guaranteed by construction
        raise InputError(f"cannot find one '{{band}}' pattern shared by the {what} columns {cols}")
    return labels, template


def features_params(bands, err_bands=None, ref_band=None, mag_limits=None, nondetect_val=99.0, overrides=None):
    """PhotometryFeatures parameters from RAIL's shared parameters, then ``overrides`` on top.

    RAIL names its photometry with lists of column names (``bands = ["mag_u_lsst", ...]``,
    ``err_bands = ["mag_err_u_lsst", ...]``, ``ref_band = "mag_i_lsst"``, ``mag_limits`` keyed by column,
    ``nondetect_val = 99``) and replaces non-detections by the magnitude limits; pzkit names them with band labels
    and a ``{band}`` template. This translates the first into the second (``nondetect="limit"``, as RAIL does).
    Any :class:`~pzkit.PhotometryFeatures` parameter in ``overrides`` (a stage's ``features`` dictionary) wins.
    """
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(FEATURE_KEYS))
    if unknown:
        raise InputError(f"features: unknown PhotometryFeatures parameter(s) {unknown}; known: {list(FEATURE_KEYS)}")
    params = {"nondetect": "limit", "nondetect_value": nondetect_val}
    if not {"bands", "mag_column"} <= set(overrides):
        labels, mag_template = split_columns(bands, "bands")
        params.update(bands=labels, mag_column=mag_template)
        by_column = dict(zip([str(b) for b in bands], labels))
        if ref_band is not None:
            if str(ref_band) not in by_column:
                raise InputError(f"ref_band {ref_band!r} is not one of the bands {list(by_column)}")
            params["ref_band"] = by_column[str(ref_band)]
        if mag_limits:
            params["mag_limits"] = {by_column[c]: float(v) for c, v in dict(mag_limits).items() if c in by_column}
        if err_bands:
            try:
                err_labels, err_template = split_columns(err_bands, "err_bands")
            except InputError:
                err_labels, err_template = None, None
            if err_labels == labels:
                params["err_column"] = err_template
            elif overrides.get("include_errors") and "err_column" not in overrides:
                raise InputError(
                    f"features: include_errors needs error columns that follow the bands' pattern; err_bands "
                    f"{list(err_bands)} do not match bands {list(bands)}: set features['err_column']"
                )
    params.update(overrides)
    return params
