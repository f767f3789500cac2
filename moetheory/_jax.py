"""One place for JAX's process-wide state: float64, and the compiled programs it keeps.

Estimation is float64 (DESIGN.md §7). JAX defaults to float32, and the switch is global, so
every public entry point that computes calls :func:`ensure_x64` first. Importing moetheory
never flips it by itself: nothing computes at import.

JAX keeps every program it compiled, and each XLA CPU executable holds several memory
mappings. Linux bounds a process's mappings (``vm.max_map_count``, 65530 by default); a
process that compiles thousands of programs (a long study, a test worker: 18,000 mappings
after the 40 tests of one test file) reaches the bound, the next compilation fails, and the
C++ exception that reports it crashes the process while unwinding. :func:`release_compiled`
drops JAX's caches when a process nears the bound.
"""
from __future__ import annotations

import functools
import gc

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


#: :func:`release_compiled` clears JAX's caches above this share of ``vm.max_map_count``.
MAP_SHARE = 0.5


def _map_limit() -> int | None:
    try:
        with open("/proc/sys/vm/max_map_count") as fh:
            return int(fh.read())
    except (OSError, ValueError):  # not Linux: no such bound to watch
        return None


def release_compiled(share: float = MAP_SHARE) -> bool:
    """Clear JAX's compiled-program caches if this process holds more than ``share`` of the
    memory mappings Linux allows it (module docstring); later calls recompile, or load from
    the persistent compile cache. Returns whether it cleared them.

    Examples
    --------
    >>> release_compiled(share=1.0)   # far from the bound: nothing to do
    False
    """
    limit = _map_limit()
    if limit is None:
        return False
    try:
        with open("/proc/self/maps") as fh:
            n_maps = sum(1 for _ in fh)
    except OSError:
        return False
    if n_maps <= share * limit:
        return False
    jax.clear_caches()
    gc.collect()  # executables go when their last reference does
    return True
