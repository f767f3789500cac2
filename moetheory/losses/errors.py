"""Per-parameter errors: within Voronoi cells (over-fitted) and after matching (exact-fitted).

These are the quantities of the rate table in DESIGN.md §4.1: for a true atom whose Voronoi cell
holds m fitted atoms, the cell weight sum, β_1 and b, a and ν converge at different rates.
"""
from __future__ import annotations

import itertools
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from moetheory._jax import ensure_x64
from moetheory.losses.voronoi import (COORDS, N_REFINE, TRANSLATIONS, _check_choice,
                                      _check_pair, _config, _exponent_rules, _map_pair, _pin,
                                      _prep, _raise_unknown, _resolve_kind, _setup, _solve)
from moetheory.params import MoEParams

FIELDS = ("weight", "beta1", "a", "b", "var")


class CellErrors(NamedTuple):
    """Errors per true atom j (arrays (k*,), or (batch, k*)).

    size    |A_j|, the number of fitted atoms in the cell (int)
    weight  |Σ_{i∈A_j} e^{β_0i − t0} − e^{β*_0j}|  (translated fitted weights)
    beta1   max_{i∈A_j} ‖β_1i − t1 − β*_1j‖
    a       max_{i∈A_j} ‖a_i − a*_j‖
    b       max_{i∈A_j} |b_i − b*_j|
    var     max_{i∈A_j} |ν_i − ν*_j|
    t0, t1  the translation used (fitted translated by (−t0, −t1)); shapes () and (d,)

    Empty cells (size 0) have weight error e^{β*_0j} and NaN for the maxima (undefined).

    Examples
    --------
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> errs = cell_errors(truth, truth)
    >>> errs.size.shape, errs.t1.shape
    ((2,), (1,))
    """

    size: jnp.ndarray
    weight: jnp.ndarray
    beta1: jnp.ndarray
    a: jnp.ndarray
    b: jnp.ndarray
    var: jnp.ndarray
    t0: jnp.ndarray
    t1: jnp.ndarray


class MatchedErrors(NamedTuple):
    """Errors after the best one-to-one matching (k = k*), indexed by the true expert j.

    perm    perm[j] = fitted expert matched to true expert j (``fitted.permute(perm)`` aligns)
    beta0, beta1, a, b, var   |Δβ_0|, ‖Δβ_1‖, ‖Δa‖, |Δb|, |Δν| per true expert; the gates of
            both models are pinned to the expert matched to the truth's last (reference) expert
    tau     |τ − τ*| (raw; 0 for softmax/top-K)

    Each field has shape (k*,) (``tau``: shape ()), with a leading batch axis for batched inputs.

    Examples
    --------
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> matched_errors(truth, truth).perm.tolist()
    [0, 1]
    """

    perm: jnp.ndarray
    beta0: jnp.ndarray
    beta1: jnp.ndarray
    a: jnp.ndarray
    b: jnp.ndarray
    var: jnp.ndarray
    tau: jnp.ndarray


# --------------------------------------------------------------------------------------------
# cell errors


def _cell_errors_one(fitted, truth, *, kind, translation, rtab, coords, n_refine, exps):
    res = _solve(fitted, truth, kind, translation, rtab, coords, n_refine, exps)
    pinned = translation == "pinned"
    f = _prep(fitted, coords, pinned)
    t = _prep(truth, coords, pinned)
    assign, onehot, size, (db1, da, db, dv) = _config(f, t, res.t1)
    s = jnp.exp(-res.t0)  # t0 = +inf gives s = 0
    W = jnp.sum(jnp.where(onehot, (s * jnp.exp(f.b0))[:, None], 0.0), axis=0)
    weight = jnp.abs(W - jnp.exp(t.b0))

    def cmax(x):
        m = jnp.max(jnp.where(onehot, x[:, None], -jnp.inf), axis=0)
        return jnp.where(size > 0, m, jnp.nan)

    return CellErrors(size, weight, cmax(db1), cmax(da), cmax(db), cmax(dv), res.t0, res.t1), \
        res.unknown_m


_cell_errors_jit = jax.jit(_cell_errors_one,
                           static_argnames=("kind", "translation", "rtab", "coords", "n_refine",
                                            "exps"))


def cell_errors(fitted: MoEParams, truth: MoEParams, kind: str = "auto",
                translation: str = "infimum", rbar=None, coords: str = "raw", *,
                n_refine: int = N_REFINE, rbar_unknown: str = "bound",
                exponents: str = "softmax") -> CellErrors:
    """Per-parameter errors within the Voronoi cells, at the loss-minimising translation.

    The translation is the one attaining :func:`~moetheory.losses.voronoi_loss` with the same
    ``kind``/``translation``/``rbar``/``coords``/``rbar_unknown``/``exponents``
    (``kind="auto"``: D_1 if k == k*, else D_2;
    pass ``kind="d1"`` to choose the translation by D_1 when r̄ of a large cell is unknown).
    Batched inputs give batched errors (vmappable; jittable).

    Examples
    --------
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> cell_errors(truth, truth).size.tolist()
    [1, 1]
    """
    f, fb, t, tb, _, rtab = _setup(fitted, truth, kind, translation, rbar, coords, n_refine,
                                   rbar_unknown, exponents)
    kind = _resolve_kind(kind, f.beta0.shape[-1], t.beta0.shape[-1])
    fn = partial(_cell_errors_jit, kind=kind, translation=translation, rtab=rtab, coords=coords,
                 n_refine=int(n_refine), exps=_exponent_rules(exponents))
    errs, unknown_m = _map_pair(fn, f, fb, t, tb)
    _raise_unknown(unknown_m, rtab)
    return errs


def summarize_cells(errors: CellErrors, sizes=(1, 2, 3), reduce: str = "mean") -> dict:
    """Summarise cell errors by cell size m over all true atoms (and all batch entries).

    Returns ``{m: {"count": int, "weight": float, "beta1": ..., "a": ..., "b": ..., "var": ...}}``
    where each value is the ``reduce`` ("mean", "median" or "max") over the cells of size m
    (NaN when there are none). Not jittable (NumPy, host side).

    Examples
    --------
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> summarize_cells(cell_errors(truth, truth))[1]["count"]
    2
    """
    if not isinstance(errors, CellErrors):
        raise TypeError(f"errors must be a CellErrors (from cell_errors); got {type(errors).__name__}")
    reducers = {"mean": np.mean, "median": np.median, "max": np.max}
    _check_choice("reduce", reduce, tuple(reducers))
    size = np.asarray(errors.size)
    out = {}
    for m in sizes:
        mask = size == m
        row = {"count": int(mask.sum())}
        for name in FIELDS:
            vals = np.asarray(getattr(errors, name), dtype=np.float64)[mask]
            row[name] = float(reducers[reduce](vals)) if vals.size else float("nan")
        out[int(m)] = row
    return out


# --------------------------------------------------------------------------------------------
# matched errors


_MAX_EXHAUSTIVE = 7


def _hungarian(cost):
    from scipy.optimize import linear_sum_assignment

    cost = np.asarray(cost)
    rows, cols = linear_sum_assignment(cost)  # rows = fitted i, cols = true j
    perm = np.empty(cost.shape[1], dtype=np.int64)
    perm[cols] = rows
    return perm


def _matched_one(fitted, truth, *, coords, method, translation):
    # which parts of the gate the translation frees: (β_0, β_1) for infimum/pinned, β_0 for bias
    shift_b0 = translation != "none"
    shift_b1 = translation in ("infimum", "pinned")
    f = _prep(fitted, coords)
    t = _prep(truth, coords)

    def feats(p):  # gate centred in its free coordinates (translation-invariant) + experts
        b0 = p.b0 - p.b0.mean() if shift_b0 else p.b0
        b1 = p.b1 - p.b1.mean(axis=0) if shift_b1 else p.b1
        return jnp.concatenate([b0[:, None], b1, p.a, p.b[:, None], p.v[:, None]], axis=-1)

    ff, tf = feats(f), feats(t)
    cost = jnp.sqrt(jnp.sum((ff[:, None, :] - tf[None, :, :]) ** 2, axis=-1))  # (fitted, true)
    k = cost.shape[0]
    if method == "exhaustive":
        perms = jnp.asarray(np.array(list(itertools.permutations(range(k))), dtype=np.int64))
        total = jnp.sum(cost[perms, jnp.arange(k)[None, :]], axis=1)
        perm = perms[jnp.argmin(total)]
    else:
        perm = jax.pure_callback(_hungarian, jax.ShapeDtypeStruct((k,), jnp.int64), cost,
                                 vmap_method="sequential")
    fa = _pin(_prep(fitted.map(lambda x: x[perm] if x.ndim >= 1 else x), coords),
              shift_b0, shift_b1)
    tp = _pin(t, shift_b0, shift_b1)
    norm = lambda x: jnp.sqrt(jnp.sum(x ** 2, axis=-1))
    return MatchedErrors(perm, jnp.abs(fa.b0 - tp.b0), norm(fa.b1 - tp.b1), norm(fa.a - tp.a),
                         jnp.abs(fa.b - tp.b), jnp.abs(fa.v - tp.v),
                         jnp.abs(fitted.tau - truth.tau))


_matched_jit = jax.jit(_matched_one, static_argnames=("coords", "method", "translation"))


def matched_errors(fitted: MoEParams, truth: MoEParams, coords: str = "raw",
                   method: str = "auto", translation: str = "infimum") -> MatchedErrors:
    """Per-parameter errors of an exact-fitted model (k = k*) after the best matching.

    The matching minimises the total Euclidean distance Σ_j ‖θ̃_perm[j] − θ̃*_j‖ over
    permutations, with θ̃ = (β_0 − mean β_0, β_1 − mean β_1, a, b, ν): centring the gate makes
    the matching invariant to the gate translation. Errors are then computed with both gates
    pinned to the (matched) reference expert, the truth's last expert. Only the coordinates the
    ``translation`` frees are centred and pinned: β_0 alone under ``"bias"`` (the activation
    gate, :func:`~moetheory.losses.gate_translation`), nothing under ``"none"``.

    Parameters
    ----------
    fitted, truth : MoEParams
        k = k* experts with the same d (``beta0`` shape (k,), ``beta1`` shape (k, d)); either may
        carry a leading batch axis, shape (batch, k, ...).
    method : {"auto", "exhaustive", "hungarian"}
        ``"exhaustive"`` tries all k! permutations in JAX (auto for k <= 7); ``"hungarian"`` uses
        scipy's ``linear_sum_assignment`` through a host callback (same optimum).
    coords : {"raw", "identified"}
        As in :func:`~moetheory.losses.voronoi_loss` (identified: gate parameters divided by τ).
    translation : {"infimum", "bias", "pinned", "none"}
        The gate's unidentifiable shift, as in :func:`~moetheory.losses.voronoi_loss`:
        ``"infimum"`` and ``"pinned"`` both pin (β_0, β_1) to the reference expert.

    Returns
    -------
    MatchedErrors
        Fields of shape (k*,) (or (batch, k*)); ``tau`` has shape () (or (batch,)).

    Examples
    --------
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> fitted = truth.permute([1, 0])
    >>> errs = matched_errors(fitted, truth)
    >>> errs.perm.tolist(), float(errs.a.max())
    ([1, 0], 0.0)
    """
    ensure_x64()
    _check_choice("coords", coords, COORDS)
    _check_choice("method", method, ("auto", "exhaustive", "hungarian"))
    _check_choice("translation", translation, TRANSLATIONS)
    f, fb, t, tb = _check_pair(fitted, truth)
    k, kstar = f.beta0.shape[-1], t.beta0.shape[-1]
    if k != kstar:
        raise ValueError(f"matched_errors needs an exact-fitted model (k == k*); got fitted k={k} "
                         f"and truth k*={kstar} (use cell_errors for over-fitted models)")
    if method == "auto":
        method = "exhaustive" if k <= _MAX_EXHAUSTIVE else "hungarian"
    fn = partial(_matched_jit, coords=coords, method=method, translation=translation)
    return _map_pair(fn, f, fb, t, tb)
