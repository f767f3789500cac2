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


def expert_m_step(params, x, y, resp, var_floor, equal_var: bool = False, prec=None):
    """Exact M-step of the experts: weighted least squares and weighted mean squared residual.

    With ``prec`` (n, k), the latent precisions u_ni of t experts (:func:`t_precisions`), it is
    the ECM's first conditional step (Peel & McLachlan 2000): least squares with weights
    r_ni·u_ni and σ²_i = Σ_n r_ni u_ni e_ni² / Σ_n r_ni.

    Parameters
    ----------
    params : MoEParams (previous values; kept for experts with no weight)
    x : (n, d); y : (n,); resp : (n, k)
    var_floor : scalar, the documented minimum variance
    equal_var : one variance for every expert: the pooled weighted mean squared residual
    prec : (n, k), optional, the t experts' latent precisions at the E-step's parameters

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
    wls = resp if prec is None else resp * prec  # least-squares weights
    gram = jnp.einsum("ni,na,nb->iab", wls, xt, xt)
    rhs = jnp.einsum("ni,na,n->ia", wls, xt, y)
    # A tiny relative ridge only guards exact singularity (e.g. all weight on one x value).
    scale = jnp.trace(gram, axis1=1, axis2=2)[:, None, None] / (d + 1)
    eye = jnp.eye(d + 1, dtype=x.dtype)
    coef = jnp.linalg.solve(gram + 1e-13 * scale * eye, rhs[..., None])[..., 0]  # (k, d+1)
    alive = weight > MIN_EXPERT_WEIGHT
    a = jnp.where(alive[:, None], coef[:, :d], params.a)
    b = jnp.where(alive, coef[:, d], params.b)
    resid = y[:, None] - (x @ a.T + b)
    if equal_var:
        pooled = (wls * resid * resid).sum() / weight.sum()
        var_raw = jnp.full_like(params.var, pooled)
    else:
        var_raw = (wls * resid * resid).sum(0) / jnp.where(alive, weight, 1.0)
        var_raw = jnp.where(alive, var_raw, params.var)
    floor_hit = var_raw < var_floor
    return params._replace(a=a, b=b, var=jnp.maximum(var_raw, var_floor)), floor_hit


def t_precisions(params, x, y):
    """E-step of t experts: the latent precisions u_ni = (ν_i + 1)/(ν_i + e_ni²/σ²_i), shape
    (n, k), with e_ni = y_n − a_iᵀx_n − b_i (y_n given expert i is N(μ, σ²/u), u ~ Γ(ν/2, ν/2);
    u_ni is E[u | y_n, expert i]).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> from moetheory.params import MoEParams
    >>> p = MoEParams.create([0.], [[0.]], [[0.]], [0.], [1.], extra={"df": [3.0]})
    >>> t_precisions(p, jnp.zeros((2, 1)), jnp.array([0.0, 3.0])).ravel().tolist()
    [1.3333333333333333, 0.3333333333333333]
    """
    resid = y[:, None] - (x @ params.a.T + params.b)
    df = params.extra["df"]
    return (df + 1.0) / (df + resid * resid / params.var)


def t_df_step(df_old, resp, prec, n_bisect: int = 64):
    """CM-step 2 of t experts (Peel & McLachlan 2000, eq. 30): each expert's ν maximising the
    expected complete log-likelihood given the E-step's r (n, k) and u (n, k) at ν_old (k,):
    the root of 1 − ψ(ν/2) + log(ν/2) + Σ_n r_ni (log u_ni − u_ni)/Σ_n r_ni
    + ψ((ν_old + 1)/2) − log((ν_old + 1)/2) = 0.

    The left side decreases in ν, so ``n_bisect`` bisections on log ν in
    :data:`moetheory.spec.T_DF_BOUNDS` find it (the interval's end when the root lies beyond:
    the maximiser over the interval, so the step never decreases its objective). A fixed number
    of iterations, so it compiles. Experts without weight keep ν_old.

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax.numpy as jnp
    >>> resp = jnp.ones((4, 1)); prec = jnp.ones((4, 1))      # u = 1: the step gives ν_old + 1
    >>> round(float(t_df_step(jnp.array([10.0]), resp, prec)[0]), 9)
    11.0
    """
    import jax
    from jax.scipy.special import digamma

    from moetheory.spec import T_DF_BOUNDS

    weight = resp.sum(0)
    alive = weight > MIN_EXPERT_WEIGHT
    mean = (resp * (jnp.log(prec) - prec)).sum(0) / jnp.where(alive, weight, 1.0)
    half = 0.5 * (df_old + 1.0)
    const = 1.0 + mean + digamma(half) - jnp.log(half)

    def score(log_nu):
        nu2 = 0.5 * jnp.exp(log_nu)
        return const - digamma(nu2) + jnp.log(nu2)

    def body(_, bounds):
        lo, hi = bounds
        mid = 0.5 * (lo + hi)
        up = score(mid) > 0  # the root lies above mid
        return jnp.where(up, mid, lo), jnp.where(up, hi, mid)

    lo0 = jnp.full_like(df_old, jnp.log(T_DF_BOUNDS[0]))
    hi0 = jnp.full_like(df_old, jnp.log(T_DF_BOUNDS[1]))
    lo, hi = jax.lax.fori_loop(0, n_bisect, body, (lo0, hi0))
    # the ends exactly when the root is beyond them
    nu = jnp.where(score(hi0) >= 0, T_DF_BOUNDS[1],
                   jnp.where(score(lo0) <= 0, T_DF_BOUNDS[0], jnp.exp(0.5 * (lo + hi))))
    return jnp.where(alive, nu, df_old)


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
