"""Figure: relative test error vs n for RFA, biased RFA and RF-MLP (one panel per target).

A last panel draws the error of every polynomial target (Hermite or monomial link of degree p)
against n / d^(c·p): the paper (Fu, Guo, Bai & Mei, NeurIPS 2023) argues that the sample size a
random-feature attention layer needs grows like a power of d set by the degree of the target;
curves of different degrees collapse on this axis where that scaling holds. c = 1
(:data:`SCALING_EXPONENT`, n ≍ d^p) is our reading — the paper's text beyond the abstract could not
be consulted when this was written — and a command-line option (``--scaling-exponent``).

Reads only ``RESULTS/results.json`` written by ``python -m simulations.attention`` and
writes ``attention.png`` and ``attention.pdf``::

    python -m paper_figures.attention --results results/attention_quick --out docs/figures
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from paper_figures._common import save

__all__ = ["plot_attention", "main", "target_degree", "scaled_sizes", "scaling_targets",
           "threshold_size"]

LABELS = {"rfa": "RFA", "biased_rfa": "biased RFA", "rfmlp": "RF-MLP"}
#: c in the x-axis n / d^(c·p) of the scaling panel (our reading of the paper, see above)
SCALING_EXPONENT = 1.0
DEGREE_MARKERS = {1: "x", 2: "o", 3: "s", 4: "D", 5: "v"}
DEGREE_LINES = {1: ":", 2: "-", 3: "--", 4: "-.", 5: ":"}
STYLES = {"rfa": dict(color="C0", marker="o"), "biased_rfa": dict(color="C1", marker="s"),
          "rfmlp": dict(color="C2", marker="^")}


def target_degree(name: str):
    """Polynomial degree p of a registered target (None for cos / exp links).

    Examples
    --------
    >>> target_degree("hermite3_dot"), target_degree("cos_dot")
    (3, None)
    """
    from moetheory.attention.targets import TARGETS

    spec = TARGETS.get(name, {})
    if spec.get("link", "hermite") in ("hermite", "monomial"):
        return int(spec.get("degree", 2))
    return None


def scaled_sizes(n, d: int, degree: int, exponent: float = SCALING_EXPONENT) -> np.ndarray:
    """The scaling panel's x-axis n / d^(exponent · degree).

    Examples
    --------
    >>> scaled_sizes([640.0], d=8, degree=2).tolist()
    [10.0]
    """
    return np.asarray(n, dtype=float) / float(d) ** (exponent * degree)


def scaling_targets(targets) -> list:
    """The polynomial targets the scaling panel compares: those whose inner structure (``dot``,
    ``index``, ``bilinear``) comes in two or more degrees — only there does n / d^p line up
    targets that differ in degree alone; every polynomial target when no structure does.

    Examples
    --------
    >>> scaling_targets(["hermite2_dot", "hermite3_dot", "cos_dot", "hermite2_index"])
    ['hermite2_dot', 'hermite3_dot']
    >>> scaling_targets(["hermite2_index", "cos_dot"])
    ['hermite2_index']
    """
    from moetheory.attention.targets import TARGETS

    poly = [t for t in targets if target_degree(t) is not None]
    inner = {t: TARGETS.get(t, {}).get("inner") for t in poly}
    degrees = {}
    for t in poly:
        degrees.setdefault(inner[t], set()).add(target_degree(t))
    paired = [t for t in poly if len(degrees[inner[t]]) > 1]
    return paired or poly


def threshold_size(n, error, level: float = 0.5):
    """The sample size at which a mean error curve first falls to ``level`` (log-log linear
    interpolation between grid points); NaN if it never does, ``n[0]`` if it starts below.

    Examples
    --------
    >>> round(threshold_size([100, 400], [1.0, 0.25]), 6)
    200.0
    >>> threshold_size([100, 400], [1.0, 0.9])
    nan
    """
    sizes = np.asarray(n, float)
    n, e = np.log(sizes), np.log(np.asarray(error, float))
    target = np.log(level)
    below = np.flatnonzero(e <= target)
    if below.size == 0:
        return float("nan")
    i = int(below[0])
    if i == 0:
        return float(sizes[0])
    frac = (e[i - 1] - target) / (e[i - 1] - e[i])
    return float(np.exp(n[i - 1] + frac * (n[i] - n[i - 1])))


def grid_ticks(ax, n) -> None:
    """Label the log x-axis at the grid's sizes only (matplotlib's minor labels collide)."""
    from matplotlib.ticker import FixedLocator, NullFormatter, NullLocator

    ax.xaxis.set_major_locator(FixedLocator(list(n)))
    ax.xaxis.set_minor_locator(NullLocator())
    ax.xaxis.set_minor_formatter(NullFormatter())
    ax.set_xticks(list(n), [f"{int(v)}" for v in n], fontsize=7)


def plot_attention(results_dir, out_dir, name: str = "attention",
                   scaling_exponent: float = SCALING_EXPONENT) -> list[Path]:
    """Plot mean +- sd (over replicates) relative test error vs n; returns written paths.

    Parameters
    ----------
    results_dir : path
        Folder holding ``results.json``.
    out_dir : path
        Folder for ``{name}.png`` and ``{name}.pdf``.
    scaling_exponent : float
        c of the scaling panel's axis n / d^(c·p) (module docstring).

    Examples
    --------
    >>> plot_attention("results/attention_quick", "docs/figures")  # doctest: +SKIP
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(results_dir) / "results.json"
    if not path.exists():
        raise FileNotFoundError(f"results_dir must contain results.json, not found: {path}")
    res = json.loads(path.read_text())
    n = np.asarray(res["n_grid"], dtype=float)
    targets, models = res["targets"], res["models"]
    cfg = res["config"]
    poly = [(t, target_degree(t)) for t in targets if target_degree(t) is not None]
    n_panels = len(targets) + (1 if poly else 0)
    ncol = min(n_panels, 3)
    nrow = int(np.ceil(n_panels / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, 3.4 * nrow), squeeze=False)
    for ax, t in zip(axes.flat, targets):
        for m in models:
            mean = np.asarray(res["mean"][m][t], dtype=float)
            sd = np.nan_to_num(np.asarray(res["sd"][m][t], dtype=float))
            ax.plot(n, mean, label=LABELS.get(m, m), **STYLES.get(m, {}))
            ax.fill_between(n, np.maximum(mean - sd, 1e-6), mean + sd, alpha=0.2,
                            color=STYLES.get(m, {}).get("color"))
        ax.set_xscale("log")
        ax.set_yscale("log")
        grid_ticks(ax, n)
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.set_title(t)
        ax.set_xlabel("n")
        ax.set_ylabel("test MSE / Var(target)")
    if poly:
        ax = axes.flat[len(targets)]
        d = int(cfg["d"])
        shown = scaling_targets(targets)
        for m in models:
            st = STYLES.get(m, {})
            for t in shown:
                p = target_degree(t)
                mean = np.asarray(res["mean"][m][t], dtype=float)
                ax.plot(scaled_sizes(n, d, p, scaling_exponent), mean, color=st.get("color"),
                        marker=DEGREE_MARKERS.get(p, "o"), ms=3, lw=0.9,
                        ls=DEGREE_LINES.get(p, "-"))
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.set_title(f"scaling: error vs n / d^({scaling_exponent:g}·p), d = {d}", fontsize=9)
        ax.set_xlabel(f"n / d^({scaling_exponent:g}·p): one model's curves collapse where n ≍ "
                      f"d^(c·p)\n(c = {scaling_exponent:g}; c = 1 is our reading of the paper)",
                      fontsize=7)
        ax.set_ylabel("test MSE / Var(target)")
        from matplotlib.lines import Line2D

        handles = [Line2D([], [], color=STYLES.get(m, {}).get("color"), label=LABELS.get(m, m))
                   for m in models]
        handles += [Line2D([], [], color="0.3", ls=DEGREE_LINES.get(p, "-"),
                           marker=DEGREE_MARKERS.get(p, "o"), ms=3, label=f"{t} (p = {p})")
                    for t, p in ((t, target_degree(t)) for t in shown)]
        ax.legend(handles=handles, fontsize=6, loc="lower left")
    for ax in list(axes.flat)[n_panels:]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"d={cfg['d']}, N={cfg['N']}, M={cfg['n_heads']} heads, "
                 f"{cfg['activation']}, radius={cfg['radius']:g}, "
                 f"{len(res['errors'][models[0]][targets[0]])} replicates (mean ± sd)",
                 fontsize=9)
    fig.tight_layout()
    written = save(fig, out_dir, name)
    plt.close(fig)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m paper_figures.attention",
                                 description="Plot the attention experiment results.")
    ap.add_argument("--results", required=True, help="folder with results.json")
    ap.add_argument("--out", default="results/figures", help="output folder (default results/figures)")
    ap.add_argument("--scaling-exponent", type=float, default=SCALING_EXPONENT,
                    help="c of the scaling panel's axis n / d^(c p)")
    args = ap.parse_args(argv)
    for p in plot_attention(args.results, args.out, scaling_exponent=args.scaling_exponent):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
