"""Former home of the gate M-steps; they are methods of the gate objects now (:mod:`moetheory.gates`).

Kept as re-exports so that code importing them from here keeps working.
"""
from moetheory.gates.newton import ascent_direction, monotone_newton  # noqa: F401
from moetheory.gates.temperature import normalise_temperature, temperature_gate_m_step  # noqa: F401
from moetheory.gates.topk import TOPK_METHODS, topk_gate_m_step  # noqa: F401
