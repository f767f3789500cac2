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
gate step is folded into the next E-step pass: one pass over the data per EM iteration, and no
(n, k) buffer at all, because the gate objective is linear in the logits and so follows from
the sufficient statistics (:func:`gate_objective_from_stats`).

Speed notes (measured in ``benchmarks/``): rows are processed in blocks of ``BLOCK`` laid out
expert-major in small stack-like buffers, so that every inner loop runs over the rows and
vectorises; the exps and logs go through :func:`_exp` and :func:`_log` (branch-free, ~1 ulp,
vectorisable; Numba's ``math.exp``/``math.log`` call libm one value at a time because this
llvmlite has no SVML), branches inside row loops are selects, the (n, k) responsibilities are
moved by small-k unrolled loops, and the statistics of d = 1 and d = 2 have fused one-loop
reductions. Only the reductions allow reassociation (in a fixed order: reproducible); the
kernels with exps/logs allow FMA contraction, the logits and log densities are evaluated without
it (plain left-to-right, so that large logits give the same exps' arguments).

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
_inner = njit(cache=True, fastmath={"contract"}, nogil=True, error_model="numpy")


@intrinsic
def _bits_to_f64(typingctx, v):
    """Reinterpret an int64 as a float64 (an LLVM bitcast; vectorisable)."""
    sig = types.float64(types.int64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.DoubleType())

    return sig, codegen


@intrinsic
def _f64_to_bits(typingctx, v):
    """Reinterpret a float64 as an int64 (an LLVM bitcast; vectorisable)."""
    sig = types.int64(types.float64)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(64))

    return sig, codegen


_LOG2E = 1.4426950408889634
_LN2_HI = 6.93147180369123816490e-01
_LN2_LO = 1.90821492927058770002e-10
#: 2^52 + 1023: adding an integer-valued double in [-1023, 2^52) to it puts that integer + 1023
#: in the low mantissa bits (exactly), so float(exponent) needs no int->double conversion
#: (AVX2 has none for 64-bit integers; LLVM would scalarise it).
_MAGIC = 4503599627371519.0
#: 1.5 * 2^52: t = v + _ROUND rounds v (|v| < 2^51) to an integer kept in t's low bits.
_ROUND = 6755399441055744.0


@njit(cache=True, inline="always", error_model="numpy")
def _exp_core(x, xc):
    """exp(xc) for xc in [−708, 709] (0 where x ≤ −708 or NaN): Cody–Waite reduction
    xc = k ln2 + r, |r| ≤ ln2/2 (k rounded by the 1.5·2^52 trick, which also leaves k in the
    low bits for building 2^k: no float<->int conversions), a degree-11 polynomial of exp(r)
    (Chebyshev fit, 1 + r + r²q(r); error < 2e-17 relative on |r| ≤ ln2/2)."""
    t = xc * _LOG2E + _ROUND
    kf = t - _ROUND
    r = (xc - kf * _LN2_HI) - kf * _LN2_LO
    q = 2.510038549551032e-08
    q = q * r + 2.7620088445409746e-07
    q = q * r + 2.7557268459997064e-06
    q = q * r + 2.4801521295954376e-05
    q = q * r + 0.00019841269863053618
    q = q * r + 0.0013888888917213717
    q = q * r + 0.008333333333330062
    q = q * r + 0.04166666666662413
    q = q * r + 0.16666666666666669
    q = q * r + 0.5000000000000001
    q = q * r + 1.0
    q = q * r + 1.0
    res = q * _bits_to_f64((_f64_to_bits(t) + 1023) << 52)
    return res if x > -708.0 else 0.0


@njit(cache=True, inline="always", error_model="numpy")
def _exp(x):
    """exp(x) to about 1 ulp, branch-free so that loops over it vectorise (Numba's math.exp
    calls libm one value at a time: no SVML in this build). See :func:`_exp_core`. Underflows
    to 0 at −708 and below (no subnormals); overflows to 2^1023·(…) ≈ exp(709) above 709."""
    return _exp_core(x, min(max(x, -708.0), 709.0))


@njit(cache=True, inline="always", error_model="numpy")
def _exp_neg(x):
    """:func:`_exp` for x ≤ 0 (arguments v − max v; one clamp less)."""
    return _exp_core(x, max(x, -708.0))


_LG1 = 6.666666666666735130e-01
_LG2 = 3.999999999940941908e-01
_LG3 = 2.857142874366239149e-01
_LG4 = 2.222219843214978396e-01
_LG5 = 1.818357216161805012e-01
_LG6 = 1.531383769920937332e-01
_LG7 = 1.479819860511658591e-01


@njit(cache=True, inline="always", error_model="numpy")
def _log_core(x, dk0):
    """log(x) + dk0·ln 2 for a positive normal x (fdlibm's e_log.c, branch-free: x = 2^k m,
    m in [√2/2, √2), log m from s = (m−1)/(m+1) and a degree-14 minimax polynomial in s;
    < 1 ulp). The exponent goes to a double through its bits (no int->double conversion)."""
    ix = _f64_to_bits(x) + 0x00095F6200000000  # (0x3ff00000 - 0x3fe6a09e) << 32
    dk = (_bits_to_f64((ix >> 52) | 0x4330000000000000) - _MAGIC) + dk0
    f = _bits_to_f64((ix & 0x000FFFFFFFFFFFFF) + 0x3FE6A09E00000000) - 1.0
    hfsq = 0.5 * f * f
    s = f / (2.0 + f)
    z = s * s
    w = z * z
    t1 = w * (_LG2 + w * (_LG4 + w * _LG6))
    t2 = z * (_LG1 + w * (_LG3 + w * (_LG5 + w * _LG7)))
    return s * (hfsq + (t2 + t1)) + dk * _LN2_LO - hfsq + f + dk * _LN2_HI


@njit(cache=True, inline="always", error_model="numpy")
def _log(x):
    """log(x) to < 1 ulp, branch-free so that loops over it vectorise (Numba's math.log calls
    libm one value at a time); see :func:`_log_core`. Subnormals, 0, negative, inf and NaN
    arguments give what math.log's IEEE results would (−inf for 0, NaN below 0)."""
    sub = x < 2.2250738585072014e-308
    res = _log_core(x * 18014398509481984.0, -54.0) if sub else _log_core(x, 0.0)  # 2^54
    res = res if x < np.inf else x
    return res if x > 0.0 else (-np.inf if x == 0.0 else np.nan)


@njit(cache=True, inline="always", error_model="numpy")
def _log_norm(x):
    """:func:`_log` for x ≥ 2^−1022 (or +inf, NaN): the normalisers Σ_i exp(v_i − max v) ≥ 1."""
    res = _log_core(x, 0.0)
    return res if x < np.inf else x


_acc = njit(cache=True, nogil=True, error_model="numpy", fastmath={"reassoc", "contract", "nsz"})
BLOCK = 256
#: Rows whose normalisers (each in [1, k]) share one log: their product is finite for k < 10^19.
LOG_GROUP = 16


@_acc
def _block_sum(nb, v):
    """Σ_j v[j] over one block (reassociated: vectorised; fixed order, reproducible)."""
    s = 0.0
    for j in range(nb):
        s += v[j]
    return s


@njit(cache=True, inline="always", error_model="numpy")
def _expert_terms(r, e, x0):
    """One row's terms of an expert's d = 1 sums: r, r e², r x e, r e, r x², r x."""
    rx = r * x0
    re = r * e
    return r, re * e, rx * e, re, rx * x0, rx


@njit(cache=True, inline="always", error_model="numpy")
def _gate_terms(r, g, iw, x0):
    """One row's terms of a gate expert's d = 1 gradient (r − g)(x, 1) and information diagonal
    t (x², x, 1) with t = g (1 − g / w) (g = w p, iw = 1 / w)."""
    dg = r - g
    t = g * (1.0 - iw * g)
    tx = t * x0
    return dg * x0, dg, tx * x0, tx, t


@_acc
def _accumulate_block_p2(nb, rb, gb, eb, xb, R, G, rxe, ree, grad, info, experts):
    """:func:`_accumulate_block` for d = 1 (x̃ = [x, 1]): one loop per expert for all of its
    sums, with the constant column's products (x̃_1 = 1) taken as the sums they equal."""
    k = rb.shape[0]
    km1 = k - 1
    for i in range(k):
        gx = 0.0
        g1 = 0.0
        ixx = 0.0
        ix = 0.0
        i1 = 0.0
        if not experts:
            if i < km1:
                for j in range(nb):
                    a0, a1, a2, a3, a4 = _gate_terms(rb[i, j], gb[i, j], gb[k, j], xb[0, j])
                    gx += a0
                    g1 += a1
                    ixx += a2
                    ix += a3
                    i1 += a4
        else:
            sr = 0.0
            see = 0.0
            sxe = 0.0
            se = 0.0
            sxx = 0.0
            sx = 0.0
            gate = i < km1
            # one loop for the expert's sums and, but for the pinned expert, its gate sums (a
            # select on a loop-invariant flag: LLVM unswitches it, the loop stays fused)
            for j in range(nb):
                r = rb[i, j]
                x0 = xb[0, j]
                e0, e1, e2, e3, e4, e5 = _expert_terms(r, eb[i, j], x0)
                sr += e0
                see += e1
                sxe += e2
                se += e3
                sxx += e4
                sx += e5
                if gate:
                    a0, a1, a2, a3, a4 = _gate_terms(r, gb[i, j], gb[k, j], x0)
                    gx += a0
                    g1 += a1
                    ixx += a2
                    ix += a3
                    i1 += a4
            R[i] += sr
            ree[i] += see
            rxe[i, 0] += sxe
            rxe[i, 1] += se
            G[i, 0, 0] += sxx
            G[i, 0, 1] += sx
            G[i, 1, 1] += sr
        if i < km1:
            grad[i, 0] += gx
            grad[i, 1] += g1
            q = 2 * i
            info[q, q] += ixx
            info[q, q + 1] += ix
            info[q + 1, q + 1] += i1
    for i in range(km1):
        for jj in range(i + 1, km1):
            oxx = 0.0
            ox = 0.0
            o1 = 0.0
            for j in range(nb):
                t = gb[i, j] * gb[k, j] * gb[jj, j]
                x0 = xb[0, j]
                tx = t * x0
                oxx -= tx * x0
                ox -= tx
                o1 -= t
            q = 2 * i
            c = 2 * jj
            info[q, c] += oxx
            info[q, c + 1] += ox
            info[q + 1, c] += ox
            info[q + 1, c + 1] += o1


@_acc
def _accumulate_block_p3(nb, rb, gb, eb, xb, R, G, rxe, ree, grad, info, experts):
    """:func:`_accumulate_block` for d = 2 (x̃ = [x_0, x_1, 1]): per expert one loop for its
    sums and one for its gate sums, the constant column's products taken as the sums they
    equal."""
    k = rb.shape[0]
    km1 = k - 1
    for i in range(k if experts else 0):
        sr = 0.0
        see = 0.0
        s0e = 0.0
        s1e = 0.0
        se = 0.0
        s00 = 0.0
        s01 = 0.0
        s0 = 0.0
        s11 = 0.0
        s1 = 0.0
        for j in range(nb):
            r = rb[i, j]
            e = eb[i, j]
            x0 = xb[0, j]
            x1 = xb[1, j]
            r0 = r * x0
            r1 = r * x1
            re = r * e
            sr += r
            see += re * e
            s0e += r0 * e
            s1e += r1 * e
            se += re
            s00 += r0 * x0
            s01 += r0 * x1
            s0 += r0
            s11 += r1 * x1
            s1 += r1
        R[i] += sr
        ree[i] += see
        rxe[i, 0] += s0e
        rxe[i, 1] += s1e
        rxe[i, 2] += se
        G[i, 0, 0] += s00
        G[i, 0, 1] += s01
        G[i, 0, 2] += s0
        G[i, 1, 1] += s11
        G[i, 1, 2] += s1
        G[i, 2, 2] += sr
    for i in range(km1):
        g0 = 0.0
        g1 = 0.0
        g2 = 0.0
        i00 = 0.0
        i01 = 0.0
        i02 = 0.0
        i11 = 0.0
        i12 = 0.0
        i22 = 0.0
        for j in range(nb):
            x0 = xb[0, j]
            x1 = xb[1, j]
            g = gb[i, j]
            dg = rb[i, j] - g
            g0 += dg * x0
            g1 += dg * x1
            g2 += dg
            t = g * (1.0 - gb[k, j] * g)
            t0 = t * x0
            t1 = t * x1
            i00 += t0 * x0
            i01 += t0 * x1
            i02 += t0
            i11 += t1 * x1
            i12 += t1
            i22 += t
        grad[i, 0] += g0
        grad[i, 1] += g1
        grad[i, 2] += g2
        q = 3 * i
        info[q, q] += i00
        info[q, q + 1] += i01
        info[q, q + 2] += i02
        info[q + 1, q + 1] += i11
        info[q + 1, q + 2] += i12
        info[q + 2, q + 2] += i22
        for jj in range(i + 1, km1):
            o00 = 0.0
            o01 = 0.0
            o02 = 0.0
            o11 = 0.0
            o12 = 0.0
            o22 = 0.0
            for j in range(nb):
                t = gb[i, j] * gb[k, j] * gb[jj, j]
                x0 = xb[0, j]
                x1 = xb[1, j]
                t0 = t * x0
                t1 = t * x1
                o00 -= t0 * x0
                o01 -= t0 * x1
                o02 -= t0
                o11 -= t1 * x1
                o12 -= t1
                o22 -= t
            c = 3 * jj
            info[q, c] += o00
            info[q, c + 1] += o01
            info[q, c + 2] += o02
            info[q + 1, c] += o01
            info[q + 1, c + 1] += o11
            info[q + 1, c + 2] += o12
            info[q + 2, c] += o02
            info[q + 2, c + 1] += o12
            info[q + 2, c + 2] += o22


@_acc
def _accumulate_block(nb, rb, gb, eb, xb, R, G, rxe, ree, grad, info, experts=True):
    """Add one block's statistics. rb (k, B): w·r; gb (k+1, B): w·g_i and, in row k, 1/w;
    eb (k, B): residuals; xb (d+1, B): x̃. Reassociation is allowed here (and only here) so
    that the reductions vectorise; the order is fixed, so results are reproducible. Only the
    upper triangles of G_i and of the information are computed (the callers mirror them)."""
    k = rb.shape[0]
    p = xb.shape[0]
    if p == 2:
        _accumulate_block_p2(nb, rb, gb, eb, xb, R, G, rxe, ree, grad, info, experts)
        return
    if p == 3:
        _accumulate_block_p3(nb, rb, gb, eb, xb, R, G, rxe, ree, grad, info, experts)
        return
    km1 = k - 1
    for i in range(k if experts else 0):
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
                for v in range(u if jj == i else 0, p):
                    s = 0.0
                    if jj == i:
                        for j in range(nb):
                            s += gb[i, j] * (1.0 - gb[k, j] * gb[i, j]) * xb[u, j] * xb[v, j]
                    else:
                        for j in range(nb):
                            s -= gb[i, j] * gb[k, j] * gb[jj, j] * xb[u, j] * xb[v, j]
                    info[i * p + u, jj * p + v] += s


@_inner
def _store_block(out, blk, nb):
    """out[j, i] = blk[i, j] for j < nb (a (k, B) block into rows of an (n, k) array); unrolled
    for small k: a loop over k inside the loop over rows costs more than the stores."""
    k = blk.shape[0]
    if k == 2:
        for j in range(nb):
            out[j, 0] = blk[0, j]
            out[j, 1] = blk[1, j]
    elif k == 3:
        for j in range(nb):
            out[j, 0] = blk[0, j]
            out[j, 1] = blk[1, j]
            out[j, 2] = blk[2, j]
    elif k == 4:
        for j in range(nb):
            out[j, 0] = blk[0, j]
            out[j, 1] = blk[1, j]
            out[j, 2] = blk[2, j]
            out[j, 3] = blk[3, j]
    else:
        for i in range(k):
            for j in range(nb):
                out[j, i] = blk[i, j]


@_inner
def _load_block(blk, src, nb):
    """blk[i, j] = src[j, i] for j < nb (rows of an (n, k) array into a (k, B) block)."""
    k = blk.shape[0]
    if k == 2:
        for j in range(nb):
            blk[0, j] = src[j, 0]
            blk[1, j] = src[j, 1]
    elif k == 3:
        for j in range(nb):
            blk[0, j] = src[j, 0]
            blk[1, j] = src[j, 1]
            blk[2, j] = src[j, 2]
    elif k == 4:
        for j in range(nb):
            blk[0, j] = src[j, 0]
            blk[1, j] = src[j, 1]
            blk[2, j] = src[j, 2]
            blk[3, j] = src[j, 3]
    else:
        for i in range(k):
            for j in range(nb):
                blk[i, j] = src[j, i]


@_jit
def _linear_block(start, nb, y, beta0, beta1, a, b, cst, ivar, xb, H, eb, L, hm, jm):
    """Logits H, residuals eb and log joint densities L (k, nb) of rows start.. (x̃ in xb) and
    their maxima over the experts, hm and jm; every loop runs over the rows (vectorised).
    Compiled without FMA contraction: with large logits an FMA would change the exps'
    arguments (and so the results) by more than a few ulps relative to a plain evaluation."""
    d = xb.shape[0] - 1
    k = beta0.shape[0]
    for j in range(nb):
        hm[j] = -np.inf
        jm[j] = -np.inf
    if d == 1:
        for i in range(k):
            b0 = beta0[i]
            bc = beta1[i, 0]
            bi = b[i]
            ac = a[i, 0]
            ci = cst[i]
            vi = ivar[i]
            for j in range(nb):
                xv = xb[0, j]
                h = b0 + bc * xv
                e = y[start + j] - (bi + ac * xv)
                lj = h + ci - e * e * vi
                H[i, j] = h
                eb[i, j] = e
                L[i, j] = lj
                hm[j] = max(hm[j], h)
                jm[j] = max(jm[j], lj)
        return
    for i in range(k):
        b0 = beta0[i]
        bi = b[i]
        for j in range(nb):
            H[i, j] = b0
            eb[i, j] = bi
        for c in range(d):
            bc = beta1[i, c]
            ac = a[i, c]
            for j in range(nb):
                H[i, j] += bc * xb[c, j]
                eb[i, j] += ac * xb[c, j]
        ci = cst[i]
        vi = ivar[i]
        for j in range(nb):
            e = y[start + j] - eb[i, j]
            lj = H[i, j] + ci - e * e * vi
            eb[i, j] = e
            L[i, j] = lj
            hm[j] = max(hm[j], H[i, j])
            jm[j] = max(jm[j], lj)


@_inner
def _estep_rows(lo, hi, x, y, w, beta0, beta1, a, b, var, resp, hard, acc, R, G, rxe, ree, grad,
                info, store, unit_w):
    """Rows lo..hi-1 of the fused E-step; adds into the accumulators
    (acc = [ℓ, Q, Σ_n w_n log Σ_i exp h_ni]).

    Rows go in blocks of ``BLOCK``, laid out expert-major in small (k, BLOCK) buffers
    (L1-resident; no (n, k) temporary): logits, log joint densities and their maxima first
    (:func:`_linear_block`), then the exps as plain loops that LLVM vectorises
    (:func:`_exp_neg`), then the logs of the normalisers (:func:`_log_norm`, vectorised):
    with ``unit_w`` (every weight 0 or 1) one log per ``LOG_GROUP`` rows, of the product of
    their normalisers (each in [1, k], so the product stays finite), else one per row times
    its weight; per-row sums (w ℓ_n without the logs, Σ_i r (h_i − max h)) go to block buffers
    whose sums are added in a fixed order; :func:`_accumulate_block` adds the block's
    sufficient statistics. One division per row: both normalisers' reciprocals come from
    w / (s_joint · s_gate).

    With ``hard``, the responsibilities used for
    the statistics, Q and ``resp`` are the classification-EM ones (one-hot of the most probable
    expert, first on ties, times w); the log-likelihood is the observed one as always. Without
    ``store``, ``resp`` is not written (the buffer-free fused check of :func:`em_loop`).
    """
    d = x.shape[1]
    k = beta0.shape[0]
    p = d + 1
    H = np.empty((k, BLOCK))
    L = np.empty((k, BLOCK))  # log joint densities
    rb = np.zeros((k, BLOCK))
    gb = np.zeros((k + 1, BLOCK))  # w g_i for i < k; row k: 1 / w (for the information)
    eb = np.zeros((k, BLOCK))
    xb = np.ones((p, BLOCK))
    hm = np.empty(BLOCK)
    jm = np.empty(BLOCK)
    sh = np.empty(BLOCK)
    sj = np.empty(BLOCK)
    lb = np.zeros(BLOCK)  # per row: w_n (max_i l_ni − max_i h_ni), ℓ_n without the logs
    qb = np.zeros(BLOCK)  # per row: Σ_i r_ni (h_ni − max_i h_ni)
    zb = np.zeros(BLOCK)  # per row: w_n · max_i h_ni
    pj = np.ones(BLOCK)  # per row: the joint normaliser (1 on a dropped row), or w · its log
    ph = np.ones(BLOCK)  # the same for the gate's normaliser
    gp = np.empty((2, LOG_GROUP))  # products of the normalisers over row groups
    cst = np.empty(k)
    ivar = np.empty(k)
    for i in range(k):
        cst[i] = -0.5 * (LOG_2PI + math.log(var[i]))
        ivar[i] = 0.5 / var[i]
    ll = 0.0
    qq = 0.0
    wz = 0.0
    for start in range(lo, hi, BLOCK):
        nb = min(hi, start + BLOCK) - start
        for c in range(d):
            for j in range(nb):
                xb[c, j] = x[start + j, c]
        _linear_block(start, nb, y, beta0, beta1, a, b, cst, ivar, xb, H, eb, L, hm, jm)
        for j in range(nb):
            sh[j] = 0.0
            sj[j] = 0.0
        for i in range(k):
            for j in range(nb):
                g = _exp_neg(H[i, j] - hm[j])
                gb[i, j] = g
                sh[j] += g
                r = _exp_neg(L[i, j] - jm[j])
                rb[i, j] = r
                sj[j] += r
        for j in range(nb):
            wn = w[start + j]
            nz = wn != 0.0
            s_j = sj[j]
            s_h = sh[j]
            t = wn * (jm[j] - hm[j])
            lb[j] = t if nz else 0.0  # a dropped row adds exactly 0, even where ℓ_n is not finite
            zb[j] = wn * hm[j] if nz else 0.0
            inv = wn / (s_j * s_h)
            sj[j] = inv * s_h  # w / Σ_i exp(l_i − max l)
            sh[j] = inv * s_j  # w / Σ_i exp(h_i − max h)
            pj[j] = s_j if nz else 1.0
            ph[j] = s_h if nz else 1.0
        if unit_w:
            for j in range(nb):
                gb[k, j] = w[start + j]  # 1 / w, with 0 for a dropped row
            for j in range(nb, BLOCK):
                pj[j] = 1.0
                ph[j] = 1.0
            for u in range(LOG_GROUP):
                gp[0, u] = pj[u]
                gp[1, u] = ph[u]
            for g0 in range(LOG_GROUP, nb, LOG_GROUP):
                for u in range(LOG_GROUP):
                    gp[0, u] *= pj[g0 + u]
                    gp[1, u] *= ph[g0 + u]
            for u in range(LOG_GROUP):
                gp[0, u] = _log_norm(gp[0, u])
                gp[1, u] = _log_norm(gp[1, u])
            # in order (not _block_sum): with the length a compile-time constant, LLVM may
            # reassociate a reduction differently when it inlines it, so a freshly compiled and
            # a cache-loaded kernel could differ in the last bit
            lgj = 0.0
            lgh = 0.0
            for u in range(LOG_GROUP):
                lgj += gp[0, u]
                lgh += gp[1, u]
        else:
            for j in range(nb):
                wn = w[start + j]
                nz = wn != 0.0
                gb[k, j] = 1.0 / wn if nz else 0.0
                t = wn * _log_norm(pj[j])
                pj[j] = t if nz else 0.0
                t = wn * _log_norm(ph[j])
                ph[j] = t if nz else 0.0
            lgj = _block_sum(nb, pj)
            lgh = _block_sum(nb, ph)
        for j in range(nb):
            qb[j] = 0.0
        # Q = Σ r (h − max h) − Σ w log Σ exp(h − max h) (Σ_i r_ni = w_n)
        if hard:
            for i in range(k):
                for j in range(nb):
                    rb[i, j] *= sj[j]
                    gb[i, j] *= sh[j]
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
                    t = ri * (H[i, j] - hm[j])
                    qb[j] += t if ri > 0.0 else 0.0
        elif store:
            for i in range(k):
                for j in range(nb):
                    ri = rb[i, j] * sj[j]
                    rb[i, j] = ri
                    gb[i, j] *= sh[j]
                    t = ri * (H[i, j] - hm[j])
                    qb[j] += t if ri > 0.0 else 0.0
        else:  # the buffer-free fused check computes Q from statistics (Q is reported as 0)
            for i in range(k):
                for j in range(nb):
                    rb[i, j] *= sj[j]
                    gb[i, j] *= sh[j]
        if store:
            _store_block(resp[start:start + nb], rb, nb)
        ll += _block_sum(nb, lb) + (lgj - lgh)
        if store or hard:
            qq += _block_sum(nb, qb) - lgh
        wz += _block_sum(nb, zb) + lgh
        _accumulate_block(nb, rb, gb, eb, xb, R, G, rxe, ree, grad, info, True)
    acc[0] += ll
    acc[1] += qq
    acc[2] += wz


@_jit
def _gate_logits(start, nb, x, beta0, beta1, H):
    """Logits H (k, nb) of rows start.. (no FMA contraction, as :func:`_linear_block`)."""
    d = x.shape[1]
    k = beta0.shape[0]
    for i in range(k):
        b0 = beta0[i]
        for j in range(nb):
            H[i, j] = b0
        for c in range(d):
            bc = beta1[i, c]
            for j in range(nb):
                H[i, j] += bc * x[start + j, c]


@_inner
def _gate_block(start, nb, x, beta0, beta1, H, hm, gb, sh):
    """Logits H (k, nb) of rows start.., their max hm, g_i = exp(h_i − hm) in gb (k rows) and
    Σ_i g_i in sh (vectorised)."""
    k = beta0.shape[0]
    _gate_logits(start, nb, x, beta0, beta1, H)
    for j in range(nb):
        hm[j] = H[0, j]
        sh[j] = 0.0
    for i in range(1, k):
        for j in range(nb):
            hm[j] = max(hm[j], H[i, j])
    for i in range(k):
        for j in range(nb):
            g = _exp_neg(H[i, j] - hm[j])
            gb[i, j] = g
            sh[j] += g


@_inner
def _gate_q_rows(lo, hi, x, resp, beta0, beta1, acc):
    """Rows lo..hi-1 of the gate objective Σ r log g (acc[0])."""
    k = beta0.shape[0]
    H = np.empty((k, BLOCK))
    gb = np.empty((k, BLOCK))
    rb = np.empty((k, BLOCK))
    hm = np.empty(BLOCK)
    sh = np.empty(BLOCK)
    qb = np.empty(BLOCK)
    qq = 0.0
    for start in range(lo, hi, BLOCK):
        nb = min(hi, start + BLOCK) - start
        _gate_block(start, nb, x, beta0, beta1, H, hm, gb, sh)
        for j in range(nb):
            hm[j] += _log_norm(sh[j])
            qb[j] = 0.0
        _load_block(rb, resp[start:start + nb], nb)
        for i in range(k):
            for j in range(nb):
                ri = rb[i, j]
                t = ri * (H[i, j] - hm[j])
                qb[j] += t if ri > 0.0 else 0.0
        qq += _block_sum(nb, qb)
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
    qb = np.empty(BLOCK)
    rb = np.zeros((k, BLOCK))
    gb = np.zeros((k + 1, BLOCK))
    xb = np.ones((p, BLOCK))
    Rd = np.zeros(k)  # the expert statistics are not computed (experts=False): dummies
    Gd = np.zeros((k, p, p))
    rxed = np.zeros((k, p))
    qq = 0.0
    for start in range(lo, hi, BLOCK):
        nb = min(hi, start + BLOCK) - start
        _gate_block(start, nb, x, beta0, beta1, H, hm, gb, sh)
        for c in range(d):
            for j in range(nb):
                xb[c, j] = x[start + j, c]
        for j in range(nb):
            wn = w[start + j]
            nz = wn != 0.0
            iw = 1.0 / (wn if nz else 1.0)
            gb[k, j] = iw if nz else 0.0
            hm[j] += _log_norm(sh[j])
            sh[j] = wn / sh[j]
            qb[j] = 0.0
        _load_block(rb, resp[start:start + nb], nb)
        for i in range(k):
            for j in range(nb):
                gb[i, j] *= sh[j]
                ri = rb[i, j]
                t = ri * (H[i, j] - hm[j])
                qb[j] += t if ri > 0.0 else 0.0
        qq += _block_sum(nb, qb)
        _accumulate_block(nb, rb, gb, rb, xb, Rd, Gd, rxed, Rd, grad, info, False)
    acc[0] += qq


@_jit
def _symmetrise(info):
    m = info.shape[0]
    for u in range(m):
        for v in range(u):
            info[u, v] = info[v, u]


@njit(cache=True, inline="always")
def _chunk(n, n_chunks, c):
    """Rows [lo, hi) of chunk c when n rows are cut into n_chunks blocks (blocked summation)."""
    size = (n + n_chunks - 1) // n_chunks
    lo = min(n, c * size)
    return lo, min(n, lo + size)


@_jit
def _unit_weights(w):
    """Whether every weight is 0 or 1 (the normalisers' logs can then be taken per row group)."""
    for v in w:
        if v != 0.0 and v != 1.0:
            return False
    return True


@_jit
def estep_pass(x, y, w, beta0, beta1, a, b, var, resp, n_chunks, hard=False, store=True,
               unit_w=False):
    """Fused E-step over all rows in ``n_chunks`` blocks; writes ``resp`` (n, k) if ``store``.

    Returns (ℓ, R, G, rxe, ree, Q, grad, info, Z); Q = Σ r log g (0 without ``store``,
    where :func:`em_loop` evaluates Q from the statistics); Z = Σ_n w_n log Σ_i exp(h_ni), the gate's
    log-normaliser summed with the observation weights (:func:`gate_objective_from_stats`)."""
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
    for c in range(n_chunks):
        lo, hi = _chunk(n, n_chunks, c)
        _estep_rows(lo, hi, x, y, w, beta0, beta1, a, b, var, resp, hard, acc_c[c], R_c[c],
                    G_c[c], rxe_c[c], ree_c[c], grad_c[c], info_c[c], store, unit_w)
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
def gate_objective_from_stats(beta0, beta1, R, G, Z):
    """Q(β) = Σ_n Σ_i r_ni log g_i(x_n; β) from sufficient statistics: the logits are linear
    in x̃ = [x, 1], so Q(β) = Σ_i (β_0i Σ_n r_ni + β_1iᵀ Σ_n r_ni x_n) − Σ_n w_n lse_n(β), with
    Σ_n r_ni = R_i, Σ_n r_ni x_n = G_i[:d, d] (the statistics of :func:`estep_pass`) and
    Z = Σ_n w_n lse_n(β) (Σ_i r_ni = w_n). The fused step check of :func:`em_loop` needs no
    (n, k) responsibilities this way."""
    k, d = beta1.shape
    lin = 0.0
    for i in range(k):
        lin += beta0[i] * R[i]
        for c in range(d):
            lin += beta1[i, c] * G[i, c, d]
    return lin - Z


@_inner
def _gate_lse_rows(lo, hi, x, w, beta0, beta1, acc):
    """Rows lo..hi-1 of Σ_n w_n log Σ_i exp h_ni (acc[0])."""
    k = beta0.shape[0]
    H = np.empty((k, BLOCK))
    gb = np.empty((k, BLOCK))
    hm = np.empty(BLOCK)
    sh = np.empty(BLOCK)
    zb = np.empty(BLOCK)
    wz = 0.0
    for start in range(lo, hi, BLOCK):
        nb = min(hi, start + BLOCK) - start
        _gate_block(start, nb, x, beta0, beta1, H, hm, gb, sh)
        for j in range(nb):
            wn = w[start + j]
            t = wn * (hm[j] + _log_norm(sh[j]))
            zb[j] = t if wn != 0.0 else 0.0
        wz += _block_sum(nb, zb)
    acc[0] += wz


@_jit
def gate_lse(x, w, beta0, beta1, n_chunks):
    """Σ_n w_n log Σ_i exp(β_0i + β_1iᵀ x_n): the Z of :func:`gate_objective_from_stats`."""
    n = x.shape[0]
    acc_c = np.zeros((n_chunks, 1))
    for c in range(n_chunks):
        lo, hi = _chunk(n, n_chunks, c)
        _gate_lse_rows(lo, hi, x, w, beta0, beta1, acc_c[c])
    return acc_c.sum()


@_jit
def gate_q(x, resp, beta0, beta1, n_chunks):
    """Softmax gate objective Q = Σ_n Σ_i r_ni log g_i(x_n) at (β_0, β_1)."""
    n = x.shape[0]
    acc_c = np.zeros((n_chunks, 1))
    for c in range(n_chunks):
        lo, hi = _chunk(n, n_chunks, c)
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
    for c in range(n_chunks):
        lo, hi = _chunk(n, n_chunks, c)
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
def lloyd(z, centres, max_iter):
    """Lloyd's k-means on the rows of z (n, p) from ``centres`` (k, p) (updated in place): at most
    ``max_iter`` centre updates, stopping at a fixed point; returns the labels (n,) of the last
    centres. The arithmetic of :func:`moetheory.em.init_numpy.kmeans_labels` (squared distances
    summed over the columns in order, the first centre on ties, sums in row order), so the same
    labels."""
    n, p = z.shape
    k = centres.shape[0]
    lab = np.zeros(n, dtype=np.int64)
    _nearest_centre(z, centres, lab)
    sums = np.zeros((k, p))
    cnt = np.zeros(k)
    for _ in range(max_iter):
        sums[:] = 0.0
        cnt[:] = 0.0
        for i in range(n):
            c = lab[i]
            cnt[c] += 1.0
            for j in range(p):
                sums[c, j] += z[i, j]
        for c in range(k):
            if cnt[c] > 0.0:
                for j in range(p):
                    centres[c, j] = sums[c, j] / cnt[c]
        if not _nearest_centre(z, centres, lab):
            break
    return lab


@_jit
def _nearest_centre(z, centres, lab):
    """Assign each row of z its nearest centre in ``lab`` (in place); True when a label changed."""
    n, p = z.shape
    changed = False
    for i in range(n):
        best = 0
        best_d = np.inf
        for c in range(centres.shape[0]):
            dist = (z[i, 0] - centres[c, 0]) ** 2
            for j in range(1, p):
                dist += (z[i, j] - centres[c, j]) ** 2
            if c == 0 or dist < best_d:
                best = c
                best_d = dist
        if lab[i] != best:
            lab[i] = best
            changed = True
    return changed


@_jit
def gate_newton(x, w, resp, beta0, beta1, q, grad, info, max_newton, newton_tol, n_chunks, stats):
    """Up to ``max_newton`` Newton steps with step halving on the softmax gate objective Q of the
    responsibilities ``resp`` (n, k), from (β_0, β_1) whose Q, gradient and information
    (:func:`gate_qd`) are given; the last expert stays pinned. Returns the new (β_0, β_1)
    (the inputs when no step is accepted); ``stats[0]`` counts the passes over the data. The
    gate step of :func:`em_loop` and of the data-driven starts
    (:func:`moetheory.em.init_numpy.params_from_resp`)."""
    d = x.shape[1]
    p = d + 1
    m = (beta0.shape[0] - 1) * p
    eye_m = np.eye(m)
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
    return beta0, beta1


@_jit
def em_loop(x, y, w, beta0, beta1, a, b, var, tol_rel, tol_abs, max_iter, var_floor, max_newton,
            newton_tol, n_chunks, trace, fuse_check, stats, n_hard):
    """The EM loop of :func:`run_em_numba` (see there).

    With ``max_newton == 1`` the step-halving test of the gate's Newton step (does
    Q(θ_old + step) ≥ Q(θ_old) under the responsibilities that defined the step?) is evaluated
    inside the *next* E-step pass, which needs the gate weights at θ_old + step anyway; only
    when the full step fails is the halving continued (α = 1/2, 1/4, ... on separate gate
    passes) and the E-step redone. Q is evaluated from sufficient statistics
    (:func:`gate_objective_from_stats`: the statistics of the pass that defined the step and the
    new pass's Σ w lse), so no (n, k) responsibilities are stored or read back. The accepted
    iterates, and so the trace, are those of the unfused algorithm (whose Q is summed row by
    row: the two can differ only where Q's change is at rounding level): one pass over the data
    per EM iteration instead of two. ``stats`` (int64 (2,)) counts data passes and rejected
    full steps.
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
    fused = fuse_check and max_newton == 1 and k > 1
    rows = 1 if fused else n  # the fused check keeps statistics, not responsibilities
    resp = np.empty((rows, k))
    unit_w = _unit_weights(w)
    prev = -np.inf
    n_iter = max_iter
    converged = False
    floor_any = False
    ll = -np.inf
    eye_p = np.eye(p)
    eye_m = np.eye(max(m, 1))
    pending = False  # a full Newton step of the gate awaits its step-halving test
    ob0 = beta0.copy()  # the gate before the pending step, the step and its Q
    ob1 = beta1.copy()
    pstep = np.zeros(max(m, 1))
    pq = 0.0
    pR = np.zeros(k)  # the statistics of the responsibilities that defined the pending step
    pG = np.zeros((k, p, p))
    for it in range(max_iter + 1):
        hard = it < n_hard
        ll, R, G, rxe, ree, q, grad, info, Z = estep_pass(
            x, y, w, beta0, beta1, a, b, var, resp, n_chunks, hard, not fused, unit_w)
        stats[0] += 1
        qprev = gate_objective_from_stats(beta0, beta1, pR, pG, Z) if pending else 0.0
        if pending and not (np.isfinite(qprev) and qprev >= pq):
            stats[1] += 1
            # The full step decreased the gate objective: continue the halving on the
            # previous responsibilities, then redo the E-step at the accepted gate.
            alpha = 0.5
            ok = False
            for _h in range(39):
                _set_gate(beta0, beta1, ob0, ob1, pstep, alpha, d, p)
                qc = gate_objective_from_stats(beta0, beta1, pR, pG,
                                               gate_lse(x, w, beta0, beta1, n_chunks))
                stats[0] += 1
                if np.isfinite(qc) and qc >= pq:
                    ok = True
                    break
                alpha *= 0.5
            if not ok:
                beta0[:] = ob0
                beta1[:] = ob1
            ll, R, G, rxe, ree, q, grad, info, Z = estep_pass(
                x, y, w, beta0, beta1, a, b, var, resp, n_chunks, hard, not fused, unit_w)
            stats[0] += 1
        pending = False
        trace[it] = ll
        if it > n_hard and abs(ll - prev) <= max(tol_rel * abs(prev), tol_abs):
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
            pR[:] = R
            pG[:] = G
            # Q at the step's origin in the same (statistics) form as the test's Q
            pq = gate_objective_from_stats(beta0, beta1, pR, pG, Z)
            _set_gate(beta0, beta1, ob0, ob1, pstep, 1.0, d, p)
            pending = True
        elif k > 1:
            beta0, beta1 = gate_newton(x, w, resp, beta0, beta1, q, grad, info, max_newton,
                                       newton_tol, n_chunks, stats)
    if not converged:
        ll_f, R, G, rxe, ree, q, grad, info, Z = estep_pass(
            x, y, w, beta0, beta1, a, b, var, resp, n_chunks, False, not fused, unit_w)
        trace[max_iter] = ll_f
        converged = max_iter > 0 and abs(ll_f - prev) <= max(tol_rel * abs(prev), tol_abs)
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
        x, y, w, beta0, beta1, a, b, var, resp, int(n_chunks), bool(hard), True,
        _unit_weights(w))
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


def run_em_numba(params, x, y, *, tol_rel: float = 0.0, tol_abs: float = 0.0, max_iter: int = 1000,
                 var_floor: float = 1e-10, weights=None, max_newton: int = 50,
                 newton_tol: float = 1e-12, n_chunks: int = 1, fuse_check: bool = True,
                 n_hard: int = 0) -> dict:
    """Softmax-gate EM with fused passes; the same algorithm as :func:`moetheory.em.run.run_em`.

    Parameters
    ----------
    params : MoEParams, the start (softmax gate)
    x : (n, d); y : (n,); weights : (n,), optional (0 drops a padded row)
    tol_rel, tol_abs, max_iter, var_floor : as in ``run_em``
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
    >>> out = run_em_numba(p, x, y, tol_abs=4e-7, max_iter=50)  # doctest: +SKIP
    >>> out["params"].a.shape, out["trace"].shape, out["converged"]  # doctest: +SKIP
    ((2, 1), (51,), True)
    >>> from moetheory.kernels.reference import em_softmax
    >>> ref = em_softmax(p, x, y, tol_abs=4e-7, max_iter=50)  # the same iterates, in NumPy
    >>> abs(out["loglik"] - ref["loglik"]) < 1e-8  # doctest: +SKIP
    True
    """
    from moetheory.params import MoEParams

    x, y, w = _check(x, y, weights)
    beta0, beta1, a, b, var = _as_arrays(params)
    trace = np.full(max_iter + 1, np.nan)
    counts = np.zeros(2, dtype=np.int64)
    res = em_loop(x, y, w, beta0, beta1, a, b, var, float(tol_rel), float(tol_abs), int(max_iter),
                  float(var_floor), int(max_newton), float(newton_tol), int(n_chunks), trace, bool(fuse_check),
                  counts, int(n_hard))
    b0, b1, a_, b_, v_, ll, n_iter, conv, floor = res
    tau = np.asarray(getattr(params, "tau", 1.0), dtype=np.float64)
    return {"params": MoEParams(b0, b1, a_, b_, v_, tau), "loglik": float(ll),
            "n_iter": int(n_iter), "converged": bool(conv), "trace": trace,
            "floor_hit": bool(floor), "data_passes": int(counts[0]),
            "rejected_full_steps": int(counts[1])}
