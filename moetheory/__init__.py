"""moetheory: theory and simulation of parameter estimation in Gaussian mixtures of experts.

Nothing computes at import; JAX float64 is switched on by the entry points that compute.
"""
from moetheory.api import ConvergenceWarning, MoERegressor, VarianceFloorWarning, fit
from moetheory.em.config import EMConfig
from moetheory.params import MoEParams
from moetheory.results import FitResult
from moetheory.spec import MoESpec

__version__ = "0.1.0"

__all__ = ["MoESpec", "MoEParams", "EMConfig", "FitResult", "MoERegressor", "ConvergenceWarning",
           "VarianceFloorWarning", "fit", "__version__"]
