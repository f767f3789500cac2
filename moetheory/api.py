"""The statistical API: ``fit(x, y, n_experts=...)`` (its scikit-learn estimator,
``MoERegressor``, is in :mod:`moetheory.estimator`)."""
from __future__ import annotations

import numbers
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from moetheory._jax import ensure_x64
from moetheory.em.init import INIT_MODES
from moetheory.em.multistart import multistart
from moetheory.em.gate_steps import GATE_OPTIONS, TOPK_METHODS, normalise_temperature
from moetheory.mle import free_layout, identifiability_notes, warn_once
from moetheory.params import MoEParams, check_params
from moetheory.results import FitResult, as_numpy_params
from moetheory.spec import MoESpec
from moetheory.standardize import (from_fitted_coordinates, identity_standardizer, standardizer,
                                   to_fitted_coordinates)
from moetheory.validation import check_xy, covariate_names, frozen_copy


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before the relative log-likelihood change fell below ``tol``.

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
    """The chosen fit has an expert whose variance sits on the floor ``var_floor``: every
    continued start collapsed onto a few points (the likelihood of a mixture is unbounded
    there). Issued by :func:`moetheory.fit`; ``FitResult.var_floor_hit`` is True.

    Examples
    --------
    >>> issubclass(VarianceFloorWarning, UserWarning)
    True
    """


DEFAULT_N_INIT = 12


def default_var_floor(y) -> float:
    """1e-8 times a robust variance of y, (1.4826 · MAD)², or Var(y) when more than half the
    values are equal: one gross outlier must not lift the floor above the experts' variances.

    Parameters
    ----------
    y : array (n,)

    Examples
    --------
    >>> y = np.r_[np.linspace(-1.0, 1.0, 99), 1e6]          # one gross outlier
    >>> default_var_floor(y) < 1e-8                          # Var(y) would give 100
    True
    """
    y = np.asarray(y, dtype=np.float64)
    mad = 1.4826 * float(np.median(np.abs(y - np.median(y))))
    scale2 = mad * mad if mad > 0 else float(np.var(y))
    return 1e-8 * scale2 + 1e-300


def _start_kinds(init, n_init):
    if init == "auto":
        # Alternate k-means and random partitions: different kinds fail on different data.
        return tuple("kmeans" if i % 2 == 0 else "random" for i in range(n_init))
    if init not in INIT_MODES:
        raise ValueError(f"init must be 'auto' or one of {INIT_MODES}; got {init!r}")
    return (init,) * n_init


def fit(x, y, n_experts: int, gate: str = "softmax", *, top_k: int | None = None,
        select_by: str = "score", activation: str | None = None, tau: str | float = "fixed",
        tau_value: float | None = None, init: str = "auto", n_init: int | None = None,
        n_keep: int = 3, truth: MoEParams | None = None,
        tol: float = 1e-10, max_iter: int = 5000, var_floor: float | None = None, seed: int = 0,
        cov_type: str = "oim", gate_options: dict | None = None,
        em_backend: str | None = None, x_names=None) -> FitResult:
    """Fit a Gaussian mixture of linear experts by EM with several starts.

    Parameters
    ----------
    x : array (n, d) or (n,), or a pandas DataFrame / named Series
        Covariates. A DataFrame's column names label the parameters and are matched by name in
        ``predict`` (the data are copied: later changes to x or y do not reach the result).
    y : array (n,)
        Responses (not all equal).
    n_experts : int
        Number of experts k.
    gate : {"softmax", "topk", "temperature", "activation"}
    top_k, select_by, activation : gate options, see :class:`MoESpec`.
    tau : {"fixed", "estimated"} or float
        Temperature of the temperature and activation gates: ``"fixed"`` (known, the value
        ``tau_value``), ``"estimated"``, or a number > 0 (shorthand for ``tau="fixed",
        tau_value=number``). With τ estimated the temperature gate is identified only up to a
        common scale of (β, τ): see docs/gates.md and ``FitResult.identified_params``.
    tau_value : float, optional
        The known τ > 0 when τ is fixed. Default: the start's τ (1 for data-driven starts,
        ``truth.tau`` for near-truth starts).
    init : {"auto", "kmeans", "random", "paper", "perturb"}
        ``"auto"`` (default) alternates k-means on standardised (x, y) and random partitions;
        ``"paper"``/``"perturb"`` start near ``truth`` (simulation studies).
    n_init : int, optional
        Number of starts (default 12 for "auto" and the data-driven modes, 1 near the truth).
    n_keep : int
        Starts continued to convergence after a short (20-iteration) run of all of them.
    truth : MoEParams, optional
        True parameters for the near-truth initialisations.
    tol : float
        Relative log-likelihood change that stops EM.
    max_iter : int
        Maximum EM iterations of each continued start (the short runs of ``n_init > n_keep``
        add min(20, max_iter) more; ``n_iter`` counts both).
    var_floor : float, optional
        Minimum expert variance (default :func:`default_var_floor`: 1e-8 times a robust
        variance of y); reported when it binds, with a :class:`VarianceFloorWarning` when the
        chosen fit sits on it.
    seed : int
        Seed of the starts: same seed, same machine → identical numbers.
    cov_type : {"oim", "opg", "sandwich"}
        Default covariance for standard errors and ``summary()``.
    gate_options : dict, optional
        Options of the gate M-step: ``max_newton`` (inner Newton steps, default 50),
        ``newton_tol``; for ``gate="topk"`` also ``method`` (``"gem"``: generalised EM on the
        E-step's active sets, default; ``"direct"``: Newton on the observed log-likelihood over
        the gate) and ``max_halvings``.
    em_backend : {"auto", "numba", "jax"}, optional
        Who runs EM: ``"auto"`` (default, or ``$MOETHEORY_EM_BACKEND``) uses the fused Numba
        kernel on every core for the softmax gate on CPU and JAX otherwise; both give the same
        estimate to the EM tolerance (:mod:`moetheory.em.backend`).
    x_names : sequence of str, optional
        Names of the covariates of an array ``x`` (default ``x1 .. xd``; a DataFrame's own
        column names are used).

    Returns
    -------
    FitResult

    Examples
    --------
    >>> import numpy as np, moetheory as mt
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-1, 1, 500)
    >>> y = np.where(x > 0, 2 * x, -2 * x) + 0.1 * rng.standard_normal(500)
    >>> res = mt.fit(x, y, n_experts=2)
    >>> bool(res.converged)
    True
    """
    ensure_x64()
    names = covariate_names(x, x_names)
    x, y = check_xy(x, y)
    x, y = frozen_copy(x), frozen_copy(y)
    if names is not None and len(names) != x.shape[1]:
        raise ValueError(f"x_names has {len(names)} name(s) but x has {x.shape[1]} column(s)")
    if np.ptp(y) == 0:
        raise ValueError(f"y is constant (every value is {y[0]!r}): a mixture of Gaussian experts "
                         "needs variation in y (its likelihood is unbounded here)")
    if isinstance(n_experts, bool) or not isinstance(n_experts, (int, np.integer)) or n_experts < 1:
        raise ValueError(f"n_experts must be a positive integer; got {n_experts!r}")
    tau, tau_value = _check_tau(gate, tau, tau_value)
    spec = MoESpec(int(n_experts), x.shape[1], gate=gate, top_k=top_k, select_by=select_by,
                   activation=activation, tau=tau)
    gate_options = _check_gate_options(spec, gate_options, tau_value)
    for key, message in identifiability_notes(spec):
        warn_once(key, message)
    n_free = len(free_layout(spec))
    if x.shape[0] <= n_free:
        raise ValueError(f"x and y have n={x.shape[0]} rows, but a {spec.n_experts}-expert model with "
                         f"d={spec.dim} has {n_free} free parameters: n must exceed that")
    if isinstance(tol, bool) or not (isinstance(tol, numbers.Real) and tol >= 0):
        raise ValueError(f"tol must be a number >= 0; got {tol!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, (int, np.integer)) or max_iter < 1:
        raise ValueError(f"max_iter must be a positive integer; got {max_iter!r}")
    if truth is not None:
        if not isinstance(truth, MoEParams):
            raise TypeError(f"truth must be MoEParams; got {type(truth).__name__}")
        if truth.dim != spec.dim:
            raise ValueError(f"truth has dim {truth.dim} but x has {spec.dim} column(s)")
    if init in ("paper", "perturb") and truth is None:
        raise ValueError(f"init={init!r} starts near the truth: pass truth=MoEParams(...)")
    if n_init is None:
        n_init = 1 if init in ("paper", "perturb") else DEFAULT_N_INIT
    if isinstance(n_init, bool) or not isinstance(n_init, (int, np.integer)) or n_init < 1:
        raise ValueError(f"n_init must be a positive integer; got {n_init!r}")
    from moetheory.mle import COV_TYPES

    if isinstance(n_keep, bool) or not isinstance(n_keep, (int, np.integer)) or n_keep < 1:
        raise ValueError(f"n_keep must be a positive integer; got {n_keep!r}")
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)):
        raise TypeError(f"seed must be an integer; got {seed!r} ({type(seed).__name__})")

    if cov_type not in COV_TYPES:
        raise ValueError(f"cov_type must be one of {COV_TYPES}; got {cov_type!r}")
    if var_floor is None:
        var_floor = default_var_floor(y)
    if not var_floor > 0:
        raise ValueError(f"var_floor must be > 0; got {var_floor}")
    kinds = _start_kinds(init, int(n_init))
    opts = tuple(sorted(gate_options.items())) or None
    # EM runs on standardised covariates (better conditioned); estimates come back in x's units.
    # Near-truth starts keep x's units: their documented noise (and the study runner's) is in
    # the truth's coordinates.
    st = identity_standardizer(x.shape[1]) if init in ("paper", "perturb") else standardizer(spec, x)
    truth_fit = None if truth is None else to_fitted_coordinates(truth, st)
    ms = multistart(jax.random.key(seed), spec, jnp.asarray(st.apply(x)), jnp.asarray(y),
                    kinds=kinds, n_keep=n_keep, tol=float(tol), max_iter=int(max_iter),
                    var_floor=var_floor,
                    truth=None if truth_fit is None else jax.tree.map(jnp.asarray, truth_fit),
                    gate_options=opts, em_backend=em_backend)
    best = ms.best
    params = from_fitted_coordinates(as_numpy_params(best.params), st)
    if spec.gate == "temperature" and spec.estimates_tau:
        params = as_numpy_params(normalise_temperature(params))  # the reported representative
    check_params(spec, params)
    trace = np.asarray(best.trace)
    trace = trace[np.isfinite(trace)]  # the continued run's trace (monotone), NaN padding removed
    converged = bool(best.converged)
    if not converged:
        warnings.warn(
            f"EM did not converge in max_iter={max_iter} iterations of its continued run "
            f"(tol={tol:g}); the estimate may be "
            "inaccurate. Try a larger max_iter, a looser tol, more starts (n_init), or fewer experts.",
            ConvergenceWarning, stacklevel=2)
    if not np.isfinite(float(best.loglik)):
        raise FloatingPointError("every EM start ended with a non-finite log-likelihood; "
                                 "check the data scale or try another seed/init")
    if bool(best.floor_hit):
        warnings.warn(
            f"every continued EM start put an expert's variance on the floor var_floor="
            f"{var_floor:.3g}: the fit is a degenerate spike on a few points, not an estimate. "
            "Try fewer experts, more starts (n_init) or another seed.",
            VarianceFloorWarning, stacklevel=2)
    return FitResult(spec=spec, params=params, loglik=float(best.loglik), n_obs=int(x.shape[0]),
                     n_iter=int(best.n_iter), converged=converged, trace=trace,
                     var_floor=float(var_floor), var_floor_hit=bool(best.floor_hit),
                     start_kinds=ms.start_kinds, start_logliks=np.asarray(ms.start_logliks),
                     x=x, y=y, cov_type=cov_type, x_names=names)


def _check_tau(gate, tau, tau_value):
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
        if gate not in ("temperature", "activation"):
            raise ValueError(f"a temperature (tau_value={tau_value!r}) needs gate 'temperature' or "
                             f"'activation'; got gate={gate!r}")
        if tau != "fixed":
            raise ValueError(f"tau_value={tau_value!r} is the known temperature of tau='fixed'; got tau={tau!r}")
        tau_value = float(tau_value)
    return tau, tau_value


def _check_gate_options(spec, gate_options, tau_value) -> dict:
    """Validate ``gate_options`` for the gate and add the known temperature."""
    if gate_options is None:
        gate_options = {}
    if not isinstance(gate_options, dict):
        raise TypeError(f"gate_options must be a dict; got {type(gate_options).__name__}")
    allowed = GATE_OPTIONS[spec.gate]
    unknown = sorted(set(gate_options) - set(allowed))
    if unknown:
        raise ValueError(f"gate_options {unknown} are not options of gate={spec.gate!r}; expected some of {allowed}")
    opts = dict(gate_options)
    if "method" in opts and opts["method"] not in TOPK_METHODS:
        raise ValueError(f"gate_options['method'] must be one of {TOPK_METHODS}; got {opts['method']!r}")
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
        _, tau_value = _check_tau(spec.gate, spec.tau, opts.pop("tau_value"))
    if tau_value is not None:
        opts["tau_value"] = tau_value
    return opts


def __getattr__(name):
    # MoERegressor lives in moetheory.estimator: it needs scikit-learn, loaded on first use.
    if name == "MoERegressor":
        from moetheory.estimator import MoERegressor

        return MoERegressor
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
