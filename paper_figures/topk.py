"""Figure: top-K sparse softmax gating, d = 2 design (study ``topk``; cache only).

One column per fitted model (exact k = 3, K = 2; enough k = 4, K = 3; too few k = 4, K = 2).
Top row: the softmax Voronoi loss (D_1 / D_2) and the region-aware loss (the package's reading of
the paper's region losses, :mod:`moetheory.losses.regions`) vs n, with the theory slope −1/2 and
the √(log n / n) curve where the paper promises parametric rates. Middle row: the
design-averaged Hellinger distance of the conditional densities (integrated over the slivers
between the fitted and true region boundaries: :func:`moetheory.study.density.cone_nodes`), with
the verdict of the rate-law test (:func:`moetheory.rates.law_test`) — the "too few" panel is where the density need
not converge. Bottom row: per-parameter errors within the Voronoi cells (single-atom cells for
the exact fit, cells of ≥ 2 atoms for the over-specified fits). Every curve: mean (markers),
median (thin dashed) with its 10–90% band, slope of the mean with OLS and replicate-bootstrap
intervals.

``python -m paper_figures.topk --preset quick [--cache DIR] [--out DIR]`` (default
``results/figures``; ``--out docs/figures`` redraws the documentation's figure)
"""
from __future__ import annotations

import numpy as np

from paper_figures._common import (COLORS, PARAM_LABELS, PARAM_RATES, add_reference_legend,
                                   certified_text,
                                   figure_main, load, param_errors, preset_note, rate_curve,
                                   save, setup_matplotlib)

NAME = "topk"

#: what each panel tests, and where the result may disagree with the paper (legend notes)
NOTES = {
    "exact": "paper: D_1 and density parametric (k = k*)",
    "enough": "paper: K ≥ K̄ = 3 → density and D_2 parametric; here the truth\n"
              "is only in the closure of the class (a zero-weight third slot)",
    "toofew": "paper: convergence guaranteed only for K ≥ K̄ = 3; no density-\n"
              "equivalent model found here (d = 1 design: Hellinger 2e-12)",
}


def plot(cache_dir=None, out_dir="results/figures", preset="quick") -> list:
    from moetheory.study.registry import studies
    from moetheory.study.summary import loss_matrix

    plt = setup_matplotlib()
    (spec,) = studies(NAME, preset)
    df = load(spec, cache_dir, NAME)
    # draw the fitted models that have cached cells (e.g. only the exact fit of a partial run)
    fits = [f for f in spec.fits if f.label in set(df["fit"])]
    fig, axes = plt.subplots(3, len(fits), figsize=(4.6 * len(fits), 13.5), squeeze=False,
                             layout="constrained")
    for col, fit in enumerate(fits):
        exact = fit.spec.n_experts == spec.truth_spec.n_experts
        kind = "$D_1$" if exact else "$D_2$"
        ax = axes[0, col]
        sizes, mat = loss_matrix(df, fit.label, "loss_voronoi")
        main = rate_curve(ax, sizes, mat, COLORS[0], f"{kind} (softmax Voronoi loss)",
                          expected=fit.expected_rate, show_law=True)
        if "loss_voronoi_region" in df.columns:
            sizes, mat = loss_matrix(df, fit.label, "loss_voronoi_region")
            rate_curve(ax, sizes, mat, COLORS[2], "region-aware loss (our reading)", marker="^",
                       show_law=True)
        ax.set_title(f"{fit.title}\n{certified_text(df, fit.label)}, best of "
                     f"{fit.n_starts} start(s), {len(fit.sizes)} sizes")
        ax.set_xlabel("n")
        ax.set_ylabel("loss")
        add_reference_legend(ax, fit.expected_rate, main, note=NOTES.get(fit.label))

        ax = axes[1, col]
        sizes, mat = loss_matrix(df, fit.label, "loss_hellinger")
        rate_curve(ax, sizes, mat, COLORS[1], "Hellinger (density)", marker="s", show_law=True,
                   expected=fit.expected_rate)
        ax.set_title("design-averaged Hellinger distance\n(polar quadrature split at the "
                     "region boundaries)")
        ax.set_xlabel("n")
        ax.set_ylabel("distance")
        add_reference_legend(ax, fit.expected_rate)

        ax = axes[2, col]
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
    fig.suptitle(f"Top-K sparse softmax gating, d = 2, k* = 3, K* = 2, selection by β₁ᵀx "
                 f"(study {spec.name}){preset_note(preset)}")
    paths = save(fig, out_dir, f"topk_{preset}")
    plt.close(fig)
    return paths


def main(argv=None) -> int:
    return figure_main("topk", plot, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
