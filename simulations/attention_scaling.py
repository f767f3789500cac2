"""Study declaration: does the sample size the biased RFA needs grow like d^p? (our design)

The attention paper (Fu, Guo, Bai & Mei, NeurIPS 2023) argues that the number of samples a
random-feature attention layer needs to learn a degree-p target grows as a power of the input
dimension d set by p (n ≍ d^(c·p); c = 1 is our reading). The ``full`` attention preset has one
d (8), so it can only compare degrees at a fixed d, which is not what that claim is about. This
study varies d for a fixed target: the biased RFA (the model that learns the dot-product
targets) on ``hermite2_dot`` and ``hermite3_dot`` at d ∈ {4, 8, 16}, the full preset's other
constants (M = 1000 heads, N = 8, 5 replicates) and its sizes {250, …, 8000} extended down to 32
(at d = 4 both errors are below 1/2 by n = 250). Where the claim holds, a target's three curves
collapse on the axis n / d^(c·p).

Run it and draw the figure (results under ``OUT/d<d>/results.json``)::

    python -m simulations.attention_scaling --out results/attention_scaling
    python -m paper_figures.attention_scaling --results results/attention_scaling --out docs/figures
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path

from moetheory.attention.experiment import PRESETS

#: the dimensions compared
DIMS = (4, 8, 16)
#: the sample sizes: the full preset's, extended down (a pool prefix: the same draws at every n)
N_GRID = (32, 63, 125) + PRESETS["full"].n_grid
#: d -> AttentionConfig: the full preset restricted to one model and the two degree-p targets
STUDY = {d: dataclasses.replace(PRESETS["full"], d=d, models=("biased_rfa",), n_grid=N_GRID,
                                targets=("hermite2_dot", "hermite3_dot")) for d in DIMS}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulations.attention_scaling",
                                 description="Biased RFA at several input dimensions d.")
    ap.add_argument("--out", default="results/attention_scaling", help="output folder")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    args = ap.parse_args(argv)
    from moetheory.attention.experiment import run_attention_experiment
    from moetheory.study.cli import interruptible

    def go():
        for d, cfg in STUDY.items():
            res = run_attention_experiment(cfg, Path(args.out) / f"d{d}", progress=not args.quiet)
            print(f"d = {d}: {res['wall_time_s']:.0f} s, failures {len(res['failures'])}")
        return 0

    return interruptible(go)


if __name__ == "__main__":
    raise SystemExit(main())
