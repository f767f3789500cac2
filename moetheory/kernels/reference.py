"""A deliberately plain NumPy implementation of the Gaussian MoE: the test oracle.

Everything here is written for readability, not speed: explicit loops over experts and over
rows where that makes the formula obvious, ``scipy.special.logsumexp`` for the log-sum-exp.
It shares no code with the JAX implementation (:mod:`moetheory.model`, :mod:`moetheory.em`, the
gates' JAX methods) — only the :class:`~moetheory.spec.MoESpec` and
:class:`~moetheory.params.MoEParams` containers and, for the gate formulas, each gate's NumPy
methods (``Gate.numpy_logits``, ``numpy_active_set``, ``numpy_log_weights``), written apart from
its JAX code in the gate's module — so agreement between the two is evidence that both are right. Used by the tests and as the benchmark baseline only.

Shapes: n observations, k experts, covariate dimension d; ``x`` is (n, d), ``y`` is (n,).
Parameters follow :class:`~moetheory.params.MoEParams`: ``beta0`` (k,), ``beta1`` (k, d),
``a`` (k, d), ``b`` (k,), ``var`` (k,) (variances), ``tau`` () (DESIGN.md §2).
"""
from __future__ import annotations

import math

import numpy as np
from scipy.special import logsumexp

from moetheory.params import MoEParams


LOG_2PI = math.log(2.0 * math.pi)


def _np_params(params) -> MoEParams:
    return params.map(lambda v: np.asarray(v, dtype=np.float64))


def gate_logits(spec, params, x) -> np.ndarray:
    """Gate logits h_i(x) of DESIGN.md §2.2, one expert at a time (the gate's own NumPy code,
    ``Gate.numpy_logits``, written apart from its JAX code).

    Parameters
    ----------
    spec : MoESpec
    params : MoEParams
    x : ndarray (n, d)

    Returns
    -------
    h : ndarray (n, k)

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([1., 0.], [[2.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> x = np.array([[-1.0], [0.0], [1.0]]); y = np.array([-1.0, 0.0, 1.0])
    >>> gate_logits(spec, p, x).tolist()  # β_1i x + β_0i
    [[-1.0, 0.0], [1.0, 0.0], [3.0, 0.0]]
    """
    return spec.gate_family.numpy_logits(spec, _np_params(params), np.asarray(x, dtype=np.float64))


def active_set(spec, params, x) -> np.ndarray:
    """Which experts are active at each x: all of them, except for the top-K gate.

    Top-K ranks experts by the selection score β_1iᵀx (``select_by="score"``) or by the full
    logit β_1iᵀx + β_0i (``select_by="logit"``) and keeps the K largest; ties go to the lower
    expert index.

    Parameters
    ----------
    spec : MoESpec
    params : MoEParams
    x : ndarray (n, d)

    Returns
    -------
    mask : bool ndarray (n, k)

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> p = MoEParams.create([1., 0.], [[2.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> x = np.array([[-1.0], [0.0], [1.0]])
    >>> active_set(MoESpec(2, 1, gate="topk", top_k=1), p, x).tolist()  # ranks β_1i x
    [[False, True], [True, False], [True, False]]
    """
    return spec.gate_family.numpy_active_set(spec, _np_params(params), np.asarray(x, dtype=np.float64))


def log_gate_weights(spec, params, x) -> np.ndarray:
    """log g_i(x): a log-softmax of the logits over the active set, ``-inf`` elsewhere (the
    gate's ``numpy_log_weights``).

    Parameters
    ----------
    spec : MoESpec
    params : MoEParams
    x : ndarray (n, d)

    Returns
    -------
    logg : ndarray (n, k); each row's exp sums to 1

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([1., 0.], [[2.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> x = np.array([[-1.0], [0.0], [1.0]]); y = np.array([-1.0, 0.0, 1.0])
    >>> logg = log_gate_weights(spec, p, x)
    >>> logg.shape, np.allclose(np.exp(logg).sum(1), 1.0)
    ((3, 2), True)
    """
    return spec.gate_family.numpy_log_weights(spec, _np_params(params), np.asarray(x, dtype=np.float64))


def log_joint_weights(spec, params, x) -> np.ndarray:
    """The gate term of the complete-data likelihood, (n, k): log g_i(x), or log p(x, expert i)
    for a gate that models x (``Gate.numpy_log_joint_weights``); x is (n, d).

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> p = MoEParams.create([0., 0.], [[0.], [0.]], [[0.], [0.]], [0., 0.], [1., 1.],
    ...                      extra={"cov": [[[1.]], [[1.]]]})
    >>> np.exp(log_joint_weights(MoESpec(2, 1, gate="gaussian"), p, np.zeros((1, 1)))).round(4).tolist()
    [[0.1995, 0.1995]]
    """
    return spec.gate_family.numpy_log_joint_weights(spec, _np_params(params),
                                                    np.asarray(x, dtype=np.float64))


def log_expert_density(params, x, y) -> np.ndarray:
    """log N(y_n; a_iᵀx_n + b_i, ν_i).

    Parameters
    ----------
    params : MoEParams
    x : ndarray (n, d)
    y : ndarray (n,)

    Returns
    -------
    ndarray (n, k)

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> p = MoEParams.create([0.], [[0.]], [[0.]], [0.], [1.])
    >>> log_expert_density(p, np.zeros((1, 1)), np.zeros(1)).round(6).tolist()  # log N(0; 0, 1)
    [[-0.918939]]
    """
    p = _np_params(params)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    k = p.beta0.shape[0]
    out = np.empty((x.shape[0], k))
    for i in range(k):
        mean = x @ p.a[i] + p.b[i]
        out[:, i] = -0.5 * (LOG_2PI + np.log(p.var[i]) + (y - mean) ** 2 / p.var[i])
    return out


def log_joint(spec, params, x, y) -> np.ndarray:
    """log g_i(x_n) + log N(y_n; ...), (n, k).

    Parameters
    ----------
    spec : MoESpec; params : MoEParams
    x : ndarray (n, d); y : ndarray (n,)

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([1., 0.], [[2.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> x = np.array([[-1.0], [0.0], [1.0]]); y = np.array([-1.0, 0.0, 1.0])
    >>> log_joint(spec, p, x, y).shape
    (3, 2)
    """
    return log_joint_weights(spec, params, x) + log_expert_density(params, x, y)


def log_density(spec, params, x, y) -> np.ndarray:
    """log p(y_n | x_n) (log p(x_n, y_n) for a gate that models x), (n,).

    Parameters
    ----------
    spec : MoESpec; params : MoEParams
    x : ndarray (n, d); y : ndarray (n,)

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([1., 0.], [[2.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> x = np.array([[-1.0], [0.0], [1.0]]); y = np.array([-1.0, 0.0, 1.0])
    >>> ld = log_density(spec, p, x, y)
    >>> ld.shape, np.allclose(ld, np.log(np.exp(log_joint(spec, p, x, y)).sum(1)))
    ((3,), True)
    """
    return logsumexp(log_joint(spec, params, x, y), axis=1)


def log_likelihood(spec, params, x, y) -> float:
    """Observed log-likelihood Σ_n log p(y_n | x_n) (joint for a gate that models x), a float.

    Parameters
    ----------
    spec : MoESpec; params : MoEParams
    x : ndarray (n, d); y : ndarray (n,)

    Returns
    -------
    float (a scalar)

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> p = MoEParams.create([0.], [[0.]], [[0.]], [0.], [1.])
    >>> round(log_likelihood(MoESpec(1, 1), p, np.zeros((2, 1)), np.zeros(2)), 6)  # 2 log N(0; 0, 1)
    -1.837877
    """
    return float(log_density(spec, params, x, y).sum())


def responsibilities(spec, params, x, y) -> np.ndarray:
    """E-step: r_ni = g_i(x_n) N(y_n; ...) / p(y_n | x_n), (n, k); rows sum to 1.

    Parameters
    ----------
    spec : MoESpec; params : MoEParams
    x : ndarray (n, d); y : ndarray (n,)

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([1., 0.], [[2.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> x = np.array([[-1.0], [0.0], [1.0]]); y = np.array([-1.0, 0.0, 1.0])
    >>> r = responsibilities(spec, p, x, y)
    >>> r.shape, np.allclose(r.sum(1), 1.0)
    ((3, 2), True)
    """
    lj = log_joint(spec, params, x, y)
    return np.exp(lj - logsumexp(lj, axis=1, keepdims=True))


def expert_m_step(x, y, resp, var_floor: float = 0.0):
    """Expert M-step: weighted least squares per expert, variance = weighted mean squared residual.

    Solves min_{a_i, b_i} Σ_n r_ni (y_n − a_iᵀx_n − b_i)² with ``np.linalg.lstsq`` on the rows
    scaled by sqrt(r_ni); ν_i = Σ_n r_ni (residual)² / Σ_n r_ni (the exact MLE, no n/(n−p)).

    Parameters
    ----------
    x : ndarray (n, d)
    y : ndarray (n,)
    resp : ndarray (n, k)
    var_floor : float
        Lower bound applied to ν_i.

    Returns
    -------
    a : ndarray (k, d)
    b : ndarray (k,)
    var : ndarray (k,)

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[0.0], [1.0], [2.0], [3.0]]); y = 2.0 * x[:, 0] + 1.0
    >>> a, b, var = expert_m_step(x, y, np.ones((4, 1)))  # one expert, an exact line
    >>> a.round(10).tolist(), b.round(10).tolist(), var.round(10).tolist()
    ([[2.0]], [1.0], [0.0])
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    resp = np.asarray(resp, dtype=np.float64)
    n, d = x.shape
    k = resp.shape[1]
    design = np.column_stack([x, np.ones(n)])  # slopes..., intercept
    a = np.empty((k, d))
    b = np.empty(k)
    var = np.empty(k)
    for i in range(k):
        w = np.sqrt(resp[:, i])
        coef, *_ = np.linalg.lstsq(design * w[:, None], y * w, rcond=None)
        a[i], b[i] = coef[:d], coef[d]
        resid = y - design @ coef
        var[i] = max(np.sum(resp[:, i] * resid ** 2) / np.sum(resp[:, i]), var_floor)
    return a, b, var


def softmax_gate_objective(beta0, beta1, x, resp) -> float:
    """Q(β) = Σ_n Σ_i r_ni log g_i(x_n) for the softmax gate (terms with r_ni = 0 are 0).

    Parameters
    ----------
    beta0 : ndarray (k,); beta1 : ndarray (k, d)
    x : ndarray (n, d); resp : ndarray (n, k)

    Returns
    -------
    float (a scalar)

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[-1.0], [0.0], [1.0]])
    >>> resp = np.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    >>> round(softmax_gate_objective([0., 0.], [[0.], [0.]], x, resp), 6)  # 3 log(1/2)
    -2.079442
    """
    beta0 = np.asarray(beta0, dtype=np.float64)
    beta1 = np.asarray(beta1, dtype=np.float64)
    h = np.asarray(x, dtype=np.float64) @ beta1.T + beta0
    logg = h - logsumexp(h, axis=1, keepdims=True)
    return float(np.sum(np.where(resp > 0, resp * logg, 0.0)))


def softmax_gate_m_step(x, resp, beta0=None, beta1=None, max_newton: int = 100,
                        tol: float = 1e-14):
    """Softmax gate M-step: weighted multinomial logit with the last expert pinned at zero.

    Maximises Q(β) = Σ_n Σ_i r_ni log g_i(x_n) over the gates of experts 0..k−2 (the last
    expert's logit is 0) by plain Newton steps, each halved until Q does not decrease.
    Observation n carries weight w_n = Σ_i r_ni.

    Parameters
    ----------
    x : ndarray (n, d)
    resp : ndarray (n, k)
    beta0 : ndarray (k,), optional
        Start (shifted so the last expert is zero); zeros by default.
    beta1 : ndarray (k, d), optional
    max_newton : int
        Maximum Newton steps.
    tol : float
        Stop when a step improves Q by less than ``tol·(1 + |Q|)``.

    Returns
    -------
    beta0 : ndarray (k,), last entry 0
    beta1 : ndarray (k, d), last row 0

    Examples
    --------
    >>> import numpy as np
    >>> x = np.array([[-1.0], [0.0], [1.0]])
    >>> resp = np.array([[0.8, 0.2], [0.5, 0.5], [0.2, 0.8]])
    >>> beta0, beta1 = softmax_gate_m_step(x, resp)
    >>> beta0.shape, beta1.shape, float(beta1[-1, 0]), bool(beta1[0, 0] < 0)
    ((2,), (2, 1), 0.0, True)
    >>> q0 = softmax_gate_objective([0., 0.], [[0.], [0.]], x, resp)  # at the flat start
    >>> softmax_gate_objective(beta0, beta1, x, resp) >= q0
    True
    """
    x = np.asarray(x, dtype=np.float64)
    resp = np.asarray(resp, dtype=np.float64)
    n, d = x.shape
    k = resp.shape[1]
    beta0 = np.zeros(k) if beta0 is None else np.array(beta0, dtype=np.float64)
    beta1 = np.zeros((k, d)) if beta1 is None else np.array(beta1, dtype=np.float64)
    beta0 = beta0 - beta0[-1]
    beta1 = beta1 - beta1[-1]
    if k == 1:
        return beta0, beta1
    design = np.column_stack([x, np.ones(n)])  # (n, d+1)
    # theta[j] = (β_1j, β_0j) for j = 0..k-2.
    theta = np.column_stack([beta1[:-1], beta0[:-1]])
    w = resp.sum(axis=1)

    def unpack(th):
        full = np.vstack([th, np.zeros((1, d + 1))])
        return full[:, d], full[:, :d]

    def objective(th):
        b0, b1 = unpack(th)
        return softmax_gate_objective(b0, b1, x, resp)

    q = objective(theta)
    m = (k - 1) * (d + 1)
    for _ in range(max_newton):
        b0, b1 = unpack(theta)
        h = x @ b1.T + b0
        prob = np.exp(h - logsumexp(h, axis=1, keepdims=True))  # (n, k)
        grad = np.zeros(m)
        hess = np.zeros((m, m))  # negative Hessian of Q (the information)
        for j in range(k - 1):
            sj = slice(j * (d + 1), (j + 1) * (d + 1))
            grad[sj] = design.T @ (resp[:, j] - w * prob[:, j])
            for l in range(k - 1):
                sl = slice(l * (d + 1), (l + 1) * (d + 1))
                cov = w * prob[:, j] * ((1.0 if j == l else 0.0) - prob[:, l])
                hess[sj, sl] = design.T @ (design * cov[:, None])
        step = np.linalg.solve(hess, grad).reshape(k - 1, d + 1)
        alpha = 1.0
        for _ in range(60):
            cand = theta + alpha * step
            q_cand = objective(cand)
            if np.isfinite(q_cand) and q_cand >= q:
                break
            alpha *= 0.5
        else:
            break  # no ascent along the Newton direction: at the optimum up to rounding
        improvement = q_cand - q
        theta, q = cand, q_cand
        if improvement <= tol * (1.0 + abs(q)):
            break
    return unpack(theta)


def em_softmax(params, x, y, tol_rel: float = 0.0, tol_abs: float = 0.0, max_iter: int = 1000,
               var_floor: float = 1e-10, max_newton: int = 100):
    """Plain NumPy EM for the softmax-gated Gaussian MoE (the benchmark baseline).

    Each iteration: E-step at the current parameters (which gives their log-likelihood ℓ_t),
    expert M-step, gate M-step warm-started at the current gate. Stops when
    |ℓ_t − ℓ_{t−1}| ≤ max(tol_rel·|ℓ_{t−1}|, tol_abs) (the thresholds of
    :meth:`moetheory.em.config.EMConfig.stop_thresholds`) or after ``max_iter`` iterations.

    Parameters
    ----------
    params : MoEParams, the start
    x : ndarray (n, d)
    y : ndarray (n,)

    Returns
    -------
    dict with ``params`` (MoEParams, NumPy), ``loglik`` (float, at ``params``), ``n_iter``,
    ``converged`` (bool) and ``trace`` (list of ℓ at each visited parameter, the start first).

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> start = MoEParams.create([1., 0.], [[2.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> x = np.linspace(-1, 1, 40)[:, None]
    >>> y = 2 * np.abs(x[:, 0]) + 0.1 * np.random.default_rng(0).standard_normal(40)
    >>> out = em_softmax(start, x, y, tol_abs=4e-7, max_iter=50)
    >>> sorted(out), out["params"].a.shape
    (['converged', 'loglik', 'n_iter', 'params', 'trace'], (2, 1))
    >>> bool(np.all(np.diff(out["trace"]) >= -1e-9))  # EM never lowers the log-likelihood
    True
    """
    from moetheory.spec import MoESpec

    p = _np_params(params)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    spec = MoESpec(p.beta0.shape[0], x.shape[1])
    trace = []
    converged = False
    n_iter = 0
    for it in range(max_iter + 1):
        resp = responsibilities(spec, p, x, y)
        ll = log_likelihood(spec, p, x, y)
        trace.append(ll)
        if it > 0 and abs(ll - trace[-2]) <= max(tol_rel * abs(trace[-2]), tol_abs):
            converged = True
            break
        if it == max_iter:
            break
        a, b, var = expert_m_step(x, y, resp, var_floor)
        beta0, beta1 = softmax_gate_m_step(x, resp, p.beta0, p.beta1, max_newton=max_newton)
        p = MoEParams(beta0, beta1, a, b, var, p.tau)
        n_iter = it + 1
    return {"params": p, "loglik": trace[-1], "n_iter": n_iter, "converged": converged,
            "trace": trace}
