"""Text rendering of a FitResult, in the layout of statsmodels' summary tables."""
from __future__ import annotations

import warnings

import numpy as np
from statsmodels.iolib.table import SimpleTable

from moetheory import mle
from moetheory.mle import SingularInformationWarning


#: Logit change over one sd of x beyond which a gate counts as a step (e^-30 ≈ 1e-13).
STEP_LOGIT = 30.0


def _step_gates(res) -> list[str]:
    """Labels of gate slopes whose logit changes by more than STEP_LOGIT over one sd of x (the
    gate's :meth:`~moetheory.gates.Gate.step_slopes`: softmax-type gates relative to the
    reference, divided by τ; none for the activation gate, whose σ saturates)."""
    sd = np.std(np.asarray(res.x), axis=0)
    steps = res.spec.gate_family.step_slopes(res.spec, res.params, sd)
    label = {(f, idx): lab for f, idx, lab in mle.free_layout(res.spec, res.x_names)}
    return [label[("beta1", (i, j))] for i, j in steps]


def _gate_notes(res):
    """Gate-specific notes: normalisation, identifiability, what the standard errors mean."""
    spec = res.spec
    first, last = spec.gate_family.summary_notes(spec, res)
    notes = list(first)
    if res.unidentified:
        notes.append(f"Not identified (standard errors NaN): {', '.join(res.unidentified)}.")
    steep = _step_gates(res)
    if steep:
        notes.append(f"Near-step gate ({', '.join(steep)}): the logit changes by more than "
                     f"{STEP_LOGIT:g} over one standard deviation of x, so the gate is almost a hard "
                     "split of the data (as with separable data in logistic regression); the "
                     "likelihood barely constrains these slopes and their standard errors are not "
                     "reliable.")
    return notes + list(last)


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
                     f"reached by {rep['n_best_hits']} continued start(s) in "
                     f"{rep['n_best_rounds']} independent round(s) (asked for: "
                     f"{rep['min_best_hits']} rounds)"
                     + ("." if rep["new_maximum_rate"] is None else
                        f"; estimated chance that one more round finds a new maximum "
                        f"{rep['new_maximum_rate']:.2f} (asked for: at most "
                        f"{res.estimator.max_new_rate:g})."))
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
    gate = res.spec.gate_family
    family = "Student-t" if res.spec.t_experts else "Gaussian"
    left = [("Model:", f"{family} MoE"), ("Gate:", gate.describe(res.spec)),
            ("Experts:", str(res.spec.n_experts)), ("No. Observations:", str(res.n_obs)),
            ("Df Model:", str(res.df_model)), ("Covariance Type:", cov_type)]
    right = [("Log-Likelihood:", f"{res.loglik:.4f}"), ("AIC:", f"{res.aic:.4f}"),
             ("BIC:", f"{res.bic:.4f}"), ("ICL:", f"{res.icl:.4f}"),
             ("Certified max:", str(bool(res.converged))),
             ("Iterations:", f"{res.n_iter} EM + {_polish_iters(res)} Newton")]
    top = SimpleTable([[a, b, c, d] for (a, b), (c, d) in zip(left, right)],
                      title=f"{family} Mixture-of-Experts Results")
    rows = [[fmt_number(v) for v in row] for row in table.to_numpy()]
    params = SimpleTable(rows, headers=list(table.columns), stubs=list(table.index))
    reference = gate.reference_note
    if res.spec.t_experts:  # 'var' is a scale², said in the next note
        reference = reference.replace("; 'var' is the expert noise variance.", ".")
    notes = ["Notes:", f"[1] {reference}"]
    if res.spec.t_experts:
        df = ("estimated ('df' rows)" if res.spec.estimates_df
              else f"fixed at {res.spec.t_df:g}")
        notes.append(f"[{len(notes)}] The experts are Student t: location a'x+b, scale^2 'var' (not "
                     f"the noise variance, which is var*df/(df-2) for df > 2) and degrees of "
                     f"freedom df, {df}.")
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
    ident = res.identified_table(cov_type) if res.spec.estimates_tau else None
    if ident is not None:
        rows = [[fmt_number(v) for v in row] for row in ident.to_numpy()]
        blocks.append(SimpleTable(rows, headers=list(ident.columns), stubs=list(ident.index),
                                  title="Identified gate coordinates beta/tau").as_text())
    return "\n".join([*blocks, *notes])
