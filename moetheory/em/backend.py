"""Which EM implementation runs a batch of fits: the JAX loop, or on CPU the fused Numba kernel
or its NumPy twin.

The fused Numba kernel (:mod:`moetheory.kernels.numba_em`) implements the softmax-gate EM of
:func:`moetheory.em.run.run_em` (same iterates up to rounding; ``tests/test_kernels.py``) with one
pass over the data per iteration, and releases the GIL, so independent fits (starts, replicates)
run on every core from a thread pool, each stopping at its own iteration count. On a CPU-only
JAX that is several times faster than ``run_em`` (``benchmarks/results``); on accelerators, for
the other gates and for fixed-iteration runs the JAX loop is used.

The Numba kernel is compiled on its first use in an install (about a minute on 2 cores, then
cached on disk). Fits of small data (n·k ≤ :data:`NUMPY_MAX_CELLS`) run the same algorithm in
vectorised NumPy instead (:mod:`moetheory.kernels.numpy_em`): nothing to compile, and at that
size at most a few times slower per iteration (``benchmarks/results/first_fit.md``). The choice
depends on the problem only, never on what happens to be compiled, so a seed gives the same
numbers in every process. Study cells ask for ``"numba"`` explicitly (thousands of fits share
one compilation).

``$MOETHEORY_EM_BACKEND`` = ``auto`` (default), ``numba``, ``numpy`` or ``jax`` chooses;
``$MOETHEORY_THREADS`` sets the thread count (default: the CPUs this process may use).
"""
from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from moetheory.params import MoEParams

BACKENDS = ("auto", "numba", "numpy", "jax")
#: the backends that run the softmax EM on CPU, one start per task (:func:`cpu_fit`)
CPU_BACKENDS = ("numba", "numpy")
#: automatic choice: data with n·k at most this run on the NumPy path (no compilation); larger
#: ones on the Numba kernel (compiled once per install)
NUMPY_MAX_CELLS = 10_000
#: the gate Newton stopping tolerance of the softmax gate step (its default in ``run_em``)
NEWTON_TOL = 1e-12


#: gate options the Numba kernel implements (others need the JAX loop)
NUMBA_GATE_OPTIONS = ("max_newton", "newton_tol")


def numba_implements(spec, fixed_iter: bool = False, gate_options=()) -> bool:
    """Whether the Numba kernel (and its NumPy twin) implements EM for this model
    (:attr:`MoESpec.cpu_kernels`: the softmax gate on every column; early stopping; gate options
    among :data:`NUMBA_GATE_OPTIONS`).

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> numba_implements(MoESpec(3, 1)), numba_implements(MoESpec(3, 1, gate="topk", top_k=2))
    (True, False)
    """
    return (spec.cpu_kernels and not fixed_iter
            and set(dict(gate_options or ())) <= set(NUMBA_GATE_OPTIONS))


def small_data(spec, n_obs) -> bool:
    """Whether data of ``n_obs`` rows is small enough for the NumPy path of the softmax gate on
    CPU (n·k ≤ :data:`NUMPY_MAX_CELLS`): the one size rule of the EM backend and of the
    derivatives (:func:`moetheory.em.certify.derivative_backend`).

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> small_data(MoESpec(2, 1), 2000), small_data(MoESpec(3, 1), 10 ** 5)
    (True, False)
    """
    return n_obs is not None and float(n_obs) * spec.n_experts <= NUMPY_MAX_CELLS


def choose_backend(spec, fixed_iter: bool = False, requested=None, what: str = "em_backend",
                   gate_options=(), n_obs=None) -> str:
    """``"numba"``, ``"numpy"`` or ``"jax"`` for fits of ``spec``.

    Parameters
    ----------
    spec : MoESpec
    fixed_iter : bool, the fits run a fixed number of iterations (JAX only)
    gate_options : (name, value) pairs of the gate step
    requested : str, optional
        ``"auto"`` (default; also ``$MOETHEORY_EM_BACKEND``), ``"numba"``, ``"numpy"`` or
        ``"jax"``. Auto picks, where the CPU kernels implement the estimator on a CPU-only JAX,
        NumPy for small data (:func:`small_data` of ``n_obs``) and Numba otherwise (also when
        ``n_obs`` is not given); asking for ``"numba"`` or ``"numpy"`` where they cannot run is
        an error.
    what : str, the argument name used in error messages
    n_obs : int, optional, the rows of the data (the automatic choice by size)

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> choose_backend(MoESpec(2, 1), requested="jax")
    'jax'
    >>> choose_backend(MoESpec(2, 1, gate="topk", top_k=1))
    'jax'
    >>> choose_backend(MoESpec(2, 1), n_obs=150), choose_backend(MoESpec(2, 1), n_obs=10 ** 5)
    ('numpy', 'numba')
    """
    req = requested or os.environ.get("MOETHEORY_EM_BACKEND", "auto")
    if req not in BACKENDS:
        raise ValueError(f"{what} (or MOETHEORY_EM_BACKEND) must be one of {BACKENDS}; got {req!r}")
    if req == "jax":
        return "jax"
    ok = numba_implements(spec, fixed_iter, gate_options)
    if req in CPU_BACKENDS:
        if not ok:
            raise ValueError(f"{what}={req!r} implements the softmax gate without fixed_iter, with "
                             f"gate options among {NUMBA_GATE_OPTIONS}; got gate={spec.gate_name!r}, "
                             f"fixed_iter={fixed_iter}, gate options {sorted(dict(gate_options or ()))}")
        return req
    if not ok or jax.default_backend() != "cpu":
        return "jax"
    if small_data(spec, n_obs):
        return "numpy"
    try:
        import numba  # noqa: F401
    except ImportError:  # pragma: no cover - numba is a core dependency
        return "numpy"
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


def kernel_array(v) -> np.ndarray:
    """``v`` as the one array type the Numba kernels are compiled for: float64, C-contiguous,
    writable (a copy only when ``v`` is not already one).

    Examples
    --------
    >>> a = np.zeros(3); a.flags.writeable = False
    >>> kernel_array(a).flags.writeable, kernel_array(np.zeros(3)) is not None
    (True, True)
    """
    return np.require(np.asarray(v, dtype=np.float64), requirements=("C", "W"))


def cpu_fit(x, y, w, start: MoEParams, *, tol_rel, tol_abs, max_iter, var_floor, max_newton=1,
            newton_tol=NEWTON_TOL, n_hard=0, fuse_check=True, backend="numba") -> dict:
    """One softmax-gate EM run on the Numba kernel or its NumPy twin (NumPy in, NumPy out;
    never raises).

    Parameters
    ----------
    x : (n, d); y, w : (n,) float64 C-contiguous
    start : MoEParams (``beta0`` (k,), ``beta1`` (k, d), ...)
    tol_rel, tol_abs, max_iter, var_floor, max_newton, newton_tol, n_hard : as
        :func:`moetheory.em.run.run_em`
    fuse_check : the one-pass iteration of ``max_newton=1`` (False: two passes, as needed when
        a single iteration's end point must be exact, e.g. by SQUAREM); Numba only
    backend : "numba" (:func:`moetheory.kernels.numba_em.em_loop`) or "numpy"
        (:func:`moetheory.kernels.numpy_em.em_loop`)

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
    >>> out = cpu_fit(x, y, np.ones(300), p, tol_rel=0.0, tol_abs=3e-6, max_iter=100,
    ...               var_floor=1e-10, backend="numpy")
    >>> out["params"].a.shape, out["converged"]
    ((2, 1), True)
    """
    if backend == "numpy":
        from moetheory.kernels.numpy_em import em_loop
    else:
        from moetheory.kernels.numba_em import em_loop

    arr = lambda v: np.array(v, dtype=np.float64)  # noqa: E731  (contiguous copies)
    # one argument type for Numba: read-only data (views of JAX arrays, in study cells) would
    # compile the kernel a second time (a minute after an install)
    x, y, w = (kernel_array(v) for v in (x, y, w))
    trace = np.full(int(max_iter) + 1, np.nan)
    counts = np.zeros(2, dtype=np.int64)
    tau = arr(getattr(start, "tau", 1.0))
    try:
        b0, b1, a, b, v, ll, n_iter, conv, floor = em_loop(
            x, y, w, arr(start.beta0), arr(start.beta1), arr(start.a), arr(start.b),
            arr(start.var), float(tol_rel), float(tol_abs), int(max_iter), float(var_floor),
            int(max_newton), float(newton_tol), 1, trace, bool(fuse_check), counts, int(n_hard))
    except Exception as err:  # recorded, never raised: one broken start must not end a batch
        k, d = np.shape(start.beta1)
        nan = lambda *s: np.full(s, np.nan)  # noqa: E731
        return {"params": MoEParams(nan(k), nan(k, d), nan(k, d), nan(k), nan(k), tau),
                "loglik": np.nan, "n_iter": 0, "converged": False, "floor_hit": False,
                "trace": trace, "error": f"{type(err).__name__}: {err}"}
    return {"params": MoEParams(b0, b1, a, b, v, tau), "loglik": float(ll), "n_iter": int(n_iter),
            "converged": bool(conv), "floor_hit": bool(floor), "trace": trace}


#: the Numba kernel's EM run (the name its callers know)
numba_fit = cpu_fit


def compile_numba() -> float:
    """Compile the Numba kernels of the CPU pipeline (EM and ℓ's derivatives), or load them from
    Numba's on-disk cache, by running each once on a tiny problem: a study calls it before its
    first cell so that its progress display can show the compile phase as such and time its
    cells without it. Numba compiles per argument type, never per shape, so every later fit
    reuses this compilation.

    Returns
    -------
    float, the seconds it took (about a minute after an install on 2 cores; about a second
    once cached)

    Examples
    --------
    >>> compile_numba() >= 0.0  # doctest: +SKIP
    True
    """
    import time

    from moetheory.kernels.numba_derivs import softmax_derivatives, softmax_loglik

    t0 = time.perf_counter()
    x = np.linspace(-1.0, 1.0, 16)[:, None]
    y = np.where(x[:, 0] > 0, 1.0, -1.0) + 0.1 * np.cos(7.0 * x[:, 0])
    w = np.ones(16)
    p = MoEParams.create([0.5, 0.0], [[1.0], [0.0]], [[0.0], [0.0]], [1.0, -1.0], [1.0, 1.0])
    for fuse in (True, False):  # the one-pass iteration and SQUAREM's two-pass one
        cpu_fit(x, y, w, p, tol_rel=0.0, tol_abs=0.0, max_iter=2, var_floor=1e-10,
                fuse_check=fuse, backend="numba")
    softmax_derivatives(p, x, y, w)
    softmax_loglik(p, x, y, w)
    return time.perf_counter() - t0


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


def _take(tree, i):
    return jax.tree.map(lambda v: v[i], tree)


@partial(jax.jit, static_argnames=("spec", "max_iter", "gate_options", "fixed_iter"))
def run_batch(spec, starts, x, y, w=None, *, tol_rel=0.0, tol_abs=0.0, max_iter=1000,
              var_floor=1e-10, n_hard=0, gate_options=None, fixed_iter=False, n_steps=None):
    """:func:`moetheory.em.run.run_em` over a batch of starts (leading axis; an EMResult with
    that axis): ``vmap`` on accelerators, ``lax.map`` on CPU (a start stops at its own
    iteration count instead of waiting for the slowest of the batch:
    ``benchmarks/results/batched.md``). Arguments as ``run_em``; ``w`` its ``weights``."""
    from moetheory.em.run import run_em

    one = lambda p: run_em(spec, p, x, y, tol_rel=tol_rel, tol_abs=tol_abs,  # noqa: E731
                           max_iter=max_iter, var_floor=var_floor, weights=w, n_hard=n_hard,
                           gate_options=gate_options, fixed_iter=fixed_iter, n_steps=n_steps)
    if jax.default_backend() == "cpu":
        return jax.lax.map(one, starts)
    return jax.vmap(one)(starts)


def run_starts(spec, starts: MoEParams, x, y, w, *, backend: str, tol_rel, tol_abs, max_iter,
               var_floor, n_steps=None, n_hard=0, gate_options=(), fixed_iter=False,
               threads=None):
    """EM from each start of a batch (leading axis S) on ``backend``; NumPy results.

    Parameters
    ----------
    spec : MoESpec
    starts : MoEParams with a leading start axis: ``beta1``, ``a`` (S, k, d); ``beta0``, ``b``,
        ``var`` (S, k); ``tau`` (S,)
    x : (n, d); y, w : (n,) — w the observation weights (0: a padded row)
    backend : "numba" or "numpy" (one start per thread, :func:`cpu_fit`) or "jax" (one compiled program:
        ``tol_rel``, ``tol_abs``, ``n_hard`` and ``n_steps`` are traced, so short and long runs
        of one batch size share it)
    tol_rel, tol_abs : the stopping thresholds (:meth:`moetheory.em.config.EMConfig.stop_thresholds`)
    max_iter : int, sizes the trace; n_steps : int ≤ max_iter, the iteration limit of this run
    var_floor, n_hard, gate_options, fixed_iter : as :func:`moetheory.em.run.run_em`
    threads : Numba threads (default :func:`thread_count`)

    Returns
    -------
    dict of NumPy arrays with a leading start axis: ``params`` (MoEParams), ``loglik`` (S,),
    ``n_iter`` (S,), ``converged`` (S,), ``floor_hit`` (S,), ``trace`` (S, max_iter + 1)

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> from moetheory.spec import MoESpec
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-1, 1, (300, 1)); y = np.sign(x[:, 0]) + 0.3 * rng.standard_normal(300)
    >>> p = MoEParams.create([0.5, 0.], [[1.], [0.]], [[0.], [0.]], [1., -1.], [1., 1.])
    >>> starts = p.map(lambda v: np.stack([v, v]))          # S = 2 starts
    >>> out = run_starts(MoESpec(2, 1), starts, x, y, np.ones(300), backend="jax",
    ...                  tol_rel=0.0, tol_abs=3e-6, max_iter=200, var_floor=1e-10)
    >>> out["loglik"].shape, out["params"].a.shape
    ((2,), (2, 2, 1))
    """
    n_steps = max_iter if n_steps is None else min(int(n_steps), int(max_iter))
    if backend in CPU_BACKENDS:
        xn, yn, wn = (kernel_array(v) for v in (x, y, w))
        starts_np = jax.tree.map(np.asarray, starts)
        opts = dict(gate_options or ())

        def run(i):
            return cpu_fit(xn, yn, wn, _take(starts_np, i), tol_rel=tol_rel, tol_abs=tol_abs,
                           max_iter=n_steps, var_floor=var_floor, n_hard=n_hard, backend=backend,
                           **opts)

        outs = map_fits(run, list(range(np.shape(starts_np.beta0)[0])), threads)
        trace = np.full((len(outs), max_iter + 1), np.nan)
        for i, o in enumerate(outs):
            trace[i, : o["trace"].shape[0]] = o["trace"]
        params = jax.tree.map(lambda *v: np.stack(v), *[o["params"] for o in outs])
        col = lambda name, dtype: np.array([o[name] for o in outs], dtype=dtype)  # noqa: E731
        return {"params": params, "loglik": col("loglik", np.float64),
                "n_iter": col("n_iter", np.int64), "converged": col("converged", bool),
                "floor_hit": col("floor_hit", bool), "trace": trace}
    res = run_batch(spec, jax.tree.map(jnp.asarray, starts), jnp.asarray(x), jnp.asarray(y),
                         jnp.asarray(w), tol_rel=tol_rel, tol_abs=tol_abs, max_iter=int(max_iter),
                         var_floor=var_floor, n_hard=n_hard,
                         gate_options=tuple(gate_options) or None, fixed_iter=bool(fixed_iter),
                         n_steps=n_steps)
    return {"params": jax.tree.map(np.asarray, res.params), "loglik": np.asarray(res.loglik),
            "n_iter": np.asarray(res.n_iter), "converged": np.asarray(res.converged),
            "floor_hit": np.asarray(res.floor_hit), "trace": np.asarray(res.trace)}
