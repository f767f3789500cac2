"""The activation dense-to-sparse gate h_i = (σ(β_1iᵀx) + β_0i)/τ (DESIGN.md §2.2).

σ comes from :data:`ACTIVATIONS` (extend with :func:`register_activation`). A non-linear σ breaks
the scale invariance of the temperature gate and the common shift of β_1: only a common shift of
β_0 remains, so the last expert's β_0 is pinned (σ = identity is the temperature gate: its β_1 is
pinned too). The gate step is the generic autodiff Newton step in the free coordinates (τ on the
log scale), monotone by step-halving.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from moetheory._jax import x64
from moetheory.gates.base import Gate, linear_logit_from_standard, linear_logit_to_standard
from moetheory.gates.softmax import SoftmaxGate

#: Registry of activations σ for the activation gate. Extend with :func:`register_activation`.
ACTIVATIONS: dict[str, Callable] = {
    "sigmoid": jax.nn.sigmoid,
    "tanh": jnp.tanh,
    "gelu": lambda z: jax.nn.gelu(z, approximate=False),
    "softplus": jax.nn.softplus,  # a smooth ReLU
    # Activations that violate the identifiability conditions, kept to demonstrate it:
    "identity": lambda z: z,
    "square": lambda z: z * z,
}


def _np_sigmoid(z):
    # Two branches so that exp never overflows.
    out = np.empty_like(z)
    pos = z >= 0
    out[pos] = 1.0 / (1.0 + np.exp(-z[pos]))
    ez = np.exp(z[~pos])
    out[~pos] = ez / (1.0 + ez)
    return out


def _np_erf(z):
    from scipy.special import erf

    return erf(z)


#: NumPy versions of the activations (the oracle of :mod:`moetheory.kernels.reference`).
NUMPY_ACTIVATIONS = {
    "sigmoid": _np_sigmoid,
    "tanh": np.tanh,
    "gelu": lambda z: 0.5 * z * (1.0 + _np_erf(z / math.sqrt(2.0))),
    "softplus": lambda z: np.logaddexp(0.0, z),
    "identity": lambda z: z,
    "square": lambda z: z * z,
}


def register_activation(name: str, fn: Callable, overwrite: bool = False) -> None:
    """Add an activation σ (a jnp-traceable elementwise function) to the registry.

    Parameters
    ----------
    name : str
        Registry key, then usable as ``MoESpec(..., gate="activation", activation=name)``.
    fn : callable
        Elementwise σ: array (n, k) -> array (n, k), traceable by JAX (jit, grad, vmap).
    overwrite : bool
        Replace an existing entry instead of raising ``ValueError``.

    Examples
    --------
    >>> register_activation("erf", jax.scipy.special.erf)   # doctest: +SKIP
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string; got {name!r}")
    if not callable(fn):
        raise TypeError(f"fn must be callable; got {type(fn).__name__}")
    if name in ACTIVATIONS and not overwrite:
        raise ValueError(f"activation {name!r} is already registered; pass overwrite=True to replace it")
    ACTIVATIONS[name] = fn


def _sympy_activation(sp, name):
    table = {"tanh": sp.tanh, "sigmoid": lambda z: 1 / (1 + sp.exp(-z)), "identity": lambda z: z,
             "gelu": lambda z: z / 2 * (1 + sp.erf(z / sp.sqrt(2))),
             "softplus": lambda z: sp.log(1 + sp.exp(z)), "square": lambda z: z ** 2}
    if name not in table:
        raise ValueError(f"activation {name!r} has no symbolic form; known: {sorted(table)}")
    return table[name]


@dataclass(frozen=True)
class ActivationGate(SoftmaxGate):
    """softmax((σ(β_1ᵀx) + β_0)/τ) with σ = ``activation``; ``tau`` "fixed" or "estimated".

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> MoESpec(2, 1, gate="activation", activation="tanh").gate_family.pins(MoESpec(2, 1))
    (True, False)
    """

    activation: str = "tanh"
    tau: str = "fixed"
    name = "activation"
    numba = False
    column_selection = False
    has_tau = True
    step_options = ("max_newton", "newton_tol", "tau_value")
    sympy_checks = ("euler",)

    def softmax_of_linear(self, spec) -> bool:
        return False

    @classmethod
    def from_spec(cls, spec):
        if spec.activation is None:
            raise ValueError(
                f"activation is required for gate='activation'; one of {sorted(ACTIVATIONS)}")
        if spec.activation not in ACTIVATIONS:
            raise ValueError(
                f"activation must be one of {sorted(ACTIVATIONS)}; got {spec.activation!r}")
        return cls(activation=spec.activation, tau=spec.tau)

    def spec_fields(self):
        return {"gate": self.name, "activation": self.activation, "tau": self.tau}

    @property
    def linear(self) -> bool:
        """σ = identity: the temperature gate (slopes pinned too)."""
        return self.activation == "identity"

    @x64
    def logits(self, spec, params, z):
        score = z @ params.beta1.T
        return (ACTIVATIONS[self.activation](score) + params.beta0) / params.tau

    # ---------------------------------------------------------------- identifiability
    def pins(self, spec):
        return (True, self.linear)

    def free_tau(self, spec):
        return spec.estimates_tau and spec.n_experts > 1

    def free_layout(self, spec, names):
        # A non-linear σ frees every expert's slopes (k > 1); one expert: nothing.
        return Gate.free_layout(self, spec, names)

    def translation(self, spec):
        return "bias"

    def loss_exponents(self, spec):
        return "softmax" if self.linear else "activation"

    def notes(self, spec):
        if not (spec.estimates_tau and self.activation in ("identity", "square")):
            return []
        return [(f"activation-{self.activation}-tau-estimated",
                 f"activation={self.activation!r} violates the linear-independence condition of the "
                 "activation gate: with tau estimated, (beta1, beta0, tau) is identified only up to a scale "
                 "(identity: c*(beta1, beta0, tau); square: (sqrt(c)*beta1, c*beta0, c*tau)), so the "
                 "information matrix is singular.")]

    # ---------------------------------------------------------------- EM
    def m_step(self, spec, params, z, resp, y=None, weights=None, max_newton=50, newton_tol=1e-12,
               tau_value=None, **options):
        """Autodiff Newton in the free coordinates (τ on the log scale): :meth:`Gate.m_step`.
        ``tau_value`` (τ fixed only): the known temperature, default ``params.tau``."""
        if not spec.estimates_tau and tau_value is not None:
            params = params._replace(tau=jnp.asarray(tau_value, params.tau.dtype))
        return Gate.m_step(self, spec, params, z, resp, max_newton=max_newton,
                           newton_tol=newton_tol)

    # ---------------------------------------------------------------- standardisation
    def affine_rule(self, spec):
        # σ(β_1ᵀx) + β_0: a shift of x adds an expert-dependent constant inside σ.
        return "scale"

    def to_standard(self, spec, params, center, scale):
        return linear_logit_to_standard(params, center, scale)

    def from_standard(self, spec, params, center, scale):
        return linear_logit_from_standard(params, center, scale)

    # ---------------------------------------------------------------- summary
    def describe(self, spec):
        return f"activation ({self.activation}, tau {self.tau})"

    def summary_notes(self, spec, res):
        tau = float(res.params.tau)
        pinned = "beta0 and beta1" if self.linear else "beta0 only"
        note = (f"Activation gate: the last expert's {pinned} is pinned at zero; "
                f"tau = {tau:.6g} ({self.tau}" + (", log scale in estimation)." if spec.estimates_tau else ")."))
        return [note], []

    def step_slopes(self, spec, params, sd):
        return []  # σ saturates: a large slope is not a step of the logit

    # ---------------------------------------------------------------- torch
    def torch_log_weights(self, spec, tensors, x):
        import torch

        from moetheory.bridge.torch import TORCH_ACTIVATIONS

        if self.activation not in TORCH_ACTIVATIONS:
            raise ValueError(f"activation {self.activation!r} has no torch twin; known: "
                             f"{sorted(TORCH_ACTIVATIONS)} (see register_torch_activation)")
        h = TORCH_ACTIVATIONS[self.activation](x @ tensors["beta1"].T) + tensors["beta0"]
        logw = torch.nn.functional.log_softmax(h / tensors["tau"], dim=-1)
        return logw, logw.exp(), torch.ones_like(logw, dtype=torch.bool)

    def neural_routers(self, spec):
        return ()

    # ---------------------------------------------------------------- symbolic
    def sympy_weight(self, sp, x, beta1, beta0, tau, extra):
        sigma = _sympy_activation(sp, self.activation)
        return sp.exp((sigma(sum(b * xi for b, xi in zip(beta1, x))) + beta0) / tau)

    # ---------------------------------------------------------------- NumPy oracle
    def numpy_logits(self, spec, params, z):
        n, k = z.shape[0], params.beta0.shape[0]
        h = np.empty((n, k))
        for i in range(k):
            h[:, i] = (NUMPY_ACTIVATIONS[self.activation](z @ params.beta1[i]) + params.beta0[i]) / params.tau
        return h
