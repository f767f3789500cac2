"""Run a study: every cell (fitted model × sample size) through the one estimator pipeline.

A cell is computed as keys → data → :func:`moetheory.em.pipeline.run_pipeline` → losses:

    key(seed, n, r) = fold_in(fold_in(key(seed), n), r)
    (k_x, k_y, k_starts) = split(key, 3)
    x = make_design(k_x, design, n)  (moetheory.designs), y ~ p(y | x; truth)  (moetheory.model)
    the estimate: run_pipeline(k_starts, fitted spec, x, y, study.estimator) — starts, EM,
    polish, certificate, best start, exactly as moetheory.fit computes it
    then every loss and per-parameter error of the estimate (one compiled loss kernel per fit).

The key depends on the *value* n and the replicate index r only, so adding sample sizes or
replicates never changes an existing cell or replicate. All fitted models of a study see the same
data at the same (n, r) (common random numbers across panels).

Replicates run on a thread pool when the pipeline's backend is the Numba kernel (it releases
the GIL). On the JAX backend the data are padded to a *bucket* length N(n) ≥ n from a geometric
ladder (``StudySpec.bucket_ratio``, or the explicit ``StudySpec.buckets``) with zero weights on
the padding, so one compiled program serves every n of a bucket; padding changes no number
beyond rounding. A persistent XLA compilation cache (per user:
:func:`moetheory.study.cache.default_compile_cache_dir`) lets re-runs and worker processes skip
compilation.

Failures are recorded per replicate (``status`` bit field, see :data:`STATUS_BITS`) and never
averaged silently: ``failed`` replicates keep their raw numbers in the cache and are excluded
(and counted) by :func:`summarize`; every replicate carries its convergence certificate
(``certified``, ``cert_gap``, ``cert_reason``, ...), and summaries count the certified ones.
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

from moetheory._jax import ensure_x64, release_compiled
from moetheory.em.certify import REASONS
from moetheory.params import ARRAY_FIELDS, MoEParams
from moetheory.spec import MoESpec
from moetheory.study.spec import DesignSpec, FitSpec, StudySpec, _check_int

#: replicate status bits (``status`` column). ``failed`` = the *fit* failed (non-finite, variance
#: collapse): the replicate is excluded from every mean. ``loss_undefined`` (some loss is NaN, e.g.
#: D_2 needing an unknown r̄(m)) only removes that loss value; ``not_converged`` (EM's stopping
#: rule not met) and ``not_certified`` (the estimate's certificate failed) are informational.
STATUS_BITS = {"nonfinite": 1, "variance_collapse": 2, "loss_undefined": 4, "not_converged": 8,
               "not_certified": 16}
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


# ---------------------------------------------------------------------------- one replicate
def replicate_data(study: StudySpec, n: int, key):
    """The data of one replicate and the key of its starts: a pure function of the key.

    Returns
    -------
    x : (n, d); y : (n,) NumPy float64; k_starts : the key :func:`run_pipeline` draws starts from

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.spec import FitSpec, StudySpec
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> study = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth,
    ...                   fits=(FitSpec("k2", MoESpec(2, 1), sizes=(100,)),))
    >>> x, y, _ = replicate_data(study, 100, replicate_keys(study.seed, 100, [0])[0])
    >>> x.shape, y.shape
    ((100, 1), (100,))
    """
    from moetheory.designs import make_design
    from moetheory.model import sample

    ensure_x64()
    kx, ky, ki = jax.random.split(key, 3)
    des = study.design
    if des.name == "gate":  # x from the truth's own model of its input (a joint gate)
        spec = study.truth_spec
        x = spec.gate_family.sample_input(kx, spec, jax.tree.map(jnp.asarray, study.truth_params),
                                          int(n))
    else:
        x = make_design(kx, des.name, int(n), study.truth_spec.dim, low=des.low, high=des.high,
                        scale=des.scale, radius=des.radius)
    y = sample(ky, study.truth_spec, study.truth_params, x)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64), ki


def cell_backend(study: StudySpec, label: str, requested=None) -> str:
    """The pipeline backend of fit ``label``'s cells: ``"numba"`` or ``"jax"``
    (:func:`moetheory.em.backend.choose_backend`; ``requested`` as its argument).

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.spec import FitSpec, StudySpec
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> study = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth,
    ...                   fits=(FitSpec("k2", MoESpec(2, 1), sizes=(100,)),))
    >>> cell_backend(study, "k2", "jax")
    'jax'
    """
    from moetheory.em.backend import choose_backend

    est = study.estimator_of(label)
    return choose_backend(study.fit(label).spec, est.fixed_iter, requested,
                          gate_options=est.gate_step_options())


def cell_losses(study: StudySpec, label: str, fits: dict) -> dict:
    """The loss columns of a cell from its fit columns: every loss, per-cell and matched error,
    ``status`` and ``failed``, each shape (R, ...).

    ``fits`` holds ``fit_<field>`` (R, ...), ``loglik``, ``converged``, ``floor_hit`` and
    ``certified`` (R,) — what :func:`fit_replicate` returns, stacked; a cached cell has them.

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.spec import FitSpec, StudySpec
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> study = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth, replicates=2,
    ...                   fits=(FitSpec("k2", MoESpec(2, 1), sizes=(100,)),))
    >>> fits = {f"fit_{k}": np.stack([v, v]) for k, v in truth.arrays().items()}
    >>> fits.update(loglik=np.zeros(2), converged=np.ones(2, bool), floor_hit=np.zeros(2, bool),
    ...             certified=np.ones(2, bool))
    >>> out = cell_losses(study, "k2", fits)     # the truth itself: loss 0, nothing failed
    >>> out["loss_voronoi"].shape, float(out["loss_voronoi"].max()) < 1e-12, out["failed"].any()
    ((2,), True, np.False_)
    """
    fit = study.fit(label)
    truth = jax.tree.map(jnp.asarray, study.truth_params)
    names = ARRAY_FIELDS + tuple(fit.spec.gate_family.extra_shapes(fit.spec))
    fitted = MoEParams.from_arrays({name: jnp.asarray(fits[f"fit_{name}"]) for name in names})
    lcfg = LossConfig(study.truth_spec, fit, study.design, study.losses)
    out = _loss_kernel(lcfg, truth, fitted, *(jnp.asarray(fits[k]) for k in
                                                 ("loglik", "converged", "floor_hit", "certified")))
    return {k: np.asarray(v) for k, v in out.items()}


def rescore_study(study: StudySpec, cache_dir=None, from_version: int | None = None,
                  progress: bool = True) -> list:
    """Rescore the cells cached under an earlier metrics version: no fit is repeated.

    A change to how losses are computed (:data:`moetheory.study.spec.METRICS_VERSION`) gives
    every panel a new hash, so its cells would be recomputed from scratch — fits included,
    although the fits do not depend on the metrics. This reads each cell of ``study`` written
    under ``from_version`` (default: the previous version) that the current version lacks,
    recomputes its losses from the stored fits (:func:`cell_losses`) and writes it as a cell of
    the current version, its manifest entry noting ``rescored_from`` (the earlier panel hash),
    the earlier cell's wall time and the provenance of the run that fitted it. The earlier
    cells are left in place.

    Returns
    -------
    list of (fit label, n): the cells written.

    Examples
    --------
    >>> rescore_study(study, "data/studies")   # doctest: +SKIP
    [('exact', 1000), ...]
    """
    from moetheory.study.cache import StudyCache
    from moetheory.study.spec import METRICS_VERSION

    from_version = METRICS_VERSION - 1 if from_version is None else int(from_version)
    if from_version == METRICS_VERSION:
        raise ValueError(f"from_version must be an earlier metrics version than the current "
                         f"{METRICS_VERSION}; got {from_version}")
    cache = StudyCache(cache_dir)
    written = []
    for fit in study.fits:
        old = cache.earlier_store(study, fit.label, from_version)
        if not old.directory.is_dir():
            continue
        entries = old.manifest().get("cells", {})
        for n in fit.sizes:
            if cache.has_cell(study, fit.label, n) or old.state(str(n)) != "done":
                continue
            arrays = old.read(str(n))
            arrays.update(cell_losses(study, fit.label, arrays))
            before = entries.get(str(n), {})
            cache.write_cell(study, fit.label, n, arrays, wall_s=before.get("wall_s"),
                             note={"rescored_from": study.panel_hash(fit.label, from_version),
                                   "fit_provenance": before.get("provenance")})
            written.append((fit.label, int(n)))
            if progress:
                print(f"{study.name}: rescored {fit.label} n={n}", flush=True)
    return written


def fit_replicate(study: StudySpec, label: str, n: int, key, backend: str, threads=1) -> dict:
    """Data, estimate and certificate of one replicate (before its losses) as a dict of NumPy
    scalars and arrays (the columns of a cell, without the replicate axis).

    Parameters
    ----------
    study : StudySpec; label : str, the fitted model; n : int, the sample size
    key : the replicate's key (:func:`replicate_keys`)
    backend : "numba" or "jax" (:func:`cell_backend`); threads : Numba threads for its starts

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.spec import FitSpec, StudySpec
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> study = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth,
    ...                   fits=(FitSpec("k2", MoESpec(2, 1), sizes=(200,)),))
    >>> row = fit_replicate(study, "k2", 200, replicate_keys(study.seed, 200, [0])[0], "jax")
    >>> row["fit_a"].shape, bool(row["certified"])
    ((2, 1), True)
    """
    fit, est = study.fit(label), study.estimator_of(label)
    x, y, k_starts = replicate_data(study, n, key)
    weights = None
    if backend == "jax":  # pad to the bucket: one compiled program per bucket, not per n
        N = bucket_length(n, study.bucket_ratio, study.buckets)
        w = np.zeros(N)
        w[:n] = 1.0
        x = np.concatenate([x, np.zeros((N - n, x.shape[1]))])
        y = np.concatenate([y, np.zeros(N - n)])
        weights = w
    from moetheory.em.pipeline import run_pipeline

    res = run_pipeline(k_starts, fit.spec, x, y, est, weights=weights,
                       truth=study.truth_params if est.near_truth else None, n_obs=n,
                       n_init=fit.n_starts, em_backend=backend, threads=threads)
    cert = res.certificate
    out = {"loglik": res.loglik, "n_iter": res.n_iter, "converged": res.converged,
           "floor_hit": res.floor_hit, "best_start": res.best_start,
           "n_starts_finite": int(np.isfinite(res.start_logliks).sum()),
           "certified": cert.certified, "cert_reason": REASONS.index(cert.reason),
           "cert_gap": cert.gap, "cert_score": cert.score_norm, "cert_min_eig": cert.min_eig,
           "n_polish": cert.n_polish, "n_certified_starts": int(res.final_certified.sum()),
           "var_floor": res.var_floor}
    for name, v in res.params.arrays().items():
        out[f"fit_{name}"] = np.asarray(v, dtype=np.float64)
    return out


# ---------------------------------------------------------------------------- losses
def _replicate_losses(cfg: "LossConfig", truth: MoEParams, fitted: MoEParams, loglik, converged,
                      floor_hit, certified):
    """Every loss and per-parameter error of one fit (independent of n: compiled once per fit)."""
    from moetheory.losses import cell_errors, matched_errors, voronoi_loss
    from moetheory.losses.voronoi import gate_exponents
    from moetheory.study.density import density_nodes, design_nodes, hellinger_distance

    fit = cfg.fit
    kind = "d1" if fit.spec.n_experts == cfg.truth_spec.n_experts else "d2"
    # D_2 exponents by the PDEs the fitted gate keeps; unknown r̄(m >= 4) scored with r̄ >= 7
    vkw = {"exponents": gate_exponents(fit.spec), "rbar_unknown": "bound"}
    gate = fit.spec.gate_family
    # Compare with the truth in the representative the gate reports (temperature gate, τ
    # estimated: (β, τ) is identified only up to scale, the EM step reports ‖(β_0, β_1, τ)‖ = 1).
    truth = gate.finalise(fit.spec, truth)
    out = {}
    losses = {}
    for loss in cfg.losses:
        if loss == "voronoi":
            # the gate's own Voronoi loss (its paper's; default: best_translation)
            res = gate.voronoi(fit.spec, fitted, truth, kind, fit.translation, fit.coords, **vkw)
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
        else:  # hellinger; nodes that follow the active sets' breakpoints where the gate jumps
            xs, w = density_nodes(fit.spec, fitted, cfg.truth_spec, truth, cfg.design,
                                  cfg.truth_spec.dim)
            val = hellinger_distance(fit.spec, fitted, cfg.truth_spec, truth, xs, weights=w)
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

    params_ok = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves(fitted)]))
    nonfinite = ~(jnp.isfinite(loglik) & params_ok)
    loss_bad = jnp.any(jnp.stack([~jnp.isfinite(v) for v in losses.values()]))
    status = (nonfinite.astype(jnp.int32) * STATUS_BITS["nonfinite"]
              + floor_hit.astype(jnp.int32) * STATUS_BITS["variance_collapse"]
              + loss_bad.astype(jnp.int32) * STATUS_BITS["loss_undefined"]
              + (~converged).astype(jnp.int32) * STATUS_BITS["not_converged"]
              + (~certified).astype(jnp.int32) * STATUS_BITS["not_certified"])
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


#: replicates whose losses are computed at once under a top-K gate's polar quadrature: bounds
#: its (replicates × nodes × y-points) arrays (hundreds of nodes); other losses take every
#: replicate at once (one compiled batch)
LOSS_BATCH = 8


@partial(jax.jit, static_argnames=("cfg",))
def _loss_kernel(cfg: LossConfig, truth: MoEParams, fitted: MoEParams, loglik, converged,
                 floor_hit, certified):
    from moetheory.study.density import cone_quadrature

    polar = "hellinger" in cfg.losses and cone_quadrature(cfg.fit.spec, cfg.truth_spec,
                                                          cfg.design)
    return jax.lax.map(lambda a: _replicate_losses(cfg, truth, *a),
                       (fitted, loglik, converged, floor_hit, certified),
                       batch_size=LOSS_BATCH if polar else loglik.shape[0])


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

    Directory: :func:`moetheory.study.cache.default_compile_cache_dir` (``$MOETHEORY_COMPILE_CACHE``,
    else ``$XDG_CACHE_HOME/moetheory/jax-compile``; ``off`` disables), created private to the user.
    It holds native code that later runs execute, so it never lives inside a results cache;
    ``cache_dir`` is accepted for compatibility and ignored.

    Returns the directory it configured, or None (already configured, or disabled).

    Examples
    --------
    >>> configure_compile_cache()  # doctest: +SKIP
    '/home/me/.cache/moetheory/jax-compile'
    >>> configure_compile_cache() is None  # doctest: +SKIP
    True
    """
    global _COMPILE_CACHE_SET
    if _COMPILE_CACHE_SET:
        return None
    from moetheory.study.cache import default_compile_cache_dir

    _COMPILE_CACHE_SET = True
    path = default_compile_cache_dir()
    if path is None:
        return None
    path = os.path.abspath(path)  # the process may change directory later
    os.makedirs(path, mode=0o700, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    return path


def compute_cell(study: StudySpec, label: str, n: int, replicates=None, em_backend=None,
                 threads=None) -> dict:
    """All replicates of one cell as a dict of NumPy arrays (no cache involved).

    ``replicates``: indices to compute (default: all replicates of the fit);
    ``em_backend``: "auto" (default, or ``$MOETHEORY_EM_BACKEND``), "numba" or "jax" — who runs
    the pipeline's EM (:func:`cell_backend`); the same data and starts either way, and
    ``arrays["em_backend"]`` says which ran. ``threads``: replicates run at once on the Numba
    backend (default ``$MOETHEORY_THREADS`` or every CPU).

    Returns a dict of arrays with a leading replicate axis, shape (R, ...): e.g. ``loss_voronoi``
    (R,), ``fit_beta1`` (R, k, d), ``certified`` (R,) bool, ``cert_gap`` (R,), ``failed`` (R,)
    bool, ``replicate``/``n`` (R,).

    Examples
    --------
    >>> from moetheory.params import MoEParams  # doctest: +SKIP
    >>> from moetheory.spec import MoESpec  # doctest: +SKIP
    >>> from moetheory.study.spec import FitSpec, StudySpec  # doctest: +SKIP
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])  # doctest: +SKIP
    >>> study = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth,  # doctest: +SKIP
    ...                   fits=(FitSpec("k2", MoESpec(2, 1), sizes=(100, 200)),), replicates=2)  # doctest: +SKIP
    >>> arrays = compute_cell(study, "k2", 100)  # doctest: +SKIP
    >>> arrays["loss_voronoi"].shape, arrays["fit_beta1"].shape, arrays["certified"].all()  # doctest: +SKIP
    ((2,), (2, 2, 1), True)
    """
    ensure_x64()
    from moetheory.em.backend import map_fits

    fit = study.fit(label)
    n = int(n)
    if n not in fit.sizes:
        raise ValueError(f"n={n} is not a sample size of fit {label!r}; sizes: {list(fit.sizes)}")
    idx = np.arange(study.replicates_of(label)) if replicates is None else np.asarray(replicates)
    keys = replicate_keys(study.seed, n, idx)
    backend = cell_backend(study, label, em_backend)
    one = lambda r: fit_replicate(study, label, n, keys[r], backend, threads=1)  # noqa: E731
    # Numba releases the GIL: replicates run side by side; the JAX loop runs them in turn.
    rows = map_fits(one, list(range(idx.size)), threads if backend == "numba" else 1)
    out = {name: np.stack([row[name] for row in rows]) for name in rows[0]}
    out.update(cell_losses(study, label, out))
    arrays = {k: np.asarray(v) for k, v in out.items()}
    arrays["replicate"] = idx.astype(np.int64)
    arrays["n"] = np.full(idx.shape, n, dtype=np.int64)
    arrays["em_backend"] = np.full(idx.shape, backend)  # a fixed-width unicode array
    for k, v in arrays.items():
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

    Damaged cells are named (:class:`~moetheory.study.store.DamagedCellWarning`) and recomputed;
    processes running the same study on one cache compute each cell once
    (:mod:`moetheory.study.claims`); Ctrl-C (KeyboardInterrupt) keeps every completed cell.

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
    cache.reconcile(study)  # damaged cells: named, set aside, recomputed below
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
    from contextlib import closing

    from moetheory.em.backend import compile_numba
    from moetheory.study.progress import CellProgress

    configure_compile_cache()
    with CellProgress(study, todo, enabled=progress) as bar, \
            closing(cache.share(study, todo, on_other=bar.skip)) as cells:
        if any(cell_backend(study, label) == "numba" for label in {lab for lab, _ in todo}):
            bar.compile(compile_numba)  # shown as its own phase, not inside the first cell
        for label, n in cells:  # each cell once, however many processes run the study
            t0 = time.perf_counter()
            arrays = compute_cell(study, label, n)
            wall = time.perf_counter() - t0
            cache.write_cell(study, label, n, arrays, wall_s=wall)
            bar.done(label, n, arrays, wall)
            release_compiled()  # a long study compiles many programs (moetheory._jax)
            _cell_delay()


# ---------------------------------------------------------------------------- summaries
# (in moetheory.study.summary; re-exported here for existing imports)
from moetheory.study.summary import excluded, loss_matrix, summarize  # noqa: E402,F401
