"""Figure: top-K sparse softmax gating (study ``topk``; cache only).

Top row, one panel per fitted model (exact k=3,K=2; enough k=4,K=3; too few k=4,K=2): the Voronoi
loss and the design-averaged Hellinger distance between fitted and true conditional densities vs
n (log-log, mean ± 1 sd, fitted slope with 95% CI and window, theory slope −1/2 where the theory
promises convergence). The "too few active experts" panel is where the density should fail to
converge; for the over-specified fits the density curve is also split by which true expert's
Voronoi cell holds the extra fitted expert (middle or outer expert). Bottom row: per-parameter errors within the Voronoi cells (single-atom cells for the
exact fit, cells of ≥ 2 atoms for the over-specified fits).

``python -m paper_figures.topk --preset quick [--cache DIR] [--out DIR]`` (default
``results/figures``; ``--out docs/figures`` redraws the documentation's figure)
"""
from __future__ import annotations


import numpy as np

from paper_figures._common import (COLORS, figure_main, PARAM_LABELS, PARAM_RATES, add_reference_legend, load,
                                   param_errors, rate_curve, save, setup_matplotlib)

NAME = "topk"


def plot(cache_dir=None, out_dir="results/figures", preset="quick") -> list:
    from moetheory.study.registry import studies
    from moetheory.study.runner import loss_matrix

    plt = setup_matplotlib()
    (spec,) = studies(NAME, preset)
    df = load(spec, cache_dir, NAME)
    # draw the fitted models that have cached cells (e.g. only k = 2 of a partial full run)
    fits = [f for f in spec.fits if f.label in set(df["fit"])]
    fig, axes = plt.subplots(2, len(fits), figsize=(4.4 * len(fits), 9.0), squeeze=False,
                             layout="constrained")
    for col, fit in enumerate(fits):
        ax = axes[0, col]
        if fit.label not in set(df["fit"]):
            ax.set_title(f"{fit.title}: not computed")
            continue
        exact = fit.spec.n_experts == spec.truth_spec.n_experts
        sizes, mat = loss_matrix(df, fit.label, "loss_voronoi")
        rate_curve(ax, sizes, mat, COLORS[0], "$D_1$" if exact else "$D_2$",
                   expected=fit.expected_rate, show_law=False)
        sizes, mat = loss_matrix(df, fit.label, "loss_hellinger")
        rate_curve(ax, sizes, mat, COLORS[1], "Hellinger (density)", marker="s", show_law=True)
        if not exact:
            # which true expert's Voronoi cell holds the extra fitted expert decides whether the
            # top-K fit can represent the truth: split the density curve by configuration
            g = df[df["fit"] == fit.label]
            middle = g["cell_size_1"] >= 2
            outer = (g["cell_size_0"] >= 2) | (g["cell_size_2"] >= 2)
            for mask, text, color, mk in ((middle, "middle expert split", COLORS[2], "^"),
                                          (outer, "outer expert split", COLORS[3], "v")):
                sub = g[mask]
                if sub.empty:
                    continue
                sizes, mat = loss_matrix(sub, fit.label, "loss_hellinger")
                bad = int((sub["failed"] | ~np.isfinite(sub["loss_hellinger"])).sum())
                rate_curve(ax, sizes, mat, color, f"Hellinger, {text} ({len(sub)} fits)",
                           marker=mk, excluded=bad)
        ax.set_title(f"{fit.title}\n{spec.replicates_of(fit.label)} replicates, best of "
                     f"{fit.n_starts} start(s)")
        ax.set_xlabel("n")
        ax.set_ylabel("loss / distance")
        add_reference_legend(ax, fit.expected_rate)

        ax = axes[1, col]
        min_size = 1 if exact else 2
        modal = None
        for i, p in enumerate(("beta1", "b", "a", "var")):
            sizes, mat, m = param_errors(df, fit.label, p, min_size=min_size)
            modal = modal or m
            if np.isfinite(mat).sum() == 0:
                continue
            exp = PARAM_RATES.get(m or 1, {}).get(p)
            lab = PARAM_LABELS[p] + (f" (theory {exp:+.3g})" if exp is not None else "")
            rate_curve(ax, sizes, mat, COLORS[i], lab,
                       expected=exp if fit.expected_rate is not None else None)
        ax.set_title("errors in single-atom cells" if exact else
                     f"errors in cells of ≥ 2 fitted atoms (modal m = {modal})")
        ax.set_xlabel("n")
        ax.set_ylabel("error")
        add_reference_legend(ax, None)
    fig.suptitle(f"Top-K sparse softmax gating, k* = 3, K* = 2 (study {spec.name})")
    paths = save(fig, out_dir, f"topk_{preset}")
    plt.close(fig)
    return paths


def main(argv=None) -> int:
    return figure_main("topk", plot, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
