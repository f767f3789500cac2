"""The Gaussian MoE conditional density and what follows from it.

p(y | x) = Σ_i g_i(x) N(y; a_iᵀx + b_i, ν_i)  (DESIGN.md §2.1), always in log space; with
``spec.experts="t"`` the experts are Student t (:func:`log_expert_density`). The gate
g comes from ``spec.gate_family`` (:mod:`moetheory.gates`), evaluated on the gate's design
(today the same x as the experts'). A gate that models its input (``gate.joint``, the Gaussian
gate) makes the likelihood the joint one: :func:`log_joint` then holds log p(x, expert i, y) and
:func:`log_density` / :func:`log_likelihood` are log p(x, y) — the quantity estimators maximise.
Functions are pure JAX, jit- and vmap-friendly; ``spec`` is static. Each public function turns
on float64 first (:func:`moetheory._jax.ensure_x64`): estimation is float64 (DESIGN.md §7).
"""
from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp

from moetheory._jax import ensure_x64, x64
from moetheory.params import MoEParams
from moetheory.spec import MoESpec

_LOG_2PI = math.log(2.0 * math.pi)


@x64
def expert_means(params: MoEParams, x) -> jnp.ndarray:
    """Expert means a_iᵀx + b_i, shape (n, k), for x of shape (n, d).

    Examples
    --------
    >>> import numpy as np
    >>> p = MoEParams.create([0., 0.], [[0.], [0.]], [[1.], [-1.]], [0., 2.], [1., 1.])
    >>> expert_means(p, np.array([[3.0]])).tolist()
    [[3.0, -1.0]]
    """
    return x @ params.a.T + params.b


@x64
def log_expert_density(spec: MoESpec, params: MoEParams, x, y) -> jnp.ndarray:
    """Each expert's log-density of y_n, shape (n, k), for x (n, d) and y (n,): the one place of
    the experts' density.

    Gaussian experts: log N(y_n; a_iᵀx_n + b_i, ν_i). Student-t experts (``spec.experts="t"``):
    log t_ν(y_n; μ, σ²) = lgamma((ν+1)/2) − lgamma(ν/2) − ½ log(νπσ²) − (ν+1)/2 log(1 + e²/(νσ²))
    with e = y_n − μ, μ = a_iᵀx_n + b_i, σ² = ``var``_i and ν = ``extra["df"]``_i.

    Examples
    --------
    >>> import numpy as np
    >>> p = MoEParams.create([0.], [[0.]], [[0.]], [0.], [1.])
    >>> float(log_expert_density(MoESpec(1, 1), p, np.zeros((1, 1)), np.zeros(1))[0, 0])
    -0.9189385332046727
    >>> pt = MoEParams.create([0.], [[0.]], [[0.]], [0.], [1.], extra={"df": [1.0]})   # Cauchy
    >>> round(float(log_expert_density(MoESpec(1, 1, experts="t"), pt, np.zeros((1, 1)),
    ...                                np.ones(1))[0, 0]), 6)               # log(1/(2π))
    -1.837877
    """
    resid = y[:, None] - expert_means(params, x)
    if spec.t_experts:
        return log_t_density(resid, params.var, params.extra["df"])
    return -0.5 * (_LOG_2PI + jnp.log(params.var) + resid * resid / params.var)


def log_t_density(resid, var, df):
    """log t_ν(e; 0, σ²) of residuals e (n, k) for scales² σ² = ``var`` (k,) and ν = ``df`` (k,).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> round(float(log_t_density(jnp.zeros((1, 1)), jnp.ones(1), jnp.ones(1))[0, 0]), 6)  # -log π
    -1.14473
    """
    from jax.scipy.special import gammaln

    half = 0.5 * (df + 1.0)
    return (gammaln(half) - gammaln(0.5 * df) - 0.5 * jnp.log(df * jnp.pi * var)
            - half * jnp.log1p(resid * resid / (df * var)))


@x64
def log_joint(spec: MoESpec, params: MoEParams, x, y, mask=None) -> jnp.ndarray:
    """log g_i(x_n) + log N(y_n; a_iᵀx_n + b_i, ν_i), shape (n, k); ``-inf`` where expert i is
    inactive (top-K). For a gate that models x (``joint``) the gate term is log p(x_n, expert i).

    Parameters
    ----------
    spec : MoESpec
    params : MoEParams
    x : array (n, d)
    y : array (n,)
    mask : bool array (n, k), optional
        Active sets to hold fixed (see :func:`moetheory.gates.log_gate_weights`).

    Examples
    --------
    >>> import numpy as np
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([0., 0.], [[0.], [0.]], [[0.], [0.]], [0., 0.], [1., 1.])
    >>> log_joint(spec, p, np.zeros((3, 1)), np.zeros(3)).shape
    (3, 2)
    """
    return (spec.gate_family.log_joint_weights(spec, params, x, mask)
            + log_expert_density(spec, params, x, y))


@x64
def log_density(spec: MoESpec, params: MoEParams, x, y) -> jnp.ndarray:
    """Log-density of observation n, shape (n,): log p(y_n | x_n), or log p(x_n, y_n) for a gate
    that models x (``spec.gate_family.joint``).

    Examples
    --------
    >>> import numpy as np
    >>> spec = MoESpec(1, 1)
    >>> p = MoEParams.create([0.], [[0.]], [[0.]], [0.], [1.])
    >>> float(log_density(spec, p, np.zeros((1, 1)), np.zeros(1))[0])  # log N(0; 0, 1)
    -0.9189385332046727
    """
    return jax.scipy.special.logsumexp(log_joint(spec, params, x, y), axis=-1)


@x64
def log_likelihood(spec: MoESpec, params: MoEParams, x, y, weights=None) -> jnp.ndarray:
    """Σ_n log p(y_n | x_n) (Σ_n log p(x_n, y_n) for a joint gate), a scalar, for x (n, d) and
    y (n,): the log-likelihood estimators maximise.

    ``weights`` (n,), optional, multiplies each observation's term (the study runner pads
    samples with zero-weight rows).

    Examples
    --------
    >>> import numpy as np
    >>> spec = MoESpec(1, 1)
    >>> p = MoEParams.create([0.], [[0.]], [[0.]], [0.], [1.])
    >>> round(float(log_likelihood(spec, p, np.zeros((2, 1)), np.zeros(2))), 6)
    -1.837877
    """
    ld = log_density(spec, params, x, y)
    return ld.sum() if weights is None else (weights * ld).sum()


@x64
def responsibilities(spec: MoESpec, params: MoEParams, x, y) -> jnp.ndarray:
    """Posterior probabilities r_ni = P(expert i | x_n, y_n), shape (n, k); rows sum to 1.

    x is (n, d) and y is (n,); this is the E-step of EM.

    Examples
    --------
    >>> import numpy as np
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([0., 0.], [[0.], [0.]], [[0.], [0.]], [-1., 1.], [1., 1.])
    >>> responsibilities(spec, p, np.zeros((1, 1)), np.zeros(1)).tolist()
    [[0.5, 0.5]]
    """
    return jax.nn.softmax(log_joint(spec, params, x, y), axis=-1)


@x64
def gate_probabilities(spec: MoESpec, params: MoEParams, x) -> jnp.ndarray:
    """Gate weights g_i(x_n), shape (n, k), for x of shape (n, d); rows sum to 1.

    Examples
    --------
    >>> import numpy as np
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([0., 0.], [[0.], [0.]], [[0.], [0.]], [0., 0.], [1., 1.])
    >>> gate_probabilities(spec, p, np.zeros((1, 1))).tolist()
    [[0.5, 0.5]]
    """
    return jnp.exp(spec.gate_family.log_weights(spec, params, x))


@x64
def predict_mean(spec: MoESpec, params: MoEParams, x) -> jnp.ndarray:
    """Predictive mean E[y | x] = Σ_i g_i(x)(a_iᵀx + b_i), shape (n,), for x (n, d).

    Examples
    --------
    >>> import numpy as np
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([0., 0.], [[0.], [0.]], [[0.], [0.]], [-1., 3.], [1., 1.])
    >>> predict_mean(spec, p, np.zeros((1, 1))).tolist()
    [1.0]
    """
    return (gate_probabilities(spec, params, x) * expert_means(params, x)).sum(-1)


@x64
def predict_var(spec: MoESpec, params: MoEParams, x) -> jnp.ndarray:
    """Predictive variance Var[y | x] = Σ_i g_i (ν_i + μ_i²) − (Σ_i g_i μ_i)², shape (n,),
    for x (n, d), with μ_i = a_iᵀx + b_i and ν_i the expert's noise variance
    (:func:`expert_variances`: σ²ν/(ν − 2) for t experts, infinite when ν ≤ 2).

    Examples
    --------
    >>> import numpy as np
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([0., 0.], [[0.], [0.]], [[0.], [0.]], [-1., 1.], [1., 1.])
    >>> predict_var(spec, p, np.zeros((1, 1))).tolist()     # 1 + spread of the means
    [2.0]
    """
    g = gate_probabilities(spec, params, x)
    mu = expert_means(params, x)
    mean = (g * mu).sum(-1)
    return (g * (expert_variances(spec, params) + mu * mu)).sum(-1) - mean * mean


def expert_variances(spec: MoESpec, params: MoEParams) -> jnp.ndarray:
    """Each expert's noise variance (k,): ``var`` for Gaussian experts; σ²ν/(ν − 2) for t
    experts with ν > 2 (infinite for ν ≤ 2).

    Examples
    --------
    >>> p = MoEParams.create([0., 0.], [[0.], [0.]], [[0.], [0.]], [0., 0.], [1., 1.],
    ...                      extra={"df": [4.0, 2.0]})
    >>> expert_variances(MoESpec(2, 1, experts="t"), p).tolist()
    [2.0, inf]
    """
    var = jnp.asarray(params.var)
    if not spec.t_experts:
        return var
    df = jnp.asarray(params.extra["df"])
    return jnp.where(df > 2, var * df / jnp.where(df > 2, df - 2.0, 1.0), jnp.inf)


@partial(jax.jit, static_argnums=1)
def _sample(key, spec, params, x):
    k_gate, k_noise = jax.random.split(key)
    logg = spec.gate_family.log_weights(spec, params, x)
    z = jax.random.categorical(k_gate, logg, axis=-1)
    mu = jnp.take_along_axis(expert_means(params, x), z[:, None], axis=-1)[:, 0]
    sd = jnp.sqrt(params.var[z])
    if spec.t_experts:  # t noise: scale σ, ν degrees of freedom
        noise = jax.random.t(k_noise, params.extra["df"][z], mu.shape, dtype=mu.dtype)
    else:
        noise = jax.random.normal(k_noise, mu.shape, dtype=mu.dtype)
    return mu + sd * noise, z


def sample(key, spec: MoESpec, params: MoEParams, x, return_labels: bool = False):
    """Draw y_n ~ p(y | x_n) for each row of x.

    Parameters
    ----------
    key : jax PRNG key
    spec : MoESpec
    params : MoEParams
    x : array (n, d)
    return_labels : bool
        Also return the latent expert index z_n, shape (n,).

    Returns
    -------
    y : array (n,), or (y, z)

    Examples
    --------
    >>> import jax, numpy as np
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([0., 0.], [[1.], [0.]], [[1.], [-1.]], [0., 0.], [.1, .1])
    >>> sample(jax.random.key(0), spec, p, np.zeros((3, 1))).shape
    (3,)
    """
    from moetheory.validation import check_x

    ensure_x64()
    x = check_x(x, spec.dim)
    y, z = _sample(key, spec, jax.tree.map(jnp.asarray, params), jnp.asarray(x))
    return (y, z) if return_labels else y
