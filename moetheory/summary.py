"""Text rendering of a FitResult, in the layout of statsmodels' summary tables."""
from __future__ import annotations

import warnings

import numpy as np
from statsmodels.iolib.table import SimpleTable

from moetheory.mle import SingularInformationWarning


def _gate_description(spec):
    if spec.gate == "topk":
        return f"top-{spec.top_k} ({spec.select_by})"
    if spec.gate == "activation":
        return f"activation ({spec.activation}, tau {spec.tau})"
    if spec.gate == "temperature":
        return f"temperature (tau {spec.tau})"
    return "softmax"


def render_summary(res, cov_type: str, alpha: float) -> str:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SingularInformationWarning)
        table = res.params_table(cov_type, alpha)
    singular = any(issubclass(w.category, SingularInformationWarning) for w in caught)
    left = [("Model:", "Gaussian MoE"), ("Gate:", _gate_description(res.spec)),
            ("Experts:", str(res.spec.n_experts)), ("No. Observations:", str(res.n_obs)),
            ("Df Model:", str(res.df_model)), ("Covariance Type:", cov_type)]
    right = [("Log-Likelihood:", f"{res.loglik:.4f}"), ("AIC:", f"{res.aic:.4f}"),
             ("BIC:", f"{res.bic:.4f}"), ("ICL:", f"{res.icl:.4f}"),
             ("Converged:", str(bool(res.converged))), ("Iterations:", str(res.n_iter))]
    top = SimpleTable([[a, b, c, d] for (a, b), (c, d) in zip(left, right)],
                      title="Gaussian Mixture-of-Experts Results")
    fmt = lambda v: "nan" if not np.isfinite(v) else f"{v:.4f}"  # noqa: E731
    rows = [[fmt(v) for v in row] for row in table.to_numpy()]
    params = SimpleTable(rows, headers=list(table.columns), stubs=list(table.index))
    notes = ["Notes:",
             "[1] The last expert's gate is the reference (pinned at zero); 'var' is the expert noise variance."]
    if singular:
        notes.append("[2] The information matrix is singular (over-fitted or non-identifiable model): "
                     "standard errors use a pseudo-inverse and are not reliable.")
    if res.var_floor_hit:
        notes.append(f"[{len(notes)}] The variance floor {res.var_floor:.3g} was hit during EM.")
    if not res.converged:
        notes.append(f"[{len(notes)}] EM did not converge in {res.n_iter} iterations.")
    return "\n".join([top.as_text(), params.as_text(), *notes])
