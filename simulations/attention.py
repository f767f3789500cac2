"""Study declaration: random-feature attention vs RF-MLP (relative test error vs n).

Declares :data:`STUDY` (the presets) and runs them::

    python -m simulations.attention --preset quick --out results/attention_quick

Results go to ``OUT/results.json`` (plus one ``cells-<hash>/cell_XXX.json`` per replicate in
the study cache's store: written atomically with a checksum; an interrupted run resumes).  Plot them with
``python -m paper_figures.attention --results OUT --out docs/figures``.
"""
from __future__ import annotations

import argparse
import json

from moetheory.attention.experiment import PRESETS, cache_status, run_attention_experiment
from moetheory.study.registry import Entry

#: The declared study: name -> AttentionConfig (see moetheory.attention.experiment).
STUDY = PRESETS

#: this study's registration (the ``moetheory.studies`` entry point ``attention``)
REGISTRATION = Entry("attention", "random-feature attention vs random-feature MLP",
                     run=run_attention_experiment, status=cache_status, presets=tuple(PRESETS))

__all__ = ["STUDY", "REGISTRATION", "run_attention_experiment", "cache_status", "main"]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulations.attention",
                                 description="Random-feature attention experiment.")
    ap.add_argument("--preset", choices=sorted(STUDY), default="quick")
    ap.add_argument("--out", default="results/attention", help="output folder")
    ap.add_argument("--seeds", type=int, default=None, help="override the number of replicates")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    args = ap.parse_args(argv)
    kw = {} if args.seeds is None else {"n_seeds": args.seeds}
    from moetheory.study.cli import interruptible

    def go():
        res = run_attention_experiment(args.preset, args.out, progress=not args.quiet, **kw)
        summary = {m: {t: res["mean"][m][t][-1] for t in res["targets"]} for m in res["models"]}
        print(json.dumps({"n_max": res["n_grid"][-1], "relative_test_error_at_n_max": summary,
                          "wall_time_s": round(res["wall_time_s"], 1),
                          "failures": len(res["failures"])}, indent=1))
        return 0

    return interruptible(go)


if __name__ == "__main__":
    raise SystemExit(main())
