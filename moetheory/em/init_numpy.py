"""Data-driven starts of the softmax gate in NumPy, from the same random numbers as the JAX ones.

:func:`moetheory.em.starts.draw_starts` builds k-means and random starts with compiled JAX
programs (:mod:`moetheory.em.init`), one per data shape: a new sample size or number of experts
costs seconds of XLA compilation before the first EM iteration. On the CPU paths of the softmax
gate (the NumPy and Numba EM backends) the starts are built here instead: the same algorithms
(k-means++ seeding and 25 Lloyd iterations on standardised (x, y), or a uniformly random
partition; then one exact M-step, the gate by Newton from zero) on whole NumPy arrays. The
random numbers are JAX's own, drawn by small programs whose shape does not depend on n (k-means)
or on a few bucketed lengths (random partitions), so that the partitions are those of the JAX
drawer and the start parameters agree with it to rounding (``tests/test_numpy_path.py``).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from moetheory.kernels.numpy_em import (MIN_EXPERT_WEIGHT, _gate_step, _log_softmax, design_t,
                                        gate_objective)
from moetheory.params import MoEParams

#: Lloyd iterations of k-means (as :func:`moetheory.em.init.kmeans_labels`)
LLOYD_ITERATIONS = 25
#: Newton steps at most of a start's gate fit (as :func:`moetheory.em.init.params_from_resp`)
START_NEWTON = 50
#: random partitions are drawn at a length rounded up to a power of two (at least this), and
#: k-means++ draws for a multiple of 8 centres, then cut: with partitionable threefry (JAX's
#: default) the first m values of a longer draw or split are the m values, so one compiled
#: program serves many n and k
MIN_DRAW = 1024


def _bucket(m: int, least: int, power: bool) -> int:
    if not jax.config.jax_threefry_partitionable:  # a draw's prefix is not the shorter draw
        return m
    if power:
        return max(least, 1 << (int(m) - 1).bit_length())
    return max(least, -(-int(m) // least) * least)


def random_labels(key, n: int, k: int) -> np.ndarray:
    """The labels (n,) of :func:`moetheory.em.init.random_partition` for ``key``.

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> from moetheory.em.init import random_partition
    >>> key = jax.random.key(3)
    >>> bool((np.eye(2)[random_labels(key, 50, 2)] == np.asarray(random_partition(key, 50, 2))).all())
    True
    """
    return np.asarray(jax.random.randint(key, (_bucket(n, MIN_DRAW, power=True),), 0, k))[:n]


def seed_draws(key, n: int, k: int):
    """(first, uniforms (k − 1,)): the random numbers of the k-means++ seeding of
    :func:`moetheory.em.init.kmeans_labels` for ``key`` (see :func:`kmeans_labels`).

    JAX's own functions, called one by one: each is a small program compiled once per process
    (a fused program of all of them took several times as long to compile).

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> first, us = seed_draws(jax.random.key(0), 50, 3)
    >>> 0 <= first < 50, us.shape
    (True, (2,))
    """
    k0, krest = jax.random.split(key)
    first = int(jax.random.randint(k0, (), 0, n))
    if k == 1:
        return first, np.zeros(0)
    kks = jax.random.split(krest, _bucket(k - 1, 8, power=False))
    # kks[i] of the one bucketed array: one indexing program for every k
    us = np.array([float(jax.random.uniform(kks[i], (), dtype=jnp.float64)) for i in range(k - 1)])
    return first, us


def standardise_xy(x, y, weights=None) -> np.ndarray:
    """(x, y) columns centred and scaled to unit sd, (n, d + 1), zero-weight rows replaced by the
    first row (:func:`moetheory.em.init.standardise_xy`).

    Examples
    --------
    >>> z = standardise_xy(np.array([[0.0], [2.0]]), np.array([1.0, 3.0]))
    >>> z.shape, z.tolist()
    ((2, 2), [[-1.0, -1.0], [1.0, 1.0]])
    """
    z = np.concatenate([x, y[:, None]], axis=1)
    if weights is None:  # every row counts: the same sums without the 0/1 weights
        mean = z.sum(0) / z.shape[0]
        sd = np.sqrt(((z - mean) ** 2).sum(0) / z.shape[0])
        z -= mean
        z /= np.where(sd > 0, sd, 1.0)
        return z
    w = (np.asarray(weights) > 0).astype(np.float64)
    mean = (w[:, None] * z).sum(0) / w.sum()
    sd = np.sqrt((w[:, None] * (z - mean) ** 2).sum(0) / w.sum())
    z = (z - mean) / np.where(sd > 0, sd, 1.0)
    return np.where(w[:, None] > 0, z, z[0])


def kmeans_labels(z, k: int, first: int, uniforms, backend="numpy") -> np.ndarray:
    """The labels (n,) of :func:`moetheory.em.init.kmeans_labels` given its random numbers
    (:func:`seed_draws`): k-means++ seeding (the first centre ``z[first]``, each next one where
    the uniform of ``jax.random.choice`` falls in the cumulated squared distances), then Lloyd
    iterations (in the Numba kernel :func:`moetheory.kernels.numba_em.lloyd` for
    ``backend="numba"``: the same arithmetic).

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> from moetheory.em.init import kmeans_labels as jax_kmeans
    >>> z = np.random.default_rng(0).normal(size=(60, 2))
    >>> key = jax.random.key(1)
    >>> lab = kmeans_labels(z, 3, *seed_draws(key, 60, 3))
    >>> bool((np.eye(3)[lab] == np.asarray(jax_kmeans(key, jnp.asarray(z), 3))).all())
    True
    """
    n = z.shape[0]
    centres = np.zeros((k, z.shape[1]))
    centres[0] = z[int(first)]
    for c in range(1, k):
        d2 = _sq_distances(z, centres[:c]).min(axis=1)
        cum = np.cumsum(d2 / max(d2.sum(), 1e-300))
        centres[c] = z[min(int(np.searchsorted(cum, cum[-1] * (1.0 - uniforms[c - 1]))), n - 1)]
    if backend == "numba":
        from moetheory.kernels.numba_em import lloyd

        return lloyd(np.ascontiguousarray(z), centres, LLOYD_ITERATIONS)
    lab = _nearest(_sq_distances(z, centres))
    for _ in range(LLOYD_ITERATIONS):
        cnt = np.bincount(lab, minlength=k).astype(np.float64)
        sums = np.stack([np.bincount(lab, weights=z[:, j], minlength=k)
                         for j in range(z.shape[1])], axis=1)
        new = sums / np.maximum(cnt, 1.0)[:, None]
        centres = np.where(cnt[:, None] > 0, new, centres)
        new_lab = _nearest(_sq_distances(z, centres))
        if np.array_equal(new_lab, lab):  # a fixed point: the remaining iterations repeat it
            break
        lab = new_lab
    return lab


def _nearest(dist) -> np.ndarray:
    """``np.argmin(dist, axis=1)`` (the first on ties) by a pass per column: numpy's argmin
    along a short axis is several times slower."""
    best = dist[:, 0].copy()
    lab = np.zeros(dist.shape[0], dtype=np.int64)
    for c in range(1, dist.shape[1]):
        closer = dist[:, c] < best
        lab[closer] = c
        np.minimum(best, dist[:, c], out=best)
    return lab


def _sq_distances(z, centres) -> np.ndarray:
    """(n, c) squared distances Σ_j (z_j − centre_j)², summed over j in order (as
    ``((z[:, None] - centres[None]) ** 2).sum(-1)``) without the (n, c, p) temporary."""
    out = np.empty((z.shape[0], centres.shape[0]))
    for c in range(centres.shape[0]):
        acc = (z[:, 0] - centres[c, 0]) ** 2
        for j in range(1, z.shape[1]):
            acc += (z[:, j] - centres[c, j]) ** 2
        out[:, c] = acc
    return out


def params_from_resp(x, y, resp, var_floor=1e-10, tau=1.0, backend="numpy") -> MoEParams:
    """One exact M-step of the softmax model from responsibilities ``resp`` (n, k): experts by
    weighted least squares (an expert without weight keeps a = 0, b = mean y, ν = var y + floor),
    then the gate by Newton from zero (up to 50 steps), as
    :func:`moetheory.em.init.params_from_resp` does for a softmax spec. ``backend="numba"`` runs
    the gate's Newton steps in the Numba EM kernel's gate step
    (:func:`moetheory.kernels.numba_em.gate_newton`; the same iterates to rounding, a few times
    faster on large data).

    Examples
    --------
    >>> x = np.array([[-1.0], [-0.5], [0.5], [1.0]]); y = np.array([-1.0, -0.4, 0.6, 1.0])
    >>> resp = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    >>> p = params_from_resp(x, y, resp)
    >>> p.a.shape, p.b.shape, float(p.beta0[-1])
    ((2, 1), (2,), 0.0)
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n, d = x.shape
    k = resp.shape[1]
    xt = design_t(x)
    r = np.ascontiguousarray(np.asarray(resp, dtype=np.float64).T)  # (k, n)
    weight = r.sum(axis=1)
    gram = (r[:, None, :] * xt) @ xt.T  # (k, p, p)
    rhs = (r[:, None, :] * xt) @ y  # (k, p)
    scale = np.trace(gram, axis1=1, axis2=2)[:, None, None] / (d + 1)
    coef = np.linalg.solve(gram + 1e-13 * scale * np.eye(d + 1), rhs[..., None])[..., 0]
    alive = weight > MIN_EXPERT_WEIGHT
    a = np.where(alive[:, None], coef[:, :d], 0.0)
    b = np.where(alive, coef[:, d], np.mean(y))
    resid = y - (a @ xt[:d] + b[:, None])  # (k, n)
    var_raw = np.where(alive, (r * resid * resid).sum(1) / np.where(alive, weight, 1.0),
                       np.var(y) + var_floor)
    var = np.maximum(var_raw, var_floor)
    beta0, beta1 = gate_from_zero(x, xt, r, backend)
    return MoEParams(beta0, beta1, a, b, var, np.asarray(tau, dtype=np.float64))


def gate_from_zero(x, xt, r, backend="numpy"):
    """(β_0 (k,), β_1 (k, d)): the softmax gate fitted to responsibilities ``r`` (k, n) by
    Newton from zero (up to :data:`START_NEWTON` steps, relative gain 1e-12), the gate M-step
    of a start (:meth:`moetheory.gates.softmax.SoftmaxGate.m_step`'s defaults); ``xt`` is
    ``design_t(x)`` (d + 1, n).

    Examples
    --------
    >>> x = np.array([[-1.0], [-0.5], [0.5], [1.0]])
    >>> r = np.array([[0.9, 0.8, 0.2, 0.1], [0.1, 0.2, 0.8, 0.9]])    # (k, n)
    >>> beta0, beta1 = gate_from_zero(x, design_t(x), r)
    >>> beta1.shape, float(beta1[-1, 0]), bool(beta1[0, 0] < 0)       # the last gate is pinned
    ((2, 1), 0.0, True)
    """
    k, n = r.shape
    d = x.shape[1]
    beta0, beta1 = np.zeros(k), np.zeros((k, d))
    if k == 1:
        return beta0, beta1
    if backend == "numba":
        from moetheory.kernels.numba_em import gate_newton, gate_qd

        rn = np.ascontiguousarray(r.T)
        w = rn.sum(axis=1)
        q, grad, info = gate_qd(x, w, rn, beta0, beta1, 1)
        return gate_newton(x, w, rn, beta0, beta1, q, grad, info, START_NEWTON, 1e-12, 1,
                           np.zeros(2, np.int64))
    w = r.sum(axis=0)
    logg, g = _log_softmax(np.zeros((k, n)))
    return _gate_step(xt, w, r, beta0, beta1, gate_objective(r, logg), g,
                      max_newton=START_NEWTON, newton_tol=1e-12, stats=np.zeros(2, np.int64))


def lines_start(key, x, y, k: int, weights=None, var_floor=1e-10, tau=1.0,
                backend="numpy") -> MoEParams:
    """The start of :func:`moetheory.em.init.lines_init` for ``key`` in NumPy: k lines through
    d + 1 rows each, drawn without replacement among the rows of positive weight (the Gumbel
    top-k draw of ``jax.random.choice``, its Gumbel numbers drawn at a bucketed length: one
    compiled program serves many n), each with the variance of its closest 1/(2k) of the
    points, and the gate fitted to the lines' posterior (:func:`gate_from_zero`).

    Parameters
    ----------
    key : JAX key; x : (n, d); y : (n,); k : experts; weights : (n,), optional
    var_floor, tau : the floor added to the variances; the start's temperature
    backend : {"numpy", "numba"}, who runs the gate's Newton steps

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> from moetheory.em.init import lines_init
    >>> from moetheory.spec import MoESpec
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-1, 1, (60, 1)); y = np.abs(x[:, 0]) + 0.1 * rng.standard_normal(60)
    >>> key = jax.random.key(2)
    >>> got, want = lines_start(key, x, y, 2), lines_init(key, MoESpec(2, 1), jnp.asarray(x), jnp.asarray(y))
    >>> bool(np.allclose(got.a, want.a, rtol=1e-12, atol=1e-12))
    True
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    n, d = x.shape
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    live = w > 0
    n_live = live.sum()
    xt_rows = np.concatenate([x, np.ones((n, 1))], axis=1)  # (n, d + 1): slopes, intercept
    with np.errstate(divide="ignore"):
        logp = np.log(live / float(n_live))
    gumbel = np.asarray(jax.random.gumbel(key, (_bucket(n, MIN_DRAW, power=True),),
                                          dtype=jnp.float64))[:n]
    rows = np.argsort(-(gumbel + logp), kind="stable")[: k * (d + 1)].reshape(k, d + 1)
    pts = xt_rows[rows]  # (k, d + 1, d + 1)
    eps = np.finfo(np.float64).eps
    coef = np.einsum("kij,kj->ki", np.linalg.pinv(pts, rcond=10 * (d + 1) * eps), y[rows])
    resid2 = (y[:, None] - xt_rows @ coef.T) ** 2  # (n, k)
    ordered = np.sort(np.where(live[:, None], resid2, np.inf), axis=0)
    q = ordered[int(np.floor((float(n_live) - 1) / (2 * k)))]
    mean = (w * y).sum() / w.sum()
    var_y = (w * (y - mean) ** 2).sum() / w.sum()
    var = np.maximum(q, 1e-6 * var_y) + var_floor
    log_phi = -0.5 * np.log(2 * np.pi * var) - 0.5 * resid2 / var
    resp = np.exp(log_phi - log_phi.max(axis=1, keepdims=True))
    resp = resp / resp.sum(axis=1, keepdims=True) * w[:, None]
    beta0, beta1 = gate_from_zero(x, design_t(x), np.ascontiguousarray(resp.T), backend)
    return MoEParams(beta0, beta1, coef[:, :d], coef[:, d], var, np.asarray(tau, dtype=np.float64))


def data_starts(keys, x, y, kinds, k: int, weights=None, var_floor=1e-10, tau=1.0,
                backend="numpy") -> list:
    """Softmax starts of the data-driven ``kinds``, one per key: for "kmeans" and "random" a
    partition, then :func:`params_from_resp` (a partition times the weights); for "lines"
    :func:`lines_start`. NumPy MoEParams.

    Parameters
    ----------
    keys : (S,) JAX keys, one per start; x : (n, d); y, weights : (n,)
    kinds : S strings in {"kmeans", "random", "lines"} (:func:`lines_start`); k : experts
    backend : {"numpy", "numba"}, who runs the gate's Newton steps (:func:`params_from_resp`)

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-1, 1, (80, 1)); y = np.abs(x[:, 0]) + 0.1 * rng.standard_normal(80)
    >>> starts = data_starts(jax.random.split(jax.random.key(0), 2), x, y, ("kmeans", "random"), 2)
    >>> [s.a.shape for s in starts]
    [(2, 1), (2, 1)]
    """
    x = np.ascontiguousarray(x, dtype=np.float64)
    y = np.ascontiguousarray(y, dtype=np.float64)
    n = x.shape[0]
    z = standardise_xy(x, y, weights) if "kmeans" in kinds else None
    out = []
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        for key, kind in zip(keys, kinds):
            if kind == "lines":
                out.append(lines_start(key, x, y, k, weights, var_floor, tau, backend))
                continue
            if kind == "kmeans":
                lab = kmeans_labels(z, k, *seed_draws(key, n, k), backend=backend)
            elif kind == "random":
                lab = random_labels(key, n, k)
            else:
                raise ValueError(f"kind must be 'random', 'kmeans' or 'lines'; got {kind!r}")
            resp = np.eye(k)[lab]
            if weights is not None:
                resp = resp * np.asarray(weights, dtype=np.float64)[:, None]
            out.append(params_from_resp(x, y, resp, var_floor, tau, backend))
    return out
