"""Figure: neural (Adam-trained PyTorch) MoE layers vs EM on the softmax truth.

Reads only ``RESULTS/results.json`` written by ``python -m simulations.neural`` and writes
``neural.png`` and ``neural.pdf``::

    python -m paper_figures.neural --results results/neural_quick --out docs/figures

Panels: (a) Voronoi loss D_1 vs training step for each gate (mean over replicates; the dotted
line is the loss's ceiling Σ_j exp(β*_0j), reached by any fit whose atoms are far off); (b) mean
negative log-likelihood vs step; (c) Voronoi loss vs n after training, Adam beside EM on the
same data (mean ± sd over replicates).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

__all__ = ["plot_neural", "main"]

STYLE = {
    "softmax": dict(color="C0", lw=2.2),
    "softmax (mini-batch)": dict(color="C0", ls="--"),
    "noisy top-1": dict(color="C3"),
    "switch top-1": dict(color="C1"),
    "switch top-1 (α=1)": dict(color="C1", ls=":"),
    "gshard top-2": dict(color="C2", ls="-.", lw=1.2),
    "dense-to-sparse": dict(color="C4"),
}
METHODS = {"em": ("EM (paper start)", dict(color="k", marker="o")),
           "adam_paper": ("Adam, softmax layer (same start)", dict(color="C0", marker="s", ls="--")),
           "adam_random": ("Adam, softmax layer (random start)", dict(color="C1", marker="^", ls=":"))}


def plot_neural(results_dir, out_dir="results/figures", name: str = "neural") -> list[Path]:
    """Draw the neural-study figure from saved results; returns the written paths.

    Parameters
    ----------
    results_dir : path, folder holding ``results.json`` from :func:`simulations.neural.run_neural_experiment`
    out_dir : path, folder for ``{name}.png`` and ``{name}.pdf``
    """
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker

    path = Path(results_dir) / "results.json"
    if not path.exists():
        raise FileNotFoundError(f"results_dir must contain results.json (run `python -m simulations.neural "
                                f"--out {results_dir}` first); not found: {path}")
    res = json.loads(path.read_text())
    if res.get("study") != "neural":
        raise ValueError(f"{path} holds results of study {res.get('study')!r}, not 'neural'")
    cfg = res["config"]
    cap = float(np.sum(np.exp(res["truth"]["beta0"])))
    fig, axes = plt.subplots(1, 3, figsize=(14.0, 4.0))
    ax_l, ax_nll, ax_n = axes
    hard_step = None
    for gate, c in res["curves"].items():
        steps = np.asarray(c["steps"], float)
        style = STYLE.get(gate, {})
        ax_l.plot(steps, np.asarray(c["loss_mean"], float), label=gate, **style)
        ax_nll.plot(steps, np.asarray(c["nll_mean"], float), label=gate, **style)
        if c["router"] == "dense_to_sparse" and any(c["hard"]):
            hard_step = steps[int(np.argmax(np.asarray(c["hard"], bool)))]
    for ax in (ax_l, ax_nll):
        ax.set_xlabel("Adam step")
        if hard_step is not None:
            ax.axvline(hard_step, color="C4", lw=0.8, alpha=0.6, ls="--")
    ax_l.axhline(cap, color="grey", ls=":", lw=1)
    ax_l.set_yscale("log")
    lo = np.nanmin([np.nanmin(np.asarray(c["loss_mean"], float)) for c in res["curves"].values()] + [cap])
    ax_l.set_ylim(lo / 1.5, cap * 1.6)
    ax_l.text(0.98, cap * 1.08, "ceiling Σ_j exp(β*_0j)", fontsize=7, color="grey", ha="right",
              transform=ax_l.get_yaxis_transform())
    ax_l.set_ylabel("Voronoi loss $D_1$ (identified β/τ)")
    ax_l.set_title(f"(a) loss vs step, n={cfg['n_curve']}, k=2, {cfg['curve_reps']} reps")
    ax_nll.legend(fontsize=7, loc="center right", title="gate", title_fontsize=7)
    ax_nll.set_ylabel("mean negative log-likelihood")
    ax_nll.set_title("(b) NLL vs step (eval mode)")
    if hard_step is not None:
        ax_nll.text(hard_step, 0.97, " dense→hard top-1", fontsize=7, color="C4",
                    transform=ax_nll.get_xaxis_transform(), va="top", ha="right")
    ns = np.asarray(res["vs_n"]["n"], float)
    for m, (label, style) in METHODS.items():
        mat = np.asarray(res["vs_n"][m]["loss"], float)
        mean = np.nanmean(mat, 1)
        sd = np.nan_to_num(np.nanstd(mat, 1))
        if m == "em" and np.sum(np.isfinite(mean) & (mean > 0)) >= 2:
            ok = np.isfinite(mean) & (mean > 0)
            slope = np.polyfit(np.log(ns[ok]), np.log(mean[ok]), 1)[0]
            label = f"{label}, slope {slope:+.2f}"
        ax_n.plot(ns, mean, label=label, **style)
        ax_n.fill_between(ns, np.maximum(mean - sd, 1e-6), mean + sd, alpha=0.12, color=style["color"])
    ref = np.nanmean(np.asarray(res["vs_n"]["em"]["loss"], float), 1)
    if np.isfinite(ref[0]):
        ax_n.plot(ns, ref[0] * (ns / ns[0]) ** -0.5, color="grey", lw=0.8, ls=":", label="$n^{-1/2}$")
    ax_n.set_xscale("log")
    ax_n.set_yscale("log")
    ax_n.set_xticks(ns)
    ax_n.set_xticklabels([f"{v:g}" for v in ns])
    ax_n.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
    ax_n.set_xlabel("n")
    ax_n.set_ylabel("Voronoi loss $D_1$ after training")
    ax_n.set_title(f"(c) loss vs n, {cfg['steps']} Adam steps, {cfg['reps']} reps")
    ax_n.legend(fontsize=7)
    fig.suptitle(f"Neural MoE layers (PyTorch, Adam) on the softmax truth — preset {res['preset']}",
                 fontsize=10)
    fig.tight_layout()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = [out / f"{name}.png", out / f"{name}.pdf"]
    for p in paths:
        fig.savefig(p, dpi=130 if p.suffix == ".png" else None)
    plt.close(fig)
    return paths


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m paper_figures.neural", description=__doc__.splitlines()[0])
    ap.add_argument("--results", default="results/neural", help="folder with results.json")
    ap.add_argument("--out", default="results/figures", help="output folder (default results/figures)")
    args = ap.parse_args(argv)
    for p in plot_neural(args.results, args.out):
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
