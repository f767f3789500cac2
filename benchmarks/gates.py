"""EM time per iteration for every gate family (each gate object's EM step, ``moetheory.gates``).

n = 1e5, d = 1, the canonical truths of DESIGN.md §5 (softmax: the k3d1 flexmix truth; topk:
k = 3, K = 2; temperature and activation (tanh): k = 2, τ = 0.5), a fixed start near the truth,
exactly ``--iters`` EM iterations (tol = 0 so no early stop), default gate options. Medians of
interleaved repeats; compile time apart. Families not registered yet are listed as such; re-run
when they land.

Usage: ``python benchmarks/gates.py [--n 100000] [--iters 10] [--repeats 3]``.
"""
from __future__ import annotations

import argparse
import sys
import time

import numpy as np

import common as C


def cases():
    from moetheory.params import MoEParams
    from moetheory.spec import MoESpec

    soft, _ = C.truth_params(3)
    topk = MoEParams.create(beta0=[0.0, 0.5, 0.0], beta1=[[-4.0], [0.0], [4.0]],
                            a=[[-2.0], [1.0], [2.0]], b=[1.0, 0.0, -1.0], var=[0.1, 0.1, 0.1])
    temp = MoEParams.create(beta0=[0.5, 0.0], beta1=[[2.0], [0.0]], a=[[-1.0], [1.0]],
                            b=[0.5, -0.5], var=[0.05, 0.05], tau=0.5)
    return [
        ("softmax", MoESpec(3, 1), soft),
        ("topk (k=3, K=2)", MoESpec(3, 1, gate="topk", top_k=2), topk),
        ("temperature (τ fixed)", MoESpec(2, 1, gate="temperature"), temp),
        ("temperature (τ estimated)", MoESpec(2, 1, gate="temperature", tau="estimated"), temp),
        ("activation (tanh, τ fixed)", MoESpec(2, 1, gate="activation", activation="tanh"), temp),
    ]


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    C.ensure_jax()
    import jax
    import jax.numpy as jnp

    from moetheory.em.run import run_em
    from moetheory.model import sample

    n, iters = args.n, args.iters
    machine = C.machine()
    rng = np.random.default_rng(0)
    x = rng.uniform(-1.0, 1.0, (n, 1))
    xj = jnp.asarray(x)
    contenders, meta, skipped = {}, {}, []
    for name, spec, truth in cases():
        y = sample(jax.random.key(7), spec, truth, x)
        k = spec.n_experts
        r = np.random.default_rng(k)
        start = truth._replace(beta0=truth.beta0 + 0.2 * r.standard_normal(k),
                               beta1=truth.beta1 + 0.2 * r.standard_normal((k, 1)),
                               a=truth.a + 0.2 * r.standard_normal((k, 1)),
                               b=truth.b + 0.2 * r.standard_normal(k))
        sj = jax.tree.map(jnp.asarray, start)
        try:
            t0 = time.perf_counter()
            comp = run_em.lower(spec, sj, xj, y, max_iter=iters).compile()
            compile_s = time.perf_counter() - t0
        except Exception as exc:  # a family that does not run yet is recorded, not fatal
            skipped.append((name, f"error: {type(exc).__name__}: {str(exc)[:200]}"))
            continue

        def fn(comp=comp, sj=sj, y=y):
            res = comp(sj, xj, y)
            res.loglik.block_until_ready()
            return {"n_iter": int(res.n_iter), "loglik": float(res.loglik)}

        contenders[name] = fn
        meta[name] = {"compile_s": compile_s, "k": k, "spec": repr(spec)}
    C.log(f"gates n={n}: {list(contenders)}; skipped {skipped}", args.quiet)
    res = C.interleaved(contenders, args.repeats) if contenders else {}
    base = res["softmax"]["median_s"] if "softmax" in res else None
    rows = []
    for name, r in res.items():
        it = r["value"]["n_iter"]
        per = r["median_s"] / max(it, 1)
        rows.append({"gate": name, "k": meta[name]["k"], "iterations": it,
                     "per_iter_ms": 1e3 * per, "cpu_per_iter_ms": 1e3 * r["cpu_median_s"] / max(it, 1),
                     "vs_softmax": (r["median_s"] / base) if base else None,
                     "compile_s": meta[name]["compile_s"], "spec": meta[name]["spec"]})
    lines = ["# EM time per iteration by gate family", "",
             f"n = {n:,}, d = 1, {iters} EM iterations from a start near the DESIGN §5 truth, "
             f"default gate options; medians of {args.repeats} interleaved repeats; JAX `run_em` "
             "(the only EM engine for the non-softmax gates). 'vs softmax' = total time ratio.", "",
             C.machine_md(machine), "",
             C.md_table(["gate", "k", "ms / iteration", "CPU ms / iteration", "vs softmax",
                         "compile (s)"],
                        [[r["gate"], r["k"], f"{r['per_iter_ms']:.1f}", f"{r['cpu_per_iter_ms']:.1f}",
                          C.fmt(r["vs_softmax"], 3), C.fmt(r["compile_s"], 3)] for r in rows])]
    if skipped:
        lines += ["", "Not measured: " + "; ".join(f"{a} ({b})" for a, b in skipped) + "."]
    md = "\n".join(lines)
    C.write_results("gates", md, {"machine": machine, "n": n, "iters": iters, "rows": rows,
                                  "skipped": skipped})
    if not args.quiet:
        print(md)
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() is not None else 1)
