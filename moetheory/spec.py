"""MoESpec: the static description of a Gaussian mixture of experts.

A spec is frozen and hashable so that it can be a static argument under ``jax.jit``: it holds
the number of experts, the covariate dimension, the gate family and the gate's options. The
arrays live in :class:`moetheory.params.MoEParams`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

GATES = ("softmax", "topk", "temperature", "activation")
SELECT_BY = ("score", "logit")
TAU_MODES = ("fixed", "estimated")
#: How a Voronoi loss removes the gate's unidentifiable shift (moetheory.losses.voronoi_loss).
TRANSLATIONS = ("infimum", "bias", "pinned", "none")


def gate_translation(gate: str) -> str:
    """The ``translation`` that removes exactly the gate's unidentifiable shift.

    A common shift of every expert's (β_0, β_1) leaves the softmax, top-K and temperature gates
    unchanged (``"infimum"``); under the activation gate only a common shift of β_0 does, because
    σ(β_1ᵀx) is not linear in β_1 (``"bias"``).

    Examples
    --------
    >>> gate_translation("softmax"), gate_translation("activation")
    ('infimum', 'bias')
    """
    if gate not in GATES:
        raise ValueError(f"gate must be one of {tuple(GATES)}; got {gate!r}")
    return "bias" if gate == "activation" else "infimum"


@dataclass(frozen=True)
class MoESpec:
    """Static structure of a Gaussian MoE with linear experts (DESIGN.md §2).

    Parameters
    ----------
    n_experts : int
        Number of experts k >= 1.
    dim : int
        Covariate dimension d >= 1.
    gate : {"softmax", "topk", "temperature", "activation"}
        Gate family (DESIGN.md §2.2).
    top_k : int, optional
        Number K of active experts for ``gate="topk"`` (1 <= K <= k). Required for topk.
    select_by : {"score", "logit"}
        Top-K selection rule: ``"score"`` ranks by beta1ᵀx (default, the paper reading, OPEN),
        ``"logit"`` by the full logit beta1ᵀx + beta0 (as neural routers do).
    activation : str, optional
        Activation σ of the activation gate (a name in ``moetheory.gates.ACTIVATIONS``).
    tau : {"fixed", "estimated"}
        Whether an estimator treats the temperature τ as known or estimates it. Applies to the
        temperature and activation gates; the softmax and top-K gates have τ = 1.

    Examples
    --------
    >>> MoESpec(n_experts=3, dim=1)
    MoESpec(n_experts=3, dim=1, gate='softmax', top_k=None, select_by='score', activation=None, tau='fixed')
    >>> MoESpec(4, 2, gate="topk", top_k=2).top_k
    2
    """

    n_experts: int
    dim: int
    gate: str = "softmax"
    top_k: int | None = None
    select_by: str = "score"
    activation: str | None = None
    tau: str = "fixed"

    def __post_init__(self):
        for name in ("n_experts", "dim", "top_k"):
            value = getattr(self, name)
            if value is not None:
                # numpy integers are accepted but stored as int so specs hash equal.
                object.__setattr__(self, name, _check_int(name, value, 1))
        if self.gate not in GATES:
            raise ValueError(f"gate must be one of {GATES}; got {self.gate!r}")
        if self.select_by not in SELECT_BY:
            raise ValueError(f"select_by must be one of {SELECT_BY}; got {self.select_by!r}")
        if self.tau not in TAU_MODES:
            raise ValueError(f"tau must be one of {TAU_MODES}; got {self.tau!r}")
        if self.gate == "topk":
            if self.top_k is None:
                raise ValueError("top_k is required for gate='topk' (an integer K in 1..n_experts)")
            if self.top_k > self.n_experts:
                raise ValueError(
                    f"top_k must be in 1..n_experts={self.n_experts}; got top_k={self.top_k}")
        elif self.top_k is not None:
            raise ValueError(f"top_k is only used by gate='topk'; got top_k={self.top_k} with gate={self.gate!r}")
        if self.gate == "activation":
            from moetheory.gates import ACTIVATIONS  # local import: gates imports spec
            if self.activation is None:
                raise ValueError(
                    f"activation is required for gate='activation'; one of {sorted(ACTIVATIONS)}")
            if self.activation not in ACTIVATIONS:
                raise ValueError(
                    f"activation must be one of {sorted(ACTIVATIONS)}; got {self.activation!r}")
        elif self.activation is not None:
            raise ValueError(f"activation is only used by gate='activation'; got {self.activation!r}")
        if self.gate in ("softmax", "topk") and self.tau != "fixed":
            raise ValueError(f"tau='estimated' needs gate 'temperature' or 'activation'; got gate={self.gate!r}")

    @property
    def has_tau(self) -> bool:
        """True when the gate divides its logits by a temperature τ."""
        return self.gate in ("temperature", "activation")

    @property
    def estimates_tau(self) -> bool:
        """True when estimators treat τ as a free parameter."""
        return self.has_tau and self.tau == "estimated"

    def with_(self, **changes) -> "MoESpec":
        """Copy with some fields changed (validated again)."""
        return replace(self, **changes)


def _check_int(name, value, minimum) -> int:
    import numpy as np

    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= {minimum}; got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}")
    return int(value)
