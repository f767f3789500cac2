"""Shared drawing helpers of the figure scripts. They read the study cache only."""
from __future__ import annotations

from pathlib import Path

import numpy as np

DPI = 100
COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")

#: theoretical slopes of per-parameter errors for a cell of m fitted atoms (DESIGN.md §4.1)
PARAM_RATES = {1: {"beta1": -0.5, "b": -0.5, "a": -0.5, "var": -0.5},
               2: {"beta1": -1 / 8, "b": -1 / 8, "a": -1 / 4, "var": -1 / 4},
               3: {"beta1": -1 / 12, "b": -1 / 12, "a": -1 / 6, "var": -1 / 6}}
PARAM_LABELS = {"beta1": r"$\beta_1$", "b": "$b$", "a": "$a$", "var": r"$\nu$", "weight": "weight sum"}


def setup_matplotlib():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "axes.titlesize": 9, "legend.fontsize": 7,
                         "figure.dpi": DPI})
    return plt


def load(spec, cache_dir, name):
    """Results of ``spec`` from the cache; a clear error when nothing is cached."""
    from moetheory.study.cache import StudyCache

    cache = StudyCache(cache_dir)
    df = cache.load_results(spec)
    if df.empty:
        preset = spec.name.rsplit("-", 1)[-1]
        raise FileNotFoundError(
            f"no cached results for study {spec.name!r} in {cache.root}; run "
            f"`moetheory study run {name} --preset {preset}` (or `moetheory reproduce {name}`) first")
    return df


def _fit_label(fit, boot=None):
    lo, hi = fit.ci
    text = f"slope {fit.slope:+.2f} [{lo:+.2f}, {hi:+.2f}]"
    if boot is not None:
        text += f" (boot [{boot.ci[0]:+.2f}, {boot.ci[1]:+.2f}])"
    return text


def window_text(fit):
    return (f"fit window n ∈ [{fit.window[0]:.0f}, {fit.window[1]:.0f}], 95% CI\n"
            f"    (OLS; boot: replicates resampled)")


#: quantile band drawn around the median
BAND = (0.1, 0.9)


def _row_stats(mat):
    """Per row (sample size): mean, median and the BAND quantiles over finite entries."""
    mean = np.full(mat.shape[0], np.nan)
    med, lo, hi = mean.copy(), mean.copy(), mean.copy()
    for i, r in enumerate(mat):
        v = r[np.isfinite(r)]
        if v.size:
            mean[i], med[i] = v.mean(), np.median(v)
            lo[i], hi[i] = np.quantile(v, BAND)
    return mean, med, lo, hi


def rate_curve(ax, sizes, mat, color, label, expected=None, marker="o", fit_window=None,
               show_law=False, excluded=None):
    """The mean over non-failed replicates (markers), the median (thin dashed) with its 10–90%
    quantile band, the power-law slope of the mean with its OLS and replicate-bootstrap 95%
    intervals in the legend, the rate-law test's verdict (``show_law``), and (optionally) a
    theoretical reference slope — drawn with the √(log n / n) curve beside it when the slope is
    −1/2. Returns the RateFit (or None)."""
    from moetheory.rates import bootstrap_slope, fit_rate, law_curve, law_test

    sizes = np.asarray(sizes, float)
    ok = np.isfinite(mat)
    use = ok.sum(1) > 0
    if use.sum() == 0:
        return None
    mean, med, qlo, qhi = _row_stats(mat)
    ax.fill_between(sizes[use], qlo[use], qhi[use], color=color, alpha=0.13, lw=0)
    ax.plot(sizes[use], med[use], color=color, lw=0.7, ls="--")
    fit = boot = law = None
    n_failed = int((~ok).sum()) if excluded is None else int(excluded)
    if use.sum() >= 3:
        try:
            fit = fit_rate(sizes[use], mat[use], window=fit_window)
            boot = bootstrap_slope(sizes[use], mat[use], n_boot=1000, seed=0)
        except ValueError:
            fit = boot = None
        if show_law:
            try:
                law = law_test(sizes[use], mat[use])
            except ValueError:
                law = None
    text = label + (f" ({n_failed} excl.)" if n_failed else "")
    if fit is not None:
        text += f"\n    {_fit_label(fit, boot)}"
    if law is not None:
        text += f"\n    {law.short()}"
    ax.plot(sizes[use], mean[use], marker=marker, ms=3, lw=1.0, color=color, label=text)
    if fit is not None:
        grid = np.geomspace(fit.window[0], fit.window[1], 50)
        ax.plot(grid, fit.predict(grid), color=color, lw=0.8, ls=":")
    if expected is not None and fit is not None:
        n0 = sizes[use][0]
        m0 = fit.predict(n0)
        grid = np.geomspace(sizes[use][0], sizes[use][-1], 20)
        ax.plot(grid, m0 * (grid / n0) ** expected, color="0.4", lw=0.9, ls="--")
        if expected == -0.5:
            ax.plot(grid, law_curve("sqrt(log n/n)", grid, anchor=(n0, float(m0))), color="0.4",
                    lw=0.9, ls="-.")
    ax.set_xscale("log")
    ax.set_yscale("log")
    return fit


def preset_note(preset: str) -> str:
    """A suptitle line for the quick preset: its law-test verdicts have little power."""
    if preset != "quick":
        return ""
    return ("\nquick grid: the rate-law test names the right family in at most 34% of simulated "
            "studies here (docs/theory/rates.md); read its verdicts as undecided")


def add_reference_legend(ax, expected, window=None, note=None):
    """Legend below the axes (so it never hides data); ``window``: a RateFit for its window;
    ``note``: a last line of text (e.g. where the panel may disagree with the paper)."""
    import matplotlib.lines as mlines

    from moetheory.rates import window_slope

    handles, labels = ax.get_legend_handles_labels()
    if expected is not None:
        handles.append(mlines.Line2D([], [], color="0.4", ls="--", lw=0.9))
        labels.append(f"theory: slope {expected:+.3g}")
        if expected == -0.5:
            handles.append(mlines.Line2D([], [], color="0.4", ls="-.", lw=0.9))
            labels.append(f"theory with its log factor √(log n / n)\n    (slope "
                          f"{window_slope('sqrt(log n/n)', 1e3, 1e5):+.3f} on [1e3, 1e5])")
    handles.append(mlines.Line2D([], [], color="0.3", ls="--", lw=0.7))
    labels.append(f"median, band {BAND[0]:.0%}–{BAND[1]:.0%} of replicates (markers: mean)")
    if window is not None:
        handles.append(mlines.Line2D([], [], color="none"))
        labels.append(window_text(window))
    if note:
        handles.append(mlines.Line2D([], [], color="none"))
        labels.append(note)
    ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, -0.14), frameon=False,
              fontsize=7, ncol=1)


def certified_text(df, fit_label) -> str:
    """'c/t replicates certified' for the rows of ``fit_label`` (a study number counts only at a
    certified estimate; failed replicates count as not certified)."""
    from moetheory.study.summary import excluded

    g = df[df["fit"] == fit_label]
    failed, uncertified = excluded(g)
    return f"{int((~failed & ~uncertified).sum())}/{len(g)} replicates certified"


def param_errors(df, fit_label, param, min_size=2):
    """(sizes, matrix (m, R), modal cell size): per replicate, the mean error of ``param`` over
    the true atoms whose Voronoi cell holds >= min_size fitted atoms (NaN if none, failed or not
    certified)."""
    from moetheory.study.summary import excluded

    g = df[df["fit"] == fit_label]
    failed, uncertified = excluded(g)
    g = g.assign(failed=failed | uncertified)
    size_cols = sorted(c for c in g.columns if c.startswith("cell_size_"))
    sizes = np.array(sorted(g["n"].unique()))
    R = int(g["replicate"].max()) + 1
    mat = np.full((sizes.size, R), np.nan)
    pos = {n: i for i, n in enumerate(sizes)}
    all_m = []
    for _, row in g.iterrows():
        if row["failed"]:
            continue
        vals = []
        for c in size_cols:
            j = c.rsplit("_", 1)[-1]
            m = row[c]
            if (m >= min_size) if min_size > 1 else (m == 1):
                vals.append(row[f"cell_{param}_{j}"])
                all_m.append(int(m))
        if vals:
            v = float(np.mean(vals))
            if np.isfinite(v) and v > 0:
                mat[pos[row["n"]], int(row["replicate"])] = v
    modal = int(np.bincount(all_m).argmax()) if all_m else None
    return sizes, mat, modal


def save(fig, out_dir, stem) -> list:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{stem}.png", out / f"{stem}.pdf"]
    fig.savefig(paths[0], dpi=DPI, bbox_inches="tight")
    fig.savefig(paths[1], bbox_inches="tight")
    _shrink_png(paths[0])
    return paths


def _shrink_png(path) -> None:
    """Re-save the PNG with a 256-colour palette (figures are line art: ~3× smaller)."""
    try:
        from PIL import Image
    except ImportError:  # pragma: no cover
        return
    with Image.open(path) as im:
        small = im.convert("RGB").quantize(colors=256, method=Image.Quantize.MEDIANCUT)
    small.save(path, optimize=True)


def figure_main(name: str, plot, doc: str, argv=None) -> int:
    """``python -m paper_figures.<name>``: draw from the cache (shared by the figure scripts)."""
    import argparse

    ap = argparse.ArgumentParser(prog=f"python -m paper_figures.{name}", description=doc.splitlines()[0])
    ap.add_argument("--preset", default="quick", choices=("quick", "full"))
    ap.add_argument("--cache", default=None)
    ap.add_argument("--out", default="results/figures",
                    help="figure directory (default results/figures; docs/figures to redraw the docs)")
    args = ap.parse_args(argv)
    for p in plot(args.cache, args.out, args.preset):
        print(f"wrote {p}")
    return 0
