"""Sigmoid vs softmax gating (Nguyen, Ho & Rinaldo, NeurIPS 2024, arXiv 2405.13997; our design, OPEN).

The paper compares the sample efficiency of sigmoid and softmax gating for *expert estimation*
in over-specified mixtures of experts (a regression function estimated by least squares). We
could read only its abstract: its simulation design is not in this study. Our design (OPEN, see
docs/theory/sigmoid.md) puts the comparison in the package's Gaussian MoE with linear experts,
each family fitted by maximum likelihood to data from its own gate:

* d = 1, x ~ U(−1, 1), k* = 2 experts with the same arrays for both families:
  β_0* = (1, −1), β_1* = (4, −2), a* = (−1, 1), b* = (0.5, −0.5), ν* = 0.05 each
  (:data:`TRUTH`; β_1* ≠ 0: the paper's first regime);
* gates: ``sigmoid`` — g_i = σ(h_i)/Σ_j σ(h_j) (independent scores, normalised: our reading) —
  and ``softmax``, h_i = β_1i x + β_0i;
* fits: exact (k = 2, D_1) and over-specified (k = 3, D_2 with each gate's exponents: softmax
  (r̄, r̄/2, r̄, r̄/2) for (β_1, a, b, ν); sigmoid (2, 2, r̄, r̄/2), because the β_1–a PDE breaks
  under the sigmoid, ``moetheory theory pdes``);
* the per-parameter errors in the over-specified Voronoi cells (recorded for every fit): the
  sample-efficiency comparison — theory (our reading): the softmax gate slope converges like
  n^-1/8 in a 2-atom cell and the expert slope like n^-1/4; under the sigmoid gate both like
  n^-1/4.

Presets: ``quick`` (5 sizes in [1e3, 8192], 8 replicates, 1 start) and ``full`` (20 sizes in
[1e3, 1e5], 40 replicates, best of 3 starts for k = 3): :func:`moetheory.study.spec.standard_grid`.
"""
from __future__ import annotations

from moetheory.params import MoEParams
from moetheory.spec import MoESpec
from moetheory.study.registry import Entry
from moetheory.study.spec import DesignSpec, FitSpec, StudySpec, standard_grid

TRUTH = MoEParams.create(beta0=[1.0, -1.0], beta1=[[4.0], [-2.0]], a=[[-1.0], [1.0]],
                         b=[0.5, -0.5], var=[0.05, 0.05])
DESIGN = DesignSpec("uniform", low=-1.0, high=1.0)
FAMILIES = ("sigmoid", "softmax")
PRESETS = ("quick", "full")


def _study(preset: str, family: str) -> StudySpec:
    sizes, reps, starts, est = standard_grid(preset)
    fits = (FitSpec("k2", MoESpec(2, 1, gate=family), sizes=sizes, n_starts=1, expected_rate=-0.5,
                    title=f"{family}: exact-fitted k = 2"),
            FitSpec("k3", MoESpec(3, 1, gate=family), sizes=sizes, n_starts=starts,
                    expected_rate=-0.5, title=f"{family}: over-fitted k = 3"))
    return StudySpec(name=f"sigmoid-{preset}-{family}", truth_spec=MoESpec(2, 1, gate=family),
                     truth=TRUTH, fits=fits, design=DESIGN, estimator=est, replicates=reps,
                     seed=2405, losses=("voronoi", "hellinger"),
                     description=f"Sigmoid vs softmax gating (NeurIPS 2024), {family} gate (OPEN design)",
                     buckets=(8192,) if preset == "quick" else ())


#: preset -> (sigmoid study, softmax study)
STUDY = {p: tuple(_study(p, f) for f in FAMILIES) for p in PRESETS}

#: this study's registration (the ``moetheory.studies`` entry point ``sigmoid``)
REGISTRATION = Entry("sigmoid", "sigmoid vs softmax gating: exact and over-fitted, per-parameter errors (our design)",
                     studies=STUDY)


def main(argv=None) -> int:
    from moetheory.study.registry import simulation_main

    return simulation_main("sigmoid", argv)


if __name__ == "__main__":
    raise SystemExit(main())
