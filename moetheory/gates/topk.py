"""The top-K sparse softmax gate (DESIGN.md §2.2) and its generalised EM step (§3.1).

Logits β_1ᵀx + β_0; the K experts with the largest *selection score* — β_1ᵀx (``select_by=
"score"``, the default and our reading of the paper, OPEN) or the full logit (``"logit"``, as
neural routers do) — are active, weights renormalised over them; ties go to the lower index.
K = k is the softmax gate (same code path, same numbers).

A fixed *selection offset* c (``select_offset``, shape (d,); not a parameter) makes the score
β_1ᵀ(x + c). It is how ``select_by="score"`` stays the same model on centred covariates: with
x̃ = (x − m)/s the logits are β_1'ᵀx̃ + β_0' (β_1' = β_1∘s, β_0' = β_0 + β_1ᵀm, as for the
softmax gate) and the score is β_1ᵀx = β_1'ᵀ(x̃ + m/s), so :meth:`TopKGate.standard_gate` carries
c = m/s and :func:`moetheory.fit` centres x for every selection rule. The default (no offset)
is the paper's model.

Gate step (``method``):

``"gem"`` (default) — a generalised EM step. The active sets are held at those of the E-step;
    the restricted softmax objective Σ r log g(x; β | held sets) is maximised by Newton steps
    with step-halving (from the current gate); then the move from the current gate towards that
    optimum is halved until the *observed* log-likelihood — with the active sets recomputed at the
    candidate — is not lower than at the current gate. If no halving is accepted the gate is kept.
``"direct"`` — direct maximisation of the observed log-likelihood over the gate (experts fixed at
    their exact M-step values): Newton steps on the almost-everywhere derivatives of ℓ (the sets
    are locally constant), eigenvalue-modified to ascent directions, with step-halving on ℓ.

Called without ``y`` (a data-driven start fitting a gate to a partition), the step fits the
dense softmax gate to the responsibilities (a start: no monotonicity is owed).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import jax
import jax.numpy as jnp
import numpy as np

from moetheory._jax import x64
from moetheory.gates.newton import monotone_newton
from moetheory.gates.softmax import SoftmaxGate, softmax_gate_m_step

TOPK_METHODS = ("gem", "direct")
SELECT_BY = ("score", "logit")


def _pack(params):
    return jnp.concatenate([params.beta1[:-1], params.beta0[:-1, None]], axis=1).reshape(-1)


def _unpack(params, theta):
    k, d = params.beta1.shape
    full = jnp.concatenate([theta.reshape(k - 1, d + 1), jnp.zeros((1, d + 1), theta.dtype)], axis=0)
    return params._replace(beta1=full[:, :d], beta0=full[:, d])


def _pin(params):
    return params._replace(beta0=params.beta0 - params.beta0[-1],
                           beta1=params.beta1 - params.beta1[-1])


def _observed_loglik_fn(spec, params, x, y, weights):
    """θ ↦ ℓ(experts of ``params``, gate θ), the active sets recomputed at θ."""
    from moetheory.model import log_expert_density

    led = log_expert_density(spec, params, x, y)  # the experts are fixed during the gate step
    gate = spec.gate_family

    def loglik(theta):
        logg = gate.log_weights(spec, _unpack(params, theta), x)
        ld = jax.scipy.special.logsumexp(logg + led, axis=-1)
        return ld.sum() if weights is None else (weights * ld).sum()

    return loglik


def topk_gate_m_step(spec, params, x, resp, y=None, weights=None, method="gem", max_newton=50,
                     newton_tol=1e-12, max_halvings=40):
    """Gate step of the top-K sparse softmax gate (see the module docstring).

    Parameters
    ----------
    spec : MoESpec with ``gate="topk"``
    params : MoEParams, the current parameters (``beta0`` (k,), ``beta1`` (k, d))
    x : array (n, d); resp : array (n, k)
    y, weights : array (n,) each, the responses and observation weights (given by ``run_em``);
        without ``y`` the step is an initialisation step and fits the dense softmax gate to
        ``resp``.
    method : {"gem", "direct"}
    max_newton, newton_tol, max_halvings : the Newton loop's limits

    Returns
    -------
    params : MoEParams with a new gate (last expert's gate exactly zero)

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax.numpy as jnp
    >>> from moetheory.em.estep import e_step
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(3, 1, gate="topk", top_k=2)
    >>> p = MoEParams.create([0., 0., 0.], [[1.], [0.], [-1.]], [[1.], [-1.], [0.]], [0., 0., 0.],
    ...                      [1., 1., 1.])
    >>> x = jnp.array([[-1.0], [0.0], [1.0]]); y = jnp.array([-1.0, 0.0, 1.0])
    >>> resp, _ = e_step(spec, p, x, y)
    >>> new = topk_gate_m_step(spec, p, x, resp, y=y)
    >>> new.beta1.shape, float(new.beta0[-1])
    ((3, 1), 0.0)
    """
    if not spec.gate_family.sparse(spec) or y is None:
        # K = k: the top-K gate *is* the softmax gate; same code path, same numbers. Without y:
        # a start (see the module docstring).
        return softmax_gate_m_step(spec, params, x, resp, max_newton=max_newton, newton_tol=newton_tol)
    if method not in TOPK_METHODS:
        raise ValueError(f"method must be one of {TOPK_METHODS} for the top-K gate; got {method!r}")
    params = _pin(params)
    theta0 = _pack(params)
    loglik = _observed_loglik_fn(spec, params, x, y, weights)
    if method == "direct":
        theta, _ = monotone_newton(loglik, theta0, max_newton, newton_tol, max_halvings)
        return _unpack(params, theta)

    held = spec.gate_family.active_mask(spec, params, x)  # the E-step's sets (gate not moved yet)

    restricted = softmax_gate_m_step(spec, params, x, resp, max_newton=max_newton,
                                     newton_tol=newton_tol, mask=held, max_halvings=max_halvings)
    theta_star = _pack(restricted)
    ll0 = loglik(theta0)
    step = theta_star - theta0

    def cond(s):
        _, _, accepted, tries = s
        return (~accepted) & (tries < max_halvings)

    def body(s):
        alpha, _, _, tries = s
        cand = theta0 + alpha * step
        llc = loglik(cand)
        return alpha * 0.5, cand, jnp.isfinite(llc) & (llc >= ll0), tries + 1

    init = (jnp.asarray(1.0, x.dtype), theta0, jnp.asarray(False), 0)
    _, cand, ok, _ = jax.lax.while_loop(cond, body, init)
    return _unpack(params, jnp.where(ok, cand, theta0))


@dataclass(frozen=True)
class TopKGate(SoftmaxGate):
    """The K experts with the largest selection score, softmax weights renormalised over them.

    Parameters
    ----------
    top_k : int, K
    select_by : {"score", "logit"}
    select_offset : tuple of d floats, optional
        A fixed c in the score β_1ᵀ(x + c) (``select_by="score"`` only; empty: c = 0). Not a
        parameter: :meth:`standard_gate` sets it so that the gate on centred covariates is the
        same model (module docstring). A gate with an offset is held by its spec as an object.

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(3, 1, gate="topk", top_k=2)
    >>> p = MoEParams.create([0., 0., 0.], [[-1.], [0.], [1.]], [[0.]] * 3, [0.] * 3, [1.] * 3)
    >>> np.asarray(spec.gate_family.active_mask(spec, p, np.array([[2.0]]))).tolist()
    [[False, True, True]]
    """

    top_k: int = 1
    select_by: str = "score"
    select_offset: tuple = ()
    name = "topk"
    numba = False
    column_selection = False
    sympy_checks = ()  # theory pdes: the table row (a softmax on every region)
    step_options = ("max_newton", "newton_tol", "method", "max_halvings")

    def __post_init__(self):
        offset = tuple(float(c) for c in np.ravel(self.select_offset))
        if offset and self.select_by != "score":
            raise ValueError(f"select_offset applies to select_by='score' only (the logit is "
                             f"ranked as it is); got select_by={self.select_by!r}")
        if not all(np.isfinite(offset)):
            raise ValueError(f"select_offset must be finite numbers; got {offset}")
        object.__setattr__(self, "select_offset", offset)

    def softmax_of_linear(self, spec) -> bool:
        return not self.sparse(spec)  # K < k: zeros by construction, not by a step

    @classmethod
    def from_spec(cls, spec):
        if spec.top_k is None:
            raise ValueError("top_k is required for gate='topk' (an integer K in 1..n_experts)")
        if spec.top_k > spec.n_experts:
            raise ValueError(f"top_k must be in 1..n_experts={spec.n_experts}; got top_k={spec.top_k}")
        return cls(top_k=spec.top_k, select_by=spec.select_by)

    def spec_fields(self):
        if self.select_offset:  # no MoESpec field holds it: the spec keeps the object
            return None
        return {"gate": self.name, "top_k": self.top_k, "select_by": self.select_by}

    def sparse(self, spec) -> bool:
        return self.top_k < spec.n_experts

    def n_active_sets(self, spec):
        from math import comb

        return comb(spec.n_experts, self.top_k)

    # ---------------------------------------------------------------- weights
    @x64
    def selection_fields(self, spec):
        if not self.sparse(spec):
            return ()
        return ("beta1", "beta0") if self.select_by == "logit" else ("beta1",)

    def active_mask(self, spec, params, z):
        n, k = z.shape[0], spec.n_experts
        if not self.sparse(spec):
            return jnp.ones((n, k), dtype=bool)
        score = self._selection_score(z @ params.beta1.T, params.beta1, params.beta0)
        # rank_i = #{j : s_j > s_i, or s_j == s_i and j < i}: ties go to the lower index.
        idx = jnp.arange(k)
        beats = (score[:, None, :] > score[:, :, None]) | (
            (score[:, None, :] == score[:, :, None]) & (idx[None, :] < idx[:, None])[None])
        rank = beats.sum(axis=-1)
        return rank < self.top_k

    def _selection_score(self, zb, beta1, beta0, as_array=np.asarray):
        """The selection scores from zb = β_1ᵀz (n, k): zb + β_0 (``"logit"``), zb + β_1ᵀc (a
        selection offset c) or zb itself; the one rule of the JAX, NumPy and torch gates
        (``as_array`` makes c an array of ``beta1``'s library)."""
        if self.select_by == "logit":
            return zb + beta0
        if not self.select_offset:
            return zb
        if len(self.select_offset) != beta1.shape[-1]:
            raise ValueError(f"select_offset has {len(self.select_offset)} entries but the gate "
                             f"has d={beta1.shape[-1]} covariates")
        return zb + beta1 @ as_array(self.select_offset)

    def log_weights(self, spec, params, z, mask=None):
        h = self.logits(spec, params, z)
        if self.sparse(spec):
            if mask is None:
                mask = self.active_mask(spec, params, z)
            h = jnp.where(mask, h, -jnp.inf)
        return jax.nn.log_softmax(h, axis=-1)

    # ---------------------------------------------------------------- identifiability
    def _top1(self, spec):
        return self.top_k == 1 and spec.n_experts > 1

    def notes(self, spec):
        if not self._top1(spec):
            return []
        how = ("they do not enter the model at all" if self.select_by == "score"
               else "they enter only through the active-set boundaries")
        return [(f"topk-K1-{self.select_by}",
                 "top_k=1: the within-set gate weight is always 1, so the gate biases beta0 are not "
                 f"identifiable ({how}). The gate enters the likelihood only through the boundaries "
                 "of the active sets, so the log-likelihood is piecewise constant in (beta0, beta1): "
                 "EM keeps the starting gate (for data-driven starts, a softmax fit to the start's "
                 "partition) and the gate's standard errors are reported as NaN.")]

    def unidentified_fields(self, spec):
        return ("beta0", "beta1") if self._top1(spec) else ()

    def unused_fields(self, spec):
        return ("beta0",) if self.top_k == 1 and self.select_by == "score" else ()

    # ---------------------------------------------------------------- EM
    def needs_likelihood(self, spec):
        return self.sparse(spec)

    def m_step(self, spec, params, z, resp, y=None, weights=None, max_newton=50, newton_tol=1e-12,
               method="gem", max_halvings=40, **options):
        return topk_gate_m_step(spec, params, z, resp, y=y, weights=weights, method=method,
                                max_newton=max_newton, newton_tol=newton_tol,
                                max_halvings=max_halvings)

    def check_options(self, options):
        if "method" in options and options["method"] not in TOPK_METHODS:
            raise ValueError(f"gate_options['method'] must be one of {TOPK_METHODS}; got "
                             f"{options['method']!r}")
        return options

    # ---------------------------------------------------------------- standardisation
    def affine_rule(self, spec):
        # The logits map like the softmax gate's; the score's shift goes to select_offset.
        return "affine"

    def standard_gate(self, spec, center, scale):
        # β_1ᵀ(x + c) = β_1'ᵀ(x̃ + (m + c)/s) with β_1' = β_1∘s, x̃ = (x − m)/s (module docstring).
        # The logit rule and K = k rank shift-invariantly: no offset.
        center, scale = np.asarray(center, dtype=np.float64), np.asarray(scale, dtype=np.float64)
        if self.select_by != "score" or not self.sparse(spec) or (
                not self.select_offset and not np.any(center)):
            return self
        offset = np.asarray(self.select_offset) if self.select_offset else np.zeros_like(center)
        return replace(self, select_offset=tuple(((offset + center) / scale).tolist()))

    # ---------------------------------------------------------------- summary
    def describe(self, spec):
        if self.select_offset:
            return f"top-{self.top_k} (score at x + {list(self.select_offset)})"
        return f"top-{self.top_k} ({self.select_by})"

    def summary_notes(self, spec, res):
        first = []
        if self.sparse(spec):
            first.append("Top-K gate: standard errors use the almost-everywhere derivatives of the "
                         "log-likelihood (active sets held at the estimate); the active-set "
                         "boundaries are not regular parameters.")
        return first, [message for _, message in self.notes(spec)]

    # ---------------------------------------------------------------- torch
    def torch_log_weights(self, spec, tensors, x):
        import torch
        from torch.nn import functional as F

        from moetheory.bridge.torch import topk_mask

        h = self.torch_logits(tensors, x)
        beta1 = tensors["beta1"]
        score = self._selection_score(x @ beta1.T, beta1, tensors["beta0"], lambda c: torch.as_tensor(
            c, dtype=beta1.dtype, device=beta1.device))
        mask = topk_mask(score, self.top_k)
        logw = F.log_softmax(h.masked_fill(~mask, -torch.inf), dim=-1)
        return logw, F.softmax(h, dim=-1), mask

    def neural_routers(self, spec):
        if self.select_by != "logit":
            return ()
        return ("noisy_topk",) + (("switch",) if self.top_k == 1 else ()) + \
            (("gshard_top2",) if self.top_k == 2 else ())

    # ---------------------------------------------------------------- NumPy oracle
    def numpy_active_set(self, spec, params, z):
        n, k = z.shape[0], params.beta0.shape[0]
        mask = np.zeros((n, k), dtype=bool)
        for row in range(n):
            score = self._selection_score(params.beta1 @ z[row], params.beta1, params.beta0)  # (k,)
            # A stable sort of -score puts equal scores in index order: ties go to the lower index.
            order = np.argsort(-score, kind="stable")
            mask[row, order[:self.top_k]] = True
        return mask
