"""The sigmoid gate: independent sigmoid scores, normalised, g_i(x) = σ(h_i(x)) / Σ_j σ(h_j(x)).

Nguyen, Ho & Rinaldo, "Sigmoid Gating is More Sample Efficient than Softmax Gating in Mixture of
Experts" (NeurIPS 2024, arXiv 2405.13997) score each expert independently by σ(β_1iᵀx + β_0i)
instead of letting the experts compete in a softmax. Their regression function is
Σ_i σ(β_1iᵀx + β_0i) h(x, η_i), estimated by least squares; the scores are not normalised there.

Our reading (OPEN, see docs/theory/sigmoid.md): a Gaussian mixture of experts needs weights that sum
to one for p(y | x) to be a density, so this gate divides the independent scores by their sum. The
scores stay independent — no expert's logit enters another's score — and, unlike the softmax, no
common shift of (β_0, β_1) leaves the model unchanged (σ is not an exponential), so every expert's
gate parameters are free: no reference expert, and the Voronoi losses take no translation. When
every logit is very negative σ(h) ≈ e^h and the gate approaches the softmax (a flat direction).

Which PDEs hold (``moetheory theory pdes``): with u = σ(β_1x + β_0) N(y; a x + b, ν), the ratio
∂²u/∂β_1∂b / ∂u/∂a = 1 − σ(β_1x + β_0) depends on x, so the β_1–a relation of the softmax gate
breaks (at β_1 ≠ 0; at β_1 = 0 it holds — the paper's second regime), while ∂²u/∂b² = 2∂u/∂ν
survives: over-fitted cells use the exponents (2, 2, r̄, r̄/2) for (β_1, a, b, ν), as for the
activation gates.
"""
from __future__ import annotations

from dataclasses import dataclass

import jax
import numpy as np

from moetheory._jax import x64
from moetheory.gates.base import (Gate, linear_logit_from_standard, linear_logit_to_standard,
                                  step_slopes_linear)


@dataclass(frozen=True)
class SigmoidGate(Gate):
    """g_i(x) = σ(β_1iᵀx + β_0i) / Σ_j σ(β_1jᵀx + β_0j): normalised independent sigmoid scores.

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 1, gate="sigmoid")
    >>> p = MoEParams.create([0., 0.], [[1.], [-1.]], [[0.], [0.]], [0., 0.], [1., 1.])
    >>> np.exp(np.asarray(spec.gate_family.log_weights(spec, p, np.zeros((1, 1))))).tolist()
    [[0.5, 0.5]]
    """

    name = "sigmoid"
    column_selection = True
    reference_note = ("No reference expert: the sigmoid gate has no shift invariance, every "
                      "expert's gate is free; 'var' is the expert noise variance.")

    def spec_fields(self):
        return {"gate": self.name}

    @x64
    def logits(self, spec, params, z):
        return z @ params.beta1.T + params.beta0

    def log_weights(self, spec, params, z, mask=None):
        ls = jax.nn.log_sigmoid(self.logits(spec, params, z))
        return ls - jax.scipy.special.logsumexp(ls, axis=-1, keepdims=True)

    def loss_exponents(self, spec):
        return "activation"  # the β_1–a PDE breaks, ∂²u/∂b² = 2∂u/∂ν holds (module docstring)

    def affine_rule(self, spec):
        return "affine"

    def to_standard(self, spec, params, center, scale):
        return linear_logit_to_standard(params, center, scale)

    def from_standard(self, spec, params, center, scale):
        return linear_logit_from_standard(params, center, scale)

    def describe(self, spec):
        return "sigmoid (normalised)"

    def summary_notes(self, spec, res):
        return ["Sigmoid gate: g_i = sigmoid(h_i)/sum_j sigmoid(h_j) with h_i = beta1_i'x + beta0_i "
                "(independent scores, normalised so that p(y|x) is a density: our reading of "
                "arXiv 2405.13997)."], []

    def step_slopes(self, spec, params, sd):
        return step_slopes_linear(spec, params, sd, relative=False)

    def torch_log_weights(self, spec, tensors, x):
        import torch
        from torch.nn import functional as F

        ls = F.logsigmoid(x @ tensors["beta1"].T + tensors["beta0"])
        logw = ls - torch.logsumexp(ls, dim=-1, keepdim=True)
        return logw, logw.exp(), torch.ones_like(logw, dtype=torch.bool)

    def sympy_weight(self, sp, x, beta1, beta0, tau, extra):
        return 1 / (1 + sp.exp(-(sum(b * xi for b, xi in zip(beta1, x)) + beta0)))

    def numpy_log_weights(self, spec, params, z):
        from scipy.special import logsumexp

        h = z @ np.asarray(params.beta1).T + np.asarray(params.beta0)
        ls = -np.logaddexp(0.0, -h)
        return ls - logsumexp(ls, axis=1, keepdims=True)
