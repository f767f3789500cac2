"""EM estimation: E-step, M-steps, the EM loop, initialisation and multistart."""
from moetheory.em.run import EMResult, run_em

__all__ = ["EMResult", "run_em"]
