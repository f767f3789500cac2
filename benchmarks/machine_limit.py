"""EM throughput against the machine's limit for this kind of work.

Throughput = n · k · (EM iterations) / run time (point × expert × iteration per second), at
n = 1e5, k = 3, softmax gate, d = 1, from a fixed start to tol 1e-8. The limit is the rate of a
fused exp-and-sum pass over n·k float64 numbers (elements per second), measured in the same run,
interleaved: a jitted ``jnp.exp(a).sum()`` (XLA vectorises exp and splits the pass over the
cores), a Numba loop over libm's ``exp`` (Numba has no SVML here: one value at a time), and a
Numba loop over the fused kernel's branch-free, vectorised exp with a reassociated sum (a fixed
order: the kernel's own reductions), on one thread and on every core (the array cut into one
part per thread); the fastest is the limit. An EM iteration needs at least one exp per point
and expert (the E-step), so throughput / limit is the fraction of the machine's exp-bound speed
that EM achieves (1 = as fast as one bare exp-and-sum pass per iteration). Single-thread EM is
also compared with the single-thread limit (per core).

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

    # the kernel's branch-free exp with a reassociated sum (vector lanes, a fixed order, as the
    # kernel's reductions): bound by the exps, not by one long chain of dependent additions
    exp_sum_numba_vec = C.numba_exp_sum()

    compiled = {m: run_em.lower(spec, sj, xj, yj, tol_rel=TOL, max_iter=2000,
                                gate_options=(("max_newton", m),)).compile() for m in (50, 1)}

    def em_jax(m):
        def f():
            r = compiled[m](sj, xj, yj, tol_rel=TOL)
            r.loglik.block_until_ready()
            return {"n_iter": int(r.n_iter), "loglik": float(r.loglik)}
        return f

    def em_numba(m):
        def f():
            r = numba_em.run_em_numba(start, x, y, tol_rel=TOL, max_iter=2000, max_newton=m)
            return {"n_iter": r["n_iter"], "loglik": r["loglik"]}
        return f

    from moetheory.em.backend import map_fits, numba_fit, thread_count

    threads = thread_count()
    w = np.ones(y.shape[0])

    def em_numba_pool():
        # the study path: one fit per core at once (here T copies of the same fit, so the
        # iteration count is the single fit's); throughput counts all T fits
        one = lambda _: numba_fit(x, y, w, start, tol_rel=TOL, tol_abs=0.0, max_iter=2000,  # noqa: E731
                                  var_floor=1e-10, max_newton=1)
        out = map_fits(one, list(range(threads)), threads)
        return {"n_iter": sum(int(o["n_iter"]) for o in out), "loglik": float(out[0]["loglik"])}

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

    parts = [np.ascontiguousarray(p) for p in np.array_split(arr, threads)]

    def exp_part(part):
        for _ in range(passes):
            v = exp_sum_numba_vec(part)
        return v

    def exp_numba_vec_threads():
        # one part of the array per thread (the kernel releases the GIL); partial sums added
        # in a fixed order
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=threads) as pool:
            return float(sum(pool.map(exp_part, parts)))

    contenders = {
        "exp-and-sum (JAX jit)": exp_jax,
        "exp-and-sum (Numba, libm exp)": exp_numba,
        "exp-and-sum (Numba, the kernel's vectorised exp)": exp_numba_vec,
        f"exp-and-sum (Numba, the kernel's vectorised exp, {threads} threads)":
            exp_numba_vec_threads,
        "EM, JAX run_em (max_newton=50, default)": em_jax(50),
        "EM, JAX run_em (max_newton=1)": em_jax(1),
        "EM, Numba fused (max_newton=50)": em_numba(50),
        "EM, Numba fused (max_newton=1)": em_numba(1),
        f"EM, Numba fused (max_newton=1), {threads} fits on {threads} threads": em_numba_pool,
    }
    C.log(f"machine_limit n={n} k={k}", args.quiet)
    machine = C.machine()
    res = C.interleaved(contenders, args.repeats, pause_s=0.05)
    limits = {name: passes * n * k / res[name]["median_s"] for name in contenders
              if name.startswith("exp")}
    limits_cpu = {name: passes * n * k / res[name]["cpu_median_s"] for name in contenders
                  if name.startswith("exp")}
    limit_name = max(limits, key=limits.get)
    limit = limits[limit_name]
    limit_cpu = max(limits_cpu.values())
    # per core: the fastest single-thread pass (XLA's uses every core; so does the threaded one)
    limit_1 = max(v for name, v in limits.items() if "Numba" in name and "threads" not in name)
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
                         "passes_equivalent": limit / rate,
                         "fraction_of_core_limit": (None if "threads" in name
                                                    else rate / limit_1)})
    best = max((r for r in rows if r["n_iter"]), key=lambda r: r["fraction_of_limit"])
    default = next(r for r in rows if r["what"].startswith("EM, JAX run_em (max_newton=50"))
    best_1 = max((r for r in rows if r.get("fraction_of_core_limit")),
                 key=lambda r: r["fraction_of_core_limit"])
    targets = {"best_contender": best["what"], "best_fraction": best["fraction_of_limit"],
               "best_fraction_cpu": best["fraction_of_limit_cpu"],
               "met_25pct": best["fraction_of_limit"] >= 0.25,
               "met_50pct": best["fraction_of_limit"] >= 0.50,
               "default_jax_fraction": default["fraction_of_limit"],
               "default_jax_met_25pct": default["fraction_of_limit"] >= 0.25,
               "best_single_thread": best_1["what"],
               "best_single_thread_fraction_of_core_limit": best_1["fraction_of_core_limit"]}
    lines = ["# EM throughput vs the machine limit", "",
             f"n = {n:,}, k = {k}, softmax gate, d = 1, fixed start, tol {TOL:g}. Throughput = "
             "n·k·iterations / run time; limit = the fastest fused exp-and-sum pass over n·k "
             f"float64 numbers ({limit_name}, {limit / 1e6:.0f} M elements/s wall; per core, "
             f"the fastest single-thread pass: {limit_1 / 1e6:.0f} M/s). Each pass is timed "
             f"as {passes} passes in a row, so that it sees the same load as an EM run. Medians "
             f"of {args.repeats} interleaved repeats, with a 50 ms pause before each timed call "
             "(XLA's worker threads spin after a computation and would take cycles from the "
             "next contender); compile time excluded. The CPU-time column divides by process "
             "CPU time instead of wall time, which removes most of other processes' load. The "
             "single EM fits run on one thread, the thread-pool contender (the study path) on "
             "all of them, its iterations summed over its fits. The JAX and the threaded Numba "
             "passes use every core.", "",
             C.machine_md(machine), "",
             C.md_table(["contender", "time (s)", "iterations", "ms / iteration",
                         "rate (M/s)", "fraction of limit (wall)", "fraction of limit (CPU time)",
                         "fraction of the per-core limit", "≈ exp passes / iteration"],
                        [[r["what"], C.fmt(r["time_s"], 4), C.fmt(r["n_iter"]),
                          C.fmt(r["per_iter_ms"], 3), f"{r['rate'] / 1e6:.1f}",
                          f"{100 * r['fraction_of_limit']:.1f}%",
                          f"{100 * r['fraction_of_limit_cpu']:.1f}%",
                          ("—" if r.get("fraction_of_core_limit") is None
                           else f"{100 * r['fraction_of_core_limit']:.1f}%"),
                          C.fmt(r.get("passes_equivalent"), 3)] for r in rows]),
             "", "## Must-show target", "",
             f"- Best EM: {best['what']} at **{100 * best['fraction_of_limit']:.1f}%** of the limit "
             f"({100 * best['fraction_of_limit_cpu']:.1f}% by CPU time): "
             f"≥25%: **{'met' if targets['met_25pct'] else 'NOT met'}**; 50% goal: "
             f"**{'met' if targets['met_50pct'] else 'not met'}**.",
             f"- Per core: {best_1['what']} at {100 * best_1['fraction_of_core_limit']:.1f}% of "
             "the single-thread limit.",
             f"- JAX `run_em` (the accelerator path; on CPU, `fit` and study cells run the Numba "
             f"kernel): {100 * default['fraction_of_limit']:.1f}% "
             f"({'meets' if targets['default_jax_met_25pct'] else 'does NOT meet'} 25%)."]
    md = "\n".join(lines)
    C.write_results("machine_limit", md, {"machine": machine, "n": n, "k": k, "tol": TOL,
                                          "limit_elements_per_s": limit, "limit_from": limit_name,
                                          "limit_elements_per_cpu_s": limit_cpu, "passes": passes,
                                          "limit_per_core_elements_per_s": limit_1,
                                          "rows": rows, "targets": targets,
                                          "raw": {kk: v for kk, v in res.items()}})
    if not args.quiet:
        print(md)
    return rows


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
