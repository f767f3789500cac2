"""Top-K sparse softmax gating: exact- vs over-specified fits (DESIGN.md §5.2; our design, OPEN).

Why d = 2 (the regions must move with the parameters)
-----------------------------------------------------
With selection by the score β_1ᵀx (the package default, our reading of the paper's
TopK(β_1ᵀx, K; β_0)) the active set at x depends on the ranking of the linear functions β_1iᵀx,
which all vanish at the origin: the regions are cones with apex 0, bounded by the hyperplanes
{(β_1i − β_1j)ᵀx = 0}. In d = 1 those hyperplanes are the single point 0 whatever the parameters,
so the regions x > 0 and x < 0 never move, and the over-specified class is non-identifiable in a
way the Voronoi losses do not see: with k = 4, K = 2, β_1 = (−5, −1, 1, 5) and the middle expert
duplicated, the Hellinger distance to the former d = 1 truth (:data:`TRUTH_D1`) is 2e-12 while
the softmax D_2 sits at its ceiling 3.65 (``moetheory.identifiability.search_equivalent`` finds
such models from 9 of 12 starts). In d = 2 the boundaries are lines through 0 whose directions
are set by β_1i − β_1j: they rotate when the slopes change.

Truth (our design): d = 2, x ~ U([−1, 1]²), k* = 3, K* = 2, selection by β_1ᵀx, gate slopes of
norm 4 at 0°, 120° and 240° (so each of the three pairs of experts is active on one wedge of
probability ≈ 1/3, and no expert is always active), β_0* = (0, 0.5, 0),
a* = ((−2, 1), (1, 2), (2, −1)), b* = (1, 0, −1), ν* = 0.1 each. Panels (fitted models):

* ``exact``  k = 3, K = 2 — exact-specified: all rates parametric;
* ``enough`` k = 4, K = 3 — over-specified with K = K̄ = max over the truth's regions of the
  total size of the active experts' Voronoi cells (3 when one expert is split). On the wedge
  where the split expert is inactive the third active slot holds a copy whose weight must
  vanish: the truth is in the closure of this class (β_0 → −∞ for the copy), not in it;
* ``toofew`` k = 4, K = 2 — over-specified with K < K̄. No density-equivalent model was found
  by ``search_equivalent`` (12 starts, closest Hellinger distance 0.063; for d = 1 it finds
  them): apart from exact ties of the selection scores (broken by index, never met by EM) the
  density should not converge.

Losses: the softmax Voronoi loss (D_1 / D_2), the region-aware loss
(:mod:`moetheory.losses.regions`, the package's reading of the paper's region losses), and the
Hellinger distance.

Selection including the bias (``select_by="logit"``) is available as :data:`LOGIT` (not a
preset): its regions are polygons whose edges move with β_0 too; but with a bounded design a
k = 4, K = 2 model reproduces the truth exactly with a fourth expert whose logit never reaches
the top two (β_0 very negative), so its "too few" panel cannot fail to converge.

EM: the ``paper`` near-truth initialisation (the extra expert is assigned to a random true
expert), the package's generalised-EM top-K gate step, tol 1e-6, ≤ 2000 iterations.
Presets: ``quick`` (5 sizes in [1e3, 8192], 8 replicates) and ``full`` (the exact fit at 20
sizes log-spaced in [1e3, 1e5], 40 replicates; the over-specified fits, best of 3 starts, at
every fourth of those sizes from 2069 to 37927, 20 replicates — a reduced grid like the softmax
study's over-fitted panels: a certified "enough" replicate costs 44 s at n = 14384 and 120 s or
more at n = 1e5 on the 2-core development machine (one 40-replicate "enough" cell at n = 1e5 ran
for over 2 h without finishing), so the whole grid with 40 replicates would take more than 10 h
for "enough" alone).
"""
from __future__ import annotations

import numpy as np

from moetheory.params import MoEParams
from moetheory.spec import MoESpec
from moetheory.study.registry import Entry
from moetheory.study.spec import DesignSpec, FitSpec, StudySpec, standard_grid

_ANGLES = np.deg2rad([0.0, 120.0, 240.0])
TRUTH = MoEParams.create(beta0=[0.0, 0.5, 0.0],
                         beta1=4.0 * np.stack([np.cos(_ANGLES), np.sin(_ANGLES)], axis=1),
                         a=[[-2.0, 1.0], [1.0, 2.0], [2.0, -1.0]], b=[1.0, 0.0, -1.0],
                         var=[0.1, 0.1, 0.1])
TRUTH_SPEC = MoESpec(3, 2, gate="topk", top_k=2)
DESIGN = DesignSpec("uniform", low=-1.0, high=1.0)

#: The former d = 1 truth (regions fixed at x > 0 and x < 0), kept for the identifiability check.
TRUTH_D1 = MoEParams.create(beta0=[0.0, 0.5, 0.0], beta1=[[-4.0], [0.0], [4.0]],
                            a=[[-2.0], [1.0], [2.0]], b=[1.0, 0.0, -1.0], var=[0.1, 0.1, 0.1])
TRUTH_SPEC_D1 = MoESpec(3, 1, gate="topk", top_k=2)

LOSSES = ("voronoi", "voronoi_region", "hellinger")
PRESETS = ("quick", "full")


def _study(preset: str, select_by: str = "score") -> StudySpec:
    sizes, reps, starts, est = standard_grid(preset)
    spec = lambda k, K: MoESpec(k, 2, gate="topk", top_k=K, select_by=select_by)  # noqa: E731
    # Full preset: the over-specified fits on every fourth size from 2069 to 37927, 20 replicates
    # (a replicate's data and fit depend on (seed, n, replicate index) only, so these are cells of
    # the whole grid too); see the module docstring for the cost.
    over, over_reps = (sizes[3:-4:4], 20) if preset == "full" else (sizes, None)
    fits = (
        FitSpec("exact", spec(3, 2), sizes=sizes, n_starts=1,
                expected_rate=-0.5, title="exact: k = 3, K = 2"),
        FitSpec("enough", spec(4, 3), sizes=over, n_starts=starts, replicates=over_reps,
                expected_rate=-0.5, title="over-specified, enough active: k = 4, K = 3"),
        FitSpec("toofew", spec(4, 2), sizes=over, n_starts=starts, replicates=over_reps,
                expected_rate=None, title="over-specified, too few active: k = 4, K = 2"),
    )
    suffix = "" if select_by == "score" else "-logit"
    return StudySpec(name=f"topk2d{suffix}-{preset}", truth_spec=spec(3, 2), truth=TRUTH,
                     fits=fits, design=DESIGN, estimator=est, replicates=reps, seed=2024,
                     losses=LOSSES,
                     description=f"Top-K sparse softmax gating (ICLR 2024), d = 2, selection by "
                                 f"{select_by} (our design, OPEN)",
                     buckets=(8192,) if preset == "quick" else ())


#: preset -> tuple of StudySpec
STUDY = {p: (_study(p),) for p in PRESETS}

#: this study's registration (the ``moetheory.studies`` entry point ``topk``)
REGISTRATION = Entry("topk", "top-K sparse softmax gating: exact, enough and too few active "
                     "experts (d = 2, moving regions)", studies=STUDY)

#: Not a preset: the same design with selection by the full logit β_1ᵀx + β_0 (see above).
#: Run with ``python -m simulations.topk --logit [--preset full]``.
LOGIT = {p: _study(p, "logit") for p in PRESETS}


def main(argv=None) -> int:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    if "--logit" in argv:
        from moetheory.study.registry import print_study_rates
        from moetheory.study.runner import run_study

        argv.remove("--logit")
        preset = argv[argv.index("--preset") + 1] if "--preset" in argv else "quick"
        cache = argv[argv.index("--cache") + 1] if "--cache" in argv else None
        run_study(LOGIT[preset], cache, progress="--quiet" not in argv)
        print_study_rates(LOGIT[preset], cache)
        return 0
    from moetheory.study.registry import simulation_main

    return simulation_main("topk", argv)


if __name__ == "__main__":
    raise SystemExit(main())
