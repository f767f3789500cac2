"""Initialisation modes (DESIGN.md §3.3): paper, perturb, random, kmeans, lines.

Every initialiser is a pure JAX function ``key -> MoEParams`` (key first), so starts can be
drawn under ``vmap``. Data-driven starts ``random`` and ``kmeans`` build a partition of the
sample, then take one exact M-step from it; ``lines`` starts each expert on the line through
d + 1 random observations (:func:`lines_init`).
"""
from __future__ import annotations

import jax
import jax.numpy as jnp

from moetheory.em.mstep import expert_m_step, gate_m_step
from moetheory.gates.base import reference_pin
from moetheory.params import MoEParams

INIT_MODES = ("paper", "perturb", "random", "kmeans", "lines")


def assign_to_truth(key, k: int, k_true: int) -> jnp.ndarray:
    """Which true expert each of k fitted experts starts from, shape (k,).

    Every true expert is used at least once, the last fitted expert starts from the last true
    expert (so the pinned reference gate matches), and the k − k* extra fitted experts are
    assigned uniformly at random among the true experts.

    Parameters
    ----------
    key : jax.random.PRNGKey
    k : int, fitted experts; k_true : int, true experts (k ≥ k_true)

    Returns
    -------
    int32 array (k,), indices into the true experts

    Examples
    --------
    >>> import jax
    >>> idx = assign_to_truth(jax.random.PRNGKey(0), 3, 2)
    >>> idx.shape, int(idx[0]), int(idx[-1])
    ((3,), 0, 1)
    """
    if k < k_true:
        raise ValueError(f"the fitted model needs at least as many experts as the truth; got k={k} < k*={k_true}")
    base = jnp.arange(k_true - 1)
    extra = jax.random.randint(key, (k - k_true,), 0, k_true)
    return jnp.concatenate([base, extra, jnp.array([k_true - 1])]).astype(jnp.int32)


def _near_truth(key, truth: MoEParams, k: int, gate_sd, expert_sd, var_noise_sd, var_from_sd, spec=None):
    ka, kg1, kg0, ke1, ke0, kv = jax.random.split(key, 6)
    idx = assign_to_truth(ka, k, truth.beta0.shape[0])
    t = reference_pin(truth) if spec is None else spec.gate_family.pin(spec, truth)
    d = t.beta1.shape[1]
    dtype = t.beta1.dtype
    noise = lambda kk, shape, sd: sd * jax.random.normal(kk, shape, dtype=dtype)  # noqa: E731
    beta1 = t.beta1[idx] + noise(kg1, (k, d), gate_sd)
    beta0 = t.beta0[idx] + noise(kg0, (k,), gate_sd)
    a = t.a[idx] + noise(ke1, (k, d), expert_sd)
    b = t.b[idx] + noise(ke0, (k,), expert_sd)
    start_var = jnp.sqrt(t.var[idx]) if var_from_sd else t.var[idx]
    var = start_var + jnp.abs(noise(kv, (k,), var_noise_sd))
    # Gates without a temperature carry τ = 1 whatever the truth's τ.
    tau = t.tau if spec is None or spec.has_tau else jnp.ones_like(t.tau)
    # further gate arrays (e.g. the Gaussian gate's covariances) are copied from the assigned expert
    out = MoEParams(beta0, beta1, a, b, var, tau, {name: v[idx] for name, v in t.extra.items()})
    return reference_pin(out) if spec is None else spec.gate_family.pin(spec, out)


def paper_init(key, truth: MoEParams, k: int, n, var_from_sd: bool = False, spec=None) -> MoEParams:
    """The softmax paper's official "near truth" start, noise shrinking with n.

    Gate noise sd 0.005·n^-0.083, expert noise sd 0.05·n^-0.083, variance + |N(0, (0.005·n^-0.25)²)|.
    ``var_from_sd=True`` reproduces the official code's slip of starting the *variance* at the
    true standard deviation (off by default). ``spec`` (the fitted model's) decides which
    gate normalisation to pin (:func:`moetheory.gates.pin`); without it the softmax one. A gate
    whose paper used another official scheme supplies it (``Gate.paper_start``, e.g. the
    Gaussian gate's).

    Parameters
    ----------
    key : jax.random.PRNGKey
    truth : MoEParams, the true parameters (k* experts: ``beta0`` (k*,), ``beta1`` (k*, d), ...)
    k : int, experts of the fitted model (k ≥ k*)
    n : int, the sample size (the noise shrinks with it)

    Returns
    -------
    MoEParams with k experts: ``beta1``, ``a`` (k, d); ``beta0``, ``b``, ``var`` (k,)

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> truth = MoEParams.create([0., 0.], [[1.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> start = paper_init(jax.random.PRNGKey(0), truth, 3, 100)
    >>> start.beta1.shape, start.var.shape
    ((3, 1), (3,))
    """
    if spec is not None:
        own = spec.gate_family.paper_start(key, truth, k, n, var_from_sd)
        if own is not None:  # the gate's paper has its own official near-truth scheme
            return own
    n = jnp.asarray(n, dtype=truth.var.dtype)
    shrink = n ** -0.083
    return _near_truth(key, truth, k, 0.005 * shrink, 0.05 * shrink, 0.005 * n ** -0.25, var_from_sd,
                       spec)


def perturb_init(key, truth: MoEParams, k: int, scale: float = 0.1, spec=None) -> MoEParams:
    """Near truth with n-independent noise (sd ``scale`` on gates and experts, variance
    + |N(0, (scale·ν)²)|-like noise of sd ``scale``·mean ν) — measures the estimator, not the init.

    Parameters
    ----------
    key : jax.random.PRNGKey
    truth : MoEParams, the true parameters (k* experts)
    k : int, experts of the fitted model (k ≥ k*)
    scale : float, noise sd; spec : MoESpec, optional (decides the gate normalisation)

    Returns
    -------
    MoEParams with k experts: ``beta1``, ``a`` (k, d); ``beta0``, ``b``, ``var`` (k,)

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> truth = MoEParams.create([0., 0.], [[1.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> perturb_init(jax.random.PRNGKey(0), truth, 2, scale=0.1).a.shape
    (2, 1)
    """
    return _near_truth(key, truth, k, scale, scale, scale * jnp.mean(truth.var), False, spec)


def params_from_resp(spec, x, y, resp, var_floor=1e-10, tau=1.0) -> MoEParams:
    """One exact M-step from responsibilities ``resp`` (n, k): experts, then gate from zero.

    Parameters
    ----------
    spec : MoESpec
    x : array (n, d); y : array (n,); resp : array (n, k)
    var_floor : float, minimum variance

    Returns
    -------
    MoEParams: ``beta1``, ``a`` (k, d); ``beta0``, ``b``, ``var`` (k,)

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> x = jnp.array([[-1.0], [-0.5], [0.5], [1.0]]); y = jnp.array([-1.0, -0.4, 0.6, 1.0])
    >>> resp = jnp.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    >>> p = params_from_resp(MoESpec(2, 1), x, y, resp)
    >>> p.a.shape, p.b.shape, float(p.beta0[-1])
    ((2, 1), (2,), 0.0)
    """
    k, d = spec.n_experts, spec.dim
    dtype = x.dtype
    base = _with_blank_gate(spec, dtype, tau, jnp.zeros((k, d), dtype),
                            jnp.full(k, jnp.mean(y), dtype),
                            jnp.full(k, jnp.var(y) + var_floor, dtype))
    params, _ = expert_m_step(base, x, y, resp, var_floor)
    return gate_m_step(spec, params, x, resp)


def _with_blank_gate(spec, dtype, tau, a, b, var) -> MoEParams:
    """Experts (a, b, var) under the gate's arrays before its first step (``Gate.blank``)."""
    gate = spec.gate_family.blank(spec, dtype, tau)
    return MoEParams(gate.pop("beta0"), gate.pop("beta1"), a, b, var, gate.pop("tau"), gate)


def random_partition(key, n: int, k: int, dtype=jnp.float64) -> jnp.ndarray:
    """Uniformly random hard partition as one-hot responsibilities (n, k).

    Parameters
    ----------
    key : jax.random.PRNGKey
    n : int, observations; k : int, experts
    dtype : the output's dtype

    Examples
    --------
    >>> import jax
    >>> r = random_partition(jax.random.PRNGKey(0), 4, 2)
    >>> r.shape, r.sum(1).tolist()
    ((4, 2), [1.0, 1.0, 1.0, 1.0])
    """
    return jax.nn.one_hot(jax.random.randint(key, (n,), 0, k), k, dtype=dtype)


def kmeans_labels(key, z, k: int, n_iter: int = 25) -> jnp.ndarray:
    """Lloyd's k-means with k-means++ seeding on the rows of z (n, p); returns one-hot (n, k).

    Written in JAX (not scipy) so that many starts run in one ``vmap``.

    Parameters
    ----------
    key : jax.random.PRNGKey
    z : array (n, p), the points
    k : int, clusters; n_iter : int, Lloyd iterations

    Returns
    -------
    array (n, k), one-hot cluster labels

    Examples
    --------
    >>> import jax
    >>> import jax.numpy as jnp
    >>> z = jnp.array([[0.0], [0.1], [5.0], [5.1]])
    >>> lab = kmeans_labels(jax.random.PRNGKey(0), z, 2)
    >>> lab.shape, lab.sum(0).tolist(), bool((lab[0] == lab[1]).all())
    ((4, 2), [2.0, 2.0], True)
    """
    n = z.shape[0]

    def seed_step(carry, kk):
        centres, count = carry
        d2 = jnp.min(jnp.where(jnp.arange(k)[None, :] < count,
                               ((z[:, None, :] - centres[None]) ** 2).sum(-1), jnp.inf), axis=1)
        prob = d2 / jnp.maximum(d2.sum(), 1e-300)
        pick = jax.random.choice(kk, n, p=prob)
        return (centres.at[count].set(z[pick]), count + 1), None

    k0, krest = jax.random.split(key)
    centres = jnp.zeros((k, z.shape[1]), z.dtype).at[0].set(z[jax.random.randint(k0, (), 0, n)])
    (centres, _), _ = jax.lax.scan(seed_step, (centres, 1), jax.random.split(krest, k - 1))

    def lloyd(centres, _):
        lab = jnp.argmin(((z[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
        onehot = jax.nn.one_hot(lab, k, dtype=z.dtype)
        cnt = onehot.sum(0)
        new = (onehot.T @ z) / jnp.maximum(cnt, 1.0)[:, None]
        return jnp.where(cnt[:, None] > 0, new, centres), None

    centres, _ = jax.lax.scan(lloyd, centres, None, length=n_iter)
    lab = jnp.argmin(((z[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
    return jax.nn.one_hot(lab, k, dtype=z.dtype)


def standardise_xy(x, y, weights=None):
    """Columns of (x, y) centred and scaled to unit sd, shape (n, d+1) (for k-means).

    Rows with weight 0 (padding) take no part in the mean and sd, and are replaced by the
    first row so that they cannot form a cluster of their own.

    Parameters
    ----------
    x : array (n, d); y : array (n,); weights : array (n,), optional

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[-1.0], [-0.5], [0.5], [1.0]]); y = jnp.array([-1.0, -0.4, 0.6, 1.0])
    >>> z = standardise_xy(x, y)
    >>> z.shape, bool(jnp.allclose(z.std(0), 1.0)), bool(jnp.allclose(z.mean(0), 0.0))
    ((4, 2), True, True)
    """
    z = jnp.concatenate([x, y[:, None]], axis=1)
    w = jnp.ones(z.shape[0], z.dtype) if weights is None else (weights > 0).astype(z.dtype)
    mean = (w[:, None] * z).sum(0) / w.sum()
    sd = jnp.sqrt((w[:, None] * (z - mean) ** 2).sum(0) / w.sum())
    z = (z - mean) / jnp.where(sd > 0, sd, 1.0)
    return jnp.where(w[:, None] > 0, z, z[0])


def data_partition(key, x, y, k: int, kind: str, weights=None) -> jnp.ndarray:
    """Responsibilities (n, k) of a data-driven start: ``kind`` in {"random", "kmeans"}, a
    one-hot partition times the observation weights (0 on padded rows).

    Parameters
    ----------
    key : jax.random.PRNGKey
    x : array (n, d); y : array (n,)
    k : int, experts; kind : {"random", "kmeans"}
    weights : array (n,), optional observation weights

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax
    >>> import jax.numpy as jnp
    >>> x = jnp.array([[-1.0], [-0.5], [0.5], [1.0]]); y = jnp.array([-1.0, -0.4, 0.6, 1.0])
    >>> data_partition(jax.random.PRNGKey(0), x, y, 2, "random").shape
    (4, 2)
    """
    if kind == "random":
        resp = random_partition(key, x.shape[0], k, x.dtype)
    elif kind == "kmeans":
        resp = kmeans_labels(key, standardise_xy(x, y, weights), k)
    else:
        raise ValueError(f"kind must be 'random' or 'kmeans'; got {kind!r}")
    return resp if weights is None else resp * weights[:, None]


def lines_init(key, spec, x, y, weights=None, var_floor=1e-10, tau=1.0) -> MoEParams:
    """A ``lines`` start: expert i on the hyperplane through d + 1 distinct random observations.

    Random minimal subsets are the elemental sets of robust regression (least median of
    squares, Rousseeuw 1984): an expert whose d + 1 points belong to one regime starts on that
    regime's line, however thin the regime is and however it interleaves with the others, where
    a partition-based start averages regimes. Each expert's variance starts at the 1/(2k)
    quantile of the squared residuals from its line (the spread of the share of the data that
    lies closest to it), at least 1e-6·Var(y); the gate is fitted to the posterior of these
    experts under equal weights (one gate M-step from zero).

    Parameters
    ----------
    key : jax.random.PRNGKey
    spec : MoESpec
    x : array (n, d); y : array (n,)
    weights : array (n,), optional (rows with weight 0 are never drawn)
    var_floor : float, minimum variance; tau : float, the start's temperature

    Returns
    -------
    MoEParams: ``beta1``, ``a`` (k, d); ``beta0``, ``b``, ``var`` (k,)

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax
    >>> import jax.numpy as jnp
    >>> from moetheory.spec import MoESpec
    >>> x = jnp.linspace(-1, 1, 8)[:, None]; y = jnp.where(x[:, 0] > 0, 2.0, -1.0) * x[:, 0]
    >>> p = lines_init(jax.random.PRNGKey(0), MoESpec(2, 1), x, y)
    >>> p.a.shape, p.var.shape
    ((2, 1), (2,))
    """
    n, d = x.shape
    k = spec.n_experts
    dtype = x.dtype
    w = jnp.ones(n, dtype) if weights is None else jnp.asarray(weights, dtype)
    live = w > 0
    xt = jnp.concatenate([x, jnp.ones((n, 1), dtype)], axis=1)  # (n, d+1): slopes, intercept
    rows = jax.random.choice(key, n, (k, d + 1), replace=False, p=live / live.sum())
    # min-norm solution: a repeated x value leaves the line through the points' mean
    coef = (jnp.linalg.pinv(xt[rows]) @ y[rows][..., None])[..., 0]  # (k, d+1)
    resid2 = (y[:, None] - xt @ coef.T) ** 2  # (n, k)
    m = live.sum()
    ordered = jnp.sort(jnp.where(live[:, None], resid2, jnp.inf), axis=0)
    q = ordered[jnp.floor((m - 1) / (2 * k)).astype(jnp.int32)]  # (k,)
    mean = (w * y).sum() / w.sum()
    var_y = (w * (y - mean) ** 2).sum() / w.sum()
    var = jnp.maximum(q, 1e-6 * var_y) + var_floor
    params = _with_blank_gate(spec, dtype, tau, coef[:, :d], coef[:, d], var)
    log_phi = -0.5 * jnp.log(2 * jnp.pi * var) - 0.5 * resid2 / var
    resp = jax.nn.softmax(log_phi, axis=1) * w[:, None]
    return gate_m_step(spec, params, x, resp)
