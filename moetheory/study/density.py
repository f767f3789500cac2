"""Distance between fitted and true conditional densities, averaged over the design.

The squared Hellinger distance of the conditional densities at x is

    H²(x) = ½ ∫ (√p(y|x) − √p*(y|x))² dy,

and the study records the design-averaged Hellinger distance h = sqrt(mean_x H²(x)) (the quantity
that converges at the parametric rate n^-1/2 whenever the density is estimable, DESIGN.md §4.1).

Computation (pure JAX, jittable and vmappable over replicates):

* x: a fixed set of quadrature points of the design (``grid``/``uniform``: M midpoints of
  [low, high], and for ``uniform`` with d > 1 the tensor grid of q^d cell midpoints,
  q = round(M^{1/d}); ``gaussian``: normal quantiles; otherwise M draws with a fixed key) —
  except where a model's gate jumps along lines through the origin (top-K selection by the
  score β_1ᵀx, d = 2, on a square centred at 0): there H²(x) is discontinuous wherever the
  fitted and true active sets differ, a sliver whose angle shrinks with the estimation error, and
  fixed nodes measure how many nodes the sliver happens to cover (with the tensor grid, nodes
  lie *on* the truth's boundaries). :func:`density_nodes` then integrates in polar coordinates,
  Gauss–Legendre in the angle on every arc between consecutive breakpoints (both models' set
  changes and the square's corners) and in the radius, so the sliver is integrated, not sampled;
* y: the integrand ½(√p − √p*)² is integrated by the trapezoid rule on G points spanning the
  union of the experts' mean ± 10 sd (fitted sds capped at 4× the largest true sd, so one
  degenerate fitted expert cannot stretch the grid); the mass of p and p* outside that range is
  added exactly from normal tails (there √p·√p* ≈ 0). Working with (√p − √p*)² instead of
  1 − ∫√(p p*) avoids the cancellation that would swamp distances of order 1e-3.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from moetheory.model import expert_means

N_X = 128
N_Y = 2048
#: Gauss–Legendre nodes per arc in the angle and along each ray (:func:`cone_nodes`)
N_THETA = 6
N_R = 6


def design_nodes(design, dim: int, m: int = N_X) -> np.ndarray:
    """Fixed quadrature nodes (m, dim) of a covariate design (a DesignSpec).

    Parameters
    ----------
    design : DesignSpec
        The covariate design (``grid``/``uniform``: midpoints, for d > 1 a tensor grid of
        round(m^{1/d})^d midpoints; ``gaussian``: normal quantiles; otherwise m draws with a
        fixed key).
    dim : int
        Covariate dimension d.
    m : int
        Number of nodes.

    Returns
    -------
    numpy.ndarray, shape (m, dim) (uniform with d > 1: (round(m^{1/d})^d, dim))

    Examples
    --------
    >>> from moetheory.study.spec import DesignSpec
    >>> design_nodes(DesignSpec("grid", low=0.0, high=1.0), 1, m=4).ravel().tolist()
    [0.125, 0.375, 0.625, 0.875]
    """
    if design.name in ("grid", "uniform") and dim == 1:
        return (design.low + (design.high - design.low) * (np.arange(m) + 0.5) / m)[:, None]
    if design.name == "uniform":  # d >= 2: the tensor grid of q^d cell midpoints, q = round(m^(1/d))
        q = max(2, int(round(m ** (1.0 / dim))))
        axis = design.low + (design.high - design.low) * (np.arange(q) + 0.5) / q
        return np.stack(np.meshgrid(*([axis] * dim), indexing="ij"), axis=-1).reshape(-1, dim)
    if design.name == "gaussian" and dim == 1:
        from scipy.stats import norm

        return design.scale * norm.ppf((np.arange(m) + 0.5) / m)[:, None]
    from moetheory.designs import make_design

    opts = dict(low=design.low, high=design.high, scale=design.scale, radius=design.radius)
    with jax.ensure_compile_time_eval():  # constants, also when called while tracing
        return np.asarray(make_design(jax.random.key(20240101), design.name, m, dim, **opts))


def _cone_breakpoints(spec, params):
    """Angles (2·C(k, 2),) where two selection scores of a top-K gate tie (d = 2, score
    selection): (β_1i − β_1j)ᵀ(cos θ, sin θ) = 0. Empty for a gate without jumps."""
    if not _has_cones(spec):
        return jnp.zeros((0,))
    i, j = np.triu_indices(spec.n_experts, 1)
    delta = params.beta1[i] - params.beta1[j]
    theta = jnp.arctan2(delta[:, 0], -delta[:, 1])
    return jnp.concatenate([theta, theta + jnp.pi])


def _has_cones(spec) -> bool:
    gate = spec.gate_family
    return (gate.name == "topk" and gate.sparse(spec) and gate.select_by == "score"
            and not gate.select_offset and spec.dim == 2)


def cone_quadrature(spec_f, spec_t, design) -> bool:
    """Whether :func:`density_nodes` integrates in polar coordinates for this pair of models.

    True when either gate is a top-K gate selecting by the score β_1ᵀx in d = 2 (its active
    sets change along lines through the origin) and the design is uniform on a square centred
    at 0 (where the polar integral is exact up to Gauss–Legendre error).

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.spec import DesignSpec
    >>> topk = MoESpec(3, 2, gate="topk", top_k=2)
    >>> cone_quadrature(topk, topk, DesignSpec("uniform")), cone_quadrature(
    ...     MoESpec(3, 2), MoESpec(3, 2), DesignSpec("uniform"))
    (True, False)
    """
    return ((_has_cones(spec_f) or _has_cones(spec_t)) and design.name == "uniform"
            and spec_t.dim == 2 and design.low == -design.high)


def cone_nodes(spec_f, fitted, spec_t, truth, half_width: float, n_theta: int = N_THETA,
               n_r: int = N_R):
    """Polar quadrature of the uniform square [−h, h]² split at the gates' breakpoints.

    The angles [0, 2π) are cut where either model's active set can change
    (:func:`cone_quadrature`) and at the square's corners (where the ray length
    h / max(|cos θ|, |sin θ|) has a kink); each arc gets ``n_theta`` Gauss–Legendre angles and
    each ray ``n_r`` Gauss–Legendre radii, weighted by r dr dθ / (2h)² and normalised to sum 1.
    Jittable: the nodes move with ``fitted``.

    Parameters
    ----------
    spec_f, spec_t : MoESpec; fitted, truth : MoEParams (unbatched, d = 2)
    half_width : float, h
    n_theta, n_r : int

    Returns
    -------
    xs : jnp.ndarray, shape (A·n_theta·n_r, 2); weights : jnp.ndarray, same leading shape
        (A: the number of arcs, 4 + 2·C(k, 2) per top-K gate).

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 2, gate="topk", top_k=1)
    >>> p = MoEParams.create([0., 0.], [[1., 0.], [-1., 0.]], [[0., 0.]] * 2, [0., 0.], [1., 1.])
    >>> xs, w = cone_nodes(spec, p, spec, p, 1.0)
    >>> xs.shape, round(float(w.sum()), 12), round(float(w @ xs[:, 0] ** 2), 6)   # E x_1² = 1/3
    ((288, 2), 1.0, 0.333333)
    """
    corners = jnp.pi * jnp.array([0.25, 0.75, 1.25, 1.75])
    cuts = jnp.concatenate([corners, _cone_breakpoints(spec_f, fitted),
                            _cone_breakpoints(spec_t, truth)])
    cuts = jnp.sort(jnp.mod(cuts, 2 * jnp.pi))
    lo, hi = cuts, jnp.concatenate([cuts[1:], cuts[:1] + 2 * jnp.pi])
    gt, gw = np.polynomial.legendre.leggauss(n_theta)
    rt, rw = np.polynomial.legendre.leggauss(n_r)
    half = 0.5 * (hi - lo)
    theta = (0.5 * (lo + hi))[:, None] + half[:, None] * gt[None, :]         # (A, n_theta)
    w_theta = half[:, None] * gw[None, :]
    rmax = half_width / jnp.maximum(jnp.abs(jnp.cos(theta)), jnp.abs(jnp.sin(theta)))
    r = 0.5 * rmax[..., None] * (1.0 + rt)                                   # (A, n_theta, n_r)
    w = w_theta[..., None] * 0.5 * rmax[..., None] * rw * r
    xs = jnp.stack([r * jnp.cos(theta)[..., None], r * jnp.sin(theta)[..., None]], axis=-1)
    w = w.reshape(-1)
    return xs.reshape(-1, 2), w / w.sum()


def density_nodes(spec_f, fitted, spec_t, truth, design, dim: int):
    """Nodes and weights over which the Hellinger distance averages H²(x).

    :func:`cone_nodes` where :func:`cone_quadrature` holds, else the fixed
    :func:`design_nodes` with equal weights.

    Returns
    -------
    xs : array (M, d); weights : array (M,), summing to 1

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.spec import DesignSpec
    >>> spec = MoESpec(2, 2)                       # softmax: no jumps, the fixed 11 × 11 grid
    >>> p = MoEParams.create([0., 0.], [[1., 0.], [0., 0.]], [[0., 0.]] * 2, [0., 1.], [1., 1.])
    >>> xs, w = density_nodes(spec, p, spec, p, DesignSpec("uniform"), 2)
    >>> xs.shape, w.shape
    ((121, 2), (121,))
    """
    if cone_quadrature(spec_f, spec_t, design):
        return cone_nodes(spec_f, fitted, spec_t, truth, float(design.high))
    xs = jnp.asarray(design_nodes(design, dim))
    return xs, jnp.full(xs.shape[0], 1.0 / xs.shape[0])


def _log_mix(logg, mu, sd, yy):
    # logg, mu, sd: (M, k); yy: (M, G) -> log p (M, G). Unrolled over the k components: each
    # term is an (M, G) array that XLA vectorises, where a logsumexp over a short trailing axis
    # of length k runs element by element (3-4x slower on CPU).
    k = logg.shape[-1]
    terms = []
    for i in range(k):
        z = (yy - mu[:, i, None]) / sd[:, i, None]
        terms.append(logg[:, i, None] - 0.5 * z * z - jnp.log(sd[:, i, None])
                     - 0.5 * math.log(2 * math.pi))
    top = terms[0]
    for t in terms[1:]:
        top = jnp.maximum(top, t)
    top = jax.lax.stop_gradient(jnp.where(jnp.isfinite(top), top, 0.0))
    total = jnp.exp(terms[0] - top)
    for t in terms[1:]:
        total = total + jnp.exp(t - top)
    return top + jnp.log(total)


def _tail_mass(logg, mu, sd, lo, hi):
    # mass of the mixture outside [lo, hi] at each x: (M,)
    g = jnp.exp(logg)
    below = jax.scipy.stats.norm.cdf((lo[:, None] - mu) / sd)
    above = jax.scipy.stats.norm.sf((hi[:, None] - mu) / sd)
    return (g * (below + above)).sum(-1)


def hellinger_sq_at(spec_f, fitted, spec_t, truth, xs, n_y: int = N_Y):
    """H²(x) at each row of ``xs`` (M, d) -> (M,). Unbatched params; jittable.

    Parameters
    ----------
    spec_f, spec_t : MoESpec
        Structures (gate family) of the fitted and the true model.
    fitted, truth : MoEParams
        Unbatched parameters: ``beta0`` shape (k,) / (k*,), ``beta1`` and ``a`` shape (k, d).
    xs : array (M, d)
        Covariate points.
    n_y : int
        Trapezoid points in y.

    Returns
    -------
    jnp.ndarray, shape (M,)
        H²(x) in [0, 1] at each row of ``xs``.

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.spec import DesignSpec
    >>> spec = MoESpec(2, 1)
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> xs = design_nodes(DesignSpec("grid", low=0.0, high=1.0), 1, m=4)
    >>> hellinger_sq_at(spec, truth, spec, truth, xs).shape
    (4,)
    """
    lg_f = spec_f.gate_family.log_weights(spec_f, fitted, xs)
    lg_t = spec_t.gate_family.log_weights(spec_t, truth, xs)
    mu_f, mu_t = expert_means(fitted, xs), expert_means(truth, xs)
    sd_t = jnp.broadcast_to(jnp.sqrt(truth.var), mu_t.shape)
    cap = 4.0 * jnp.max(jnp.sqrt(truth.var))
    sd_f = jnp.broadcast_to(jnp.sqrt(fitted.var), mu_f.shape)
    sd_range_f = jnp.minimum(sd_f, cap)
    # Range: all true experts, and fitted experts with non-negligible gate weight.
    alive_f = lg_f > -30.0
    lo = jnp.minimum(jnp.min(mu_t - 10 * sd_t, axis=-1),
                     jnp.min(jnp.where(alive_f, mu_f - 10 * sd_range_f, jnp.inf), axis=-1))
    hi = jnp.maximum(jnp.max(mu_t + 10 * sd_t, axis=-1),
                     jnp.max(jnp.where(alive_f, mu_f + 10 * sd_range_f, -jnp.inf), axis=-1))
    u = jnp.linspace(0.0, 1.0, n_y)
    yy = lo[:, None] + (hi - lo)[:, None] * u[None, :]
    lp_f = _log_mix(lg_f, mu_f, sd_f, yy)
    lp_t = _log_mix(lg_t, mu_t, sd_t, yy)
    integrand = 0.5 * (jnp.exp(0.5 * lp_f) - jnp.exp(0.5 * lp_t)) ** 2
    h = (hi - lo) / (n_y - 1)
    inner = h * (integrand.sum(-1) - 0.5 * (integrand[:, 0] + integrand[:, -1]))
    outer = 0.5 * (_tail_mass(lg_f, mu_f, sd_f, lo, hi) + _tail_mass(lg_t, mu_t, sd_t, lo, hi))
    return jnp.clip(inner + outer, 0.0, 1.0)


def hellinger_distance(spec_f, fitted, spec_t, truth, xs, n_y: int = N_Y, weights=None):
    """Design-averaged Hellinger distance sqrt(mean_x H²(x)) (a scalar in [0, 1]).

    Parameters
    ----------
    spec_f, spec_t : MoESpec
        Structures of the fitted and the true model.
    fitted, truth : MoEParams
        Unbatched parameters (``beta0`` shape (k,), ``beta1`` shape (k, d)).
    xs : array (M, d)
        Design nodes, e.g. from :func:`design_nodes`.
    n_y : int
        Trapezoid points in y.
    weights : array (M,), optional
        Quadrature weights summing to 1 (default: the plain mean), e.g. from
        :func:`density_nodes`.

    Returns
    -------
    jnp.ndarray, shape ()

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.spec import DesignSpec
    >>> spec = MoESpec(2, 1)
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> xs = design_nodes(DesignSpec("grid", low=0.0, high=1.0), 1, m=4)
    >>> float(hellinger_distance(spec, truth, spec, truth, xs)) < 1e-10   # tail-mass rounding
    True
    >>> shifted = truth._replace(b=truth.b + 0.1)
    >>> 0.0 < float(hellinger_distance(spec, shifted, spec, truth, xs)) < 0.1
    True
    """
    h2 = hellinger_sq_at(spec_f, fitted, spec_t, truth, xs, n_y)
    return jnp.sqrt(jnp.mean(h2) if weights is None else weights @ h2)
