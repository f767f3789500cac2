"""Numerical identifiability checks of a fitted model class against a truth.

:func:`search_equivalent` looks for fitted models whose conditional density equals the truth's
(design-averaged Hellinger distance ≈ 0) and reports their Voronoi losses. A loss whose rate the
theory proves must be bounded by a multiple of the density distance near the truth; a
density-equivalent model with a large loss shows that the loss (or the design) cannot test that
rate. The classic case is the top-K design with d = 1 and selection by β_1ᵀx, where the two regions
x > 0 and x < 0 never move: a k = 4, K = 2 model with the middle expert duplicated and
β_1 = (−5, −1, 1, 5) has Hellinger distance 2e-12 to the k* = 3, K* = 2 truth while the softmax
D_2 sits at its ceiling 3.65 (the region-aware loss of :mod:`moetheory.losses.regions` is 0 there).

Method: every start assigns each fitted expert to a true expert (each true expert at least once),
copies that expert's (a, b, ν), splits its weight e^{β_0} equally among the copies and draws the
gate slopes β_1 around the true ones with a wide spread (so that region-wise translations can be
reached); the squared Hellinger distance is then minimised over all parameters by L-BFGS
(scipy) with JAX gradients. This is a search, not a proof: finding no equivalent model does not
show that none exists (e.g. exact ties of selection scores, which the lower-index tie rule
resolves, are never drawn).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["EquivalentModel", "search_equivalent", "evaluate_candidate", "InformationSD",
           "information_sd"]


class EquivalentModel(NamedTuple):
    """One fitted model found by :func:`search_equivalent` (host-side floats).

    ``params`` (MoEParams, unbatched), ``hellinger`` (design-averaged Hellinger distance to the
    truth), ``loss`` (the softmax Voronoi loss D_1/D_2), ``region_loss`` (the region-aware loss;
    equals ``loss`` for gates with every expert active), ``start`` (index of the start, −1 for a
    given candidate).

    Examples
    --------
    >>> EquivalentModel._fields
    ('params', 'hellinger', 'loss', 'region_loss', 'start')
    """

    params: object
    hellinger: float
    loss: float
    region_loss: float
    start: int


def _nodes(design, dim, nodes):
    import jax.numpy as jnp

    from moetheory.study.density import design_nodes

    if nodes is None:
        nodes = design_nodes(design, dim)
    return jnp.asarray(nodes, dtype=jnp.float64)


def evaluate_candidate(truth_spec, truth, fit_spec, fitted, design=None, *, nodes=None,
                       rbar=None, start: int = -1) -> EquivalentModel:
    """Hellinger distance and losses of one fitted model against the truth.

    Parameters
    ----------
    truth_spec, fit_spec : MoESpec
    truth, fitted : MoEParams
        Unbatched parameters.
    design : DesignSpec, optional
        The covariate design: the Hellinger distance integrates over it as the studies do
        (:func:`moetheory.study.density.density_nodes`), the region loss weighs its nodes; or
        pass ``nodes`` (M, d) for both.
    rbar : dict, optional
        As in :func:`moetheory.losses.voronoi_loss` (unknown r̄ use the bound r̄ ≥ 7).

    Returns
    -------
    EquivalentModel

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.spec import DesignSpec
    >>> ts, fs = MoESpec(3, 1, gate="topk", top_k=2), MoESpec(4, 1, gate="topk", top_k=2)
    >>> truth = MoEParams.create([0., .5, 0.], [[-4.], [0.], [4.]], [[-2.], [1.], [2.]],
    ...                          [1., 0., -1.], [.1, .1, .1])
    >>> dup = MoEParams.create([0., .5, .5, 0.], [[-5.], [-1.], [1.], [5.]],
    ...                        [[-2.], [1.], [1.], [2.]], [1., 0., 0., -1.], [.1] * 4)
    >>> r = evaluate_candidate(ts, truth, fs, dup, DesignSpec("uniform"))  # doctest: +SKIP
    >>> r.hellinger < 1e-10, round(r.loss, 2), r.region_loss  # doctest: +SKIP
    (True, 3.65, 0.0)
    """
    from moetheory._jax import ensure_x64
    from moetheory.losses import voronoi_loss
    from moetheory.losses.regions import region_loss
    from moetheory.params import MoEParams
    from moetheory.study.density import density_nodes, hellinger_distance

    ensure_x64()
    xs = _nodes(design, truth_spec.dim, nodes)
    fitted = MoEParams.create(*fitted)
    truth = MoEParams.create(*truth)
    # the studies' quadrature (integrates the slivers where top-K active sets differ)
    hx, hw = ((xs, None) if nodes is not None else
              density_nodes(fit_spec, fitted, truth_spec, truth, design, truth_spec.dim))
    h = float(hellinger_distance(fit_spec, fitted, truth_spec, truth, hx, weights=hw))
    loss = float(voronoi_loss(fitted, truth, rbar=rbar))
    reg = float(region_loss(fit_spec, fitted, truth_spec, truth, xs, rbar=rbar))
    return EquivalentModel(fitted, h, loss, reg, int(start))


def _start(rng, truth, k, slope_spread):
    kstar, d = np.asarray(truth.beta1).shape
    assign = np.concatenate([rng.permutation(kstar), rng.integers(0, kstar, k - kstar)])
    rng.shuffle(assign)
    counts = np.bincount(assign, minlength=kstar)
    b1 = np.asarray(truth.beta1)
    scale = slope_spread * (1.0 + np.max(np.abs(b1)))
    return dict(
        beta0=np.asarray(truth.beta0)[assign] - np.log(counts[assign]) + 0.1 * rng.normal(size=k),
        beta1=b1[assign] + scale * rng.normal(size=(k, d)) / np.sqrt(d),
        a=np.asarray(truth.a)[assign] + 0.01 * rng.normal(size=(k, d)),
        b=np.asarray(truth.b)[assign] + 0.01 * rng.normal(size=k),
        logvar=np.log(np.asarray(truth.var)[assign]))


def search_equivalent(truth_spec, truth, fit_spec, design=None, *, n_starts: int = 16,
                      seed: int = 0, slope_spread: float = 0.5, tol: float = 1e-6,
                      maxiter: int = 500, nodes=None, rbar=None, n_y: int = 512,
                      return_all: bool = False) -> list:
    """Search for fitted models with the truth's density (Hellinger < ``tol``) and report losses.

    Parameters
    ----------
    truth_spec : MoESpec
        The truth's structure (k*, d, gate).
    truth : MoEParams
        Unbatched true parameters.
    fit_spec : MoESpec
        The fitted class (k >= k*, same d); softmax and top-K gates (τ = 1).
    design : DesignSpec, optional
        Covariate design whose nodes weigh x (or pass ``nodes`` (M, d)).
    n_starts : int
        Number of starts (module docstring).
    seed : int
        Seed of the starts (same seed, same machine: same result).
    slope_spread : float
        Spread of the drawn gate slopes, in units of 1 + max|β*_1|.
    tol : float
        Hellinger distance below which a model counts as density-equivalent.
    maxiter : int
        L-BFGS iterations per start.
    rbar : dict, optional
        Passed to the losses.
    n_y : int
        y-quadrature points during the search (the reported distance uses the default 2048).
    return_all : bool
        Return every start's end point, closest density first (to see how close the search got
        when nothing is equivalent).

    Returns
    -------
    list of EquivalentModel
        The density-equivalent models found (``hellinger < tol``), largest ``loss`` first; with
        ``return_all``, every start's result, smallest ``hellinger`` first.

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.spec import DesignSpec
    >>> ts, fs = MoESpec(3, 1, gate="topk", top_k=2), MoESpec(4, 1, gate="topk", top_k=2)
    >>> truth = MoEParams.create([0., .5, 0.], [[-4.], [0.], [4.]], [[-2.], [1.], [2.]],
    ...                          [1., 0., -1.], [.1, .1, .1])
    >>> found = search_equivalent(ts, truth, fs, DesignSpec("uniform"), n_starts=8)  # doctest: +SKIP
    >>> found[0].hellinger < 1e-6 and found[0].loss > 1.0  # doctest: +SKIP
    True
    """
    import jax
    import jax.numpy as jnp
    from scipy.optimize import minimize

    from moetheory._jax import ensure_x64
    from moetheory.params import MoEParams
    from moetheory.spec import MoESpec
    from moetheory.study.density import hellinger_sq_at

    ensure_x64()
    for name, spec in (("truth_spec", truth_spec), ("fit_spec", fit_spec)):
        if not isinstance(spec, MoESpec):
            raise TypeError(f"{name} must be a MoESpec; got {type(spec).__name__}")
        if spec.has_tau:
            raise ValueError(f"{name}: search_equivalent supports softmax and top-K gates; got "
                             f"gate={spec.gate_name!r}")
    if fit_spec.dim != truth_spec.dim or fit_spec.n_experts < truth_spec.n_experts:
        raise ValueError(f"fit_spec must have the truth's d={truth_spec.dim} and k >= k*="
                         f"{truth_spec.n_experts}; got d={fit_spec.dim}, k={fit_spec.n_experts}")
    for name, v in (("n_starts", n_starts), ("maxiter", maxiter)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be an integer >= 1; got {v!r}")
    truth = MoEParams.create(*truth)
    xs = _nodes(design, truth_spec.dim, nodes)
    k, d = fit_spec.n_experts, fit_spec.dim
    sizes = [k, k * d, k * d, k, k]

    def unpack(z):
        parts = jnp.split(z, np.cumsum(sizes)[:-1])
        return MoEParams(parts[0], parts[1].reshape(k, d), parts[2].reshape(k, d), parts[3],
                         jnp.exp(parts[4]), jnp.asarray(1.0))

    def h2(z):
        return jnp.mean(hellinger_sq_at(fit_spec, unpack(z), truth_spec, truth, xs, n_y))

    vg = jax.jit(jax.value_and_grad(h2))

    def fun(z):
        v, g = vg(jnp.asarray(z))
        return float(v), np.asarray(g, dtype=np.float64)

    rng = np.random.default_rng(seed)
    found = []
    for i in range(int(n_starts)):
        s = _start(rng, truth, k, slope_spread)
        z0 = np.concatenate([s["beta0"], s["beta1"].ravel(), s["a"].ravel(), s["b"], s["logvar"]])
        res = minimize(fun, z0, jac=True, method="L-BFGS-B",
                       options={"maxiter": int(maxiter), "ftol": 1e-30, "gtol": 1e-16})
        p = jax.tree.map(np.asarray, unpack(jnp.asarray(res.x)))
        cand = evaluate_candidate(truth_spec, truth, fit_spec, p, nodes=xs, rbar=rbar, start=i)
        if return_all or cand.hellinger < tol:
            found.append(cand)
    if return_all:
        return sorted(found, key=lambda c: c.hellinger)
    return sorted(found, key=lambda c: -c.loss)


class InformationSD(NamedTuple):
    """Result of :func:`information_sd`.

    ``sd``: {parameter label: asymptotic standard deviation per √n} (NaN where the inverse
    information has a non-positive diagonal: not identified to first order in this design);
    ``min_eig``: smallest eigenvalue of the information scaled to unit diagonal (0 or negative:
    singular); ``n_mc``: draws used.

    Examples
    --------
    >>> InformationSD({"tau": 1.0}, 0.1, 100).sd["tau"]
    1.0
    """

    sd: dict
    min_eig: float
    n_mc: int


def information_sd(spec, truth, design, *, n_mc: int = 20000, seed: int = 0) -> InformationSD:
    """Asymptotic standard deviations per √n of the free parameters at the truth.

    The per-observation Fisher information is estimated by the observed information
    (:func:`moetheory.mle.information`) of ``n_mc`` draws from the truth on the design, divided by
    ``n_mc``; the standard deviation of parameter j at sample size n is then about
    ``sd[j] / sqrt(n)``. A weakly identified gate shows as large (or NaN) entries: the n from which
    the parametric regime can start is about (sd / wanted precision)².

    Parameters
    ----------
    spec : MoESpec
        The model (the truth's structure).
    truth : MoEParams
        Unbatched parameters.
    design : DesignSpec
        Covariate design.
    n_mc : int
        Draws.
    seed : int

    Returns
    -------
    InformationSD

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.spec import DesignSpec
    >>> truth = MoEParams.create([0., 0.], [[2.], [0.]], [[-1.], [1.]], [.5, -.5], [.1, .1])
    >>> res = information_sd(MoESpec(2, 1), truth, DesignSpec("uniform"), n_mc=2000)  # doctest: +SKIP
    >>> sorted(res.sd)[:2], res.min_eig > 0  # doctest: +SKIP
    (['expert1:const', 'expert1:var'], True)
    """
    import jax

    from moetheory._jax import ensure_x64
    from moetheory.designs import make_design
    from moetheory.mle import information, param_names
    from moetheory.model import sample
    from moetheory.params import MoEParams

    ensure_x64()
    if isinstance(n_mc, bool) or not isinstance(n_mc, (int, np.integer)) or n_mc < 10:
        raise ValueError(f"n_mc must be an integer >= 10; got {n_mc!r}")
    truth = MoEParams.create(*truth)
    kx, ky = jax.random.split(jax.random.key(seed))
    x = make_design(kx, design.name, int(n_mc), spec.dim, low=design.low, high=design.high,
                    scale=design.scale, radius=design.radius)
    y = sample(ky, spec, truth, x)
    info, _ = information(spec, truth, x, y)
    info = info / n_mc
    d = np.sqrt(np.abs(np.diag(info)))
    scaled = info / np.outer(d, d)
    min_eig = float(np.linalg.eigvalsh(0.5 * (scaled + scaled.T))[0])
    with np.errstate(invalid="ignore"):
        diag = np.diag(np.linalg.pinv(info))
        sd = np.where(diag > 0, np.sqrt(np.where(diag > 0, diag, 1.0)), np.nan)
    if min_eig <= 1e-12:
        sd = np.full_like(sd, np.nan)
    return InformationSD(dict(zip(param_names(spec), (float(v) for v in sd))), min_eig, int(n_mc))
