"""Direct-likelihood tools: free-parameter layout, information matrices, standard errors.

The free parameters of a fitted model exclude what normalisation pins (the last expert's gate
for softmax/top-K/temperature, the last expert's bias for the activation gate). Inference is on
the natural scale (variances, not log-variances), like statsmodels reports coefficients.
"""
from __future__ import annotations

import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from moetheory.model import log_density
from moetheory.params import MoEParams
from moetheory.spec import MoESpec


class SingularInformationWarning(UserWarning):
    """The information matrix is singular or ill-conditioned (e.g. an over-fitted model)."""


COV_TYPES = ("oim", "opg", "sandwich")


def free_layout(spec: MoESpec) -> list[tuple[str, tuple, str]]:
    """The free parameters as (field, index, label) triples, in a fixed order.

    Order: gate of each non-reference expert (slopes, then bias), then each expert's
    slopes, intercept and variance, then τ if estimated. Labels are 1-based like flexmix/R.
    """
    k, d = spec.n_experts, spec.dim
    layout = []
    gate_slopes_all = spec.gate == "activation" and spec.activation != "identity"
    for i in range(k):
        if i < k - 1 or gate_slopes_all:
            layout += [("beta1", (i, j), f"gate{i + 1}:x{j + 1}") for j in range(d)]
        if i < k - 1:
            layout.append(("beta0", (i,), f"gate{i + 1}:const"))
    for i in range(k):
        layout += [("a", (i, j), f"expert{i + 1}:x{j + 1}") for j in range(d)]
        layout.append(("b", (i,), f"expert{i + 1}:const"))
        layout.append(("var", (i,), f"expert{i + 1}:var"))
    if spec.estimates_tau and spec.gate == "activation":
        layout.append(("tau", (), "tau"))
    return layout


def param_names(spec: MoESpec) -> list[str]:
    """Labels of the free parameters (see :func:`free_layout`)."""
    return [lab for _, _, lab in free_layout(spec)]


def pack(spec: MoESpec, params: MoEParams) -> jnp.ndarray:
    """Free parameters as a flat vector (p,)."""
    return jnp.stack([jnp.asarray(getattr(params, f))[idx] for f, idx, _ in free_layout(spec)])


def unpack(spec: MoESpec, theta, template: MoEParams) -> MoEParams:
    """Inverse of :func:`pack`: ``template`` supplies the pinned values."""
    fields = {f: jnp.asarray(v) for f, v in template._asdict().items()}
    for t, (f, idx, _) in enumerate(free_layout(spec)):
        fields[f] = fields[f].at[idx].set(theta[t])
    return MoEParams(**fields)


@partial(jax.jit, static_argnums=0)
def _derivatives(spec, params, x, y):
    theta = pack(spec, params)
    per_obs = lambda th: log_density(spec, unpack(spec, th, params), x, y)  # noqa: E731
    total = lambda th: per_obs(th).sum()  # noqa: E731
    return jax.hessian(total)(theta), jax.jacfwd(per_obs)(theta)


def information(spec: MoESpec, params: MoEParams, x, y):
    """Observed information −∇²ℓ (p, p) and per-observation scores (n, p)."""
    hess, scores = _derivatives(spec, jax.tree.map(jnp.asarray, params), jnp.asarray(x), jnp.asarray(y))
    return -np.asarray(hess), np.asarray(scores)


def _inverse(mat, what):
    """Inverse of a symmetric information matrix; pseudo-inverse with a warning if singular."""
    mat = 0.5 * (mat + mat.T)
    eig = np.linalg.eigvalsh(mat)
    if not np.all(np.isfinite(eig)) or eig[0] <= 1e-10 * max(abs(eig[-1]), 1e-300):
        warnings.warn(
            f"the {what} matrix is singular or not positive definite (smallest/largest eigenvalue "
            f"{eig[0]:.3g}/{eig[-1]:.3g}), as for an over-fitted or non-identifiable model; "
            "standard errors use the Moore-Penrose pseudo-inverse and are not reliable. "
            "Try fewer experts or a fixed temperature.", SingularInformationWarning, stacklevel=3)
        return np.linalg.pinv(mat, rcond=1e-10, hermitian=True), True
    return np.linalg.inv(mat), False


def covariance(information_matrix, scores, cov_type: str = "oim"):
    """Covariance of the MLE.

    ``oim``: (−H)⁻¹; ``opg``: (SᵀS)⁻¹; ``sandwich``: (−H)⁻¹ SᵀS (−H)⁻¹ (robust to a
    misspecified density). Returns (cov (p, p), singular flag).
    """
    if cov_type not in COV_TYPES:
        raise ValueError(f"cov_type must be one of {COV_TYPES}; got {cov_type!r}")
    opg = scores.T @ scores
    if cov_type == "opg":
        return _inverse(opg, "outer-product-of-gradients")
    inv_h, singular = _inverse(information_matrix, "observed information")
    if cov_type == "oim":
        return inv_h, singular
    return inv_h @ opg @ inv_h, singular
