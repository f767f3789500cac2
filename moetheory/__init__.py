"""moetheory: theory and simulation of parameter estimation in Gaussian mixtures of experts.

Nothing computes at import; JAX float64 is switched on by the entry points that compute.
"""
from moetheory.api import (ConvergenceWarning, GaussianLimitWarning, MultistartWarning,
                           SpuriousSolutionWarning,
                           VarianceFloorWarning, fit, fit_formula)
from moetheory.em.config import EMConfig
from moetheory.params import MoEParams
from moetheory.results import FitResult
from moetheory.selection import SelectKResult, bootstrap_lrt, select_k
from moetheory.spec import MoESpec

__version__ = "0.1.0"

__all__ = ["MoESpec", "MoEParams", "EMConfig", "FitResult", "ConvergenceWarning",
           "VarianceFloorWarning", "MultistartWarning", "GaussianLimitWarning", "SpuriousSolutionWarning", "fit", "fit_formula",
           "select_k", "SelectKResult", "bootstrap_lrt", "__version__"]


def __getattr__(name):
    # The scikit-learn estimator is imported on first use: scikit-learn is an optional extra
    # (so it is not in __all__ either: `from moetheory import *` must not need it).
    if name == "MoERegressor":
        from moetheory.estimator import MoERegressor

        return MoERegressor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
