"""Self-contained HTML report with plots (PNG images embedded as base64; no external files or scripts).

matplotlib is imported here only, when a report is drawn."""

import base64
import html
import io
import textwrap

import numpy as np


def _png(fig):
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90, bbox_inches="tight")
    return base64.b64encode(buf.getvalue()).decode("ascii")


def _estimator_figure(name, arrays, zmax):
    from matplotlib.colors import LogNorm

    plt = _pyplot()

    zs, zp = arrays["z_true"], arrays["z_phot"]
    dz = (zp - zs) / (1 + zs)
    fig, axes = plt.subplots(2, 4, figsize=(19, 8.5))
    fig.suptitle(name, fontsize=14, fontweight="bold")

    ax = axes[0, 0]
    *_, mesh = ax.hist2d(zs, zp, bins=120, range=[[0, zmax], [0, zmax]], norm=LogNorm(), cmap="viridis")
    fig.colorbar(mesh, ax=ax, shrink=0.8, label="objects per pixel")
    ax.plot([0, zmax], [0, zmax], "w--", lw=0.8)
    ax.set(xlabel="z_spec", ylabel="z_phot", title="z_phot vs z_spec (density, log)")

    ax = axes[0, 1]
    ax.hist(arrays["pit"], bins=40, range=(0, 1), density=True, color="tab:blue", alpha=0.8)
    ax.axhline(1.0, color="k", ls="--", lw=0.8)
    ax.set(xlabel="PIT", ylabel="density", title="PIT histogram (uniform = calibrated)")

    for ax, key, label in ((axes[0, 2], "residual_spec", "z_spec"), (axes[0, 3], "residual_photo", "z_phot")):
        r = arrays[key]
        ok = np.isfinite(r["mean"])
        ax.errorbar(r["centers"][ok], r["mean"][ok], yerr=r["err"][ok], fmt="o", ms=3, lw=0.8)
        ax.fill_between(r["centers"][ok], r["mean"][ok] - r["std"][ok], r["mean"][ok] + r["std"][ok], alpha=0.2)
        ax.axhline(0, color="k", lw=0.8)
        ax.axvline(r["break_point"], color="grey", ls=":", lw=0.8)
        ax.set(xlabel=label, ylabel="mean Δz/(1+z_spec)", title=f"residual vs {label} (band: RMS)")

    ax = axes[1, 0]
    mag = arrays["magnitude"]
    edges = np.quantile(mag, np.linspace(0, 1, 11))
    idx = np.clip(np.searchsorted(edges, mag, side="right") - 1, 0, 9)
    centres = [np.median(mag[idx == i]) for i in range(10)]
    med = [np.median(dz[idx == i]) for i in range(10)]
    lo = [np.percentile(dz[idx == i], 16) for i in range(10)]
    hi = [np.percentile(dz[idx == i], 84) for i in range(10)]
    ax.plot(centres, med, "o-", ms=3)
    ax.fill_between(centres, lo, hi, alpha=0.25)
    ax.axhline(0, color="k", lw=0.8)
    ax.set(xlabel="reference magnitude", ylabel="Δz/(1+z_spec)", title="residual vs magnitude (median, 16–84 %)")

    ax = axes[1, 1]
    colors = plt.cm.plasma(np.linspace(0, 0.85, max(len(arrays["tomo"]), 1)))
    for b, c in zip(arrays["tomo"], colors):
        if b["n"] == 0:
            continue
        ax.plot(b["zgrid"], b["nz_stack"], color=c, lw=1.5, label=f"{b['z_lo']:.1f}–{b['z_hi']:.1f}")
        ax.step(b["zgrid"], b["nz_true"], color=c, lw=0.8, ls="--", where="mid")
    ax.set(xlabel="z", ylabel="n(z)", title="n(z) per tomographic bin (solid: stacked PDFs, dashed: true)",
           xlim=(0, zmax))
    ax.legend(fontsize=7, title="z_phot bin", title_fontsize=7)

    for ax, key, title, cmap in ((axes[1, 2], "som_sigma_nmad", "SOM cells: σ_NMAD", "magma"),
                                 (axes[1, 3], "som_theta_deg", "SOM cells: slope θ (deg, 45 ideal)", "coolwarm")):
        grid = arrays[key]
        kw = dict(vmin=0, vmax=90) if "theta" in key else {}
        im = ax.imshow(np.ma.masked_invalid(grid), origin="lower", cmap=cmap, **kw)
        fig.colorbar(im, ax=ax, shrink=0.8)
        ax.set(title=title, xlabel="SOM column", ylabel="SOM row")
        if not np.isfinite(grid).any():  # an empty map says why rather than staying blank
            why = (arrays.get("som_undefined") or {}).get("mean_theta_deg", "no SOM cell has enough objects")
            ax.text(0.5, 0.5, "undefined:\n" + textwrap.fill(why, 30), transform=ax.transAxes, ha="center",
                    va="center", fontsize=9, color="0.3")
    fig.tight_layout()
    out = _png(fig)
    plt.close(fig)
    return out


#: Alt text of the comparison figure (tests look for it).
COMPARISON_ALT = "comparison of all estimators"


def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def _comparison_figure(arrays_by_name):
    """One figure, every estimator overlaid: binned σ_NMAD and outlier rate (bootstrap errors) against magnitude
    and z_spec, n(z) W1 per magnitude bin and the PIT QQ plot."""
    plt = _pyplot()
    fig, axes = plt.subplots(2, 3, figsize=(18, 9))
    fig.suptitle("All estimators", fontsize=14, fontweight="bold")
    colours = plt.cm.tab10(np.arange(len(arrays_by_name)) % 10)
    # a small horizontal offset per estimator keeps overlapping error bars apart
    offsets = (np.arange(len(arrays_by_name)) - (len(arrays_by_name) - 1) / 2) * 0.15
    panels = ((axes[0, 0], "binned_magnitude", "sigma_nmad", "reference magnitude", "σ_NMAD vs magnitude"),
              (axes[0, 1], "binned_magnitude", "outlier_rate", "reference magnitude", "outlier rate vs magnitude"),
              (axes[1, 0], "binned_z_spec", "sigma_nmad", "z_spec", "σ_NMAD vs z_spec"),
              (axes[1, 1], "binned_z_spec", "outlier_rate", "z_spec", "outlier rate vs z_spec"))
    for (name, arrays), colour, offset in zip(arrays_by_name.items(), colours, offsets):
        for ax, key, metric, xlabel, title in panels:
            b = arrays.get(key)
            if b is None:
                continue
            dx = offset * (0.2 if key == "binned_magnitude" else 0.05)
            ax.errorbar(np.asarray(b["center"]) + dx, b[metric], yerr=b[metric + "_err"], fmt="o-", ms=3, lw=1,
                        capsize=2, color=colour, label=name)
            ax.set(xlabel=xlabel, ylabel=metric.replace("_", " "), title=f"{title} (bootstrap 1σ)")
        nzm = arrays.get("nz_by_magnitude") or []
        if nzm:
            x = np.array([b["mag_median"] for b in nzm], dtype=float)
            y = np.array([b["wasserstein"] for b in nzm], dtype=float)
            ok = np.isfinite(x) & np.isfinite(y)
            axes[0, 2].plot(x[ok], y[ok], "o-", ms=3, lw=1, color=colour, label=name)
        qq = arrays.get("pit_qq")
        if qq is not None:
            axes[1, 2].plot(qq["uniform"], qq["pit"], lw=1.2, color=colour, label=name)
    axes[0, 2].set(xlabel="reference magnitude (bin median)", ylabel="W1 (stacked PDFs vs true n(z))",
                   title="n(z) Wasserstein-1 per magnitude bin")
    axes[1, 2].plot([0, 1], [0, 1], "k--", lw=0.8)
    axes[1, 2].set(xlabel="uniform quantile", ylabel="PIT quantile", title="PIT QQ (diagonal = calibrated)",
                   xlim=(0, 1), ylim=(0, 1), aspect="equal")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    fig.tight_layout()
    out = _png(fig)
    plt.close(fig)
    return out


class _Notes:
    """Footnotes for undefined values: each distinct reason gets one number, cited where the value would be."""

    def __init__(self):
        self.reasons = []

    def cite(self, reason):
        if reason not in self.reasons:
            self.reasons.append(reason)
        k = self.reasons.index(reason) + 1
        return f"<span class='undef' title='{html.escape(reason, quote=True)}'>undefined<sup>{k}</sup></span>"

    def html(self):
        if not self.reasons:
            return ""
        items = "".join(f"<li>{html.escape(r)}</li>" for r in self.reasons)
        return f"<p class='meta'>Undefined values:</p><ol class='notes'>{items}</ol>"


def _value(section, key, fmt, notes):
    """One table cell: the formatted value, or 'undefined' with the reason the report gives for it."""
    v = (section or {}).get(key)
    if v is None:
        return notes.cite((section or {}).get("undefined", {}).get(key, f"{key} not computed"))
    return html.escape(fmt(v))


def _som_note(report):
    """Which rows the SOM was trained on, from the first scored result."""
    for r in report.results:
        som = r.get("som") or {}
        if "trained_on_rows" in som:
            return (f"The SOM ({som['grid'][0]}×{som['grid'][1]} cells) was trained on {som['trained_on_rows']:,} "
                    f"rows of colours; a cell enters θ with at least {som['min_count']} test objects.")
    return ""


def _section(result, path):
    """``result["a"]["b"]`` for path "a.b" (None where absent)."""
    for part in path.split("."):
        result = (result or {}).get(part)
    return result


def write_html(report, path):
    """Write ``report`` as one self-contained HTML file: a summary table (undefined values cite their reason),
    one comparison figure with every estimator overlaid, and a figure per estimator."""
    meta = report.meta
    zmax = 3.0
    for r in report.results:
        if "params" in r and "zmax" in r["params"]:
            zmax = float(r["params"]["zmax"])
            break
    rows = []
    notes = _Notes()
    # (header (HTML), section, key or keys shown as "a / b", format): every metric cell goes through _value,
    # so a missing number says why
    columns = [
        ("σ_NMAD", "point", "sigma_nmad", "{:.4f}"), ("bias", "point", "bias_median", "{:+.4f}"),
        ("outliers", "point", "outlier_rate", lambda v: f"{100 * v:.2f} %"),
        ("CDE loss", "pdf", "cde_loss", "{:.3f}"), ("PIT KS", "pdf", "pit_ks", "{:.3f}"),
        ("PIT first bin /50", "pdf", "pit_edge_low", "{:.2f}"), ("PIT last bin /50", "pdf", "pit_edge_high", "{:.2f}"),
        ("CRPS", "pdf", "crps", "{:.4f}"), ("cov 68 %", "pdf", "coverage_68", "{:.2f}"),
        ("mean θ (SOM)", "som", "mean_theta_deg", "{:.1f}°"),
        ("σ_atten / σ_scatter (SOM, ÷σ_NMAD)", "som", ("median_atten_ratio", "median_scatter_ratio"), "{:.2f}"),
        ("Δz slope vs z_spec (&lt; z_b / &gt; z_b)", "bias.residual_vs_z_spec", ("slope_low", "slope_high"),
         "{:+.3f}"),
        ("Δz slope vs z_phot (&lt; z_b / &gt; z_b)", "bias.residual_vs_z_photo", ("slope_low", "slope_high"),
         "{:+.3f}"),
        ("mode collapse (TV)", "bias", "mode_collapse_distance", "{:.3f}"),
        ("fit s", "cost", "fit_seconds", "{:.2f}"), ("estimate s", "cost", "estimate_seconds", "{:.2f}"),
        ("obj/s", "cost", "objects_per_second", "{:,.0f}"),
    ]
    header = ["estimator"] + [c[0] for c in columns]
    for r in report.results:
        if "error" in r:
            rows.append(f"<tr><td>{html.escape(r['name'])}</td><td colspan='{len(header) - 1}'>failed: "
                        f"{html.escape(r['error'])}</td></tr>")
            continue
        cells = [html.escape(r["name"])]
        for _, section, keys, fmt in columns:
            fmt = fmt.format if isinstance(fmt, str) else fmt
            keys = (keys,) if isinstance(keys, str) else keys
            cells.append(" / ".join(_value(_section(r, section), key, fmt, notes) for key in keys))
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    figures = []
    if report.arrays:
        figures.append(f"<h2>Comparison</h2><img alt='{COMPARISON_ALT}' "
                       f"src='data:image/png;base64,{_comparison_figure(report.arrays)}'>")
    for name, arrays in report.arrays.items():
        figures.append(f"<h2>{html.escape(name)}</h2><img alt='plots for {html.escape(name)}' "
                       f"src='data:image/png;base64,{_estimator_figure(name, arrays, zmax)}'>")
    ds = meta["dataset"]
    doc = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>pzkit report: {html.escape(ds['name'])}</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; }}
table {{ border-collapse: collapse; margin: 1em 0; }}
th, td {{ border: 1px solid #bbb; padding: 4px 8px; text-align: right; }}
th {{ background: #eee; }} td:first-child {{ text-align: left; font-weight: bold; }}
img {{ max-width: 100%; border: 1px solid #ddd; }}
.meta {{ color: #555; font-size: 0.9em; }}
</style></head><body>
<h1>pzkit benchmark: {html.escape(ds['name'])}</h1>
<p class="meta">train {ds['n_train']:,} / test {ds['n_test']:,}; grid {html.escape(str(meta['grid']))};
point estimate {html.escape(str(meta['point_estimate']))}; outliers |Δz| &gt; {meta['outlier_threshold']};
seed {meta['random_state']}; {html.escape(meta['created'])}; {meta['machine']['cpu_count']} CPU,
{html.escape(meta['machine']['platform'])}; pzkit {html.escape(meta['machine']['versions']['pzkit'])}</p>
<table><tr>{''.join(f'<th>{h}</th>' for h in header)}</tr>
{''.join(rows)}
</table>
{notes.html()}
<p class="meta">Δz = (z_phot − z_spec)/(1 + z_spec). σ_NMAD = 1.4826·median|Δz − median Δz|. CDE loss (lower is
better) = E∫p̂² − 2E p̂(z_true). PIT KS: Kolmogorov–Smirnov distance of the PIT values from U(0,1). θ: mean over
SOM cells of the LTS slope angle of z_phot on z_spec (45° = no attenuation bias); σ_atten / σ_scatter: medians
over those cells of the two parts of σ_NMAD, the fitted line's departure from the diagonal (attenuation) and the
scatter about that line, each divided by the cell's σ_NMAD. Δz slopes: of the binned mean Δz against z_spec or z_phot, below and above the break point z_b
(0 = no redshift-dependent bias). Mode collapse: total-variation distance between the z_phot and z_spec
histograms. W1: Wasserstein-1 distance between the stacked-PDF n(z) and the true n(z) of each magnitude bin.
{html.escape(_som_note(report))}</p>
{''.join(figures)}
</body></html>
"""
    with open(path, "w", encoding="utf-8") as fh:
        fh.write(doc)
    return path
