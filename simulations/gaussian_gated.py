"""Gaussian-gated mixture of experts (Nguyen, Nguyen, Nguyen & Ho, AISTATS 2024, arXiv 2305.07572).

The paper's simulation, with the constants of its official code (CRPE-GMoE, ``models.py`` and
``experiment.py``):

* four truths with k* = 3 experts and a scalar response: models 1 and 3 (Type I: every gate mean
  μ*_j ≠ 0) and 2 and 4 (Type II: μ*_1 = 0), in d = 1 (models 1, 2) and d = 2 (models 3, 4);
  π* = (0.3, 0.4, 0.3), the gate covariances, expert slopes, intercepts and variances of
  :data:`TRUTHS` (the official values, derived there from a joint Gaussian mixture of (x, y));
* x drawn from the truth's own gate mixture (design ``"gate"``), y from the experts;
* K = 4 and K = 5 fitted experts; sample sizes linspace(100, 500, 5) ∪ linspace(500, 1e5, 95)
  (100 sizes, 500 twice: 99 distinct), 20 replicates;
* the official near-truth start (``Gate.paper_start`` of the Gaussian gate: a random assignment
  using every true expert, π split evenly, noise 0.005·n^-0.083 on means/slopes/intercepts and
  |N(0, (0.0005·n^-0.25)²)| on the variances);
* the loss D̄ (Type I) / D̃ (Type II) of the official ``discrepancies.py``
  (:func:`moetheory.gates.gaussian.gmoe_loss`).

Two estimators per fitted K, on the same data and starts:

``k4-official``, ``k5-official`` — the official protocol as it ran. Its EM (``em_GLLiM``) updates
    the start arrays in place, so its change-in-parameters test compares an array with itself:
    the change is 0 < eps and the loop returns after its **first** iteration (the stored
    iteration counts of the repository, ``results_GLLiM/result_model1_K5_..._iters.npy``, are 0
    for all 2000 fits; so are those of the other 7 files). The protocol is therefore one EM
    step from the near-truth start, no polish (``EMConfig(init="paper", max_iter=1,
    polish="none")``); its losses count every replicate (an early stop is what it does).
``k4``, ``k5`` — the certified maximum-likelihood estimate (EM to convergence, Newton polish,
    certificate) from the same start: what the theory's MLE does.

What is maximised: the joint likelihood of (x, y), as the official code does (module
:mod:`moetheory.gates.gaussian`).

Presets: ``full`` — the official grid above, 20 replicates, all four models, K = 4 and 5; ``quick``
— models 1 and 2, K = 4, 5 sizes in [200, 12800] padded to 12800 rows (zero weights), 4
replicates (minutes on 2 cores; a smoke run of the protocol, not a rate measurement).
"""
from __future__ import annotations

import numpy as np

from moetheory.em.config import EMConfig
from moetheory.params import MoEParams
from moetheory.spec import MoESpec
from moetheory.study.registry import Entry
from moetheory.study.spec import DesignSpec, FitSpec, StudySpec, integer_sizes


def _truth(c0, gamma, a_row, b0, nu0):
    pi0 = np.array([0.3, 0.4, 0.3])
    beta0 = np.log(pi0) - np.log(pi0[-1])
    return MoEParams.create(beta0, c0, a_row, b0, nu0, extra={"cov": gamma})


# The official constants (CRPE-GMoE models.py), written as there.
_A = [0.017324 * 0.042824 ** -1, -0.0125 * 0.0175 ** -1, 0.0 * 0.01 ** -1]
_G1 = [[[0.042824]], [[0.0175]], [[0.01]]]
_G2 = [np.diag([0.042824] * 2), np.diag([0.0175] * 2), np.diag([0.01] * 2)]
TRUTHS = {
    1: _truth([[-0.1], [0.1], [0.5]], _G1, [[_A[0]], [_A[1]], [_A[2]]],
              [0.3 - _A[0] * (-0.1), -0.4 + 0.0125 * 0.0175 ** -1 * 0.1, 0.2 + 0 * 0.0175 ** -1 * 0.5],
              [0.0081759 - _A[0] * (-0.1) * 0.017324, 0.0175 + 0.0125 * 0.0175 ** -1 * 0.0125,
               0.0175 + 0 * 0.01 ** -1 * 0]),
    2: _truth([[0.0], [0.1], [0.5]], _G1, [[_A[0]], [_A[1]], [_A[2]]],
              [0.3 - _A[0] * 0, -0.4 + 0.0125 * 0.0175 ** -1 * 0.1, 0.2 + 0 * 0.0175 ** -1 * 0.5],
              [0.0081759 - _A[0] * 0.017324, 0.0175 + 0.0125 * 0.0175 ** -1 * 0.0125,
               0.0175 + 0 * 0.01 ** -1 * 0]),
    3: _truth([[-0.1, -0.1], [0.1, 0.1], [0.5, 0.5]], _G2,
              [[_A[0], _A[0]], [_A[1], _A[1]], [_A[2], _A[2]]],
              [0.3 - _A[0] * (-0.1), -0.4 + 0.0125 * 0.0175 ** -1 * 0.1, 0.2 + 0 * 0.0175 ** -1 * 0.5],
              [0.0081759 - _A[0] * (-0.1) * 0.017324, 0.0175 + 0.0125 * 0.0175 ** -1 * 0.0125,
               0.0175 + 0 * 0.01 ** -1 * 0]),
    4: _truth([[0.0, 0.0], [0.1, 0.1], [0.5, 0.5]], _G2,
              [[_A[0], _A[0]], [_A[1], _A[1]], [_A[2], _A[2]]],
              [0.3 - _A[0] * 0, -0.4 + 0.0125 * 0.0175 ** -1 * 0.1, 0.2 + 0 * 0.0175 ** -1 * 0.5],
              [0.0081759 - _A[0] * 0.017324, 0.0175 + 0.0125 * 0.0175 ** -1 * 0.0125,
               0.0175 + 0 * 0.01 ** -1 * 0]),
}
#: model -> "Type I" (every μ*_j ≠ 0) or "Type II" (μ*_1 = 0)
TYPES = {1: "Type I", 2: "Type II", 3: "Type I", 4: "Type II"}

#: the slopes the official repository's figures report: OLS of log(mean loss) on log n over its
#: 100 sizes, recomputed from its stored losses (results_GLLiM/result_model{m}_K{K}_..._loss.npy)
#: with its plotting script's regression (plotting_GLLiM.py)
OFFICIAL_SLOPES = {(1, 4): -0.50554, (1, 5): -0.50464, (2, 4): -0.50452, (2, 5): -0.50445,
                   (3, 4): -0.51191, (3, 5): -0.51662, (4, 4): -0.50206, (4, 5): -0.50453}

#: the official protocol as it ran: one EM step from the official start, no polish
OFFICIAL = EMConfig(init="paper", n_init=1, max_iter=1, polish="none")
#: the certified MLE from the same start
MLE = EMConfig(init="paper", n_init=1)
PRESETS = ("quick", "full")


def official_sizes() -> tuple:
    """The official grid: linspace(100, 500, 5) ∪ linspace(500, 1e5, 95) (99 distinct sizes)."""
    return integer_sizes(np.concatenate([np.linspace(100, 500, 5), np.linspace(500, 1e5, 95)]))


def _study(preset: str, model: int) -> StudySpec:
    if preset == "full":
        sizes, reps, ks = official_sizes(), 20, (4, 5)
    elif preset == "quick":
        sizes, reps, ks = integer_sizes(np.geomspace(200, 12800, 5)), 4, (4,)
    else:
        raise ValueError(f"preset must be one of {PRESETS}; got {preset!r}")
    truth = TRUTHS[model]
    d = truth.dim
    fits = ()
    for k in ks:
        fits += (FitSpec(f"k{k}-official", MoESpec(k, d, gate="gaussian"), sizes=sizes,
                         expected_rate=-0.5, estimator=OFFICIAL,
                         title=f"K = {k}, official protocol (1 EM step)"),
                 FitSpec(f"k{k}", MoESpec(k, d, gate="gaussian"), sizes=sizes, expected_rate=-0.5,
                         estimator=MLE, title=f"K = {k}, certified MLE"))
    return StudySpec(name=f"gaussian-gated-{preset}-model{model}",
                     truth_spec=MoESpec(3, d, gate="gaussian"), truth=truth, fits=fits,
                     design=DesignSpec("gate"), estimator=MLE, replicates=reps, seed=2024,
                     losses=("voronoi",),
                     description=f"Gaussian-gated MoE (AISTATS 2024), official model {model} "
                                 f"({TYPES[model]}, d = {d})",
                     # quick: every size padded to one length, one compiled program per fit
                     buckets=(12800,) if preset == "quick" else ())


#: preset -> tuple of StudySpec (one per official model)
STUDY = {"quick": tuple(_study("quick", m) for m in (1, 2)),
         "full": tuple(_study("full", m) for m in (1, 2, 3, 4))}

#: this study's registration (the ``moetheory.studies`` entry point ``gaussian-gated``)
REGISTRATION = Entry("gaussian-gated", "Gaussian-gated MoE (AISTATS 2024): the official simulation, official protocol vs certified MLE",
                     studies=STUDY)


def main(argv=None) -> int:
    from moetheory.study.registry import simulation_main

    return simulation_main("gaussian-gated", argv)


if __name__ == "__main__":
    raise SystemExit(main())
