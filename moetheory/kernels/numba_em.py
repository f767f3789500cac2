"""Fused one-pass EM kernels for the softmax-gated Gaussian MoE on CPU (Numba).

The JAX EM (:mod:`moetheory.em`) materialises several (n, k) arrays per iteration (log gate
weights, log expert densities, log joint, responsibilities) and a (n, k-1, k-1) array for the
gate Hessian. The kernels here make **one pass over the data** per E-step that accumulates
everything the exact expert M-step and the first gate Newton step need, and never allocates
an (n, k) temporary:

* the observed log-likelihood Σ_n w_n log p(y_n | x_n);
* per expert i (x̃ = [x, 1], e_ni = y_n − a_iᵀx_n − b_i the residual at the *current* expert):
  R_i = Σ_n r_ni, G_i = Σ_n r_ni x̃ x̃ᵀ, Σ_n r_ni x̃ e_ni, Σ_n r_ni e_ni² — the weighted least-squares
  system in residual form, so the new variance is computed without cancellation
  (Σ r x̃ y = Σ r x̃ e + G_i c_i and Σ r y² follow from them, see :func:`stats_in_y_form`);
* the softmax gate objective Q(β) = Σ_n Σ_i r_ni log g_i(x_n), its gradient and its information
  (negative Hessian) at the current gate — what the first warm-started Newton step needs.

Responsibilities r_ni include the observation weight w_n (0 drops a padded row), exactly as
:func:`moetheory.em.estep.e_step` returns them. The gate is the softmax gate with the **last**
expert pinned at zero (reference category); its free parameters θ are packed as in
:mod:`moetheory.em.mstep`: θ (k−1, d+1) = [β_1, β_0] of experts 0..k−2.

:func:`run_em_numba` is a complete EM (same stopping rule, same Newton/step-halving gate step,
same variance floor and empty-expert rule as :func:`moetheory.em.run.run_em`) built on these
passes. A later Newton step needs the responsibilities again: they are kept in reusable (n, k)
work buffers written by the E-step pass. With ``max_newton=1`` the step-halving test of the
gate step is folded into the next E-step pass: one pass over the data per EM iteration.

Speed notes (measured in ``benchmarks/``): rows are processed in blocks of ``BLOCK`` laid out
expert-major in small stack-like buffers, the exps go through :func:`_exp` (a branch-free,
~1 ulp exp that LLVM vectorises; Numba's ``math.exp`` calls libm one value at a time because
this llvmlite has no SVML), and only the statistics' reductions allow reassociation.

This module imports Numba at import time; nothing else in moetheory imports it, so Numba stays
an optional, lazily loaded dependency (DESIGN.md §6). Kernels are compiled on first use and
cached on disk. The conformance tests bind these kernels to the JAX path
(``tests/test_kernels.py``).
"""
from __future__ import annotations

import math

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

LOG_2PI = math.log(2.0 * math.pi)
#: Same rule as ``moetheory.em.mstep.MIN_EXPERT_WEIGHT``: emptier experts keep their parameters.
MIN_EXPERT_WEIGHT = 1e-8

_jit = njit(cache=True, fastmath=False, nogil=True, error_model="numpy")
_inner = njit(cache=True, fastmath=False, nogil=True, error_model="numpy")


@intrinsic
def _bits_to_f64(typingctx, v):
    """Reinterpret an int64 as a float64 (an LLVM bitcast; vectorisable)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10


@njit(cache=True, inline="always", error_model="numpy")
def _exp(x):
    """exp(x) to about 1 ulp, branch-free so that loops over it vectorise (Numba's math.exp
    calls libm one value at a time: no SVML in this build). Cody–Waite reduction
    x = k ln2 + r, |r| ≤ ln2/2, degree-13 Taylor polynomial of exp(r) (truncation < 1e-17
    relative), times 2^k built from its bits. Underflows to 0 below −708 (no subnormals)."""
    xc = min(max(x, -708.0), 709.0)
    kf = math.floor(xc * _LOG2E + 0.5)
    r = (xc - kf * _LN2_HI) - kf * _LN2_LO
    q = 1.6059043836821613e-10
    q = q * r + 2.08767569878681e-09
    q = q * r + 2.505210838544172e-08
    q = q * r + 2.755731922398589e-07
    q = q * r + 2.7557319223985893e-06
    q = q * r + 2.48015873015873e-05
    q = q * r + 0.0001984126984126984
    q = q * r + 0.001388888888888889
    q = q * r + 0.008333333333333333
    q = q * r + 0.041666666666666664
    q = q * r + 0.16666666666666666
    q = q * r + 0.5
    q = q * r + 1.0
    q = q * r + 1.0
    res = q * _bits_to_f64((np.int64(kf) + 1023) << 52)
    return res if x > -708.0 else 0.0


_acc = njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract", "nsz"})
BLOCK = 256


@_acc
def _accumulate_block(nb, rb, gb, eb, xb, R, G, rxe, ree, grad, info):
    """Add one block's statistics. rb (k, B): w·r; gb (k+1, B): w·g_i and, in row k, 1/w;
    eb (k, B): residuals; xb (d+1, B): x̃. Reassociation is allowed here (and only here) so
    that the reductions vectorise; the order is fixed, so results are reproducible."""
    k = rb.shape[0]
    p = xb.shape[0]
    km1 = k - 1
    for i in range(k):
        s = 0.0
        s2 = 0.0
        for j in range(nb):
            s += rb[i, j]
            s2 += rb[i, j] * eb[i, j] * eb[i, j]
        R[i] += s
        ree[i] += s2
        for u in range(p):
            s = 0.0
            for j in range(nb):
                s += rb[i, j] * xb[u, j] * eb[i, j]
            rxe[i, u] += s
            for v in range(u, p):
                s = 0.0
                for j in range(nb):
                    s += rb[i, j] * xb[u, j] * xb[v, j]
                G[i, u, v] += s
    for i in range(km1):
        for u in range(p):
            s = 0.0
            for j in range(nb):
                s += (rb[i, j] - gb[i, j]) * xb[u, j]
            grad[i, u] += s
        for jj in range(i, km1):
            for u in range(p):
                for v in range(p):
                    s = 0.0
                    if jj == i:
                        for j in range(nb):
                            s += gb[i, j] * (1.0 - gb[k, j] * gb[i, j]) * xb[u, j] * xb[v, j]
                    else:
                        for j in range(nb):
                            s -= gb[i, j] * gb[k, j] * gb[jj, j] * xb[u, j] * xb[v, j]
                    info[i * p + u, jj * p + v] += s


@_inner
def _estep_rows(lo, hi, x, y, w, beta0, beta1, a, b, var, resp, resp_prev, check, hard, acc, R,
                G, rxe, ree, grad, info):
    """Rows lo..hi-1 of the fused E-step; adds into the accumulators (acc = [ℓ, Q, Q_prev]).

    Rows go in blocks of ``BLOCK``, laid out expert-major in small (k, BLOCK) buffers
    (L1-resident; no (n, k) temporary): logits and log joint densities first, then the exps as
    plain loops that LLVM vectorises (:func:`_exp`), then one log of each normaliser per row;
    :func:`_accumulate_block` adds the block's sufficient statistics.

    With ``check``, also Q_prev = Σ r_prev log g at the current gate, where ``resp_prev`` are
    the previous E-step's responsibilities: the step-halving test of the previous gate step,
    done in the same pass (see :func:`em_loop`). With ``hard``, the responsibilities used for
    the statistics, Q and ``resp`` are the classification-EM ones (one-hot of the most probable
    expert, first on ties, times w); the log-likelihood is the observed one as always.
    """
    d = x.shape[1]
    k = beta0.shape[0]
    p = d + 1
    H = np.empty((k, BLOCK))
    L = np.empty((k, BLOCK))
    rb = np.zeros((k, BLOCK))
    gb = np.zeros((k + 1, BLOCK))  # w g_i for i < k; row k: 1 / w (for the information)
    eb = np.zeros((k, BLOCK))
    xb = np.ones((p, BLOCK))
    hm = np.empty(BLOCK)
    jm = np.empty(BLOCK)
    sh = np.empty(BLOCK)
    sj = np.empty(BLOCK)
    cst = np.empty(k)
    ivar = np.empty(k)
    for i in range(k):
        cst[i] = -0.5 * (LOG_2PI + math.log(var[i]))
        ivar[i] = 0.5 / var[i]
    ll = 0.0
    qq = 0.0
    qp = 0.0
    for start in range(lo, hi, BLOCK):
        nb = min(hi, start + BLOCK) - start
        for c in range(d):
            for j in range(nb):
                xb[c, j] = x[start + j, c]
        for j in range(nb):
            hm[j] = -np.inf
            jm[j] = -np.inf
            sh[j] = 0.0
            sj[j] = 0.0
        for i in range(k):
            for j in range(nb):
                s = beta0[i]
                m_ = b[i]
                for c in range(d):
                    s += beta1[i, c] * xb[c, j]
                    m_ += a[i, c] * xb[c, j]
                e = y[start + j] - m_
                H[i, j] = s
                eb[i, j] = e
                lj = s + cst[i] - e * e * ivar[i]
                L[i, j] = lj
                hm[j] = max(hm[j], s)
                jm[j] = max(jm[j], lj)
        for i in range(k):
            for j in range(nb):
                g = _exp(H[i, j] - hm[j])
                gb[i, j] = g
                sh[j] += g
                r = _exp(L[i, j] - jm[j])
                rb[i, j] = r
                sj[j] += r
        for j in range(nb):
            wn = w[start + j]
            lseh = hm[j] + math.log(sh[j])
            if wn != 0.0:
                ll += wn * (jm[j] + math.log(sj[j]) - lseh)
                gb[k, j] = 1.0 / wn
            else:
                gb[k, j] = 0.0
            hm[j] = lseh
            sj[j] = wn / sj[j]
            sh[j] = wn / sh[j]
        for i in range(k):
            for j in range(nb):
                rb[i, j] *= sj[j]
                gb[i, j] *= sh[j]
        if hard:
            for j in range(nb):
                best = 0
                bv = rb[0, j]
                for i in range(1, k):
                    if rb[i, j] > bv:
                        best = i
                        bv = rb[i, j]
                wn = w[start + j]
                for i in range(k):
                    rb[i, j] = wn if i == best else 0.0
        for i in range(k):
            for j in range(nb):
                ri = rb[i, j]
                resp[start + j, i] = ri
                if ri > 0.0:
                    qq += ri * (H[i, j] - hm[j])
        if check:
            for j in range(nb):
                for i in range(k):
                    rp = resp_prev[start + j, i]
                    if rp > 0.0:
                        qp += rp * (H[i, j] - hm[j])
        _accumulate_block(nb, rb, gb, eb, xb, R, G, rxe, ree, grad, info)
    acc[0] += ll
    acc[1] += qq
    acc[2] += qp


@_inner
def _gate_block(start, nb, x, beta0, beta1, H, hm, sh):
    """Logits H (k, nb) of rows start.., their max hm and Σ exp(h - hm) in sh (vectorised)."""
    d = x.shape[1]
    k = beta0.shape[0]
    for j in range(nb):
        hm[j] = -np.inf
        sh[j] = 0.0
    for i in range(k):
        for j in range(nb):
            s = beta0[i]
            for c in range(d):
                s += beta1[i, c] * x[start + j, c]
            H[i, j] = s
            hm[j] = max(hm[j], s)
    for i in range(k):
        for j in range(nb):
            sh[j] += _exp(H[i, j] - hm[j])


@_inner
def _gate_q_rows(lo, hi, x, resp, beta0, beta1, acc):
    """Rows lo..hi-1 of the gate objective Σ r log g (acc[0])."""
    k = beta0.shape[0]
    H = np.empty((k, BLOCK))
    hm = np.empty(BLOCK)
    sh = np.empty(BLOCK)
    qq = 0.0
    for start in range(lo, hi, BLOCK):
        nb = min(hi, start + BLOCK) - start
        _gate_block(start, nb, x, beta0, beta1, H, hm, sh)
        for j in range(nb):
            hm[j] += math.log(sh[j])
        for j in range(nb):
            for i in range(k):
                ri = resp[start + j, i]
                if ri > 0.0:
                    qq += ri * (H[i, j] - hm[j])
    acc[0] += qq


@_inner
def _gate_qd_rows(lo, hi, x, w, resp, beta0, beta1, acc, grad, info):
    """Rows lo..hi-1 of the gate objective (acc[0]), its gradient and information."""
    d = x.shape[1]
    k = beta0.shape[0]
    p = d + 1
    H = np.empty((k, BLOCK))
    hm = np.empty(BLOCK)
    sh = np.empty(BLOCK)
    rb = np.zeros((k, BLOCK))
    gb = np.zeros((k + 1, BLOCK))
    eb = np.zeros((k, BLOCK))
    xb = np.ones((p, BLOCK))
    Rd = np.zeros(k)
    Gd = np.zeros((k, p, p))
    rxed = np.zeros((k, p))
    reed = np.zeros(k)
    qq = 0.0
    for start in range(lo, hi, BLOCK):
        nb = min(hi, start + BLOCK) - start
        _gate_block(start, nb, x, beta0, beta1, H, hm, sh)
        for c in range(d):
            for j in range(nb):
                xb[c, j] = x[start + j, c]
        for i in range(k):
            for j in range(nb):
                gb[i, j] = _exp(H[i, j] - hm[j])
        for j in range(nb):
            wn = w[start + j]
            gb[k, j] = 1.0 / wn if wn != 0.0 else 0.0
            hm[j] += math.log(sh[j])
            sh[j] = wn / sh[j]
        for i in range(k):
            for j in range(nb):
                ri = resp[start + j, i]
                rb[i, j] = ri
                gb[i, j] *= sh[j]
                if ri > 0.0:
                    qq += ri * (H[i, j] - hm[j])
        # the expert statistics of _accumulate_block are computed into dummies (eb = 0)
        _accumulate_block(nb, rb, gb, eb, xb, Rd, Gd, rxed, reed, grad, info)
    acc[0] += qq


@_jit
def _symmetrise(info):
    m = info.shape[0]
    for u in range(m):
        for v in range(u):
            info[u, v] = info[v, u]


@_jit
def estep_pass(x, y, w, beta0, beta1, a, b, var, resp, n_chunks, resp_prev, check, hard=False):
    """Fused E-step over all rows in ``n_chunks`` blocks; writes ``resp`` (n, k).

    Returns (ℓ, R, G, rxe, ree, Q, grad, info, Q_prev); Q_prev = Σ resp_prev · log g at the
    given gate (computed only with ``check``)."""
    n, d = x.shape
    k = beta0.shape[0]
    p = d + 1
    m = max((k - 1) * p, 1)
    acc_c = np.zeros((n_chunks, 3))
    R_c = np.zeros((n_chunks, k))
    G_c = np.zeros((n_chunks, k, p, p))
    rxe_c = np.zeros((n_chunks, k, p))
    ree_c = np.zeros((n_chunks, k))
    grad_c = np.zeros((n_chunks, max(k - 1, 1), p))
    info_c = np.zeros((n_chunks, m, m))
    size = (n + n_chunks - 1) // n_chunks
    for c in range(n_chunks):
        lo = min(n, c * size)
        hi = min(n, lo + size)
        _estep_rows(lo, hi, x, y, w, beta0, beta1, a, b, var, resp, resp_prev, check, hard,
                    acc_c[c], R_c[c], G_c[c], rxe_c[c], ree_c[c], grad_c[c], info_c[c])
    G = G_c.sum(axis=0)
    for i in range(k):
        for u in range(p):
            for v in range(u):
                G[i, u, v] = G[i, v, u]
    info = info_c.sum(axis=0)
    _symmetrise(info)
    acc = acc_c.sum(axis=0)
    return (acc[0], R_c.sum(axis=0), G, rxe_c.sum(axis=0), ree_c.sum(axis=0), acc[1],
            grad_c.sum(axis=0), info, acc[2])


@_jit
def gate_q(x, resp, beta0, beta1, n_chunks):
    """Softmax gate objective Q = Σ_n Σ_i r_ni log g_i(x_n) at (β_0, β_1)."""
    n = x.shape[0]
    acc_c = np.zeros((n_chunks, 1))
    size = (n + n_chunks - 1) // n_chunks
    for c in range(n_chunks):
        lo = min(n, c * size)
        hi = min(n, lo + size)
        _gate_q_rows(lo, hi, x, resp, beta0, beta1, acc_c[c])
    return acc_c.sum()


@_jit
def gate_qd(x, w, resp, beta0, beta1, n_chunks):
    """Gate objective, gradient (k-1, d+1) and information ((k-1)(d+1))² at (β_0, β_1)."""
    n, d = x.shape
    k = beta0.shape[0]
    p = d + 1
    m = max((k - 1) * p, 1)
    acc_c = np.zeros((n_chunks, 1))
    grad_c = np.zeros((n_chunks, max(k - 1, 1), p))
    info_c = np.zeros((n_chunks, m, m))
    size = (n + n_chunks - 1) // n_chunks
    for c in range(n_chunks):
        lo = min(n, c * size)
        hi = min(n, lo + size)
        _gate_qd_rows(lo, hi, x, w, resp, beta0, beta1, acc_c[c], grad_c[c], info_c[c])
    info = info_c.sum(axis=0)
    _symmetrise(info)
    return acc_c.sum(), grad_c.sum(axis=0), info


@_jit
def _set_gate(nb0, nb1, beta0, beta1, step, alpha, d, p):
    for i in range(beta0.shape[0] - 1):
        for c in range(d):
            nb1[i, c] = beta1[i, c] + alpha * step[i * p + c]
        nb0[i] = beta0[i] + alpha * step[i * p + d]


@_jit
def em_loop(x, y, w, beta0, beta1, a, b, var, tol, max_iter, var_floor, max_newton,
            newton_tol, n_chunks, trace, fuse_check, stats, n_hard):
    """The EM loop of :func:`run_em_numba` (see there).

    With ``max_newton == 1`` the step-halving test of the gate's Newton step (does
    Q(θ_old + step) ≥ Q(θ_old) under the responsibilities that defined the step?) is evaluated
    inside the *next* E-step pass, which needs the gate weights at θ_old + step anyway; only
    when the full step fails is the halving continued (α = 1/2, 1/4, ... on separate gate
    passes) and the E-step redone. The accepted iterates, and so the trace, are exactly those
    of the unfused algorithm: one pass over the data per EM iteration instead of two.
    ``stats`` (int64 (2,)) counts data passes and rejected full steps.
    """
    n, d = x.shape
    k = beta0.shape[0]
    p = d + 1
    m = (k - 1) * p
    beta0 = beta0 - beta0[k - 1]
    beta1 = beta1.copy()
    for i in range(k):
        for c in range(d):
            beta1[i, c] -= beta1[k - 1, c]
    a = a.copy()
    b = b.copy()
    var = var.copy()
    resp = np.empty((n, k))
    resp_prev = np.zeros((n, k))
    prev = -np.inf
    n_iter = max_iter
    converged = False
    floor_any = False
    ll = -np.inf
    eye_p = np.eye(p)
    eye_m = np.eye(max(m, 1))
    fused = fuse_check and max_newton == 1 and k > 1
    pending = False  # a full Newton step of the gate awaits its step-halving test
    ob0 = beta0.copy()  # the gate before the pending step, the step and its Q
    ob1 = beta1.copy()
    pstep = np.zeros(max(m, 1))
    pq = 0.0
    for it in range(max_iter + 1):
        hard = it < n_hard
        ll, R, G, rxe, ree, q, grad, info, qprev = estep_pass(
            x, y, w, beta0, beta1, a, b, var, resp, n_chunks, resp_prev, pending, hard)
        stats[0] += 1
        if pending and not (np.isfinite(qprev) and qprev >= pq):
            stats[1] += 1
            # The full step decreased the gate objective: continue the halving on the
            # previous responsibilities, then redo the E-step at the accepted gate.
            alpha = 0.5
            ok = False
            for _h in range(39):
                _set_gate(beta0, beta1, ob0, ob1, pstep, alpha, d, p)
                qc = gate_q(x, resp_prev, beta0, beta1, n_chunks)
                stats[0] += 1
                if np.isfinite(qc) and qc >= pq:
                    ok = True
                    break
                alpha *= 0.5
            if not ok:
                beta0[:] = ob0
                beta1[:] = ob1
            ll, R, G, rxe, ree, q, grad, info, qprev = estep_pass(
                x, y, w, beta0, beta1, a, b, var, resp, n_chunks, resp_prev, False, hard)
            stats[0] += 1
        pending = False
        trace[it] = ll
        if it > n_hard and abs(ll - prev) <= tol * abs(prev):
            converged = True
            n_iter = it
            break
        if it == max_iter:
            break
        prev = ll
        # exact expert M-step (weighted least squares in residual form)
        for i in range(k):
            if not R[i] > MIN_EXPERT_WEIGHT:
                continue
            scale = 0.0
            for u in range(p):
                scale += G[i, u, u]
            scale /= p
            delta = np.linalg.solve(G[i] + 1e-13 * scale * eye_p, rxe[i])
            ssr = ree[i] - 2.0 * (delta @ rxe[i]) + delta @ (G[i] @ delta)
            for c in range(d):
                a[i, c] += delta[c]
            b[i] += delta[d]
            v_raw = ssr / R[i]
            if v_raw < var_floor:
                floor_any = True
                v_raw = var_floor
            var[i] = v_raw
        # softmax gate: Newton with step halving, warm started, last expert pinned
        if fused:
            ridge = 1e-12 * (1.0 + np.trace(info) / m)
            pstep[:] = np.linalg.solve(info + ridge * eye_m, grad.reshape(m))
            ob0[:] = beta0
            ob1[:] = beta1
            pq = q
            _set_gate(beta0, beta1, ob0, ob1, pstep, 1.0, d, p)
            pending = True
            resp, resp_prev = resp_prev, resp
        elif k > 1:
            for t in range(max_newton):
                ridge = 1e-12 * (1.0 + np.trace(info) / m)
                step = np.linalg.solve(info + ridge * eye_m, grad.reshape(m))
                alpha = 1.0
                ok = False
                qc = q
                nb0 = beta0.copy()
                nb1 = beta1.copy()
                gc = grad
                ic = info
                want = t + 1 < max_newton
                for _h in range(40):
                    _set_gate(nb0, nb1, beta0, beta1, step, alpha, d, p)
                    if want:
                        qc, gc, ic = gate_qd(x, w, resp, nb0, nb1, n_chunks)
                    else:
                        qc = gate_q(x, resp, nb0, nb1, n_chunks)
                    stats[0] += 1
                    if np.isfinite(qc) and qc >= q:
                        ok = True
                        break
                    alpha *= 0.5
                if not ok:
                    break
                improvement = qc - q
                q_old = q
                beta0 = nb0
                beta1 = nb1
                q = qc
                grad = gc
                info = ic
                if not improvement > newton_tol * (1.0 + abs(q_old)):
                    break
    if not converged:
        ll_f, R, G, rxe, ree, q, grad, info, qprev = estep_pass(
            x, y, w, beta0, beta1, a, b, var, resp, n_chunks, resp_prev, False)
        trace[max_iter] = ll_f
        converged = max_iter > 0 and abs(ll_f - prev) <= tol * abs(prev)
        ll = ll_f
    return beta0, beta1, a, b, var, ll, n_iter, converged, floor_any


def _as_arrays(params):
    f = lambda v: np.ascontiguousarray(np.asarray(v, dtype=np.float64))  # noqa: E731
    return f(params.beta0), f(params.beta1), f(params.a), f(params.b), f(params.var)


def _check(x, y, weights):
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    if x.ndim == 1:
        x = x[:, None]
    y = np.ascontiguousarray(np.asarray(y, dtype=np.float64))
    if x.ndim != 2 or y.shape != (x.shape[0],):
        raise ValueError(f"x must be (n, d) and y (n,); got x {x.shape}, y {y.shape}")
    if weights is None:
        w = np.ones(x.shape[0])
    else:
        w = np.ascontiguousarray(np.asarray(weights, dtype=np.float64))
        if w.shape != y.shape:
            raise ValueError(f"weights must have shape {y.shape}; got {w.shape}")
    return x, y, w


def estep_stats(params, x, y, weights=None, *, n_chunks: int = 1,
                return_resp: bool = False, hard: bool = False) -> dict:
    """One fused pass: log-likelihood, expert sufficient statistics, gate objective/derivatives.

    Parameters
    ----------
    params : MoEParams (softmax gate; any common gate shift is allowed, the statistics use the
        gate as given and the gradient/information are for the last expert pinned)
    x : (n, d); y : (n,); weights : (n,), optional (0 drops a row)
    n_chunks : int, the data is cut into this many row blocks whose partial sums are added
        (blocked summation; the order of the additions is fixed, so results are reproducible)
    return_resp : also return the (n, k) responsibilities
    hard : use classification-EM responsibilities (one-hot of the most probable expert) for
        the statistics and Q, as ``run_em``'s first ``n_hard`` iterations do

    Returns
    -------
    dict with ``loglik``; ``R`` (k,) Σ r; ``G`` (k, d+1, d+1) Σ r x̃x̃ᵀ; ``rxe`` (k, d+1)
    Σ r x̃ e; ``ree`` (k,) Σ r e² (e = y − current expert mean); ``q`` Σ r log g; ``grad``
    (k−1, d+1) ∂Q/∂θ; ``info`` ((k−1)(d+1),)² −∂²Q/∂θ² (θ packed as [β_1, β_0] per expert);
    ``resp`` when asked.

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> p = MoEParams.create([1., 0.], [[2.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> x = np.linspace(-1, 1, 40)[:, None]  # (n, d) = (40, 1)
    >>> y = 2 * np.abs(x[:, 0]) + 0.1 * np.random.default_rng(0).standard_normal(40)
    >>> st = estep_stats(p, x, y, return_resp=True)  # doctest: +SKIP
    >>> st["G"].shape, st["grad"].shape, st["info"].shape, st["resp"].shape  # doctest: +SKIP
    ((2, 2, 2), (1, 2), (2, 2), (40, 2))
    >>> bool(np.isclose(st["R"].sum(), 40.0))  # Σ_n Σ_i r_ni = n  # doctest: +SKIP
    True
    """
    x, y, w = _check(x, y, weights)
    beta0, beta1, a, b, var = _as_arrays(params)
    resp = np.empty((x.shape[0], beta0.shape[0]))
    ll, R, G, rxe, ree, q, grad, info, _ = estep_pass(
        x, y, w, beta0, beta1, a, b, var, resp, int(n_chunks), resp, False, bool(hard))
    out = {"loglik": float(ll), "R": R, "G": G, "rxe": rxe, "ree": ree, "q": float(q),
           "grad": grad, "info": info}
    if return_resp:
        out["resp"] = resp
    return out


def stats_in_y_form(params, stats) -> dict:
    """Convert residual-form statistics to Σ r x̃ y (``rxy``, (k, d+1)) and Σ r y² (``ryy``, (k,)).

    Parameters
    ----------
    params : MoEParams, the parameters ``stats`` were computed at (``a`` (k, d), ``b`` (k,))
    stats : dict from :func:`estep_stats` (``G`` (k, d+1, d+1), ``rxe`` (k, d+1), ``ree`` (k,))

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> p = MoEParams.create([1., 0.], [[2.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> x = np.linspace(-1, 1, 40)[:, None]  # (n, d) = (40, 1)
    >>> y = 2 * np.abs(x[:, 0]) + 0.1 * np.random.default_rng(0).standard_normal(40)
    >>> st = estep_stats(p, x, y, return_resp=True)  # doctest: +SKIP
    >>> ys = stats_in_y_form(p, st)  # doctest: +SKIP
    >>> xt = np.column_stack([x, np.ones(40)])  # x̃ = (x, 1), (n, d+1)
    >>> bool(np.allclose(ys["rxy"], np.einsum("ni,na,n->ia", st["resp"], xt, y)))  # doctest: +SKIP
    True
    """
    a = np.asarray(params.a, dtype=np.float64)
    b = np.asarray(params.b, dtype=np.float64)
    coef = np.concatenate([a, b[:, None]], axis=1)  # (k, d+1): slopes..., intercept
    G, rxe, ree = stats["G"], stats["rxe"], stats["ree"]
    gc = np.einsum("iuv,iv->iu", G, coef)
    rxy = rxe + gc
    ryy = ree + 2.0 * np.einsum("iu,iu->i", coef, rxe) + np.einsum("iu,iu->i", coef, gc)
    return {"rxy": rxy, "ryy": ryy}


def gate_stats(beta0, beta1, x, resp, weights=None, *, derivs: bool = True,
               n_chunks: int = 1) -> dict:
    """Softmax gate objective Σ r log g (``q``) and, with ``derivs``, its gradient ``grad`` and
    information ``info`` at (β_0, β_1), last expert pinned; ``weights`` default to Σ_i r_ni.

    Parameters
    ----------
    beta0 : array (k,); beta1 : array (k, d)
    x : array (n, d); resp : array (n, k); weights : array (n,), optional
    derivs : bool, also return ``grad`` (k−1, d+1) and ``info`` ((k−1)(d+1),)²
    n_chunks : int, blocked summation (see :func:`estep_stats`)

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> p = MoEParams.create([1., 0.], [[2.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> x = np.linspace(-1, 1, 40)[:, None]  # (n, d) = (40, 1)
    >>> y = 2 * np.abs(x[:, 0]) + 0.1 * np.random.default_rng(0).standard_normal(40)
    >>> resp = estep_stats(p, x, y, return_resp=True)["resp"]  # doctest: +SKIP
    >>> g = gate_stats(p.beta0, p.beta1, x, resp)  # doctest: +SKIP
    >>> sorted(g), g["grad"].shape, g["info"].shape  # doctest: +SKIP
    (['grad', 'info', 'q'], (1, 2), (2, 2))
    >>> list(gate_stats(p.beta0, p.beta1, x, resp, derivs=False))  # doctest: +SKIP
    ['q']
    """
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    resp = np.ascontiguousarray(np.asarray(resp, dtype=np.float64))
    w = resp.sum(axis=1) if weights is None else np.ascontiguousarray(np.asarray(weights, float))
    beta0 = np.ascontiguousarray(beta0, dtype=np.float64)
    beta1 = np.ascontiguousarray(beta1, dtype=np.float64)
    if not derivs:
        return {"q": float(gate_q(x, resp, beta0, beta1, int(n_chunks)))}
    q, grad, info = gate_qd(x, w, resp, beta0, beta1, int(n_chunks))
    return {"q": float(q), "grad": grad, "info": info}


def run_em_numba(params, x, y, *, tol: float = 1e-8, max_iter: int = 1000,
                 var_floor: float = 1e-10, weights=None, max_newton: int = 50,
                 newton_tol: float = 1e-12, n_chunks: int = 1, fuse_check: bool = True,
                 n_hard: int = 0) -> dict:
    """Softmax-gate EM with fused passes; the same algorithm as :func:`moetheory.em.run.run_em`.

    Parameters
    ----------
    params : MoEParams, the start (softmax gate)
    x : (n, d); y : (n,); weights : (n,), optional (0 drops a padded row)
    tol, max_iter, var_floor : as in ``run_em``
    max_newton, newton_tol : the gate's Newton loop, as the softmax gate options of ``run_em``
    n_chunks : blocked summation (see :func:`estep_stats`)
    fuse_check : with ``max_newton=1``, test the gate step inside the next E-step pass (same
        iterates, one data pass per iteration); False runs the plain two-pass iteration
    n_hard : the first ``n_hard`` iterations use hard (classification) E-steps, as ``run_em``

    Returns
    -------
    dict with ``params`` (MoEParams, NumPy, last gate pinned), ``loglik``, ``n_iter``,
    ``converged``, ``trace`` ((max_iter + 1,), NaN beyond the last visited iterate),
    ``floor_hit``, ``data_passes`` (passes over the data) and ``rejected_full_steps`` (gate
    Newton steps that needed halving, fused mode).

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> p = MoEParams.create([1., 0.], [[2.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> x = np.linspace(-1, 1, 40)[:, None]  # (n, d) = (40, 1)
    >>> y = 2 * np.abs(x[:, 0]) + 0.1 * np.random.default_rng(0).standard_normal(40)
    >>> out = run_em_numba(p, x, y, max_iter=50)  # doctest: +SKIP
    >>> out["params"].a.shape, out["trace"].shape, out["converged"]  # doctest: +SKIP
    ((2, 1), (51,), True)
    >>> from moetheory.kernels.reference import em_softmax
    >>> ref = em_softmax(p, x, y, max_iter=50)  # the same iterates, in plain NumPy
    >>> abs(out["loglik"] - ref["loglik"]) < 1e-8  # doctest: +SKIP
    True
    """
    from moetheory.params import MoEParams

    x, y, w = _check(x, y, weights)
    beta0, beta1, a, b, var = _as_arrays(params)
    trace = np.full(max_iter + 1, np.nan)
    counts = np.zeros(2, dtype=np.int64)
    res = em_loop(x, y, w, beta0, beta1, a, b, var, float(tol), int(max_iter), float(var_floor),
                  int(max_newton), float(newton_tol), int(n_chunks), trace, bool(fuse_check),
                  counts, int(n_hard))
    b0, b1, a_, b_, v_, ll, n_iter, conv, floor = res
    tau = np.asarray(getattr(params, "tau", 1.0), dtype=np.float64)
    return {"params": MoEParams(b0, b1, a_, b_, v_, tau), "loglik": float(ll),
            "n_iter": int(n_iter), "converged": bool(conv), "trace": trace,
            "floor_hit": bool(floor), "data_passes": int(counts[0]),
            "rejected_full_steps": int(counts[1])}
