"""Covariate designs x ∈ R^{n×d} (DESIGN.md §2.3): grid, uniform, gaussian, sphere."""
from __future__ import annotations

import jax
import jax.numpy as jnp

from moetheory._jax import x64

#: "gate": x drawn from the truth's own model of its input (gates that model x, e.g. the Gaussian
#: gate); studies only (:func:`moetheory.study.runner.replicate_data`), not :func:`make_design`
DESIGNS = ("grid", "uniform", "gaussian", "sphere", "gate")


@x64
def make_design(key, name: str, n: int, dim: int = 1, *, low: float = -1.0, high: float = 1.0,
                scale: float = 1.0, radius: float = 1.0) -> jnp.ndarray:
    """Draw (or lay out) n covariate vectors.

    Parameters
    ----------
    key : jax PRNG key (ignored by ``grid``)
    name : {"grid", "uniform", "gaussian", "sphere"}
        ``grid``: linspace(low, high, n), d = 1 only (the softmax paper's official design);
        ``uniform``: U([low, high]^d); ``gaussian``: N(0, scale² I_d); ``sphere``: uniform on
        the sphere of the given radius in R^d.
    n : int
    dim : int

    Returns
    -------
    x : array (n, dim), float64 when x64 is on

    Examples
    --------
    >>> make_design(None, "grid", 3, low=0.0, high=1.0)[:, 0].tolist()
    [0.0, 0.5, 1.0]
    """
    if name not in DESIGNS:
        raise ValueError(f"design must be one of {DESIGNS}; got {name!r}")
    if name == "gate":
        raise ValueError("design 'gate' draws x from a truth's gate (a gate that models x): it is "
                         "a study design (moetheory.study.runner.replicate_data), not make_design's")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive integer; got {n!r}")
    if isinstance(dim, bool) or not isinstance(dim, int) or dim < 1:
        raise ValueError(f"dim must be a positive integer; got {dim!r}")
    if name in ("grid", "uniform") and not high > low:
        raise ValueError(f"high must exceed low; got low={low}, high={high}")
    if name == "grid":
        if dim != 1:
            raise ValueError(f"design 'grid' needs dim=1; got dim={dim}")
        return jnp.linspace(low, high, n)[:, None]
    if key is None:
        raise ValueError(f"design {name!r} is random: key must be a JAX PRNG key, got None")
    if name == "uniform":
        return jax.random.uniform(key, (n, dim), minval=low, maxval=high, dtype=jnp.float64)
    if name == "gaussian":
        return scale * jax.random.normal(key, (n, dim), dtype=jnp.float64)
    if radius <= 0:
        raise ValueError(f"radius must be > 0; got {radius}")
    z = jax.random.normal(key, (n, dim), dtype=jnp.float64)
    return radius * z / jnp.linalg.norm(z, axis=1, keepdims=True)
