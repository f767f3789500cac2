"""Where EM spends its time, and the measured effect of the proposed changes to ``moetheory.em``.

Softmax gate, d = 1, k = 3, n = 1e5 (``--n``), the k3d1 truth and a fixed start, tol 1e-8.
All timings are **process CPU time** medians of interleaved repeats (every contender here runs
on one thread, and CPU time removes most of the load that other processes put on this shared
machine); the wall-clock medians are in the JSON.

1. Profile of one EM iteration of the current code (each piece jitted alone): E-step, expert
   M-step, gate M-step (default max_newton=50, and 1), and inside one Newton step: the gate
   objective, the gradient, the Hessian einsum, the 4×4 solve.
2. Proposals, each as a full ``run_em`` to convergence from the same start (iterations and
   log-likelihood reported, so that a faster variant that converges elsewhere would show):
   * ``max_newton`` = 1, 2, 3 (a ``gate_options`` change, no code change; GEM stays monotone
     because every accepted gate step has Q_gate ≥ its start);
   * reuse of the accepted step's log-probabilities in the Newton loop (the current loop
     re-evaluates the objective at the accepted point: one extra (n, k) pass per Newton step);
   * the Hessian as [blockdiag(Σ w p_i x̃x̃ᵀ) − Zᵀ Z'] (no (n, k-1, k-1) intermediate);
   * the fused Numba path (:func:`moetheory.kernels.numba_em.run_em_numba`).
3. Compilation: compile time of ``run_em`` for one shape, and whether padding to a bucket
   size with ``weights`` (0 on padded rows) gives the same fit (so all n of a bucket share one
   compiled program).

The variants of the gate M-step are defined here and put in place of the softmax gate's step
(``SoftmaxGate.m_step``) only while their program is being lowered (AOT ``lower().compile()``),
then the original is put back: nothing in ``moetheory`` is modified.

Usage: ``python benchmarks/profile_em.py [--n 100000] [--repeats 5]``.
"""
from __future__ import annotations

import argparse
import sys
import time
from contextlib import contextmanager

import numpy as np

import common as C

TOL = 1e-8


def gate_step_variant(reuse_logp=True, gram_hessian=False):
    """A copy of ``moetheory.em.mstep.softmax_gate_m_step`` with the proposed changes."""
    import jax
    import jax.numpy as jnp

    from moetheory.em.mstep import _softmax_pack, _softmax_unpack

    def step_fn(spec, params, x, resp, max_newton=50, newton_tol=1e-12, mask=None):
        params = params._replace(beta0=params.beta0 - params.beta0[-1],
                                 beta1=params.beta1 - params.beta1[-1])
        n, d = x.shape
        k = spec.n_experts
        if k == 1:
            return params
        xt = jnp.concatenate([x, jnp.ones((n, 1), x.dtype)], axis=1)
        m = (k - 1) * (d + 1)
        rsum = resp.sum(-1)

        def objective(theta):
            h = jnp.concatenate([xt @ theta.T, jnp.zeros((n, 1), x.dtype)], axis=1)
            logp = jax.nn.log_softmax(h, axis=-1)
            return jnp.where(resp > 0, resp * logp, 0.0).sum(), logp

        def newton_direction(theta, logp):
            p = jnp.exp(logp)
            grad = ((resp - rsum[:, None] * p)[:, :-1]).T @ xt
            pk = p[:, :-1] * rsum[:, None]
            if gram_hessian:
                z = (pk[:, :, None] * xt[:, None, :]).reshape(n, m)
                zz = (p[:, :-1, None] * xt[:, None, :]).reshape(n, m)
                diag = jnp.einsum("ni,na,nb->iab", pk, xt, xt)
                blk = jnp.zeros((m, m), x.dtype)
                for i in range(k - 1):
                    sl = slice(i * (d + 1), (i + 1) * (d + 1))
                    blk = blk.at[sl, sl].set(diag[i])
                info = blk - z.T @ zz
            else:
                w = jnp.einsum("ni,ij->nij", pk, jnp.eye(k - 1, dtype=x.dtype)) - jnp.einsum(
                    "ni,nj->nij", pk, p[:, :-1])
                info = jnp.einsum("nij,na,nb->iajb", w, xt, xt).reshape(m, m)
            ridge = 1e-12 * (1.0 + jnp.trace(info) / m)
            step = jnp.linalg.solve(info + ridge * jnp.eye(m, dtype=x.dtype), grad.reshape(m))
            return step.reshape(k - 1, d + 1)

        def halving(theta, q, logp, step):
            def cond(s):
                return (~s[3]) & (s[4] < 40)

            def body(s):
                alpha, _, _, _, tries, lp_old = s
                cand = theta + alpha * step
                qc, lp = objective(cand)
                ok = jnp.isfinite(qc) & (qc >= q)
                return alpha * 0.5, cand, qc, ok, tries + 1, lp

            init = (jnp.asarray(1.0, x.dtype), theta, q, jnp.asarray(False), 0, logp)
            _, cand, qc, ok, _, lp = jax.lax.while_loop(cond, body, init)
            return (jnp.where(ok, cand, theta), jnp.where(ok, qc, q), ok,
                    jnp.where(ok, lp, logp))

        def cond(s):
            return s[4] & (s[3] < max_newton)

        def body(s):
            theta, q, logp, it, _ = s
            step = newton_direction(theta, logp)
            theta_new, q_new, ok, lp = halving(theta, q, logp, step)
            if not reuse_logp:
                _, lp = objective(theta_new)
            go = ok & (q_new - q > newton_tol * (1.0 + jnp.abs(q)))
            return theta_new, q_new, lp, it + 1, go

        theta0 = _softmax_pack(params)
        q0, logp0 = objective(theta0)
        theta, *_ = jax.lax.while_loop(cond, body, (theta0, q0, logp0, 0, jnp.asarray(True)))
        return _softmax_unpack(params, theta)

    return step_fn


@contextmanager
def softmax_step(fn):
    from moetheory.gates.softmax import SoftmaxGate

    old = SoftmaxGate.m_step
    if fn is not None:
        def m_step(self, spec, params, z, resp, y=None, weights=None, max_newton=50,
                   newton_tol=1e-12, **options):
            return fn(spec, params, z, resp, max_newton=max_newton, newton_tol=newton_tol)

        SoftmaxGate.m_step = m_step
    try:
        yield
    finally:
        SoftmaxGate.m_step = old


def cpu_time(fn, repeats):
    fn()
    out = []
    for _ in range(repeats):
        c0 = time.process_time()
        fn()
        out.append(time.process_time() - c0)
    return float(np.median(out))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    C.ensure_jax()
    import jax
    import jax.numpy as jnp

    from moetheory.em import mstep
    from moetheory.em.estep import e_step
    from moetheory.em.run import run_em
    from moetheory.kernels import numba_em
    from moetheory.spec import MoESpec

    n, k = args.n, 3
    truth, _ = C.truth_params(k)
    spec = MoESpec(k, 1)
    x, y = C.simulate(truth, n, seed=100 + k)
    start = C.start_params(truth, seed=k)
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    p = jax.tree.map(jnp.asarray, start)
    machine = C.machine()
    log = lambda m: C.log(m, args.quiet)  # noqa: E731

    # 1. profile of the pieces
    resp, _ = jax.jit(lambda p: e_step(spec, p, xj, yj))(p)
    xt = jnp.concatenate([xj, jnp.ones((n, 1))], axis=1)
    theta = jnp.concatenate([p.beta1[:-1], p.beta0[:-1, None]], axis=1)
    m = (k - 1) * 2

    def objective(theta):
        h = jnp.concatenate([xt @ theta.T, jnp.zeros((n, 1))], axis=1)
        logp = jax.nn.log_softmax(h, axis=-1)
        return jnp.where(resp > 0, resp * logp, 0.0).sum(), logp

    prob = jnp.exp(objective(theta)[1])

    def hess(pr):
        pk = pr[:, :-1]
        w = jnp.einsum("ni,ij->nij", pk, jnp.eye(k - 1)) - jnp.einsum("ni,nj->nij", pk, pr[:, :-1])
        return jnp.einsum("nij,na,nb->iajb", w, xt, xt).reshape(m, m)

    arr = jnp.asarray(np.random.default_rng(0).uniform(-5, 0, n * k))
    pieces = {
        "exp-and-sum over n·k, XLA": (jax.jit(lambda a: jnp.exp(a).sum()), (arr,)),
        "exp-and-sum over n·k, Numba (the kernel's vectorised exp)": (
            C.numba_exp_sum(), (np.asarray(arr),)),
        "E-step": (jax.jit(lambda p: e_step(spec, p, xj, yj)), (p,)),
        "expert M-step": (jax.jit(lambda p, r: mstep.expert_m_step(p, xj, yj, r, 1e-10)), (p, resp)),
        "gate M-step, max_newton=50 (default)": (jax.jit(
            lambda p, r: mstep.softmax_gate_m_step(spec, p, xj, r)), (p, resp)),
        "gate M-step, max_newton=1": (jax.jit(
            lambda p, r: mstep.softmax_gate_m_step(spec, p, xj, r, max_newton=1)), (p, resp)),
        "  gate objective (one (n,k) log-softmax pass)": (jax.jit(objective), (theta,)),
        "  gate gradient": (jax.jit(lambda pr: ((resp - pr)[:, :-1]).T @ xt), (prob,)),
        "  gate Hessian einsum (n,k-1,k-1 intermediate)": (jax.jit(hess), (prob,)),
        "  4×4 solve": (jax.jit(lambda a, b: jnp.linalg.solve(a, b)), (2.0 * jnp.eye(4), jnp.ones(4))),
        "Numba fused E-step pass (ll + all statistics)": (
            lambda: numba_em.estep_stats(start, x, y), ()),
    }
    prof = {}
    reps = 20
    for name, (f, a) in pieces.items():
        g = (lambda f=f, a=a: jax.block_until_ready(f(*a)))
        g()
        ts = []
        for _ in range(3):
            c0 = time.process_time()
            for _ in range(reps):
                g()
            ts.append((time.process_time() - c0) / reps)
        prof[name] = float(np.median(ts))
        log(f"  {name}: {1e3 * prof[name]:.3f} ms CPU")
    # the limit's unit: the faster exp-and-sum pass (CPU time, so per core)
    unit = min(t for name, t in prof.items() if name.startswith("exp-and-sum"))

    # 2. proposals, full runs
    variants = {
        "current run_em (max_newton=50)": (None, None),
        "max_newton=3": (None, 3),
        "max_newton=2": (None, 2),
        "max_newton=1": (None, 1),
        "reuse accepted log-probs (max_newton=50)": (gate_step_variant(True, False), None),
        "reuse accepted log-probs + max_newton=2": (gate_step_variant(True, False), 2),
        "Z-product Hessian, no (n,k-1,k-1) (max_newton=50)": (gate_step_variant(False, True), None),
    }
    compiled = {}
    jax.clear_caches()
    for name, (fn, mn) in variants.items():
        opts = None if mn is None else (("max_newton", mn),)
        jax.clear_caches()  # run_em's trace cache would otherwise reuse the previous variant
        with softmax_step(fn):
            t0 = time.perf_counter()
            compiled[name] = (run_em.lower(spec, p, xj, yj, tol_rel=TOL, max_iter=1000,
                                           gate_options=opts).compile(), time.perf_counter() - t0)

    def runner(c):
        def f():
            r = c(p, xj, yj, tol_rel=TOL)
            r.loglik.block_until_ready()
            return {"n_iter": int(r.n_iter), "loglik": float(r.loglik)}
        return f

    contenders = {name: runner(c) for name, (c, _) in compiled.items()}
    for mn in (50, 1):
        contenders[f"Numba fused (max_newton={mn})"] = (
            lambda mn=mn: (lambda r: {"n_iter": r["n_iter"], "loglik": r["loglik"]})(
                numba_em.run_em_numba(start, x, y, tol_rel=TOL, max_iter=1000, max_newton=mn)))
    log(f"profile_em proposals n={n}: {list(contenders)}")
    res = C.interleaved(contenders, args.repeats)
    base = res["current run_em (max_newton=50)"]["cpu_median_s"]
    rows = []
    for name, r in res.items():
        v = r["value"]
        rows.append({"variant": name, "cpu_s": r["cpu_median_s"], "wall_s": r["median_s"],
                     "speedup_cpu": base / r["cpu_median_s"], "n_iter": v["n_iter"],
                     "loglik": v["loglik"], "ms_per_iter_cpu": 1e3 * r["cpu_median_s"] / v["n_iter"],
                     "compile_s": compiled[name][1] if name in compiled else None})

    # 3. compilation and padding
    n_small = 10000
    xs, ys = C.simulate(truth, n_small, seed=5)
    pad = 12500
    xp = np.vstack([xs, np.zeros((pad - n_small, 1))])
    yp = np.concatenate([ys, np.zeros(pad - n_small)])
    wp = np.concatenate([np.ones(n_small), np.zeros(pad - n_small)])
    t0 = time.perf_counter()
    c_small = run_em.lower(spec, p, jnp.asarray(xs), jnp.asarray(ys), tol_rel=TOL, max_iter=1000).compile()
    compile_small = time.perf_counter() - t0
    t0 = time.perf_counter()
    c_pad = run_em.lower(spec, p, jnp.asarray(xp), jnp.asarray(yp), tol_rel=TOL, max_iter=1000,
                         weights=jnp.asarray(wp)).compile()
    compile_pad = time.perf_counter() - t0
    r_small = c_small(p, jnp.asarray(xs), jnp.asarray(ys), tol_rel=TOL)
    r_pad = c_pad(p, jnp.asarray(xp), jnp.asarray(yp), tol_rel=TOL, weights=jnp.asarray(wp))
    same = {"n_iter": (int(r_small.n_iter), int(r_pad.n_iter)),
            "loglik_diff": float(abs(r_small.loglik - r_pad.loglik)),
            "max_param_diff": float(max(np.max(np.abs(np.asarray(a) - np.asarray(b)))
                                        for a, b in zip(r_small.params, r_pad.params)))}
    t_small = cpu_time(lambda: c_small(p, jnp.asarray(xs), jnp.asarray(ys), tol_rel=TOL).loglik.block_until_ready(), 3)
    t_pad = cpu_time(lambda: c_pad(p, jnp.asarray(xp), jnp.asarray(yp), tol_rel=TOL,
                                   weights=jnp.asarray(wp)).loglik.block_until_ready(), 3)
    comp = {"compile_s_n10000": compile_small, "compile_s_padded_12500": compile_pad,
            "run_cpu_s_n10000": t_small, "run_cpu_s_padded_12500": t_pad, "same_fit": same}

    md = render(prof, unit, rows, comp, machine, n)
    C.write_results("profile_em", md, {"machine": machine, "n": n, "k": k, "profile_cpu_s": prof,
                                       "proposals": rows, "compilation": comp})
    if not args.quiet:
        print(md)
    return rows


def render(prof, unit, rows, comp, machine, n):
    lines = ["# Profile of EM and measured effect of the proposed changes", "",
             f"Softmax gate, k = 3, d = 1, n = {n:,}, k3d1 truth, fixed start, tol 1e-8. Process "
             "CPU time (single-threaded contenders; removes most of the shared machine's load), "
             "medians of interleaved repeats.", "", C.machine_md(machine), "",
             "## 1. One EM iteration, piece by piece (current code, each piece jitted alone)", "",
             C.md_table(["piece", "CPU ms", "× the faster exp-and-sum pass"],
                        [[name, f"{1e3 * t:.3f}", f"{t / unit:.1f}"] for name, t in prof.items()]),
             "", "## 2. Proposals: full EM runs from the same start", "",
             C.md_table(["variant", "CPU s", "speed-up vs current", "iterations", "CPU ms / iteration",
                         "log-likelihood", "compile (s)"],
                        [[r["variant"], f"{r['cpu_s']:.3f}", f"{r['speedup_cpu']:.2f}×", r["n_iter"],
                          f"{r['ms_per_iter_cpu']:.1f}", f"{r['loglik']:.6f}", C.fmt(r["compile_s"], 3)]
                         for r in rows]),
             "", "## 3. Compilation and padding", "",
             f"- `run_em` compile time (one shape, n = 10,000): {comp['compile_s_n10000']:.2f} s; "
             f"padded to 12,500 rows with `weights` = 0 on the padding: {comp['compile_s_padded_12500']:.2f} s.",
             f"- Same fit padded vs unpadded: iterations {comp['same_fit']['n_iter']}, "
             f"|Δℓ| = {comp['same_fit']['loglik_diff']:.2g}, max |Δθ| = {comp['same_fit']['max_param_diff']:.2g}.",
             f"- Run time (CPU) n = 10,000: {comp['run_cpu_s_n10000']:.3f} s; padded to 12,500: "
             f"{comp['run_cpu_s_padded_12500']:.3f} s "
             f"({comp['run_cpu_s_padded_12500'] / comp['run_cpu_s_n10000']:.2f}×)."]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
