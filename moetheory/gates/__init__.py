"""Gate families: each gate is an object (:class:`Gate`), one module per family, and a registry.

=============  ==============================================  ======================================
gate           log gate weight                                 module
=============  ==============================================  ======================================
`softmax`      softmax(β_1ᵀx + β_0)                            :mod:`moetheory.gates.softmax`
`topk` (K)     softmax over the K largest selection scores     :mod:`moetheory.gates.topk`
`temperature`  softmax((β_1ᵀx + β_0)/τ)                        :mod:`moetheory.gates.temperature`
`activation`   softmax((σ(β_1ᵀx) + β_0)/τ)                     :mod:`moetheory.gates.activation`
`sigmoid`      σ(β_1ᵀx + β_0) / Σ_j σ(β_1jᵀx + β_0j)           :mod:`moetheory.gates.sigmoid`
`gaussian`     π_i N(x; μ_i, Σ_i) / Σ_j π_j N(x; μ_j, Σ_j)     :mod:`moetheory.gates.gaussian`
=============  ==============================================  ======================================

Everything gate-specific — parameters and their free layout, log weights, identifiability
normalisation, EM gate step, standardisation rule, summary text, loss translation, torch router,
symbolic form — is a method of the gate object (:mod:`moetheory.gates.base`); the rest of the
package asks ``spec.gate_family``. A researcher's own gate is a subclass of :class:`Gate` passed
as ``fit(gate=MyGate())`` or registered with :func:`register_gate` (docs/tutorials/custom-gate.md).

The functions below are the gate-generic entry points (log weights in log space: inactive experts
get ``-inf``, weight exactly 0).
"""
from __future__ import annotations

from moetheory._jax import x64
from moetheory.gates.activation import ACTIVATIONS, ActivationGate, register_activation
from moetheory.gates.base import Gate, gate_objective, reference_pin
from moetheory.gates.gaussian import GaussianGate
from moetheory.gates.registry import GATES, gate_names, gate_of, register_gate
from moetheory.gates.sigmoid import SigmoidGate
from moetheory.gates.softmax import SoftmaxGate
from moetheory.gates.temperature import TemperatureGate
from moetheory.gates.topk import TopKGate

__all__ = ["Gate", "SoftmaxGate", "TopKGate", "TemperatureGate", "ActivationGate", "SigmoidGate",
           "GaussianGate", "GATES", "ACTIVATIONS", "register_gate", "register_activation",
           "gate_names", "gate_of", "gate_logits", "active_mask", "log_gate_weights",
           "shift_invariant_slopes", "pin", "gate_objective", "reference_pin", "gate_translation"]


@x64
def gate_logits(spec, params, x):
    """Logits h_i(x), shape (n, k), for x of shape (n, d) (before any top-K masking), for the
    gates with logits (softmax, top-K, temperature, activation, sigmoid).

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 1, gate="temperature")
    >>> p = MoEParams.create([1., 0.], [[2.], [0.]], [[0.], [0.]], [0., 0.], [1., 1.], tau=0.5)
    >>> gate_logits(spec, p, np.ones((1, 1))).tolist()
    [[6.0, 0.0]]
    """
    return spec.gate_family.logits(spec, params, x)


@x64
def active_mask(spec, params, x):
    """Boolean (n, k): which experts are active at each x (all, except for top-K).

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(3, 1, gate="topk", top_k=2)
    >>> p = MoEParams.create([0., 0., 0.], [[-1.], [0.], [1.]], [[0.]] * 3, [0.] * 3, [1.] * 3)
    >>> active_mask(spec, p, np.array([[2.0]])).tolist()
    [[False, True, True]]
    """
    return spec.gate_family.active_mask(spec, params, x)


@x64
def log_gate_weights(spec, params, x, mask=None):
    """log g_i(x), shape (n, k); ``-inf`` for inactive experts.

    Parameters
    ----------
    spec : MoESpec
    params : MoEParams
    x : array (n, d), the gate's design
    mask : bool array (n, k), optional
        Active sets to use instead of recomputing them (the top-K generalised EM holds the
        E-step's sets fixed during its gate step).

    Examples
    --------
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([0., 0.], [[1.], [0.]], [[0.], [0.]], [0., 0.], [1., 1.])
    >>> np.exp(np.asarray(log_gate_weights(spec, p, np.zeros((1, 1))))).round(3).tolist()
    [[0.5, 0.5]]
    """
    return spec.gate_family.log_weights(spec, params, x, mask)


def shift_invariant_slopes(spec) -> bool:
    """True when a common shift of every β_1 leaves the model unchanged (the gate pins the last
    expert's β_1): softmax, top-K, temperature, identity activation.

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> shift_invariant_slopes(MoESpec(2, 1)), shift_invariant_slopes(MoESpec(2, 1, gate="activation", activation="tanh"))
    (True, False)
    """
    return spec.gate_family.pins(spec)[1]


@x64
def pin(spec, params):
    """The gate's canonical representative (e.g. the last expert's gate pinned to zero); works
    with a leading batch axis.

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> p = MoEParams.create([1., 3.], [[2.], [5.]], [[0.], [0.]], [0., 0.], [1., 1.])
    >>> q = pin(MoESpec(2, 1), p)
    >>> q.beta0.tolist(), q.beta1.tolist()
    ([-2.0, 0.0], [[-3.0], [0.0]])
    """
    return spec.gate_family.pin(spec, params)


def gate_translation(gate, spec=None) -> str:
    """The loss ``translation`` that removes exactly the gate's unidentifiable shift.

    ``gate``: a MoESpec, a gate object, or a registered name (built with default options).

    Examples
    --------
    >>> gate_translation("softmax"), gate_translation("activation"), gate_translation("sigmoid")
    ('infimum', 'bias', 'none')
    """
    from moetheory.spec import MoESpec

    if isinstance(gate, MoESpec):
        return gate.gate_family.translation(gate)
    if isinstance(gate, str):
        if gate not in GATES:
            raise ValueError(f"gate must be one of {gate_names()}; got {gate!r}")
        entry = GATES[gate]
        obj = entry if isinstance(entry, Gate) else entry()
    elif isinstance(gate, Gate):
        obj = gate
    else:
        raise TypeError(f"gate must be a name, a Gate or a MoESpec; got {type(gate).__name__}")
    return obj.translation(spec)
