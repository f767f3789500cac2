"""The temperature (dense-to-sparse) gate h_i = (β_1iᵀx + β_0i)/τ (DESIGN.md §2.2).

The gate depends on (β, τ) only through γ = β/τ, and in γ the EM objective is exactly the softmax
multinomial logit: the gate step is the softmax Newton/IRLS step on γ, mapped back. τ fixed: β =
τγ (with τ = 1 bit-identical to the softmax step). τ estimated: (β_0, β_1, τ) → c·(β_0, β_1, τ)
leaves the model unchanged; the reported representative has ‖(β_0, β_1, τ)‖₂ = 1 over the free
(non-reference) gate entries and τ (:func:`normalise_temperature`), and the identified coordinates
are β/τ. The bias sits *inside* the temperature ("inside" convention of DESIGN.md §2.2).
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp

from moetheory._jax import x64
from moetheory.gates.softmax import SoftmaxGate, softmax_gate_m_step

TAU_MODES = ("fixed", "estimated")


def normalise_temperature(params):
    """Representative of the scale class of a temperature gate: ‖(β_0, β_1, τ)‖₂ = 1.

    The norm runs over the free gate entries (experts 1..k−1 of the pinned gate) and τ. With
    γ = β/τ the representative is (β, τ) = (γ, 1)/sqrt(1 + ‖γ‖²): unique, and defined for every
    γ (including a flat gate γ = 0, where τ = 1). The model is unchanged.

    Parameters
    ----------
    params : MoEParams, gate arrays ``beta0`` (k,), ``beta1`` (k, d), ``tau`` () (a leading
        batch axis is allowed)

    Returns
    -------
    MoEParams, the pinned representative with ‖(β_0, β_1, τ)‖₂ = 1

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> from moetheory.params import MoEParams
    >>> p = MoEParams.create([1., 0.], [[1.], [0.]], [[0.], [0.]], [0., 0.], [1., 1.], tau=2.0)
    >>> q = normalise_temperature(p)  # γ = (0.5, 0.5): divide (γ, 1) by sqrt(1.5)
    >>> round(float(q.tau), 6), round(float(q.beta0[0]), 6), round(float(q.beta1[0, 0]), 6)
    (0.816497, 0.408248, 0.408248)
    """
    p = params._replace(beta0=params.beta0 - params.beta0[-1], beta1=params.beta1 - params.beta1[-1])
    g0 = p.beta0 / p.tau
    g1 = p.beta1 / p.tau
    c = 1.0 / jnp.sqrt(1.0 + (g0 * g0).sum(-1) + (g1 * g1).sum((-2, -1)))
    return p._replace(beta0=c[..., None] * g0, beta1=c[..., None, None] * g1, tau=c)


def temperature_gate_m_step(spec, params, x, resp, tau_value=None, max_newton=50, newton_tol=1e-12):
    """Gate step of the temperature gate: the softmax Newton step on γ = β/τ (module docstring).

    ``tau_value`` (τ fixed only): the known temperature; default: keep ``params.tau``. Because
    the model depends on γ only, moving τ to ``tau_value`` at fixed γ does not change the model.

    Parameters
    ----------
    spec : MoESpec with ``gate="temperature"``
    params : MoEParams, the current parameters (``beta0`` (k,), ``beta1`` (k, d), ``tau`` ())
    x : array (n, d); resp : array (n, k)
    tau_value : float, optional; max_newton : int; newton_tol : float

    Returns
    -------
    params : MoEParams with a new gate (and τ)

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax.numpy as jnp
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> x = jnp.array([[-1.0], [0.0], [1.0]])
    >>> resp = jnp.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    >>> p = MoEParams.create([1., 0.], [[1.], [0.]], [[0.], [0.]], [0., 0.], [1., 1.], tau=2.0)
    >>> new = temperature_gate_m_step(MoESpec(2, 1, gate="temperature"), p, x, resp)
    >>> new.beta1.shape, float(new.tau)
    ((2, 1), 2.0)
    """
    gamma = params._replace(beta0=params.beta0 / params.tau, beta1=params.beta1 / params.tau)
    new = softmax_gate_m_step(spec, gamma, x, resp, max_newton=max_newton, newton_tol=newton_tol)
    if spec.estimates_tau:
        return normalise_temperature(new._replace(tau=jnp.ones_like(params.tau)))
    tau = params.tau if tau_value is None else jnp.asarray(tau_value, params.tau.dtype)
    return new._replace(beta0=tau * new.beta0, beta1=tau * new.beta1, tau=tau)


@dataclass(frozen=True)
class TemperatureGate(SoftmaxGate):
    """softmax((β_1ᵀx + β_0)/τ); ``tau`` = "fixed" (known) or "estimated".

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> MoESpec(2, 1, gate="temperature", tau="estimated").gate_family
    TemperatureGate(tau='estimated')
    """

    tau: str = "fixed"
    name = "temperature"
    numba = False
    column_selection = False
    has_tau = True
    step_options = ("max_newton", "newton_tol", "tau_value")
    sympy_checks = ("euler",)

    @classmethod
    def from_spec(cls, spec):
        return cls(tau=spec.tau)

    def spec_fields(self):
        return {"gate": self.name, "tau": self.tau}

    @x64
    def logits(self, spec, params, z):
        score = z @ params.beta1.T
        return (score + params.beta0) / params.tau

    # ---------------------------------------------------------------- identifiability
    def finalise(self, spec, params):
        return normalise_temperature(params) if spec.estimates_tau else params

    def notes(self, spec):
        if not spec.estimates_tau:
            return []
        return [("temperature-tau-estimated",
                 "tau='estimated' with the temperature gate: (beta0, beta1, tau) -> c*(beta0, beta1, tau), "
                 "c > 0, leaves the model unchanged, so tau is not identifiable separately from beta. "
                 "moetheory reports the representative with ||(beta0, beta1, tau)||_2 = 1 over the free "
                 "(non-reference) gate entries and tau, and the identified coordinates beta/tau "
                 "(FitResult.identified_params, summary()). Fix tau (tau_value=...) to set the scale instead.")]

    def identified_scale(self, spec, params):
        return float(params.tau)

    # ---------------------------------------------------------------- EM
    def m_step(self, spec, params, z, resp, y=None, weights=None, max_newton=50, newton_tol=1e-12,
               tau_value=None, **options):
        return temperature_gate_m_step(spec, params, z, resp, tau_value=tau_value,
                                       max_newton=max_newton, newton_tol=newton_tol)

    # ---------------------------------------------------------------- summary
    def describe(self, spec):
        return f"temperature (tau {self.tau})"

    def summary_notes(self, spec, res):
        tau = float(res.params.tau)
        if spec.estimates_tau:
            note = (f"Temperature gate, tau estimated: (beta, tau) is identified only up to a common scale; "
                    f"normalisation ||(beta0, beta1, tau)||_2 = 1 over the free gate entries and tau, "
                    f"giving tau = {tau:.6g}. Raw gate standard errors hold tau at this value; the "
                    "identified coordinates beta/tau are in the table 'Identified gate coordinates'.")
        else:
            note = f"Temperature gate with known tau = {tau:.6g}."
        return [note], []

    # ---------------------------------------------------------------- torch
    def torch_log_weights(self, spec, tensors, x):
        import torch

        logw = torch.nn.functional.log_softmax(self.torch_logits(tensors, x) / tensors["tau"], dim=-1)
        return logw, logw.exp(), torch.ones_like(logw, dtype=torch.bool)

    def neural_routers(self, spec):
        return ("dense_to_sparse",) if self.tau == "fixed" else ()

    # ---------------------------------------------------------------- symbolic
    def sympy_weight(self, sp, x, beta1, beta0, tau, extra):
        return sp.exp((sum(b * xi for b, xi in zip(beta1, x)) + beta0) / tau)

    # ---------------------------------------------------------------- NumPy oracle
    def numpy_logits(self, spec, params, z):
        h = super().numpy_logits(spec, params, z)
        return h / params.tau
