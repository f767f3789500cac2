"""Newton polish of the observed log-likelihood and the convergence certificate.

EM's stopping rule measures how fast ℓ still changes, not how far the maximum is: on the flat
likelihood of an over-fitted model EM can creep for 10⁴–10⁵ iterations while ℓ is still nats
below its maximum (softmax truth k* = 2, k = 3 fitted, n = 1e5: EM to a mean change of 1e-10
per observation stops 2.27 nats low after 484 iterations; ``benchmarks/certified_fit.py``).
Two things close that gap:

* :func:`polish` — maximise ℓ directly by a trust-region Newton method
  (``scipy.optimize.minimize(method="trust-exact")``) with the exact gradient and Hessian in the
  free coordinates (:func:`moetheory.mle.free_layout`) with log-variances (and log-τ), which
  handles indefinite Hessians on the way;
* :func:`certify` — the certificate at the result: the Hessian H of ℓ must be negative definite
  (a strict local maximum; tested after unit-diagonal scaling, so units do not matter) and the
  Newton decrement ½ gᵀ(−H)⁻¹g — the log-likelihood a Newton step would still gain, affine
  invariant and exact for a quadratic — must be at most ``cert_tol`` nats. Parameters the
  model does not identify by design (:func:`moetheory.mle.unidentified_labels`, e.g. the gate of
  a top-1 model) are left out; any other direction along which −H is numerically zero means the
  maximum is not isolated — e.g. a gate slope running off to a step on separable data, where ℓ
  approaches its supremum only at infinity — and is reported as "flat", not certified.

Top-K gates (K < k) are only piecewise smooth: ℓ jumps whenever a data point changes its active
set, so over the coordinates that decide the sets (β_1; β_0 too under ``select_by="logit"``) its
maximum sits on a step, where a gradient says nothing. Those coordinates are held by the polish
and left out of the certificate (:func:`held_labels`); EM's gate step maximises over them. A
top-K certificate therefore says: a strict maximum over every other parameter, with the active
sets of the estimate.

The derivatives come from :func:`derivatives`: for the softmax gate on CPU the closed forms,
in NumPy for small data (:mod:`moetheory.kernels.numpy_derivs`, nothing to compile) and in the
one-pass Numba kernel otherwise (:mod:`moetheory.kernels.numba_derivs`); JAX autodiff for the
other gates (:func:`derivative_backend`).
"""
from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from moetheory.mle import (free_layout, pack, pack_numpy, positive_mask, unidentified_labels,
                           unpack, unpack_numpy)
from moetheory.params import MoEParams

#: Relative eigenvalue (after unit-diagonal scaling) below which a direction counts as flat.
FLAT_RCOND = 1e-10

#: certificate reasons, in the order of their integer codes (cached study cells store the code)
REASONS = ("certified", "gap", "saddle", "flat", "variance_floor", "nonfinite", "not_checked")


class Certificate(NamedTuple):
    """Evidence that an estimate is a maximum of the log-likelihood.

    Attributes
    ----------
    certified : bool, −H positive definite on the identified directions and ``gap`` ≤ tol
    reason : str, one of :data:`REASONS` ("certified" when certified, else why not)
    gap : float, the Newton decrement ½ gᵀ(−H)⁻¹g in nats (NaN when not computed)
    score_norm : float, max |∂ℓ/∂θ̃| over the free coordinates θ̃ (log-variances)
    min_eig : float, the smallest eigenvalue of −H after unit-diagonal scaling (< 0: not a
        maximum; near 0: a flat direction)
    n_singular : int, numerically flat directions of −H (outside the unidentified parameters)
    n_iter : int, EM iterations; n_polish : int, Newton iterations of the polish
    last_increments : tuple of float, the last (up to 3) ℓ increments of EM

    Examples
    --------
    >>> c = Certificate(True, "certified", 1e-12, 1e-7, 0.02, 0, 120, 8, (1e-6, 1e-7, 1e-9))
    >>> c.certified, c.reason
    (True, 'certified')
    """

    certified: bool
    reason: str
    gap: float
    score_norm: float
    min_eig: float
    n_singular: int
    n_iter: int
    n_polish: int
    last_increments: tuple

    def to_dict(self) -> dict:
        d = self._asdict()
        d["last_increments"] = list(self.last_increments)
        return d


def not_checked(n_iter: int = 0, reason: str = "not_checked") -> Certificate:
    """A certificate that could not be computed (e.g. a non-finite estimate).

    Examples
    --------
    >>> not_checked(12, "nonfinite").reason, not_checked().certified
    ('nonfinite', False)
    """
    nan = float("nan")
    return Certificate(False, reason, nan, nan, nan, 0, int(n_iter), 0, ())


# ------------------------------------------------------------------------------ derivatives
def derivative_backend(spec, n_obs) -> str:
    """Who computes ℓ's derivatives for ``spec`` on data of ``n_obs`` rows: ``"numpy"`` or
    ``"numba"`` (the closed forms of the softmax gate on a CPU JAX; NumPy for small data by
    :func:`moetheory.em.backend.small_data`) or ``"jax"`` (autodiff). Also the information
    matrix of :func:`moetheory.mle.information` follows it.

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> derivative_backend(MoESpec(2, 1, gate="temperature"), 100)
    'jax'
    >>> derivative_backend(MoESpec(2, 1), 100), derivative_backend(MoESpec(2, 1), 10 ** 6)
    ('numpy', 'numba')
    """
    from moetheory.em.backend import small_data

    if not spec.cpu_kernels or jax.default_backend() != "cpu":
        return "jax"
    return "numpy" if small_data(spec, n_obs) else "numba"


def piecewise(spec) -> bool:
    """True when ℓ is only piecewise smooth in the gate: top-K with K < k, whose active sets
    jump as β moves (:func:`active_sets`). Its polish and certificate hold the active sets fixed
    (the module docstring).

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> piecewise(MoESpec(3, 1, gate="topk", top_k=2)), piecewise(MoESpec(3, 1))
    (True, False)
    """
    return bool(spec.gate_family.selection_fields(spec))


def held_labels(spec) -> set:
    """Free parameters the polish holds and the certificate leaves out: those of
    :func:`moetheory.mle.unidentified_labels`, and for a :func:`piecewise` gate the ones that
    decide the active sets (β_1; β_0 too when experts are selected by the full logit). ℓ is a
    step function of those — it jumps whenever a data point changes its active set — so its
    maximum over them sits on a step, where calculus says nothing; they are maximised by the EM
    gate step alone.

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> sorted(held_labels(MoESpec(2, 1, gate="topk", top_k=1)))
    ['gate1:const', 'gate1:x1']
    >>> sorted(held_labels(MoESpec(3, 1, gate="topk", top_k=2)))
    ['gate1:x1', 'gate2:x1']
    """
    held = set(unidentified_labels(spec))
    if piecewise(spec):
        fields = spec.gate_family.selection_fields(spec)
        held |= {lab for f, _, lab in free_layout(spec) if f in fields}
    return held


def active_sets(spec, params, x):
    """The active sets (n, k) bool at ``params`` of a :func:`piecewise` gate, else None.

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> active_sets(MoESpec(2, 1), None, None) is None
    True
    """
    if not piecewise(spec):
        return None
    from moetheory.gates import active_mask

    return np.asarray(active_mask(spec, jax.tree.map(jnp.asarray, params), jnp.asarray(x)))


def _held_loglik(spec, params, x, y, w, mask):
    """Σ w log p with the top-K active sets held at ``mask`` (None: recomputed at params)."""
    from moetheory.model import log_joint

    lj = log_joint(spec, params, x, y, mask)
    return jnp.sum(w * jax.scipy.special.logsumexp(lj, axis=-1))


@partial(jax.jit, static_argnums=0)
def _jax_derivatives(spec, params, x, y, w, mask):
    theta = pack(spec, params)
    total = lambda th: _held_loglik(spec, unpack(spec, th, params), x, y, w, mask)  # noqa: E731
    return total(theta), jax.grad(total)(theta), jax.hessian(total)(theta)


@partial(jax.jit, static_argnums=0)
def _jax_loglik(spec, params, x, y, w, mask):
    return _held_loglik(spec, params, x, y, w, mask)


def derivatives(spec, params: MoEParams, x, y, weights=None, mask=None):
    """(ℓ, ∇ℓ (p,), ∇²ℓ (p, p)) in the natural free coordinates of :func:`free_layout`.

    Parameters
    ----------
    spec : MoESpec
    params : MoEParams (``beta1``, ``a`` (k, d); ``beta0``, ``b``, ``var`` (k,))
    x : (n, d); y : (n,); weights : (n,), optional (0 drops a padded row)
    mask : (n, k) bool, optional, top-K active sets to hold (default: those at ``params``;
        the derivatives are always those of the held-set likelihood)

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> from moetheory.spec import MoESpec
    >>> p = MoEParams.create([0.5, 0.], [[1.], [0.]], [[1.], [-1.]], [0.2, 0.], [1., 2.])
    >>> x = np.linspace(-1, 1, 20)[:, None]; y = np.sin(3 * x[:, 0])
    >>> ll, g, H = derivatives(MoESpec(2, 1, gate="temperature"), p, x, y)
    >>> g.shape, H.shape
    ((8,), (8, 8))
    """
    w = np.ones(np.shape(y)[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    path = derivative_backend(spec, np.shape(y)[0])
    if path == "numpy":
        from moetheory.kernels.numpy_derivs import softmax_derivatives

        return softmax_derivatives(params, x, y, w)
    if path == "numba":
        from moetheory.kernels.numba_derivs import softmax_derivatives

        return softmax_derivatives(params, x, y, w)
    if mask is None:
        mask = active_sets(spec, params, x)
    ll, g, H = _jax_derivatives(spec, jax.tree.map(jnp.asarray, params), jnp.asarray(x),
                                jnp.asarray(y), jnp.asarray(w),
                                None if mask is None else jnp.asarray(mask))
    return float(ll), np.asarray(g), np.asarray(H)


def loglik(spec, params: MoEParams, x, y, weights=None, mask=None) -> float:
    """The weighted observed log-likelihood (a cheap pass: no derivatives).

    Parameters
    ----------
    spec : MoESpec; params : MoEParams
    x : (n, d); y : (n,); weights : (n,), optional
    mask : (n, k) bool, optional, top-K active sets to hold (default: recomputed at params)

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> from moetheory.spec import MoESpec
    >>> p = MoEParams.create([0.], [[0.]], [[0.]], [0.], [1.])
    >>> round(loglik(MoESpec(1, 1, gate="temperature"), p, np.zeros((2, 1)), np.zeros(2)), 6)
    -1.837877
    """
    w = np.ones(np.shape(y)[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    path = derivative_backend(spec, np.shape(y)[0])
    if path == "numpy":
        from moetheory.kernels.numpy_derivs import softmax_loglik

        return softmax_loglik(params, x, y, w)
    if path == "numba":
        from moetheory.kernels.numba_derivs import softmax_loglik

        return softmax_loglik(params, x, y, w)
    return float(_jax_loglik(spec, jax.tree.map(jnp.asarray, params), jnp.asarray(x),
                             jnp.asarray(y), jnp.asarray(w),
                             None if mask is None else jnp.asarray(mask)))


class _Chart:
    """The polish's coordinates θ̃: the free parameters (:func:`free_layout` order) with
    log-variances (and log-τ). NumPy only (:func:`moetheory.mle.pack_numpy`): the polish
    converts at every trial point, where JAX's per-element dispatch would cost more than the
    likelihood pass itself."""

    def __init__(self, spec, params, held=frozenset()):
        self.spec = spec
        self.template = unpack_numpy(spec, pack_numpy(spec, params), params)  # float64 copies
        #: (p,) bool: the coordinates the polish moves (the others stay at the template's)
        self.keep = np.array([lab not in held for _, _, lab in free_layout(spec)], dtype=bool)
        self._full = pack_numpy(spec, self.template)
        self.logs = positive_mask(spec)[self.keep]

    def pack(self, params) -> np.ndarray:
        """The moved free parameters (p,) in natural coordinates."""
        return pack_numpy(self.spec, params)[self.keep]

    def to_theta(self, params) -> np.ndarray:
        th = self.pack(params)
        return np.where(self.logs, np.log(np.where(self.logs, th, 1.0)), th)

    def to_params(self, theta) -> MoEParams:
        nat = np.where(self.logs, np.exp(np.where(self.logs, theta, 0.0)), theta)
        full = self._full.copy()
        full[self.keep] = nat
        return unpack_numpy(self.spec, full, self.template)

    def transform(self, theta, g, H):
        """Gradient and Hessian from natural (all free parameters) to θ̃ coordinates (the kept
        ones; chain rule for the logs)."""
        g, H = g[self.keep], H[np.ix_(self.keep, self.keep)]
        s = np.where(self.logs, np.exp(np.where(self.logs, theta, 0.0)), 1.0)  # ∂θ/∂θ̃
        gt = s * g
        Ht = H * np.outer(s, s) + np.diag(np.where(self.logs, gt, 0.0))
        return gt, Ht


def _decrement(g, H):
    """(gap, min scaled eigenvalue, flat directions) for ℓ's gradient g and Hessian H."""
    A = -0.5 * (H + H.T)
    diag = np.diag(A)
    scale = np.where(diag > 0, 1.0 / np.sqrt(np.where(diag > 0, diag, 1.0)), 1.0)
    As = A * np.outer(scale, scale)
    gs = g * scale
    eig, vec = np.linalg.eigh(As)
    top = max(abs(eig[-1]), 1e-300)
    flat = np.abs(eig) <= FLAT_RCOND * top
    good = eig > FLAT_RCOND * top
    proj = vec[:, good].T @ gs
    gap = 0.5 * float(np.sum(proj * proj / eig[good]))
    return gap, float(eig[0] / top), int(flat.sum())


def certify(spec, params: MoEParams, x, y, weights=None, *, tol: float = 1e-6, n_iter: int = 0,
            n_polish: int = 0, increments=(), var_floor: float = 0.0, derivs=None) -> Certificate:
    """The convergence certificate of ``params`` (module docstring).

    Parameters
    ----------
    spec : MoESpec
    params : MoEParams
    x : (n, d); y : (n,); weights : (n,), optional
    tol : the largest Newton decrement (nats) that certifies
    n_iter, n_polish, increments : EM iterations, polish iterations and the last ℓ increments,
        recorded in the certificate
    var_floor : a variance within 1e-9 (relative) of this floor means a boundary estimate:
        not certified ("variance_floor")
    derivs : (ℓ, g, H) at ``params`` in natural coordinates, when already computed

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> from moetheory.spec import MoESpec
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-1, 1, (400, 1)); y = 2 * x[:, 0] + 0.3 * rng.standard_normal(400)
    >>> p = MoEParams.create([0.], [[0.]], [[2.]], [0.], [0.09])   # one expert: OLS
    >>> cert = certify(MoESpec(1, 1), p, x, y)   # not at the OLS estimate
    >>> cert.certified, cert.reason
    (False, 'gap')
    """
    incr = tuple(float(v) for v in increments)[-3:]
    if not all(np.all(np.isfinite(np.asarray(v))) for v in jax.tree.leaves(params)):
        return not_checked(n_iter, "nonfinite")
    ll, g, H = derivatives(spec, params, x, y, weights) if derivs is None else derivs
    chart = _Chart(spec, params, held_labels(spec))
    theta = chart.to_theta(params)
    gt, Ht = chart.transform(theta, np.asarray(g), np.asarray(H))
    if not (math.isfinite(ll) and np.all(np.isfinite(gt)) and np.all(np.isfinite(Ht))):
        return Certificate(False, "nonfinite", float("nan"), float("nan"), float("nan"), 0,
                           int(n_iter), int(n_polish), incr)
    gap, min_eig, n_flat = _decrement(gt, Ht) if gt.size else (0.0, 1.0, 0)
    score = float(np.max(np.abs(gt))) if gt.size else 0.0
    on_floor = var_floor > 0 and bool(np.any(np.asarray(params.var) <= var_floor * (1 + 1e-9)))
    if on_floor:
        reason = "variance_floor"
    elif min_eig < -FLAT_RCOND:
        reason = "saddle"
    elif n_flat:
        reason = "flat"
    elif not gap <= tol:
        reason = "gap"
    else:
        reason = "certified"
    return Certificate(reason == "certified", reason, gap, score, min_eig, n_flat, int(n_iter),
                       int(n_polish), incr)


def polish(spec, params: MoEParams, x, y, weights=None, *, max_iter: int = 200,
           var_floor: float = 0.0):
    """Maximise ℓ from ``params`` by trust-region Newton in θ̃ (module docstring).

    ℓ never decreases (only steps that lower −ℓ are accepted). A result with a variance below
    ``var_floor`` — the polish ran towards the likelihood's degenerate spike — is discarded and
    ``params`` returned.

    Parameters
    ----------
    spec : MoESpec; params : MoEParams, the start (an EM estimate)
    x : (n, d); y : (n,); weights : (n,), optional
    max_iter : int, Newton iterations at most; var_floor : float

    Returns
    -------
    (params, ℓ, derivatives (ℓ, g, H) at the result in natural coordinates, iterations)

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> from moetheory.spec import MoESpec
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-1, 1, (400, 1)); y = 2 * x[:, 0] + 0.3 * rng.standard_normal(400)
    >>> p = MoEParams.create([0.], [[0.]], [[2.]], [0.], [0.09])
    >>> new, ll, derivs, it = polish(MoESpec(1, 1), p, x, y)
    >>> ols = np.polyfit(x[:, 0], y, 1)
    >>> bool(np.allclose([new.a[0, 0], new.b[0]], ols, atol=1e-8))
    True
    """
    return _trust_region(spec, params, x, y, weights, max_iter, var_floor)


def _trust_region(spec, params, x, y, weights, max_iter, var_floor):
    """scipy's trust-exact on −ℓ/Σw in θ̃ from ``params``; the result only where ℓ rose and no
    variance fell below ``var_floor``. The coordinates of :func:`held_labels` stay put, so a
    :func:`piecewise` gate's active sets do not move (and are held as data)."""
    from scipy.optimize import minimize

    chart = _Chart(spec, params, held_labels(spec))
    mask = active_sets(spec, params, x)
    theta0 = chart.to_theta(params)
    n_w = float(np.sum(weights)) if weights is not None else float(np.shape(y)[0])
    cache = {}

    def full(theta):
        key = theta.tobytes()
        if key not in cache:
            p = chart.to_params(theta)
            ll, g, H = derivatives(spec, p, x, y, weights, mask)
            gt, Ht = chart.transform(theta, g, H)
            cache.clear()
            cache[key] = (ll, g, H, gt, Ht)
        return cache[key]

    def fun(theta):
        if theta.tobytes() in cache:
            return -cache[theta.tobytes()][0] / n_w
        val = loglik(spec, chart.to_params(theta), x, y, weights, mask)
        return -val / n_w if math.isfinite(val) else math.inf

    start = full(theta0)
    if not (math.isfinite(start[0]) and np.all(np.isfinite(start[3])) and np.all(np.isfinite(start[4]))):
        return params, start[0], start[:3], 0
    # (no warnings.catch_warnings here: it swaps a process-wide filter list and is not safe in
    # the worker threads that polish starts side by side; trust-exact stays silent without
    # disp, and trial points whose exp overflows are rejected by their infinite objective —
    # trust-exact evaluates the Hessian of a trial point before rejecting it, so non-finite
    # entries there are zeroed rather than raised)
    finite = lambda a: np.where(np.isfinite(a), a, 0.0)  # noqa: E731
    best = [theta0, start[0]]  # the highest finite point trust-exact has evaluated

    def track(theta):
        out = full(theta)
        if math.isfinite(out[0]) and out[0] > best[1] and np.all(np.isfinite(out[4])):
            best[:] = [np.array(theta), out[0]]
        return out

    with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        try:
            res = minimize(fun, theta0, jac=lambda t: finite(-track(t)[3] / n_w),
                           hess=lambda t: finite(-track(t)[4] / n_w), method="trust-exact",
                           options={"maxiter": int(max_iter), "gtol": 1e-12})
            theta, nit = res.x, int(res.nit)
        except (ValueError, np.linalg.LinAlgError):
            # an accepted point whose exact Hessian overflows (a gate running to a step):
            # scipy's factorisations refuse it; stop at the best finite point instead
            theta, nit = best[0], int(max_iter)
    new = chart.to_params(theta)
    ll_new, g, H, _, _ = full(theta)
    if (not math.isfinite(ll_new) or ll_new < start[0]
            or (var_floor > 0 and np.any(np.asarray(new.var) < var_floor))):
        return params, start[0], start[:3], nit
    return new, ll_new, (ll_new, g, H), nit
