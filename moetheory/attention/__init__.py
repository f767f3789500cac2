"""Random-feature attention (RFA) simulator.

Reproduces the setting of *What can a Single Attention Layer Learn? A Study Through the
Random Features Lens* (Fu, Guo, Bai & Mei, NeurIPS 2023, arXiv 2307.11353): a layer of
``M`` attention heads with frozen random query-key matrices and trained value vectors,
fit by ridge regression, against a random-feature MLP baseline, on targets that are
permutation-invariant in the keys.  The paper's exact constants are **OPEN**; every one
is an explicit option of :class:`~moetheory.attention.experiment.AttentionConfig`.

Modules: :mod:`.inputs` (sphere inputs, argument checks), :mod:`.features` (feature maps,
blocked kernels, infinite-width kernel), :mod:`.targets` (target registry),
:mod:`.ridge` (dual/primal ridge paths), :mod:`.experiment` (presets, runner).
Nothing is computed at import.
"""
from .experiment import PRESETS, AttentionConfig, run_attention_experiment
from .features import (RFAFeatures, RFMLPFeatures, feature_matrix, identity_mean_scale,
                       kernel_matrix, rfa_kernel_infinite)
from .inputs import augment, make_rng, sample_inputs, sample_sphere
from .ridge import (ridge_path_dual, ridge_path_primal, ridge_predict, ridge_solve_dual,
                    ridge_solve_primal, select_lambda)
from .targets import TARGETS, Target, make_target

__all__ = [
    "AttentionConfig", "PRESETS", "run_attention_experiment",
    "RFAFeatures", "RFMLPFeatures", "feature_matrix", "kernel_matrix", "identity_mean_scale",
    "rfa_kernel_infinite", "augment", "make_rng", "sample_inputs", "sample_sphere",
    "ridge_path_dual", "ridge_path_primal", "ridge_predict", "ridge_solve_dual",
    "ridge_solve_primal", "select_lambda", "TARGETS", "Target", "make_target",
]
