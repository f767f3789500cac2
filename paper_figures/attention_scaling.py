"""Figure: the biased RFA's error at several input dimensions d against n / d^(c·p).

Reads ``RESULTS/d<d>/results.json`` written by ``python -m simulations.attention_scaling`` and
writes ``attention_scaling.png`` / ``.pdf``: one panel per target with a curve per d on the axis
n / d^(c·p) (they collapse where n ≍ d^(c·p) holds), and a panel of the sample size at which the
mean error falls to ``level`` against d, with the fitted exponent beside c·p. Prints that table::

    python -m paper_figures.attention_scaling --results results/attention_scaling --out docs/figures
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from paper_figures._common import save
from paper_figures.attention import SCALING_EXPONENT, grid_ticks, scaled_sizes, target_degree, \
    threshold_size

__all__ = ["load", "threshold_table", "plot_scaling", "main"]

LEVEL = 0.5
N_BOOT = 2000


def load(results_dir) -> dict:
    """d -> the results of ``RESULTS/d<d>/results.json`` (sorted by d)."""
    root = Path(results_dir)
    found = sorted(root.glob("d*/results.json"), key=lambda p: int(p.parent.name[1:]))
    if not found:
        raise FileNotFoundError(f"results_dir must hold d<d>/results.json folders; none in {root}")
    return {int(p.parent.name[1:]): json.loads(p.read_text()) for p in found}


def _slope(ds, ns):
    return float(np.polyfit(np.log(ds), np.log(ns), 1)[0])


def threshold_table(runs: dict, level: float = LEVEL, n_boot: int = N_BOOT, seed: int = 0):
    """Per target: the size n_L(d) at which the mean error falls to ``level``, the exponent
    of n_L against d (OLS on logs, over the d whose curve crosses ``level`` inside the grid)
    with a bootstrap 95% interval over replicates (resampled within each d), and c·p.

    Returns
    -------
    dict target -> {"degree", "n_level" {d: n or nan}, "used" [d], "excluded" [d], "slope",
    "ci" (lo, hi)}: ``excluded`` holds the d whose curve starts below ``level`` or never reaches
    it (censored); the slope is NaN unless two or more d are used.

    Examples
    --------
    >>> runs = {d: {"n_grid": [100, 1000], "targets": ["hermite2_dot"], "models": ["m"],
    ...             "errors": {"m": {"hermite2_dot": [[1.0, 0.25]] * 2}}} for d in (4, 8)}
    >>> runs[8]["errors"]["m"]["hermite2_dot"] = [[1.0, 0.4]] * 2
    >>> row = threshold_table(runs, n_boot=10)["hermite2_dot"]
    >>> row["degree"], round(row["slope"], 2), row["excluded"]
    (2, 0.85, [])
    """
    rng = np.random.default_rng(seed)
    ds = sorted(runs)
    first = runs[ds[0]]
    model = first["models"][0]
    out = {}
    for t in first["targets"]:
        n_grid = {d: runs[d]["n_grid"] for d in ds}
        errs = {d: np.asarray(runs[d]["errors"][model][t], float) for d in ds}  # (reps, n)
        n_level = {d: threshold_size(n_grid[d], errs[d].mean(axis=0), level) for d in ds}
        used = [d for d in ds if np.isfinite(n_level[d]) and n_level[d] > n_grid[d][0]]
        row = {"degree": target_degree(t), "n_level": n_level, "used": used,
               "excluded": [d for d in ds if d not in used],
               "slope": float("nan"), "ci": (float("nan"), float("nan"))}
        if len(used) >= 2:
            row["slope"] = _slope(used, [n_level[d] for d in used])
            boots = []
            for _ in range(n_boot):
                ns = []
                for d in used:
                    e = errs[d][rng.integers(0, errs[d].shape[0], errs[d].shape[0])]
                    ns.append(threshold_size(n_grid[d], e.mean(axis=0), level))
                if all(np.isfinite(ns)):
                    boots.append(_slope(used, ns))
            if boots:
                row["ci"] = tuple(float(q) for q in np.percentile(boots, [2.5, 97.5]))
        out[t] = row
    return out


def plot_scaling(results_dir, out_dir, name: str = "attention_scaling", level: float = LEVEL,
                 scaling_exponent: float = SCALING_EXPONENT) -> list[Path]:
    """Draw the figure (module docstring); returns the written paths."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = load(results_dir)
    ds = sorted(runs)
    first = runs[ds[0]]
    model, targets = first["models"][0], first["targets"]
    table = threshold_table(runs, level)
    fig, axes = plt.subplots(1, len(targets) + 1, figsize=(4.3 * (len(targets) + 1), 3.6))
    colors = {d: f"C{i}" for i, d in enumerate(ds)}
    for ax, t in zip(axes, targets):
        p = target_degree(t)
        for d in ds:
            n = np.asarray(runs[d]["n_grid"], float)
            mean = np.asarray(runs[d]["mean"][model][t], float)
            sd = np.nan_to_num(np.asarray(runs[d]["sd"][model][t], float))
            x = scaled_sizes(n, d, p, scaling_exponent)
            ax.plot(x, mean, "o-", color=colors[d], ms=3, label=f"d = {d}")
            ax.fill_between(x, np.maximum(mean - sd, 1e-6), mean + sd, color=colors[d], alpha=0.2)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.axhline(level, color="grey", lw=0.8, ls="--")
        ax.set_title(f"{t} (p = {p})", fontsize=10)
        ax.set_xlabel(f"n / d^({scaling_exponent:g}·{p})")
        ax.set_ylabel("test MSE / Var(target)")
        ax.legend(fontsize=7)
    ax = axes[-1]
    drawn = False
    for t in targets:
        row = table[t]
        nl = np.array([row["n_level"][d] for d in ds])
        lab = (f"{t}: slope {row['slope']:.2f} [{row['ci'][0]:.2f}, {row['ci'][1]:.2f}], "
               f"c·p = {scaling_exponent * row['degree']:g}")
        if row["excluded"]:
            lab += f" (d = {', '.join(map(str, row['excluded']))} censored)"
        ok = np.isfinite(nl)
        if ok.any():
            ax.plot(np.asarray(ds)[ok], nl[ok], "s-", label=lab)
            drawn = True
    ax.set_xscale("log")
    if drawn:
        ax.set_yscale("log")
        ax.legend(fontsize=6)
    else:
        ax.text(0.5, 0.5, f"no mean error reaches {level:g}", transform=ax.transAxes,
                ha="center")
    grid_ticks(ax, ds)
    ax.set_xlabel("d")
    ax.set_ylabel(f"n at which the mean error reaches {level:g}")
    ax.set_title("sample size needed vs d (theory: slope c·p)", fontsize=10)
    cfg = first["config"]
    fig.suptitle(f"{model}, N={cfg['N']}, M={cfg['n_heads']} heads, "
                 f"{len(runs[ds[0]]['errors'][model][targets[0]])} replicates per d (mean ± sd)",
                 fontsize=9)
    fig.tight_layout()
    written = save(fig, out_dir, name)
    plt.close(fig)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m paper_figures.attention_scaling",
                                 description="Plot the attention d-scaling study.")
    ap.add_argument("--results", required=True, help="folder with d<d>/results.json")
    ap.add_argument("--out", default="results/figures", help="output folder")
    ap.add_argument("--level", type=float, default=LEVEL, help="error level of the size table")
    args = ap.parse_args(argv)
    runs = load(args.results)
    for t, row in threshold_table(runs, args.level).items():
        sizes = ", ".join(f"d={d}: {v:.0f}" for d, v in row["n_level"].items())
        print(f"{t} (p = {row['degree']}): n at error {args.level:g}: {sizes}; exponent "
              f"{row['slope']:.2f} [{row['ci'][0]:.2f}, {row['ci'][1]:.2f}] (c·p = "
              f"{SCALING_EXPONENT * row['degree']:g}; d used: {row['used']})")
    for p in plot_scaling(args.results, args.out, level=args.level):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
