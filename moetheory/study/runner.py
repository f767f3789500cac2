"""Run a study: one ``jit(vmap(one_replicate))`` per cell (fitted model × sample size).

One replicate is a pure function of its key (DESIGN.md §3.4, §6):

    key(seed, n, r) = fold_in(fold_in(key(seed), n), r)
    (k_x, k_y, k_init) = split(key, 3)
    x ~ design, y ~ p(y | x; truth), EM from ``n_starts`` starts (vmapped), keep the best
    log-likelihood, then every loss and per-parameter error of the fit.

The key depends on the *value* n and the replicate index r only, so adding sample sizes or
replicates never changes an existing cell or replicate. All fitted models of a study see the same
data at the same (n, r) (common random numbers across panels).

Avoiding recompilation: x and y are padded to a *bucket* length N(n) ≥ n from a fixed geometric
ladder (ratio ``estimator.bucket_ratio``, default 1.5), and rows ≥ n carry weight 0 in EM
(``run_em(weights=...)``). n itself is a traced argument, so one compiled executable serves every
n of a bucket; the data of a replicate are drawn at length N(n), which is a function of n alone,
so results stay a deterministic function of (seed, n, r). A persistent XLA compilation cache
(``$MOETHEORY_COMPILE_CACHE``, default ``<cache dir>/jax-compile``) makes re-runs and worker
processes skip compilation entirely.

Failures are recorded per replicate (``status`` bit field, see :data:`STATUS_BITS`) and never
averaged silently: ``failed`` replicates keep their raw numbers in the cache and are excluded
(and counted) by :func:`summarize`.
"""
from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from moetheory._jax import ensure_x64
from moetheory.em.multistart import TIE_RTOL
from moetheory.em.run import LL_FLOOR_PER_OBS
from moetheory.params import MoEParams
from moetheory.spec import MoESpec
from moetheory.study.spec import DesignSpec, EstimatorSpec, FitSpec, StudySpec, _check_int

#: replicate status bits (``status`` column). ``failed`` = the *fit* failed (non-finite, variance
#: collapse): the replicate is excluded from every mean. ``loss_undefined`` (some loss is NaN, e.g.
#: D_2 needing an unknown r̄(m)) only removes that loss value; ``not_converged`` is informational.
STATUS_BITS = {"nonfinite": 1, "variance_collapse": 2, "loss_undefined": 4, "not_converged": 8}
FAILURE_MASK = 1 | 2

#: test hook: seconds to sleep after each computed cell (lets a test interrupt a study midway)
_DELAY_ENV = "MOETHEORY_STUDY_CELL_DELAY"

_LADDER_BASE = 64


def bucket_length(n: int, ratio: float, buckets=()) -> int:
    """Padded length N(n) ≥ n: the smallest explicit bucket ≥ n if any, else the smallest rung
    of the ladder ⌈64·ratio^j / 8⌉·8 (j ≥ 0); ``ratio <= 1`` disables the ladder (N = n).

    Examples
    --------
    >>> [bucket_length(n, 1.5) for n in (10, 64, 65, 1000)]
    [64, 64, 96, 1096]
    """
    for b in sorted(buckets):
        if b >= n:
            return int(b)
    if ratio <= 1.0:
        return int(n)
    return next(r for r in ladder(ratio) if r >= n)


def ladder(ratio: float, upto: int = 10 ** 9):
    """The rungs of the bucket ladder (a generator, increasing).

    Parameters
    ----------
    ratio : float
        Growth ratio between rungs (> 1); rung j is ⌈64·ratio^j / 8⌉·8.
    upto : int
        Stop after the first rung ≥ ``upto``.

    Examples
    --------
    >>> list(ladder(1.5, upto=300))
    [64, 96, 144, 216, 328]
    """
    j, last = 0, 0
    while last < upto:
        rung = int(math.ceil(_LADDER_BASE * ratio ** j / 8.0)) * 8
        if rung > last:
            last = rung
            yield rung
        j += 1


def ladder_sizes(lo: float, hi: float, count: int, ratio: float) -> tuple:
    """About ``count`` log-spaced sizes in [lo, hi] snapped *onto* ladder rungs (no padding waste).

    Parameters
    ----------
    lo, hi : float
        Range of sample sizes.
    count : int
        Wanted number of sizes (fewer when [lo, hi] holds fewer rungs).
    ratio : float
        Ladder ratio, as in :func:`ladder`.

    Returns
    -------
    tuple of int, length <= count

    Examples
    --------
    >>> ladder_sizes(100, 1000, 4, 1.5)
    (144, 216, 488, 736)
    """
    rungs = [r for r in ladder(ratio, int(hi * ratio) + 1) if lo <= r <= hi]
    if len(rungs) <= count:
        return tuple(rungs)
    idx = np.unique(np.round(np.linspace(0, len(rungs) - 1, count)).astype(int))
    return tuple(rungs[i] for i in idx)


# ---------------------------------------------------------------------------- the cell kernel
@dataclass(frozen=True)
class CellConfig:
    """Everything static about one fitted model of a study (a jit static argument).

    ``n_pad`` is the padded data length N(n) (:func:`bucket_length`): x is drawn with shape
    (n_pad, d) and y with shape (n_pad,), rows ≥ n having weight 0.

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.spec import FitSpec, StudySpec
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> study = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth,
    ...                   fits=(FitSpec("k2", MoESpec(2, 1), sizes=(100, 200)),), replicates=2)
    >>> cfg = cell_config(study, "k2", 100)
    >>> cfg.n_pad, cfg.fit.label
    (144, 'k2')
    """

    truth_spec: MoESpec
    fit: FitSpec
    design: DesignSpec
    estimator: EstimatorSpec
    n_pad: int


_BLOCK = 256


def _block_draw(draw, key, N, tail=()):
    """Draw N rows in fixed blocks of 256 keyed by block index, so the first n rows do not
    depend on the padded length N (the sample at (seed, n, r) is the same in any bucket)."""
    nb = -(-N // _BLOCK)
    keys = jax.vmap(lambda b: jax.random.fold_in(key, b))(jnp.arange(nb, dtype=jnp.uint32))
    rows = jax.vmap(lambda kk: draw(kk, (_BLOCK,) + tuple(tail)))(keys)
    return rows.reshape((nb * _BLOCK,) + tuple(tail))[:N]


def _design(cfg: CellConfig, key, n):
    """x padded to length N (rows >= n are zero), and the weights (1 real, 0 padding)."""
    N, d, des = cfg.n_pad, cfg.truth_spec.dim, cfg.design
    idx = jnp.arange(N)
    w = (idx < n).astype(jnp.float64)
    if des.name == "grid":
        t = idx.astype(jnp.float64) / jnp.maximum(n - 1, 1).astype(jnp.float64)
        x = (des.low + (des.high - des.low) * t)[:, None]
    elif des.name == "uniform":
        x = _block_draw(lambda kk, s: jax.random.uniform(kk, s, minval=des.low, maxval=des.high,
                                                          dtype=jnp.float64), key, N, (d,))
    else:
        z = _block_draw(lambda kk, s: jax.random.normal(kk, s, dtype=jnp.float64), key, N, (d,))
        if des.name == "gaussian":
            x = des.scale * z
        else:
            x = des.radius * z / jnp.linalg.norm(z, axis=1, keepdims=True)
    return x * w[:, None], w


def _sample_y(spec, params, key, x):
    """y ~ p(y | x; params) by inverse-CDF expert choice and a normal draw, block-keyed."""
    from moetheory.gates import log_gate_weights
    from moetheory.model import expert_means

    kz, ke = jax.random.split(key)
    N = x.shape[0]
    u = _block_draw(lambda kk, s: jax.random.uniform(kk, s, dtype=jnp.float64), kz, N)
    e = _block_draw(lambda kk, s: jax.random.normal(kk, s, dtype=jnp.float64), ke, N)
    cdf = jnp.cumsum(jnp.exp(log_gate_weights(spec, params, x)), axis=-1)
    z = jnp.minimum(jnp.sum(cdf < u[:, None] * cdf[:, -1:], axis=-1), cdf.shape[-1] - 1)
    mu = jnp.take_along_axis(expert_means(params, x), z[:, None], axis=-1)[:, 0]
    return mu + jnp.sqrt(params.var[z]) * e


def _start(cfg: CellConfig, key, truth, n, x, y, w):
    from moetheory.em.init import (kmeans_labels, paper_init, params_from_resp, perturb_init,
                                   random_partition, standardise_xy)

    est, k, spec = cfg.estimator, cfg.fit.spec.n_experts, cfg.fit.spec
    if est.init == "paper":
        p = paper_init(key, truth, k, n, var_from_sd=est.var_from_sd, spec=spec)
    elif est.init == "perturb":
        p = perturb_init(key, truth, k, est.perturb_scale, spec=spec)
    else:
        if est.init == "random":
            resp = random_partition(key, x.shape[0], k, x.dtype)
        else:  # kmeans on the real rows: padded rows copy row 0 so they do not form clusters
            z = standardise_xy(x, y)
            z = jnp.where(w[:, None] > 0, z, z[0])
            resp = kmeans_labels(key, z, k)
        p = params_from_resp(spec, x, y, resp * w[:, None], est.var_floor)
    return _to_fit_structure(cfg, p, truth)


def _to_fit_structure(cfg, p, truth):
    """Starts near a truth of another gate family: give them the fitted gate's τ."""
    keep = cfg.fit.spec.has_tau and cfg.truth_spec.has_tau
    return p._replace(tau=p.tau if keep else jnp.ones_like(p.tau))


def replicate_inputs(cfg: CellConfig, truth: MoEParams, n, key):
    """The data and the EM starts of one replicate: a pure function of its key.

    Returns
    -------
    x : (n_pad, d); y : (n_pad,); w : (n_pad,) — rows ≥ n are padding (weight 0, x = y = 0)
    starts : MoEParams with a leading starts axis (``fit.n_starts``, k, ...)

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.spec import FitSpec, StudySpec
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> study = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth,
    ...                   fits=(FitSpec("k3", MoESpec(3, 1), sizes=(100,), n_starts=2),))
    >>> x, y, w, starts = replicate_inputs(cell_config(study, "k3", 100),
    ...                                    jax.tree.map(jnp.asarray, truth), 100,
    ...                                    replicate_keys(study.seed, 100, [0])[0])
    >>> x.shape, int(w.sum()), starts.a.shape   # padded to 144 rows; 2 starts of 3 experts
    ((144, 1), 100, (2, 3, 1))
    """
    kx, ky, ki = jax.random.split(key, 3)
    x, w = _design(cfg, kx, n)
    y = _sample_y(cfg.truth_spec, truth, ky, x) * w
    if cfg.fit.n_starts == 1:  # one start: drawn from ki itself (no split), as always
        starts = jax.tree.map(lambda v: v[None], _start(cfg, ki, truth, n, x, y, w))
    else:
        starts = jax.vmap(lambda kk: _start(cfg, kk, truth, n, x, y, w))(
            jax.random.split(ki, cfg.fit.n_starts))
    return x, y, w, starts


def _one_replicate(cfg: CellConfig, truth: MoEParams, n, key):
    from moetheory.em.run import run_em

    x, y, w, starts = replicate_inputs(cfg, truth, n, key)
    est, fit = cfg.estimator, cfg.fit
    gate_options = (("max_newton", est.max_newton),) if fit.spec.gate == "softmax" else None

    def em(p):
        return run_em(fit.spec, p, x, y, tol=est.tol, max_iter=est.max_iter,
                      var_floor=est.var_floor, weights=w, fixed_iter=est.fixed_iter,
                      gate_options=gate_options)

    if fit.n_starts == 1:  # no starts axis: a smaller program to compile
        res = jax.tree.map(lambda v: v[None], em(jax.tree.map(lambda v: v[0], starts)))
    else:
        res = jax.vmap(em)(starts)
    finite_start = jnp.isfinite(res.loglik) & jnp.all(
        jnp.stack([jnp.all(jnp.isfinite(v.reshape(fit.n_starts, -1)), axis=1) for v in res.params]),
        axis=0)
    # moetheory.em.multistart.pick_best: ties at rounding level go to the first start (the
    # window floored per observation, as the stopping rule)
    score = jnp.where(finite_start, res.loglik, -jnp.inf)
    top = score.max()
    window = TIE_RTOL * jnp.maximum(jnp.abs(top), LL_FLOOR_PER_OBS * n)
    best = jnp.where(jnp.isfinite(top), jnp.argmax(score >= top - window), jnp.argmax(score))
    r = jax.tree.map(lambda v: v[best], res)
    fitted = r.params

    out = {"loglik": r.loglik, "n_iter": r.n_iter, "converged": r.converged,
           "floor_hit": r.floor_hit, "best_start": best.astype(jnp.int32),
           "n_starts_finite": finite_start.sum().astype(jnp.int32)}
    for name, v in fitted._asdict().items():
        out[f"fit_{name}"] = v
    return out


def _replicate_losses(cfg: "LossConfig", truth: MoEParams, fitted: MoEParams, loglik, converged,
                      floor_hit):
    """Every loss and per-parameter error of one fit (independent of n: compiled once per fit)."""
    from moetheory.losses import best_translation, cell_errors, matched_errors, voronoi_loss
    from moetheory.losses.voronoi import gate_exponents
    from moetheory.study.density import design_nodes, hellinger_distance

    fit = cfg.fit
    kind = "d1" if fit.spec.n_experts == cfg.truth_spec.n_experts else "d2"
    # D_2 exponents by the PDEs the fitted gate keeps; unknown r̄(m >= 4) scored with r̄ >= 7
    vkw = {"exponents": gate_exponents(fit.spec), "rbar_unknown": "bound"}
    if fit.spec.gate == "temperature" and fit.spec.estimates_tau:
        # τ estimated: (β, τ) is identified only up to scale; the EM step reports the
        # representative ‖(β_0, β_1, τ)‖ = 1 (free entries), so compare with the truth's.
        from moetheory.em.gate_steps import normalise_temperature

        truth = normalise_temperature(truth)
    out = {}
    losses = {}
    for loss in cfg.losses:
        if loss == "voronoi":
            res = best_translation(fitted, truth, kind, fit.translation, None, fit.coords, **vkw)
            val = res.value
            out["rbar_bound_m"] = res.rbar_bound_m
        elif loss == "voronoi_pinned":
            val = voronoi_loss(fitted, truth, kind, "pinned", None, fit.coords, **vkw)
        elif loss == "voronoi_identified":
            val = voronoi_loss(fitted, truth, kind, fit.translation, None, "identified", **vkw)
        elif loss in ("voronoi_region", "gate"):
            from moetheory.losses.gate_error import gate_error
            from moetheory.losses.regions import region_loss

            xs = jnp.asarray(design_nodes(cfg.design, cfg.truth_spec.dim))
            val = (region_loss(fit.spec, fitted, cfg.truth_spec, truth, xs, kind, fit.translation,
                               None, fit.coords, **vkw) if loss == "voronoi_region" else
                   gate_error(fit.spec, fitted, cfg.truth_spec, truth, xs))
        else:  # hellinger
            xs = jnp.asarray(design_nodes(cfg.design, cfg.truth_spec.dim))
            val = hellinger_distance(fit.spec, fitted, cfg.truth_spec, truth, xs)
        losses[f"loss_{loss}"] = val
    out.update(losses)
    ce = cell_errors(fitted, truth, kind, fit.translation, None, fit.coords, **vkw)
    for name in ("size", "weight", "beta1", "a", "b", "var"):
        out[f"cell_{name}"] = getattr(ce, name)
    if fit.spec.n_experts == cfg.truth_spec.n_experts:
        me = matched_errors(fitted, truth, coords=fit.coords, translation=fit.translation)
        for name in ("beta0", "beta1", "a", "b", "var"):
            out[f"match_{name}"] = getattr(me, name)
        out["match_tau"] = me.tau

    params_ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in fitted]))
    nonfinite = ~(jnp.isfinite(loglik) & params_ok)
    loss_bad = jnp.any(jnp.stack([~jnp.isfinite(v) for v in losses.values()]))
    status = (nonfinite.astype(jnp.int32) * STATUS_BITS["nonfinite"]
              + floor_hit.astype(jnp.int32) * STATUS_BITS["variance_collapse"]
              + loss_bad.astype(jnp.int32) * STATUS_BITS["loss_undefined"]
              + (~converged).astype(jnp.int32) * STATUS_BITS["not_converged"])
    out["status"] = status
    out["failed"] = (status & FAILURE_MASK) > 0
    return out


@dataclass(frozen=True)
class LossConfig:
    """The static part of the loss computation (no sample size: compiled once per fit).

    The loss kernel maps it over replicates: fitted parameters of shape (R, k, ...) give
    per-replicate losses of shape (R,).

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.spec import FitSpec, StudySpec
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> study = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth,
    ...                   fits=(FitSpec("k2", MoESpec(2, 1), sizes=(100, 200)),), replicates=2)
    >>> cfg = LossConfig(study.truth_spec, study.fit("k2"), study.design, study.losses)
    >>> cfg.losses
    ('voronoi',)
    """

    truth_spec: MoESpec
    fit: FitSpec
    design: DesignSpec
    losses: tuple


@partial(jax.jit, static_argnames=("cfg",))
def _loss_kernel(cfg: LossConfig, truth: MoEParams, fitted: MoEParams, loglik, converged,
                 floor_hit):
    return jax.vmap(lambda f, l, c, h: _replicate_losses(cfg, truth, f, l, c, h))(
        fitted, loglik, converged, floor_hit)


@partial(jax.jit, static_argnames=("cfg", "vectorize"))
def _cell_kernel(cfg: CellConfig, truth: MoEParams, n, keys, vectorize="vmap"):
    fn = lambda kk: _one_replicate(cfg, truth, n, kk)  # noqa: E731
    if vectorize == "vmap":
        return jax.vmap(fn)(keys)
    # "map": replicates one after another; each EM loop stops at its own convergence instead of
    # waiting for the slowest replicate of the batch (faster on CPU; vmap is for accelerators)
    return jax.lax.map(fn, keys)


def default_vectorize() -> str:
    """``$MOETHEORY_VECTORIZE`` if set ("vmap" or "map"), else vmap on accelerators, map on CPU.

    Examples
    --------
    >>> import os
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"MOETHEORY_VECTORIZE": "vmap"}):
    ...     print(default_vectorize())
    vmap
    """
    v = os.environ.get("MOETHEORY_VECTORIZE")
    if v:
        if v not in ("vmap", "map"):
            raise ValueError(f"MOETHEORY_VECTORIZE must be 'vmap' or 'map'; got {v!r}")
        return v
    return "map" if jax.default_backend() == "cpu" else "vmap"


# ---------------------------------------------------------------------------- public
def replicate_keys(seed: int, n: int, replicates) -> jnp.ndarray:
    """Keys of replicates ``range(replicates)`` (or the given indices) at sample size n.

    Parameters
    ----------
    seed : int
    n : int
        Sample size (folded into the key, so adding sizes never changes existing replicates).
    replicates : int or array (R,) of int
        Number of replicates, or the replicate indices.

    Returns
    -------
    jax key array, shape (R,)

    Examples
    --------
    >>> replicate_keys(0, 100, 3).shape
    (3,)
    >>> bool((jax.random.key_data(replicate_keys(0, 100, [2]))[0]
    ...       == jax.random.key_data(replicate_keys(0, 100, 3))[2]).all())
    True
    """
    idx = np.arange(replicates) if np.ndim(replicates) == 0 else np.asarray(replicates)
    kn = jax.random.fold_in(jax.random.key(seed), int(n))
    return jax.vmap(lambda r: jax.random.fold_in(kn, r))(jnp.asarray(idx, dtype=jnp.uint32))


_COMPILE_CACHE_SET = False


def configure_compile_cache(cache_dir=None) -> str | None:
    """Turn on JAX's persistent compilation cache once per process (idempotent).

    Directory: ``$MOETHEORY_COMPILE_CACHE``, else ``<cache_dir>/jax-compile``; set
    ``MOETHEORY_COMPILE_CACHE=off`` to disable.

    Returns the directory it configured, or None (already configured, disabled, or no directory).

    Examples
    --------
    >>> configure_compile_cache(".moetheory-cache")  # doctest: +SKIP
    '/abs/path/.moetheory-cache/jax-compile'
    >>> configure_compile_cache(".moetheory-cache") is None  # doctest: +SKIP
    True
    """
    global _COMPILE_CACHE_SET
    if _COMPILE_CACHE_SET:
        return None
    path = os.environ.get("MOETHEORY_COMPILE_CACHE")
    if path == "off":
        _COMPILE_CACHE_SET = True
        return None
    if path is None:
        if cache_dir is None:
            return None
        path = os.path.join(os.fspath(cache_dir), "jax-compile")
    path = os.path.abspath(path)  # the process may change directory later
    os.makedirs(path, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    _COMPILE_CACHE_SET = True
    return path


def cell_config(study: StudySpec, label: str, n: int) -> CellConfig:
    """The static configuration (and padded length) of the cell (fit ``label``, n).

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.spec import FitSpec, StudySpec
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> study = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth,
    ...                   fits=(FitSpec("k2", MoESpec(2, 1), sizes=(100, 200)),), replicates=2)
    >>> cell_config(study, "k2", 100).n_pad   # data padded to shape (144, d)
    144
    """
    return CellConfig(study.truth_spec, study.fit(label), study.design, study.estimator,
                      bucket_length(n, study.estimator.bucket_ratio,
                                    study.estimator.buckets))


def compute_cell(study: StudySpec, label: str, n: int, replicates=None, vectorize=None,
                 em_backend=None, threads=None) -> dict:
    """All replicates of one cell as a dict of NumPy arrays (no cache involved).

    ``replicates``: indices to compute (default: all replicates of the fit);
    ``vectorize``: "vmap" (one batched program: the EM loop runs until the slowest replicate
    stops) or "map" (replicates in sequence); default :func:`default_vectorize`.
    ``em_backend``: "auto" (default, or ``$MOETHEORY_EM_BACKEND``), "numba" (the fused CPU
    kernel on a thread pool, :mod:`moetheory.study.numba_cells`) or "jax" (the cell kernel).
    The same data and starts either way; ``arrays["em_backend"]`` says which ran.
    ``threads``: threads of the Numba path (default ``$MOETHEORY_THREADS`` or every CPU).

    Returns a dict of arrays with a leading replicate axis, shape (R, ...): e.g. ``loss_voronoi``
    (R,), ``fit_beta1`` (R, k, d), ``failed`` (R,) bool, ``replicate``/``n``/``n_pad`` (R,).

    Examples
    --------
    >>> from moetheory.params import MoEParams  # doctest: +SKIP
    >>> from moetheory.spec import MoESpec  # doctest: +SKIP
    >>> from moetheory.study.spec import FitSpec, StudySpec  # doctest: +SKIP
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])  # doctest: +SKIP
    >>> study = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth,  # doctest: +SKIP
    ...                   fits=(FitSpec("k2", MoESpec(2, 1), sizes=(100, 200)),), replicates=2)  # doctest: +SKIP
    >>> arrays = compute_cell(study, "k2", 100)  # doctest: +SKIP
    >>> arrays["loss_voronoi"].shape, arrays["fit_beta1"].shape  # doctest: +SKIP
    ((2,), (2, 2, 1))
    """
    ensure_x64()
    from moetheory.em.mstep import GATE_MSTEPS

    fit = study.fit(label)
    if fit.spec.gate not in GATE_MSTEPS:
        raise ValueError(f"study {study.name!r}, fit {label!r}: no EM gate M-step is registered for "
                         f"gate={fit.spec.gate!r} yet (available: {sorted(GATE_MSTEPS)})")
    n = int(n)
    if n not in fit.sizes:
        raise ValueError(f"n={n} is not a sample size of fit {label!r}; sizes: {list(fit.sizes)}")
    cfg = cell_config(study, label, n)
    idx = np.arange(study.replicates_of(label)) if replicates is None else np.asarray(replicates)
    keys = replicate_keys(study.seed, n, idx)
    truth = jax.tree.map(jnp.asarray, study.truth_params)
    from moetheory.study import numba_cells

    backend = numba_cells.choose_backend(cfg, em_backend)
    if backend == "numba":
        out = numba_cells.fit_cell(cfg, truth, n, keys, threads=threads)
    else:
        out = _cell_kernel(cfg, truth, jnp.asarray(n), keys, vectorize or default_vectorize())
    fitted = MoEParams(*(out[f"fit_{name}"] for name in MoEParams._fields))
    lcfg = LossConfig(study.truth_spec, fit, study.design, study.losses)
    out.update(_loss_kernel(lcfg, truth, fitted, out["loglik"], out["converged"], out["floor_hit"]))
    arrays = {k: np.asarray(v) for k, v in out.items()}
    arrays["replicate"] = idx.astype(np.int64)
    arrays["n"] = np.full(idx.shape, n, dtype=np.int64)
    arrays["n_pad"] = np.full(idx.shape, cfg.n_pad, dtype=np.int64)
    arrays["em_backend"] = np.full(idx.shape, backend)  # a fixed-width unicode array
    for k, v in arrays.items():
        if v.dtype == np.bool_:
            continue
        if v.dtype.kind == "O":  # never happens; guards the no-pickle cache
            raise TypeError(f"cell array {k!r} has object dtype")
    return arrays


def _cell_delay():
    delay = os.environ.get(_DELAY_ENV)
    if delay:
        time.sleep(float(delay))


def missing_cells(study: StudySpec, cache) -> list:
    """The (label, n) cells of ``study`` not yet in ``cache``, in run order.

    Examples
    --------
    >>> import tempfile
    >>> from moetheory.study.cache import StudyCache
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.spec import FitSpec, StudySpec
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> study = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth,
    ...                   fits=(FitSpec("k2", MoESpec(2, 1), sizes=(100, 200)),), replicates=2)
    >>> missing_cells(study, StudyCache(tempfile.mkdtemp()))
    [('k2', 100), ('k2', 200)]
    """
    return [(label, n) for label, n in study.cells() if not cache.has_cell(study, label, n)]


def run_study(study: StudySpec, cache_dir=None, *, progress: bool = True, scheduler=None,
              workers=None, fits=None):
    """Compute every missing cell of ``study``, caching each as it completes.

    Parameters
    ----------
    cache_dir : path, default ``$MOETHEORY_CACHE`` or ``./.moetheory-cache``
    progress : show a per-cell progress bar with ETA (tqdm, on stderr)
    scheduler, workers : run the cells on a Dask cluster (an address, or a local cluster of
        ``workers`` processes) instead of in-process — see :mod:`moetheory.study.dask_exec`
    fits : optional labels restricting the run to some fitted models

    Returns
    -------
    pandas.DataFrame of all results (one row per fit × n × replicate), via
    :func:`moetheory.study.cache.load_results`.

    Examples
    --------
    >>> from moetheory.params import MoEParams  # doctest: +SKIP
    >>> from moetheory.spec import MoESpec  # doctest: +SKIP
    >>> from moetheory.study.spec import FitSpec, StudySpec  # doctest: +SKIP
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])  # doctest: +SKIP
    >>> study = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth,  # doctest: +SKIP
    ...                   fits=(FitSpec("k2", MoESpec(2, 1), sizes=(100, 200)),), replicates=2)  # doctest: +SKIP
    >>> df = run_study(study, "/tmp/mt-cache", progress=False)  # doctest: +SKIP
    >>> df.shape[0]   # 2 sizes x 2 replicates  # doctest: +SKIP
    4
    """
    from moetheory.study.cache import StudyCache

    cache = StudyCache(cache_dir)
    if workers is not None:
        _check_int("workers", workers, 1)
    if fits is not None:
        for label in fits:
            study.fit(label)
    cache.reconcile(study)
    todo = [(lab, n) for lab, n in missing_cells(study, cache) if fits is None or lab in fits]
    if scheduler is not None or workers is not None:
        from moetheory.study.dask_exec import run_cells_dask

        run_cells_dask(study, todo, cache, scheduler=scheduler, workers=workers, progress=progress)
    else:
        run_cells_local(study, todo, cache, progress=progress)
    return cache.load_results(study)


def run_cells_local(study, todo, cache, progress=True):
    """In-process execution of the given cells (no Dask import).

    Parameters
    ----------
    study : StudySpec
    todo : list of (fit label, n)
        Cells to compute; each is written to ``cache`` (arrays of shape (replicates, ...)).
    cache : StudyCache
    progress : bool
        Show a :class:`~moetheory.study.progress.CellProgress` bar.

    Examples
    --------
    >>> from moetheory.params import MoEParams  # doctest: +SKIP
    >>> from moetheory.spec import MoESpec  # doctest: +SKIP
    >>> from moetheory.study.spec import FitSpec, StudySpec  # doctest: +SKIP
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])  # doctest: +SKIP
    >>> study = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth,  # doctest: +SKIP
    ...                   fits=(FitSpec("k2", MoESpec(2, 1), sizes=(100, 200)),), replicates=2)  # doctest: +SKIP
    >>> from moetheory.study.cache import StudyCache  # doctest: +SKIP
    >>> cache = StudyCache("/tmp/mt-cache")  # doctest: +SKIP
    >>> run_cells_local(study, missing_cells(study, cache), cache, progress=False)  # doctest: +SKIP
    >>> missing_cells(study, cache)  # doctest: +SKIP
    []
    """
    from moetheory.study.progress import CellProgress

    configure_compile_cache(cache.root)
    with CellProgress(study, todo, enabled=progress) as bar:
        for label, n in todo:
            t0 = time.perf_counter()
            arrays = compute_cell(study, label, n)
            wall = time.perf_counter() - t0
            cache.write_cell(study, label, n, arrays, wall_s=wall)
            bar.done(label, n, arrays, wall)
            _cell_delay()


# ---------------------------------------------------------------------------- summaries
# (moved to moetheory.study.summary; re-exported here for existing imports)
from moetheory.study.summary import loss_matrix, summarize  # noqa: E402,F401
