"""EM throughput against the machine's limit for this kind of work.

Throughput = n · k · (EM iterations) / run time (point × expert × iteration per second), at
n = 1e5, k = 3, softmax gate, d = 1, from a fixed start to tol 1e-8. The limit is the rate of a
fused exp-and-sum pass over n·k float64 numbers (elements per second), measured in the same run,
interleaved: a jitted ``jnp.exp(a).sum()`` (XLA vectorises exp), a Numba loop over libm's
``exp`` (Numba has no SVML here: one value at a time) and a Numba loop over the fused kernel's
branch-free, vectorisable exp; the fastest is the limit. An EM iteration needs at least one exp per point and expert (the E-step), so throughput /
limit is the fraction of the machine's exp-bound speed that EM achieves (1 = as fast as one bare
exp-and-sum pass per iteration).

Usage: ``python benchmarks/machine_limit.py [--n 100000] [--k 3] [--repeats 7]``.
"""
from __future__ import annotations

import argparse
import sys

import numpy as np

import common as C

TOL = 1e-8


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--k", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--passes", type=int, default=200,
                    help="exp-and-sum passes per timing (so that the limit is timed over about as "
                         "long as an EM run, under the same load)")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    C.ensure_jax()
    import jax
    import jax.numpy as jnp
    import numba

    from moetheory.em.run import run_em
    from moetheory.kernels import numba_em
    from moetheory.spec import MoESpec

    n, k = args.n, args.k
    truth, src = C.truth_params(k)
    x, y = C.simulate(truth, n, seed=100 + k)
    start = C.start_params(truth, seed=k)
    spec = MoESpec(k, 1)
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    sj = jax.tree.map(jnp.asarray, start)

    arr = np.random.default_rng(0).uniform(-5.0, 0.0, n * k)
    arr_j = jnp.asarray(arr)
    exp_sum_jax = jax.jit(lambda a: jnp.exp(a).sum())

    @numba.njit(cache=True, fastmath=False)
    def exp_sum_numba(a):
        s = 0.0
        for i in range(a.shape[0]):
            s += np.exp(a[i])
        return s

    from moetheory.kernels.numba_em import _exp

    @numba.njit(cache=True, fastmath=False, error_model="numpy")
    def exp_sum_numba_vec(a):
        # the kernel's branch-free exp: the loop vectorises; the sum is kept in order, so a
        # small buffer holds a block of exps first
        s = 0.0
        buf = np.empty(256)
        for lo in range(0, a.shape[0], 256):
            nb = min(a.shape[0], lo + 256) - lo
            for j in range(nb):
                buf[j] = _exp(a[lo + j])
            for j in range(nb):
                s += buf[j]
        return s

    compiled = {m: run_em.lower(spec, sj, xj, yj, tol=TOL, max_iter=2000,
                                gate_options=(("max_newton", m),)).compile() for m in (50, 1)}

    def em_jax(m):
        def f():
            r = compiled[m](sj, xj, yj, tol=TOL)
            r.loglik.block_until_ready()
            return {"n_iter": int(r.n_iter), "loglik": float(r.loglik)}
        return f

    def em_numba(m):
        def f():
            r = numba_em.run_em_numba(start, x, y, tol=TOL, max_iter=2000, max_newton=m)
            return {"n_iter": r["n_iter"], "loglik": r["loglik"]}
        return f

    from moetheory.params import MoEParams
    from moetheory.study.numba_cells import run_fits, thread_count
    from moetheory.study.spec import EstimatorSpec

    threads = thread_count()
    xs_t = np.ascontiguousarray(np.broadcast_to(x, (threads,) + x.shape))
    ys_t = np.ascontiguousarray(np.broadcast_to(y, (threads,) + y.shape))
    ws_t = np.ones_like(ys_t)
    starts_t = MoEParams(*(np.broadcast_to(np.asarray(v), (threads, 1) + np.shape(v))
                           for v in start))

    def em_numba_pool():
        # the study path: one fit per core at once (here T copies of the same fit, so the
        # iteration count is the single fit's); throughput counts all T fits
        out = run_fits(xs_t, ys_t, ws_t, starts_t, EstimatorSpec(tol=TOL, max_iter=2000,
                                                                 max_newton=1), threads)
        return {"n_iter": sum(int(o[6]) for o in out), "loglik": float(out[0][5])}

    passes = args.passes

    def exp_jax():
        for _ in range(passes):
            v = exp_sum_jax(arr_j)
        return float(v)

    def exp_numba():
        for _ in range(passes):
            v = exp_sum_numba(arr)
        return float(v)

    def exp_numba_vec():
        for _ in range(passes):
            v = exp_sum_numba_vec(arr)
        return float(v)

    contenders = {
        "exp-and-sum (JAX jit)": exp_jax,
        "exp-and-sum (Numba, libm exp)": exp_numba,
        "exp-and-sum (Numba, the kernel's vectorised exp)": exp_numba_vec,
        "EM, JAX run_em (max_newton=50, default)": em_jax(50),
        "EM, JAX run_em (max_newton=1)": em_jax(1),
        "EM, Numba fused (max_newton=50)": em_numba(50),
        "EM, Numba fused (max_newton=1)": em_numba(1),
        f"EM, Numba fused (max_newton=1), {threads} fits on {threads} threads": em_numba_pool,
    }
    C.log(f"machine_limit n={n} k={k}", args.quiet)
    machine = C.machine()
    res = C.interleaved(contenders, args.repeats)
    limits = {name: passes * n * k / res[name]["median_s"] for name in contenders
              if name.startswith("exp")}
    limits_cpu = {name: passes * n * k / res[name]["cpu_median_s"] for name in contenders
                  if name.startswith("exp")}
    limit_name = max(limits, key=limits.get)
    limit = limits[limit_name]
    limit_cpu = max(limits_cpu.values())
    rows = []
    for name, r in res.items():
        if name.startswith("exp"):
            rows.append({"what": name, "time_s": r["median_s"] / passes, "rate": limits[name],
                         "fraction_of_limit": limits[name] / limit,
                         "fraction_of_limit_cpu": limits_cpu[name] / limit_cpu, "n_iter": None,
                         "per_iter_ms": None, "loglik": None})
        else:
            it = r["value"]["n_iter"]
            rate = n * k * it / r["median_s"]
            rate_cpu = n * k * it / r["cpu_median_s"]
            rows.append({"what": name, "time_s": r["median_s"], "rate": rate,
                         "fraction_of_limit": rate / limit,
                         "fraction_of_limit_cpu": rate_cpu / limit_cpu, "n_iter": it,
                         "per_iter_ms": 1e3 * r["median_s"] / it, "loglik": r["value"]["loglik"],
                         "passes_equivalent": limit / rate})
    best = max((r for r in rows if r["n_iter"]), key=lambda r: r["fraction_of_limit"])
    default = next(r for r in rows if r["what"].startswith("EM, JAX run_em (max_newton=50"))
    targets = {"best_contender": best["what"], "best_fraction": best["fraction_of_limit"],
               "best_fraction_cpu": best["fraction_of_limit_cpu"],
               "met_25pct": best["fraction_of_limit"] >= 0.25,
               "met_50pct": best["fraction_of_limit"] >= 0.50,
               "default_jax_fraction": default["fraction_of_limit"],
               "default_jax_met_25pct": default["fraction_of_limit"] >= 0.25}
    lines = ["# EM throughput vs the machine limit", "",
             f"n = {n:,}, k = {k}, softmax gate, d = 1, fixed start, tol {TOL:g}. Throughput = "
             "n·k·iterations / run time; limit = the faster fused exp-and-sum pass over n·k "
             f"float64 numbers ({limit_name}, {limit / 1e6:.0f} M elements/s wall; timed as "
             f"{passes} passes in a row so that it sees the same load as an EM run). Medians of "
             f"{args.repeats} interleaved repeats; compile time excluded. The CPU-time column "
             "divides by process CPU time instead of wall time, which removes most of other "
             "processes' load. The JAX exp-and-sum pass uses both cores (XLA splits it), so the "
             "limit is the machine's; the single EM fits run on one thread, the thread-pool "
             "contender (the study path) on all of them, its iterations summed over its fits.", "",
             C.machine_md(machine), "",
             C.md_table(["contender", "time (s)", "iterations", "ms / iteration",
                         "rate (M/s)", "fraction of limit (wall)", "fraction of limit (CPU time)",
                         "≈ exp passes / iteration"],
                        [[r["what"], C.fmt(r["time_s"], 4), C.fmt(r["n_iter"]),
                          C.fmt(r["per_iter_ms"], 3), f"{r['rate'] / 1e6:.1f}",
                          f"{100 * r['fraction_of_limit']:.1f}%",
                          f"{100 * r['fraction_of_limit_cpu']:.1f}%",
                          C.fmt(r.get("passes_equivalent"), 3)] for r in rows]),
             "", "## Must-show target", "",
             f"- Best EM: {best['what']} at **{100 * best['fraction_of_limit']:.1f}%** of the limit "
             f"({100 * best['fraction_of_limit_cpu']:.1f}% by CPU time): "
             f"≥25%: **{'met' if targets['met_25pct'] else 'NOT met'}**; 50% goal: "
             f"**{'met' if targets['met_50pct'] else 'not met'}**.",
             f"- Default JAX `run_em` (as `moetheory.fit` runs it today): "
             f"{100 * default['fraction_of_limit']:.1f}% "
             f"({'meets' if targets['default_jax_met_25pct'] else 'does NOT meet'} 25%)."]
    md = "\n".join(lines)
    C.write_results("machine_limit", md, {"machine": machine, "n": n, "k": k, "tol": TOL,
                                          "limit_elements_per_s": limit, "limit_from": limit_name,
                                          "limit_elements_per_cpu_s": limit_cpu, "passes": passes,
                                          "rows": rows, "targets": targets,
                                          "raw": {kk: v for kk, v in res.items()}})
    if not args.quiet:
        print(md)
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
