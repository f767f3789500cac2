"""CPU fast path of a study cell: the EM fits run in the fused Numba kernel, on every core.

The JAX cell kernel (:func:`moetheory.study.runner._cell_kernel`) runs one replicate after the
other on CPU (``lax.map``), and the starts of a replicate in lock-step (``vmap``: every start
waits for the slowest). Here the same data and the same starts — drawn by the *same* JAX
function, :func:`moetheory.study.runner.replicate_inputs` — are handed to
:func:`moetheory.kernels.numba_em.em_loop` (the fused one-pass EM, bound to ``run_em`` by
``tests/test_kernels.py``), one (replicate, start) fit per task on a thread pool. The kernel
releases the GIL, so the fits run on all cores at once and each stops at its own iteration
count. Best-start selection and the output arrays are those of the JAX path; the losses are
computed afterwards by the same JAX loss kernel.

Which path runs is an execution detail, like ``vectorize``: it is not part of the study hash
(the two agree to the EM tolerance, ``tests/test_study_numba.py``), and the cache records it per
replicate (``em_backend``). Choose with ``$MOETHEORY_EM_BACKEND`` (``auto``, ``numba``, ``jax``);
the thread count with ``$MOETHEORY_THREADS`` (see :mod:`moetheory.em.backend`).
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from moetheory.em import backend
from moetheory.em.backend import thread_count  # noqa: F401  (re-exported)
from moetheory.em.multistart import pick_best
from moetheory.em.run import LL_FLOOR_PER_OBS
from moetheory.params import MoEParams

def choose_backend(cfg, requested=None) -> str:
    """The EM backend of a cell, ``"numba"`` or ``"jax"`` (:func:`moetheory.em.backend.choose_backend`
    for the cell's fitted model and estimator).

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.spec import FitSpec, StudySpec
    >>> from moetheory.study.runner import cell_config
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> study = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth,
    ...                   fits=(FitSpec("k2", MoESpec(2, 1), sizes=(100,)),), replicates=2)
    >>> choose_backend(cell_config(study, "k2", 100), "jax")
    'jax'
    """
    return backend.choose_backend(cfg.fit.spec, cfg.estimator.fixed_iter, requested)


def run_fits(x, y, w, starts: MoEParams, est, threads=None) -> list:
    """EM from every start of every replicate, one fit per task on a thread pool.

    Parameters
    ----------
    x : (R, n, d); y, w : (R, n) — the replicates' data and observation weights
    starts : MoEParams with leading axes (R, S): S starts per replicate
    est : EstimatorSpec (``tol``, ``max_iter``, ``var_floor``, ``max_newton``)
    threads : int, optional, default :func:`moetheory.em.backend.thread_count`

    Returns
    -------
    list of R·S tuples (β_0, β_1, a, b, ν, ℓ, n_iter, converged, floor_hit), replicate-major;
    a start whose kernel raised has NaN parameters and ℓ.

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> from moetheory.study.spec import EstimatorSpec
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-1, 1, (2, 300, 1))  # R = 2 replicates, n = 300, d = 1
    >>> y = np.where(x[..., 0] > 0, 1.0, -1.0) + 0.3 * rng.standard_normal((2, 300))
    >>> start = MoEParams.create([0.5, 0.], [[1.], [0.]], [[0.], [0.]], [1., -1.], [1., 1.])
    >>> starts = MoEParams(*(np.broadcast_to(v, (2, 1) + np.shape(v)) for v in start))
    >>> out = run_fits(x, y, np.ones((2, 300)), starts, EstimatorSpec(tol=1e-8))  # doctest: +SKIP
    >>> len(out), out[0][2].shape  # doctest: +SKIP
    (2, (2, 1))
    """
    R, S = np.shape(starts.beta0)[:2]
    tasks = [(r, s) for r in range(R) for s in range(S)]

    def run(task):
        r, s = task
        out = backend.numba_fit(x[r], y[r], w[r], MoEParams(*(v[r, s] for v in starts)),
                                tol=est.tol, max_iter=est.max_iter, var_floor=est.var_floor,
                                max_newton=est.max_newton)
        return (*out["params"][:5], out["loglik"], out["n_iter"], out["converged"],
                out["floor_hit"])

    return backend.map_fits(run, tasks, threads)


@partial(jax.jit, static_argnames=("cfg",))
def _inputs_kernel(cfg, truth, n, keys):
    """Data and starts of every replicate (one compile per padded length, as the JAX path)."""
    from moetheory.study.runner import replicate_inputs

    return jax.vmap(lambda kk: replicate_inputs(cfg, truth, n, kk))(keys)


def fit_cell(cfg, truth: MoEParams, n: int, keys, threads=None) -> dict:
    """EM of every replicate and start of a cell on the Numba kernel; best start per replicate.

    Parameters
    ----------
    cfg : CellConfig (softmax gate)
    truth : MoEParams, the truth (JAX arrays)
    n : int, the sample size
    keys : (R, 2) uint32 replicate keys (:func:`moetheory.study.runner.replicate_keys`)
    threads : int, optional, default :func:`thread_count`

    Returns
    -------
    dict of NumPy arrays with a leading replicate axis (R, ...): ``loglik``, ``n_iter``,
    ``converged``, ``floor_hit``, ``best_start``, ``n_starts_finite`` and ``fit_<param>`` —
    the keys and dtypes of the JAX cell kernel.

    Examples
    --------
    >>> import jax, jax.numpy as jnp, numpy as np  # doctest: +SKIP
    >>> from moetheory.params import MoEParams  # doctest: +SKIP
    >>> from moetheory.spec import MoESpec  # doctest: +SKIP
    >>> from moetheory.study.spec import FitSpec, StudySpec  # doctest: +SKIP
    >>> from moetheory.study.runner import cell_config, replicate_keys  # doctest: +SKIP
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])  # doctest: +SKIP
    >>> study = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth,  # doctest: +SKIP
    ...                   fits=(FitSpec("k2", MoESpec(2, 1), sizes=(100,)),), replicates=2)
    >>> out = fit_cell(cell_config(study, "k2", 100), jax.tree.map(jnp.asarray, truth), 100,  # doctest: +SKIP
    ...                replicate_keys(study.seed, 100, np.arange(2)))
    >>> out["fit_a"].shape, out["best_start"].tolist()  # doctest: +SKIP
    ((2, 2, 1), [0, 0])
    """
    x, y, w, starts = jax.tree.map(np.asarray, _inputs_kernel(cfg, truth, jnp.asarray(n), keys))
    # Real rows come first (the design pads at the end): the kernel gets the n real rows only.
    x = np.ascontiguousarray(x[:, :n])
    y = np.ascontiguousarray(y[:, :n])
    w = np.ascontiguousarray(w[:, :n])
    R, S = starts.beta0.shape[:2]
    results = run_fits(x, y, w, starts, cfg.estimator, threads)
    k, d = starts.beta1.shape[2:]
    out = {"loglik": np.empty(R), "n_iter": np.empty(R, np.int64),
           "converged": np.empty(R, bool), "floor_hit": np.empty(R, bool),
           "best_start": np.empty(R, np.int32), "n_starts_finite": np.empty(R, np.int32),
           "fit_beta0": np.empty((R, k)), "fit_beta1": np.empty((R, k, d)),
           "fit_a": np.empty((R, k, d)), "fit_b": np.empty((R, k)), "fit_var": np.empty((R, k)),
           "fit_tau": np.ones(R)}
    for r in range(R):
        res = results[r * S:(r + 1) * S]
        finite = np.array([np.isfinite(t[5]) and all(np.all(np.isfinite(t[j])) for j in range(5))
                           for t in res])
        lls = np.where(finite, [t[5] for t in res], -np.inf)
        best = pick_best(lls, floor=LL_FLOOR_PER_OBS * n)  # the rule of the JAX cell kernel
        b0, b1, a, b, v, ll, n_iter, conv, floor = res[best]
        out["loglik"][r], out["n_iter"][r] = ll, n_iter
        out["converged"][r], out["floor_hit"][r] = conv, floor
        out["best_start"][r], out["n_starts_finite"][r] = best, finite.sum()
        out["fit_beta0"][r], out["fit_beta1"][r], out["fit_a"][r] = b0, b1, a
        out["fit_b"][r], out["fit_var"][r] = b, v
    out["fit_tau"] = np.broadcast_to(np.asarray(starts.tau)[:, 0], (R,) + np.shape(
        starts.tau)[2:]).copy()
    return out
