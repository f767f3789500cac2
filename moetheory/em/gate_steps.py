"""Gate M-steps of the top-K, temperature and activation gates (DESIGN.md §3.1).

Each step is a pure JAX function ``f(spec, params, x, resp, **options) -> params``, jittable and
vmappable, registered in :data:`moetheory.em.mstep.GATE_MSTEPS` at import. None of them ever
lowers what it is allowed to optimise:

``topk`` (K < k), ``method="gem"`` (default) — a generalised EM step. The active sets are held
    at those of the E-step (the mask at the current gate); the restricted softmax objective
    Σ r log g(x; β | held sets) is maximised by Newton steps with step-halving (from the current
    gate); then the move from the current gate towards that optimum is halved until the
    *observed* log-likelihood — with the active sets recomputed at the candidate — is not lower
    than at the current gate (the held-set objective is not the true objective: the sets move
    with β_1). If no halving is accepted the gate is kept.
``topk``, ``method="direct"`` — direct maximisation of the observed log-likelihood over the gate
    (experts fixed at their exact M-step values): Newton steps on the almost-everywhere
    derivatives of ℓ (the sets are locally constant), with an eigenvalue-modified Hessian so the
    direction is always an ascent direction, and step-halving on ℓ itself. An ECM algorithm.
``topk`` with K = k — dispatched to the softmax step (identical numerics).
``temperature`` — the gate depends on (β, τ) only through γ = β/τ, and in γ the objective is
    exactly the softmax multinomial logit: the step is the softmax Newton/IRLS step on γ, mapped
    back. τ fixed: β = τγ (with τ = 1 bit-identical to the softmax step). τ estimated: the
    normalisation ‖(β_0, β_1, τ)‖₂ = 1 over the free (non-reference) gate entries and τ, i.e.
    (β, τ) = (γ, 1) / sqrt(1 + ‖γ‖²) — see :func:`normalise_temperature`.
``activation`` — Newton steps via JAX autodiff (``jax.hessian``) of the gate objective in the
    free coordinates of :func:`moetheory.mle.free_layout` (τ on the log scale), eigenvalue-
    modified to an ascent direction, with step-halving (monotone).

Steps called without ``y`` (the data-driven initialisation ``params_from_resp``, which fits a
gate to a partition) cannot evaluate an observed likelihood: the top-K step then fits the dense
softmax gate to the partition's responsibilities (a start, so no monotonicity is owed).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from moetheory.em.mstep import GATE_MSTEPS, gate_objective, softmax_gate_m_step
from moetheory.gates import active_mask, log_gate_weights
from moetheory.model import log_expert_density

TOPK_METHODS = ("gem", "direct")

#: gate options each gate's M-step accepts (checked by :func:`moetheory.fit`).
GATE_OPTIONS = {
    "softmax": ("max_newton", "newton_tol"),
    "topk": ("max_newton", "newton_tol", "method", "max_halvings"),
    "temperature": ("max_newton", "newton_tol", "tau_value"),
    "activation": ("max_newton", "newton_tol", "tau_value"),
}


def needs_observed_likelihood(spec) -> bool:
    """True when the gate step needs (y, weights): the top-K gate with K < k.

    Parameters
    ----------
    spec : MoESpec

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> needs_observed_likelihood(MoESpec(3, 1, gate="topk", top_k=2))
    True
    >>> needs_observed_likelihood(MoESpec(3, 1, gate="topk", top_k=3))
    False
    """
    return spec.gate == "topk" and spec.top_k < spec.n_experts


# ---------------------------------------------------------------------------------------------
# A monotone modified-Newton maximiser (jittable, vmappable).
# ---------------------------------------------------------------------------------------------
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


# ---------------------------------------------------------------------------------------------
# Top-K sparse softmax gate.
# ---------------------------------------------------------------------------------------------
def _pin(params):
    """Reference-category normalisation: last expert's (β_0, β_1) = 0 (softmax, top-K, temperature)."""
    return params._replace(beta0=params.beta0 - params.beta0[-1],
                           beta1=params.beta1 - params.beta1[-1])


def _softmax_pack(params):
    return jnp.concatenate([params.beta1[:-1], params.beta0[:-1, None]], axis=1).reshape(-1)


def _softmax_unpack(params, theta):
    k, d = params.beta1.shape
    full = jnp.concatenate([theta.reshape(k - 1, d + 1), jnp.zeros((1, d + 1), theta.dtype)], axis=0)
    return params._replace(beta1=full[:, :d], beta0=full[:, d])


def _observed_loglik_fn(spec, params, x, y, weights):
    """θ ↦ ℓ(experts of ``params``, gate θ), the active sets recomputed at θ."""
    led = log_expert_density(params, x, y)  # the experts are fixed during the gate step

    def loglik(theta):
        logg = log_gate_weights(spec, _softmax_unpack(params, theta), x)
        ld = jax.scipy.special.logsumexp(logg + led, axis=-1)
        return ld.sum() if weights is None else (weights * ld).sum()

    return loglik


def topk_gate_m_step(spec, params, x, resp, y=None, weights=None, method="gem", max_newton=50,
                     newton_tol=1e-12, max_halvings=40):
    """Gate step of the top-K sparse softmax gate (see the module docstring).

    Parameters
    ----------
    spec : MoESpec with ``gate="topk"``
    params : MoEParams, the current parameters (``beta0`` (k,), ``beta1`` (k, d))
    x : array (n, d); resp : array (n, k)
    y, weights : array (n,) each, the responses and observation weights (given by ``run_em``);
        without ``y`` the step is an initialisation step and fits the dense softmax gate to
        ``resp``.
    method : {"gem", "direct"}
        Generalised EM on held active sets (default) or direct maximisation of the observed
        log-likelihood over the gate.
    max_newton, newton_tol, max_halvings : the Newton loop's limits

    Returns
    -------
    params : MoEParams with a new gate (last expert's gate exactly zero)

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax.numpy as jnp
    >>> from moetheory.em.estep import e_step
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(3, 1, gate="topk", top_k=2)
    >>> p = MoEParams.create([0., 0., 0.], [[1.], [0.], [-1.]], [[1.], [-1.], [0.]], [0., 0., 0.],
    ...                      [1., 1., 1.])
    >>> x = jnp.array([[-1.0], [0.0], [1.0]]); y = jnp.array([-1.0, 0.0, 1.0])
    >>> resp, _ = e_step(spec, p, x, y)
    >>> new = topk_gate_m_step(spec, p, x, resp, y=y)
    >>> new.beta1.shape, float(new.beta0[-1])
    ((3, 1), 0.0)
    """
    if spec.top_k == spec.n_experts:
        # K = k: the top-K gate *is* the softmax gate; same code path, same numbers.
        return softmax_gate_m_step(spec, params, x, resp, max_newton=max_newton, newton_tol=newton_tol)
    if y is None:
        return softmax_gate_m_step(spec, params, x, resp, max_newton=max_newton, newton_tol=newton_tol)
    if method not in TOPK_METHODS:
        raise ValueError(f"method must be one of {TOPK_METHODS} for the top-K gate; got {method!r}")
    params = _pin(params)
    theta0 = _softmax_pack(params)
    loglik = _observed_loglik_fn(spec, params, x, y, weights)
    if method == "direct":
        theta, _ = monotone_newton(loglik, theta0, max_newton, newton_tol, max_halvings)
        return _softmax_unpack(params, theta)

    held = active_mask(spec, params, x)  # the E-step's active sets (the gate has not moved yet)

    def restricted(theta):
        return gate_objective(spec, _softmax_unpack(params, theta), x, resp, mask=held)

    theta_star, _ = monotone_newton(restricted, theta0, max_newton, newton_tol, max_halvings)
    ll0 = loglik(theta0)
    step = theta_star - theta0

    def cond(s):
        _, _, accepted, tries = s
        return (~accepted) & (tries < max_halvings)

    def body(s):
        alpha, _, _, tries = s
        cand = theta0 + alpha * step
        llc = loglik(cand)
        return alpha * 0.5, cand, jnp.isfinite(llc) & (llc >= ll0), tries + 1

    init = (jnp.asarray(1.0, x.dtype), theta0, jnp.asarray(False), 0)
    _, cand, ok, _ = jax.lax.while_loop(cond, body, init)
    return _softmax_unpack(params, jnp.where(ok, cand, theta0))


# ---------------------------------------------------------------------------------------------
# Temperature gate.
# ---------------------------------------------------------------------------------------------
def normalise_temperature(params):
    """Representative of the scale class of a temperature gate: ‖(β_0, β_1, τ)‖₂ = 1.

    The norm runs over the free gate entries (experts 1..k−1 of the pinned gate) and τ. With
    γ = β/τ the representative is (β, τ) = (γ, 1)/sqrt(1 + ‖γ‖²): unique, and defined for every
    γ (including a flat gate γ = 0, where τ = 1). The model is unchanged.

    Parameters
    ----------
    params : MoEParams, gate arrays ``beta0`` (k,), ``beta1`` (k, d), ``tau`` () (a leading
        batch axis is allowed)

    Returns
    -------
    MoEParams, the pinned representative with ‖(β_0, β_1, τ)‖₂ = 1

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> from moetheory.params import MoEParams
    >>> p = MoEParams.create([1., 0.], [[1.], [0.]], [[0.], [0.]], [0., 0.], [1., 1.], tau=2.0)
    >>> q = normalise_temperature(p)  # γ = (0.5, 0.5): divide (γ, 1) by sqrt(1.5)
    >>> round(float(q.tau), 6), round(float(q.beta0[0]), 6), round(float(q.beta1[0, 0]), 6)
    (0.816497, 0.408248, 0.408248)
    """
    p = _pin(params)
    g0 = p.beta0 / p.tau
    g1 = p.beta1 / p.tau
    c = 1.0 / jnp.sqrt(1.0 + (g0 * g0).sum(-1) + (g1 * g1).sum((-2, -1)))
    return p._replace(beta0=c[..., None] * g0, beta1=c[..., None, None] * g1, tau=c)


def temperature_gate_m_step(spec, params, x, resp, tau_value=None, max_newton=50, newton_tol=1e-12):
    """Gate step of the temperature gate: the softmax Newton step on γ = β/τ (module docstring).

    ``tau_value`` (τ fixed only): the known temperature; default: keep ``params.tau``. Because
    the model depends on γ only, moving τ to ``tau_value`` at fixed γ does not change the model.

    Parameters
    ----------
    spec : MoESpec with ``gate="temperature"``
    params : MoEParams, the current parameters (``beta0`` (k,), ``beta1`` (k, d), ``tau`` ())
    x : array (n, d); resp : array (n, k)
    tau_value : float, optional; max_newton : int; newton_tol : float

    Returns
    -------
    params : MoEParams with a new gate (and τ)

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> x = jnp.array([[-1.0], [0.0], [1.0]]); y = jnp.array([-1.0, 0.0, 1.0])
    >>> resp = jnp.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    >>> p = MoEParams.create([1., 0.], [[1.], [0.]], [[0.], [0.]], [0., 0.], [1., 1.], tau=2.0)
    >>> new = temperature_gate_m_step(MoESpec(2, 1, gate="temperature"), p, x, resp)
    >>> new.beta1.shape, float(new.tau)
    ((2, 1), 2.0)
    """
    gamma = params._replace(beta0=params.beta0 / params.tau, beta1=params.beta1 / params.tau)
    new = softmax_gate_m_step(spec, gamma, x, resp, max_newton=max_newton, newton_tol=newton_tol)
    if spec.estimates_tau:
        return normalise_temperature(new._replace(tau=jnp.ones_like(params.tau)))
    tau = params.tau if tau_value is None else jnp.asarray(tau_value, params.tau.dtype)
    return new._replace(beta0=tau * new.beta0, beta1=tau * new.beta1, tau=tau)


# ---------------------------------------------------------------------------------------------
# Activation gate.
# ---------------------------------------------------------------------------------------------
def _gate_layout(spec):
    from moetheory.mle import free_layout  # mle imports model; keep the import local

    return [(f, idx) for f, idx, _ in free_layout(spec) if f in ("beta0", "beta1", "tau")]


def _gate_pack(layout, params):
    vals = []
    for f, idx in layout:
        v = getattr(params, f)[idx]
        vals.append(jnp.log(v) if f == "tau" else v)
    return jnp.stack(vals)


def _gate_unpack(layout, params, theta):
    fields = {"beta0": params.beta0, "beta1": params.beta1, "tau": params.tau}
    for t, (f, idx) in enumerate(layout):
        val = jnp.exp(theta[t]) if f == "tau" else theta[t]
        fields[f] = fields[f].at[idx].set(val)
    return params._replace(**fields)


def activation_gate_m_step(spec, params, x, resp, tau_value=None, max_newton=50, newton_tol=1e-12):
    """Gate step of the activation gate: autodiff Newton in the free coordinates (τ on log scale).

    Normalisation: the last expert's β_0 is 0 (a common β_0 shift is the only invariance once σ
    is non-linear); for σ = identity the last expert's β_1 is pinned as well (it is then the
    temperature gate). ``tau_value`` (τ fixed only): the known temperature, default ``params.tau``.

    Parameters
    ----------
    spec : MoESpec with ``gate="activation"``
    params : MoEParams of JAX arrays, the current parameters (``beta0`` (k,), ``beta1`` (k, d),
        ``tau`` ())
    x : array (n, d); resp : array (n, k)
    tau_value : float, optional; max_newton : int; newton_tol : float

    Returns
    -------
    params : MoEParams with a new gate

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> x = jnp.array([[-1.0], [0.0], [1.0]]); y = jnp.array([-1.0, 0.0, 1.0])
    >>> resp = jnp.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    >>> p = MoEParams.create([0., 0.], [[0.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> p = jax.tree.map(jnp.asarray, p)
    >>> spec = MoESpec(2, 1, gate="activation", activation="tanh")
    >>> new = activation_gate_m_step(spec, p, x, resp)
    >>> new.beta1.shape, float(new.beta0[-1])
    ((2, 1), 0.0)
    """
    if not spec.estimates_tau and tau_value is not None:
        params = params._replace(tau=jnp.asarray(tau_value, params.tau.dtype))
    params = params._replace(beta0=params.beta0 - params.beta0[-1])
    if spec.activation == "identity":
        params = params._replace(beta1=params.beta1 - params.beta1[-1])
    layout = _gate_layout(spec)
    if not layout:  # a single expert: nothing to estimate
        return params

    def objective(theta):
        return gate_objective(spec, _gate_unpack(layout, params, theta), x, resp)

    theta, _ = monotone_newton(objective, _gate_pack(layout, params), max_newton, newton_tol)
    return _gate_unpack(layout, params, theta)


GATE_MSTEPS.update({
    "topk": topk_gate_m_step,
    "temperature": temperature_gate_m_step,
    "activation": activation_gate_m_step,
})
