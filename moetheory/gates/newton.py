"""A monotone modified-Newton maximiser (jittable, vmappable): the generic gate step.

Any gate whose EM step has no closed form maximises its objective Σ_n Σ_i r_ni log g_i(z_n) (or,
for gates that model their input, the joint weights) with :func:`monotone_newton` over its free
coordinates: Newton directions from the autodiff gradient and Hessian, made ascent directions by
:func:`ascent_direction`, and step-halving so the objective never decreases.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def ascent_direction(grad, hess):
    """Newton direction with the Hessian's eigenvalues replaced by their absolute values (floored).

    d = V diag(1/max(|λ|, floor)) Vᵀ g for −H = V diag(λ) Vᵀ, so dᵀg > 0 whenever g ≠ 0: the
    Newton step where −H is positive definite, a scaled gradient step along negative curvature.

    Parameters
    ----------
    grad : array (p,), gradient of the objective
    hess : array (p, p), its Hessian

    Returns
    -------
    array (p,), the ascent direction (zeros if it is not finite)

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> ascent_direction(jnp.array([1.0, 2.0]), -jnp.eye(2)).tolist()  # H = -I: the gradient
    [1.0, 2.0]
    """
    hess = 0.5 * (hess + hess.T)
    lam, vec = jnp.linalg.eigh(-hess)
    scale = jnp.max(jnp.abs(lam))
    floor = 1e-8 * scale + 1e-10
    step = vec @ ((vec.T @ grad) / jnp.maximum(jnp.abs(lam), floor))
    ok = jnp.all(jnp.isfinite(step))
    return jnp.where(ok, step, jnp.zeros_like(step))


def monotone_newton(f, theta0, max_steps=50, tol=1e-12, max_halvings=40):
    """Maximise the scalar ``f`` from ``theta0`` (a flat vector); f never decreases.

    Each iteration takes the :func:`ascent_direction` of the autodiff gradient and Hessian and
    halves the step (at most ``max_halvings`` times) until f does not decrease; an unaccepted
    step stops the loop, as does an improvement below ``tol·(1 + |f|)`` or ``max_steps`` steps.

    Parameters
    ----------
    f : callable, array (p,) -> scalar, jax-differentiable
    theta0 : array (p,), the start
    max_steps : int; tol : float; max_halvings : int

    Returns
    -------
    (theta, f(theta)) : array (p,) and scalar

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax.numpy as jnp
    >>> theta, q = monotone_newton(lambda t: -((t - 1.0) ** 2).sum(), jnp.zeros(2))
    >>> theta.tolist(), abs(float(q))
    ([1.0, 1.0], 0.0)
    """
    grad_f = jax.grad(f)
    hess_f = jax.hessian(f)
    dtype = theta0.dtype

    def halving(theta, q, step):
        def cond(s):
            _, _, _, accepted, tries = s
            return (~accepted) & (tries < max_halvings)

        def body(s):
            alpha, _, _, _, tries = s
            cand = theta + alpha * step
            qc = f(cand)
            ok = jnp.isfinite(qc) & (qc >= q)
            return alpha * 0.5, cand, qc, ok, tries + 1

        init = (jnp.asarray(1.0, dtype), theta, q, jnp.asarray(False), 0)
        _, cand, qc, ok, _ = jax.lax.while_loop(cond, body, init)
        return jnp.where(ok, cand, theta), jnp.where(ok, qc, q), ok

    def cond(s):
        _, _, it, go = s
        return go & (it < max_steps)

    def body(s):
        theta, q, it, _ = s
        step = ascent_direction(grad_f(theta), hess_f(theta))
        theta_new, q_new, ok = halving(theta, q, step)
        go = ok & (q_new - q > tol * (1.0 + jnp.abs(q)))
        return theta_new, q_new, it + 1, go

    q0 = f(theta0)
    theta, q, _, _ = jax.lax.while_loop(cond, body, (theta0, q0, 0, jnp.isfinite(q0)))
    return theta, q
