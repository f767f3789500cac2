"""MoESpec: the static description of a Gaussian mixture of experts.

A spec is frozen and hashable so that it can be a static argument under ``jax.jit``: it holds
the number of experts, the covariate dimension, the gate family and the gate's options. The
arrays live in :class:`moetheory.params.MoEParams`.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

SELECT_BY = ("score", "logit")
TAU_MODES = ("fixed", "estimated")
#: How a Voronoi loss removes the gate's unidentifiable shift (moetheory.losses.voronoi_loss).
TRANSLATIONS = ("infimum", "bias", "pinned", "none")


def gate_translation(gate) -> str:
    """The ``translation`` that removes exactly the gate's unidentifiable shift (the gate's own,
    :meth:`moetheory.gates.Gate.translation`): ``"infimum"`` for the softmax, top-K and
    temperature gates (a common shift of every expert's (β_0, β_1)), ``"bias"`` for the activation
    gate (σ(β_1ᵀx) is not linear in β_1), ``"none"`` for gates without a shift invariance.

    Examples
    --------
    >>> gate_translation("softmax"), gate_translation("activation")
    ('infimum', 'bias')
    """
    from moetheory.gates import gate_translation as _translation

    return _translation(gate)


@dataclass(frozen=True)
class MoESpec:
    """Static structure of a Gaussian MoE with linear experts (DESIGN.md §2).

    Parameters
    ----------
    n_experts : int
        Number of experts k >= 1.
    dim : int
        Covariate dimension d >= 1.
    gate : str or moetheory.gates.Gate
        Gate family (DESIGN.md §2.2): a registered name (``"softmax"``, ``"topk"``,
        ``"temperature"``, ``"activation"``, ``"sigmoid"``, ``"gaussian"``, or one added by
        :func:`moetheory.gates.register_gate`) or a gate object. A built-in gate object is stored
        as its name and options (so specs compare and serialise alike); any other object is kept.
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
        from moetheory.gates.base import Gate
        from moetheory.gates.registry import canonical_gate, check_spec

        for name in ("n_experts", "dim", "top_k"):
            value = getattr(self, name)
            if value is not None:
                # numpy integers are accepted but stored as int so specs hash equal.
                object.__setattr__(self, name, _check_int(name, value, 1))
        if isinstance(self.gate, Gate):
            fields = canonical_gate(self.gate)
            if fields is not None:  # a built-in family: named by its fields
                for key, value in fields.items():
                    if key != "gate" and getattr(self, key) not in (None, "fixed", "score", value):
                        raise ValueError(f"{key}={getattr(self, key)!r} contradicts gate={self.gate!r}")
                    object.__setattr__(self, key, value)
        elif not isinstance(self.gate, str):
            raise TypeError(f"gate must be a gate name or a moetheory.gates.Gate; got "
                            f"{type(self.gate).__name__}")
        if self.select_by not in SELECT_BY:
            raise ValueError(f"select_by must be one of {SELECT_BY}; got {self.select_by!r}")
        if self.tau not in TAU_MODES:
            raise ValueError(f"tau must be one of {TAU_MODES}; got {self.tau!r}")
        check_spec(self)

    @property
    def gate_family(self):
        """The gate object (:class:`moetheory.gates.Gate`): every gate-specific rule lives there."""
        from moetheory.gates.registry import gate_of

        return gate_of(self)

    @property
    def gate_name(self) -> str:
        """The gate's registry name (``spec.gate`` for a named gate)."""
        return self.gate if isinstance(self.gate, str) else self.gate.name

    def to_dict(self) -> dict:
        """The spec's fields, the gate as its name (a gate object must be registered under it,
        :func:`moetheory.gates.register_gate`, for the dict to be read back)."""
        from dataclasses import fields

        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["gate"] = self.gate_name
        return out

    @property
    def has_tau(self) -> bool:
        """True when the gate divides its logits by a temperature τ."""
        return self.gate_family.has_tau

    @property
    def estimates_tau(self) -> bool:
        """True when estimators treat τ as a free parameter."""
        return self.gate_family.estimates_tau(self)

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
