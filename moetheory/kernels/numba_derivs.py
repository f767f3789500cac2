"""Exact gradient and Hessian of the softmax-gated Gaussian MoE log-likelihood (Numba, one pass).

The polish and the convergence certificate of :mod:`moetheory.em.pipeline` need ∇ℓ and ∇²ℓ in
the free coordinates at every Newton iteration; JAX's ``jax.hessian`` of the log-density takes
p reverse-over-forward passes (0.14 s at n = 1e5, k = 3 on this machine). Here one pass over the
rows accumulates both, from the closed forms below (Louis' identity for a mixture).

Per row, with x̃ = (x, 1), gate weights g, posteriors r, residuals e_i = y − a_iᵀx − b_i and the
expert score u_i = ∂ log N_i / ∂(a_i, b_i, ν_i) = (e_i x̃ / ν_i, (e_i²/ν_i − 1) / (2ν_i)):

* gradient: gate j < k−1: (r_j − g_j) x̃; expert i: r_i u_i;
* Hessian, gate j – gate l: (δ_jl (r_j − g_j) + g_j g_l − r_j r_l) x̃x̃ᵀ;
  gate j – expert i: (δ_ij − r_j) r_i x̃ u_iᵀ;
  expert i – expert l: δ_il r_i (∇² log N_i + u_i u_iᵀ) − r_i r_l u_i u_lᵀ, with
  ∇² log N_i = [[−x̃x̃ᵀ/ν, −e x̃/ν²], [·, 1/(2ν²) − e²/ν³]].

The layout is :func:`moetheory.mle.free_layout` of a softmax spec: for each non-reference
expert its gate slopes then bias, then for each expert its slopes, intercept and variance (the
last expert's gate is the reference, pinned at 0). ``tests/test_kernels.py`` binds the result
to ``jax.hessian`` of :func:`moetheory.model.log_likelihood`.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

from moetheory.kernels.numba_em import (BLOCK, LOG_2PI, _acc, _inner, _block_sum, _chunk, _exp_neg,
                                        _linear_block, _log_norm, _unit_weights, estep_pass)


@_acc
def _sum3(nb, c, u, v):
    """Σ_j c[j] u[j] v[j] over a block (vectorised, fixed order)."""
    s = 0.0
    for j in range(nb):
        s += c[j] * u[j] * v[j]
    return s


@_acc
def _sum2(nb, c, u):
    """Σ_j c[j] u[j] over a block."""
    s = 0.0
    for j in range(nb):
        s += c[j] * u[j]
    return s


@_inner
def _rows(lo, hi, x, y, w, beta0, beta1, a, b, var, grad, hess, acc):
    """Rows lo..hi-1 in blocks of ``BLOCK`` (expert-major buffers, every inner loop over the
    rows): adds w·log p to acc[0] and the gradient and upper-block Hessian of the module
    docstring to ``grad`` and ``hess``. Not reassociated (the exps' rounding trick needs the
    arithmetic as written); the reductions are separate reassociated functions."""
    d = x.shape[1]
    k = beta0.shape[0]
    q = d + 1
    s = d + 2
    oe = (k - 1) * q
    H = np.empty((k, BLOCK))
    L = np.empty((k, BLOCK))
    eb = np.zeros((k, BLOCK))
    xb = np.ones((q, BLOCK))
    gb = np.zeros((k, BLOCK))
    rb = np.zeros((k, BLOCK))
    ub = np.zeros((k, s, BLOCK))
    wb = np.zeros(BLOCK)
    cb = np.zeros(BLOCK)
    hm = np.empty(BLOCK)
    jm = np.empty(BLOCK)
    sh = np.empty(BLOCK)
    sj = np.empty(BLOCK)
    lb = np.zeros(BLOCK)
    cst = np.empty(k)
    ivar = np.empty(k)
    iv = np.empty(k)
    for i in range(k):
        cst[i] = -0.5 * (LOG_2PI + math.log(var[i]))
        ivar[i] = 0.5 / var[i]
        iv[i] = 1.0 / var[i]
    ll = 0.0
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
            t = wn * ((jm[j] + _log_norm(sj[j])) - (hm[j] + _log_norm(sh[j])))
            lb[j] = t if nz else 0.0  # a dropped row adds exactly 0
            wb[j] = wn
            sh[j] = 1.0 / sh[j]
            sj[j] = 1.0 / sj[j]
        ll += _block_sum(nb, lb)
        for i in range(k):
            ivi = iv[i]
            for j in range(nb):
                gb[i, j] *= sh[j]
                rb[i, j] *= sj[j]
                e = eb[i, j]
                ei = e * ivi
                for c in range(q):
                    ub[i, c, j] = ei * xb[c, j]
                ub[i, q, j] = 0.5 * ivi * (e * ei - 1.0)
        # gradient
        for jg in range(k - 1):
            for j in range(nb):
                cb[j] = wb[j] * (rb[jg, j] - gb[jg, j])
            for c in range(q):
                grad[jg * q + c] += _sum2(nb, cb, xb[c])
        for i in range(k):
            for j in range(nb):
                cb[j] = wb[j] * rb[i, j]
            for c in range(s):
                grad[oe + i * s + c] += _sum2(nb, cb, ub[i, c])
        # gate – gate
        for jg in range(k - 1):
            for lg in range(jg, k - 1):
                for j in range(nb):
                    t = gb[jg, j] * gb[lg, j] - rb[jg, j] * rb[lg, j]
                    if jg == lg:
                        t += rb[jg, j] - gb[jg, j]
                    cb[j] = wb[j] * t
                for c1 in range(q):
                    for c2 in range(q):
                        hess[jg * q + c1, lg * q + c2] += _sum3(nb, cb, xb[c1], xb[c2])
        # gate – expert
        for jg in range(k - 1):
            for i in range(k):
                for j in range(nb):
                    t = -rb[jg, j] * rb[i, j]
                    if i == jg:
                        t += rb[i, j]
                    cb[j] = wb[j] * t
                for c1 in range(q):
                    for c2 in range(s):
                        hess[jg * q + c1, oe + i * s + c2] += _sum3(nb, cb, xb[c1], ub[i, c2])
        # expert – expert
        for i in range(k):
            for l in range(i, k):
                for j in range(nb):
                    t = -rb[i, j] * rb[l, j]
                    if i == l:
                        t += rb[i, j]
                    cb[j] = wb[j] * t
                for c1 in range(s):
                    for c2 in range(s):
                        hess[oe + i * s + c1, oe + l * s + c2] += _sum3(nb, cb, ub[i, c1], ub[l, c2])
            # ∇² log N_i weighted by w r_i
            ivi = iv[i]
            for j in range(nb):
                cb[j] = wb[j] * rb[i, j]
            for c1 in range(q):
                for c2 in range(q):
                    hess[oe + i * s + c1, oe + i * s + c2] -= ivi * _sum3(nb, cb, xb[c1], xb[c2])
                cross = ivi * ivi * _sum3(nb, cb, eb[i], xb[c1])
                hess[oe + i * s + c1, oe + i * s + q] -= cross
                hess[oe + i * s + q, oe + i * s + c1] -= cross
            hess[oe + i * s + q, oe + i * s + q] += (0.5 * ivi * ivi * _sum2(nb, cb, xb[q - 1])
                                                      - ivi * ivi * ivi * _sum3(nb, cb, eb[i], eb[i]))
    acc[0] += ll


@njit(cache=True, nogil=True, error_model="numpy")
def loglik_derivatives(x, y, w, beta0, beta1, a, b, var, n_chunks):
    """(ℓ, ∇ℓ (p,), ∇²ℓ (p, p)) of the weighted log-likelihood, free softmax layout (module
    docstring); the gate is used as given (pin it first: the last expert is the reference).

    Blocked summation over ``n_chunks`` row ranges, added in a fixed order (reproducible).
    """
    n, d = x.shape
    k = beta0.shape[0]
    p = (k - 1) * (d + 1) + k * (d + 2)
    grad_c = np.zeros((n_chunks, p))
    hess_c = np.zeros((n_chunks, p, p))
    ll_c = np.zeros((n_chunks, 1))
    for c in range(n_chunks):
        lo, hi = _chunk(n, n_chunks, c)
        _rows(lo, hi, x, y, w, beta0, beta1, a, b, var, grad_c[c], hess_c[c], ll_c[c])
    hess = hess_c.sum(axis=0)
    # The rows filled the diagonal blocks fully and the off-diagonal blocks above them only.
    block = np.empty(p, np.int64)
    for j in range((k - 1) * (d + 1)):
        block[j] = j // (d + 1)
    for j in range(k * (d + 2)):
        block[(k - 1) * (d + 1) + j] = k + j // (d + 2)
    for i in range(p):
        for j in range(i + 1, p):
            if block[i] != block[j]:
                hess[j, i] = hess[i, j]
            else:  # both orders were summed: average the rounding, exactly symmetric
                v = 0.5 * (hess[i, j] + hess[j, i])
                hess[i, j] = v
                hess[j, i] = v
    return ll_c.sum(), grad_c.sum(axis=0), hess


def softmax_derivatives(params, x, y, weights=None, n_chunks: int = 1):
    """NumPy front of :func:`loglik_derivatives`.

    Parameters
    ----------
    params : MoEParams (softmax gate; the last expert's gate is subtracted first)
    x : (n, d); y : (n,); weights : (n,), optional (0 drops a row)

    Returns
    -------
    (loglik, grad (p,), hess (p, p)) in :func:`moetheory.mle.free_layout` order, natural
    coordinates (variances, not log-variances)

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> p = MoEParams.create([1., 0.], [[2.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> x = np.linspace(-1, 1, 40)[:, None]
    >>> y = 2 * np.abs(x[:, 0]) + 0.1 * np.random.default_rng(0).standard_normal(40)
    >>> ll, g, H = softmax_derivatives(p, x, y)  # doctest: +SKIP
    >>> g.shape, H.shape  # doctest: +SKIP
    ((8,), (8, 8))
    """
    from moetheory.em.backend import kernel_array as f  # the one type the kernel is compiled for

    x = f(x)
    if x.ndim == 1:
        x = x[:, None]
    y = f(y)
    w = np.ones(y.shape[0]) if weights is None else f(weights)
    beta0 = f(params.beta0)
    beta1 = f(params.beta1)
    beta0 = beta0 - beta0[-1]
    beta1 = beta1 - beta1[-1]
    ll, g, H = loglik_derivatives(x, y, w, beta0, beta1, f(params.a), f(params.b), f(params.var),
                                  int(n_chunks))
    return float(ll), g, H


def softmax_loglik(params, x, y, weights=None) -> float:
    """The weighted softmax-MoE log-likelihood: one fused E-step pass of
    :func:`moetheory.kernels.numba_em.estep_pass` (its statistics are not used).

    Parameters
    ----------
    params : MoEParams (softmax gate); x : (n, d); y : (n,); weights : (n,), optional

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> p = MoEParams.create([0.], [[0.]], [[0.]], [0.], [1.])
    >>> round(softmax_loglik(p, np.zeros((2, 1)), np.zeros(2)), 6)  # doctest: +SKIP
    -1.837877
    """
    from moetheory.em.backend import kernel_array as f  # the one type the kernel is compiled for

    x = f(x)
    if x.ndim == 1:
        x = x[:, None]
    y = f(y)
    w = np.ones(y.shape[0]) if weights is None else f(weights)
    beta0 = f(params.beta0)
    out = estep_pass(x, y, w, beta0, f(params.beta1), f(params.a), f(params.b), f(params.var),
                     np.empty((1, beta0.shape[0])), 1, False, False, _unit_weights(w))
    return float(out[0])
