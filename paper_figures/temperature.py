"""Figure: temperature gate vs activation gates (study ``temperature``; cache only).

Columns: exact-fitted (k = 2) and over-fitted (k = 3). Rows:

1. temperature gate (identity σ): the Voronoi loss in the normalisation ‖(β, τ)‖ = 1 ("raw"),
   in identified coordinates β/τ, and with τ fixed at τ* (known temperature) — with the
   rate-law test's verdict in the legend. No theory line is drawn for τ estimated: the paper's
   "as slow as 1/log n" concerns raw (β, τ), which the exact scale invariance leaves undefined
   (docs/theory/temperature.md); τ known is a softmax gate (theory slope −1/2);
2. activation gates: D_1 / D_2 (activation exponents) for tanh and sigmoid on the paper
   comparison's d = 1 design (weakly identified gate) and on the d = 2 design that identifies
   it, with the theory slope −1/2 and the √(log n / n) curve;
3. the gate-function error (design-weighted L2 distance of the gate probabilities) of every
   family;
4. the Hellinger distance of the conditional densities.

Every curve: mean (markers), median (thin dashed) with its 10–90% band, slope of the mean with
OLS and replicate-bootstrap intervals.

``python -m paper_figures.temperature --preset quick [--cache DIR] [--out DIR]`` (default
``results/figures``; ``--out docs/figures`` redraws the documentation's figure;
``--preset full --cache data/studies`` draws the full preset from its committed cells)
"""
from __future__ import annotations

from paper_figures._common import (COLORS, add_reference_legend, certified_text, figure_main, load,
                                   preset_note, rate_curve, save, setup_matplotlib)

NAME = "temperature"

#: (family, fit-label suffix, loss) -> (colour, marker, legend text)
TEMP_CURVES = ((("", "loss_voronoi"), (COLORS[0], "o", "τ estimated, raw (normalised ‖(β, τ)‖ = 1)")),
               (("", "loss_voronoi_identified"), (COLORS[1], "s", "τ estimated, identified β/τ")),
               (("-taufixed", "loss_voronoi"), (COLORS[2], "D", "τ = τ* known")))
ACT_STYLE = {"tanh": (COLORS[2], "^"), "sigmoid": (COLORS[3], "v"),
             "tanh2d": (COLORS[4], "<"), "sigmoid2d": (COLORS[5], ">"),
             "temperature": (COLORS[0], "o")}
ACT_TEXT = {"tanh": "tanh, d = 1 (weakly identified)", "sigmoid": "sigmoid, d = 1 (weakly identified)",
            "tanh2d": "tanh, d = 2 design", "sigmoid2d": "sigmoid, d = 2 design",
            "temperature": "temperature, τ estimated"}
NOTE_TEMP = ("paper: parameter rates as slow as 1/log n (raw (β, τ)); the model is a\n"
             "reparametrised softmax: see the law-test verdicts")


def _family(spec):
    return spec.name.rsplit("-", 1)[-1]


def _certified(frames, specs, label, family):
    """Certified counts of fit ``label`` over the studies of one gate family (temperature:
    every fit of that study whose label starts with ``label``; activation: each activation),
    each with its replicates × sample sizes."""
    parts = []
    for spec in specs:
        fam = _family(spec)
        if (family == "temperature") != (fam == "temperature"):
            continue
        df = frames[spec.name]
        for fit in sorted(f for f in set(df["fit"]) if f.split("-")[0] == label):
            text = certified_text(df, fit).replace(" replicates certified", "")
            f = spec.fit(fit)
            parts.append(f"{fam if fam != 'temperature' else fit}: {text} "
                         f"({spec.replicates_of(fit)}×{len(f.sizes)} n)")
    # two families per line: four activation families do not fit one title line
    lines = [", ".join(parts[i:i + 2]) for i in range(0, len(parts), 2)]
    return "certified " + ",\n".join(lines) if parts else "no cells"


def plot(cache_dir=None, out_dir="results/figures", preset="quick") -> list:
    from moetheory.study.registry import studies
    from moetheory.study.summary import loss_matrix

    plt = setup_matplotlib()
    specs = studies(NAME, preset)
    frames = {spec.name: load(spec, cache_dir, NAME) for spec in specs}
    cols = ("k2", "k3")
    fig, axes = plt.subplots(4, 2, figsize=(12.0, 21.0), squeeze=False, layout="constrained")
    for c, label in enumerate(cols):
        ax_t, ax_a, ax_g, ax_h = axes[:, c]
        kind = "D_1" if label == "k2" else "D_2"
        theory_t = theory_a = False
        for spec in specs:
            df, fam = frames[spec.name], _family(spec)
            done = set(df["fit"])
            if fam == "temperature":
                for (suffix, loss), (color, marker, text) in TEMP_CURVES:
                    fit = label + suffix
                    if fit not in done or loss not in df.columns:
                        continue
                    exp = spec.fit(fit).expected_rate
                    theory_t |= exp is not None
                    sizes, mat = loss_matrix(df, fit, loss)
                    rate_curve(ax_t, sizes, mat, color, text, marker=marker, show_law=True,
                               expected=exp)
            elif label in done:
                color, marker = ACT_STYLE[fam]
                exp = spec.fit(label).expected_rate
                theory_a |= exp is not None
                sizes, mat = loss_matrix(df, label, "loss_voronoi")
                rate_curve(ax_a, sizes, mat, color, ACT_TEXT[fam], marker=marker, show_law=True,
                           expected=exp)
            if label in done:
                color, marker = ACT_STYLE[fam]
                for ax, loss in ((ax_g, "loss_gate"), (ax_h, "loss_hellinger")):
                    if loss in df.columns:
                        sizes, mat = loss_matrix(df, label, loss)
                        rate_curve(ax, sizes, mat, color, ACT_TEXT[fam], marker=marker,
                                   show_law=True)
        absent = [_family(s) for s in specs if label not in {f.label for f in s.fits}]
        if absent:
            ax_a.text(0.02, 0.02, f"not in this preset: {', '.join(absent)}",
                      transform=ax_a.transAxes, fontsize=7, color="0.3")
        fitted = "exact-fitted k = 2" if label == "k2" else "over-fitted k = 3"
        ax_t.set_title(f"temperature gate, {fitted}: ${kind}$\n"
                       f"{_certified(frames, specs, label, 'temperature')}")
        ax_a.set_title(f"activation gates, {fitted}: ${kind}$ (activation exponents)\n"
                       f"{_certified(frames, specs, label, 'activation')}")
        ax_g.set_title("gate-function error (L2 of the gate probabilities over the design)")
        ax_h.set_title("Hellinger distance of the conditional densities")
        for ax, ylab in ((ax_t, "Voronoi loss"), (ax_a, "Voronoi loss"), (ax_g, "error"),
                         (ax_h, "distance")):
            ax.set_xlabel("n")
            ax.set_ylabel(ylab)
        add_reference_legend(ax_t, -0.5 if theory_t else None, note=NOTE_TEMP)
        add_reference_legend(ax_a, -0.5 if theory_a else None)
        add_reference_legend(ax_g, None)
        add_reference_legend(ax_h, None)
    fig.suptitle(f"Temperature vs activation dense-to-sparse gates, k* = 2 ({preset} preset)"
                 f"{preset_note(preset)}")
    paths = save(fig, out_dir, f"temperature_{preset}")
    plt.close(fig)
    return paths


def main(argv=None) -> int:
    return figure_main("temperature", plot, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
