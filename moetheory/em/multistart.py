"""Many EM starts run as one vectorised batch; the most promising are continued.

The default strategy of :func:`moetheory.fit` (DESIGN.md §3.3, robust to local optima for a
user without the truth): ``n_init`` starts of several kinds (k-means on standardised (x, y),
random partitions), each refined by a short EM run whose first iterations are hard
(classification) assignments, all in one ``vmap``; the ``n_keep`` best by log-likelihood are
continued to convergence, again in one batch (:func:`continuation_order`: distinct short-run
optima that kept their variances above the floor first); the best of those is returned (ties
at rounding level go to the first start: :func:`pick_best`).
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from moetheory.em import backend
from moetheory.em.init import data_partition, paper_init, params_from_resp, perturb_init
from moetheory.em.run import LL_FLOOR_PER_OBS, EMResult, run_em


class MultistartResult(NamedTuple):
    """Best fit plus the record of every start.

    Attributes
    ----------
    best : EMResult of the best continued start
    start_kinds : tuple of str, the kind of each start (length n_init)
    start_logliks : (n_init,) each start's log-likelihood where it stopped: at the end of its
        continued run for the ``continued`` starts, after the short run for the others
    short_logliks : (n_init,) log-likelihood after the short run (NaN when every start was
        continued without one); ``short_floor_hit`` (n_init,) whether it hit the variance floor
    continued : (n_keep,) indices of the starts continued to convergence
    final_logliks : (n_keep,) their final log-likelihoods
    best_start : index of the start that won
    final_floor_hit : (n_keep,) bool, whether each continued start hit the variance floor (the
        winner is the best start that did not, when there is one)

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from moetheory.spec import MoESpec
    >>> x = jnp.array([[-1.0], [-0.5], [0.5], [1.0]]); y = jnp.array([-1.0, -0.4, 0.6, 1.0])
    >>> res = multistart(jax.random.PRNGKey(0), MoESpec(2, 1), x, y,
    ...                  kinds=("kmeans", "random", "random"), n_keep=2)  # doctest: +SKIP
    >>> res.start_logliks.shape, res.continued.shape, res.best.params.a.shape  # doctest: +SKIP
    ((3,), (2,), (2, 1))
    """

    best: EMResult
    start_kinds: tuple
    start_logliks: np.ndarray
    continued: np.ndarray
    final_logliks: np.ndarray
    best_start: int
    final_floor_hit: np.ndarray
    short_logliks: np.ndarray
    short_floor_hit: np.ndarray


#: Final log-likelihoods closer than this (relative) are one optimum reached by several starts:
#: far above the rounding differences between backends and thread counts (≈ 1e-15 here), far
#: below the gap between distinct optima.
TIE_RTOL = 1e-12


def pick_best(score, start_index=None, rtol=TIE_RTOL, floor=0.0) -> int:
    """Index of the winning start: the best finite score, where scores within ``rtol``·|best| of
    the best tie and the tie goes to the smallest ``start_index``.

    Starts that reach the same optimum (often with permuted labels) end with log-likelihoods
    that differ in the last digits; a plain argmax would let rounding (the backend, the thread
    count) decide between them and so between the label orders they report.

    Parameters
    ----------
    score : (S,) float, −inf or NaN for a start that is out of the running
    start_index : (S,) int, optional, the starts' original indices (default ``arange(S)``)
    rtol : float ≥ 0, the relative tie window (0: the first maximum)
    floor : float ≥ 0, the window is rtol·max(|best|, floor) (a log-likelihood near 0)

    Examples
    --------
    >>> pick_best(np.array([-10.0, -9.0 - 1e-14, -9.0, np.nan]))
    1
    >>> pick_best(np.array([-10.0, -9.0 - 1e-9, -9.0]))
    2
    >>> pick_best(np.array([-9.0, -9.0]), start_index=np.array([5, 2]))
    1
    """
    score = np.where(np.isfinite(score), score, -np.inf)
    top = score.max()
    if not np.isfinite(top):
        return int(np.argmax(score))
    ties = np.flatnonzero(score >= top - rtol * max(abs(top), floor))
    idx = np.arange(score.size) if start_index is None else np.asarray(start_index)
    return int(ties[np.argmin(idx[ties])])


def continuation_order(loglik, floor_hit, n_keep, rtol=1e-8, floor=0.0) -> np.ndarray:
    """Indices of the ``n_keep`` short runs to continue: best log-likelihood first, but a start
    whose short run reached the log-likelihood of one already chosen (within ``rtol``: the same
    partition, often with permuted labels) or put a variance on the floor is passed over while
    distinct healthy ones remain; the slots left are filled in log-likelihood order. Of the
    starts that share a short-run optimum, the first (smallest index) represents it, so that
    rounding (the backend) cannot decide which of them, and so which label order, goes on.

    Parameters
    ----------
    loglik : (S,) short-run log-likelihoods (non-finite: failed)
    floor_hit : (S,) bool, whether the short run hit the variance floor
    n_keep : int ≤ S
    rtol, floor : two short runs reached the same optimum when their log-likelihoods differ by
        at most rtol·max(|ℓ|, floor) (above the up to 3e-9 by which the two EM backends' short
        runs differ, far below the gaps between distinct optima)

    Examples
    --------
    >>> continuation_order(np.array([-5.0, -5.0, -6.0, -7.0]), np.array([0, 0, 0, 1], bool), 3)
    array([0, 2, 1])
    """
    loglik = np.asarray(loglik, dtype=np.float64)
    rank = np.argsort(np.where(np.isfinite(loglik), -loglik, np.inf), kind="stable")
    ok = np.isfinite(loglik) & ~np.asarray(floor_hit, dtype=bool)
    same = lambda i, j: abs(loglik[i] - loglik[j]) <= rtol * max(abs(loglik[j]), floor)  # noqa: E731
    chosen: list[int] = []
    for i in rank:
        if len(chosen) == n_keep:
            break
        if not ok[i] or any(same(i, j) for j in chosen):
            continue
        chosen.append(min(int(j) for j in np.flatnonzero(ok) if same(j, i)))
    chosen += [int(i) for i in rank if int(i) not in chosen][: n_keep - len(chosen)]
    return np.array(chosen, dtype=np.int64)


def _stack(trees):
    return jax.tree.map(lambda *v: jnp.stack(v), *trees)


def _take(tree, i):
    return jax.tree.map(lambda v: v[i], tree)


@partial(jax.jit, static_argnames=("k", "kind"))
def _partitions(keys, x, y, k, kind):
    return jax.vmap(lambda kk: data_partition(kk, x, y, k, kind))(keys)


@partial(jax.jit, static_argnames=("spec",))
def _params_from_partitions(spec, x, y, resp, var_floor):
    # One program for every data-driven start, whatever its kind.
    return jax.vmap(lambda r: params_from_resp(spec, x, y, r, var_floor))(resp)


def draw_starts(key, spec, x, y, kinds, truth=None, n_obs=None, var_floor=1e-10, perturb_scale=0.1):
    """Starting parameters for each entry of ``kinds`` (batched MoEParams, leading axis).

    Parameters
    ----------
    key : jax.random.PRNGKey
    spec : MoESpec
    x : array (n, d); y : array (n,)
    kinds : sequence of str in {"paper", "perturb", "random", "kmeans"}, one per start (S starts)
    truth : MoEParams, optional, required by "paper" and "perturb" starts
    n_obs : int, optional, the n of the "paper" noise (default ``x.shape[0]``)
    var_floor : float; perturb_scale : float

    Returns
    -------
    MoEParams with a leading start axis: ``beta1``, ``a`` (S, k, d); ``beta0``, ``b``, ``var``
    (S, k); ``tau`` (S,)

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from moetheory.spec import MoESpec
    >>> x = jnp.array([[-1.0], [-0.5], [0.5], [1.0]]); y = jnp.array([-1.0, -0.4, 0.6, 1.0])
    >>> starts = draw_starts(jax.random.PRNGKey(0), MoESpec(2, 1), x, y,
    ...                      ("kmeans", "random", "random"))  # doctest: +SKIP
    >>> starts.a.shape  # doctest: +SKIP
    (3, 2, 1)
    """
    keys = jax.random.split(key, len(kinds))
    starts = [None] * len(kinds)
    data_idx = [i for i, kd in enumerate(kinds) if kd in ("random", "kmeans")]
    if data_idx:
        resp = [None] * len(kinds)
        for kind in ("kmeans", "random"):
            idx = [i for i in data_idx if kinds[i] == kind]
            if idx:
                part = _partitions(keys[np.array(idx)], x, y, spec.n_experts, kind)
                for j, i in enumerate(idx):
                    resp[i] = part[j]
        batch = _params_from_partitions(spec, x, y, jnp.stack([resp[i] for i in data_idx]), var_floor)
        for j, i in enumerate(data_idx):
            starts[i] = _take(batch, j)
    for kind in ("paper", "perturb"):
        idx = [i for i, kd in enumerate(kinds) if kd == kind]
        if not idx:
            continue
        if truth is None:
            raise ValueError(f"init={kind!r} starts near the truth: pass truth=MoEParams")
        sub = keys[np.array(idx)]
        if kind == "paper":
            batch = jax.vmap(lambda kk: paper_init(kk, truth, spec.n_experts, n_obs or x.shape[0], spec=spec))(sub)
        else:
            batch = jax.vmap(lambda kk: perturb_init(kk, truth, spec.n_experts, perturb_scale, spec=spec))(sub)
        for j, i in enumerate(idx):
            starts[i] = _take(batch, j)
    unknown = [kd for kd in kinds if kd not in ("random", "kmeans", "paper", "perturb")]
    if unknown:
        raise ValueError(f"unknown init kind {unknown[0]!r}; expected one of paper, perturb, random, kmeans")
    return _stack(starts)


@partial(jax.jit, static_argnames=("spec", "max_iter", "gate_options", "fixed_iter"))
def run_batch(spec, starts, x, y, *, tol=1e-8, max_iter=1000, var_floor=1e-10, weights=None,
              n_hard=0, gate_options=None, fixed_iter=False, n_steps=None) -> EMResult:
    """:func:`run_em` over a batch of starts (leading axis): ``vmap`` on accelerators,
    ``lax.map`` on CPU.

    ``tol``, ``n_hard`` and ``n_steps`` are traced, so short and long runs of the same batch
    size share one compiled program.
    """
    one = lambda p: run_em(spec, p, x, y, tol=tol, max_iter=max_iter, var_floor=var_floor,  # noqa: E731
                           weights=weights, n_hard=n_hard, gate_options=gate_options,
                           fixed_iter=fixed_iter, n_steps=n_steps)
    if jax.default_backend() == "cpu":
        # On CPU a sequential map beats vmap: under vmap every start waits for the slowest one
        # in the EM loop and in the inner Newton/halving loops (benchmarks/results/batched.md:
        # vmap 2.4x, lax.map 1.0x the CPU time of a loop of single fits).
        return jax.lax.map(one, starts)
    return jax.vmap(one)(starts)


_NUMBA_GATE_OPTIONS = ("max_newton", "newton_tol")


def _run_starts_numba(starts, x, y, *, tol, n_steps, n_hard, max_iter, var_floor,
                      gate_options) -> EMResult:
    """:func:`run_batch` on the fused Numba kernel, one start per thread (same iterates up to
    rounding: ``tests/test_kernels.py``); the result has ``run_batch``'s shapes."""
    xn = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    yn = np.ascontiguousarray(np.asarray(y, dtype=np.float64))
    w = np.ones(yn.shape[0])
    opts = dict(gate_options or ())
    starts_np = jax.tree.map(np.asarray, starts)

    def run(i):
        # run_em's limit: min(n_steps, max_iter) iterations
        return backend.numba_fit(xn, yn, w, _take(starts_np, i), tol=tol,
                                 max_iter=min(int(n_steps), int(max_iter)),
                                 var_floor=var_floor, n_hard=n_hard, **opts)

    outs = backend.map_fits(run, list(range(np.shape(starts_np.beta0)[0])))
    trace = np.full((len(outs), max_iter + 1), np.nan)
    for i, o in enumerate(outs):
        trace[i, : o["trace"].shape[0]] = o["trace"]
    params = jax.tree.map(lambda *v: jnp.asarray(np.stack(v)), *[o["params"] for o in outs])
    col = lambda name, dtype: jnp.asarray(np.array([o[name] for o in outs], dtype=dtype))  # noqa: E731
    return EMResult(params, col("loglik", np.float64), col("n_iter", np.int64),
                    col("converged", bool), jnp.asarray(trace), col("floor_hit", bool))


def multistart(key, spec, x, y, *, kinds, n_keep=3, n_short=20, n_hard=3, tol=1e-10,
               max_iter=5000, var_floor=1e-10, truth=None, gate_options=None,
               perturb_scale=0.1, em_backend=None) -> MultistartResult:
    """Run the multistart strategy (see module docstring); ``kinds`` names each start.

    Parameters
    ----------
    key : jax.random.PRNGKey
    spec : MoESpec (static)
    x : array (n, d); y : array (n,)
    kinds : sequence of str in {"paper", "perturb", "random", "kmeans"}, one per start
    n_keep : int, starts continued to convergence
    n_short : int, iterations of the short runs; n_hard : int, hard E-steps at their start
    tol, max_iter, var_floor, gate_options : as in :func:`moetheory.em.run.run_em`
    truth : MoEParams, optional (for "paper"/"perturb" starts); perturb_scale : float
    em_backend : {"auto", "numba", "jax"}, optional
        Who runs the EM of the starts (:mod:`moetheory.em.backend`; default ``auto``: the fused
        Numba kernel on every core for the softmax gate on CPU, else ``run_batch``). The starts,
        the selection and the result's shapes do not depend on it.

    Returns
    -------
    MultistartResult

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from moetheory.spec import MoESpec
    >>> x = jnp.array([[-1.0], [-0.5], [0.5], [1.0]]); y = jnp.array([-1.0, -0.4, 0.6, 1.0])
    >>> res = multistart(jax.random.PRNGKey(0), MoESpec(2, 1), x, y,
    ...                  kinds=("kmeans", "random", "random"), n_keep=2)  # doctest: +SKIP
    >>> res.start_kinds, res.final_logliks.shape  # doctest: +SKIP
    (('kmeans', 'random', 'random'), (2,))
    """
    kinds = tuple(kinds)
    use_numba = (backend.choose_backend(spec, requested=em_backend) == "numba"
                 and set(dict(gate_options or ())) <= set(_NUMBA_GATE_OPTIONS))

    def run(starts_, **kw):
        if use_numba:
            return _run_starts_numba(starts_, x, y, **kw)
        return run_batch(spec, starts_, x, y, **kw)

    starts = draw_starts(key, spec, x, y, kinds, truth=truth, var_floor=var_floor,
                         perturb_scale=perturb_scale)
    n_keep = min(n_keep, len(kinds))
    ll_floor = LL_FLOOR_PER_OBS * x.shape[0]  # as the stopping rule: ℓ near 0 per observation
    common = dict(max_iter=max_iter, var_floor=var_floor, gate_options=gate_options)
    if n_keep < len(kinds):
        # Short runs in chunks of n_keep starts: every call then has the batch shape of the
        # continuation, so one compiled program serves both stages (compilation dominates
        # the cost of a fit at moderate n).
        # (The Numba path compiles nothing per shape: all starts in one thread-pool batch.)
        size = len(kinds) if use_numba else n_keep
        chunks = []
        for lo in range(0, len(kinds), size):
            idx = np.arange(lo, lo + size) % len(kinds)  # the last chunk wraps around
            chunks.append(run(_take(starts, jnp.asarray(idx)), tol=0.0, n_steps=n_short,
                              n_hard=n_hard, **common))
        short = jax.tree.map(lambda *v: jnp.concatenate(v)[: len(kinds)], *chunks)
        ll = np.asarray(short.loglik)
        short_hit = np.asarray(short.floor_hit)
        order = continuation_order(ll, short_hit, n_keep, floor=ll_floor)
        cont_starts = _take(short.params, jnp.asarray(order))
        iters_before = np.asarray(short.n_iter)[order]
    else:
        ll = np.full(len(kinds), np.nan)
        short_hit = np.zeros(len(kinds), dtype=bool)
        order = np.arange(len(kinds))
        cont_starts = starts
        iters_before = np.zeros(len(kinds), dtype=int)
    final = run(cont_starts, tol=tol, n_steps=max_iter, n_hard=0, **common)
    fl = np.asarray(final.loglik)
    stopped = ll.copy()
    stopped[order] = fl  # where each start stopped
    # Prefer fits whose variances stayed above the floor: a floored expert sitting on a few
    # points is the likelihood's degenerate spike, not an estimate (it is still chosen when
    # every start collapsed, and then reported through ``floor_hit``).
    score = np.where(np.isfinite(fl), fl, -np.inf)
    healthy = ~np.asarray(final.floor_hit) & np.isfinite(fl)
    if healthy.any():
        score = np.where(healthy, score, -np.inf)
    best = pick_best(score, order, floor=ll_floor)
    # Report the winning start's total iterations (short run + continuation).
    winner = _take(final, best)
    winner = winner._replace(n_iter=winner.n_iter + int(iters_before[best]))
    return MultistartResult(winner, kinds, stopped, order, fl, int(order[best]),
                            np.asarray(final.floor_hit), ll, short_hit)
