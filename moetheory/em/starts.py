"""The one start drawer and the one tie rule of the estimator pipeline.

:func:`draw_starts` builds every kind of start (:data:`moetheory.em.config.INIT_KINDS`): data-
driven partitions (k-means on standardised (x, y), random) followed by one exact M-step, or
near-truth starts (the softmax paper's ``paper`` scheme, ``perturb``). :func:`continuation_order`
chooses which short runs continue; :func:`pick_best` picks the winning start, ties at rounding
level going to the first start. :func:`moetheory.em.pipeline.run_pipeline` is their only
caller in the library: :func:`moetheory.fit` and every study cell go through it.
"""
from __future__ import annotations

from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from moetheory.em.init import data_partition, lines_init, paper_init, params_from_resp, perturb_init

#: Final log-likelihoods closer than this (relative) are one optimum reached by several starts:
#: far above the rounding differences between backends and thread counts (≈ 1e-15 here), far
#: below the gap between distinct optima.
TIE_RTOL = 1e-12


def pick_best(score, start_index=None, rtol=TIE_RTOL, floor=0.0, prefer=None) -> int:
    """Index of the winning start: the best finite score, where scores within ``rtol``·|best| of
    the best tie and the tie goes to a ``prefer``-red start (a certified one), then to the
    smallest ``start_index``.

    Starts that reach the same optimum (often with permuted labels) end with log-likelihoods
    that differ in the last digits; a plain argmax would let rounding (the backend, the thread
    count) decide between them and so between the label orders they report.

    Parameters
    ----------
    score : (S,) float, −inf or NaN for a start that is out of the running
    start_index : (S,) int, optional, the starts' original indices (default ``arange(S)``)
    rtol : float ≥ 0, the relative tie window (0: the first maximum)
    floor : float ≥ 0, the window is rtol·max(|best|, floor) (a log-likelihood near 0)
    prefer : (S,) bool, optional, starts that win a tie over the others (e.g. certified ones:
        on a flat ridge a start that ran off to a step gate reaches the same ℓ to rounding)

    Examples
    --------
    >>> pick_best(np.array([-10.0, -9.0 - 1e-14, -9.0, np.nan]))
    1
    >>> pick_best(np.array([-10.0, -9.0 - 1e-9, -9.0]))
    2
    >>> pick_best(np.array([-9.0, -9.0]), start_index=np.array([5, 2]))
    1
    >>> pick_best(np.array([-9.0, -9.0]), prefer=np.array([False, True]))
    1
    """
    score = np.where(np.isfinite(score), score, -np.inf)
    top = score.max()
    if not np.isfinite(top):
        return int(np.argmax(score))
    ties = np.flatnonzero(score >= top - rtol * max(abs(top), floor))
    if prefer is not None and np.asarray(prefer, dtype=bool)[ties].any():
        ties = ties[np.asarray(prefer, dtype=bool)[ties]]
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
def _partitions(keys, x, y, w, k, kind):
    return jax.vmap(lambda kk: data_partition(kk, x, y, k, kind, w))(keys)


@partial(jax.jit, static_argnames=("spec",))
def _lines(spec, keys, x, y, w, var_floor, tau):
    return jax.vmap(lambda kk: lines_init(kk, spec, x, y, w, var_floor, tau))(keys)


@partial(jax.jit, static_argnames=("spec",))
def _params_from_partitions(spec, x, y, resp, var_floor, tau):
    # One program for every data-driven start, whatever its kind.
    return jax.vmap(lambda r: params_from_resp(spec, x, y, r, var_floor, tau))(resp)


@partial(jax.jit, static_argnames=("spec", "kind", "var_from_sd"))
def _near_truth_starts(keys, truth, n_obs, scale, spec, kind, var_from_sd):
    # one compiled program per (spec, kind): the eager vmap dispatched hundreds of small ops
    if kind == "paper":
        return jax.vmap(lambda kk: paper_init(kk, truth, spec.n_experts, n_obs, var_from_sd,
                                              spec=spec))(keys)
    return jax.vmap(lambda kk: perturb_init(kk, truth, spec.n_experts, scale, spec=spec))(keys)


def draw_starts(key, spec, x, y, kinds, truth=None, n_obs=None, var_floor=1e-10, perturb_scale=0.1,
                var_from_sd=False, weights=None, tau=None, backend="jax"):
    """Starting parameters for each entry of ``kinds`` (batched MoEParams, leading axis).

    Parameters
    ----------
    key : jax.random.PRNGKey
    spec : MoESpec
    x : array (n, d); y : array (n,)
    kinds : sequence of str in {"paper", "perturb", "random", "kmeans", "lines"}, one per start
        (S starts)
    truth : MoEParams, optional, required by "paper" and "perturb" starts
    n_obs : int, optional, the n of the "paper" noise (default: Σ weights, else ``x.shape[0]``)
    var_floor : float; perturb_scale : float
    var_from_sd : bool, "paper" starts at the true standard deviation (the official code's slip)
    weights : (n,), optional observation weights (0: a padded row, never part of a partition)
    tau : float, optional, a known temperature (the gate option ``tau_value``): every start
        carries it, and data-driven starts fit their gate at it
    backend : the EM backend the starts are for: on the CPU ones ("numba", "numpy") the
        data-driven starts of a softmax spec are built in NumPy from the same random numbers
        (:mod:`moetheory.em.init_numpy`: no compilation per data shape), and the result holds
        NumPy arrays

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
    if n_obs is None:
        n_obs = x.shape[0] if weights is None else float(np.sum(np.asarray(weights)))
    on_cpu = backend != "jax" and spec.cpu_kernels
    # on the CPU backends the NumPy twins build the lines starts too (nothing to compile per n)
    data_idx = [i for i, kd in enumerate(kinds)
                if kd in (("random", "kmeans", "lines") if on_cpu else ("random", "kmeans"))]
    if data_idx and on_cpu:
        from moetheory.em.init_numpy import data_starts

        sub = keys if len(data_idx) == len(kinds) else keys[np.array(data_idx)]
        made = data_starts(sub, np.asarray(x), np.asarray(y),
                           [kinds[i] for i in data_idx], spec.n_experts,
                           None if weights is None else np.asarray(weights), var_floor,
                           1.0 if tau is None else float(tau), backend)
        for i, p in zip(data_idx, made):
            starts[i] = p
    elif data_idx:
        x, y = jnp.asarray(x), jnp.asarray(y)
        w = jnp.ones(x.shape[0], x.dtype) if weights is None else jnp.asarray(weights)
        resp = [None] * len(kinds)
        for kind in ("kmeans", "random"):
            idx = [i for i in data_idx if kinds[i] == kind]
            if idx:
                part = _partitions(keys[np.array(idx)], x, y, w, spec.n_experts, kind)
                for j, i in enumerate(idx):
                    resp[i] = part[j]
        batch = _params_from_partitions(spec, x, y, jnp.stack([resp[i] for i in data_idx]), var_floor,
                                        1.0 if tau is None else float(tau))
        for j, i in enumerate(data_idx):
            starts[i] = _take(batch, j)
    line_idx = [] if on_cpu else [i for i, kd in enumerate(kinds) if kd == "lines"]
    if line_idx:
        xl, yl = jnp.asarray(x), jnp.asarray(y)
        wl = jnp.ones(xl.shape[0], xl.dtype) if weights is None else jnp.asarray(weights)
        batch = _lines(spec, keys[np.array(line_idx)], xl, yl, wl, var_floor,
                       1.0 if tau is None else float(tau))
        for j, i in enumerate(line_idx):
            starts[i] = _take(batch, j)
    for kind in ("paper", "perturb"):
        idx = [i for i, kd in enumerate(kinds) if kd == kind]
        if not idx:
            continue
        if truth is None:
            raise ValueError(f"init={kind!r} starts near the truth: pass truth=MoEParams")
        truth = jax.tree.map(jnp.asarray, truth)
        batch = _near_truth_starts(keys[np.array(idx)], truth, jnp.asarray(float(n_obs)),
                                   jnp.asarray(float(perturb_scale)), spec, kind, bool(var_from_sd))
        for j, i in enumerate(idx):
            starts[i] = _take(batch, j)
    unknown = [kd for kd in kinds if kd not in ("random", "kmeans", "lines", "paper", "perturb")]
    if unknown:
        raise ValueError(f"unknown init kind {unknown[0]!r}; expected one of paper, perturb, random, "
                         "kmeans, lines")
    # t experts: ν starts at the known t_df, or at T_DF_START when estimated (a start from the
    # truth keeps the truth's)
    starts = [spec.with_expert_arrays(s) for s in starts]
    if on_cpu:
        out = jax.tree.map(lambda *v: np.stack([np.asarray(u, dtype=np.float64) for u in v]),
                           *starts)
        return out if tau is None else out._replace(tau=np.full_like(out.tau, float(tau)))
    # a constrained model starts inside its parameter space (spec.constrain)
    out = spec.constrain(_stack(starts))
    return out if tau is None else out._replace(tau=jnp.full_like(out.tau, float(tau)))
