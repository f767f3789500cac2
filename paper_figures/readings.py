"""Table of the softmax study's slopes, certified counts and cost (study ``softmax``; cache only).

One row per fitted model and quantity: the Voronoi loss (D_1 for k = 2, D_2 for k = 3, 4), the
Hellinger distance, and — for the over-fitted models — the errors of β_1, b, a, ν within the
Voronoi cells holding two or more fitted atoms (the split cells). For each: the slope of the mean
over certified replicates with its OLS 95% CI, the replicate-bootstrap 95% interval of the mean's
slope and the median's slope with its bootstrap interval (the mean of a heavy-tailed loss is
carried by a few replicates), the theory slope, the certified replicates, and the share of them
whose Voronoi loss sits at its ceiling Σ_j e^{β*_0j} (the translation infimum's limit t_0 → ∞). The paper's
protocol (``k3-official``, ``k4-official``) is summarised over all its replicates (it is meant
to stop early, so none is certified). A last table gives each panel's cell time (wall seconds
summed over its cached cells, from the cache manifests) and the cost per certified fit.

``python -m paper_figures.softmax_readings --preset full [--cache DIR]`` prints Markdown.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from paper_figures._common import PARAM_LABELS, PARAM_RATES, load, param_errors

NAME = "softmax"


def _fmt_ci(ci):
    return f"[{ci[0]:+.2f}, {ci[1]:+.2f}]"


def _ceiling_share(mat, ceiling):
    """'a% → b%': share of the scored replicates at the loss's ceiling, first and last size."""
    ok = np.isfinite(mat)
    share = (ok & (mat >= (1 - 1e-6) * ceiling)).sum(axis=1) / np.maximum(ok.sum(axis=1), 1)
    return f"{100 * share[0]:.0f}% → {100 * share[-1]:.0f}%"


def _row(what, sizes, mat, expected, certified, total, extra=""):
    from moetheory.rates import bootstrap_slope, fit_rate

    ok = np.isfinite(mat).any(axis=1)
    if ok.sum() < 3:
        return None
    fit = fit_rate(sizes[ok], mat[ok])
    boot = bootstrap_slope(sizes[ok], mat[ok], n_boot=1000, seed=0)
    med = bootstrap_slope(sizes[ok], mat[ok], n_boot=1000, seed=0, stat="median")
    exp = "—" if expected is None else f"{expected:+.3g}"
    return (f"| {what} | {fit.slope:+.2f} {_fmt_ci(fit.ci)} | {_fmt_ci(boot.ci)} | "
            f"{med.slope:+.2f} {_fmt_ci(med.ci)} | {exp} | {certified}/{total} | {extra} |")


def tables(preset="full", cache_dir=None) -> str:
    from moetheory.study.cache import StudyCache
    from moetheory.study.registry import studies
    from moetheory.study.summary import excluded, loss_matrix

    (spec,) = studies(NAME, preset)
    df = load(spec, cache_dir, NAME)
    lines = [f"Slopes of study {spec.name} (seed {spec.seed}); `python -m "
             f"paper_figures.softmax_readings --preset {preset}`.", "",
             "| fitted model, quantity | mean: slope [OLS 95% CI] | mean: bootstrap 95% | "
             "median: slope [bootstrap 95%] | theory | certified | at the ceiling, first → last n |",
             "|---|---|---|---|---|---|---|"]
    ceiling = float(np.exp(np.asarray(spec.truth_params.beta0)).sum())
    for fit in spec.fits:
        g = df[df["fit"] == fit.label]
        if g.empty:
            continue
        official = fit.label.endswith("-official")
        failed, uncertified = excluded(g)
        cert = int((~failed & ~uncertified).sum())
        kind = "D_1" if fit.spec.n_experts == spec.truth_spec.n_experts else "D_2"
        for loss, what in (("loss_voronoi", kind), ("loss_hellinger", "Hellinger")):
            sizes, mat = loss_matrix(df, fit.label, loss, certified_only=not official)
            extra = _ceiling_share(mat, ceiling) if loss == "loss_voronoi" else ""
            r = _row(f"{fit.label}: {what}", sizes, mat, fit.expected_rate if loss ==
                     "loss_voronoi" else -0.5, cert, len(g), extra)
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
    cache = StudyCache(cache_dir)
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
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="full")
    ap.add_argument("--cache", default=None)
    args = ap.parse_args(argv)
    print(tables(args.preset, args.cache))
    return 0


if __name__ == "__main__":
    sys.exit(main())
