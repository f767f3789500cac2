"""Figure: relative test error vs n for RFA, biased RFA and RF-MLP (one panel per target).

Reads only ``RESULTS/results.json`` written by ``python -m simulations.attention`` and
writes ``attention.png`` and ``attention.pdf``::

    python -m paper_figures.attention --results results/attention_quick --out docs/figures
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

__all__ = ["plot_attention", "main"]

LABELS = {"rfa": "RFA", "biased_rfa": "biased RFA", "rfmlp": "RF-MLP"}
STYLES = {"rfa": dict(color="C0", marker="o"), "biased_rfa": dict(color="C1", marker="s"),
          "rfmlp": dict(color="C2", marker="^")}


def plot_attention(results_dir, out_dir, name: str = "attention") -> list[Path]:
    """Plot mean +- sd (over replicates) relative test error vs n; returns written paths.

    Parameters
    ----------
    results_dir : path
        Folder holding ``results.json``.
    out_dir : path
        Folder for ``{name}.png`` and ``{name}.pdf``.

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
    ncol = min(len(targets), 3)
    nrow = int(np.ceil(len(targets) / ncol))
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
        ax.axhline(1.0, color="grey", lw=0.8, ls=":")
        ax.set_title(t)
        ax.set_xlabel("n")
        ax.set_ylabel("test MSE / Var(target)")
    for ax in list(axes.flat)[len(targets):]:
        ax.set_visible(False)
    axes.flat[0].legend(fontsize=8)
    fig.suptitle(f"d={cfg['d']}, N={cfg['N']}, M={cfg['n_heads']} heads, "
                 f"{cfg['activation']}, radius={cfg['radius']:g}, "
                 f"{len(res['errors'][models[0]][targets[0]])} replicates (mean ± sd)",
                 fontsize=9)
    fig.tight_layout()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for ext in ("png", "pdf"):
        p = out / f"{name}.{ext}"
        fig.savefig(p, dpi=150)
        written.append(p)
    plt.close(fig)
    return written


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m paper_figures.attention",
                                 description="Plot the attention experiment results.")
    ap.add_argument("--results", required=True, help="folder with results.json")
    ap.add_argument("--out", default="results/figures", help="output folder (default results/figures)")
    args = ap.parse_args(argv)
    for p in plot_attention(args.results, args.out):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
