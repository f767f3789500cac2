"""Text rendering of a FitResult, in the layout of statsmodels' summary tables."""
from __future__ import annotations

import warnings

import numpy as np
from statsmodels.iolib.table import SimpleTable

from moetheory import mle
from moetheory.mle import SingularInformationWarning


def _gate_description(spec):
    if spec.gate == "topk":
        return f"top-{spec.top_k} ({spec.select_by})"
    if spec.gate == "activation":
        return f"activation ({spec.activation}, tau {spec.tau})"
    if spec.gate == "temperature":
        return f"temperature (tau {spec.tau})"
    return "softmax"


#: Logit change over one sd of x beyond which a gate counts as a step (e^-30 ≈ 1e-13).
STEP_LOGIT = 30.0


def _step_gates(res) -> list[str]:
    """Labels of gate slopes with |β_1j|·sd(x_j)/τ > STEP_LOGIT (relative to the reference)."""
    if res.spec.gate == "activation":  # σ saturates: a large slope is not a step of the logit
        return []
    sd = np.std(np.asarray(res.x), axis=0)
    slopes = np.asarray(res.params.beta1) - np.asarray(res.params.beta1)[-1]
    scaled = np.abs(slopes) * sd / float(res.params.tau)
    label = {(f, idx): lab for f, idx, lab in mle.free_layout(res.spec, res.x_names)}
    return [label[("beta1", (i, j))] for i in range(res.spec.n_experts - 1)
            for j in range(res.spec.dim) if scaled[i, j] > STEP_LOGIT]


def _gate_notes(res):
    """Gate-specific notes: normalisation, identifiability, what the standard errors mean."""
    spec, notes = res.spec, []
    tau = float(res.params.tau)
    if spec.gate == "activation":
        pinned = "beta0 and beta1" if spec.activation == "identity" else "beta0 only"
        notes.append(f"Activation gate: the last expert's {pinned} is pinned at zero; "
                     f"tau = {tau:.6g} ({spec.tau}" + (", log scale in estimation)." if spec.estimates_tau else ")."))
    if spec.gate == "temperature":
        if spec.estimates_tau:
            notes.append(f"Temperature gate, tau estimated: (beta, tau) is identified only up to a common scale; "
                         f"normalisation ||(beta0, beta1, tau)||_2 = 1 over the free gate entries and tau, "
                         f"giving tau = {tau:.6g}. Raw gate standard errors hold tau at this value; the "
                         "identified coordinates beta/tau are in the table 'Identified gate coordinates'.")
        else:
            notes.append(f"Temperature gate with known tau = {tau:.6g}.")
    if spec.gate == "topk" and spec.top_k < spec.n_experts:
        notes.append("Top-K gate: standard errors use the almost-everywhere derivatives of the log-likelihood "
                     "(active sets held at the estimate); the active-set boundaries are not regular parameters.")
    if res.unidentified:
        notes.append(f"Not identified (standard errors NaN): {', '.join(res.unidentified)}.")
    steep = _step_gates(res)
    if steep:
        notes.append(f"Near-step gate ({', '.join(steep)}): the logit changes by more than "
                     f"{STEP_LOGIT:g} over one standard deviation of x, so the gate is almost a hard "
                     "split of the data (as with separable data in logistic regression); the "
                     "likelihood barely constrains these slopes and their standard errors are not "
                     "reliable.")
    notes += [f"{message}" for message in res.identifiability_notes if spec.gate == "topk"]
    return notes


def fmt_number(v) -> str:
    """A table entry as statsmodels formats one (``statsmodels.iolib.summary.forg``): 4
    decimals in [1e-4, 1e4), else 4 significant digits (a variance of 2.1e-05 is not 0.0000).

    Examples
    --------
    >>> fmt_number(1.23456), fmt_number(2.1e-5), fmt_number(float("nan"))
    ('1.2346', '2.1e-05', 'nan')
    """
    from statsmodels.iolib.summary import forg

    return forg(float(v), prec=4).strip()


def _start_notes(res) -> list[str]:
    """How the starts went (data-driven fits): how many reached the maximum, what was set aside."""
    rep = res.starts_report()
    notes = []
    if rep["n_best_hits"] is not None and rep["min_best_hits"] is not None:
        notes.append(f"Starts: {rep['n_starts']} drawn ({', '.join(rep['kinds'])}); the maximum was "
                     f"reached by {rep['n_best_hits']} continued start(s) (asked for: "
                     f"{rep['min_best_hits']}).")
    for item in rep["set_aside"][:3]:
        notes.append(f"Set aside: a higher log-likelihood {item['loglik']:.4f} where {item['why']} "
                     "(a spurious maximum; EMConfig(spurious='keep') returns it).")
    if len(rep["set_aside"]) > 3:
        notes.append(f"... and {len(rep['set_aside']) - 3} more spurious maxima set aside.")
    if rep["floor_lowered"]:
        notes.append(f"The default variance floor was lowered to {res.var_floor:.3g}: an expert of "
                     "regular size sat on it (its noise is below 1e-4 of the response's sd).")
    return notes


def _polish_iters(res) -> int:
    return 0 if res.certificate is None else int(res.certificate.n_polish)


def render_summary(res, cov_type: str, alpha: float) -> str:
    """The text of :meth:`moetheory.results.FitResult.summary`.

    Parameters
    ----------
    res : FitResult
    cov_type : {"oim", "opg", "sandwich"}
        Covariance used for the standard errors.
    alpha : float
        Level of the (1 − alpha) confidence intervals.

    Returns
    -------
    str
        A header table (model, gate, observations, log-likelihood, AIC, BIC, ICL, convergence), a
        parameter table (coef, std err, z, P>|z|, confidence interval; one row per free
        parameter), for the temperature gate with τ estimated a table of the identified
        coordinates β/τ, and numbered notes (reference expert, singular information, variance
        floor, non-convergence, gate-specific identifiability).

    Examples
    --------
    >>> print(render_summary(res, "oim", 0.05))      # doctest: +SKIP
    """
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", SingularInformationWarning)
        table = res.params_table(cov_type, alpha)
    # The covariance is cached on the result: when it was computed (and warned) before this
    # call, no warning is raised here, so also read the cached singular flag.
    singular = (any(issubclass(w.category, SingularInformationWarning) for w in caught)
                or bool(res._cov(cov_type)[1]))
    left = [("Model:", "Gaussian MoE"), ("Gate:", _gate_description(res.spec)),
            ("Experts:", str(res.spec.n_experts)), ("No. Observations:", str(res.n_obs)),
            ("Df Model:", str(res.df_model)), ("Covariance Type:", cov_type)]
    right = [("Log-Likelihood:", f"{res.loglik:.4f}"), ("AIC:", f"{res.aic:.4f}"),
             ("BIC:", f"{res.bic:.4f}"), ("ICL:", f"{res.icl:.4f}"),
             ("Certified max:", str(bool(res.converged))),
             ("Iterations:", f"{res.n_iter} EM + {_polish_iters(res)} Newton")]
    top = SimpleTable([[a, b, c, d] for (a, b), (c, d) in zip(left, right)],
                      title="Gaussian Mixture-of-Experts Results")
    rows = [[fmt_number(v) for v in row] for row in table.to_numpy()]
    params = SimpleTable(rows, headers=list(table.columns), stubs=list(table.index))
    notes = ["Notes:",
             "[1] The last expert's gate is the reference (pinned at zero); 'var' is the expert noise variance."]
    if singular:
        notes.append(f"[2] The information matrix is singular or indefinite, "
                     f"{res.information_rank(cov_type)} (an over-fitted or non-identifiable model): "
                     "standard errors use a pseudo-inverse and are not reliable.")
    if res.var_floor_hit:
        notes.append(f"[{len(notes)}] The variance floor {res.var_floor:.3g} was hit during EM.")
    cert = res.certificate
    if cert is not None:
        gap = f"{cert.gap:.2g}" if np.isfinite(cert.gap) else "not computed"
        if res.converged:
            notes.append(f"[{len(notes)}] Certified maximum: a Newton step would gain {gap} nats "
                         f"(score max {cert.score_norm:.2g}; Hessian negative definite, smallest "
                         f"scaled eigenvalue {cert.min_eig:.2g}).")
        else:
            notes.append(f"[{len(notes)}] NOT certified as a maximum ({cert.reason}): a Newton step "
                         f"would gain {gap} nats; the estimate may not be the MLE.")
    for note in _start_notes(res):
        notes.append(f"[{len(notes)}] {note}")
    for note in _gate_notes(res):
        notes.append(f"[{len(notes)}] {note}")
    blocks = [top.as_text(), params.as_text()]
    ident = res.identified_table(cov_type) if res.spec.gate == "temperature" and res.spec.estimates_tau else None
    if ident is not None:
        rows = [[fmt_number(v) for v in row] for row in ident.to_numpy()]
        blocks.append(SimpleTable(rows, headers=list(ident.columns), stubs=list(ident.index),
                                  title="Identified gate coordinates beta/tau").as_text())
    return "\n".join([*blocks, *notes])
