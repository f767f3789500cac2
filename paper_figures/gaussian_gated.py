"""Figure: Gaussian-gated MoE, the paper's simulation (study ``gaussian-gated``; cache only).

One panel per official model and fitted K: the paper's loss (D̄ for Type I models, D̃ for
Type II, as the official ``discrepancies.py`` computes it) against n, for the official protocol
(one EM step from the official near-truth start, every replicate counted) and the certified
MLE (EM to convergence, Newton polish, certificate; certified replicates counted), each with
the slope of its mean and the OLS and bootstrap 95% intervals, the theory slope −1/2 and the
slope the official repository's figure reports for that model and K.

``python -m paper_figures.gaussian_gated --preset quick [--cache DIR] [--out DIR]``
"""
from __future__ import annotations

from paper_figures._common import (COLORS, add_reference_legend, certified_text, figure_main,
                                   load, preset_note, rate_curve, save, setup_matplotlib)

NAME = "gaussian-gated"


def _model(spec) -> int:
    return int(spec.name.rsplit("model", 1)[-1])


def plot(cache_dir=None, out_dir="results/figures", preset="quick") -> list:
    from moetheory.study.registry import studies
    from moetheory.study.summary import loss_matrix
    from simulations.gaussian_gated import OFFICIAL_SLOPES, TYPES

    plt = setup_matplotlib()
    specs = studies(NAME, preset)
    ks = sorted({int(f.label[1:].split("-")[0]) for s in specs for f in s.fits})
    fig, axes = plt.subplots(len(specs), len(ks), figsize=(6.5 * len(ks), 6.0 * len(specs)),
                             squeeze=False, layout="constrained")
    for r, spec in enumerate(specs):
        df = load(spec, cache_dir, NAME)
        model = _model(spec)
        loss = r"$\bar{\mathcal{D}}$" if TYPES[model] == "Type I" else r"$\tilde{\mathcal{D}}$"
        for c, k in enumerate(ks):
            ax = axes[r, c]
            for label, color, marker, text, certified in (
                    (f"k{k}-official", COLORS[1], "s", "official protocol (1 EM step), all replicates", False),
                    (f"k{k}", COLORS[0], "o", "certified MLE, certified replicates", True)):
                if label not in set(df["fit"]):
                    continue
                sizes, mat = loss_matrix(df, label, "loss_voronoi", certified_only=certified)
                rate_curve(ax, sizes, mat, color, text, marker=marker,
                           expected=spec.fit(label).expected_rate)
            published = OFFICIAL_SLOPES.get((model, k))
            note = None if published is None else (
                f"official repository's figure (model {model}, K = {k}, n ∈ [100, 1e5], 20 "
                f"replicates): slope {published:+.3f}")
            mle = (f"; MLE: {certified_text(df, f'k{k}')}" if f"k{k}" in set(df["fit"]) else "")
            ax.set_title(f"model {model} ({TYPES[model]}, d = {spec.truth_spec.dim}), K = {k}: "
                         f"loss {loss} ({spec.replicates} replicates{mle})")
            ax.set_xlabel("n")
            ax.set_ylabel("loss")
            add_reference_legend(ax, -0.5, note=note)
    fig.suptitle(f"Gaussian-gated MoE (AISTATS 2024), k* = 3, official settings ({preset} preset)"
                 f"{preset_note(preset)}")
    paths = save(fig, out_dir, f"gaussian_gated_{preset}")
    plt.close(fig)
    return paths


def main(argv=None) -> int:
    return figure_main("gaussian_gated", plot, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
