"""Gate-function error: how far the fitted gate probabilities are from the true ones.

Parameter errors of a weakly identified gate can be O(1) while the gate *function* is already
close (the activation design of DESIGN.md §5.3: tanh gate parameters off by 1–2 with gate
probabilities within 0.055). This metric measures the function:

    E_gate = sqrt( mean_x Σ_j ( Σ_{i∈A_j} g_i(x) − g*_j(x) )² ),

a design-weighted L2 distance between the true gate probabilities g*_j(x) and the fitted ones
summed over the fitted experts of each true expert's cell A_j. The cells here are formed by the
*expert* parameters (a, b, ν) alone (nearest true expert, ties to the lower index), so the metric
needs no gate translation and is invariant to relabelling the fitted experts; x runs over fixed
design nodes (:func:`moetheory.study.density.design_nodes`). E_gate ∈ [0, √2].
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from moetheory._jax import ensure_x64
from moetheory.params import MoEParams

__all__ = ["gate_error"]


def _gate_error_one(fit_spec, fitted, truth_spec, truth, nodes):
    from moetheory.model import gate_probabilities

    ff = jnp.concatenate([fitted.a, fitted.b[:, None], fitted.var[:, None]], axis=1)
    tf = jnp.concatenate([truth.a, truth.b[:, None], truth.var[:, None]], axis=1)
    assign = jnp.argmin(jnp.sum((ff[:, None, :] - tf[None, :, :]) ** 2, axis=-1), axis=1)
    onehot = (assign[:, None] == jnp.arange(tf.shape[0])[None, :]).astype(jnp.float64)
    g = gate_probabilities(fit_spec, fitted, nodes) @ onehot  # (M, k*)
    gs = gate_probabilities(truth_spec, truth, nodes)
    return jnp.sqrt(jnp.mean(jnp.sum((g - gs) ** 2, axis=1)))


def gate_error(fit_spec, fitted: MoEParams, truth_spec, truth: MoEParams, nodes):
    """Design-weighted L2 distance between fitted and true gate probabilities (module docstring).

    Parameters
    ----------
    fit_spec, truth_spec : MoESpec
        Structures (gates) of the fitted and the true model.
    fitted : MoEParams
        k experts; may carry a leading batch axis, shape (batch, k, ...).
    truth : MoEParams
        k* experts, unbatched.
    nodes : array (M, d)
        Design nodes.

    Returns
    -------
    jnp.ndarray, shape () or (batch,)

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 1, gate="activation", activation="tanh", tau="estimated")
    >>> truth = MoEParams.create([.5, 0.], [[3.], [-1.5]], [[-1.], [1.]], [.5, -.5], [.05, .05],
    ...                          tau=.5)
    >>> nodes = np.linspace(-1, 1, 9)[:, None]
    >>> float(gate_error(spec, truth.permute([1, 0]), spec, truth, nodes))
    0.0
    """
    ensure_x64()
    fitted = fitted.map(lambda v: jnp.asarray(v, dtype=jnp.float64))
    truth = truth.map(lambda v: jnp.asarray(v, dtype=jnp.float64))
    nodes = jnp.asarray(nodes, dtype=jnp.float64)
    if nodes.ndim != 2 or nodes.shape[1] != truth_spec.dim:
        raise ValueError(f"nodes must have shape (M, d) = (M, {truth_spec.dim}); got "
                         f"{tuple(nodes.shape)}")
    if fitted.beta0.ndim == 2:
        return jax.vmap(lambda p: _gate_error_one(fit_spec, p, truth_spec, truth, nodes))(
            fitted._replace(tau=jnp.broadcast_to(fitted.tau, fitted.beta0.shape[:1])))
    return _gate_error_one(fit_spec, fitted, truth_spec, truth, nodes)
