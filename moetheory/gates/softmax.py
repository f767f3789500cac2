"""The softmax gate g_i(x) = softmax(β_1ᵀx + β_0)_i (DESIGN.md §2.2), and its Newton/IRLS step.

Identifiable up to a common shift (t_0, t_1) of (β_0, β_1): estimators pin the last expert's gate
(reference category), losses take the infimum over the shift. The fused Numba kernels implement
this gate (:attr:`SoftmaxGate.numba`).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from moetheory._jax import x64
from moetheory.gates.base import (Gate, linear_logit_from_standard, linear_logit_to_standard,
                                  step_slopes_linear)


def _softmax_pack(params):
    """Free gate parameters of the pinned softmax: θ (k-1, d+1) = [β_1, β_0] of experts 0..k-2."""
    return jnp.concatenate([params.beta1[:-1], params.beta0[:-1, None]], axis=1)


def _softmax_unpack(params, theta):
    d = params.beta1.shape[1]
    zero = jnp.zeros((1, d + 1), theta.dtype)
    full = jnp.concatenate([theta, zero], axis=0)
    return params._replace(beta1=full[:, :d], beta0=full[:, d])


def softmax_gate_m_step(spec, params, x, resp, max_newton=50, newton_tol=1e-12, mask=None,
                        max_halvings=40):
    """Weighted multinomial-logit M-step by Newton/IRLS with step-halving (last expert pinned).

    Warm-started at the current gate; each Newton step is halved until the objective does not
    decrease (at most ``max_halvings`` halvings, after which the step is rejected and the loop
    stops). Stops after ``max_newton`` steps or when the objective improves by less than
    ``newton_tol·(1 + |Q|)``.

    Parameters
    ----------
    spec : MoESpec
    params : MoEParams, the current gate (``beta0`` (k,), ``beta1`` (k, d)) is the warm start
    x : array (n, d); resp : array (n, k)
    max_newton : int, maximum Newton steps
    newton_tol : float, relative improvement below which the loop stops
    max_halvings : int, halvings of a step before it is rejected
    mask : bool array (n, k), optional
        Active sets held fixed: the objective's softmax runs over each row's active experts
        only (the top-K gate's restricted step). Its gradient and information keep the softmax
        form with the inactive probabilities 0, so the same closed-form Newton step serves.

    Returns
    -------
    params : MoEParams with new ``beta0``, ``beta1`` (last expert's gate exactly zero)

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax.numpy as jnp
    >>> from moetheory.gates.base import gate_objective
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([0., 0.], [[0.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> x = jnp.array([[-1.0], [0.0], [1.0]]); y = jnp.array([-1.0, 0.0, 1.0])
    >>> resp = jnp.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    >>> new = softmax_gate_m_step(spec, p, x, resp)
    >>> new.beta0.shape, new.beta1.shape, float(new.beta0[-1]), float(new.beta1[-1, 0])
    ((2,), (2, 1), 0.0, 0.0)
    >>> bool(gate_objective(spec, new, x, resp) >= gate_objective(spec, p, x, resp))
    True
    """
    params = params._replace(beta0=params.beta0 - params.beta0[-1],
                             beta1=params.beta1 - params.beta1[-1])
    n, d = x.shape
    k = spec.n_experts
    if k == 1:
        return params
    xt = jnp.concatenate([x, jnp.ones((n, 1), x.dtype)], axis=1)
    m = (k - 1) * (d + 1)
    rsum = resp.sum(-1)  # observation weights (1, or 0 for padded rows)

    def objective(theta):
        h = jnp.concatenate([xt @ theta.T, jnp.zeros((n, 1), x.dtype)], axis=1)
        if mask is not None:
            h = jnp.where(mask, h, -jnp.inf)
        logp = jax.nn.log_softmax(h, axis=-1)
        return jnp.where(resp > 0, resp * logp, 0.0).sum(), logp

    def newton_direction(theta, logp):
        p = jnp.exp(logp)
        grad = ((resp - rsum[:, None] * p)[:, :-1]).T @ xt  # (k-1, d+1)
        pk = p[:, :-1] * rsum[:, None]
        w = jnp.einsum("ni,ij->nij", pk, jnp.eye(k - 1, dtype=x.dtype)) - jnp.einsum(
            "ni,nj->nij", pk, p[:, :-1])
        info = jnp.einsum("nij,na,nb->iajb", w, xt, xt).reshape(m, m)
        ridge = 1e-12 * (1.0 + jnp.trace(info) / m)
        step = jnp.linalg.solve(info + ridge * jnp.eye(m, dtype=x.dtype), grad.reshape(m))
        return step.reshape(k - 1, d + 1)

    def halving(theta, q, logp, step):
        # Carries the candidate's log-probabilities so the accepted point is not re-evaluated.
        def cond(s):
            return (~s[4]) & (s[5] < max_halvings)

        def body(s):
            alpha, _, _, _, _, tries = s
            cand = theta + alpha * step
            qc, lpc = objective(cand)
            ok = jnp.isfinite(qc) & (qc >= q)
            return alpha * 0.5, cand, qc, lpc, ok, tries + 1

        init = (jnp.asarray(1.0, x.dtype), theta, q, logp, jnp.asarray(False), 0)
        _, cand, qc, lpc, ok, _ = jax.lax.while_loop(cond, body, init)
        return (jnp.where(ok, cand, theta), jnp.where(ok, qc, q), jnp.where(ok, lpc, logp), ok)

    def cond(s):
        _, _, _, it, go = s
        return go & (it < max_newton)

    def body(s):
        theta, q, logp, it, _ = s
        step = newton_direction(theta, logp)
        theta_new, q_new, logp_new, ok = halving(theta, q, logp, step)
        go = ok & (q_new - q > newton_tol * (1.0 + jnp.abs(q)))
        return theta_new, q_new, logp_new, it + 1, go

    theta0 = _softmax_pack(params)
    q0, logp0 = objective(theta0)
    theta, *_ = jax.lax.while_loop(cond, body, (theta0, q0, logp0, 0, jnp.asarray(True)))
    return _softmax_unpack(params, theta)


@dataclass(frozen=True)
class SoftmaxGate(Gate):
    """g_i(x) = softmax(β_1ᵀx + β_0)_i over all k experts.

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([0., 0.], [[1.], [0.]], [[0.], [0.]], [0., 0.], [1., 1.])
    >>> np.exp(np.asarray(spec.gate_family.log_weights(spec, p, np.zeros((1, 1))))).tolist()
    [[0.5, 0.5]]
    """

    name = "softmax"
    numba = True
    column_selection = True
    sympy_checks = ("pdes", "translation", "dependencies")
    reference_note = ("The last expert's gate is the reference (pinned at zero); 'var' is the "
                      "expert noise variance.")

    def softmax_of_linear(self, spec) -> bool:
        return True

    def spec_fields(self):
        return {"gate": self.name}

    # ---------------------------------------------------------------- weights
    @x64
    def logits(self, spec, params, z):
        """β_1ᵀz + β_0, shape (n, k)."""
        return z @ params.beta1.T + params.beta0

    def log_weights(self, spec, params, z, mask=None):
        return jax.nn.log_softmax(self.logits(spec, params, z), axis=-1)

    # ---------------------------------------------------------------- identifiability
    def pins(self, spec):
        return (True, True)

    def translation(self, spec):
        return "infimum"

    # ---------------------------------------------------------------- EM
    def m_step(self, spec, params, z, resp, y=None, weights=None, max_newton=50, newton_tol=1e-12,
               **options):
        return softmax_gate_m_step(spec, params, z, resp, max_newton=max_newton,
                                   newton_tol=newton_tol)

    # ---------------------------------------------------------------- standardisation
    def affine_rule(self, spec):
        return "affine"

    def to_standard(self, spec, params, center, scale):
        return linear_logit_to_standard(params, center, scale)

    def from_standard(self, spec, params, center, scale):
        return linear_logit_from_standard(params, center, scale)

    # ---------------------------------------------------------------- summary
    def step_slopes(self, spec, params, sd):
        return step_slopes_linear(spec, params, sd)

    # ---------------------------------------------------------------- torch
    def torch_logits(self, tensors, x):
        return x @ tensors["beta1"].T + tensors["beta0"]

    def torch_log_weights(self, spec, tensors, x):
        import torch

        logw = torch.nn.functional.log_softmax(self.torch_logits(tensors, x), dim=-1)
        return logw, logw.exp(), torch.ones_like(logw, dtype=torch.bool)

    # ---------------------------------------------------------------- symbolic
    def sympy_weight(self, sp, x, beta1, beta0, tau, extra):
        return sp.exp(sum(b * xi for b, xi in zip(beta1, x)) + beta0)

    # ---------------------------------------------------------------- NumPy oracle
    def numpy_logits(self, spec, params, z):
        """NumPy logits, one expert at a time (the oracle of :meth:`logits`)."""
        n, k = z.shape[0], params.beta0.shape[0]
        h = np.empty((n, k))
        for i in range(k):
            h[:, i] = z @ params.beta1[i] + params.beta0[i]
        return h

    def numpy_active_set(self, spec, params, z):
        return np.ones((z.shape[0], params.beta0.shape[0]), dtype=bool)

    def numpy_log_weights(self, spec, params, z):
        from scipy.special import logsumexp

        h = np.where(self.numpy_active_set(spec, params, z), self.numpy_logits(spec, params, z),
                     -np.inf)
        return h - logsumexp(h, axis=1, keepdims=True)
