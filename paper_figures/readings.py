"""Table of a study's slopes, certified counts and cost (any registered study; cache only).

One row per fitted model and quantity: every loss the study records (the Voronoi loss — D_1 for
an exact fit, D_2 for an over-fitted one —, the region-aware or identified-coordinate variants,
the gate-function error, the Hellinger distance) and, for the over-fitted models, the errors of
β_1, b, a, ν within the Voronoi cells holding two or more fitted atoms (the split cells). For
each: the slope of the mean over certified replicates with its OLS 95% CI, the replicate-bootstrap
95% interval of the mean's slope and the median's slope with its bootstrap interval (the mean of
a heavy-tailed loss is carried by a few replicates), the verdict of the rate-law test
(:func:`moetheory.rates.law_test`), the theory slope, the certified replicates, and — for the
Voronoi loss of a softmax or top-K gate — the share of them at its ceiling Σ_j e^{β*_0j} (the
translation infimum's limit t_0 → ∞). A paper's protocol (fits labelled ``*-official``) is
summarised over all its replicates (it is meant to stop early, so none is certified). A last
table gives each panel's cell time (wall seconds summed over its cached cells, from the cache
manifests) and the cost per certified fit.

``python -m paper_figures.readings softmax --preset full [--cache DIR]`` prints Markdown.
"""
from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from paper_figures._common import PARAM_LABELS, PARAM_RATES, load, param_errors

#: gates whose Voronoi loss has the ceiling Σ_j exp(β*_0j) in raw coordinates
CEILING_GATES = ("softmax", "topk")


def _fmt_ci(ci):
    return f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _ceiling_share(mat, ceiling):
    """'a% → b%': share of the scored replicates at the loss's ceiling, first and last size."""
    ok = np.isfinite(mat)
    share = (ok & (mat >= (1 - 1e-6) * ceiling)).sum(axis=1) / np.maximum(ok.sum(axis=1), 1)
    return f"{100 * share[0]:.0f}% → {100 * share[-1]:.0f}%"


def _row(what, sizes, mat, expected, certified, total, extra=""):
    from moetheory.rates import bootstrap_slope, fit_rate, law_test

    ok = np.isfinite(mat).any(axis=1)
    if ok.sum() < 3:
        return None
    fit = fit_rate(sizes[ok], mat[ok])
    boot = bootstrap_slope(sizes[ok], mat[ok], n_boot=1000, seed=0)
    med = bootstrap_slope(sizes[ok], mat[ok], n_boot=1000, seed=0, stat="median")
    try:
        verdict = law_test(sizes[ok], mat[ok]).verdict
    except ValueError:  # n <= e, or one replicate per size
        verdict = "n/a"
    exp = "—" if expected is None else f"{expected:+.3g}"
    return (f"| {what} | {fit.slope:+.2f} {_fmt_ci(fit.ci)} | {_fmt_ci(boot.ci)} | "
            f"{med.slope:+.2f} {_fmt_ci(med.ci)} | {verdict} | {exp} | {certified}/{total} | "
            f"{extra} |")


def tables(name="softmax", preset="full", cache_dir=None) -> str:
    """The Markdown tables of study ``name`` under ``preset`` (see the module docstring)."""
    from moetheory.study.cache import StudyCache
    from moetheory.study.registry import studies

    lines = []
    for spec in studies(name, preset):
        lines += _study_tables(spec, load(spec, cache_dir, name), StudyCache(cache_dir), name,
                               preset)
    return "\n".join(lines)


def _study_tables(spec, df, cache, name, preset) -> list:
    from moetheory.study.registry import LOSS_NAMES
    from moetheory.study.summary import excluded, loss_matrix

    lines = [f"Slopes of study {spec.name} (seed {spec.seed}); `python -m "
             f"paper_figures.readings {name} --preset {preset}`.", "",
             "| fitted model, quantity | mean: slope [OLS 95% CI] | mean: bootstrap 95% | "
             "median: slope [bootstrap 95%] | law test | theory | certified | "
             "at the ceiling, first → last n |",
             "|---|---|---|---|---|---|---|---|"]
    ceiling = float(np.exp(np.asarray(spec.truth_params.beta0)).sum())
    has_ceiling = spec.truth_spec.gate in CEILING_GATES
    losses = [c for c in (f"loss_{x}" for x in spec.losses) if c in df.columns]
    for fit in spec.fits:
        g = df[df["fit"] == fit.label]
        if g.empty:
            continue
        official = fit.label.endswith("-official")
        failed, uncertified = excluded(g)
        cert = int((~failed & ~uncertified).sum())
        kind = "D_1" if fit.spec.n_experts == spec.truth_spec.n_experts else "D_2"
        for loss in losses:
            sizes, mat = loss_matrix(df, fit.label, loss, certified_only=not official)
            extra = (_ceiling_share(mat, ceiling) if loss == "loss_voronoi" and has_ceiling
                     else "")
            expected = (fit.expected_rate if loss != "loss_hellinger" or
                        fit.expected_rate is None else -0.5)
            what = LOSS_NAMES.get(loss, loss).format(D=kind)
            r = _row(f"{fit.label}: {what}", sizes, mat, expected, cert, len(g), extra)
            if r:
                lines.append(r)
        if kind == "D_2" and not official:
            for p in ("beta1", "b", "a", "var"):
                sizes, mat, m = param_errors(df, fit.label, p, min_size=2)
                exp = PARAM_RATES.get(m or 2, {}).get(p)
                r = _row(f"{fit.label}: {PARAM_LABELS[p]} in split cells (modal m = {m})", sizes,
                         mat, exp, cert, len(g))
                if r:
                    lines.append(r)
    lines += ["", "| panel | cached cells | cell wall time (s) | fits (replicates × starts) | "
              "certified replicates | s per fit | s per certified replicate |",
              "|---|---|---|---|---|---|---|"]
    for fit in spec.fits:
        manifest = cache.panel_dir(spec, fit.label) / "manifest.json"
        if not manifest.exists():
            continue
        cells = json.loads(manifest.read_text())["cells"]
        cells = {int(n): c for n, c in cells.items() if int(n) in set(fit.sizes)}
        wall = sum(c.get("wall_s", np.nan) for c in cells.values())
        g = df[df["fit"] == fit.label]
        failed, uncertified = excluded(g)
        cert = int((~failed & ~uncertified).sum())
        reps = sum(c["replicates"] for c in cells.values())
        fits = reps * fit.n_starts
        lines.append(f"| {fit.label} | {len(cells)} | {wall:.0f} | {fits} | {cert}/{len(g)} | "
                     f"{wall / fits:.2f} | {f'{wall / cert:.2f}' if cert else '—'} |")
    return lines + [""]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("study", help="a registered study, e.g. softmax or topk")
    ap.add_argument("--preset", default="full")
    ap.add_argument("--cache", default=None)
    args = ap.parse_args(argv)
    print(tables(args.study, args.preset, args.cache))
    return 0


if __name__ == "__main__":
    sys.exit(main())
