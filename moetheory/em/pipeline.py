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

Data-driven starts (``init`` auto, kmeans, random, lines) add the **start policy** and the
**spurious-solution rule**:

* rounds of ``n_init`` new starts (keys ``fold_in(key, round)``, the kinds' cycle continued)
  run through steps 1–4 until the best log-likelihood has been reached in ``min_best_hits``
  rounds, or ``max_starts`` starts were drawn (the result then says so: ``n_best_rounds``).
  Rounds, not starts, are the independent draws: the starts one round continues are the best of
  that round's short runs, and on real data they often share one basin (mixtools' tonedata,
  k = 2: all three continued starts of a round reach a maximum 2.8 nats below the best);
* every continued start is classified (:func:`moetheory.em.spurious.assess`); with
  ``spurious="reject"`` the winner is the best *regular* one whenever one exists, and higher
  spurious maxima are reported (``set_aside``), not returned;
* an expert of regular size whose variance sits on the *default* floor is not a spike: the noise
  is smaller than the floor, and that start continues with the floor lowered by
  :data:`FLOOR_STEP` (at most :data:`FLOOR_LOWERINGS` times).

Near-truth starts (``paper``, ``perturb``: simulation studies) run one round and the plain rule
of step 5, exactly as before the policy existed.

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

#: factor by which the default variance floor is lowered for an expert of regular size on it
FLOOR_STEP = 1e-8
#: at most this many lowerings (from 1e-8·Var(y) to 1e-24·Var(y): σ ≈ 1e-12·sd(y), near the
#: resolution of float64 residuals)
FLOOR_LOWERINGS = 2


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
    var_floor : float, the variance floor used (the winner's: lowered when its expert sat on the
        default floor, see the module docstring)
    em_backend : str, "numba", "numpy" or "jax"
    n_best_hits : int, continued starts whose log-likelihood is the winner's (within
        :func:`hit_tolerance`)
    n_best_rounds : int, rounds in which a continued start reached the winner's log-likelihood
    n_rounds : int, rounds of starts drawn (1 for near-truth starts)
    new_maximum_rate : float, the estimated chance that one more round would reach a maximum no
        round reached (:func:`new_maximum_rate`; 0 for near-truth starts)
    n_maxima : int, distinct maxima the continued starts reached (:func:`search_covered`)
    assessments : tuple of :class:`~moetheory.em.spurious.Assessment`, one per continued start
        (empty for near-truth starts)
    regular : bool or None, the winner is a regular maximum (None: not assessed)
    set_aside : tuple of (ℓ, Assessment), distinct spurious maxima above the winner, best first
    floor_lowered : bool, the winner's variance floor was lowered

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
    n_best_hits: int = 1
    n_best_rounds: int = 1
    n_rounds: int = 1
    new_maximum_rate: float = 0.0
    n_maxima: int = 1
    assessments: tuple = ()
    regular: bool | None = None
    set_aside: tuple = ()
    floor_lowered: bool = False


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


def hit_tolerance(config: EMConfig, loglik: float) -> float:
    """Two continued starts reached the same maximum when their polished log-likelihoods differ
    by at most this (nats): 100 × ``cert_tol`` (a certified start is within ``cert_tol`` of its
    maximum), or the tie window of :func:`~moetheory.em.starts.pick_best` if that is wider.

    Examples
    --------
    >>> float(np.round(hit_tolerance(EMConfig(), -1000.0), 12))
    0.0001
    """
    from moetheory.em.starts import TIE_RTOL

    return max(100.0 * config.cert_tol, TIE_RTOL * abs(float(loglik)))


#: the coverage estimate is trusted once the rounds are at least this many per maximum found
#: besides the best (:func:`search_covered`)
ROUNDS_PER_MAXIMUM = 2


def search_covered(config: EMConfig, rate: float, n_rounds: int, n_maxima: int) -> bool:
    """Whether the start policy's search counts as having covered the likelihood's maxima: the
    estimated chance that one more round finds a new maximum (:func:`new_maximum_rate`) is at
    most ``config.max_new_rate``, and the rounds are at least :data:`ROUNDS_PER_MAXIMUM` per
    distinct maximum found besides the best. Good's estimate rests on the maxima reached once
    or twice; when the rounds are few for the maxima found, most of them are (its standard
    error is of order √(f₁ + 2f₂)/N, Esty 1983, Ann. Statist. 11, 905), and a landscape whose
    best basin is reached by one round in three can show five lower maxima, each reached twice
    in six rounds, and an estimate of 0. ``max_new_rate = 1`` turns the check off.

    Examples
    --------
    >>> search_covered(EMConfig(), 0.0, 2, 2), search_covered(EMConfig(), 0.0, 6, 6)
    (True, False)
    """
    if config.max_new_rate >= 1.0:
        return True
    return rate <= config.max_new_rate and n_rounds >= ROUNDS_PER_MAXIMUM * (n_maxima - 1)


def maxima_rounds(logliks, rounds, tol: float) -> list:
    """The distinct maxima the continued starts reached, best first, each as the set of rounds
    that reached it (two log-likelihoods within ``tol`` are one maximum; non-finite ones are
    ignored).

    Examples
    --------
    >>> maxima_rounds(np.array([-5.0, -5.0, -7.0, -5.0]), np.array([0, 0, 0, 1]), 1e-6)
    [{0, 1}, {0}]
    """
    logliks, rounds = np.asarray(logliks, dtype=np.float64), np.asarray(rounds)
    keep = np.isfinite(logliks)
    logliks, rounds = logliks[keep], rounds[keep]
    maxima = []  # [ℓ, set of rounds that reached it]
    for i in np.argsort(-logliks, kind="stable"):
        if maxima and maxima[-1][0] - logliks[i] <= tol:
            maxima[-1][1].add(int(rounds[i]))
        else:
            maxima.append([logliks[i], {int(rounds[i])}])
    return [r for _, r in maxima]


def new_maximum_rate(logliks, rounds, tol: float) -> float:
    """Good's (1953) estimate, counted by rounds, of the chance that one more round of starts
    reaches a maximum that no round has reached: the number of maxima reached in exactly one
    round over the number of rounds, at most 1. Finch, Mendell & Thode (1989) proposed this
    measure of the adequacy of a search for the global maximum of a likelihood.

    Parameters
    ----------
    logliks : (m,) float, the continued starts' log-likelihoods (non-finite ones are ignored)
    rounds : (m,) int, the round of each
    tol : float, two log-likelihoods within ``tol`` are one maximum

    Examples
    --------
    >>> new_maximum_rate(np.array([-5.0, -5.0, -7.0, -5.0]), np.array([0, 0, 0, 1]), 1e-6)
    0.5
    """
    maxima = maxima_rounds(logliks, rounds, tol)
    if not maxima:
        return 1.0
    once = sum(1 for r in maxima if len(r) == 1)  # Good's singletons, by incidence
    return min(1.0, once / len(set().union(*maxima)))


class _Ctx(NamedTuple):
    """What every round of one pipeline call shares."""

    spec: object
    x: np.ndarray
    y: np.ndarray
    w: np.ndarray
    weights: object  # the caller's weights (None: unweighted)
    config: EMConfig
    backend: str
    var_floor: float
    auto_floor: bool  # the floor is the default one (the policy may lower it)
    rel: float
    abs_: float
    tie_floor: float
    threads: object
    truth: object
    n_obs: object
    gate_opts: tuple


def _finish_one(ctx: _Ctx, p, ll, trace, n_it, assess_it: bool):
    """Polish, certify and (data-driven fits) assess one continued start; lower the default
    floor under an expert of regular size that sits on it. Returns (params, ℓ, certificate,
    assessment or None, the floor it ended under)."""
    from moetheory.em.spurious import assess

    spec, x, y, w, config = ctx.spec, ctx.x, ctx.y, ctx.w, ctx.config
    incr = np.diff(trace)[-3:]
    if not (np.isfinite(ll) and all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree.leaves(p))):
        cert = not_checked(n_it, "nonfinite")
        return p, ll, cert, (assess(spec, p, x, y, w, var_floor=ctx.var_floor, certificate=cert,
                                    min_size=config.min_size) if assess_it else None), ctx.var_floor
    floor = ctx.var_floor
    lowerings = 0
    while True:
        n_pol, derivs = 0, None
        if config.polish == "newton":
            p, ll, derivs, n_pol = polish(spec, p, x, y, w, max_iter=config.max_polish,
                                          var_floor=floor)
        cert = certify(spec, p, x, y, w, tol=config.cert_tol, n_iter=n_it, n_polish=n_pol,
                       increments=incr, var_floor=floor, derivs=derivs)
        if not assess_it:
            return p, ll, cert, None, floor
        verdict = assess(spec, p, x, y, w, var_floor=floor, certificate=cert,
                         min_size=config.min_size)
        on_floor = np.asarray(p.var) <= floor * (1 + 1e-9)
        if (verdict.cause != "variance_floor" or not ctx.auto_floor or lowerings == FLOOR_LOWERINGS
                or np.any(verdict.sizes[on_floor] < verdict.min_count)):
            return p, ll, cert, verdict, floor
        # An expert of regular size on the default floor: its noise is below the floor (not a
        # spike on a few points). Continue this start under a lower floor.
        floor *= FLOOR_STEP
        lowerings += 1
        one = jax.tree.map(lambda v: np.asarray(v)[None], p)
        out = _continue(spec, one, x, y, w, config, ctx.backend, floor, ctx.rel, ctx.abs_, 1)
        p = _take(out["params"], 0)
        ll = float(out["loglik"][0])
        n_it += int(out["n_iter"][0])
        tr = out["trace"][0]
        incr = np.diff(tr[np.isfinite(tr)])[-3:]


def _round(ctx: _Ctx, key, kinds, choose, assess_it: bool, n_keep=None) -> dict:
    """Draw ``kinds`` starts, short-run them, continue those ``choose`` picks, finish each."""
    spec, x, y, w, config = ctx.spec, ctx.x, ctx.y, ctx.w, ctx.config
    starts = draw_starts(key, spec, x, y, kinds, truth=ctx.truth,
                         n_obs=ctx.n_obs, var_floor=ctx.var_floor,
                         perturb_scale=config.perturb_scale, var_from_sd=config.var_from_sd,
                         weights=None if ctx.weights is None else w,
                         tau=dict(config.gate_options).get("tau_value"), backend=ctx.backend)
    S = len(kinds)
    n_keep = min(config.n_keep if n_keep is None else n_keep, S)
    short_ll = np.full(S, np.nan)
    short_hit = np.zeros(S, dtype=bool)
    if n_keep < S and config.n_short > 0:
        short = em_backend_mod.run_starts(
            spec, starts, x, y, w, backend=ctx.backend, tol_rel=0.0, tol_abs=0.0,
            max_iter=config.max_iter, n_steps=config.n_short, n_hard=config.n_hard,
            var_floor=ctx.var_floor, gate_options=ctx.gate_opts, threads=ctx.threads)
        short_ll, short_hit = short["loglik"], short["floor_hit"]
        order = choose(short_ll, short_hit, n_keep)
        cont = _take(short["params"], order)
        iters_before = short["n_iter"][order]
    else:
        order = np.arange(S)
        cont = jax.tree.map(np.asarray, starts)
        iters_before = np.zeros(S, dtype=np.int64)
    K = order.shape[0]
    if K == 0:
        return {"kinds": kinds, "short_ll": short_ll, "short_hit": short_hit, "order": order,
                "done": [], "final": None, "iters_before": iters_before}
    final = _continue(spec, cont, x, y, w, config, ctx.backend, ctx.var_floor, ctx.rel, ctx.abs_,
                      ctx.threads)

    def finish(i):
        tr = final["trace"][i]
        return _finish_one(ctx, _take(final["params"], i), float(final["loglik"][i]),
                           tr[np.isfinite(tr)], int(final["n_iter"][i] + iters_before[i]),
                           assess_it)

    polish_threads = ctx.threads if ctx.backend in em_backend_mod.CPU_BACKENDS else 1
    done = em_backend_mod.map_fits(finish, list(range(K)), polish_threads)
    return {"kinds": kinds, "short_ll": short_ll, "short_hit": short_hit, "order": order,
            "done": done, "final": final, "iters_before": iters_before}


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
    n_init : int, optional, number of starts (per round for data-driven starts; default
        ``config.n_init``, else its default)
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
    >>> x = rng.uniform(-1, 1, (400, 1))
    >>> z = rng.random(400) < 1 / (1 + np.exp(-3 * x[:, 0]))     # a soft gate
    >>> y = np.where(z, 1 + 2 * x[:, 0], -1 - x[:, 0]) + 0.1 * rng.standard_normal(400)
    >>> res = run_pipeline(jax.random.key(0), MoESpec(2, 1), x, y, EMConfig(n_init=2, n_keep=2))
    >>> res.certificate.reason, res.regular, res.n_best_rounds >= 2
    ('certified', True, True)
    """
    x = np.ascontiguousarray(np.asarray(x, dtype=np.float64))
    y = np.ascontiguousarray(np.asarray(y, dtype=np.float64))
    w = (np.ones(y.shape[0]) if weights is None
         else np.ascontiguousarray(np.asarray(weights, dtype=np.float64)))
    n_w = float(w.sum())
    auto_floor = var_floor is None and config.var_floor is None
    if var_floor is None:
        var_floor = config.var_floor if config.var_floor is not None else default_var_floor(y, w)
    gate_opts = config.gate_step_options()
    backend = em_backend_mod.choose_backend(spec, config.fixed_iter, em_backend,
                                            gate_options=gate_opts, n_obs=x.shape[0])
    rel, abs_ = config.stop_thresholds(n_w)
    tie_floor = REL_LL_FLOOR * n_w  # the tie window near ℓ = 0, per observation
    ctx = _Ctx(spec, x, y, w, weights, config, backend, float(var_floor), auto_floor, rel, abs_,
               tie_floor, threads, truth, n_obs, gate_opts)
    if config.near_truth:
        return _near_truth(ctx, key, config.start_kinds(n_init))
    return _policy(ctx, key, n_init, auto_floor=auto_floor)


def _near_truth(ctx: _Ctx, key, kinds) -> PipelineResult:
    """One round and the plain selection rule (simulation studies)."""
    rnd = _round(ctx, key, kinds,
                 lambda ll, hit, n_keep: continuation_order(ll, hit, n_keep, floor=ctx.tie_floor),
                 assess_it=False)
    final, order, done = rnd["final"], rnd["order"], rnd["done"]
    fl = np.array([d[1] for d in done], dtype=np.float64)
    certs = [d[2] for d in done]
    floor_hit = np.asarray(final["floor_hit"], dtype=bool) | np.array(
        [c.reason == "variance_floor" for c in certs])
    score = np.where(np.isfinite(fl), fl, -np.inf)
    healthy = ~floor_hit & np.isfinite(fl)
    if healthy.any():
        score = np.where(healthy, score, -np.inf)
    certified = np.array([c.certified for c in certs])
    best = pick_best(score, order, floor=ctx.tie_floor, prefer=certified)
    stopped = rnd["short_ll"].copy()
    stopped[order] = fl
    p_best = jax.tree.map(np.asarray, done[best][0])
    tr = final["trace"][best]
    tr = tr[np.isfinite(tr)]
    if np.isfinite(fl[best]) and (tr.size == 0 or fl[best] != tr[-1]):
        tr = np.append(tr, fl[best])  # the polish moved the estimate
    hits = int(np.sum(np.abs(fl - fl[best]) <= hit_tolerance(ctx.config, fl[best]))) \
        if np.isfinite(fl[best]) else 0
    return PipelineResult(
        params=p_best, loglik=float(fl[best]),
        n_iter=int(final["n_iter"][best] + rnd["iters_before"][best]),
        converged=bool(final["converged"][best]), floor_hit=bool(floor_hit[best]),
        trace=tr, certificate=certs[best], best_start=int(order[best]), start_kinds=rnd["kinds"],
        start_logliks=stopped, short_logliks=rnd["short_ll"], short_floor_hit=rnd["short_hit"],
        continued=order, final_logliks=fl, final_floor_hit=floor_hit,
        final_certified=certified, var_floor=ctx.var_floor, em_backend=ctx.backend,
        n_best_hits=hits)


def _policy(ctx: _Ctx, key, n_init, auto_floor) -> PipelineResult:
    """Rounds of data-driven starts until the best is reached in ``min_best_hits`` rounds; the
    spurious-solution rule picks the winner (module docstring)."""
    config = ctx.config
    per_round = len(config.start_kinds(n_init))
    kinds_all, short_ll, short_hit = [], [], []
    cont_idx, params, fl, certs, verdicts, floors, em_conv, em_floor, n_iters, traces = \
        [], [], [], [], [], [], [], [], [], []
    cont_round = []  # the round of each continued start: rounds are independent draws
    rounds = 0
    while True:
        first = len(kinds_all)
        kinds = config.start_kinds(per_round, first=first)
        key_r = key if rounds == 0 else jax.random.fold_in(key, rounds)

        rnd = _round(ctx, key_r, kinds,
                     lambda ll, hit, n_keep: continuation_order(ll, hit, n_keep, floor=ctx.tie_floor),
                     assess_it=True)
        rounds += 1
        kinds_all += list(kinds)
        short_ll.append(rnd["short_ll"])
        short_hit.append(rnd["short_hit"])
        final = rnd["final"]
        for j, i in enumerate(rnd["order"]):
            p, ll, cert, verdict, floor = rnd["done"][j]
            tr = final["trace"][j]
            cont_idx.append(first + int(i))
            cont_round.append(rounds - 1)
            params.append(p)
            fl.append(ll)
            certs.append(cert)
            verdicts.append(verdict)
            floors.append(floor)
            em_conv.append(bool(final["converged"][j]))
            em_floor.append(bool(final["floor_hit"][j]))
            n_iters.append(int(final["n_iter"][j] + rnd["iters_before"][j]))
            traces.append(tr[np.isfinite(tr)])
        best, reached = _select(ctx, np.array(fl, dtype=np.float64), certs, verdicts,
                                np.array(cont_idx))
        hits, hit_rounds = int(reached.sum()), len(set(np.array(cont_round)[reached].tolist()))
        tol = hit_tolerance(config, fl[best]) if np.isfinite(fl[best]) else 0.0
        new_rate = new_maximum_rate(np.array(fl, dtype=np.float64), np.array(cont_round), tol)
        n_maxima = len(maxima_rounds(np.array(fl, dtype=np.float64), np.array(cont_round), tol))
        # one expert: least squares, a single maximum that one start finds
        wanted = 1 if ctx.spec.n_experts == 1 else config.min_best_hits
        done = (hit_rounds >= wanted and (verdicts[best].regular or config.spurious == "keep")
                and (ctx.spec.n_experts == 1
                     or search_covered(config, new_rate, rounds, n_maxima)))
        if done or len(kinds_all) + per_round > config.max_starts:
            break
    fl = np.array(fl, dtype=np.float64)
    order = np.array(cont_idx, dtype=np.int64)
    short_ll = np.concatenate(short_ll)
    stopped = short_ll.copy()
    stopped[order] = fl
    floor_hit = np.array([v.cause == "variance_floor" for v in verdicts])
    tol = hit_tolerance(config, fl[best]) if np.isfinite(fl[best]) else 0.0
    set_aside, seen = [], []
    for j in np.argsort(-np.where(np.isfinite(fl), fl, -np.inf), kind="stable"):
        if not fl[j] > fl[best] + tol:
            break
        if verdicts[j].cause in ("variance_floor", "nonfinite") or verdicts[j].regular:
            continue
        if not any(abs(fl[j] - s) <= tol for s in seen):
            seen.append(fl[j])
            set_aside.append((float(fl[j]), verdicts[j]))
    tr = traces[best]
    if np.isfinite(fl[best]) and (tr.size == 0 or fl[best] != tr[-1]):
        tr = np.append(tr, fl[best])  # the polish moved the estimate
    return PipelineResult(
        params=jax.tree.map(np.asarray, params[best]), loglik=float(fl[best]),
        n_iter=n_iters[best], converged=em_conv[best], floor_hit=bool(floor_hit[best]), trace=tr,
        certificate=certs[best], best_start=int(order[best]), start_kinds=tuple(kinds_all),
        start_logliks=stopped, short_logliks=short_ll, short_floor_hit=np.concatenate(short_hit),
        continued=order, final_logliks=fl, final_floor_hit=floor_hit,
        final_certified=np.array([c.certified for c in certs]), var_floor=float(floors[best]),
        em_backend=ctx.backend, n_best_hits=hits, n_best_rounds=hit_rounds, n_rounds=rounds,
        new_maximum_rate=float(new_rate), n_maxima=n_maxima, assessments=tuple(verdicts),
        regular=bool(verdicts[best].regular), set_aside=tuple(set_aside),
        floor_lowered=bool(floors[best] < ctx.var_floor))


def _select(ctx: _Ctx, fl, certs, verdicts, index):
    """(winner, which continued starts reached its log-likelihood) under the spurious rule."""
    finite = np.isfinite(fl)
    regular = np.array([v.regular for v in verdicts]) & finite
    healthy = np.array([v.cause not in ("variance_floor", "nonfinite") for v in verdicts]) & finite
    if ctx.config.spurious == "reject" and regular.any():
        pool = regular
    elif healthy.any():
        pool = healthy
    else:
        pool = finite
    certified = np.array([c.certified for c in certs])
    best = pick_best(np.where(pool, fl, -np.inf), index, floor=ctx.tie_floor, prefer=certified)
    if not np.isfinite(fl[best]):
        return best, np.zeros(fl.shape, dtype=bool)
    same = np.abs(fl - fl[best]) <= hit_tolerance(ctx.config, fl[best])
    like = regular if regular[best] else pool
    return best, same & like
