"""One place that turns on float64 in JAX.

Estimation is float64 (DESIGN.md §7). JAX defaults to float32, and the switch is global, so
every public entry point that computes calls :func:`ensure_x64` first. Importing moetheory
never flips it by itself: nothing computes at import.
"""
from __future__ import annotations

import functools

import jax

_ENABLED = False


def ensure_x64() -> None:
    """Enable 64-bit floats in JAX (idempotent).

    Examples
    --------
    >>> ensure_x64()
    >>> import jax.numpy as jnp
    >>> jnp.zeros(1).dtype
    dtype('float64')
    """
    global _ENABLED
    if not _ENABLED:
        jax.config.update("jax_enable_x64", True)
        _ENABLED = True


def x64(fn):
    """Decorator for public entry points: :func:`ensure_x64`, then ``fn`` (docstring kept)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        ensure_x64()
        return fn(*args, **kwargs)

    return wrapper
