"""The Gaussian gate: g_i(x) ∝ π_i N(x; μ_i, Σ_i) — a Gaussian-gated mixture of linear experts.

Nguyen, Nguyen, Nguyen & Ho, "Towards Convergence Rates for Parameter Estimation in Gaussian-gated
Mixture of Experts" (AISTATS 2024, arXiv 2305.07572; official code CRPE-GMoE). The gate is the
posterior of a Gaussian mixture on the input,

    g_i(x) = π_i N(x; μ_i, Σ_i) / Σ_j π_j N(x; μ_j, Σ_j),

so the model of (x, y) is the joint mixture p(x, y) = Σ_i π_i N(x; μ_i, Σ_i) N(y; a_iᵀx + b_i, ν_i)
(the "GLLiM" form). **What is maximised**: the joint log-likelihood Σ_n log p(x_n, y_n), as the
official code does (its EM's E-step adds log N(x; c_k, Γ_k) to the responsibilities and its
M-step updates π, c, Γ in closed form). ``FitResult.loglik``, AIC and BIC are therefore joint
(they count π, μ, Σ as parameters); the responsibilities and predictions are those of p(y | x)
(the same posterior), and ``FitResult.log_density`` is log p(x, y) for this gate.

Parameters in :class:`~moetheory.params.MoEParams`: ``beta0`` = log(π_i/π_k) (the last expert the
reference, π = softmax(β_0)), ``beta1`` = μ_i (k, d), ``extra["cov"]`` = Σ_i (k, d, d), τ = 1
unused. The EM gate step is closed form (weighted proportions, means and covariances); the
polish and certificate use the generic JAX derivatives in the free coordinates (means, the lower
triangle of each Σ_i with log-variances on its diagonal, and the free β_0).

Losses: the paper's Voronoi discrepancy as its official code computes it (``discrepancies.py``),
see :func:`gmoe_loss`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from moetheory._jax import x64
from moetheory.gates.base import Gate

_LOG_2PI = math.log(2.0 * math.pi)
#: experts with less total responsibility keep their previous gate (as in the expert step)
MIN_GATE_WEIGHT = 1e-8
#: the paper's r̄(m) (Ho & Nguyen 2016, as in the official code: rbar = [0, 1, 4, 6]); m ≥ 4
#: uses the package's lower bound 7 (moetheory.losses.voronoi.RBAR_LOWER_BOUND)
GMOE_RBAR = {2: 4.0, 3: 6.0}


def log_normal(z, mu, cov):
    """log N(z_n; μ_i, Σ_i), shape (n, k), for z (n, d), μ (k, d), Σ (k, d, d) (Cholesky; NaN
    where Σ_i is not positive definite).

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax.numpy as jnp
    >>> round(float(log_normal(jnp.zeros((1, 1)), jnp.zeros((1, 1)), jnp.ones((1, 1, 1)))[0, 0]), 6)
    -0.918939
    """
    d = z.shape[-1]

    def one(m, c):
        chol = jnp.linalg.cholesky(c)
        sol = jax.scipy.linalg.solve_triangular(chol, (z - m).T, lower=True)  # (d, n)
        logdet = 2.0 * jnp.sum(jnp.log(jnp.diagonal(chol)))
        return -0.5 * (d * _LOG_2PI + logdet + jnp.sum(sol * sol, axis=0))

    return jax.vmap(one)(mu, cov).T


def _lower(d):
    return [(j, m) for j in range(d) for m in range(j + 1)]


@dataclass(frozen=True)
class GaussianGate(Gate):
    """g_i(x) = π_i N(x; μ_i, Σ_i) / Σ_j π_j N(x; μ_j, Σ_j); a joint model of (x, y).

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 1, gate="gaussian")
    >>> spec.gate_family.joint, spec.gate_family.extra_shapes(spec)
    (True, {'cov': (2, 1, 1)})
    """

    name = "gaussian"
    joint = True
    sympy_checks = ("pdes",)
    reference_note = ("Gaussian gate: beta0 = log(pi_i/pi_k) (the last expert the reference), "
                      "gate means beta1 = mu_i and covariances Sigma_i; the log-likelihood is the "
                      "joint one, sum log p(x, y); 'var' is the expert noise variance.")

    def spec_fields(self):
        return {"gate": self.name}

    # ---------------------------------------------------------------- parameters
    def extra_shapes(self, spec):
        k, d = spec.n_experts, spec.dim
        return {"cov": (k, d, d)}

    def blank(self, spec, dtype, tau=1.0):
        k, d = spec.n_experts, spec.dim
        return {"beta0": jnp.zeros(k, dtype), "beta1": jnp.zeros((k, d), dtype),
                "tau": jnp.asarray(tau, dtype),
                "cov": jnp.broadcast_to(jnp.eye(d, dtype=dtype), (k, d, d))}

    def pins(self, spec):
        return (True, False)

    def free_layout(self, spec, names):
        k, d = spec.n_experts, spec.dim
        head = []
        for i in range(k):
            head += [("beta1", (i, j), f"gate{i + 1}:mean:{names[j]}") for j in range(d)]
            for j, m in _lower(d):
                lab = (f"gate{i + 1}:var:{names[j]}" if j == m
                       else f"gate{i + 1}:cov:{names[j]},{names[m]}")
                head.append(("cov", (i, j, m), lab))
            if i < k - 1:
                head.append(("beta0", (i,), f"gate{i + 1}:logpi"))
        return head, []

    def complete(self, spec, params):
        cov = params.extra["cov"]
        xp = np if isinstance(cov, np.ndarray) else jnp  # NumPy in the polish chart
        low = xp.tril(cov)
        return params._replace(extra={**params.extra,
                                      "cov": low + xp.swapaxes(xp.tril(cov, -1), -1, -2)})

    def log_scale(self, field, index):
        return field == "cov" and index[1] == index[2]

    # ---------------------------------------------------------------- weights
    @x64
    def log_joint_weights(self, spec, params, z, mask=None):
        logpi = jax.nn.log_softmax(params.beta0, axis=-1)
        return logpi + log_normal(z, params.beta1, params.extra["cov"])

    def log_weights(self, spec, params, z, mask=None):
        return jax.nn.log_softmax(self.log_joint_weights(spec, params, z), axis=-1)

    def sample_input(self, key, spec, params, n):
        """n draws of z from the gate's mixture Σ_i π_i N(μ_i, Σ_i), shape (n, d)."""
        kz, ke = jax.random.split(key)
        lab = jax.random.categorical(kz, jax.nn.log_softmax(params.beta0), shape=(n,))
        chol = jnp.linalg.cholesky(params.extra["cov"])
        eps = jax.random.normal(ke, (n, spec.dim), dtype=params.beta1.dtype)
        return params.beta1[lab] + jnp.einsum("nab,nb->na", chol[lab], eps)

    # ---------------------------------------------------------------- EM (closed form)
    def m_step(self, spec, params, z, resp, y=None, weights=None, **options):
        """π_i = r_i/Σr, μ_i = Σ_n r_ni z_n / r_i, Σ_i = Σ_n r_ni (z_n − μ_i)(z_n − μ_i)ᵀ / r_i
        (r_i = Σ_n r_ni): the exact maximiser of Σ r log π_i N(z; μ_i, Σ_i). An expert with
        r_i ≤ 1e-8 or a covariance that is not positive definite keeps its previous mean and
        covariance."""
        r = resp.sum(0)
        alive = r > MIN_GATE_WEIGHT
        safe = jnp.where(alive, r, 1.0)
        mu = (resp.T @ z) / safe[:, None]
        diff = z[:, None, :] - mu[None]
        cov = jnp.einsum("ni,nia,nib->iab", resp, diff, diff) / safe[:, None, None]
        cov = 0.5 * (cov + jnp.swapaxes(cov, -1, -2))
        ok = alive & jnp.all(jnp.isfinite(cov), axis=(-2, -1)) & (jnp.linalg.eigvalsh(cov)[:, 0] > 0)
        mu = jnp.where(ok[:, None], mu, params.beta1)
        cov = jnp.where(ok[:, None, None], cov, params.extra["cov"])
        logpi = jnp.log(jnp.maximum(r, 1e-300))
        return params._replace(beta0=logpi - logpi[-1], beta1=mu, extra={**params.extra, "cov": cov})

    # ---------------------------------------------------------------- standardisation
    def affine_rule(self, spec):
        return "affine"

    def to_standard(self, spec, params, center, scale):
        s = np.asarray(scale, dtype=np.float64)
        mu = (np.asarray(params.beta1) - center) / s
        cov = np.asarray(params.extra["cov"]) / np.outer(s, s)
        return params._replace(beta1=mu, extra={**params.extra, "cov": cov})

    def from_standard(self, spec, params, center, scale):
        s = np.asarray(scale, dtype=np.float64)
        mu = np.asarray(params.beta1) * s + center
        cov = np.asarray(params.extra["cov"]) * np.outer(s, s)
        return params._replace(beta1=mu, extra={**params.extra, "cov": cov})

    # ---------------------------------------------------------------- summary
    def describe(self, spec):
        return "Gaussian (joint likelihood)"

    def summary_notes(self, spec, res):
        pi = np.exp(np.asarray(res.params.beta0) - np.max(res.params.beta0))
        pi = pi / pi.sum()
        return ["Gaussian gate (Gaussian-gated MoE, arXiv 2305.07572): g_i(x) = pi_i N(x; mu_i, Sigma_i)"
                " / sum_j pi_j N(x; mu_j, Sigma_j); the joint likelihood of (x, y) is maximised; "
                f"mixing proportions pi = ({', '.join(f'{v:.4g}' for v in pi)})."], []

    # ---------------------------------------------------------------- losses
    def translation(self, spec):
        return "none"

    def loss_exponents(self, spec):
        return "activation"

    def voronoi(self, spec, fitted, truth, kind, translation, coords, **kwargs):
        return gmoe_loss(fitted, truth)

    # ---------------------------------------------------------------- near-truth start
    def paper_start(self, key, truth, k, n, var_from_sd=False):
        """The official code's near-truth start (CRPE-GMoE ``init_params_GLLiM``): each fitted
        expert copies a true one (a uniformly random assignment that uses every true expert),
        π split evenly among the copies, means/slopes/intercepts + N(0, (0.005 n^-0.083)²),
        covariance diagonals and variances + |N(0, (0.0005 n^-0.25)²)|."""
        k0 = truth.beta0.shape[-1]
        ka, kc, kg, kA, kb, kv = jax.random.split(key, 6)
        d = truth.beta1.shape[-1]
        dtype = truth.beta1.dtype

        def draw(s):
            kk, _, _ = s
            kk, sub = jax.random.split(kk)
            idx = jax.random.randint(sub, (k,), 0, k0, dtype=jnp.int32)
            covered = jnp.all(jnp.bincount(idx, length=k0) > 0)
            return kk, idx, covered

        _, idx, _ = jax.lax.while_loop(lambda s: ~s[2], draw,
                                       (ka, jnp.zeros(k, jnp.int32), jnp.asarray(False)))
        counts = jnp.bincount(idx, length=k0)
        pi = jax.nn.softmax(truth.beta0)[idx] / counts[idx]
        n = jnp.asarray(n, dtype)
        sd1, sd2 = 0.005 * n ** -0.083, 0.0005 * n ** -0.25
        mu = truth.beta1[idx] + sd1 * jax.random.normal(kc, (k, d), dtype)
        jitter = jnp.abs(sd2 * jax.random.normal(kg, (k, d), dtype))
        cov = truth.extra["cov"][idx] + jax.vmap(jnp.diag)(jitter)
        a = truth.a[idx] + sd1 * jax.random.normal(kA, (k, d), dtype)
        b = truth.b[idx] + sd1 * jax.random.normal(kb, (k,), dtype)
        var = truth.var[idx] + jnp.abs(sd2 * jax.random.normal(kv, (k,), dtype))
        logpi = jnp.log(pi)
        return truth._replace(beta0=logpi - logpi[-1], beta1=mu, a=a, b=b, var=var,
                              tau=jnp.ones_like(truth.tau), extra={"cov": cov})

    # ---------------------------------------------------------------- torch
    def torch_log_weights(self, spec, tensors, x):
        import torch

        cov = tensors["cov"]
        chol = torch.linalg.cholesky(cov)
        diff = (x[:, None, :] - tensors["beta1"][None]).permute(1, 2, 0)  # (k, d, n)
        sol = torch.linalg.solve_triangular(chol, diff, upper=False)
        logdet = 2.0 * torch.log(torch.diagonal(chol, dim1=-2, dim2=-1)).sum(-1)
        d = x.shape[1]
        lognorm = -0.5 * (d * _LOG_2PI + logdet[:, None] + (sol * sol).sum(1))  # (k, n)
        joint = torch.log_softmax(tensors["beta0"], dim=-1)[None] + lognorm.T
        logw = torch.log_softmax(joint, dim=-1)
        return logw, logw.exp(), torch.ones_like(logw, dtype=torch.bool)

    # ---------------------------------------------------------------- symbolic (isotropic Σ = s I)
    def sympy_extra(self, sp):
        return {"cov": sp.Symbol("s", positive=True)}

    def sympy_weight(self, sp, x, beta1, beta0, tau, extra):
        s = extra["cov"]
        d = len(x)
        sq = sum((xi - m) ** 2 for xi, m in zip(x, beta1))
        return sp.exp(beta0) * sp.exp(-sq / (2 * s)) / (2 * sp.pi * s) ** sp.Rational(d, 2)

    def sympy_relations(self, sp, u, sym):
        """The Gaussian gate's own relations: the heat equation of its location-scale family
        (∂²u/∂μ² = 2 ∂u/∂s) and the β_1–a relation at μ = 0 (the paper's Type II setting:
        ∂u/∂a = s ∂²u/∂μ∂b holds only there)."""
        from moetheory.symbolic import _free_of, _is_zero

        x, mu, s = sym["x"][0], sym["beta1"][0], sym["extra"]["cov"]
        heat = _is_zero(sp.diff(u, mu, 2) - 2 * sp.diff(u, s), sym["all"])
        at0 = (sp.diff(u, mu, sym["b"]) / sp.diff(u, sym["a"][0])).subs(mu, 0)
        holds, ratio = _free_of(at0, [x, sym["y"]], [v for v in sym["all"] if v is not mu])
        return [("gate heat: d2u/dmu2 = 2 du/ds", "holds" if heat else "breaks", ""),
                ("beta1-a at mu = 0 (Type II): d2u/dmu db = c du/da", "holds" if holds else "breaks",
                 f"c = {ratio}" if holds else "")]

    # ---------------------------------------------------------------- NumPy oracle
    def numpy_log_joint_weights(self, spec, params, z):
        beta0 = np.asarray(params.beta0, dtype=np.float64)
        logpi = beta0 - (beta0.max() + np.log(np.exp(beta0 - beta0.max()).sum()))
        out = np.empty((z.shape[0], beta0.shape[0]))
        for i in range(beta0.shape[0]):
            cov = np.asarray(params.extra["cov"][i], dtype=np.float64)
            diff = z - np.asarray(params.beta1[i])
            sign, logdet = np.linalg.slogdet(cov)
            maha = np.einsum("na,ab,nb->n", diff, np.linalg.inv(cov), diff)
            out[:, i] = logpi[i] - 0.5 * (z.shape[1] * _LOG_2PI + logdet + maha)
        return out

    def numpy_log_weights(self, spec, params, z):
        from scipy.special import logsumexp

        lj = self.numpy_log_joint_weights(spec, params, z)
        return lj - logsumexp(lj, axis=1, keepdims=True)


def gmoe_loss(fitted, truth):
    """The Voronoi discrepancy of the Gaussian-gated MoE paper, as its official code computes it
    (CRPE-GMoE ``discrepancies.py``, ``gauss_loss_GLLiM1``/``2``).

    Atom distance D_ij = ‖Δμ‖ + ‖ΔΣ‖_F + ‖Δa‖ + |Δb| + |Δν| (a sum of norms); fitted atom i goes
    to the true atom of smallest D (ties to the lowest index). With π = softmax(β_0),

        D = Σ_{i in a one-atom cell} π_i D_ij
            + Σ_{i in a cell of m > 1 atoms} π_i (‖Δμ‖^r̄ + ‖ΔΣ‖^{r̄/2} + ‖Δa‖^e + |Δb|^r̄ + |Δν|^{r̄/2})
            + Σ_j |Σ_{i∈A_j} π_i − π*_j|,

    r̄ = r̄(m) (4 for m = 2, 6 for m = 3, the bound 7 for m ≥ 4) and e = 2, except e = r̄/2 in
    the cells of a true atom with μ*_j = 0 (the paper's Type II setting). The official code reads
    the cell size by position in ``np.unique``, which is the cell of atom j only when every cell is
    non-empty; we use the cell size of atom j (the same whenever the official code is right).

    Parameters
    ----------
    fitted, truth : MoEParams with ``extra["cov"]`` (k, d, d) / (k*, d, d), unbatched

    Returns
    -------
    moetheory.losses.voronoi.LossResult (t0 = 0, t1 = 0: no translation)

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> from moetheory.params import MoEParams
    >>> t = MoEParams.create([0., 0.], [[-1.], [1.]], [[1.], [-1.]], [0., 1.], [.1, .1],
    ...                      extra={"cov": [[[1.]], [[1.]]]})
    >>> float(gmoe_loss(t, t).value)
    0.0
    """
    from moetheory.losses.voronoi import RBAR_LOWER_BOUND, LossResult

    f, t = fitted, truth
    k, k0 = f.beta0.shape[-1], t.beta0.shape[-1]
    pf = jax.nn.softmax(jnp.asarray(f.beta0))
    pt = jax.nn.softmax(jnp.asarray(t.beta0))
    dmu = jnp.linalg.norm(f.beta1[:, None, :] - t.beta1[None], axis=-1)
    dcov = jnp.sqrt(jnp.sum((f.extra["cov"][:, None] - t.extra["cov"][None]) ** 2, axis=(-2, -1)))
    da = jnp.linalg.norm(f.a[:, None, :] - t.a[None], axis=-1)
    db = jnp.abs(f.b[:, None] - t.b[None])
    dv = jnp.abs(f.var[:, None] - t.var[None])
    dist = dmu + dcov + da + db + dv
    assign = jnp.argmin(dist, axis=1)
    onehot = assign[:, None] == jnp.arange(k0)[None, :]
    size = jnp.sum(onehot, axis=0)
    m = size[assign]
    table = jnp.asarray([1.0, 1.0] + [GMOE_RBAR.get(j, RBAR_LOWER_BOUND) for j in range(2, k + 1)])
    r = table[m]
    rows = jnp.arange(k)
    sel = lambda mat: mat[rows, assign]  # noqa: E731
    zero_mean = jnp.all(t.beta1 == 0.0, axis=-1)[assign]
    e_a = jnp.where(zero_mean, r / 2.0, 2.0)
    multi = (sel(dmu) ** r + sel(dcov) ** (r / 2.0) + sel(da) ** e_a + sel(db) ** r
             + sel(dv) ** (r / 2.0))
    term = jnp.where(m > 1, multi, sel(dist))
    weight = jnp.sum(jnp.where(onehot, pf[:, None], 0.0), axis=0)
    value = jnp.sum(pf * term) + jnp.sum(jnp.abs(weight - pt))
    finite = jnp.all(jnp.asarray([jnp.all(jnp.isfinite(v)) for v in jax.tree.leaves((f, t))]))
    value = jnp.where(finite, value, jnp.nan)
    bound_m = jnp.max(jnp.where(size >= 4, size, 0))
    zero = jnp.zeros((), jnp.asarray(0).dtype)
    return LossResult(value, jnp.zeros(()), jnp.zeros(f.beta1.shape[-1]), assign, size, zero,
                      bound_m.astype(zero.dtype))
