"""SQUAREM: extrapolation of the EM map with a monotone safeguard (Varadhan & Roland 2008).

Over-fitted EM converges sublinearly: each iteration moves a little along a flat direction of
the likelihood. SQUAREM takes two EM steps θ₁ = F(θ₀), θ₂ = F(θ₁), forms r = θ₁ − θ₀ and
v = θ₂ − θ₁ − r, and jumps to θ₀ + 2αr + α²v with the steplength α = ‖r‖/‖v‖ (scheme S3) clipped
to [1, α_max]; one more EM step from the jump stabilises it. If the stabilised point has a lower
log-likelihood than θ₂, the plain EM point θ₂ is kept and α_max shrinks; when the longest allowed
step is accepted, α_max grows (the global scheme of the authors' R package ``SQUAREM``: initial
α_max = 1, factor 4). The log-likelihood therefore never decreases from cycle to cycle.

The iteration works in the coordinates of the polish (free parameters, log-variances), so a
jump cannot make a variance negative. ``benchmarks/certified_fit.py`` measures it against plain
EM and the Newton polish.
"""
from __future__ import annotations

import math

import numpy as np

from moetheory.em.certify import _Chart


def squarem(step, spec, params, loglik0, *, tol_abs: float, max_steps: int,
            step_max0: float = 1.0, mstep: float = 4.0):
    """Run SQUAREM from ``params`` until a cycle changes ℓ by at most ``tol_abs``.

    Parameters
    ----------
    step : callable, MoEParams -> (MoEParams, ℓ at the new parameters): one EM iteration
    spec : MoESpec; params : MoEParams, the start; loglik0 : float, ℓ at the start
    tol_abs : float, nats per cycle; max_steps : int, EM steps at most (3 per cycle)
    step_max0, mstep : the initial largest steplength and its growth factor

    Returns
    -------
    (params, ℓ, EM steps taken, converged, trace of ℓ after each cycle (the start first))

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.em.backend import numba_fit
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-1, 1, (400, 1)); y = np.abs(x[:, 0]) + 0.1 * rng.standard_normal(400)
    >>> p0 = MoEParams.create([0.5, 0.], [[1.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> def em_step(p):
    ...     o = numba_fit(x, y, np.ones(400), p, tol_rel=0.0, tol_abs=0.0, max_iter=1,
    ...                   var_floor=1e-10, fuse_check=False)
    ...     return o["params"], o["loglik"]
    >>> p, ll, steps, ok, trace = squarem(em_step, MoESpec(2, 1), p0, -1e9, tol_abs=1e-8,
    ...                                   max_steps=3000)  # doctest: +SKIP
    >>> ok, bool(np.all(np.diff(trace) >= 0))  # doctest: +SKIP
    (True, True)
    """
    chart = _Chart(spec, params)
    p, ll = params, float(loglik0)
    trace = [ll]
    steps = 0
    step_max = step_max0
    converged = False
    while steps + 3 <= max_steps:
        p1, l1 = step(p)
        p2, l2 = step(p1)
        steps += 2
        t0, t1, t2 = chart.to_theta(p), chart.to_theta(p1), chart.to_theta(p2)
        r = t1 - t0
        v = t2 - t1 - r
        sv2 = float(v @ v)
        alpha = math.sqrt(float(r @ r) / sv2) if sv2 > 0 else 1.0
        alpha = min(max(alpha, 1.0), step_max)
        new, l_new = p2, l2
        if alpha > 1.0:
            cand, l_cand = step(chart.to_params(t0 + 2.0 * alpha * r + alpha * alpha * v))
            steps += 1
            if math.isfinite(l_cand) and l_cand >= l2:
                new, l_new = cand, l_cand
                if alpha == step_max:
                    step_max *= mstep
            else:
                step_max = max(1.0, step_max / mstep)
        elif alpha == step_max:
            step_max *= mstep
        if not math.isfinite(l_new):
            break
        change = l_new - ll
        p, ll = new, l_new
        trace.append(ll)
        if abs(change) <= tol_abs:
            converged = True
            break
    return p, ll, steps, converged, np.asarray(trace)
