"""Gate families: log gate weights log g_i(x) for every gate of DESIGN.md §2.2.

All gates are a softmax over an active set of logits, computed in log space (log-sum-exp);
inactive experts get log weight ``-inf`` (weight exactly 0).

| gate          | logit h_i(x)              | active set                  |
|---------------|---------------------------|-----------------------------|
| `softmax`     | β_1iᵀx + β_0i             | all k                       |
| `topk` (K)    | β_1iᵀx + β_0i             | K largest selection scores  |
| `temperature` | (β_1iᵀx + β_0i) / τ       | all k                       |
| `activation`  | (σ(β_1iᵀx) + β_0i) / τ    | all k                       |

The bias sits *inside* the temperature ("inside" convention of DESIGN.md §2.2); the other
convention is only the reparametrisation β_0 ↔ β_0/τ.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp

from moetheory._jax import x64
from moetheory.params import MoEParams
from moetheory.spec import MoESpec

#: Registry of activations σ for the activation gate. Extend with :func:`register_activation`.
ACTIVATIONS: dict[str, Callable] = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "gelu": lambda z: jax.nn.gelu(z, approximate=False),
    "softplus": jax.nn.softplus,  # a smooth ReLU
    # Activations that violate the identifiability conditions, kept to demonstrate it:
    "identity": lambda z: z,
    "square": lambda z: z * z,
}


def register_activation(name: str, fn: Callable, overwrite: bool = False) -> None:
    """Add an activation σ (a jnp-traceable elementwise function) to the registry.

    Parameters
    ----------
    name : str
        Registry key, then usable as ``MoESpec(..., gate="activation", activation=name)``.
    fn : callable
        Elementwise σ: array (n, k) -> array (n, k), traceable by JAX (jit, grad, vmap).
    overwrite : bool
        Replace an existing entry instead of raising ``ValueError``.

    Examples
    --------
    >>> register_activation("erf", jax.scipy.special.erf)   # doctest: +SKIP
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string; got {name!r}")
    if not callable(fn):
        raise TypeError(f"fn must be callable; got {type(fn).__name__}")
    if name in ACTIVATIONS and not overwrite:
        raise ValueError(f"activation {name!r} is already registered; pass overwrite=True to replace it")
    ACTIVATIONS[name] = fn


@x64
def gate_logits(spec: MoESpec, params: MoEParams, x) -> jnp.ndarray:
    """Logits h_i(x), shape (n, k), for x of shape (n, d) (before any top-K masking).

    softmax/topk: β_1ᵀx + β_0; temperature: (β_1ᵀx + β_0)/τ; activation: (σ(β_1ᵀx) + β_0)/τ.

    Examples
    --------
    >>> import numpy as np
    >>> spec = MoESpec(2, 1, gate="temperature")
    >>> p = MoEParams.create([1., 0.], [[2.], [0.]], [[0.], [0.]], [0., 0.], [1., 1.], tau=0.5)
    >>> gate_logits(spec, p, np.ones((1, 1))).tolist()
    [[6.0, 0.0]]
    """
    score = x @ params.beta1.T  # (n, k)
    if spec.gate in ("softmax", "topk"):
        return score + params.beta0
    if spec.gate == "temperature":
        return (score + params.beta0) / params.tau
    sigma = ACTIVATIONS[spec.activation]
    return (sigma(score) + params.beta0) / params.tau


@x64
def active_mask(spec: MoESpec, params: MoEParams, x) -> jnp.ndarray:
    """Boolean (n, k): which experts are active at each x (all, except for top-K).

    For top-K, the K experts with the largest selection score (β_1ᵀx, or the full logit with
    ``select_by="logit"``); ties go to the lower index.

    Parameters
    ----------
    spec : MoESpec
    params : MoEParams
    x : array (n, d)

    Examples
    --------
    >>> import numpy as np
    >>> spec = MoESpec(3, 1, gate="topk", top_k=2)
    >>> p = MoEParams.create([0., 0., 0.], [[-1.], [0.], [1.]], [[0.]] * 3, [0.] * 3, [1.] * 3)
    >>> active_mask(spec, p, np.array([[2.0]])).tolist()
    [[False, True, True]]
    """
    n = x.shape[0]
    k = spec.n_experts
    if spec.gate != "topk" or spec.top_k == k:
        return jnp.ones((n, k), dtype=bool)
    score = x @ params.beta1.T
    if spec.select_by == "logit":
        score = score + params.beta0
    # rank_i = #{j : s_j > s_i, or s_j == s_i and j < i}: ties go to the lower index.
    idx = jnp.arange(k)
    beats = (score[:, None, :] > score[:, :, None]) | (
        (score[:, None, :] == score[:, :, None]) & (idx[None, :] < idx[:, None])[None])
    rank = beats.sum(axis=-1)
    return rank < spec.top_k


@x64
def log_gate_weights(spec: MoESpec, params: MoEParams, x, mask=None) -> jnp.ndarray:
    """log g_i(x), shape (n, k); ``-inf`` for inactive experts.

    Parameters
    ----------
    spec : MoESpec
    params : MoEParams
    x : array (n, d)
    mask : bool array (n, k), optional
        Active sets to use instead of recomputing them (the top-K generalised EM holds the
        E-step's sets fixed during its gate step).

    Examples
    --------
    >>> import numpy as np
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([0., 0.], [[1.], [0.]], [[0.], [0.]], [0., 0.], [1., 1.])
    >>> np.exp(np.asarray(log_gate_weights(spec, p, np.zeros((1, 1))))).round(3).tolist()
    [[0.5, 0.5]]
    """
    h = gate_logits(spec, params, x)
    if spec.gate == "topk" and spec.top_k < spec.n_experts:
        if mask is None:
            mask = active_mask(spec, params, x)
        h = jnp.where(mask, h, -jnp.inf)
    return jax.nn.log_softmax(h, axis=-1)


def shift_invariant_slopes(spec: MoESpec) -> bool:
    """True when a common shift of every β_1 leaves the model unchanged.

    Softmax, top-K (both selection rules rank differences only) and temperature gates: yes.
    Activation gate: only for the identity activation (σ non-linear breaks it).

    Examples
    --------
    >>> shift_invariant_slopes(MoESpec(2, 1)), shift_invariant_slopes(MoESpec(2, 1, gate="activation", activation="tanh"))
    (True, False)
    """
    return spec.gate != "activation" or spec.activation == "identity"


@x64
def pin(spec: MoESpec, params: MoEParams) -> MoEParams:
    """Canonical representative: the last expert's gate pinned to zero.

    Subtracts the last expert's β_0 (always an invariance) and, where it is an invariance
    (:func:`shift_invariant_slopes`), its β_1. Works with a leading batch axis: ``beta0`` (..., k),
    ``beta1`` (..., k, d).

    Examples
    --------
    >>> p = MoEParams.create([1., 3.], [[2.], [5.]], [[0.], [0.]], [0., 0.], [1., 1.])
    >>> q = pin(MoESpec(2, 1), p)
    >>> q.beta0.tolist(), q.beta1.tolist()
    ([-2.0, 0.0], [[-3.0], [0.0]])
    """
    beta0 = params.beta0 - params.beta0[..., -1:]
    if not shift_invariant_slopes(spec):
        return params._replace(beta0=beta0)
    return params._replace(beta0=beta0, beta1=params.beta1 - params.beta1[..., -1:, :])
