"""Voronoi cells and the Voronoi losses D_1 and D_2 (DESIGN.md §4.1).

Atoms and cells
---------------
An atom of a model is θ_i = (β_1i, a_i, b_i, ν_i) ∈ R^{2d+2} (ν = variance). The gate bias enters
only through the weight exp(β_0i). The Voronoi cell of true atom j is

    A_j = { i : ‖θ_i − θ*_j‖ ≤ ‖θ_i − θ*_l‖ for all l }

(Euclidean norm on the concatenated atom; each fitted atom goes to its nearest true atom, ties
to the lowest index).

Translation convention (read this)
----------------------------------
Softmax and top-K gates are invariant to (β_0, β_1) → (β_0 + t_0, β_1 + t_1). We **translate the
fitted model by (−t_0, −t_1) and compare it with the truth as given**:

    L(t_0, t_1) = Σ_j [ Σ_{i∈A_j(t_1)} e^{β_0i − t_0} · c_i(t_1)  +  | Σ_{i∈A_j(t_1)} e^{β_0i − t_0} − e^{β*_0j} | ]

where A_j(t_1) are the cells of the translated fitted atoms (β_1i − t_1, a_i, b_i, ν_i) and
c_i(t_1) is the atom's cost:

* D_1 (exact-fitted): c_i = ‖Δβ_1‖ + ‖Δa‖ + |Δb| + |Δν|, with Δβ_1 = β_1i − t_1 − β*_1j;
* D_2 (over-fitted): the same linear cost in single-atom cells; in a cell of m > 1 atoms
  c_i = ‖Δβ_1‖^{r̄(m)} + |Δb|^{r̄(m)} + ‖Δa‖^{r̄(m)/2} + |Δν|^{r̄(m)/2}.

The loss is inf_{t_0, t_1} L. This equals e^{−t_0} times the expression written in DESIGN.md
§4.1 (where t_0 is put on the true weight e^{β*_0j + t_0} and the fitted weights stay
un-translated); the two agree at t = 0 but only this form is itself invariant to a common
translation of the *fitted* gate, which is what "the loss does not see the unidentifiable
translation" requires. The infimum is bounded by Σ_j e^{β*_0j} (the limit t_0 → +∞, which is the
infimum only for very poor fits; the reported t_0 is then +inf).

How the infimum is computed (pure JAX, jittable, vmappable)
-----------------------------------------------------------
* t_0 is solved **exactly**: for fixed t_1 (fixed cells) L is a convex piecewise-linear function
  of s = e^{−t_0} ≥ 0 with kinks at s = e^{β*_0j} / Σ_{i∈A_j} e^{β_0i}; its minimum is at a kink,
  at s = 0 (the limit), and s = 1 (t_0 = 0) is always evaluated too.
* t_1 ∈ R^d: the objective is non-smooth and non-convex (cells change). We start from every
  pairing t_1 = β_1i − β*_1j and from t_1 = 0, and refine each start by a fixed number of
  compass-search steps (evaluate t_1 ± h e_c for all coordinates c, move to the best
  improvement, else halve h). Everything is a fixed-shape ``lax.fori_loop`` so ``d1_loss`` /
  ``d2_loss`` are jittable and vmappable over replicates. Because t = (0, 0) is a start and steps
  are accepted only when they improve, ``translation="infimum"`` is never worse than
  ``translation="none"``.

Other translation modes: ``"bias"`` (t_1 = 0, exact infimum over t_0 only — right for the
activation gate, which is invariant to a β_0 shift but not a β_1 shift), ``"none"`` (compare the
models as given: t = 0) and ``"pinned"`` (pin the last expert's gate of both models to zero,
then t = 0 — what the softmax paper's official code did; it produces spurious losses of order 1
when the reference expert is split).

Temperature gates: ``coords="raw"`` adds |τ − τ*| once (τ is shared, so it does not move cells);
``coords="identified"`` uses (β_0/τ, β_1/τ) throughout and adds nothing for τ. For softmax and
top-K (τ = τ* = 1) the two coincide.

r̄(m): known r̄(2) = 4, r̄(3) = 6 (:data:`RBAR`); for m ≥ 4 only the lower bound r̄(m) ≥ 7 is
known (:data:`RBAR_LOWER_BOUND`). ``rbar_unknown="bound"`` (the default) scores a cell of m ≥ 4
atoms with the exponent 7 and reports it (``LossResult.rbar_bound_m``): since a smaller exponent
gives a larger term wherever a deviation is below 1, the value is an upper bound of the loss with
the true exponent near the truth, and no replicate is ever dropped for an unknown exponent (a
study that excluded them kept only the better fits: a downward bias). ``rbar_unknown="error"``
keeps the strict behaviour: configurations needing an unknown r̄(m) are excluded from the search,
and a ``ValueError`` naming m is raised when such a configuration could change the result (a
lower bound for it, with its unknown terms dropped, is below the best scorable value); under an
outer ``jax.jit``/``vmap`` the error cannot be raised and the value is NaN instead.

Exponent rules (``exponents``)
------------------------------
A cell of m > 1 atoms raises each deviation to an exponent set by which identities
(PDEs) tie the parameters (:data:`D2_EXPONENTS`, derived in
:func:`moetheory.symbolic.d2_exponent_rules`): ``"softmax"`` (softmax, top-K, temperature
gates): ‖Δβ_1‖^{r̄} + ‖Δa‖^{r̄/2} + |Δb|^{r̄} + |Δν|^{r̄/2}; ``"activation"`` (non-linear σ: the
β_1–a PDE breaks, ∂²u/∂b² = 2∂u/∂ν survives): ‖Δβ_1‖² + ‖Δa‖² + |Δb|^{r̄} + |Δν|^{r̄/2} — the
package's reading, see docs/theory/activation.md.
"""
from __future__ import annotations

from functools import partial
from types import MappingProxyType
from typing import Mapping, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from moetheory._jax import ensure_x64
from moetheory.params import ARRAY_FIELDS, MoEParams
from moetheory.spec import TRANSLATIONS

#: Known exponents r̄(m) of the over-fitted loss D_2 (softmax paper): r̄(2)=4, r̄(3)=6.
#: r̄(m) for m ≥ 4 is unknown (only r̄(m) ≥ 7 is known); pass ``rbar`` to supply it.
RBAR: Mapping[int, float] = MappingProxyType({2: 4.0, 3: 6.0})

#: Known lower bound r̄(m) >= 7 for m >= 4 (softmax paper), used by ``rbar_unknown="bound"``.
RBAR_LOWER_BOUND = 7.0
RBAR_UNKNOWN = ("bound", "error")

#: D_2 exponent rules for (β_1, a, b, ν) in cells of m > 1 atoms: ("rbar", w) -> r̄(m)/w,
#: ("fixed", c) -> c. See the module docstring and moetheory.symbolic.d2_exponent_rules.
D2_EXPONENTS: Mapping[str, tuple] = MappingProxyType({
    "softmax": (("rbar", 1), ("rbar", 2), ("rbar", 1), ("rbar", 2)),
    "activation": (("fixed", 2), ("fixed", 2), ("rbar", 1), ("rbar", 2)),
})

KINDS = ("auto", "d1", "d2")
COORDS = ("raw", "identified")


#: Default number of compass-search refinement steps per start.
N_REFINE = 80


class VoronoiCells(NamedTuple):
    """Voronoi cells: ``assign[i]`` = true atom of fitted atom i (k,); ``size[j]`` = |A_j| (k*,).

    Examples
    --------
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> cells = voronoi_cells(truth, truth)
    >>> cells.assign.tolist(), cells.size.tolist()
    ([0, 1], [1, 1])
    """

    assign: jnp.ndarray
    size: jnp.ndarray


class LossResult(NamedTuple):
    """A Voronoi loss with the translation that attains it (fitted translated by (−t0, −t1)).

    Shapes (unbatched): ``value`` and ``t0`` (), ``t1`` (d,), ``assign`` (k,), ``size`` (k*,),
    ``unknown_m`` () int, ``rbar_bound_m`` () int; batched inputs add a leading (batch,) axis.

    Examples
    --------
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> res = best_translation(truth, truth)
    >>> float(res.value), res.t1.shape
    (0.0, (1,))
    """

    value: jnp.ndarray  # ()
    t0: jnp.ndarray  # () ; +inf for the limit s = e^{-t0} -> 0
    t1: jnp.ndarray  # (d,)
    assign: jnp.ndarray  # (k,) cells at t1
    size: jnp.ndarray  # (k*,)
    unknown_m: jnp.ndarray  # () int; > 0 when an unknown r̄(m) could change the value
    rbar_bound_m: jnp.ndarray  # () int; > 0: a cell of this size was scored with r̄ >= 7


# --------------------------------------------------------------------------------------------
# validation


def _check_choice(name, value, choices):
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")


def _as_params(p, name):
    """Float64 jnp MoEParams with consistent shapes; returns (params, batch size or None)."""
    if not isinstance(p, MoEParams):
        raise TypeError(f"{name} must be a MoEParams; got {type(p).__name__}")
    arrs = {f: jnp.asarray(getattr(p, f), dtype=jnp.float64) for f in ARRAY_FIELDS}
    arrs["extra"] = {k: jnp.asarray(v, dtype=jnp.float64) for k, v in p.extra.items()}
    b0 = arrs["beta0"]
    if b0.ndim not in (1, 2):
        raise ValueError(f"{name}.beta0 must have shape (k,) or (batch, k); got {b0.shape}")
    lead = b0.shape[:-1]
    k = b0.shape[-1]
    if arrs["beta1"].ndim != b0.ndim + 1 or arrs["beta1"].shape[:-1] != lead + (k,):
        raise ValueError(f"{name}.beta1 must have shape {lead + (k,)} + (d,) to match "
                         f"{name}.beta0 {b0.shape}; got {arrs['beta1'].shape}")
    d = arrs["beta1"].shape[-1]
    expected = {"a": lead + (k, d), "b": lead + (k,), "var": lead + (k,)}
    for f, shape in expected.items():
        if arrs[f].shape != shape:
            raise ValueError(f"{name}.{f} must have shape {shape}; got {arrs[f].shape}")
    tau = arrs["tau"]
    if tau.shape not in ((), lead):
        allowed = "()" if not lead else f"() or {lead}"
        raise ValueError(f"{name}.tau must have shape {allowed}; got {tau.shape}")
    for f in ("var", "tau"):
        # NaN passes (a failed replicate's loss is NaN, for itself only); traced values are
        # checked by whoever made them
        if _is_concrete(arrs[f]) and bool(jnp.any(arrs[f] <= 0)):
            raise ValueError(f"{name}.{f} must be > 0; got {np.asarray(arrs[f]).tolist()}")
    arrs["tau"] = jnp.broadcast_to(tau, lead)
    batch = lead[0] if lead else None
    return MoEParams(**arrs), batch


def _check_pair(fitted, truth):
    f, fb = _as_params(fitted, "fitted")
    t, tb = _as_params(truth, "truth")
    if f.beta1.shape[-1] != t.beta1.shape[-1]:
        raise ValueError(f"fitted and truth must have the same covariate dimension d; got "
                         f"fitted.beta1 {f.beta1.shape} (d={f.beta1.shape[-1]}) and truth.beta1 "
                         f"{t.beta1.shape} (d={t.beta1.shape[-1]})")
    if fb is not None and tb is not None and fb != tb:
        raise ValueError(f"fitted and truth batch sizes differ: {fb} vs {tb}")
    return f, fb, t, tb


def _rbar_table(rbar, k, rbar_unknown="bound") -> tuple:
    """Static tuple (index m = 0..k) of (exponent, from_bound) pairs; None where unknown (under
    ``rbar_unknown="error"``) or unused (m <= 1)."""
    _check_choice("rbar_unknown", rbar_unknown, RBAR_UNKNOWN)
    table = [None] * (k + 1)
    for m in range(2, k + 1):
        value = None
        if rbar is None:
            pass
        elif callable(rbar):
            value = rbar(m)
        elif isinstance(rbar, Mapping):
            for key in rbar:
                if isinstance(key, bool) or not isinstance(key, (int, np.integer)) or key < 2:
                    raise ValueError(f"rbar keys must be cell sizes m >= 2; got {key!r}")
            value = rbar.get(m)
        else:
            raise TypeError(f"rbar must be None, a dict {{m: r̄(m)}} or a callable m -> r̄(m); "
                            f"got {type(rbar).__name__}")
        if value is None:
            value = RBAR.get(m)
        if value is not None:
            value = float(value)
            if not np.isfinite(value) or value <= 0:
                raise ValueError(f"rbar for m={m} must be finite and > 0; got {value}")
            table[m] = (value, False)
        elif rbar_unknown == "bound":
            table[m] = (RBAR_LOWER_BOUND, True)
    return tuple(table)


def _exponent_rules(exponents) -> tuple:
    if isinstance(exponents, str):
        _check_choice("exponents", exponents, tuple(D2_EXPONENTS))
        return D2_EXPONENTS[exponents]
    raise TypeError(f"exponents must be one of {tuple(D2_EXPONENTS)}; got {exponents!r}")


def _is_concrete(x) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _raise_unknown(unknown_m, rtab):
    if not _is_concrete(unknown_m):
        return
    m = int(np.max(np.asarray(unknown_m)))
    if m > 0:
        known = {i: r[0] for i, r in enumerate(rtab) if r is not None}
        raise ValueError(
            f"D_2 needs the exponent r̄(m) for a Voronoi cell of m={m} fitted atoms, which is "
            f"unknown (known: {known}; the theory only gives r̄(m) >= 7 for m >= 4). Pass "
            f"rbar={{{m}: value}} (or a callable) to supply it, or rbar_unknown='bound' to score "
            f"it with the lower bound 7.")


# --------------------------------------------------------------------------------------------
# the jittable core (unbatched arrays)


class _Prep(NamedTuple):
    b0: jnp.ndarray
    b1: jnp.ndarray
    a: jnp.ndarray
    b: jnp.ndarray
    v: jnp.ndarray


def _prep(p: MoEParams, coords: str, pinned: bool = False) -> _Prep:
    b0, b1 = p.beta0, p.beta1
    if coords == "identified":
        b0 = b0 / p.tau
        b1 = b1 / p.tau
    prep = _Prep(b0, b1, p.a, p.b, p.var)
    return _pin(prep, True, True) if pinned else prep


def _pin(p: _Prep, shift_b0: bool, shift_b1: bool) -> _Prep:
    """Gate parameters relative to the last expert's, in the coordinates a translation frees."""
    b0 = p.b0 - p.b0[-1] if shift_b0 else p.b0
    b1 = p.b1 - p.b1[-1] if shift_b1 else p.b1
    return p._replace(b0=b0, b1=b1)


def _pairs(f: _Prep, t: _Prep):
    """Parts of the fitted-true atom differences that do not depend on t1 (each (k, k*))."""
    sa = jnp.sum((f.a[:, None, :] - t.a[None, :, :]) ** 2, axis=-1)
    pb = jnp.abs(f.b[:, None] - t.b[None, :])
    pv = jnp.abs(f.v[:, None] - t.v[None, :])
    return jnp.sqrt(sa), pb, pv, sa + pb ** 2 + pv ** 2


def _config(f: _Prep, t: _Prep, t1, pairs=None, fmask=None, tmask=None):
    """Cells of the fitted atoms translated by −t1, and per-atom differences to their true atom.

    ``fmask`` (k,) / ``tmask`` (k*,): optional boolean masks restricting the cells to some fitted
    and true atoms (the region-aware loss); masked-out fitted atoms belong to no cell.

    Returns assign (k,), onehot (k, k*), size (k*,) and (‖Δβ_1‖, ‖Δa‖, |Δb|, |Δν|) per fitted atom.
    """
    if pairs is None:
        pairs = _pairs(f, t)
    pa, pb, pv, d0 = pairs
    sb1 = jnp.sum((f.b1[:, None, :] - t1 - t.b1[None, :, :]) ** 2, axis=-1)  # (k, k*)
    dist = d0 + sb1
    if tmask is not None:
        dist = jnp.where(tmask[None, :], dist, jnp.inf)
    assign = jnp.argmin(dist, axis=1)  # squared Euclidean distance; ties -> lowest index
    kstar = t.b0.shape[0]
    onehot = assign[:, None] == jnp.arange(kstar)[None, :]
    if fmask is not None:
        onehot = onehot & fmask[:, None]
    size = jnp.sum(onehot, axis=0)

    def sel(x):
        return jnp.sum(jnp.where(onehot, x, 0.0), axis=1)

    return assign, onehot, size, (sel(jnp.sqrt(sb1)), sel(pa), sel(pb), sel(pv))


def _objective(f: _Prep, t: _Prep, pairs, t1, kind, rtab, free_t0, exps=D2_EXPONENTS["softmax"],
               fmask=None, tmask=None):
    """Exact minimum over t0 at this t1: (value or inf if unscorable, s = e^{-t0}, lower bound, m)."""
    assign, onehot, size, diffs = _config(f, t, t1, pairs, fmask, tmask)
    wf = jnp.exp(f.b0)
    if fmask is not None:
        wf = jnp.where(fmask, wf, 0.0)
    lin = sum(diffs)
    if kind == "d1":
        term = lin
        unknown = jnp.zeros(lin.shape, dtype=bool)
        m_i = size[assign]
    else:
        table = jnp.asarray([np.nan if r is None else r[0] for r in rtab], dtype=jnp.float64)
        m_i = size[assign]
        r = table[m_i]
        unknown = (m_i > 1) & jnp.isnan(r)
        rr = jnp.where((m_i > 1) & ~unknown, r, 1.0)
        powered = sum(dx ** (rr / w if rule == "rbar" else float(w))
                      for dx, (rule, w) in zip(diffs, exps))
        term = jnp.where(m_i > 1, powered, lin)
        term = jnp.where(unknown, 0.0, term)  # dropped: gives a lower bound when unknown
        if fmask is not None:
            unknown = unknown & fmask
    P = jnp.sum(wf * term)
    W = jnp.sum(jnp.where(onehot, wf[:, None], 0.0), axis=0)  # (k*,)
    ws = jnp.exp(t.b0)
    if tmask is not None:
        ws = jnp.where(tmask, ws, 0.0)
    if free_t0:
        kinks = jnp.where(W > 0, ws / jnp.where(W > 0, W, 1.0), 1.0)
        s = jnp.concatenate([jnp.ones(1), kinks, jnp.zeros(1)])
    else:
        s = jnp.ones(1)
    L = s * P + jnp.sum(jnp.abs(s[:, None] * W[None, :] - ws[None, :]), axis=-1)
    i = jnp.argmin(L)
    any_unknown = jnp.any(unknown)
    value = jnp.where(any_unknown, jnp.inf, L[i])
    lb = jnp.where(any_unknown, L[i], jnp.inf)
    mu = jnp.where(any_unknown, jnp.max(jnp.where(unknown, m_i, 0)), 0)
    return value, s[i], lb, mu


def _solve(fitted: MoEParams, truth: MoEParams, kind, translation, rtab, coords, n_refine,
           exps=D2_EXPONENTS["softmax"], fmask=None, tmask=None):
    pinned = translation == "pinned"
    f = _prep(fitted, coords, pinned)
    t = _prep(truth, coords, pinned)
    d = f.b1.shape[-1]
    free_t0 = translation in ("infimum", "bias")
    pairs = _pairs(f, t)
    obj = partial(_objective, f, t, pairs, kind=kind, rtab=rtab, free_t0=free_t0, exps=exps,
                  fmask=fmask, tmask=tmask)

    objv = jax.vmap(obj)
    if translation == "infimum":
        cands = jnp.concatenate(
            [jnp.zeros((1, d)), (f.b1[:, None, :] - t.b1[None, :, :]).reshape(-1, d)], axis=0)
        n_c = cands.shape[0]
        h0 = 0.25 * (1.0 + jnp.max(jnp.abs(cands)))
        # direction 0 re-evaluates the current point: the first step scores the starts
        # themselves, so the program holds a single copy of the objective (faster compiles).
        dirs = jnp.concatenate([jnp.zeros((1, d)), jnp.eye(d), -jnp.eye(d)], axis=0)

        # one compass step for all starts at once
        def step(_, state):
            tc, fc, sc, h, lbm, mum = state
            trials = tc[:, None, :] + h[:, None, None] * dirs[None]  # (C, 2d+1, d)
            fv, sv, lbv, muv = objv(trials.reshape(-1, d))
            fv, sv = fv.reshape(n_c, -1), sv.reshape(n_c, -1)
            i = jnp.argmin(fv, axis=1)
            fbest = jnp.take_along_axis(fv, i[:, None], axis=1)[:, 0]
            better = fbest < fc
            tc = jnp.where(better[:, None], trials[jnp.arange(n_c), i], tc)
            sc = jnp.where(better, jnp.take_along_axis(sv, i[:, None], axis=1)[:, 0], sc)
            fc = jnp.where(better, fbest, fc)
            h = jnp.where(better, h, 0.5 * h)
            j = jnp.argmin(lbv)
            upd = lbv[j] < lbm
            return tc, fc, sc, h, jnp.where(upd, lbv[j], lbm), jnp.where(upd, muv[j], mum)

        inf = jnp.full(n_c, jnp.inf)
        state = (cands, inf, jnp.ones(n_c), jnp.full(n_c, h0), jnp.inf,
                 jnp.zeros((), dtype=jnp.asarray(0).dtype))
        tcs, fcs, scs, _, lb_min, mu = jax.lax.fori_loop(0, n_refine + 1, step, state)
        best = jnp.argmin(fcs)  # start 0 is t1 = 0: ties keep no translation
        t1, value, s = tcs[best], fcs[best], scs[best]
    else:
        t1 = jnp.zeros(d)
        value, s, lb_min, mu = obj(t1)

    tol = 1e-12 * jnp.maximum(1.0, jnp.abs(value))
    flagged = jnp.where(jnp.isinf(value), jnp.isfinite(lb_min), lb_min < value - tol)
    unknown_m = jnp.where(flagged, mu, 0)
    if coords == "raw":
        value = value + jnp.abs(fitted.tau - truth.tau)
    # a failed replicate (NaN/inf parameters) gives NaN for itself only
    finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves((fitted, truth))]))
    value = jnp.where(flagged | ~finite, jnp.nan, value)
    t0 = jnp.where(s > 0, 0.0 - jnp.log(jnp.where(s > 0, s, 1.0)), jnp.inf) + 0.0  # no -0.0
    assign, _, size, _ = _config(f, t, t1, pairs, fmask, tmask)
    bound_m = 0
    if kind == "d2":
        from_bound = jnp.asarray([r is not None and r[1] for r in rtab])
        bound_m = jnp.max(jnp.where(from_bound[size], size, 0))
    bound_m = jnp.asarray(bound_m, dtype=jnp.asarray(0).dtype)
    return LossResult(value, t0, t1, assign, size, unknown_m, bound_m)


_solve_jit = jax.jit(_solve, static_argnames=("kind", "translation", "rtab", "coords", "n_refine",
                                            "exps"))


def _resolve_kind(kind, k, kstar):
    _check_choice("kind", kind, KINDS)
    if kind == "auto":
        return "d1" if k == kstar else "d2"
    return kind


def _map_pair(fn, f, fb, t, tb):
    """Apply an unbatched fn(fitted, truth) over whichever arguments carry a batch axis."""
    if fb is None and tb is None:
        return fn(f, t)
    return jax.vmap(fn, in_axes=(0 if fb is not None else None, 0 if tb is not None else None))(f, t)


def _setup(fitted, truth, kind, translation, rbar, coords, n_refine, rbar_unknown="bound",
           exponents="softmax"):
    ensure_x64()
    _check_choice("translation", translation, TRANSLATIONS)
    _check_choice("coords", coords, COORDS)
    if isinstance(n_refine, bool) or not isinstance(n_refine, (int, np.integer)) or n_refine < 0:
        raise ValueError(f"n_refine must be an integer >= 0; got {n_refine!r}")
    exps = _exponent_rules(exponents)
    f, fb, t, tb = _check_pair(fitted, truth)
    k, kstar = f.beta0.shape[-1], t.beta0.shape[-1]
    kind = _resolve_kind(kind, k, kstar)
    rtab = _rbar_table(rbar, k, rbar_unknown) if kind == "d2" else None
    fn = partial(_solve_jit, kind=kind, translation=translation, rtab=rtab, coords=coords,
                 n_refine=int(n_refine), exps=exps)
    return f, fb, t, tb, fn, rtab


# --------------------------------------------------------------------------------------------
# public API


def best_translation(fitted: MoEParams, truth: MoEParams, kind: str = "auto",
                     translation: str = "infimum", rbar=None, coords: str = "raw", *,
                     n_refine: int = N_REFINE, rbar_unknown: str = "bound",
                     exponents: str = "softmax") -> LossResult:
    """The Voronoi loss together with the translation (t0, t1) attaining it and its cells.

    Same arguments as :func:`voronoi_loss`. The fitted model is translated by (−t0, −t1).

    Parameters
    ----------
    fitted, truth : MoEParams
        k and k* experts with the same d (``beta0`` shape (k,), ``beta1`` shape (k, d)); either
        may carry a leading batch axis, shape (batch, k, ...).
    kind, translation, rbar, coords, n_refine, rbar_unknown, exponents
        As in :func:`voronoi_loss`.

    Returns
    -------
    LossResult
        ``value`` and ``t0`` of shape (), ``t1`` (d,), ``assign`` (k,), ``size`` (k*,),
        ``unknown_m`` and ``rbar_bound_m`` () (with a leading (batch,) axis for batched inputs).

    Examples
    --------
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> res = best_translation(truth, truth)
    >>> float(res.value), res.assign.tolist(), res.size.tolist()
    (0.0, [0, 1], [1, 1])
    """
    f, fb, t, tb, fn, rtab = _setup(fitted, truth, kind, translation, rbar, coords, n_refine,
                                    rbar_unknown, exponents)
    res = _map_pair(fn, f, fb, t, tb)
    _raise_unknown(res.unknown_m, rtab)
    return res


def voronoi_loss(fitted: MoEParams, truth: MoEParams, kind: str = "auto",
                 translation: str = "infimum", rbar=None, coords: str = "raw", *,
                 n_refine: int = N_REFINE, rbar_unknown: str = "bound",
                 exponents: str = "softmax") -> jnp.ndarray:
    """Voronoi loss D_1 or D_2 between a fitted and a true MoE (DESIGN.md §4.1).

    Parameters
    ----------
    fitted, truth : MoEParams
        k and k* experts with the same d. Either may carry a leading batch axis (replicates);
        the result then has that batch shape. Works under ``jax.jit`` / ``jax.vmap``.
    kind : {"auto", "d1", "d2"}
        ``"auto"``: D_1 when k == k*, else D_2.
    translation : {"infimum", "bias", "pinned", "none"}
        See the module docstring. ``"infimum"`` (the theory) minimises over (t0, t1).
    rbar : dict {m: r̄(m)} or callable m -> r̄(m) (None for unknown), optional
        Overrides/extends :data:`RBAR` (D_2 only).
    coords : {"raw", "identified"}
        Temperature gates: raw (β, τ) plus |τ − τ*|, or identified β/τ.
    n_refine : int
        Compass-search steps per start (static).
    rbar_unknown : {"bound", "error"}
        Cells of m >= 4 atoms whose r̄(m) is unknown: score them with the lower bound
        r̄(m) >= 7 (:data:`RBAR_LOWER_BOUND`, the default) or raise (NaN under jit), see the
        module docstring.
    exponents : {"softmax", "activation"}
        D_2 exponent rule of cells with m > 1 atoms (:data:`D2_EXPONENTS`);
        :func:`gate_exponents` gives a gate's rule.

    Returns
    -------
    jnp.ndarray, shape () or (batch,)

    Examples
    --------
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> float(voronoi_loss(truth, truth))
    0.0
    """
    return best_translation(fitted, truth, kind, translation, rbar, coords, n_refine=n_refine,
                            rbar_unknown=rbar_unknown, exponents=exponents).value


def d1_loss(fitted: MoEParams, truth: MoEParams, translation: str = "infimum",
            coords: str = "raw", *, n_refine: int = N_REFINE) -> jnp.ndarray:
    """Exact-fitted Voronoi loss D_1 (see :func:`voronoi_loss`).

    D_1 is the loss whose rate the theory gives for k = k*. It is defined for any k (every
    exponent 1); for an over-fitted model the theory's loss is :func:`d2_loss`, which
    ``voronoi_loss``'s ``kind="auto"`` picks.

    Parameters
    ----------
    fitted, truth : MoEParams
        Any numbers of experts, with the same d (``beta0`` shape (k,), ``beta1`` shape (k, d));
        either may carry a leading batch axis, shape (batch, k, ...).
    translation, coords, n_refine
        As in :func:`voronoi_loss`.

    Returns
    -------
    jnp.ndarray, shape () or (batch,)

    Examples
    --------
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> float(d1_loss(truth, truth))
    0.0
    """
    return voronoi_loss(fitted, truth, "d1", translation, None, coords, n_refine=n_refine)


def d2_loss(fitted: MoEParams, truth: MoEParams, translation: str = "infimum", rbar=None,
            coords: str = "raw", *, n_refine: int = N_REFINE, rbar_unknown: str = "bound",
            exponents: str = "softmax") -> jnp.ndarray:
    """Over-fitted Voronoi loss D_2 with exponents r̄(m) (see :func:`voronoi_loss`).

    Parameters
    ----------
    fitted, truth : MoEParams
        k >= k* experts with the same d (``beta0`` shape (k,), ``beta1`` shape (k, d)); either
        may carry a leading batch axis, shape (batch, k, ...).
    translation, rbar, coords, n_refine, rbar_unknown, exponents
        As in :func:`voronoi_loss`.

    Returns
    -------
    jnp.ndarray, shape () or (batch,)

    Examples
    --------
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> float(d2_loss(truth, truth))
    0.0
    """
    return voronoi_loss(fitted, truth, "d2", translation, rbar, coords, n_refine=n_refine,
                        rbar_unknown=rbar_unknown, exponents=exponents)


def voronoi_cells(fitted: MoEParams, truth: MoEParams, t1=None,
                  coords: str = "raw") -> VoronoiCells:
    """Voronoi cells of the fitted atoms (β_1 − t1, a, b, ν) around the true atoms.

    ``t1`` (d,) defaults to 0 (no translation); use ``best_translation(...).t1`` for the cells at
    the optimal translation (``best_translation`` also returns them). Batched inputs give
    batched cells.

    Parameters
    ----------
    fitted, truth : MoEParams
        k and k* experts with the same d; either may carry a leading batch axis.
    t1 : array (d,) or (batch, d), optional
        Translation of the fitted gate slopes.
    coords : {"raw", "identified"}
        As in :func:`voronoi_loss`.

    Returns
    -------
    VoronoiCells
        ``assign`` shape (k,), ``size`` shape (k*,) (with a leading (batch,) axis when batched).

    Examples
    --------
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> voronoi_cells(truth, truth, t1=[0.5]).assign.tolist()
    [0, 1]
    """
    ensure_x64()
    _check_choice("coords", coords, COORDS)
    f, fb, t, tb = _check_pair(fitted, truth)
    d = f.beta1.shape[-1]
    if t1 is None:
        t1 = jnp.zeros(d)
    t1 = jnp.asarray(t1, dtype=jnp.float64)
    if t1.shape[-1:] != (d,):
        raise ValueError(f"t1 must have shape (d,) = ({d},); got {t1.shape}")

    def one(fp, tp, t1_):
        assign, _, size, _ = _config(_prep(fp, coords), _prep(tp, coords), t1_)
        return VoronoiCells(assign, size)

    if fb is None and tb is None and t1.ndim == 1:
        return one(f, t, t1)
    axes = (0 if fb is not None else None, 0 if tb is not None else None, 0 if t1.ndim == 2 else None)
    return jax.vmap(one, in_axes=axes)(f, t, t1)


def gate_exponents(spec) -> str:
    """The D_2 exponent rule (a key of :data:`D2_EXPONENTS`) for a fitted model's gate
    (:meth:`moetheory.gates.Gate.loss_exponents`).

    Activation gates with a non-linear σ (and the sigmoid gate) break the β_1–a PDE
    (``moetheory theory pdes``), so their cells use ``"activation"``; the identity activation is
    the temperature gate, and the softmax, top-K and temperature gates keep both PDEs
    (``"softmax"``). Derived symbolically in :func:`moetheory.symbolic.d2_exponent_rules` (the
    package's reading; tested to agree).

    Parameters
    ----------
    spec : MoESpec

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> gate_exponents(MoESpec(3, 1)), gate_exponents(MoESpec(3, 1, gate="activation", activation="tanh"))
    ('softmax', 'activation')
    """
    return spec.gate_family.loss_exponents(spec)
