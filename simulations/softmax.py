"""Softmax-gated Gaussian MoE: convergence of the MLE (reproduces the softmax paper, §5.1).

Truth (the paper's official code): d = 1, x on the grid [0, 1], k* = 2 experts with
(β_0, β_1) = (−8, 25), (0, 0); (b, a) = (15, −20), (−5, 20); variances 0.09, 0.16.
Fitted: k = 2 (exact-fitted, loss D_1), k = 3 and 4 (over-fitted, loss D_2).

Estimators (:mod:`moetheory.em.config`): every panel measures the **certified MLE** — EM from
the paper's near-truth starts until the mean log-likelihood per observation changes by at most
1e-8, then a Newton polish of the observed log-likelihood and a convergence certificate; one
start for k = 2, the best of 5 for k = 3, 4 (``full``). Beside the over-fitted panels, the
``k3-official`` and ``k4-official`` fits run the paper's protocol on the same data (relative
tolerance 1e-6, at most 2000 EM iterations, no polish): EM stops after 3–4 iterations on the
flat over-fitted likelihood, so those numbers describe the stopping rule near a near-truth start,
not the MLE (their certificates say so).

Presets
-------
``full``  k = 2: the paper's grid n ∈ {100, 300, 500, 700, 900} ∪ linspace(1e3, 1e5, 195), 40
          replicates. k = 3, 4: a **reduced** grid — k = 3: 10 sizes in [1e4, 1e5] (every other
          size of linspace(1e4, 1e5, 20)); k = 4: 5 sizes in [1e4, 8.6e4] (every fourth) — 40 replicates,
          best of 5 starts. The paper has 200 sizes; the cost per certified fit measured in this study
          (``python -m paper_figures.readings softmax --preset full``, docs/studies.md) puts
          the paper's grid at many hours on 2 cores.
``quick`` minutes on 2 CPU cores: k = 2: 8 sizes log-spaced in [1e3, 3.2e4], 20 replicates;
          k = 3, 4: 4 sizes in [1e3, 4096], 8 replicates, best of 2 starts.
``official`` the paper's protocol on the paper's grids (k = 3, 4: linspace(1e4, 1e5, 200),
          40 replicates, 5 starts): the published figure as published.

Run ``python -m simulations.softmax --preset quick`` (or ``moetheory reproduce softmax``).
"""
from __future__ import annotations

import numpy as np

from moetheory.em.config import EMConfig
from moetheory.params import MoEParams
from moetheory.spec import MoESpec
from moetheory.study.registry import Entry
from moetheory.study.spec import DesignSpec, FitSpec, StudySpec, integer_sizes

TRUTH = MoEParams.create(beta0=[-8.0, 0.0], beta1=[[25.0], [0.0]], a=[[-20.0], [20.0]],
                         b=[15.0, -5.0], var=[0.09, 0.16])
TRUTH_SPEC = MoESpec(2, 1)
LOSSES = ("voronoi", "voronoi_pinned", "hellinger")
#: the certified MLE from the paper's starts
MLE = EMConfig(init="paper")
#: the paper's protocol (relative tol 1e-6, 2000 iterations, paper starts, no polish)
OFFICIAL = "official"


def _study(preset: str) -> StudySpec:
    k2 = integer_sizes(np.concatenate([[100, 300, 500, 700, 900], np.linspace(1000, 1e5, 195)]))
    reps, est = 40, MLE
    if preset == "full":
        # every other (k = 3) and every fourth (k = 4) size of linspace(1e4, 1e5, 20): what 2
        # shared cores finish in one working session
        k34, starts = integer_sizes(np.linspace(1e4, 1e5, 20))[::2], 5
        k4_sizes = integer_sizes(np.linspace(1e4, 1e5, 20))[::4]
    elif preset == "official":
        k34, starts, est = integer_sizes(np.linspace(1e4, 1e5, 200)), 5, OFFICIAL
        k4_sizes = k34
    elif preset == "quick":
        k2 = integer_sizes(np.geomspace(1000, 32000, 8))
        k34, starts, reps = integer_sizes(np.geomspace(1000, 4096, 4)), 2, 8
        k4_sizes = k34
    else:
        raise ValueError(f"preset must be one of {PRESETS}; got {preset!r}")
    fits = (
        FitSpec("k2", MoESpec(2, 1), sizes=k2, n_starts=1, expected_rate=-0.5,
                title="exact-fitted k = 2 (D_1)", estimator=est),
        FitSpec("k3", MoESpec(3, 1), sizes=k34, n_starts=starts, replicates=reps,
                expected_rate=-0.5, title="over-fitted k = 3 (D_2)", estimator=est),
        FitSpec("k4", MoESpec(4, 1), sizes=k4_sizes, n_starts=starts, replicates=reps,
                expected_rate=-0.5, title="over-fitted k = 4 (D_2)", estimator=est),
    )
    if preset != "official":
        fits += tuple(FitSpec(f"{f.label}-official", f.spec, sizes=f.sizes, n_starts=f.n_starts,
                              replicates=f.replicates, expected_rate=None,
                              title=f"{f.title}, paper's protocol", estimator=OFFICIAL)
                      for f in fits[1:])
    return StudySpec(name=f"softmax-{preset}", truth_spec=TRUTH_SPEC, truth=TRUTH, fits=fits,
                     design=DesignSpec("grid", low=0.0, high=1.0), estimator=MLE,
                     replicates=40 if preset != "quick" else 20, seed=2023, losses=LOSSES,
                     description="Softmax gating (NeurIPS 2023), official-code truth",
                     buckets=(4096, 32768) if preset == "quick" else ())


PRESETS = ("quick", "full", "official")

#: preset -> tuple of StudySpec (this study has one spec with three fitted models)
STUDY = {p: (_study(p),) for p in PRESETS}

#: this study's registration (the ``moetheory.studies`` entry point ``softmax``)
REGISTRATION = Entry("softmax", "softmax gating: exact-fitted D_1 (k=2) and over-fitted D_2 "
                     "(k=3, 4), certified MLE beside the paper's protocol", studies=STUDY)


def main(argv=None) -> int:
    import sys

    argv = list(sys.argv[1:] if argv is None else argv)
    from moetheory.study.registry import simulation_main

    return simulation_main("softmax", argv)


if __name__ == "__main__":
    raise SystemExit(main())
