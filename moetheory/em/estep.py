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

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax.numpy as jnp
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([0., 0.], [[0.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> x = jnp.array([[-1.0], [0.0], [1.0]]); y = jnp.array([-1.0, 0.0, 1.0])
    >>> resp, loglik = e_step(spec, p, x, y)
    >>> resp.shape, loglik.shape
    ((3, 2), ())
    >>> bool(jnp.allclose(resp.sum(-1), 1.0))
    True
    """
    lj = log_joint(spec, params, x, y, mask)
    ld = jax.scipy.special.logsumexp(lj, axis=-1)
    resp = jnp.exp(lj - ld[:, None])
    if weights is None:
        return resp, ld.sum()
    return resp * weights[:, None], (weights * ld).sum()


def hard_assign(resp):
    """Classification-EM step: one-hot of the most probable expert, shape (n, k).

    Parameters
    ----------
    resp : array (n, k)
        Responsibilities; each row's sum (the observation weight) is kept on its one-hot row.

    Returns
    -------
    array (n, k), one-hot rows scaled by the row sums of ``resp``

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> hard_assign(jnp.array([[0.2, 0.8], [0.6, 0.4]])).tolist()
    [[0.0, 1.0], [1.0, 0.0]]
    """
    w = resp.sum(-1, keepdims=True)
    return jax.nn.one_hot(jnp.argmax(resp, axis=-1), resp.shape[-1], dtype=resp.dtype) * w
