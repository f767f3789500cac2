"""The estimator pipeline: starts → EM → (acceleration) → polish → certificate → best start.

:func:`run_pipeline` is the one driver of estimation: :func:`moetheory.fit` calls it once, a
study cell once per replicate. Given an :class:`~moetheory.em.config.EMConfig` it

1. draws the starts (:func:`moetheory.em.starts.draw_starts`: the one start drawer);
2. chooses the backend (:func:`moetheory.em.backend.choose_backend`: for the softmax gate on
   CPU the fused Numba kernel, or its NumPy twin for small data, which needs no compilation;
   the JAX loop otherwise — vmap on accelerators);
3. runs a short EM of every start when there are more starts than ``n_keep``, and continues
   the ``n_keep`` most promising (:func:`moetheory.em.starts.continuation_order`) under the
   stopping rule of :meth:`EMConfig.stop_thresholds`, optionally with SQUAREM
   (:mod:`moetheory.em.accelerate`);
4. polishes every continued start by Newton's method on the observed log-likelihood and
   computes its convergence certificate (:mod:`moetheory.em.certify`);
5. picks the winner with the one tie rule (:func:`moetheory.em.starts.pick_best`): the highest
   log-likelihood among starts whose variances stayed above the floor (a floored expert sitting
   on a few points is the likelihood's degenerate spike, not an estimate), ties at rounding
   level going to a certified start, then to the first.

Examples
--------
>>> from moetheory._jax import ensure_x64; ensure_x64()
>>> import jax, numpy as np
>>> from moetheory.spec import MoESpec
>>> rng = np.random.default_rng(0)
>>> x = rng.uniform(-1, 1, (500, 1))
>>> y = np.where(x[:, 0] > 0, 2 * x[:, 0], -x[:, 0]) + 0.1 * rng.standard_normal(500)
>>> res = run_pipeline(jax.random.key(0), MoESpec(2, 1), x, y, EMConfig(n_init=4, n_keep=2))
>>> res.certificate.certified, res.params.a.shape
(True, (2, 1))
"""
from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from moetheory.em import backend as em_backend_mod
from moetheory.em.certify import Certificate, certify, not_checked, polish
from moetheory.em.config import EMConfig, REL_LL_FLOOR
from moetheory.em.starts import continuation_order, draw_starts, pick_best
from moetheory.params import MoEParams


class PipelineResult(NamedTuple):
    """The estimate of :func:`run_pipeline` and the record of every start.

    Attributes
    ----------
    params : MoEParams (NumPy), the winning estimate (last expert's gate pinned)
    loglik : float, its observed log-likelihood
    n_iter : int, EM iterations of the winner (short run + continued run)
    converged : bool, the winner's EM met the stopping rule
    floor_hit : bool, a variance of the winner sat on the floor during EM
    trace : (m,), ℓ along the winner's continued EM run (then the polish's result, if it moved)
    certificate : :class:`~moetheory.em.certify.Certificate` of the winner
    best_start : int, the winner's index among the starts
    start_kinds : tuple of str, the kind of each start (S)
    start_logliks : (S,), ℓ where each start stopped (after the polish for the continued ones)
    short_logliks, short_floor_hit : (S,), after the short runs (NaN/False without them)
    continued : (K,) indices of the continued starts; final_logliks, final_floor_hit,
        final_certified : (K,) their results
    var_floor : float, the variance floor used
    em_backend : str, "numba", "numpy" or "jax"

    Examples
    --------
    >>> PipelineResult._fields[:4]
    ('params', 'loglik', 'n_iter', 'converged')
    """

    params: MoEParams
    loglik: float
    n_iter: int
    converged: bool
    floor_hit: bool
    trace: np.ndarray
    certificate: Certificate
    best_start: int
    start_kinds: tuple
    start_logliks: np.ndarray
    short_logliks: np.ndarray
    short_floor_hit: np.ndarray
    continued: np.ndarray
    final_logliks: np.ndarray
    final_floor_hit: np.ndarray
    final_certified: np.ndarray
    var_floor: float
    em_backend: str


def default_var_floor(y, weights=None) -> float:
    """1e-8 times a robust variance of y, (1.4826 · MAD)², or Var(y) when more than half the
    values are equal: one gross outlier must not lift the floor above the experts' variances.

    Parameters
    ----------
    y : array (n,); weights : array (n,), optional (rows with weight 0 are left out)

    Examples
    --------
    >>> y = np.r_[np.linspace(-1.0, 1.0, 99), 1e6]          # one gross outlier
    >>> default_var_floor(y) < 1e-8                          # Var(y) would give 100
    True
    """
    y = np.asarray(y, dtype=np.float64)
    if weights is not None:
        y = y[np.asarray(weights) > 0]
    mad = 1.4826 * float(np.median(np.abs(y - np.median(y))))
    scale2 = mad * mad if mad > 0 else float(np.var(y))
    return 1e-8 * scale2 + 1e-300


def _take(tree, i):
    return jax.tree.map(lambda v: v[i], tree)


def _em_step_fn(spec, x, y, w, var_floor, config, backend):
    """One EM iteration as MoEParams -> (MoEParams, ℓ at the new parameters) (for SQUAREM)."""
    if backend in em_backend_mod.CPU_BACKENDS:
        opts = dict(config.gate_step_options())

        def step(p):
            o = em_backend_mod.cpu_fit(x, y, w, p, tol_rel=0.0, tol_abs=0.0, max_iter=1,
                                       var_floor=var_floor, fuse_check=False, backend=backend,
                                       **opts)
            return o["params"], o["loglik"]

        return step
    from moetheory.em.run import run_em

    opts = config.gate_step_options()
    xj, yj, wj = jnp.asarray(x), jnp.asarray(y), jnp.asarray(w)
    one = jax.jit(lambda p: run_em(spec, p, xj, yj, max_iter=1, var_floor=var_floor, weights=wj,
                                   gate_options=opts))

    def step(p):
        r = one(jax.tree.map(jnp.asarray, p))
        return jax.tree.map(np.asarray, r.params), float(r.loglik)

    return step


def _continue(spec, starts, x, y, w, config, backend, var_floor, rel, abs_, threads):
    """The continued EM of each start (plain or SQUAREM); same dict as ``run_starts``."""
    common = dict(tol_rel=rel, tol_abs=abs_, max_iter=config.max_iter, var_floor=var_floor,
                  gate_options=config.gate_step_options(), fixed_iter=config.fixed_iter)
    if config.acceleration == "none":
        return em_backend_mod.run_starts(spec, starts, x, y, w, backend=backend, threads=threads,
                                         **common)
    from moetheory.em.accelerate import squarem

    step = _em_step_fn(spec, x, y, w, var_floor, config, backend)
    S = np.shape(starts.beta0)[0]

    def one(i):
        p0 = jax.tree.map(np.asarray, _take(starts, i))
        from moetheory.em.certify import loglik

        p, ll, steps, ok, trace = squarem(step, spec, p0, loglik(spec, p0, x, y, w),
                                          tol_abs=max(abs_, rel * REL_LL_FLOOR * float(np.sum(w))),
                                          max_steps=config.max_iter)
        return p, ll, steps, ok, trace

    cpu = backend in em_backend_mod.CPU_BACKENDS
    outs = em_backend_mod.map_fits(one, list(range(S)), threads if cpu else 1)
    trace = np.full((S, config.max_iter + 1), np.nan)
    for i, o in enumerate(outs):
        trace[i, : o[4].shape[0]] = o[4]
    floor = np.array([bool(np.any(np.asarray(o[0].var) <= var_floor * (1 + 1e-9))) for o in outs])
    return {"params": jax.tree.map(lambda *v: np.stack(v), *[o[0] for o in outs]),
            "loglik": np.array([o[1] for o in outs]), "n_iter": np.array([o[2] for o in outs]),
            "converged": np.array([o[3] for o in outs]), "floor_hit": floor, "trace": trace}


def run_pipeline(key, spec, x, y, config: EMConfig = EMConfig(), *, weights=None, truth=None,
                 n_obs=None, n_init=None, var_floor=None, em_backend=None,
                 threads=None) -> PipelineResult:
    """Estimate ``spec``'s parameters from (x, y) (module docstring).

    Parameters
    ----------
    key : jax.random.PRNGKey, the starts' randomness
    spec : MoESpec
    x : array (n, d); y : array (n,)
    config : EMConfig
    weights : array (n,), optional observation weights (0 drops a padded row)
    truth : MoEParams, optional, for near-truth starts (``paper``, ``perturb``)
    n_obs : int, optional, the sample size of ``paper`` starts' noise (default Σ weights)
    n_init : int, optional, number of starts (default ``config.n_init``, else its default)
    var_floor : float, optional, overrides ``config.var_floor`` (default :func:`default_var_floor`)
    em_backend : {"auto", "numba", "numpy", "jax"}, optional (default ``$MOETHEORY_EM_BACKEND``
        or auto: :func:`moetheory.em.backend.choose_backend` by the gate, the device and n)
    threads : int, optional, threads for the starts on the CPU backends

    Returns
    -------
    PipelineResult

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> from moetheory.spec import MoESpec
    >>> rng = np.random.default_rng(1)
    >>> x = rng.uniform(-1, 1, (400, 1)); y = np.abs(x[:, 0]) + 0.1 * rng.standard_normal(400)
    >>> res = run_pipeline(jax.random.key(0), MoESpec(2, 1), x, y, EMConfig(n_init=2, n_keep=2))
    >>> res.start_logliks.shape, res.certificate.reason
    ((2,), 'certified')
    """
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    y = np.ascontiguousarray(np.asarray(y, dtype=np.float64))
    w = (np.ones(y.shape[0]) if weights is None
         else np.ascontiguousarray(np.asarray(weights, dtype=np.float64)))
    n_w = float(w.sum())
    if var_floor is None:
        var_floor = config.var_floor if config.var_floor is not None else default_var_floor(y, w)
    var_floor = float(var_floor)
    kinds = config.start_kinds(n_init)
    gate_opts = config.gate_step_options()
    backend = em_backend_mod.choose_backend(spec, config.fixed_iter, em_backend,
                                            gate_options=gate_opts, n_obs=x.shape[0])
    starts = draw_starts(key, spec, x, y, kinds, truth=truth,
                         n_obs=n_obs, var_floor=var_floor, perturb_scale=config.perturb_scale,
                         var_from_sd=config.var_from_sd,
                         weights=None if weights is None else w,
                         tau=dict(config.gate_options).get("tau_value"), backend=backend)
    rel, abs_ = config.stop_thresholds(n_w)
    tie_floor = REL_LL_FLOOR * n_w  # the tie window near ℓ = 0, per observation
    S = len(kinds)
    n_keep = min(config.n_keep, S)
    short_ll = np.full(S, np.nan)
    short_hit = np.zeros(S, dtype=bool)
    if n_keep < S and config.n_short > 0:
        short = em_backend_mod.run_starts(
            spec, starts, x, y, w, backend=backend, tol_rel=0.0, tol_abs=0.0,
            max_iter=config.max_iter, n_steps=config.n_short, n_hard=config.n_hard,
            var_floor=var_floor, gate_options=gate_opts, threads=threads)
        short_ll, short_hit = short["loglik"], short["floor_hit"]
        order = continuation_order(short_ll, short_hit, n_keep, floor=tie_floor)
        cont = _take(short["params"], order)
        iters_before = short["n_iter"][order]
    else:
        order = np.arange(S)
        cont = jax.tree.map(np.asarray, starts)
        iters_before = np.zeros(S, dtype=np.int64)
    final = _continue(spec, cont, x, y, w, config, backend, var_floor, rel, abs_, threads)
    K = order.shape[0]

    def finish(i):
        p = _take(final["params"], i)
        ll = float(final["loglik"][i])
        tr = final["trace"][i]
        tr = tr[np.isfinite(tr)]
        incr = np.diff(tr)[-3:]
        n_it = int(final["n_iter"][i] + iters_before[i])
        if not (np.isfinite(ll) and all(np.all(np.isfinite(np.asarray(v))) for v in p)):
            return p, ll, not_checked(n_it, "nonfinite")
        n_pol, derivs = 0, None
        if config.polish == "newton":
            p, ll, derivs, n_pol = polish(spec, p, x, y, w, max_iter=config.max_polish,
                                          var_floor=var_floor)
        cert = certify(spec, p, x, y, w, tol=config.cert_tol, n_iter=n_it, n_polish=n_pol,
                       increments=incr, var_floor=var_floor, derivs=derivs)
        return p, ll, cert

    polish_threads = threads if backend in em_backend_mod.CPU_BACKENDS else 1
    done = em_backend_mod.map_fits(finish, list(range(K)), polish_threads)
    fl = np.array([d[1] for d in done], dtype=np.float64)
    certs = [d[2] for d in done]
    floor_hit = np.asarray(final["floor_hit"], dtype=bool) | np.array(
        [c.reason == "variance_floor" for c in certs])
    score = np.where(np.isfinite(fl), fl, -np.inf)
    healthy = ~floor_hit & np.isfinite(fl)
    if healthy.any():
        score = np.where(healthy, score, -np.inf)
    certified = np.array([c.certified for c in certs])
    best = pick_best(score, order, floor=tie_floor, prefer=certified)
    stopped = short_ll.copy()
    stopped[order] = fl
    p_best = jax.tree.map(np.asarray, done[best][0])
    tr = final["trace"][best]
    tr = tr[np.isfinite(tr)]
    if np.isfinite(fl[best]) and (tr.size == 0 or fl[best] != tr[-1]):
        tr = np.append(tr, fl[best])  # the polish moved the estimate
    return PipelineResult(
        params=p_best, loglik=float(fl[best]),
        n_iter=int(final["n_iter"][best] + iters_before[best]),
        converged=bool(final["converged"][best]), floor_hit=bool(floor_hit[best]),
        trace=tr, certificate=certs[best], best_start=int(order[best]), start_kinds=kinds,
        start_logliks=stopped, short_logliks=short_ll, short_floor_hit=short_hit,
        continued=order, final_logliks=fl, final_floor_hit=floor_hit,
        final_certified=certified, var_floor=var_floor,
        em_backend=backend)
