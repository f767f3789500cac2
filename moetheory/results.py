"""FitResult: the immutable outcome of a fit, with lazily computed inference (statsmodels style)."""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from functools import cached_property

import jax.numpy as jnp
import numpy as np
from scipy import stats

from moetheory import mle, model
from moetheory.params import MoEParams
from moetheory.spec import MoESpec
from moetheory.standardize import data_scale, standard_jacobian, standard_spec, to_standard
from moetheory.validation import check_x, select_columns


@dataclass(frozen=True, eq=False)
class FitResult:
    """Result of :func:`moetheory.fit`.

    Attributes
    ----------
    spec : MoESpec
    params : MoEParams, the estimate (NumPy float64), last expert's gate pinned
    loglik : float, observed log-likelihood at ``params``
    n_obs : int, or the sum of the case weights (float) of a weighted fit
    n_iter : int, EM iterations of the winning start
    converged : bool, the estimate is certified as a maximum of the log-likelihood
        (``certificate.certified``)
    certificate : :class:`moetheory.em.certify.Certificate` — the Newton decrement (the
        log-likelihood a Newton step would still gain), the score norm, the Hessian's smallest
        scaled eigenvalue, EM and polish iterations, the last EM increments, and why not when
        not certified
    em_converged : bool, the winning start's EM met its stopping rule (before the polish)
    estimator : :class:`moetheory.EMConfig`, the estimator that produced the fit
    var_floor : float, the variance floor used; ``var_floor_hit`` says whether it bound
    trace : (m + 1,) log-likelihood along the winning start's continued run (its last m
        iterations; the 20 short-run iterations of a multistart, counted in ``n_iter``, are not
        traced)
    start_kinds, start_logliks : the kind of every start and its log-likelihood where it stopped
        (after the continued run for the ``n_keep`` continued starts, after the 20-iteration
        short run for the others; starts that put a variance on the floor are passed over, so
        ``loglik`` can be below ``max(start_logliks)``)
    x, y : the data (n, d) and (n,), read-only copies kept for inference and residuals
    formula : the :class:`moetheory.formula.ModelFrame` of a :func:`moetheory.fit_formula` fit
        (``predict`` and friends then also take the raw variables), or None
    weights : (n,) case weights (``fit(..., weights=)``: a row of weight w counts w times in
        ℓ, the information and the scores' outer products; ``n_obs`` is their sum), or None
    x_names : the covariates' names (a DataFrame's columns, or ``x_names=``), or None
    n_best_hits : int, how many continued starts reached ``loglik``; None when not recorded
    n_best_rounds : int, in how many independent rounds of starts a continued start reached
        ``loglik`` (the start policy asks for ``estimator.min_best_hits``); None when not
        recorded
    new_maximum_rate : float or None, the estimated chance that one more round of starts would
        reach a maximum no round reached (:func:`moetheory.em.pipeline.new_maximum_rate`; the
        policy asks for at most ``estimator.max_new_rate``)
    regular : bool or None, whether the fit is a regular maximum (no expert on a few points, no
        step gate, no variance on the floor; :mod:`moetheory.em.spurious`); None for near-truth
        starts, which are not assessed
    set_aside : tuple of (ℓ, why), higher spurious maxima the starts reached and the fit set
        aside (``EMConfig(spurious="keep")`` returns the highest)
    floor_lowered : bool, the default variance floor was lowered because an expert of regular
        size sat on it (noise smaller than 1e-4 of the response's standard deviation)
    spurious_cause : str or None, the spurious-solution rule's verdict on the fit ("regular",
        "small_expert", "step_gate", "variance_floor", ...; :mod:`moetheory.em.spurious`), None
        for near-truth starts

    Examples
    --------
    >>> import moetheory as mt
    >>> res = mt.fit(x, y, n_experts=2)          # doctest: +SKIP
    >>> print(res.summary())                     # doctest: +SKIP
    """

    spec: MoESpec
    params: MoEParams
    loglik: float
    n_obs: int
    n_iter: int
    converged: bool
    trace: np.ndarray
    var_floor: float
    var_floor_hit: bool
    start_kinds: tuple
    start_logliks: np.ndarray
    x: np.ndarray = field(repr=False)
    y: np.ndarray = field(repr=False)
    cov_type: str = "oim"
    x_names: tuple | None = None
    certificate: object = None
    em_converged: bool = True
    estimator: object = None
    n_best_hits: int | None = None
    n_best_rounds: int | None = None
    new_maximum_rate: float | None = None
    regular: bool | None = None
    set_aside: tuple = ()
    floor_lowered: bool = False
    spurious_cause: str | None = None
    weights: np.ndarray | None = field(default=None, repr=False)
    formula: object = field(default=None, repr=False)

    # ---- model selection ------------------------------------------------------------
    @property
    def df_model(self) -> int:
        """Number of free parameters that enter the model (the pinned reference gate is not
        counted; nor are top-1 gate biases selected by score, which the likelihood never sees)."""
        return mle.df_model(self.spec)

    @property
    def aic(self) -> float:
        return -2.0 * self.loglik + 2.0 * self.df_model

    @property
    def bic(self) -> float:
        return -2.0 * self.loglik + math.log(self.n_obs) * self.df_model

    @property
    def icl(self) -> float:
        """BIC plus twice the entropy of the MAP classification: BIC − 2 Σ_n log r_{n, ẑ_n}."""
        r = self.responsibilities
        log_map = np.log(np.maximum(r.max(axis=1), 1e-300))
        if self.weights is not None:
            log_map = self.weights * log_map
        return self.bic - 2.0 * float(log_map.sum())

    # ---- posterior and prediction -----------------------------------------------------
    @cached_property
    def responsibilities(self) -> np.ndarray:
        """Posterior expert probabilities at the data, (n, k)."""
        from moetheory.em.certify import derivative_backend

        if derivative_backend(self.spec, np.shape(self.y)[0]) != "jax":  # closed form: no compiling
            from moetheory.kernels.numpy_derivs import softmax_posterior

            return softmax_posterior(self.params, self.x, self.y)
        return np.asarray(model.responsibilities(self.spec, self.params, self.x, self.y))

    def _x(self, x):
        if x is None:
            return self.x
        return check_x(self._columns(x), self.spec.dim)

    def _columns(self, x):
        """x's covariate columns in the fit's order (a formula fit takes the raw variables too)."""
        if self.formula is not None and hasattr(x, "columns") and not _has_columns(x, self.x_names):
            x = self.formula.transform(x)
        return select_columns(x, self.x_names)

    def predict(self, x=None) -> np.ndarray:
        """Predictive mean E[y | x], (n,); at the training data when x is None."""
        return np.asarray(model.predict_mean(self.spec, self.params, self._x(x)))

    def predict_var(self, x=None) -> np.ndarray:
        """Predictive variance Var[y | x], (n,)."""
        return np.asarray(model.predict_var(self.spec, self.params, self._x(x)))

    def gate_probabilities(self, x=None) -> np.ndarray:
        """Gate weights g_i(x), (n, k)."""
        return np.asarray(model.gate_probabilities(self.spec, self.params, self._x(x)))

    def posterior_probabilities(self, x=None, y=None) -> np.ndarray:
        """Posterior expert probabilities P(z = i | x, y), (n, k): at new data (x, y), or
        :attr:`responsibilities` at the training data when both are None."""
        if x is None and y is None:
            return self.responsibilities
        if x is None or y is None:
            raise ValueError("posterior_probabilities needs both x and y (or neither: the training data)")
        from moetheory.validation import check_xy

        x, y = check_xy(self._columns(x), y, self.spec.dim)
        return np.asarray(model.responsibilities(self.spec, self.params, x, y))

    @property
    def clusters(self) -> np.ndarray:
        """The most probable expert of each observation (argmax of :attr:`responsibilities`),
        (n,) int: flexmix's ``clusters()``."""
        return np.argmax(self.responsibilities, axis=1)

    def plot(self, along: int = 0, ax=None, **options):
        """The fitted experts over the data coloured by posterior, gate probabilities beneath
        (:func:`moetheory.plotting.plot_fit`; needs matplotlib). Returns (figure, (top,
        bottom))."""
        from moetheory.plotting import plot_fit

        return plot_fit(self, along=along, ax=ax, **options)

    def log_density(self, x, y) -> np.ndarray:
        """log p(y_n | x_n) for new data, (n,) (log p(x_n, y_n) for a gate that models x, such
        as the Gaussian gate: the observation's term of the likelihood that was maximised)."""
        from moetheory.validation import check_xy

        x, y = check_xy(self._columns(x), y, self.spec.dim)
        return np.asarray(model.log_density(self.spec, self.params, x, y))

    # ---- inference ----------------------------------------------------------------------
    @property
    def param_names(self) -> list[str]:
        """Labels of the free parameters (``gate1:age``, ``expert2:const``, ...)."""
        return mle.param_names(self.spec, self.x_names)

    @property
    def free_params(self) -> np.ndarray:
        """Estimates of the free parameters, in the order of :attr:`param_names`."""
        return mle.pack_numpy(self.spec, self.params)

    @cached_property
    def _standard(self):
        """(DataScale, params in standardised coordinates (x̃, ỹ), J = ∂θ/∂θ̃)."""
        ds = data_scale(self.spec, np.asarray(self.x), np.asarray(self.y))
        p_std = to_standard(self.params, ds, self.spec)
        return ds, p_std, standard_jacobian(self.spec, p_std, ds)

    @cached_property
    def _information(self):
        """Observed information (p, p) and scores (n, p) in standardised coordinates (x̃, ỹ):
        comparable units for the singularity test whatever the units of x and y (a year-like
        covariate, a response in thousands); the covariance is mapped back by J."""
        ds, p_std, _ = self._standard
        y_std = (np.asarray(self.y) - ds.y_center) / ds.y_scale
        info, scores = mle.information(standard_spec(self.spec, ds.x), p_std,
                                       ds.x.apply(np.asarray(self.x)), y_std, self.weights)
        if self.weights is not None:  # Σ_n w_n s_n s_nᵀ: a row of weight w is w equal rows
            scores = scores * np.sqrt(self.weights)[:, None]
        return info, scores

    def _cov(self, cov_type):
        cache = self.__dict__.setdefault("_cov_cache", {})
        if cov_type not in cache:
            info, scores = self._information
            bad = set(mle.unidentified_labels(self.spec))
            if not bad:
                cov, singular, reason = mle.covariance(info, scores, cov_type, return_reason=True)
            else:
                # Parameters without information (top-K, K = 1: the gate) are left out of the
                # inversion; their rows and columns are NaN.
                keep = np.array([lab not in bad for lab in mle.param_names(self.spec)])
                sub, singular, reason = mle.covariance(info[np.ix_(keep, keep)], scores[:, keep],
                                                       cov_type, return_reason=True)
                cov = np.full(info.shape, np.nan)
                cov[np.ix_(keep, keep)] = sub
            cache[cov_type] = (_map_covariance(cov, self._standard[2]), singular, reason)
        return cache[cov_type]

    def information_rank(self, cov_type: str | None = None) -> str:
        """Why the covariance is what it is: "regular", or "singular (rank r of p; ...)" / "not
        positive definite (...)" from the rank test relative to scale
        (:func:`moetheory.mle.rank_test`) of the matrix ``cov_type`` inverts."""
        return self._cov(cov_type or self.cov_type)[2]

    def cov_params(self, cov_type: str | None = None) -> np.ndarray:
        """Covariance of the free parameters: ``"oim"`` (observed information, default),
        ``"opg"`` (outer product of gradients) or ``"sandwich"``. Warns if singular."""
        return self._cov(cov_type or self.cov_type)[0]

    def bse(self, cov_type: str | None = None) -> np.ndarray:
        """Standard errors of the free parameters: NaN where not identified (see
        :attr:`unidentified`) and where a singular information leaves a parameter without a
        variance (:func:`moetheory.mle.covariance`)."""
        diag = np.diag(self.cov_params(cov_type))
        with np.errstate(invalid="ignore"):
            return np.where(diag >= 0.0, np.sqrt(np.abs(diag)), np.nan)

    # ---- identifiability ----------------------------------------------------------------
    @property
    def unidentified(self) -> list[str]:
        """Labels of free parameters reported without a standard error (NaN): for top-K with
        K = 1 every gate parameter (β_0 is not identifiable, and the log-likelihood is piecewise
        constant in β_1)."""
        bad = set(mle.unidentified_labels(self.spec))
        return [name for lab, name in zip(mle.param_names(self.spec), self.param_names)
                if lab in bad]

    @property
    def identifiability_notes(self) -> list[str]:
        """What this model cannot identify, in words (empty for regular models)."""
        return [message for _, message in mle.identifiability_notes(self.spec)]

    @property
    def identified_params(self) -> MoEParams:
        """Parameters in identified coordinates.

        Temperature gate: (β_0/τ, β_1/τ) with τ = 1 — the only gate quantities the model
        determines when τ is estimated (the raw ``params`` are the representative with
        ‖(β_0, β_1, τ)‖₂ = 1 over the free gate entries and τ). Other gates: ``params`` (their
        normalisation — last expert's gate pinned — already identifies them; for top-K with
        K = 1, β_0 stays unidentified). The gate decides (``Gate.identified_scale``).
        """
        p = self.params
        tau = self.spec.gate_family.identified_scale(self.spec, p)
        if tau is None:
            return p
        return MoEParams(p.beta0 / tau, p.beta1 / tau, p.a, p.b, p.var, np.asarray(1.0), p.extra)

    def identified_table(self, cov_type: str | None = None):
        """Temperature gate: a DataFrame of the identified gate coordinates β/τ with standard
        errors; ``None`` for the other gates.

        The information is computed in the chart where τ is held at its estimate, so the raw
        gate standard errors are those of β = τ̂·(β/τ) and se(β/τ) = se(β)/τ̂ exactly.
        """
        tau = self.spec.gate_family.identified_scale(self.spec, self.params)
        if tau is None:
            return None
        import pandas as pd

        gate = [i for i, (f, _, _) in enumerate(mle.free_layout(self.spec)) if f in ("beta0", "beta1")]
        names = [self.param_names[i] + "/tau" for i in gate]
        est = self.free_params[gate] / tau
        se = self.bse(cov_type)[gate] / tau
        with np.errstate(divide="ignore", invalid="ignore"):
            z = est / se
        return pd.DataFrame({"coef": est, "std err": se, "z": z, "P>|z|": 2 * stats.norm.sf(np.abs(z))},
                            index=names)

    def conf_int(self, alpha: float = 0.05, cov_type: str | None = None) -> np.ndarray:
        """Wald confidence intervals, (p, 2): est ± z·se, except for the positive coordinates
        (:func:`moetheory.mle.positive_mask`: variances, t experts' ν, an estimated τ, a
        Gaussian gate's covariance diagonal): their intervals are Wald intervals of the
        logarithm mapped back, est·exp(± z·se/est) (the delta method: se(log v) = se(v)/v;
        flexmix's ``refit`` works on log σ likewise), so they never include zero or negatives."""
        if not 0 < alpha < 1:
            raise ValueError(f"alpha must be in (0, 1); got {alpha}")
        z = stats.norm.ppf(1 - alpha / 2)
        est, se = self.free_params, self.bse(cov_type)
        lo, hi = est - z * se, est + z * se
        positive = mle.positive_mask(self.spec)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            factor = np.exp(z * se / est)
        lo = np.where(positive, est / factor, lo)
        hi = np.where(positive, est * factor, hi)
        return np.column_stack([lo, hi])

    def params_table(self, cov_type: str | None = None, alpha: float = 0.05):
        """A pandas DataFrame: coef, std err, z, P>|z| and the confidence interval."""
        import pandas as pd

        est, se = self.free_params, self.bse(cov_type)
        with np.errstate(divide="ignore", invalid="ignore"):
            z = est / se
        ci = self.conf_int(alpha, cov_type)
        return pd.DataFrame({"coef": est, "std err": se, "z": z, "P>|z|": 2 * stats.norm.sf(np.abs(z)),
                             f"[{alpha / 2:g}": ci[:, 0], f"{1 - alpha / 2:g}]": ci[:, 1]},
                            index=self.param_names)

    def summary(self, cov_type: str | None = None, alpha: float = 0.05) -> str:
        """A statsmodels-like text table of the fit and its parameters."""
        from moetheory.summary import render_summary

        return render_summary(self, cov_type or self.cov_type, alpha)

    def to_dict(self, cov_type: str | None = None) -> dict:
        """JSON-ready summary: fit statistics, parameters and standard errors."""
        out = {
            "spec": self.spec.to_dict(),
            "n_obs": self.n_obs, "loglik": self.loglik, "df_model": self.df_model,
            "aic": self.aic, "bic": self.bic, "icl": self.icl, "n_iter": self.n_iter,
            "converged": self.converged, "em_converged": self.em_converged,
            "certificate": None if self.certificate is None else self.certificate.to_dict(),
            "estimator": None if self.estimator is None else self.estimator.to_dict(),
            "var_floor_hit": self.var_floor_hit,
            "x_names": None if self.x_names is None else list(self.x_names),
            "cov_type": cov_type or self.cov_type,
            "singular_information": bool(self._cov(cov_type or self.cov_type)[1]),
            "information_rank": self.information_rank(cov_type),
            "unidentified": self.unidentified,
            "params": self.params.to_dict(),
            "identified_params": self.identified_params.to_dict(),
            "identifiability_notes": self.identifiability_notes,
            "start_logliks": [None if not np.isfinite(v) else float(v) for v in self.start_logliks],
            "starts": self.starts_report(),
        }
        table = self.params_table(cov_type)
        out["inference"] = {name: {c: (None if not np.isfinite(v) else float(v)) for c, v in row.items()}
                            for name, row in table.iterrows()}
        return out

    def starts_report(self) -> dict:
        """How the starts went: drawn, continued, how many reached the returned maximum (and how
        many the estimator asked for), whether it is regular, and the higher spurious maxima set
        aside (JSON-ready).

        Examples
        --------
        >>> res.starts_report()["n_best_hits"]      # doctest: +SKIP
        2
        """
        est = self.estimator
        return {"n_starts": len(self.start_kinds),
                "kinds": sorted(set(self.start_kinds)),
                "n_best_hits": self.n_best_hits,
                "n_best_rounds": self.n_best_rounds,
                "new_maximum_rate": self.new_maximum_rate,
                "min_best_hits": None if est is None or est.near_truth else est.min_best_hits,
                "regular": self.regular,
                "set_aside": [{"loglik": float(ll), "why": why} for ll, why in self.set_aside],
                "floor_lowered": self.floor_lowered, "spurious_cause": self.spurious_cause}

    def __repr__(self):
        return (f"FitResult(gate={self.spec.gate_name!r}, n_experts={self.spec.n_experts}, n_obs={self.n_obs}, "
                f"loglik={self.loglik:.4f}, converged={self.converged}, n_iter={self.n_iter})")


def _map_covariance(cov_std: np.ndarray, jac: np.ndarray) -> np.ndarray:
    """J C Jᵀ, with NaN for every parameter that depends on one without a variance (NaN on the
    diagonal of C; its row and column are NaN too)."""
    lost = np.isnan(np.diag(cov_std))
    cov = jac @ np.where(np.isnan(cov_std), 0.0, cov_std) @ jac.T
    lost_here = np.any(jac[:, lost] != 0.0, axis=1)
    cov[lost_here, :] = np.nan
    cov[:, lost_here] = np.nan
    return cov


def as_numpy_params(params) -> MoEParams:
    """MoEParams of NumPy float64 arrays from JAX arrays.

    Parameters
    ----------
    params : MoEParams of JAX (or NumPy) arrays: ``beta1``, ``a`` (k, d); ``beta0``, ``b``,
        ``var`` (k,); ``tau`` () — a leading batch axis is kept

    Returns
    -------
    MoEParams of ``numpy.ndarray`` (float64), same shapes

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax.numpy as jnp
    >>> p = MoEParams(jnp.zeros(2), jnp.zeros((2, 1)), jnp.ones((2, 1)), jnp.zeros(2),
    ...               jnp.ones(2), jnp.asarray(1.0))
    >>> q = as_numpy_params(p)
    >>> type(q.a).__name__, q.a.dtype, q.a.shape
    ('ndarray', dtype('float64'), (2, 1))
    """
    return params.map(lambda v: np.asarray(jnp.asarray(v), dtype=np.float64))


def _has_columns(x, names) -> bool:
    """Whether the DataFrame x holds every column in ``names`` (a design, not raw data)."""
    return names is not None and all(n in x.columns for n in names)
