"""Exact gradient, Hessian and per-observation scores of the softmax-gated Gaussian MoE in NumPy.

The same closed forms as the one-pass Numba kernel (:mod:`moetheory.kernels.numba_derivs`,
Louis' identity for a mixture), written as whole-array products, so that nothing needs to be
compiled: the polish and the certificate of small fits (:func:`moetheory.em.certify.derivatives`)
and the information matrix of ``summary()`` (:func:`moetheory.mle.information`) use them.

Per row, with x̃ = (x, 1), gate probabilities g, posteriors r and the expert score
u_i = ∂ log N_i / ∂(a_i, b_i, ν_i) = (e_i x̃ / ν_i, (e_i²/ν_i − 1) / (2ν_i)), e_i = y − a_iᵀx − b_i:

* score s: gate j < k−1: (r_j − g_j) x̃; expert i: r_i u_i;
* Hessian: Σ_i r_i D_i D_iᵀ − d̄ d̄ᵀ − (diag g − g gᵀ) ⊗ x̃x̃ᵀ (gate block) + Σ_i r_i ∇² log N_i
  (expert blocks), where D_i holds x̃ in gate block i (i < k−1) and u_i in expert block i, and
  d̄ = Σ_i r_i D_i; ∇² log N_i = [[−x̃x̃ᵀ/ν, −e x̃/ν²], [·, 1/(2ν²) − e²/ν³]].

The layout is :func:`moetheory.mle.free_layout` of a softmax spec (for each non-reference expert
its gate slopes then bias, then for each expert its slopes, intercept and variance).
``tests/test_numpy_path.py`` binds the results to ``jax.hessian``/``jax.jacfwd`` and to the Numba
kernel.
"""
from __future__ import annotations

import numpy as np

from moetheory.kernels.numpy_em import LOG_2PI


def _parts(params, x, y):
    """The per-row pieces, row-major: x̃ (n, p), g, r, e (n, k), ll_n (n,), pinned variances."""
    f = lambda v: np.asarray(v, dtype=np.float64)  # noqa: E731
    x = f(x)
    if x.ndim == 1:
        x = x[:, None]
    y = f(y)
    beta0, beta1 = f(params.beta0), f(params.beta1)
    beta0, beta1 = beta0 - beta0[-1], beta1 - beta1[-1]
    a, b, var = f(params.a), f(params.b), f(params.var)
    n = x.shape[0]
    xt = np.empty((n, x.shape[1] + 1))
    xt[:, :-1] = x
    xt[:, -1] = 1.0
    h = xt @ np.concatenate([beta1, beta0[:, None]], axis=1).T  # (n, k)
    z = h - h.max(axis=1, keepdims=True)
    eg = np.exp(z)
    sg = eg.sum(axis=1, keepdims=True)
    logg = z - np.log(sg)
    g = eg / sg
    e = y[:, None] - xt @ np.concatenate([a, b[:, None]], axis=1).T
    lj = logg - 0.5 * (LOG_2PI + np.log(var)) - e * e * (0.5 / var)
    jm = lj.max(axis=1, keepdims=True)
    er = np.exp(lj - jm)
    sr = er.sum(axis=1, keepdims=True)
    r = er / sr
    ll_rows = (jm + np.log(sr))[:, 0]
    return xt, g, r, e, ll_rows, var


def _wsum(w, ll_rows) -> float:
    """Σ_n w_n ℓ_n, a row with w_n = 0 adding exactly 0 (the one summation of ℓ here)."""
    return float(np.sum(np.where(w != 0.0, w * ll_rows, 0.0)))


def _scores(xt, g, r, e, var):
    """(S (n, P): per-row scores; U (k, n, s): the expert scores u_i)."""
    n, p = xt.shape
    k = g.shape[1]
    s = p + 1
    oe = (k - 1) * p
    U = np.empty((k, n, s))
    iv = 1.0 / var
    ei = e * iv  # (n, k)
    for i in range(k):
        U[i, :, :p] = xt * ei[:, i:i + 1]
        U[i, :, p] = 0.5 * iv[i] * (e[:, i] * ei[:, i] - 1.0)
    S = np.empty((n, oe + k * s))
    for j in range(k - 1):
        S[:, j * p:(j + 1) * p] = xt * (r[:, j] - g[:, j])[:, None]
    for i in range(k):
        S[:, oe + i * s:oe + (i + 1) * s] = U[i] * r[:, i:i + 1]
    return S, U


def _hessian(xt, g, r, e, var, w, S, U):
    """Σ_n w_n ∇²ℓ_n (P, P) from the pieces (module docstring)."""
    n, p = xt.shape
    k = g.shape[1]
    s = p + 1
    oe = (k - 1) * p
    P = oe + k * s
    # d̄ = Σ_i r_i D_i: the scores with r_j x̃ (not (r_j − g_j) x̃) in the gate blocks
    dbar = S.copy()
    for j in range(k - 1):
        dbar[:, j * p:(j + 1) * p] = xt * r[:, j:j + 1]
    H = -(dbar * w[:, None]).T @ dbar
    for i in range(k):
        idx = np.r_[np.arange(i * p, (i + 1) * p) if i < k - 1 else np.arange(0),
                    np.arange(oe + i * s, oe + (i + 1) * s)]
        V = np.concatenate([xt, U[i]], axis=1) if i < k - 1 else U[i]
        H[np.ix_(idx, idx)] += (V * (w * r[:, i])[:, None]).T @ V
    # gate – gate: one coefficient per row, (δ_jl (r_j − g_j) + g_j g_l − r_j r_l) x̃x̃ᵀ, as the
    # Numba kernel sums it. Its terms summed apart are each of order n and cancel to ~1e-15
    # where a gate is saturated (a slope running off to a step), and that small curvature
    # decides the certificate there.
    for j in range(k - 1):
        for m in range(j, k - 1):
            c = g[:, j] * g[:, m] - r[:, j] * r[:, m]
            if j == m:
                c = c + (r[:, j] - g[:, j])
            blk = (xt * (w * c)[:, None]).T @ xt
            H[j * p:(j + 1) * p, m * p:(m + 1) * p] = blk
            H[m * p:(m + 1) * p, j * p:(j + 1) * p] = blk.T
    # ∇² log N_i weighted by w r_i
    for i in range(k):
        o = oe + i * s
        wr = w * r[:, i]
        iv = 1.0 / var[i]
        H[o:o + p, o:o + p] -= iv * (xt * wr[:, None]).T @ xt
        cross = iv * iv * (xt.T @ (wr * e[:, i]))
        H[o:o + p, o + p] -= cross
        H[o + p, o:o + p] -= cross
        H[o + p, o + p] += 0.5 * iv * iv * wr.sum() - iv * iv * iv * float(wr @ (e[:, i] ** 2))
    assert H.shape == (P, P)
    return 0.5 * (H + H.T)


def softmax_derivatives(params, x, y, weights=None):
    """(ℓ, ∇ℓ (P,), ∇²ℓ (P, P)) of the weighted log-likelihood, free softmax layout, natural
    coordinates (variances); the same result as
    :func:`moetheory.kernels.numba_derivs.softmax_derivatives` up to rounding.

    Parameters
    ----------
    params : MoEParams (softmax gate; the last expert's gate is subtracted first)
    x : (n, d); y : (n,); weights : (n,), optional (0 drops a row)

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> p = MoEParams.create([1., 0.], [[2.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> x = np.linspace(-1, 1, 40)[:, None]
    >>> y = 2 * np.abs(x[:, 0]) + 0.1 * np.random.default_rng(0).standard_normal(40)
    >>> ll, g, H = softmax_derivatives(p, x, y)
    >>> g.shape, H.shape, bool(np.all(H == H.T))
    ((8,), (8, 8), True)
    """
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        xt, g, r, e, ll_rows, var = _parts(params, x, y)
        w = (np.ones(xt.shape[0]) if weights is None
             else np.asarray(weights, dtype=np.float64))
        ll = _wsum(w, ll_rows)  # as softmax_loglik sums it (the polish compares the two)
        keep = w != 0.0  # a dropped row adds exactly 0, even where its terms are not finite
        if not keep.all():
            xt, g, r, e, ll_rows, w = xt[keep], g[keep], r[keep], e[keep], ll_rows[keep], w[keep]
        S, U = _scores(xt, g, r, e, var)
        H = _hessian(xt, g, r, e, var, w, S, U)
        return ll, w @ S, H


def softmax_information(params, x, y, weights=None):
    """Observed information −∇²ℓ (P, P) of ℓ = Σ_n w_n log p(y_n | x_n) (unweighted when
    ``weights`` is None) and per-observation scores (n, P): the result of
    :func:`moetheory.mle.information` for a softmax spec.

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> p = MoEParams.create([0.5, 0.], [[1.], [0.]], [[1.], [-1.]], [0.2, 0.], [1., 2.])
    >>> x = np.linspace(-1, 1, 20)[:, None]; y = np.sin(3 * x[:, 0])
    >>> info, scores = softmax_information(p, x, y)
    >>> info.shape, scores.shape
    ((8, 8), (20, 8))
    """
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        xt, g, r, e, _, var = _parts(params, x, y)
        S, U = _scores(xt, g, r, e, var)
        w = np.ones(xt.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
        return -_hessian(xt, g, r, e, var, w, S, U), S


def softmax_posterior(params, x, y) -> np.ndarray:
    """Posterior expert probabilities P(z = i | x_n, y_n), (n, k).

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> p = MoEParams.create([0., 0.], [[0.], [0.]], [[0.], [0.]], [1., -1.], [1., 1.])
    >>> softmax_posterior(p, np.zeros((1, 1)), np.zeros(1)).tolist()   # y = 0 between the means
    [[0.5, 0.5]]
    """
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        return _parts(params, x, y)[2]


def softmax_loglik(params, x, y, weights=None) -> float:
    """The weighted softmax-MoE log-likelihood Σ_n w_n log p(y_n | x_n).

    Parameters
    ----------
    params : MoEParams (softmax gate); x : (n, d); y : (n,); weights : (n,), optional

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> p = MoEParams.create([0.], [[0.]], [[0.]], [0.], [1.])
    >>> round(softmax_loglik(p, np.zeros((2, 1)), np.zeros(2)), 6)
    -1.837877
    """
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        ll_rows = _parts(params, x, y)[4]
        w = np.ones(ll_rows.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
        return _wsum(w, ll_rows)
