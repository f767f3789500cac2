"""The gate registry: names -> gate families, and the gate of a MoESpec.

A registered entry is a :class:`~moetheory.gates.base.Gate` subclass (built from the spec's
options by its ``from_spec``) or a gate instance (used as it is: how user code registers its own
gate, :func:`register_gate`). :func:`gate_of` returns the gate object of a spec (cached).
"""
from __future__ import annotations

import functools

from moetheory.gates.activation import ActivationGate
from moetheory.gates.base import Gate
from moetheory.gates.gaussian import GaussianGate
from moetheory.gates.sigmoid import SigmoidGate
from moetheory.gates.softmax import SoftmaxGate
from moetheory.gates.temperature import TemperatureGate
from moetheory.gates.topk import TopKGate

#: name -> Gate subclass or Gate instance
GATES: dict = {
    "softmax": SoftmaxGate,
    "topk": TopKGate,
    "temperature": TemperatureGate,
    "activation": ActivationGate,
    "sigmoid": SigmoidGate,
    "gaussian": GaussianGate,
}

#: MoESpec fields each built-in family reads (a field set for any other gate is an error)
SPEC_OPTIONS = {"topk": ("top_k", "select_by"), "temperature": ("tau",),
                "activation": ("activation", "tau")}


def gate_names() -> tuple:
    """The registered gate names, in registration order.

    Examples
    --------
    >>> gate_names()[:4]
    ('softmax', 'topk', 'temperature', 'activation')
    """
    return tuple(GATES)


def register_gate(gate: Gate, overwrite: bool = False) -> None:
    """Register a gate instance under ``gate.name``: ``MoESpec(..., gate=name)``, ``fit(gate=name)``
    and study declarations (TOML/JSON) can then name it.

    Parameters
    ----------
    gate : Gate
        A (frozen dataclass) instance of a :class:`~moetheory.gates.base.Gate` subclass.
    overwrite : bool
        Replace an existing entry instead of raising ``ValueError``.

    Examples
    --------
    >>> from moetheory.gates.sigmoid import SigmoidGate
    >>> register_gate(SigmoidGate())
    Traceback (most recent call last):
    ...
    ValueError: gate 'sigmoid' is already registered; pass overwrite=True to replace it
    """
    if not isinstance(gate, Gate):
        raise TypeError(f"gate must be an instance of a moetheory.gates.Gate subclass; got "
                        f"{type(gate).__name__}")
    name = gate.name
    if not isinstance(name, str) or not name or name == "gate":
        raise ValueError(f"a registered gate needs a name (a class attribute 'name'); got {name!r}")
    if name in GATES and not overwrite:
        raise ValueError(f"gate {name!r} is already registered; pass overwrite=True to replace it")
    GATES[name] = gate
    gate_of.cache_clear()


def check_spec(spec) -> None:
    """Validate the gate options of ``spec`` (raises ValueError naming the field); MoESpec calls it.

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> MoESpec(2, 1, top_k=1)
    Traceback (most recent call last):
    ...
    ValueError: top_k is only used by gate='topk'; got top_k=1 with gate='softmax'
    """
    gate = spec.gate
    if isinstance(gate, Gate):
        name = gate.name
        used = ()
    else:
        if gate not in GATES:
            raise ValueError(f"gate must be one of {gate_names()}; got {gate!r}")
        name = gate
        used = SPEC_OPTIONS.get(gate, ())
    if spec.top_k is not None and "top_k" not in used:
        raise ValueError(f"top_k is only used by gate='topk'; got top_k={spec.top_k} with gate={name!r}")
    if spec.activation is not None and "activation" not in used:
        raise ValueError(f"activation is only used by gate='activation'; got {spec.activation!r}")
    if spec.tau != "fixed" and not _resolve(spec).has_tau:
        with_tau = [n for n, g in GATES.items() if getattr(g, "has_tau", False)]
        raise ValueError(f"tau='estimated' needs gate {' or '.join(repr(n) for n in with_tau)}; "
                         f"got gate={name!r}")
    _resolve(spec)


def _resolve(spec) -> Gate:
    gate = spec.gate
    if isinstance(gate, Gate):
        return gate
    entry = GATES[gate]
    return entry if isinstance(entry, Gate) else entry.from_spec(spec)


@functools.lru_cache(maxsize=None)
def gate_of(spec) -> Gate:
    """The gate object of a :class:`~moetheory.spec.MoESpec` (``spec.gate_family``).

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> gate_of(MoESpec(3, 1, gate="topk", top_k=2))
    TopKGate(top_k=2, select_by='score', select_offset=())
    """
    return _resolve(spec)


def canonical_gate(gate):
    """A gate instance that a MoESpec can name by its fields (a built-in family with its options)
    -> those fields; any other gate -> None (the spec holds the object).

    Examples
    --------
    >>> canonical_gate(TopKGate(top_k=2))
    {'gate': 'topk', 'top_k': 2, 'select_by': 'score'}
    """
    if not isinstance(gate, Gate):
        return None
    fields = gate.spec_fields()
    if fields is None or fields.get("gate") not in GATES:
        return None
    entry = GATES[fields["gate"]]
    if isinstance(entry, Gate):
        return fields if entry == gate else None
    return fields if isinstance(gate, entry) and type(gate) is entry else None
