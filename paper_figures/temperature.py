"""Figure: temperature gate vs activation gates (study ``temperature``; cache only).

Columns: exact-fitted (k = 2) and over-fitted (k = 3). In each panel, the Voronoi loss vs n for
the temperature gate (τ estimated; raw coordinates in the normalisation ‖(β, τ)‖ = 1, and
identified coordinates β/τ) and for the activation gates σ = tanh and sigmoid (raw coordinates),
mean ± 1 sd, fitted power-law slope with 95% CI, and which law (power n^s or logarithmic
(log n)^s) AIC prefers; the dashed lines are the activation gates' theoretical slope −1/2 (the
temperature gate's theory promises no polynomial rate, so none is drawn for it). Second row: the Hellinger distance of the conditional densities.

``python -m paper_figures.temperature --preset quick [--cache DIR] [--out DIR]`` (default
``results/figures``; ``--out docs/figures`` redraws the documentation's figure)
"""
from __future__ import annotations


from paper_figures._common import (COLORS, figure_main, add_reference_legend, load, rate_curve, save,
                                   setup_matplotlib)

NAME = "temperature"

#: (family, loss) -> (colour, marker), the same in every panel
STYLE = {("temperature", "loss_voronoi"): (COLORS[0], "o"),
         ("temperature", "loss_voronoi_identified"): (COLORS[1], "s"),
         ("tanh", "loss_voronoi"): (COLORS[2], "^"),
         ("sigmoid", "loss_voronoi"): (COLORS[3], "v")}


def plot(cache_dir=None, out_dir="results/figures", preset="quick") -> list:
    from moetheory.study.registry import studies
    from moetheory.study.runner import loss_matrix

    plt = setup_matplotlib()
    specs = studies(NAME, preset)
    frames = {spec.name: load(spec, cache_dir, NAME) for spec in specs}
    labels = list(dict.fromkeys(f.label for spec in specs for f in spec.fits))
    fig, axes = plt.subplots(2, len(labels), figsize=(5.5 * len(labels), 10.0), squeeze=False,
                             layout="constrained")
    for col, label in enumerate(labels):
        ax, axh = axes[0, col], axes[1, col]
        drawn_theory = False
        for spec in specs:
            df = frames[spec.name]
            family = spec.name.rsplit("-", 1)[-1]
            if label not in set(df["fit"]):
                continue
            curves = [("loss_voronoi", f"{family}" + (" (raw, normalised)" if family == "temperature" else ""))]
            if "loss_voronoi_identified" in df.columns:
                curves.append(("loss_voronoi_identified", f"{family} (identified β/τ)"))
            for loss, text in curves:
                color, marker = STYLE[(family, loss)]
                sizes, mat = loss_matrix(df, label, loss)
                exp = spec.fit(label).expected_rate if loss == "loss_voronoi" else None
                drawn_theory |= exp is not None
                rate_curve(ax, sizes, mat, color, text, show_law=True, marker=marker, expected=exp)
            color, marker = STYLE[(family, "loss_voronoi")]
            sizes, mat = loss_matrix(df, label, "loss_hellinger")
            rate_curve(axh, sizes, mat, color, family, show_law=True, marker=marker)
        absent = [spec.name.rsplit("-", 1)[-1] for spec in specs
                  if label not in [f.label for f in spec.fits]]
        if absent:
            ax.text(0.02, 0.02, f"not in this preset: {', '.join(absent)}", transform=ax.transAxes,
                    fontsize=7, color="0.3")
        kind = "D_1" if label == "k2" else "D_2"
        ax.set_title(f"{'exact-fitted k = 2' if label == 'k2' else 'over-fitted k = 3'}: ${kind}$"
                     f"\n{next(s.replicates_of(label) for s in specs if label in [f.label for f in s.fits])}"
                     " replicates")
        ax.set_xlabel("n")
        ax.set_ylabel("Voronoi loss")
        add_reference_legend(ax, -0.5 if drawn_theory else None)
        axh.set_title("Hellinger distance of the conditional densities")
        axh.set_xlabel("n")
        axh.set_ylabel("distance")
        add_reference_legend(axh, None)
    fig.suptitle(f"Temperature vs activation dense-to-sparse gates, k* = 2 ({preset} preset)")
    paths = save(fig, out_dir, f"temperature_{preset}")
    plt.close(fig)
    return paths


def main(argv=None) -> int:
    return figure_main("temperature", plot, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
