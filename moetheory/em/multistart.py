"""Many EM starts run as one vectorised batch; the most promising are continued.

The default strategy of :func:`moetheory.fit` (DESIGN.md §3.3, robust to local optima for a
user without the truth): ``n_init`` starts of several kinds (k-means on standardised (x, y),
random partitions), each refined by a short EM run whose first iterations are hard
(classification) assignments, all in one ``vmap``; the ``n_keep`` best by log-likelihood are
continued to convergence, again in one batch; the best of those is returned.
"""
from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from moetheory.em.init import data_init, paper_init, perturb_init
from moetheory.em.run import EMResult, run_em


class MultistartResult(NamedTuple):
    """Best fit plus the record of every start.

    Attributes
    ----------
    best : EMResult of the best continued start
    start_kinds : tuple of str, the kind of each start (length n_init)
    start_logliks : (n_init,) log-likelihood after the short run (or at the end for truth starts)
    continued : (n_keep,) indices of the starts continued to convergence
    final_logliks : (n_keep,) their final log-likelihoods
    best_start : index of the start that won
    """

    best: EMResult
    start_kinds: tuple
    start_logliks: np.ndarray
    continued: np.ndarray
    final_logliks: np.ndarray
    best_start: int


def _stack(trees):
    return jax.tree.map(lambda *v: jnp.stack(v), *trees)


def _take(tree, i):
    return jax.tree.map(lambda v: v[i], tree)


@partial(jax.jit, static_argnames=("spec", "kind"))
def _data_starts(keys, spec, x, y, kind, var_floor):
    return jax.vmap(lambda kk: data_init(kk, spec, x, y, kind, var_floor))(keys)


def draw_starts(key, spec, x, y, kinds, truth=None, n_obs=None, var_floor=1e-10, perturb_scale=0.1):
    """Starting parameters for each entry of ``kinds`` (batched MoEParams, leading axis)."""
    keys = jax.random.split(key, len(kinds))
    starts = [None] * len(kinds)
    for kind in dict.fromkeys(kinds):
        idx = [i for i, kd in enumerate(kinds) if kd == kind]
        sub = keys[np.array(idx)]
        if kind in ("random", "kmeans"):
            batch = _data_starts(sub, spec, x, y, kind, var_floor)
        elif kind in ("paper", "perturb"):
            if truth is None:
                raise ValueError(f"init={kind!r} starts near the truth: pass truth=MoEParams")
            if kind == "paper":
                batch = jax.vmap(lambda kk: paper_init(kk, truth, spec.n_experts, n_obs or x.shape[0]))(sub)
            else:
                batch = jax.vmap(lambda kk: perturb_init(kk, truth, spec.n_experts, perturb_scale))(sub)
        else:
            raise ValueError(f"unknown init kind {kind!r}; expected one of paper, perturb, random, kmeans")
        for j, i in enumerate(idx):
            starts[i] = _take(batch, j)
    return _stack(starts)


def run_batch(spec, starts, x, y, **em_options) -> EMResult:
    """``vmap`` of :func:`run_em` over a batch of starts (leading axis)."""
    return jax.vmap(lambda p: run_em(spec, p, x, y, **em_options))(starts)


def multistart(key, spec, x, y, *, kinds, n_keep=3, n_short=20, n_hard=3, tol=1e-10,
               max_iter=5000, var_floor=1e-10, truth=None, gate_options=None,
               perturb_scale=0.1) -> MultistartResult:
    """Run the multistart strategy (see module docstring); ``kinds`` names each start."""
    kinds = tuple(kinds)
    starts = draw_starts(key, spec, x, y, kinds, truth=truth, var_floor=var_floor,
                         perturb_scale=perturb_scale)
    n_keep = min(n_keep, len(kinds))
    if n_keep < len(kinds):
        short = run_batch(spec, starts, x, y, tol=0.0, max_iter=n_short, n_hard=n_hard,
                          var_floor=var_floor, gate_options=gate_options)
        ll = np.asarray(short.loglik)
        order = np.argsort(np.where(np.isfinite(ll), -ll, np.inf), kind="stable")[:n_keep]
        cont_starts = _take(short.params, jnp.asarray(order))
        iters_before = np.asarray(short.n_iter)[order]
    else:
        ll = np.full(len(kinds), np.nan)
        order = np.arange(len(kinds))
        cont_starts = starts
        iters_before = np.zeros(len(kinds), dtype=int)
    final = run_batch(spec, cont_starts, x, y, tol=tol, max_iter=max_iter, var_floor=var_floor,
                      gate_options=gate_options)
    fl = np.asarray(final.loglik)
    if n_keep == len(kinds):
        ll = fl.copy()
    if not np.isfinite(fl).any():
        best = 0
    else:
        best = int(np.nanargmax(np.where(np.isfinite(fl), fl, -np.inf)))
    # Report the winning start's total iterations (short run + continuation).
    winner = _take(final, best)
    winner = winner._replace(n_iter=winner.n_iter + int(iters_before[best]))
    return MultistartResult(winner, kinds, ll, order, fl, int(order[best]))
