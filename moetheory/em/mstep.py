"""M-steps: exact weighted least squares for the experts, Newton/IRLS for the softmax gate.

The gate step for other gate families is registered in ``GATE_MSTEPS`` (see
:func:`gate_m_step`); each must never decrease Σ_n Σ_i r_ni log g_i(x_n).
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from moetheory.gates import log_gate_weights

# Experts whose total responsibility is below this keep their previous parameters: their
# weighted least-squares system is numerically empty.
MIN_EXPERT_WEIGHT = 1e-8


def expert_m_step(params, x, y, resp, var_floor):
    """Exact M-step of the experts: weighted least squares and weighted mean squared residual.

    Parameters
    ----------
    params : MoEParams (previous values; kept for experts with no weight)
    x : (n, d); y : (n,); resp : (n, k)
    var_floor : scalar, the documented minimum variance

    Returns
    -------
    params : MoEParams with new ``a``, ``b``, ``var``
    floor_hit : bool array (k,), True where the variance was floored

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax.numpy as jnp
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([0., 0.], [[0.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> x = jnp.array([[-1.0], [0.0], [1.0]]); y = jnp.array([-1.0, 0.0, 1.0])
    >>> resp = jnp.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    >>> new, floor_hit = expert_m_step(p, x, y, resp, 1e-10)
    >>> new.a.shape, new.b.shape, new.var.shape, floor_hit.shape
    ((2, 1), (2,), (2,), (2,))
    """
    n, d = x.shape
    xt = jnp.concatenate([x, jnp.ones((n, 1), x.dtype)], axis=1)  # (n, d+1): slope..., intercept
    weight = resp.sum(0)  # (k,)
    gram = jnp.einsum("ni,na,nb->iab", resp, xt, xt)
    rhs = jnp.einsum("ni,na,n->ia", resp, xt, y)
    # A tiny relative ridge only guards exact singularity (e.g. all weight on one x value).
    scale = jnp.trace(gram, axis1=1, axis2=2)[:, None, None] / (d + 1)
    eye = jnp.eye(d + 1, dtype=x.dtype)
    coef = jnp.linalg.solve(gram + 1e-13 * scale * eye, rhs[..., None])[..., 0]  # (k, d+1)
    alive = weight > MIN_EXPERT_WEIGHT
    a = jnp.where(alive[:, None], coef[:, :d], params.a)
    b = jnp.where(alive, coef[:, d], params.b)
    resid = y[:, None] - (x @ a.T + b)
    var_raw = (resp * resid * resid).sum(0) / jnp.where(alive, weight, 1.0)
    var_raw = jnp.where(alive, var_raw, params.var)
    floor_hit = var_raw < var_floor
    return params._replace(a=a, b=b, var=jnp.maximum(var_raw, var_floor)), floor_hit


def gate_objective(spec, params, x, resp, mask=None):
    """Q_gate = Σ_n Σ_i r_ni log g_i(x_n); terms with r_ni = 0 contribute 0.

    Parameters
    ----------
    spec : MoESpec
    params : MoEParams, gate arrays ``beta0`` (k,), ``beta1`` (k, d)
    x : array (n, d); resp : array (n, k)
    mask : bool array (n, k), optional
        Active sets to hold fixed (top-K gate); default: those at ``params``.

    Returns
    -------
    scalar, the gate objective

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax.numpy as jnp
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([0., 0.], [[0.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> x = jnp.array([[-1.0], [0.0], [1.0]]); y = jnp.array([-1.0, 0.0, 1.0])
    >>> resp = jnp.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    >>> q = gate_objective(spec, p, x, resp)  # flat gate: g_i = 1/2
    >>> q.shape, round(float(q), 6)
    ((), -2.079442)
    """
    logg = log_gate_weights(spec, params, x, mask)
    return jnp.where(resp > 0, resp * logg, 0.0).sum()


def _softmax_pack(params):
    """Free gate parameters of the pinned softmax: θ (k-1, d+1) = [β_1, β_0] of experts 0..k-2."""
    return jnp.concatenate([params.beta1[:-1], params.beta0[:-1, None]], axis=1)


def _softmax_unpack(params, theta):
    d = params.beta1.shape[1]
    zero = jnp.zeros((1, d + 1), theta.dtype)
    full = jnp.concatenate([theta, zero], axis=0)
    return params._replace(beta1=full[:, :d], beta0=full[:, d])


def softmax_gate_m_step(spec, params, x, resp, max_newton=50, newton_tol=1e-12, mask=None):
    """Weighted multinomial-logit M-step by Newton/IRLS with step-halving (last expert pinned).

    Warm-started at the current gate; each Newton step is halved until the objective does not
    decrease (at most 40 halvings, after which the step is rejected and the loop stops). Stops
    after ``max_newton`` steps or when the objective improves by less than
    ``newton_tol·(1 + |Q|)``.

    Parameters
    ----------
    spec : MoESpec
    params : MoEParams, the current gate (``beta0`` (k,), ``beta1`` (k, d)) is the warm start
    x : array (n, d); resp : array (n, k)
    max_newton : int, maximum Newton steps
    newton_tol : float, relative improvement below which the loop stops
    mask : unused by the softmax gate (accepted for a uniform gate-step signature)

    Returns
    -------
    params : MoEParams with new ``beta0``, ``beta1`` (last expert's gate exactly zero)

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax.numpy as jnp
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([0., 0.], [[0.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> x = jnp.array([[-1.0], [0.0], [1.0]]); y = jnp.array([-1.0, 0.0, 1.0])
    >>> resp = jnp.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    >>> new = softmax_gate_m_step(spec, p, x, resp)
    >>> new.beta0.shape, new.beta1.shape, float(new.beta0[-1]), float(new.beta1[-1, 0])
    ((2,), (2, 1), 0.0, 0.0)
    >>> bool(gate_objective(spec, new, x, resp) >= gate_objective(spec, p, x, resp))
    True
    """
    params = params._replace(beta0=params.beta0 - params.beta0[-1],
                             beta1=params.beta1 - params.beta1[-1])
    n, d = x.shape
    k = spec.n_experts
    if k == 1:
        return params
    xt = jnp.concatenate([x, jnp.ones((n, 1), x.dtype)], axis=1)
    m = (k - 1) * (d + 1)
    rsum = resp.sum(-1)  # observation weights (1, or 0 for padded rows)

    def objective(theta):
        h = jnp.concatenate([xt @ theta.T, jnp.zeros((n, 1), x.dtype)], axis=1)
        logp = jax.nn.log_softmax(h, axis=-1)
        return jnp.where(resp > 0, resp * logp, 0.0).sum(), logp

    def newton_direction(theta, logp):
        p = jnp.exp(logp)
        grad = ((resp - rsum[:, None] * p)[:, :-1]).T @ xt  # (k-1, d+1)
        pk = p[:, :-1] * rsum[:, None]
        w = jnp.einsum("ni,ij->nij", pk, jnp.eye(k - 1, dtype=x.dtype)) - jnp.einsum(
            "ni,nj->nij", pk, p[:, :-1])
        info = jnp.einsum("nij,na,nb->iajb", w, xt, xt).reshape(m, m)
        ridge = 1e-12 * (1.0 + jnp.trace(info) / m)
        step = jnp.linalg.solve(info + ridge * jnp.eye(m, dtype=x.dtype), grad.reshape(m))
        return step.reshape(k - 1, d + 1)

    def halving(theta, q, logp, step):
        # Carries the candidate's log-probabilities so the accepted point is not re-evaluated.
        def cond(s):
            return (~s[4]) & (s[5] < 40)

        def body(s):
            alpha, _, _, _, _, tries = s
            cand = theta + alpha * step
            qc, lpc = objective(cand)
            ok = jnp.isfinite(qc) & (qc >= q)
            return alpha * 0.5, cand, qc, lpc, ok, tries + 1

        init = (jnp.asarray(1.0, x.dtype), theta, q, logp, jnp.asarray(False), 0)
        _, cand, qc, lpc, ok, _ = jax.lax.while_loop(cond, body, init)
        return (jnp.where(ok, cand, theta), jnp.where(ok, qc, q), jnp.where(ok, lpc, logp), ok)

    def cond(s):
        _, _, _, it, go = s
        return go & (it < max_newton)

    def body(s):
        theta, q, logp, it, _ = s
        step = newton_direction(theta, logp)
        theta_new, q_new, logp_new, ok = halving(theta, q, logp, step)
        go = ok & (q_new - q > newton_tol * (1.0 + jnp.abs(q)))
        return theta_new, q_new, logp_new, it + 1, go

    theta0 = _softmax_pack(params)
    q0, logp0 = objective(theta0)
    theta, *_ = jax.lax.while_loop(cond, body, (theta0, q0, logp0, 0, jnp.asarray(True)))
    return _softmax_unpack(params, theta)


#: gate family -> M-step ``f(spec, params, x, resp, **options) -> params``.
GATE_MSTEPS: dict[str, Callable] = {"softmax": softmax_gate_m_step}


def gate_m_step(spec, params, x, resp, **options):
    """Dispatch the gate M-step for ``spec.gate``.

    Parameters
    ----------
    spec : MoESpec, its ``gate`` selects the step in ``GATE_MSTEPS``
    params : MoEParams, the current parameters (``beta0`` (k,), ``beta1`` (k, d))
    x : array (n, d); resp : array (n, k)
    **options : gate options passed to the step (see ``GATE_OPTIONS``)

    Returns
    -------
    params : MoEParams with a new gate

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax.numpy as jnp
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([0., 0.], [[0.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> x = jnp.array([[-1.0], [0.0], [1.0]]); y = jnp.array([-1.0, 0.0, 1.0])
    >>> resp = jnp.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    >>> gate_m_step(spec, p, x, resp, max_newton=5).beta1.shape
    (2, 1)
    """
    try:
        step = GATE_MSTEPS[spec.gate]
    except KeyError:
        raise NotImplementedError(f"no EM gate step registered for gate={spec.gate!r}") from None
    return step(spec, params, x, resp, **options)


# The other gates' M-steps live in gate_steps.py and register themselves in GATE_MSTEPS.
from moetheory.em import gate_steps as _gate_steps  # noqa: E402,F401
