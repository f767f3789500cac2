"""The EM loop: pure, jit-compiled, vmap-friendly (``lax.while_loop``).

One EM iteration = E-step at the current parameters (which also yields the observed
log-likelihood of those parameters), then the exact expert M-step and the gate M-step. The
observed log-likelihood is therefore non-decreasing along the trace (tested).
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp

from moetheory.em.estep import e_step, hard_assign
from moetheory.em.mstep import expert_m_step, gate_m_step, t_df_step, t_precisions
from moetheory.params import MoEParams

class EMResult(NamedTuple):
    """Output of :func:`run_em` (a pytree; batched under vmap).

    Attributes
    ----------
    params : MoEParams, the final estimate
    loglik : scalar, observed log-likelihood at ``params``
    n_iter : int, EM iterations performed
    converged : bool, the stopping test |Δℓ| ≤ max(tol_rel·|ℓ|, tol_abs) was met
    trace : (max_iter + 1,), log-likelihood after each iteration (entry 0: at the start);
        NaN beyond ``n_iter``
    floor_hit : bool, the variance floor was active at some iteration

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax.numpy as jnp
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> p = MoEParams.create([0., 0.], [[0.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> x = jnp.array([[-1.0], [-0.5], [0.5], [1.0]]); y = jnp.array([-1.0, -0.4, 0.6, 1.0])
    >>> res = run_em(MoESpec(2, 1), p, x, y, tol_abs=1e-8, max_iter=20)
    >>> res.trace.shape, res.params.a.shape
    ((21,), (2, 1))
    """

    params: MoEParams
    loglik: jnp.ndarray
    n_iter: jnp.ndarray
    converged: jnp.ndarray
    trace: jnp.ndarray
    floor_hit: jnp.ndarray


def em_step(spec, params, x, y, var_floor, weights=None, hard=False, gate_options=None):
    """One EM iteration. Returns (new params, log-likelihood at the *old* params, floor hit).

    Parameters
    ----------
    spec : MoESpec
    params : MoEParams, the current parameters (``beta1``, ``a`` (k, d); ``beta0``, ``b``,
        ``var`` (k,))
    x : array (n, d); y : array (n,)
    var_floor : scalar, minimum variance
    weights : array (n,), optional observation weights
    hard : bool (Python or traced), use a hard (classification) E-step
    gate_options : dict, optional, passed to the gate M-step

    Returns
    -------
    (MoEParams, scalar log-likelihood at ``params``, bool scalar)

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax.numpy as jnp
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([0., 0.], [[0.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> x = jnp.array([[-1.0], [-0.5], [0.5], [1.0]]); y = jnp.array([-1.0, -0.4, 0.6, 1.0])
    >>> new, loglik, floor_hit = em_step(spec, p, x, y, 1e-10)
    >>> new.a.shape, loglik.shape, bool(floor_hit)
    ((2, 1), (), False)
    """
    resp, loglik = e_step(spec, params, x, y, weights)
    if hard is not False:  # a Python True or a traced flag
        resp = jnp.where(hard, hard_assign(resp), resp)
    # Columns a part does not use are zeroed in its design: their coefficients then have zero
    # gradient, each step is the exact M-step of the restricted model, and constrain() removes
    # what rounding leaves (spec.gate_columns / expert_columns).
    xe, xg = ((x * spec.column_mask("expert"), x * spec.column_mask("gate")) if spec.restricted
              else (x, x))
    # t experts: ECM (Peel & McLachlan 2000) with the latent precisions at the old parameters
    prec = t_precisions(params, xe, y) if spec.t_experts else None
    new, floor_hit = expert_m_step(params, xe, y, resp, var_floor, spec.equal_var, prec)
    if spec.estimates_df:
        new = new._replace(extra={**new.extra, "df": t_df_step(params.extra["df"], resp, prec)})
    # y and the weights reach the gate step: a gate whose step needs the observed likelihood
    # (top-K with K < k: a move is accepted only if it does not decrease) uses them.
    new = gate_m_step(spec, new, xg, resp, y=y, weights=weights, **(gate_options or {}))
    return spec.constrain(new), loglik, floor_hit.any()


@partial(jax.jit, static_argnames=("spec", "max_iter", "gate_options", "fixed_iter"))
def run_em(spec, params, x, y, *, tol_rel=0.0, tol_abs=0.0, max_iter=1000, var_floor=1e-10,
           weights=None, n_hard=0, gate_options=None, fixed_iter=False, n_steps=None) -> EMResult:
    """Run EM from ``params`` until |ℓ_t − ℓ_{t−1}| ≤ max(tol_rel·|ℓ_{t−1}|, tol_abs).

    The two thresholds come from :meth:`moetheory.em.config.EMConfig.stop_thresholds`, where the
    stopping rule is defined; this loop only applies them.

    Parameters
    ----------
    spec : MoESpec (static)
    params : MoEParams, the start
    x : (n, d); y : (n,)
    tol_rel, tol_abs : the stopping test's relative and absolute (nats) thresholds (traced)
    max_iter : int (static), maximum EM iterations
    var_floor : minimum variance; hitting it is reported in ``floor_hit``
    weights : (n,), optional observation weights (0 drops padded rows)
    n_hard : int, the first ``n_hard`` iterations use hard (classification) E-steps; the
        log-likelihood is monotone only after them
    n_steps : int, optional
        Iteration limit ≤ ``max_iter`` (traced, so a short run and a long run share one
        compiled program; ``max_iter`` is static because it sizes the trace).
    gate_options : tuple of (name, value) pairs (static), passed to the gate M-step
    fixed_iter : bool (static), run exactly ``n_steps`` iterations (no early stop; under vmap
        this avoids waiting on a data-dependent loop) — ``converged`` still reports the test.

    Returns
    -------
    EMResult
    """
    opts = dict(gate_options or ())
    trace0 = jnp.full((max_iter + 1,), jnp.nan, dtype=x.dtype)

    limit = max_iter if n_steps is None else jnp.minimum(n_steps, max_iter)

    def body(state):
        p, prev, it, done, n_iter, trace, floor = state
        # Hard (classification) E-steps for the first n_hard iterations: a traced switch, so
        # the program holds a single M-step.
        new, ll_t, hit = em_step(spec, p, x, y, var_floor, weights, hard=it < n_hard,
                                 gate_options=opts)
        # ll_t is the log-likelihood of p = p_it; compare with ℓ(p_{it-1}).
        trace = jnp.where(done, trace, trace.at[it].set(ll_t))
        small = jnp.abs(ll_t - prev) <= jnp.maximum(tol_rel * jnp.abs(prev), tol_abs)
        now = (~done) & (it > n_hard) & small
        n_iter = jnp.where(now, it, n_iter)
        stop = done | now
        # Once converged, p stays (fixed_iter mode keeps looping without moving).
        p_next = jax.tree.map(lambda o, nw: jnp.where(stop, o, nw), p, new)
        floor = floor | (hit & ~stop)
        return p_next, jnp.where(done, prev, ll_t), it + 1, stop, n_iter, trace, floor

    def cond(state):
        it, done = state[2], state[3]
        if fixed_iter:
            return it < limit
        return (~done) & (it < limit)

    init = (params, jnp.asarray(-jnp.inf, x.dtype), 0, jnp.asarray(False), 0, trace0,
            jnp.asarray(False))
    p, prev, it, done, n_iter, trace, floor = jax.lax.while_loop(cond, body, init)
    # Without convergence the loop ends on `limit` updates whose last ℓ was not yet evaluated.
    _, ll_final = e_step(spec, p, x, y, weights)
    trace = jnp.where(done, trace, trace.at[it].set(ll_final))
    small = jnp.abs(ll_final - prev) <= jnp.maximum(tol_rel * jnp.abs(prev), tol_abs)
    late = (~done) & (it > 0) & small
    converged = done | late
    n_iter = jnp.where(done, n_iter, it)
    return EMResult(p, ll_final, n_iter, converged, trace, floor)
