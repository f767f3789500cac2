"""Softmax-gate EM in vectorised NumPy: the CPU path that needs no compilation.

The fused Numba kernel (:func:`moetheory.kernels.numba_em.em_loop`) is the fastest EM on CPU
once compiled, but compiling it takes about a minute on a 2-core machine, once per install (and
again after every edit of its source). For small problems that minute is most of the wait, so
:func:`moetheory.em.backend.choose_backend` sends fits whose data are small
(:data:`moetheory.em.backend.NUMPY_MAX_CELLS`) here: the same algorithm, whole arrays at a time,
with nothing to compile.

:func:`em_loop` has the Numba kernel's signature and returns its tuple. It runs the same
iteration: an E-step at the current parameters (which gives their log-likelihood), the exact
expert M-step in residual form (weighted least squares with the same tiny ridge, the same
variance floor and empty-expert rule), then ``max_newton`` warm-started Newton steps of the
softmax gate (last expert pinned) on Σ r log g, each halved up to 40 times until the objective
does not decrease. The Numba kernel tests the full step of ``max_newton = 1`` inside the next
pass over the data (the fused check); here the test is made at once on the same
responsibilities: the same iterates, in a different order of rounding. The two paths agree to
rounding (``tests/test_numpy_path.py``: the same iterations and stopping point, ℓ to 1e-10).

Shapes: x (n, d), y and w (n,), k experts; x̃ = (x, 1) has p = d + 1 entries. Inside, arrays
are expert-major, (k, n) and x̃ᵀ (p, n), so that every reduction over the experts is a few
whole-row operations. The free gate parameters θ (k − 1, p) are [β_1, β_0] of experts 0..k−2,
as in :mod:`moetheory.em.mstep`.
"""
from __future__ import annotations

import math

import numpy as np

LOG_2PI = math.log(2.0 * math.pi)
#: The rule of :data:`moetheory.em.mstep.MIN_EXPERT_WEIGHT`: emptier experts keep their parameters.
MIN_EXPERT_WEIGHT = 1e-8
#: Step halvings of the gate's Newton step before it is rejected (as the Numba kernel).
MAX_HALVINGS = 40


def design_t(x) -> np.ndarray:
    """x̃ᵀ = (x, 1)ᵀ, shape (d + 1, n), C-contiguous float64 (rows: the covariates, then ones).

    Examples
    --------
    >>> design_t(np.array([[2.0], [3.0]])).tolist()
    [[2.0, 3.0], [1.0, 1.0]]
    """
    x = np.asarray(x, dtype=np.float64)
    xt = np.empty((x.shape[1] + 1, x.shape[0]))
    xt[:-1] = x.T
    xt[-1] = 1.0
    return xt


def _coef(slopes, intercepts):
    """(k, p) rows [slopes, intercept]."""
    return np.concatenate([slopes, intercepts[:, None]], axis=1)


def _log_softmax(h):
    """(log g (k, n), g (k, n)) of logits h (k, n), with the max over experts subtracted."""
    z = h - h.max(axis=0)
    e = np.exp(z)
    s = e.sum(axis=0)
    return z - np.log(s), e / s


def estep(xt, y, w, beta0, beta1, a, b, var, hard=False):
    """One E-step at the given parameters (expert-major arrays: every row one expert).

    Parameters
    ----------
    xt : (p, n) x̃ᵀ (:func:`design_t`); y, w : (n,); beta0, b, var : (k,); beta1, a : (k, d)
    hard : classification-EM responsibilities (one-hot of the most probable expert, the first
        on ties, times w) instead of the posterior ones

    Returns
    -------
    (ℓ = Σ_n w_n log p(y_n | x_n), resp (k, n) = w·posterior, residuals e (k, n) = y − a_iᵀx − b_i,
    log g (k, n), g (k, n)); rows with w = 0 add exactly 0 to ℓ and have zero responsibilities.

    Examples
    --------
    >>> xt = design_t(np.array([[0.0], [1.0]])); y = np.array([0.0, 1.0]); w = np.ones(2)
    >>> ll, resp, e, logg, g = estep(xt, y, w, np.zeros(1), np.zeros((1, 1)),
    ...                             np.array([[1.0]]), np.zeros(1), np.ones(1))
    >>> round(ll, 6), resp.tolist()                    # two N(0, 1) densities at 0
    (-1.837877, [[1.0, 1.0]])
    """
    logg, g = _log_softmax(_coef(beta1, beta0) @ xt)
    e = y - _coef(a, b) @ xt
    cst = -0.5 * (LOG_2PI + np.log(var))
    lj = logg + cst[:, None] - e * e * (0.5 / var)[:, None]  # log g_i + log N_i
    jm = lj.max(axis=0)
    r = np.exp(lj - jm)
    s = r.sum(axis=0)
    ll = float(np.sum(np.where(w != 0.0, w * (jm + np.log(s)), 0.0)))
    if hard:
        resp = np.zeros_like(r)
        resp[np.argmax(r, axis=0), np.arange(r.shape[1])] = 1.0
        resp *= w
    else:
        resp = r * (w / s)
    return ll, resp, e, logg, g


def gate_objective(resp, logg) -> float:
    """Q = Σ_n Σ_i r_ni log g_i(x_n) (terms with r_ni = 0 are 0); arrays (k, n).

    Examples
    --------
    >>> gate_objective(np.array([[1.0, 0.0], [0.0, 1.0]]), np.log(np.full((2, 2), 0.5)))
    -1.3862943611198906
    """
    return float(np.sum(np.where(resp > 0.0, resp * logg, 0.0)))


def gate_derivatives(xt, w, resp, g):
    """Gradient (m,) and information (m, m) of the gate objective Q, m = (k − 1)·p, at the gate
    whose probabilities are g (k, n) (last expert pinned): ∇Q = Σ_n (r_nj − w_n g_nj) x̃_n,
    −∇²Q = Σ_n w_n (δ_jl g_nj − g_nj g_nl) x̃_n x̃_nᵀ.

    Examples
    --------
    >>> xt = design_t(np.array([[-1.0], [1.0]])); g = np.full((2, 2), 0.5)
    >>> grad, info = gate_derivatives(xt, np.ones(2), np.array([[1.0, 0.0], [0.0, 1.0]]), g)
    >>> grad.tolist(), info.tolist()
    ([-1.0, 0.0], [[0.5, 0.0], [0.0, 0.5]])
    """
    p, n = xt.shape
    k = g.shape[0]
    grad = (resp[: k - 1] - w * g[: k - 1]) @ xt.T  # (k-1, p)
    gx = (g[: k - 1, None, :] * xt).reshape((k - 1) * p, n)  # g_j x̃
    info = -(gx * w) @ gx.T
    for j in range(k - 1):
        sl = slice(j * p, (j + 1) * p)
        info[sl, sl] += (xt * (w * g[j])) @ xt.T
    return grad.reshape(-1), 0.5 * (info + info.T)


def _expert_m_step(xt, resp, e, a, b, var, var_floor):
    """The exact expert M-step in residual form (in place); True when a variance was floored."""
    p = xt.shape[0]
    d = p - 1
    floored = False
    weight = resp.sum(axis=1)
    rx = resp[:, None, :] * xt  # (k, p, n)
    gram = rx @ xt.T  # (k, p, p)
    rxe = np.einsum("ipn,in->ip", rx, e)
    ree = np.einsum("in,in->i", resp * e, e)
    eye = np.eye(p)
    for i in range(resp.shape[0]):
        if not weight[i] > MIN_EXPERT_WEIGHT:
            continue
        G = gram[i]
        scale = np.trace(G) / p
        delta = np.linalg.solve(G + 1e-13 * scale * eye, rxe[i])
        ssr = ree[i] - 2.0 * float(delta @ rxe[i]) + float(delta @ (G @ delta))
        a[i] += delta[:d]
        b[i] += delta[d]
        v = ssr / weight[i]
        if v < var_floor:
            floored = True
            v = var_floor
        var[i] = v
    return floored


def _gate_step(xt, w, resp, beta0, beta1, q, g, max_newton, newton_tol, stats):
    """``max_newton`` Newton steps with step halving on Q, from the current gate (whose Q is
    ``q`` and probabilities ``g``); returns the new (beta0, beta1)."""
    k, d = beta1.shape
    p = d + 1
    m = (k - 1) * p
    theta = _coef(beta1[: k - 1], beta0[: k - 1]).reshape(m)
    eye = np.eye(m)
    full = np.zeros((k, p))

    for t in range(max_newton):
        grad, info = gate_derivatives(xt, w, resp, g)
        ridge = 1e-12 * (1.0 + np.trace(info) / m)
        step = np.linalg.solve(info + ridge * eye, grad)
        alpha = 1.0
        ok = False
        for h in range(MAX_HALVINGS):
            cand = theta + alpha * step
            full[: k - 1] = cand.reshape(k - 1, p)
            logg_c, g_c = _log_softmax(full @ xt)
            qc = gate_objective(resp, logg_c)
            stats[0] += 1
            if math.isfinite(qc) and qc >= q:
                ok = True
                break
            if t == 0 and h == 0:
                stats[1] += 1
            alpha *= 0.5
        if not ok:
            break
        improvement = qc - q
        q_old = q
        theta, q, g = cand, qc, g_c
        if not improvement > newton_tol * (1.0 + abs(q_old)):
            break
    full[: k - 1] = theta.reshape(k - 1, p)
    full[k - 1] = 0.0
    return full[:, d].copy(), full[:, :d].copy()


def em_loop(x, y, w, beta0, beta1, a, b, var, tol_rel, tol_abs, max_iter, var_floor, max_newton,
            newton_tol, n_chunks, trace, fuse_check, stats, n_hard):
    """Softmax-gate EM; the signature and result of :func:`moetheory.kernels.numba_em.em_loop`.

    Parameters
    ----------
    x : (n, d); y, w : (n,) float64
    beta0, b, var : (k,); beta1, a : (k, d), the start (the gate is pinned first)
    tol_rel, tol_abs : stop at iteration t > n_hard when |ℓ_t − ℓ_{t−1}| ≤ max(tol_rel·|ℓ_{t−1}|,
        tol_abs); max_iter : iterations at most; var_floor : the variance floor
    max_newton, newton_tol : the gate's Newton loop per iteration
    n_chunks, fuse_check : accepted for the kernel's signature (whole arrays here; the
        full-step test is always made at once: the same iterates)
    trace : (max_iter + 1,) float, written: ℓ of every visited iterate
    stats : (2,) int64, incremented: passes over the data, rejected full gate steps
    n_hard : the first n_hard iterations use hard (classification) E-steps

    Returns
    -------
    (beta0, beta1, a, b, var, ℓ, n_iter, converged, floor_hit): the last iterate (gate pinned),
    its log-likelihood, the iteration count, whether the stopping rule was met, whether a
    variance was floored.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-1, 1, (200, 1)); y = np.where(x[:, 0] > 0, 2.0, -2.0) + 0.3 * rng.standard_normal(200)
    >>> out = em_loop(x, y, np.ones(200), np.array([0.5, 0.0]), np.array([[1.0], [0.0]]),
    ...               np.zeros((2, 1)), np.array([1.0, -1.0]), np.ones(2), 0.0, 1e-6, 200, 1e-10, 1,
    ...               1e-12, 1, np.full(201, np.nan), True, np.zeros(2, np.int64), 0)
    >>> b = out[3]; bool(abs(b[0] - 2.0) < 0.2 and abs(b[1] + 2.0) < 0.2), out[7]
    (True, True)
    """
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        return _em_loop(x, y, w, beta0, beta1, a, b, var, tol_rel, tol_abs, max_iter, var_floor,
                        max_newton, newton_tol, trace, stats, n_hard)


def _em_loop(x, y, w, beta0, beta1, a, b, var, tol_rel, tol_abs, max_iter, var_floor, max_newton,
             newton_tol, trace, stats, n_hard):
    xt = design_t(x)
    y = np.asarray(y, dtype=np.float64)
    w = np.asarray(w, dtype=np.float64)
    k = beta0.shape[0]
    beta0 = np.array(beta0, dtype=np.float64) - beta0[k - 1]
    beta1 = np.array(beta1, dtype=np.float64) - beta1[k - 1]
    a = np.array(a, dtype=np.float64)
    b = np.array(b, dtype=np.float64)
    var = np.array(var, dtype=np.float64)
    prev = -np.inf
    n_iter = max_iter
    converged = False
    floor_any = False
    ll = -np.inf
    for it in range(max_iter + 1):
        hard = it < n_hard
        ll, resp, e, logg, g = estep(xt, y, w, beta0, beta1, a, b, var, hard)
        stats[0] += 1
        trace[it] = ll
        if it > n_hard and abs(ll - prev) <= max(tol_rel * abs(prev), tol_abs):
            converged = True
            n_iter = it
            break
        if it == max_iter:
            break
        prev = ll
        floor_any |= _expert_m_step(xt, resp, e, a, b, var, var_floor)
        if k > 1:
            beta0, beta1 = _gate_step(xt, w, resp, beta0, beta1, gate_objective(resp, logg), g,
                                      max_newton, newton_tol, stats)
    if not converged:
        ll_f = estep(xt, y, w, beta0, beta1, a, b, var)[0]
        stats[0] += 1
        trace[max_iter] = ll_f
        converged = max_iter > 0 and abs(ll_f - prev) <= max(tol_rel * abs(prev), tol_abs)
        ll = ll_f
    return beta0, beta1, a, b, var, ll, n_iter, converged, floor_any
