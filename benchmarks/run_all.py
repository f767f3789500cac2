"""Run every benchmark and write the tables to ``benchmarks/results/`` (one command).

    python benchmarks/run_all.py            # default sizes: < 10 minutes on a 2-core laptop
    python benchmarks/run_all.py --quick    # n ≤ 1e4, fewer repeats (a smoke run)
    python benchmarks/run_all.py --no-flexmix
    python benchmarks/run_all.py --full-softmax   # also time `moetheory reproduce softmax --preset full`

Writes ``results/{single_fit,batched,machine_limit,gates,profile_em}.{md,json}`` and
``results/summary.md``
(the must-show targets, met or not). The full softmax reproduction (the paper's three full grids,
40 replicates, then the figure; about 20–30 minutes on 2 cores) is timed with ``--full-softmax``,
from a fresh cache directory; ``--only full_softmax`` times just it and keeps the
other tables' last results in the summary.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import common as C


def full_softmax(preset="full", quiet=False, out_dir=None):
    """Time ``moetheory reproduce softmax --preset <preset>`` (all three fitted models, then the
    figure) in a subprocess with a fresh cache directory, so nothing is reused."""
    with tempfile.TemporaryDirectory() as cache:
        cmd = [sys.executable, "-m", "moetheory.cli", "reproduce", "softmax", "--preset", preset,
               "--cache", cache] + (["--out", str(out_dir)] if out_dir else [])
        t0 = time.perf_counter()
        out = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        cells = {}
        for manifest in Path(cache).glob("*/*/manifest.json"):
            m = json.loads(manifest.read_text())
            cells[m["fit"]] = {"cells": len(m["cells"]),
                               "cell_wall_s": sum(c["wall_s"] or 0 for c in m["cells"].values())}
    if not quiet:
        print(out.stdout)
    slopes = [line for line in out.stdout.splitlines() if "slope" in line]
    return {"status": "ok" if out.returncode == 0 else f"failed (rc {out.returncode})",
            "preset": preset, "wall_s": wall, "command": "moetheory " + " ".join(cmd[3:5]) +
            f" --preset {preset}", "per_fit": cells, "slopes": slopes,
            "stderr_tail": out.stderr[-2000:] if out.returncode else ""}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-flexmix", action="store_true")
    ap.add_argument("--full-softmax", action="store_true",
                    help="also time the full softmax reproduction (off by default: long)")
    ap.add_argument("--softmax-preset", default="full")
    ap.add_argument("--only", nargs="+", default=None,
                    choices=["single_fit", "batched", "machine_limit", "gates", "profile_em",
                             "full_softmax"])
    ap.add_argument("--quiet", action="store_true")
    ap.add_argument("--rerender", action="store_true",
                    help="no new measurements: rebuild single_fit.md and summary.md from the "
                         "committed JSON (after a change of how targets are evaluated)")
    args = ap.parse_args(argv)
    if args.rerender:
        import single_fit

        summary = json.loads((C.RESULTS / "summary.json").read_text())
        _, summary["single_fit"] = single_fit.main(["--from-json", "--quiet"])
        md = render_summary(summary, args)
        C.write_results("summary", md, summary)
        print(md)
        return 0
    import batched
    import gates
    import machine_limit
    import profile_em
    import single_fit

    t_start = time.perf_counter()
    q = ["--quiet"] if args.quiet else []
    todo = args.only or ["single_fit", "batched", "machine_limit", "gates", "profile_em"]
    summary = {}
    if "single_fit" in todo:
        a = (["--quick", "--repeats", "3"] if args.quick else []) + (["--no-flexmix"] if args.no_flexmix else [])
        _, targets = single_fit.main(a + q)
        summary["single_fit"] = targets
    if "batched" in todo:
        a = ["--replicates", "8", "--repeats", "2"] if args.quick else []
        batched.main(a + q)
        summary["batched"] = json.loads((C.RESULTS / "batched.json").read_text())["targets"]
    if "machine_limit" in todo:
        a = ["--n", "20000", "--repeats", "3"] if args.quick else []
        machine_limit.main(a + q)
        summary["machine_limit"] = json.loads((C.RESULTS / "machine_limit.json").read_text())["targets"]
    if "gates" in todo:
        a = ["--n", "20000", "--repeats", "1"] if args.quick else []
        gates.main(a + q)
    if "profile_em" in todo:
        a = ["--n", "20000", "--repeats", "2"] if args.quick else ["--repeats", "3"]
        profile_em.main(a + q)
    if args.full_softmax or "full_softmax" in todo:
        summary["full_softmax"] = full_softmax(
            args.softmax_preset, quiet=args.quiet,
            out_dir=Path(__file__).resolve().parents[1] / "docs" / "figures")
    old = json.loads((C.RESULTS / "summary.json").read_text()) if (C.RESULTS / "summary.json").exists() else {}
    for key in ("single_fit", "batched", "machine_limit", "full_softmax"):
        if key not in summary and key in old:  # keep the last measured value of what did not run
            summary[key] = old[key]
    summary["total_s"] = time.perf_counter() - t_start
    md = render_summary(summary, args)
    C.write_results("summary", md, summary)
    print(md)
    return 0


def render_summary(s, args):
    lines = ["# Performance summary (issue 8)", "",
             f"`python benchmarks/run_all.py{' --quick' if args.quick else ''}` — total "
             f"{s['total_s']:.0f} s. Details: `single_fit.md`, `batched.md`, `machine_limit.md`, "
             "`gates.md`, `profile_em.md` (profile and proposals).", "", "| target | result | met? |", "|---|---|---|"]
    for t in s.get("single_fit") or []:
        if "speedup" in t:
            lines.append(f"| n=1e5, k=3 single fit ≥100× faster than flexmix (goal 300×), ℓ ≥ flexmix: "
                         f"{t['contender']} | {t['speedup']:.0f}× wall, {C.fmt(t.get('speedup_cpu'), 3)}× CPU"
                         + (f" ({t['speedup_incl_compile']:.0f}× wall with compile)"
                            if t.get('speedup_incl_compile') else "")
                         + f", ℓ {'≥' if t['loglik_at_least_flexmix'] else '<'} flexmix | "
                         f"{'yes' if t['met_100x'] else 'NO'} (300×: {'yes' if t['met_300x'] else 'no'})"
                         + (" — supplementary, tighter tol than flexmix" if "tol 1e-8/3" in t["contender"] else "")
                         + " |")
        else:
            lines.append(f"| single fit vs flexmix: {t['contender']} | {t['status']} | — |")
    ml = s.get("machine_limit")
    if ml:
        core = ml.get("best_single_thread_fraction_of_core_limit")
        lines.append(f"| EM throughput ≥25% of the fused-exp limit (goal 50%) | best "
                     f"{100 * ml['best_fraction']:.1f}% ({ml['best_contender']})"
                     + (f"; one thread {100 * core:.1f}% of the per-core limit" if core else "")
                     + f"; JAX run_em {100 * ml['default_jax_fraction']:.1f}% | "
                     f"{'yes' if ml['met_25pct'] else 'NO'} "
                     f"(50%: {'yes' if ml['met_50pct'] else 'no'}) |")
    b = s.get("batched")
    if b:
        pool = b.get("numba_pool_not_slower")
        lines.append(f"| batched replicates never slower per fit than a loop of single fits | "
                     f"CPU batched paths: Numba thread pool {C.fmt(b.get('numba_pool_vs_numba_loop'), 3)}× "
                     f"its loop ({'not slower' if pool else 'slower'}), lax.map "
                     f"{'not slower' if b.get('lax_map_not_slower') else 'slower'}; vmap (the "
                     f"accelerator mode) on CPU: {'not slower' if b['batched_not_slower'] else 'slower'}"
                     f" | {'yes' if pool and b.get('lax_map_not_slower') else 'NO'} on CPU"
                     f"{'' if b['batched_not_slower'] else ' (vmap on CPU: no)'} |")
    fs = s.get("full_softmax")
    if fs and "wall_s" in fs:
        ok = fs["status"] == "ok"
        lines.append(f"| full softmax reproduction (k = 2, 3, 4 full grids, 40 replicates, figure) "
                     f"< 30 min (goal 15) on this machine | {fs['status']}, {fs['wall_s'] / 60:.1f} min "
                     f"(`{fs['command']}`) | {'yes' if ok and fs['wall_s'] < 1800 else 'NO'} "
                     f"(15 min: {'yes' if ok and fs['wall_s'] < 900 else 'no'}) |")
    else:
        lines.append("| full softmax reproduction | not run (`--full-softmax`) | — |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
