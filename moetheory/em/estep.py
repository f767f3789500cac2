"""E-step: responsibilities and the observed log-likelihood in one pass (log space)."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from moetheory.model import log_joint


def e_step(spec, params, x, y, weights=None, mask=None):
    """Responsibilities and observed log-likelihood at ``params``.

    Parameters
    ----------
    x : array (n, d); y : array (n,)
    weights : array (n,), optional
        Observation weights (1 by default); a weight of 0 drops a padded row.

    Returns
    -------
    resp : array (n, k), rows sum to 1 (times the weight when ``weights`` is given)
    loglik : scalar, Σ_n w_n log p(y_n | x_n)
    """
    lj = log_joint(spec, params, x, y, mask)
    ld = jax.scipy.special.logsumexp(lj, axis=-1)
    resp = jnp.exp(lj - ld[:, None])
    if weights is None:
        return resp, ld.sum()
    return resp * weights[:, None], (weights * ld).sum()


def hard_assign(resp):
    """Classification-EM step: one-hot of the most probable expert, shape (n, k)."""
    w = resp.sum(-1, keepdims=True)
    return jax.nn.one_hot(jnp.argmax(resp, axis=-1), resp.shape[-1], dtype=resp.dtype) * w
