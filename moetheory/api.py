"""The statistical API: ``fit(x, y, n_experts=...)`` (its scikit-learn estimator,
``MoERegressor``, is in :mod:`moetheory.estimator`)."""
from __future__ import annotations

import dataclasses
import numbers
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from moetheory._jax import ensure_x64
from moetheory.em.config import EMConfig
from moetheory.em.config import named as named_estimator
from moetheory.em.pipeline import (ROUNDS_PER_MAXIMUM, default_var_floor, run_pipeline,
                                   search_covered)
from moetheory.mle import free_layout, identifiability_notes, warn_once
from moetheory.params import MoEParams, check_params
from moetheory.results import FitResult, as_numpy_params
from moetheory.spec import MoESpec
from moetheory.standardize import (DataScale, data_scale, from_standard, identity_standardizer,
                                   standard_spec, to_standard)
from moetheory.validation import (check_scale, check_weights, check_xy, covariate_names,
                                  frozen_copy)


class ConvergenceWarning(UserWarning):
    """The estimate is not certified as a maximum of the log-likelihood: its certificate
    (:class:`moetheory.em.certify.Certificate`) names why (an estimated remaining gain above
    ``cert_tol``, a saddle point, a variance on the floor).

    Issued by :func:`moetheory.fit`; the result is still returned (``converged`` is False).

    Examples
    --------
    >>> import warnings
    >>> issubclass(ConvergenceWarning, UserWarning)
    True
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", ConvergenceWarning)  # silence it in a loop of fits
    """


class VarianceFloorWarning(UserWarning):
    """The chosen fit has an expert whose variance sits on the floor ``var_floor``: either every
    continued start collapsed onto a few points (the likelihood of a mixture is unbounded
    there), or an expert of many observations fits them (almost) exactly and the noise is
    smaller than the floor. The message says which, and what to change. Issued by
    :func:`moetheory.fit`; ``FitResult.var_floor_hit`` is True.

    Examples
    --------
    >>> issubclass(VarianceFloorWarning, UserWarning)
    True
    """


class SpuriousSolutionWarning(ConvergenceWarning):
    """No regular maximum was found: the returned fit has an expert fitted to a few
    observations or a gate that is a step on the data (:mod:`moetheory.em.spurious`); the
    message names the expert and the fix (usually fewer experts).

    Examples
    --------
    >>> issubclass(SpuriousSolutionWarning, ConvergenceWarning)
    True
    """


class GaussianLimitWarning(UserWarning):
    """A t expert's estimated degrees of freedom ν ran beyond the range EM searches
    (:data:`moetheory.spec.T_DF_BOUNDS`, 1000): the likelihood keeps rising as ν → ∞, so that
    expert's noise shows no heavy tail (the Gaussian limit) and its ν — and ν's standard error —
    mean nothing. Issued by :func:`moetheory.fit`; the rest of the fit stands.

    Examples
    --------
    >>> issubclass(GaussianLimitWarning, UserWarning)
    True
    """


class MultistartWarning(UserWarning):
    """The best log-likelihood was reached in fewer independent rounds of starts than
    ``EMConfig.min_best_hits`` within ``max_starts`` starts: a higher maximum may exist.
    ``FitResult.n_best_rounds`` and ``n_best_hits`` say how many rounds and starts reached it.

    Examples
    --------
    >>> issubclass(MultistartWarning, UserWarning)
    True
    """


#: fit()'s keyword arguments that are fields of EMConfig (None: the estimator's value)
_EM_FIELDS = ("init", "n_init", "n_keep", "tol", "max_iter", "var_floor", "polish",
              "acceleration", "cert_tol", "max_starts", "spurious")

_REASONS = {
    "gap": "a Newton step would still gain {gap:.3g} nats (more than cert_tol={tol:g})",
    "saddle": "the Hessian of the log-likelihood is not negative definite there (a saddle point)",
    "flat": "the log-likelihood is flat along some direction there (not an isolated maximum, "
            "e.g. a gate slope running off to a step)",
    "variance_floor": "an expert's variance sits on the floor var_floor",
    "nonfinite": "the log-likelihood or its derivatives are not finite there",
    "not_checked": "the certificate could not be computed",
}


def fit(x, y, n_experts: int, gate="softmax", *, top_k: int | None = None,
        select_by: str = "score", activation: str | None = None, tau: str | float = "fixed",
        tau_value: float | None = None, estimator: EMConfig | str | None = None,
        init: str | None = None, n_init: int | None = None, n_keep: int | None = None,
        truth: MoEParams | None = None, tol: float | None = None, max_iter: int | None = None,
        var_floor: float | None = None, polish: str | None = None,
        acceleration: str | None = None, cert_tol: float | None = None,
        max_starts: int | None = None, spurious: str | None = None, seed: int = 0,
        cov_type: str = "oim", gate_options: dict | None = None,
        em_backend: str | None = None, x_names=None, weights=None, expert_covariates=None,
        gate_covariates=None, equal_var: bool = False, experts: str = "gaussian",
        t_df: float | None = None) -> FitResult:
    """Fit a Gaussian mixture of linear experts by maximum likelihood, with a certificate.

    Several EM starts, the most promising continued, each finished by Newton's method on the
    observed log-likelihood and certified (:mod:`moetheory.em.pipeline`); the best is returned.
    From data-driven starts (the default) rounds of starts are drawn until the best maximum has
    been reached in two independent rounds (``EMConfig.min_best_hits``) or ``max_starts`` were
    tried, and
    spurious maxima — an expert on a few observations, a step gate — are set aside when a
    regular one exists (:mod:`moetheory.em.spurious`); ``summary()`` and ``to_dict()`` report
    both.

    Parameters
    ----------
    x : array (n, d) or (n,), or a pandas DataFrame / named Series
        Covariates. A DataFrame's column names label the parameters and are matched by name in
        ``predict`` (the data are copied: later changes to x or y do not reach the result).
    y : array (n,)
        Responses (not all equal).
    n_experts : int
        Number of experts k.
    gate : str or moetheory.gates.Gate
        A registered gate name (``"softmax"``, ``"topk"``, ``"temperature"``, ``"activation"``,
        ``"sigmoid"``, ``"gaussian"``, or one added by :func:`moetheory.gates.register_gate`) or a
        gate object — e.g. one defined in your own code (docs/tutorials/custom-gate.md). The Gaussian gate
        models x as well: its fit maximises the joint likelihood of (x, y).
    top_k, select_by, activation : gate options, see :class:`MoESpec`.
    tau : {"fixed", "estimated"} or float
        Temperature of the temperature and activation gates: ``"fixed"`` (known, the value
        ``tau_value``), ``"estimated"``, or a number > 0 (shorthand for ``tau="fixed",
        tau_value=number``). With τ estimated the temperature gate is identified only up to a
        common scale of (β, τ): see docs/gates.md and ``FitResult.identified_params``.
    tau_value : float, optional
        The known τ > 0 when τ is fixed. Default: the start's τ (1 for data-driven starts,
        ``truth.tau`` for near-truth starts).
    estimator : EMConfig or str, optional
        The estimator (:class:`moetheory.EMConfig`, or a name of
        :data:`moetheory.em.config.ESTIMATORS`: ``"mle"``, the default, or ``"official"``, the
        softmax paper's protocol). The keyword arguments below override its fields.
    init : {"auto", "kmeans", "random", "lines", "paper", "perturb"}
        ``"auto"`` (default) cycles through random lines, k-means on standardised (x, y) and
        random partitions; ``"paper"``/``"perturb"`` start near ``truth`` (simulation studies).
    n_init : int, optional
        Number of starts (default 12 for "auto" and the data-driven modes, 1 near the truth);
        data-driven starts: per round of the start policy.
    n_keep : int
        Starts continued after a short (20-iteration) run of all of them (default 3).
    truth : MoEParams, optional
        True parameters for the near-truth initialisations.
    tol : float
        EM stops when the mean log-likelihood per observation changes by at most ``tol``
        (default 1e-8); the polish then finishes the maximisation.
    max_iter : int
        Maximum EM iterations of each continued start (default 5000).
    var_floor : float, optional
        Minimum expert variance (default :func:`default_var_floor`: 1e-8 times a robust
        variance of y); reported when it binds, with a :class:`VarianceFloorWarning` when the
        chosen fit sits on it.
    polish : {"newton", "none"}
        Finish by a trust-region Newton maximisation of the observed log-likelihood (default).
    acceleration : {"none", "squarem"}
        Extrapolate the EM iterations (SQUAREM with a monotone safeguard).
    cert_tol : float
        Largest estimated remaining log-likelihood gain (nats) that certifies (default 1e-6).
    max_starts : int
        Data-driven starts: the most starts the start policy draws (default 96) while the best
        maximum has been reached in fewer than ``EMConfig.min_best_hits`` (2) rounds.
    spurious : {"reject", "keep"}
        Data-driven starts: ``"reject"`` (default) returns the best regular maximum whenever
        one was found; ``"keep"`` the raw highest log-likelihood (:mod:`moetheory.em.spurious`).
    seed : int
        Seed of the starts: same seed, same machine → identical numbers.
    cov_type : {"oim", "opg", "sandwich"}
        Default covariance for standard errors and ``summary()``.
    gate_options : dict, optional
        Options of the gate M-step (``spec.gate_family.step_options``): ``max_newton`` (inner
        Newton steps per EM iteration, default 1: the ECM step), ``newton_tol``; for
        ``gate="topk"`` also ``method`` (``"gem"``: generalised EM on the E-step's active sets,
        default; ``"direct"``: Newton on the observed log-likelihood over the gate) and
        ``max_halvings``.
    em_backend : {"auto", "numba", "numpy", "jax"}, optional
        Who runs EM: ``"auto"`` (default, or ``$MOETHEORY_EM_BACKEND``) uses, for the softmax
        gate on CPU, its NumPy path on small data (n·k ≤ 10,000: nothing to compile) and the
        fused Numba kernel on every core otherwise, and JAX for the other gates; all give the
        same estimate to rounding (:mod:`moetheory.em.backend`).
    x_names : sequence of str, optional
        Names of the covariates of an array ``x`` (default ``x1 .. xd``; a DataFrame's own
        column names are used).
    weights : array (n,), optional
        Case (frequency) weights ≥ 0, as flexmix's ``weights``: a row of weight w counts w
        times in the log-likelihood, the EM steps, the standard errors and ``n_obs`` (Σ w, used
        by BIC); 0 leaves a row out. Integer weights give the fit of the data with each row
        repeated w times, up to the starts drawn.
    expert_covariates, gate_covariates : sequence of column names or indices of x, optional
        The columns of x that enter the experts' regressions and the gate's logits (default:
        every column for both), as flexmix's ``y ~ x`` with ``concomitant = FLXPmultinom(~ z)``:
        pass x with the union of the columns. ``gate_covariates=[]`` is a gate without
        covariates (constant mixing proportions: a mixture of regressions, flexmix's default);
        ``expert_covariates=[]`` experts with an intercept only. Softmax and sigmoid gates;
        the fit runs EM in JAX (:attr:`MoESpec.cpu_kernels`). ``moetheory.formula`` builds x
        and both lists from a formula such as ``"y ~ x + I(x**2) | z"``.
    equal_var : bool
        One noise variance for every expert (mixtools ``regmixEM(arbvar = FALSE)``), estimated
        by the pooled residual variance; default False (each expert its own). Runs EM in JAX.
    experts : {"gaussian", "t"}
        The experts' noise. ``"t"``: Student-t experts (meteorits ``tmixreg``; Peel & McLachlan
        2000), y | x, expert i ~ t_ν_i(a_iᵀx + b_i, scale² ``var``_i), robust to outlying y; the
        parameters gain ``extra["df"]`` (ν, (k,)), fitted by ECM in JAX.
    t_df : float, optional
        t experts: a known ν > 0 for every expert; None (default) estimates each expert's ν
        (searched in [0.1, 1000]).

    Returns
    -------
    FitResult

    Examples
    --------
    >>> import numpy as np, moetheory as mt
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-1, 1, 500)
    >>> z = rng.random(500) < 1 / (1 + np.exp(-4 * x))        # expert 1 with probability g_1(x)
    >>> y = np.where(z, 1 + 2 * x, -1 - x) + 0.3 * rng.standard_normal(500)
    >>> res = mt.fit(x, y, n_experts=2)
    >>> bool(res.converged), res.certificate.reason
    (True, 'certified')
    """
    ensure_x64()
    names = covariate_names(x, x_names)
    x, y = check_xy(x, y)
    x, y = frozen_copy(x), frozen_copy(y)
    if weights is not None:
        weights = frozen_copy(check_weights(weights, x.shape[0]))
    if names is not None and len(names) != x.shape[1]:
        raise ValueError(f"x_names has {len(names)} name(s) but x has {x.shape[1]} column(s)")
    check_scale(x, y, names)
    if np.ptp(y) == 0:
        raise ValueError(f"y is constant (every value is {float(y[0])!r}): a mixture of Gaussian experts "
                         "needs variation in y (its likelihood is unbounded here)")
    if isinstance(n_experts, bool) or not isinstance(n_experts, (int, np.integer)) or n_experts < 1:
        raise ValueError(f"n_experts must be a positive integer; got {n_experts!r}")
    tau, tau_value = _check_tau(tau, tau_value)
    spec = MoESpec(int(n_experts), x.shape[1], gate=gate, top_k=top_k, select_by=select_by,
                   activation=activation, tau=tau,
                   expert_columns=_columns("expert_covariates", expert_covariates, names, x.shape[1]),
                   gate_columns=_columns("gate_covariates", gate_covariates, names, x.shape[1]),
                   equal_var=equal_var, experts=experts, t_df=t_df)
    if spec.restricted:
        used = set(spec.gate_columns or range(spec.dim)) | set(spec.expert_columns or range(spec.dim))
        unused = [j for j in range(spec.dim) if j not in used]
        if spec.gate_columns is not None and spec.expert_columns is not None and unused:
            label = names[unused[0]] if names is not None else f"column {unused[0]}"
            raise ValueError(f"x column {label!r} is in neither expert_covariates nor "
                             "gate_covariates: drop it from x or name it in one of them")
    _check_tau_gate(spec, tau_value)
    gate_options = _check_gate_options(spec, gate_options, tau_value)
    for key, message in identifiability_notes(spec):
        warn_once(key, message)
    n_free = len(free_layout(spec))
    n_rows = x.shape[0] if weights is None else int(np.count_nonzero(weights))
    if n_rows <= n_free:
        raise ValueError(f"x and y have n={n_rows} rows{'' if weights is None else ' of positive weight'}, "
                         f"but a {spec.n_experts}-expert model with d={spec.dim} has {n_free} free "
                         "parameters: n must exceed that")
    config = _estimator(estimator, gate_options, init=init, n_init=n_init, n_keep=n_keep, tol=tol,
                        max_iter=max_iter, var_floor=var_floor, polish=polish,
                        acceleration=acceleration, cert_tol=cert_tol, max_starts=max_starts,
                        spurious=spurious)
    if truth is not None:
        if not isinstance(truth, MoEParams):
            raise TypeError(f"truth must be MoEParams; got {type(truth).__name__}")
        if truth.dim != spec.dim:
            raise ValueError(f"truth has dim {truth.dim} but x has {spec.dim} column(s)")
    if config.near_truth and truth is None:
        raise ValueError(f"init={config.init!r} starts near the truth: pass truth=MoEParams(...)")
    from moetheory.mle import COV_TYPES

    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer; got {seed!r} ({type(seed).__name__})")
    if not -2**63 <= seed < 2**63:  # JAX keys are made from a 64-bit integer
        raise ValueError(f"seed must fit in a signed 64-bit integer (-2**63 <= seed < 2**63); got {seed!r}")
    if cov_type not in COV_TYPES:
        raise ValueError(f"cov_type must be one of {COV_TYPES}; got {cov_type!r}")
    # The pipeline runs in standardised coordinates (x̃, ỹ): better conditioned EM, and a
    # polish and certificate that do not depend on the units of x and y (ℓ = ℓ̃ − n·log s_y).
    # Near-truth starts keep the data's units: their documented noise (and the studies') is in
    # the truth's coordinates.
    ds = (DataScale(identity_standardizer(x.shape[1]), 0.0, 1.0) if config.near_truth
          else data_scale(spec, x, y))
    y_std = (y - ds.y_center) / ds.y_scale
    # None: the pipeline's default floor (default_var_floor), which it may lower for an expert
    # of regular size whose noise is below it
    floor = None if config.var_floor is None else config.var_floor / ds.y_scale ** 2
    res = run_pipeline(jax.random.key(seed), standard_spec(spec, ds.x), ds.x.apply(x), y_std, config,
                       truth=None if truth is None else to_standard(truth, ds, spec), var_floor=floor,
                       em_backend=em_backend, weights=weights)
    n_obs = x.shape[0] if weights is None else float(weights.sum())
    shift = n_obs * np.log(ds.y_scale)
    if spec.gate_family.joint:  # the density of x̃ = (x − m)/s too: ℓ = ℓ̃ − n Σ_j log s_j
        shift = shift + n_obs * float(np.sum(np.log(ds.x.scale)))
    res = res._replace(loglik=res.loglik - shift, trace=res.trace - shift,
                       start_logliks=res.start_logliks - shift,
                       var_floor=res.var_floor * ds.y_scale ** 2,
                       set_aside=tuple((ll - shift, a) for ll, a in res.set_aside))
    params = from_standard(as_numpy_params(res.params), ds, spec)
    params = as_numpy_params(spec.gate_family.finalise(spec, params))  # the reported representative
    check_params(spec, params)
    if not np.isfinite(res.loglik):
        raise FloatingPointError("every EM start ended with a non-finite log-likelihood; "
                                 "check the data scale or try another seed/init")
    _warn_about(res, config, params, x.shape[0])
    if spec.estimates_df:
        from moetheory.spec import T_DF_BOUNDS

        df = np.asarray(params.extra["df"])
        for i in np.flatnonzero(df > T_DF_BOUNDS[1]):
            warnings.warn(f"expert {i + 1}'s degrees of freedom ran to the Gaussian limit (ν̂ = "
                          f"{df[i]:.3g} > {T_DF_BOUNDS[1]:g}): its noise has no heavy tail, so its "
                          "ν and ν's standard error mean nothing; refit with t_df fixed (e.g. "
                          "t_df=30) or with Gaussian experts.", GaussianLimitWarning, stacklevel=2)
    return FitResult(spec=spec, params=params, loglik=float(res.loglik), n_obs=n_obs,
                     n_iter=int(res.n_iter), converged=bool(res.certificate.certified),
                     trace=res.trace, var_floor=float(res.var_floor),
                     var_floor_hit=bool(res.floor_hit), start_kinds=res.start_kinds,
                     start_logliks=np.asarray(res.start_logliks), x=x, y=y, cov_type=cov_type,
                     x_names=names, certificate=res.certificate,
                     em_converged=bool(res.converged), estimator=config,
                     n_best_hits=int(res.n_best_hits), n_best_rounds=int(res.n_best_rounds),
                     new_maximum_rate=float(res.new_maximum_rate) if res.assessments else None,
                     regular=res.regular,
                     set_aside=tuple((float(ll), a.describe()) for ll, a in res.set_aside),
                     floor_lowered=bool(res.floor_lowered),
                     spurious_cause=None if not res.assessments else
                     res.assessments[list(res.continued).index(res.best_start)].cause,
                     weights=weights)


def fit_formula(formula: str, data, n_experts: int, **kwargs) -> FitResult:
    """Fit a mixture of experts given by a formula: ``"y ~ experts' terms | gate's terms"``.

    The formula is evaluated by :func:`moetheory.formula.parse` (formulaic): left of ``|`` the
    experts' regression, right of it the gate's covariates (flexmix's ``y ~ x`` with
    ``concomitant = FLXPmultinom(~ z)``); without ``|`` both use the same terms, ``| 1`` is a
    gate without covariates. Rows with a missing value in any variable are dropped. Then
    :func:`fit` with ``expert_covariates`` and ``gate_covariates`` set; ``predict`` and
    ``gate_probabilities`` of the result take new data with the raw variables.

    Parameters
    ----------
    formula : str, e.g. ``"y ~ x + I(x**2) | z"``
    data : pandas.DataFrame (or a mapping of column name -> array)
    n_experts : int
    **kwargs : every other keyword argument of :func:`fit` (not x, y, x_names,
        expert_covariates, gate_covariates)

    Returns
    -------
    FitResult, with ``formula`` the :class:`moetheory.formula.ModelFrame`

    Examples
    --------
    >>> import numpy as np, pandas as pd, moetheory as mt
    >>> rng = np.random.default_rng(1)
    >>> df = pd.DataFrame({"x": rng.uniform(0, 4, 300), "z": rng.normal(size=300)})
    >>> df["y"] = np.where(rng.random(300) < 1 / (1 + np.exp(-2 * df.z)), df.x ** 2, 2 - df.x)
    >>> df["y"] += 0.2 * rng.standard_normal(300)
    >>> res = mt.fit_formula("y ~ x + I(x**2) | z", df, n_experts=2)
    >>> res.x_names, res.spec.gate_columns
    (('x', 'I(x ** 2)', 'z'), (2,))
    >>> res.predict(df.head(2)).shape         # raw variables: the formula builds the columns
    (2,)
    """
    from moetheory.formula import parse

    clash = sorted({"x", "y", "x_names", "expert_covariates", "gate_covariates"} & set(kwargs))
    if clash:
        raise TypeError(f"fit_formula takes the covariates from the formula; remove {clash}")
    frame = parse(formula, data)
    res = fit(frame.x, frame.y, n_experts, expert_covariates=list(frame.expert_covariates),
              gate_covariates=list(frame.gate_covariates), **kwargs)
    return dataclasses.replace(res, formula=frame)


def _columns(what: str, value, names, d: int):
    """The column indices (tuple) that ``expert_covariates`` / ``gate_covariates`` name, or
    None for every column."""
    if value is None:
        return None
    if isinstance(value, (str, bytes, numbers.Number)):
        value = [value]  # one column
    cols = []
    for v in value:
        if isinstance(v, str):
            known = list(names) if names is not None else [f"x{j + 1}" for j in range(d)]
            if v not in known:
                raise ValueError(f"{what}: {v!r} is not a column of x; the columns are {known}")
            cols.append(known.index(v))
        elif isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v < d:
            cols.append(int(v))
        else:
            raise ValueError(f"{what} must hold column names or indices 0..{d - 1} of x; got {v!r}")
    if len(set(cols)) != len(cols):
        raise ValueError(f"{what} names a column twice: {list(value)!r}")
    return tuple(sorted(cols))


def _warn_about(res, config: EMConfig, params, n: int) -> None:
    """fit()'s warnings: each names the cause and what to change (stacklevel: fit's caller)."""
    cert = res.certificate
    verdict = None
    if res.assessments:
        verdict = res.assessments[list(res.continued).index(res.best_start)]
    n_starts = len(res.start_kinds)
    if res.floor_hit:
        on = np.flatnonzero(np.asarray(params.var) <= res.var_floor * (1 + 1e-9))
        sizes = None if verdict is None else verdict.sizes[on]
        if sizes is not None and np.all(sizes >= verdict.min_count):
            i = int(on[0])
            if config.var_floor is not None:
                why = (f"expert {i + 1} (an effective size of {sizes[0]:.4g} observations: not a "
                       f"spike) has its variance on var_floor={res.var_floor:.3g}, so its noise is "
                       f"at most that small and the floor decides its σ̂ = {np.sqrt(res.var_floor):.3g}. "
                       "Pass a smaller var_floor (or leave it at its default, which is lowered "
                       "automatically for an expert like this one).")
            else:
                why = (f"expert {i + 1} fits its {sizes[0]:.4g} observations exactly: its variance "
                       f"sits on the variance floor even after lowering it to var_floor="
                       f"{res.var_floor:.3g} (1e-24 of the response's variance), e.g. responses that "
                       "lie exactly on a line or repeat one value (censoring). Remove or model "
                       "those observations, or use fewer experts.")
        else:
            why = (f"every continued EM start put an expert's variance on the floor var_floor="
                   f"{res.var_floor:.3g}: the fit is a degenerate spike on a few points, not an "
                   f"estimate. Try fewer experts, more starts (max_starts), another seed, or a "
                   "smaller var_floor if the noise is truly that small.")
        warnings.warn(why, VarianceFloorWarning, stacklevel=3)
    elif verdict is not None and verdict.cause in ("small_expert", "step_gate"):
        fix = ("use fewer experts, or EMConfig(min_size=...) if an expert this small is real"
               if verdict.cause == "small_expert" else
               "the experts may still be usable, but a gate slope is not estimable: the regimes "
               "switch sharply in the covariate (report the switch point, not the slope), or use "
               "fewer experts if the step isolates a few observations")
        what = ("spurious='keep' returned the raw highest maximum" if config.spurious == "keep"
                else f"no regular maximum was found in {n_starts} starts")
        warnings.warn(f"{what}: in the returned fit {verdict.describe()}, a spurious maximum of "
                      f"the likelihood; {fix}.", SpuriousSolutionWarning, stacklevel=3)
    elif not cert.certified:
        why = _REASONS.get(cert.reason, cert.reason).format(gap=cert.gap, tol=config.cert_tol)
        if not res.converged:
            why += f" (EM stopped at max_iter={config.max_iter} before its stopping rule)"
        hint = ("try polish='newton' (the default), a larger max_iter or a smaller tol"
                if config.polish == "none"
                else "try more starts (max_starts), a larger max_iter, or fewer experts")
        warnings.warn(f"the estimate is not certified as a maximum of the log-likelihood: {why}; "
                      f"{hint}.", ConvergenceWarning, stacklevel=3)
    if not res.assessments or res.params.var.size == 1:
        return
    few = res.n_best_rounds < config.min_best_hits
    rugged = res.new_maximum_rate > config.max_new_rate
    thin = not rugged and not search_covered(config, res.new_maximum_rate, res.n_rounds,
                                             res.n_maxima)
    if few or rugged or thin:
        why = []
        if few:
            why.append(f"the best log-likelihood found ({res.loglik:.6g}) was reached in "
                       f"{res.n_best_rounds} of {res.n_rounds} independent rounds of starts, fewer "
                       f"than min_best_hits={config.min_best_hits}")
        if rugged:
            why.append(f"the chance that one more round reaches a maximum no round reached is "
                       f"estimated at {res.new_maximum_rate:.2f} (Good-Turing, by rounds), above "
                       f"max_new_rate={config.max_new_rate:g}: the likelihood has maxima the "
                       "starts have not covered")
        if thin:
            why.append(f"the rounds reached {res.n_maxima} distinct maxima in {res.n_rounds} "
                       f"rounds, fewer than {ROUNDS_PER_MAXIMUM} rounds per maximum besides the "
                       "best, too few to estimate whether a round would find a new one")
        warnings.warn(f"after {n_starts} starts (max_starts={config.max_starts}; "
                      f"{res.n_best_hits} of the {len(res.continued)} continued starts reached the "
                      f"best ℓ = {res.loglik:.6g}) {' and '.join(why)}: a higher maximum may exist. "
                      "Try a larger max_starts, or fewer experts.", MultistartWarning, stacklevel=3)


def _estimator(estimator, gate_options, **given) -> EMConfig:
    """The EMConfig of a fit: ``estimator`` (default ``"mle"``) with the given fields changed."""
    if estimator is None:
        base = EMConfig()
    elif isinstance(estimator, str):
        base = named_estimator(estimator)
    elif isinstance(estimator, EMConfig):
        base = estimator
    else:
        raise TypeError(f"estimator must be an EMConfig or a name; got {type(estimator).__name__}")
    changes = {k: v for k, v in given.items() if v is not None}
    opts = dict(gate_options)
    if "max_newton" in opts:
        changes["max_newton"] = opts.pop("max_newton")
    changes["gate_options"] = tuple(sorted(opts.items()))
    try:
        return base.with_(**changes)
    except ValueError as err:
        raise ValueError(str(err).replace("estimator ", "", 1)) from None


def _check_tau(tau, tau_value):
    """Normalise (tau, tau_value): a number for ``tau`` means a known temperature."""
    if isinstance(tau, (int, float, np.integer, np.floating)) and not isinstance(tau, bool):
        if tau_value is not None:
            raise ValueError(f"give the known temperature either as tau={tau!r} or as "
                             f"tau_value={tau_value!r}, not both")
        tau, tau_value = "fixed", tau
    if tau_value is not None:
        if isinstance(tau_value, bool) or not isinstance(tau_value, (int, float, np.integer, np.floating)):
            raise TypeError(f"tau_value must be a number > 0; got {tau_value!r} ({type(tau_value).__name__})")
        if not (np.isfinite(tau_value) and tau_value > 0):
            raise ValueError(f"tau_value (the known temperature τ) must be a finite number > 0; got {tau_value!r}")
        if tau != "fixed":
            raise ValueError(f"tau_value={tau_value!r} is the known temperature of tau='fixed'; got tau={tau!r}")
        tau_value = float(tau_value)
    return tau, tau_value


def _check_tau_gate(spec, tau_value) -> None:
    """A known temperature needs a gate with a temperature."""
    if tau_value is not None and not spec.has_tau:
        from moetheory.gates import GATES

        with_tau = [n for n, g in GATES.items() if getattr(g, "has_tau", False)]
        raise ValueError(f"a temperature (tau_value={tau_value!r}) needs gate "
                         f"{' or '.join(repr(n) for n in with_tau)}; got gate={spec.gate_name!r}")


def _check_gate_options(spec, gate_options, tau_value) -> dict:
    """Validate ``gate_options`` for the gate and add the known temperature."""
    if gate_options is None:
        gate_options = {}
    if not isinstance(gate_options, dict):
        raise TypeError(f"gate_options must be a dict; got {type(gate_options).__name__}")
    gate = spec.gate_family
    allowed = tuple(gate.step_options)
    unknown = sorted(set(gate_options) - set(allowed))
    if unknown:
        raise ValueError(f"gate_options {unknown} are not options of gate={spec.gate_name!r}; expected some of {allowed}")
    opts = gate.check_options(dict(gate_options))
    if "newton_tol" in opts:
        v = opts["newton_tol"]
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not (np.isfinite(v) and v >= 0):
            raise ValueError(f"gate_options['newton_tol'] must be a finite number >= 0; got {v!r}")
        opts["newton_tol"] = float(v)
    for name in ("max_newton", "max_halvings"):
        if name in opts and (isinstance(opts[name], bool) or not isinstance(opts[name], (int, np.integer))
                             or opts[name] < 1):
            raise ValueError(f"gate_options[{name!r}] must be a positive integer; got {opts[name]!r}")
    if "tau_value" in opts:
        if tau_value is not None and opts["tau_value"] != tau_value:
            raise ValueError(f"tau_value given twice: tau_value={tau_value!r} and "
                             f"gate_options['tau_value']={opts['tau_value']!r}")
        _, tau_value = _check_tau(spec.tau, opts.pop("tau_value"))
        _check_tau_gate(spec, tau_value)
    if tau_value is not None:
        opts["tau_value"] = tau_value
    return opts


def __getattr__(name):
    # MoERegressor lives in moetheory.estimator: it needs scikit-learn, loaded on first use.
    if name == "MoERegressor":
        from moetheory.estimator import MoERegressor

        return MoERegressor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
