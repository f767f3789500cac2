"""Top-K sparse softmax gating: exact- vs over-specified fits (DESIGN.md §5.2; our design, OPEN).

Truth: d = 1, x ~ U(−1, 1), k* = 3 experts with K* = 2 active (selection by β_1ᵀx, the
package default), β_1* = (−4, 0, 4), β_0* = (0, 0.5, 0), a* = (−2, 1, 2), b* = (1, 0, −1),
ν* = 0.1 each. Fitted models (panels):

* ``exact``  k = 3, K = 2 — exact-specified: all rates parametric;
* ``enough`` k = 4, K = 3 — over-specified with enough active experts: density and D_2 converge;
* ``toofew`` k = 4, K = 2 — over-specified with too few active experts: where an atom is split
  in two, K = 2 cannot activate both halves and the other true expert, so the density should
  *fail to converge* (the Hellinger distance plateaus).

EM: the ``paper`` near-truth initialisation (which assigns the extra expert to a random true
expert), the package's generalised-EM top-K gate step, tol 1e-6, ≤ 2000 iterations.

Presets: ``quick`` (5 sizes in [1e3, 8192], 8 replicates — minutes on 2 cores) and ``full``
(20 sizes log-spaced in [1e3, 1e5], 40 replicates, best of 3 starts for the over-specified fits).
"""
from __future__ import annotations


from moetheory.params import MoEParams
from moetheory.spec import MoESpec
from moetheory.study.spec import DesignSpec, FitSpec, StudySpec, standard_grid

TRUTH = MoEParams.create(beta0=[0.0, 0.5, 0.0], beta1=[[-4.0], [0.0], [4.0]],
                         a=[[-2.0], [1.0], [2.0]], b=[1.0, 0.0, -1.0], var=[0.1, 0.1, 0.1])
TRUTH_SPEC = MoESpec(3, 1, gate="topk", top_k=2)
LOSSES = ("voronoi", "hellinger")
PRESETS = ("quick", "full")



def _study(preset: str) -> StudySpec:
    sizes, reps, starts, est = standard_grid(preset)
    fits = (
        FitSpec("exact", MoESpec(3, 1, gate="topk", top_k=2), sizes=sizes, n_starts=1,
                expected_rate=-0.5, title="exact: k = 3, K = 2"),
        FitSpec("enough", MoESpec(4, 1, gate="topk", top_k=3), sizes=sizes, n_starts=starts,
                expected_rate=-0.5, title="over-specified, enough active: k = 4, K = 3"),
        FitSpec("toofew", MoESpec(4, 1, gate="topk", top_k=2), sizes=sizes, n_starts=starts,
                expected_rate=None, title="over-specified, too few active: k = 4, K = 2"),
    )
    return StudySpec(name=f"topk-{preset}", truth_spec=TRUTH_SPEC, truth=TRUTH, fits=fits,
                     design=DesignSpec("uniform", low=-1.0, high=1.0), estimator=est,
                     replicates=reps, seed=2024, losses=LOSSES,
                     description="Top-K sparse softmax gating (ICLR 2024), our truth (OPEN)",
                     buckets=(8192,) if preset == "quick" else ())


#: preset -> tuple of StudySpec
STUDY = {p: (_study(p),) for p in PRESETS}


def main(argv=None) -> int:
    from moetheory.study.registry import simulation_main

    return simulation_main("topk", argv)


if __name__ == "__main__":
    raise SystemExit(main())
