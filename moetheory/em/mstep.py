"""M-steps: exact weighted least squares for the experts; the gate's own step for the gate.

Each gate's step (:meth:`moetheory.gates.Gate.m_step`, e.g. the softmax Newton/IRLS step of
:mod:`moetheory.gates.softmax`) must never decrease its objective Σ_n Σ_i r_ni log w_i(x_n)
(:func:`moetheory.gates.gate_objective`).
"""
from __future__ import annotations

import jax.numpy as jnp

from moetheory.gates.base import gate_objective  # noqa: F401  (re-exported: the EM objective)
from moetheory.gates.softmax import (_softmax_pack, _softmax_unpack,  # noqa: F401
                                     softmax_gate_m_step)

# Experts whose total responsibility is below this keep their previous parameters: their
# weighted least-squares system is numerically empty.
MIN_EXPERT_WEIGHT = 1e-8


def expert_m_step(params, x, y, resp, var_floor, equal_var: bool = False):
    """Exact M-step of the experts: weighted least squares and weighted mean squared residual.

    Parameters
    ----------
    params : MoEParams (previous values; kept for experts with no weight)
    x : (n, d); y : (n,); resp : (n, k)
    var_floor : scalar, the documented minimum variance
    equal_var : one variance for every expert: the pooled weighted mean squared residual

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
    if equal_var:
        pooled = (resp * resid * resid).sum() / weight.sum()
        var_raw = jnp.full_like(params.var, pooled)
    else:
        var_raw = (resp * resid * resid).sum(0) / jnp.where(alive, weight, 1.0)
        var_raw = jnp.where(alive, var_raw, params.var)
    floor_hit = var_raw < var_floor
    return params._replace(a=a, b=b, var=jnp.maximum(var_raw, var_floor)), floor_hit


def gate_m_step(spec, params, x, resp, y=None, weights=None, **options):
    """The gate M-step of ``spec``'s gate (:meth:`moetheory.gates.Gate.m_step`).

    Parameters
    ----------
    spec : MoESpec, its ``gate_family`` supplies the step
    params : MoEParams, the current parameters (``beta0`` (k,), ``beta1`` (k, d))
    x : array (n, d), the gate's design; resp : array (n, k)
    y, weights : array (n,), optional: the responses and observation weights (the top-K step
        evaluates the observed likelihood with them)
    **options : gate options passed to the step (``spec.gate_family.step_options``)

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
    return spec.gate_family.m_step(spec, params, x, resp, y=y, weights=weights, **options)
