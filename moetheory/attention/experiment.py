"""Relative test error vs sample size for RFA, biased RFA and the RF-MLP baseline.

One *cell* is one replicate (seed index ``r``): it draws a pool of ``max(n_grid)``
labelled inputs, a test set, and one random feature map per model; the normalised
kernel (or, when the model has fewer features than the pool, the feature matrix) is
computed **once** for the largest ``n`` and sliced for the nested smaller ones, and one
eigendecomposition per ``(model, n)`` serves every penalty and every target.

Per ``(model, n)``: the first ``n`` pool points are split into a training part and a
validation part (last ``val_frac``); ``lam`` is picked per target on the validation MSE
over the grid; with ``refit=True`` (default) the model is refit on all ``n`` points with
that ``lam``.  Labels are centred by their training mean when ``center_y``.  The
reported error is ``MSE(test) / Var(test target)`` against the *noiseless* target.

Random streams (numpy ``default_rng([seed, ...])``): ``(seed, r, 0)`` pool inputs,
``(seed, r, 1)`` test inputs, ``(seed, r, 2, c)`` label noise of the target whose name has
CRC-32 ``c``, ``(seed, r, 10 + k)`` weights of model ``k`` and ``(seed, 2, c)`` that target's
parameters (the same target for all replicates). Sample ``i`` of the pool and its labels do
not depend on ``max(n_grid)``, a target's parameters and noise do not depend on which other
targets are listed (one stream per name), and adding replicates never changes existing ones.

Cells live in the study cache (:class:`moetheory.study.store.CellStore`, the store of every
study): ``OUT/cells-<config hash>/cell_XXX.json`` plus a ``manifest.json`` with each cell's
sha256, written atomically as soon as the replicate finishes and carrying the configuration
hash. A run resumes from the cells of its configuration, recomputes damaged ones (named in a
warning) and leaves cells that another process is computing to it (claim files), so concurrent
runs on one folder compute each replicate once.  ``OUT/results.json`` aggregates them.  No pickle.
(Folders written before this layout hold ``OUT/cell_XXX.json``; they are not read: their
replicates are recomputed once, with the same numbers.)
"""
from __future__ import annotations

import dataclasses
import json
import os
import platform
import sys
import time
import zlib
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .features import RFAFeatures, RFMLPFeatures, feature_matrix, identity_mean_scale, kernel_matrix
from .inputs import check_choice, check_positive, check_positive_int, make_rng, sample_inputs
from .ridge import (choose_solver, ridge_path_dual, ridge_path_primal, ridge_solve_dual,
                    ridge_solve_primal, select_lambda)
from .targets import TARGETS, make_target

__all__ = ["AttentionConfig", "PRESETS", "MODELS", "run_attention_experiment", "run_cell",
           "build_model", "config_hash", "cache_status"]

MODELS = ("rfa", "biased_rfa", "rfmlp")
RESULTS_FILE = "results.json"


@dataclass(frozen=True)
class AttentionConfig:
    """Declaration of the attention experiment (all constants are **OPEN** in the paper).

    Attributes
    ----------
    d, N : int
        Dimension and number of keys (default 8, 8).
    radius : float
        Input sphere radius (default 1; ``sqrt(d)`` is the other common choice).
    augment : bool
        Append a constant 1 to tokens (RFA) / to the flattened input (RF-MLP).
    n_heads : int
        Number of heads ``M`` (default 1000): ``M (d + 1)`` trainable weights.
    activation : {"relu", "exp", "softmax"}
    w_var : float or None
        Variance of the random ``W`` entries (None: ``1 / d_in``).
    bias_relative : float
        Biased-RFA mean scale relative to the random part, see
        :func:`~moetheory.attention.features.identity_mean_scale`.
    mlp_match : {"params", "heads"}
        RF-MLP width: ``M d_in`` neurons (same trainable weights, default) or ``M``.
    models, targets : tuple of str
    noise_sd : float
        Label noise on the training labels.
    n_grid : tuple of int
        Nested sample sizes.
    n_test : int
    n_seeds : int
        Number of replicates; ``seed`` is the study seed.
    val_frac : float
        Validation fraction of each ``n`` used to choose ``lam``.
    lambdas : tuple of float
        Penalty grid for the feature-count-normalised kernel.
    block_size : int
        Heads / neurons per block when accumulating kernels.
    center_y, refit : bool

    Examples
    --------
    >>> cfg = AttentionConfig(n_heads=10, n_grid=(40, 20), targets=("cos_dot",))
    >>> cfg.n_grid, cfg.d, cfg.N
    ((20, 40), 8, 8)
    >>> AttentionConfig.from_dict(cfg.to_dict()) == cfg
    True
    """

    d: int = 8
    N: int = 8
    radius: float = 1.0
    augment: bool = True
    n_heads: int = 1000
    activation: str = "relu"
    w_var: float | None = None
    bias_relative: float = 1.0
    mlp_match: str = "params"
    models: tuple = MODELS
    targets: tuple = ("hermite2_dot", "hermite3_dot", "cos_dot", "hermite2_index",
                      "hermite2_bilinear")
    noise_sd: float = 0.0
    n_grid: tuple = (250, 500, 1000, 2000, 4000, 8000)
    n_test: int = 2000
    n_seeds: int = 5
    seed: int = 0
    val_frac: float = 0.2
    lambdas: tuple = tuple(float(x) for x in np.logspace(-10, 3, 27))
    block_size: int = 64
    center_y: bool = True
    refit: bool = True

    def __post_init__(self):
        check_positive_int("d", self.d)
        check_positive_int("N", self.N)
        check_positive("radius", self.radius)
        check_positive_int("M (n_heads)", self.n_heads)
        check_choice("activation", self.activation, ("relu", "exp", "softmax"))
        check_choice("mlp_match", self.mlp_match, ("params", "heads"))
        for m in self.models:
            check_choice("model", m, MODELS)
        for t in self.targets:
            check_choice("target", t, tuple(TARGETS))
        check_positive("noise_sd", self.noise_sd, allow_zero=True)
        if not self.n_grid:
            raise ValueError("n_grid must be a non-empty tuple of integers >= 2, got ()")
        for n in self.n_grid:
            check_positive_int("n_grid entry", n, minimum=2)
        check_positive_int("n_test", self.n_test)
        check_positive_int("n_seeds", self.n_seeds)
        check_positive_int("seed", self.seed, minimum=0)
        if not 0 < self.val_frac < 1:
            raise ValueError(f"val_frac must be in (0, 1), got {self.val_frac!r}")
        check_positive_int("block_size", self.block_size)
        object.__setattr__(self, "n_grid", tuple(sorted(int(n) for n in self.n_grid)))
        object.__setattr__(self, "models", tuple(self.models))
        object.__setattr__(self, "targets", tuple(self.targets))
        object.__setattr__(self, "lambdas", tuple(float(x) for x in self.lambdas))

    def to_dict(self) -> dict:
        return {k: (list(v) if isinstance(v, tuple) else v)
                for k, v in dataclasses.asdict(self).items()}

    @classmethod
    def from_dict(cls, dct: dict) -> "AttentionConfig":
        return cls(**{k: (tuple(v) if isinstance(v, list) else v) for k, v in dct.items()})


#: ``quick``: a few minutes on 2 CPU cores; ``full``: the documented defaults.
PRESETS = {
    "quick": AttentionConfig(n_heads=200, n_grid=(100, 200, 400, 800, 1600),
                             n_test=1000, n_seeds=3),
    "full": AttentionConfig(),
}


#: Version of the random-stream layout (module docstring), hashed with the configuration so
#: that cells drawn under an older layout are recomputed, never mixed in.
STREAM_LAYOUT = 2


def _name_code(name: str) -> int:
    """A target name's stream identifier (CRC-32: stable across processes, unlike hash())."""
    return zlib.crc32(name.encode())


def config_hash(cfg: AttentionConfig) -> str:
    """The configuration's hash: :func:`moetheory.study.store.content_hash` (the hash of every
    study) of its JSON and the stream layout, first 16 hex digits.

    Parameters
    ----------
    cfg : AttentionConfig

    Returns
    -------
    str
        16 hexadecimal digits; equal configurations give equal hashes.

    Examples
    --------
    >>> h = config_hash(AttentionConfig())
    >>> len(h), h == config_hash(AttentionConfig()), h == config_hash(AttentionConfig(d=4))
    (16, True, False)
    """
    from moetheory.study.store import content_hash

    return content_hash({**cfg.to_dict(), "stream_layout": STREAM_LAYOUT})[:16]


def _store(cfg: AttentionConfig, out_dir):
    """The cell store of ``cfg`` under ``out_dir`` (one JSON cell per replicate, key ``str(r)``)."""
    from moetheory.study.store import CellStore

    h = config_hash(cfg)

    def decode(data: bytes) -> dict:
        cell = json.loads(data)
        if cell.get("config_hash") != h:
            raise ValueError("written by another configuration (config hash)")
        return cell

    return CellStore(Path(out_dir) / f"cells-{h}",
                     {"study": "attention", "config": cfg.to_dict(), "config_hash": h,
                      "stream_layout": STREAM_LAYOUT},
                     decode=decode, filename=lambda key: f"cell_{int(key):03d}.json")


def _config(preset, overrides) -> AttentionConfig:
    if isinstance(preset, AttentionConfig):
        cfg = preset
    else:
        check_choice("preset", preset, tuple(PRESETS))
        cfg = PRESETS[preset]
    return dataclasses.replace(cfg, **overrides) if overrides else cfg


def cache_status(preset="quick", out_dir="results/attention", **overrides) -> dict:
    """Which replicates of the experiment are cached: ``{"done", "missing", "damaged"}`` lists
    of replicate indices (damaged: failing its checksum or unreadable; a run recomputes it).

    Examples
    --------
    >>> import tempfile
    >>> cache_status(AttentionConfig(n_seeds=2), tempfile.mkdtemp())
    {'done': [], 'missing': [0, 1], 'damaged': []}
    """
    cfg = _config(preset, overrides)
    store = _store(cfg, out_dir)
    states = {r: store.state(str(r)) for r in range(cfg.n_seeds)}
    return {s: [r for r, v in states.items() if v == s] for s in ("done", "missing", "damaged")}


def build_model(cfg: AttentionConfig, model: str, rng: np.random.Generator):
    """Random feature map of ``model`` ("rfa", "biased_rfa" or "rfmlp") for ``cfg``.

    Parameters
    ----------
    cfg : AttentionConfig
    model : {"rfa", "biased_rfa", "rfmlp"}
    rng : numpy.random.Generator
        Draws the random weights.

    Returns
    -------
    RFAFeatures or RFMLPFeatures
        Maps inputs of shape (n, N + 1, d) to features of shape (n, p): ``p = M d_in``
        (``M`` heads of ``d_in`` outputs) for RFA, ``M d_in`` (``mlp_match="params"``) or
        ``M`` neurons for RF-MLP.

    Examples
    --------
    >>> cfg = AttentionConfig(n_heads=10)          # d = 8, augmented: d_in = 9
    >>> build_model(cfg, "rfa", make_rng(0)).n_features
    90
    >>> build_model(cfg, "rfmlp", make_rng(0)).n_features
    90
    >>> build_model(AttentionConfig(n_heads=10, mlp_match="heads"), "rfmlp", make_rng(0)).n_features
    10
    """
    check_choice("model", model, MODELS)
    if model == "rfmlp":
        d_in = cfg.d + 1 if cfg.augment else cfg.d
        p = cfg.n_heads * d_in if cfg.mlp_match == "params" else cfg.n_heads
        return RFMLPFeatures.sample(rng, cfg.d, cfg.N, p, augment=cfg.augment)
    scale = 0.0
    if model == "biased_rfa":
        scale = identity_mean_scale(cfg.d, cfg.radius, cfg.w_var, cfg.augment, cfg.bias_relative)
    return RFAFeatures.sample(rng, cfg.d, cfg.n_heads, augment=cfg.augment,
                              activation=cfg.activation, w_var=cfg.w_var, mean_scale=scale)


class _Gram:
    """Kernel rows/columns of (pool + test) for one feature map, computed once."""

    def __init__(self, fmap, X_pool, X_test, block_size):
        self.p = fmap.n_features
        self.n_pool = X_pool.shape[0]
        X_all = np.concatenate([X_pool, X_test])
        if self.p >= self.n_pool:      # kernel is the smaller object
            self.G = kernel_matrix(fmap, X_all, X_pool, block_size)   # (n_pool+n_test, n_pool)
            self.Phi = None
        else:
            self.G = None
            self.Phi = feature_matrix(fmap, X_all, block_size)        # (n_pool+n_test, p)

    def K(self, rows, cols):
        if self.G is not None:
            return self.G[rows, cols]
        return self.Phi[rows] @ self.Phi[cols].T / self.p

    def test_rows(self):
        return slice(self.n_pool, None)


def _fit_one_n(gram, n, Y, F_test, cfg):
    """Relative test errors, chosen penalties and solvers for the first ``n`` pool points."""
    lambdas = np.asarray(cfg.lambdas)
    n_val = min(max(1, int(round(cfg.val_frac * n))), n - 1)
    n_tr = n - n_val
    tr, va, te = slice(0, n_tr), slice(n_tr, n), gram.test_rows()
    mu = Y[tr].mean(axis=0) if cfg.center_y else np.zeros(Y.shape[1])
    if choose_solver(n_tr, gram.p) == "dual" or gram.Phi is None:
        preds = ridge_path_dual(gram.K(tr, tr), Y[tr] - mu, gram.K(va, tr), lambdas)
    else:
        preds = ridge_path_primal(gram.Phi[tr], Y[tr] - mu, gram.Phi[va], lambdas)
    lam, _ = select_lambda(preds, Y[va] - mu, lambdas)
    fit = slice(0, n) if cfg.refit else tr
    n_fit = n if cfg.refit else n_tr
    mu = Y[fit].mean(axis=0) if cfg.center_y else mu
    solver = "dual" if (choose_solver(n_fit, gram.p) == "dual" or gram.Phi is None) else "primal"
    pred = np.empty_like(F_test)
    for l in np.unique(lam):
        cols = np.flatnonzero(lam == l)
        Yc = Y[fit][:, cols] - mu[cols]
        if solver == "dual":
            pred[:, cols] = gram.K(te, fit) @ ridge_solve_dual(gram.K(fit, fit), Yc, l) + mu[cols]
        else:
            pred[:, cols] = gram.Phi[te] @ ridge_solve_primal(gram.Phi[fit], Yc, l) + mu[cols]
    rel = np.mean((pred - F_test) ** 2, axis=0) / np.var(F_test, axis=0)
    return rel, lam, solver


def run_cell(cfg: AttentionConfig, r: int, log=None) -> dict:
    """Run replicate ``r``; returns a JSON-ready dict (errors as ``[model][target][n_index]``).

    Parameters
    ----------
    cfg : AttentionConfig
    r : int
        Replicate (seed) index.
    log : callable, optional
        Called with a progress message per model.

    Returns
    -------
    dict
        ``errors``, ``lambda``: ``[model][target]`` lists of length ``len(cfg.n_grid)``;
        ``solver``, ``failures``, ``n_features``, ``time_s`` and ``replicate``.

    Examples
    --------
    >>> cfg = AttentionConfig(n_heads=5, n_grid=(20, 40), n_test=30, n_seeds=1,
    ...                       targets=("cos_dot",))
    >>> cell = run_cell(cfg, 0)
    >>> len(cell["errors"]["rfa"]["cos_dot"])
    2
    """
    t0 = time.perf_counter()
    n_max = max(cfg.n_grid)
    X_pool = sample_inputs(make_rng(cfg.seed, r, 0), n_max, cfg.N, cfg.d, cfg.radius)
    X_test = sample_inputs(make_rng(cfg.seed, r, 1), cfg.n_test, cfg.N, cfg.d, cfg.radius)
    codes = [_name_code(t) for t in cfg.targets]
    tgts = [make_target(t, cfg.d, make_rng(cfg.seed, 2, c), radius=cfg.radius,
                        noise_sd=cfg.noise_sd) for t, c in zip(cfg.targets, codes)]
    Y = np.stack([t.sample_labels(make_rng(cfg.seed, r, 2, c), X_pool)
                  for t, c in zip(tgts, codes)], axis=1)
    F_test = np.stack([t(X_test) for t in tgts], axis=1)
    out = {"replicate": r, "errors": {}, "lambda": {}, "solver": {}, "failures": [],
           "n_features": {}, "time_s": {}}
    for k, model in enumerate(MODELS):
        if model not in cfg.models:
            continue
        tm = time.perf_counter()
        fmap = build_model(cfg, model, make_rng(cfg.seed, r, 10 + k))
        gram = _Gram(fmap, X_pool, X_test, cfg.block_size)
        errs = np.full((len(tgts), len(cfg.n_grid)), np.nan)
        lams = np.full_like(errs, np.nan)
        solvers = []
        for j, n in enumerate(cfg.n_grid):
            try:
                rel, lam, solver = _fit_one_n(gram, n, Y, F_test, cfg)
            except np.linalg.LinAlgError as exc:        # recorded, never poisons others
                out["failures"].append({"model": model, "n": n, "error": str(exc)})
                solvers.append("failed")
                continue
            bad = ~np.isfinite(rel)
            if bad.any():
                out["failures"].append({"model": model, "n": n, "error": "non-finite error",
                                        "targets": [cfg.targets[i] for i in np.flatnonzero(bad)]})
            errs[:, j], lams[:, j] = rel, lam
            solvers.append(solver)
        del gram
        out["errors"][model] = {t: errs[i].tolist() for i, t in enumerate(cfg.targets)}
        out["lambda"][model] = {t: lams[i].tolist() for i, t in enumerate(cfg.targets)}
        out["solver"][model] = solvers
        out["n_features"][model] = fmap.n_features
        out["time_s"][model] = time.perf_counter() - tm
        if log:
            log(f"replicate {r} model {model}: {out['time_s'][model]:.1f}s")
    out["time_s"]["total"] = time.perf_counter() - t0
    return out


def _aggregate(cfg, cells, wall):
    res = {"study": "attention", "config": cfg.to_dict(), "config_hash": config_hash(cfg),
           "n_grid": list(cfg.n_grid), "models": list(cfg.models), "targets": list(cfg.targets),
           "errors": {}, "mean": {}, "sd": {}, "n_ok": {}, "lambda": {},
           "failures": [f for c in cells for f in c["failures"]],
           "n_features": cells[0]["n_features"], "wall_time_s": wall,
           "cell_time_s": [c["time_s"]["total"] for c in cells],
           "environment": {"python": sys.version.split()[0], "numpy": np.__version__,
                           "platform": platform.platform(), "cpu_count": os.cpu_count()}}
    for m in cfg.models:
        for key in ("errors", "mean", "sd", "n_ok", "lambda"):
            res[key][m] = {}
        for t in cfg.targets:
            E = np.array([c["errors"][m][t] for c in cells], dtype=float)  # (seeds, n)
            ok = np.isfinite(E)
            cnt = ok.sum(axis=0)
            Ez = np.where(ok, E, 0.0)
            mean = np.where(cnt > 0, Ez.sum(0) / np.maximum(cnt, 1), np.nan)
            var = np.where(cnt > 1, ((Ez - mean) ** 2 * ok).sum(0) / np.maximum(cnt - 1, 1), np.nan)
            res["errors"][m][t] = E.tolist()
            res["mean"][m][t] = mean.tolist()
            res["sd"][m][t] = np.sqrt(var).tolist()
            res["n_ok"][m][t] = cnt.tolist()
            res["lambda"][m][t] = [c["lambda"][m][t] for c in cells]
    return res


def run_attention_experiment(preset="quick", out_dir="results/attention", progress: bool = True,
                             **overrides) -> dict:
    """Run (or resume) the attention experiment and write ``out_dir/results.json``.

    Parameters
    ----------
    preset : {"quick", "full"} or AttentionConfig
    out_dir : path
        Output folder (cells ``cell_XXX.json`` and ``results.json``).
    progress : bool
        Print per-replicate progress with an ETA to stderr.
    **overrides
        Fields of :class:`AttentionConfig` replacing the preset's.

    Returns
    -------
    dict
        The aggregated results (as written to ``results.json``).

    Examples
    --------
    >>> res = run_attention_experiment("quick", "/tmp/att", progress=False)  # doctest: +SKIP
    """
    from moetheory.study.claims import shared
    from moetheory.study.store import json_bytes, write_json_atomic

    cfg = _config(preset, overrides)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    h = config_hash(cfg)
    store = _store(cfg, out)
    keys = [str(r) for r in range(cfg.n_seeds)]
    store.reconcile(keys, recovered_entry=lambda cell: {})  # damaged cells: named, set aside
    log = (lambda msg: print(f"[attention] {msg}", file=sys.stderr, flush=True)) if progress else None
    t0 = time.perf_counter()
    todo = [k for k in keys if store.state(k) != "done"]
    if log and len(todo) < len(keys):
        log(f"{len(keys) - len(todo)}/{cfg.n_seeds} replicates cached")
    done_new = 0
    with closing(shared(todo, done=lambda k: store.state(k) == "done", claim=store.claim)) as work:
        for key in work:  # each replicate once, however many processes run the experiment
            r = int(key)
            cell = run_cell(cfg, r, log)
            cell["config_hash"] = h
            store.write(key, json_bytes(cell), {
                "wall_s": cell["time_s"]["total"], "pid": os.getpid(), "host": platform.node(),
                "completed_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            done_new += 1
            if log:
                el = time.perf_counter() - t0
                eta = el / done_new * (len(todo) - done_new)
                log(f"replicate {r + 1}/{cfg.n_seeds} done, elapsed {el:.0f}s, ETA {eta:.0f}s")
    cells = [store.read(k) for k in keys]
    res = _aggregate(cfg, cells, time.perf_counter() - t0)
    write_json_atomic(out / RESULTS_FILE, res)
    return res
