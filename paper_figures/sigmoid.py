"""Figure: sigmoid vs softmax gating (study ``sigmoid``; cache only; our design, OPEN).

Columns: exact-fitted (k = 2) and over-fitted (k = 3). Rows:

1. the Voronoi loss (D_1 / D_2 with each gate's exponents) of both gates, theory slope −1/2;
2. per-parameter errors in the Voronoi cells holding 2 or more fitted atoms (over-fitted) or one
   atom (exact): the gate slope β_1 and the expert slope a of both gates, with the slopes of our
   reading of the theory (softmax 2-atom cell: β_1 n^-1/8, a n^-1/4; sigmoid: both n^-1/4; one
   atom: n^-1/2);
3. the Hellinger distance of the conditional densities.

Every curve: mean (markers), median (thin dashed) with its 10–90% band, slope of the mean with
OLS and replicate-bootstrap intervals.

``python -m paper_figures.sigmoid --preset quick [--cache DIR] [--out DIR]``
"""
from __future__ import annotations

from paper_figures._common import (COLORS, add_reference_legend, certified_text, figure_main,
                                   load, param_errors, preset_note, rate_curve, save,
                                   setup_matplotlib)

NAME = "sigmoid"
STYLE = {"sigmoid": (COLORS[1], "o"), "softmax": (COLORS[0], "s")}
#: (gate, parameter) -> theoretical slope in a 2-atom cell (our reading; docs/theory/sigmoid.md)
OVER_RATES = {("softmax", "beta1"): -1 / 8, ("softmax", "a"): -1 / 4,
              ("sigmoid", "beta1"): -1 / 4, ("sigmoid", "a"): -1 / 4}
PARAMS = (("beta1", "gate slope β_1", "-"), ("a", "expert slope a", "--"))


def _family(spec):
    return spec.name.rsplit("-", 1)[-1]


def plot(cache_dir=None, out_dir="results/figures", preset="quick") -> list:
    from moetheory.study.registry import studies
    from moetheory.study.summary import loss_matrix

    plt = setup_matplotlib()
    specs = studies(NAME, preset)
    frames = {spec.name: load(spec, cache_dir, NAME) for spec in specs}
    fig, axes = plt.subplots(3, 2, figsize=(12.0, 16.0), squeeze=False, layout="constrained")
    for c, label in enumerate(("k2", "k3")):
        ax_l, ax_p, ax_h = axes[:, c]
        over = label == "k3"
        for spec in specs:
            df, fam = frames[spec.name], _family(spec)
            if label not in set(df["fit"]):
                continue
            color, marker = STYLE[fam]
            sizes, mat = loss_matrix(df, label, "loss_voronoi")
            rate_curve(ax_l, sizes, mat, color, f"{fam} gate", marker=marker, show_law=True,
                       expected=spec.fit(label).expected_rate)
            for j, (param, text, ls) in enumerate(PARAMS):
                sizes, mat, modal = param_errors(df, label, param, min_size=2 if over else 1)
                exp = OVER_RATES[(fam, param)] if over else -0.5
                rate_curve(ax_p, sizes, mat, color, f"{fam}: {text}"
                           + (f" (cells of {modal} atoms)" if over and modal else ""),
                           marker="ov"[j] if fam == "sigmoid" else "sD"[j], expected=exp)
            if "loss_hellinger" in df.columns:
                sizes, mat = loss_matrix(df, label, "loss_hellinger")
                rate_curve(ax_h, sizes, mat, color, f"{fam} gate", marker=marker, show_law=True)
        reps = specs[0].replicates_of(label)
        fitted = "over-fitted k = 3" if over else "exact-fitted k = 2"
        cert = "; ".join(f"{_family(spec)} {certified_text(frames[spec.name], label)}"
                         for spec in specs if label in set(frames[spec.name]["fit"]))
        ax_l.set_title(f"{fitted}: ${'D_2' if over else 'D_1'}$ ({reps} replicates per size)\n{cert}")
        ax_p.set_title(f"{fitted}: per-parameter errors in "
                       + ("cells of ≥ 2 fitted atoms" if over else "one-atom cells"))
        ax_h.set_title("Hellinger distance of the conditional densities")
        for ax, ylab in ((ax_l, "Voronoi loss"), (ax_p, "error"), (ax_h, "distance")):
            ax.set_xlabel("n")
            ax.set_ylabel(ylab)
        add_reference_legend(ax_l, -0.5)
        add_reference_legend(ax_p, None, note="dashed grey: theory slope of each curve (our reading)")
        add_reference_legend(ax_h, None)
    fig.suptitle(f"Sigmoid vs softmax gating, k* = 2, our design (OPEN) ({preset} preset)"
                 f"{preset_note(preset)}")
    paths = save(fig, out_dir, f"sigmoid_{preset}")
    plt.close(fig)
    return paths


def main(argv=None) -> int:
    return figure_main("sigmoid", plot, __doc__, argv)


if __name__ == "__main__":
    raise SystemExit(main())
