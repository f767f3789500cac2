"""Which EM implementation runs a batch of fits: the JAX loop or the fused Numba kernel on CPU.

The fused Numba kernel (:mod:`moetheory.kernels.numba_em`) implements the softmax-gate EM of
:func:`moetheory.em.run.run_em` (same iterates up to rounding; ``tests/test_kernels.py``) with one
pass over the data per iteration, and releases the GIL, so independent fits (starts, replicates)
run on every core from a thread pool, each stopping at its own iteration count. On a CPU-only
JAX that is several times faster than ``run_em`` (``benchmarks/results``); on accelerators, for
the other gates and for fixed-iteration runs the JAX loop is used.

``$MOETHEORY_EM_BACKEND`` = ``auto`` (default), ``numba`` or ``jax`` chooses;
``$MOETHEORY_THREADS`` sets the thread count (default: the CPUs this process may use).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from moetheory.params import MoEParams

BACKENDS = ("auto", "numba", "jax")
#: the gate Newton stopping tolerance of the softmax gate step (its default in ``run_em``)
NEWTON_TOL = 1e-12


def numba_implements(spec, fixed_iter: bool = False) -> bool:
    """Whether the Numba kernel implements EM for this model (softmax gate, early stopping).

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> numba_implements(MoESpec(3, 1)), numba_implements(MoESpec(3, 1, gate="topk", top_k=2))
    (True, False)
    """
    return spec.gate == "softmax" and not fixed_iter


def choose_backend(spec, fixed_iter: bool = False, requested=None, what: str = "em_backend") -> str:
    """``"numba"`` or ``"jax"`` for fits of ``spec``.

    Parameters
    ----------
    spec : MoESpec
    fixed_iter : bool, the fits run a fixed number of iterations (JAX only)
    requested : str, optional
        ``"auto"`` (default; also ``$MOETHEORY_EM_BACKEND``), ``"numba"`` or ``"jax"``. Auto picks
        Numba on a CPU-only JAX where the kernel implements the estimator; asking for ``"numba"``
        where it cannot run is an error.
    what : str, the argument name used in error messages

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> choose_backend(MoESpec(2, 1), requested="jax")
    'jax'
    >>> choose_backend(MoESpec(2, 1, gate="topk", top_k=1))
    'jax'
    """
    req = requested or os.environ.get("MOETHEORY_EM_BACKEND", "auto")
    if req not in BACKENDS:
        raise ValueError(f"{what} (or MOETHEORY_EM_BACKEND) must be one of {BACKENDS}; got {req!r}")
    if req == "jax":
        return "jax"
    ok = numba_implements(spec, fixed_iter)
    if req == "numba":
        if not ok:
            raise ValueError(f"{what}='numba' implements the softmax gate without fixed_iter; got "
                             f"gate={spec.gate!r}, fixed_iter={fixed_iter}")
        return "numba"
    import jax

    if not ok or jax.default_backend() != "cpu":
        return "jax"
    try:
        import numba  # noqa: F401
    except ImportError:  # pragma: no cover - numba is a core dependency
        return "jax"
    return "numba"


def thread_count() -> int:
    """``$MOETHEORY_THREADS`` if set, else the number of CPUs this process may run on.

    Examples
    --------
    >>> thread_count() >= 1
    True
    """
    env = os.environ.get("MOETHEORY_THREADS")
    if env:
        try:
            value = int(env)
        except ValueError:
            value = 0
        if value < 1:
            raise ValueError(f"MOETHEORY_THREADS must be a positive integer; got {env!r}")
        return value
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def numba_fit(x, y, w, start: MoEParams, *, tol, max_iter, var_floor, max_newton=50,
              newton_tol=NEWTON_TOL, n_hard=0) -> dict:
    """One softmax-gate EM run on the Numba kernel (NumPy in, NumPy out; never raises).

    Parameters
    ----------
    x : (n, d); y, w : (n,) float64 C-contiguous
    start : MoEParams (``beta0`` (k,), ``beta1`` (k, d), ...)
    tol, max_iter, var_floor, max_newton, newton_tol, n_hard : as :func:`moetheory.em.run.run_em`

    Returns
    -------
    dict with ``params`` (MoEParams, last gate pinned), ``loglik``, ``n_iter``, ``converged``,
    ``floor_hit``, ``trace`` (max_iter + 1,) — and ``error`` (the exception text, with NaN
    parameters and ℓ) when the kernel raised, e.g. on a numerically singular start.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-1, 1, (300, 1)); y = np.sign(x[:, 0]) + 0.3 * rng.standard_normal(300)
    >>> p = MoEParams.create([0.5, 0.], [[1.], [0.]], [[0.], [0.]], [1., -1.], [1., 1.])
    >>> out = numba_fit(x, y, np.ones(300), p, tol=1e-8, max_iter=100, var_floor=1e-10)  # doctest: +SKIP
    >>> out["params"].a.shape, out["converged"]  # doctest: +SKIP
    ((2, 1), True)
    """
    from moetheory.kernels.numba_em import em_loop

    arr = lambda v: np.array(v, dtype=np.float64)  # noqa: E731  (contiguous copies)
    trace = np.full(int(max_iter) + 1, np.nan)
    counts = np.zeros(2, dtype=np.int64)
    tau = arr(getattr(start, "tau", 1.0))
    try:
        b0, b1, a, b, v, ll, n_iter, conv, floor = em_loop(
            x, y, w, arr(start.beta0), arr(start.beta1), arr(start.a), arr(start.b),
            arr(start.var), float(tol), int(max_iter), float(var_floor), int(max_newton),
            float(newton_tol), 1, trace, True, counts, int(n_hard))
    except Exception as err:  # recorded, never raised: one broken start must not end a batch
        k, d = np.shape(start.beta1)
        nan = lambda *s: np.full(s, np.nan)  # noqa: E731
        return {"params": MoEParams(nan(k), nan(k, d), nan(k, d), nan(k), nan(k), tau),
                "loglik": np.nan, "n_iter": 0, "converged": False, "floor_hit": False,
                "trace": trace, "error": f"{type(err).__name__}: {err}"}
    return {"params": MoEParams(b0, b1, a, b, v, tau), "loglik": float(ll), "n_iter": int(n_iter),
            "converged": bool(conv), "floor_hit": bool(floor), "trace": trace}


def map_fits(fn, tasks, threads=None) -> list:
    """``[fn(t) for t in tasks]`` on a thread pool of ``threads`` (default :func:`thread_count`);
    results in task order, so the output does not depend on the thread count.

    Examples
    --------
    >>> map_fits(lambda t: t * t, [1, 2, 3], threads=2)
    [1, 4, 9]
    """
    workers = thread_count() if threads is None else int(threads)
    if workers > 1 and len(tasks) > 1:
        with ThreadPoolExecutor(max_workers=min(workers, len(tasks))) as pool:
            return list(pool.map(fn, tasks))
    return [fn(t) for t in tasks]
