"""The statistical API: ``fit(x, y, n_experts=...)`` and a scikit-learn style facade."""
from __future__ import annotations

import warnings

import jax
import jax.numpy as jnp
import numpy as np

from moetheory._jax import ensure_x64
from moetheory.em.init import INIT_MODES
from moetheory.em.multistart import multistart
from moetheory.mle import free_layout
from moetheory.params import MoEParams, check_params
from moetheory.results import FitResult, as_numpy_params
from moetheory.spec import MoESpec
from moetheory.validation import check_xy


class ConvergenceWarning(UserWarning):
    """EM stopped at ``max_iter`` before the relative log-likelihood change fell below ``tol``."""


DEFAULT_N_INIT = 12


def _start_kinds(init, n_init):
    if init == "auto":
        # Alternate k-means and random partitions: different kinds fail on different data.
        return tuple("kmeans" if i % 2 == 0 else "random" for i in range(n_init))
    if init not in INIT_MODES:
        raise ValueError(f"init must be 'auto' or one of {INIT_MODES}; got {init!r}")
    return (init,) * n_init


def fit(x, y, n_experts: int, gate: str = "softmax", *, top_k: int | None = None,
        select_by: str = "score", activation: str | None = None, tau: str = "fixed",
        init: str = "auto", n_init: int | None = None, n_keep: int = 3, truth: MoEParams | None = None,
        tol: float = 1e-10, max_iter: int = 5000, var_floor: float | None = None, seed: int = 0,
        cov_type: str = "oim", gate_options: dict | None = None) -> FitResult:
    """Fit a Gaussian mixture of linear experts by EM with several starts.

    Parameters
    ----------
    x : array (n, d) or (n,)
        Covariates.
    y : array (n,)
        Responses.
    n_experts : int
        Number of experts k.
    gate : {"softmax", "topk", "temperature", "activation"}
    top_k, select_by, activation, tau : gate options, see :class:`MoESpec`.
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
        Maximum EM iterations per start.
    var_floor : float, optional
        Minimum expert variance (default 1e-8·Var(y)); reported when it binds.
    seed : int
        Seed of the starts: same seed, same machine → identical numbers.
    cov_type : {"oim", "opg", "sandwich"}
        Default covariance for standard errors and ``summary()``.

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
    x, y = check_xy(x, y)
    if isinstance(n_experts, bool) or not isinstance(n_experts, (int, np.integer)) or n_experts < 1:
        raise ValueError(f"n_experts must be a positive integer; got {n_experts!r}")
    spec = MoESpec(int(n_experts), x.shape[1], gate=gate, top_k=top_k, select_by=select_by,
                   activation=activation, tau=tau)
    n_free = len(free_layout(spec))
    if x.shape[0] <= n_free:
        raise ValueError(f"x and y have n={x.shape[0]} rows, but a {spec.n_experts}-expert model with "
                         f"d={spec.dim} has {n_free} free parameters: n must exceed that")
    if not (isinstance(tol, (float, int)) and tol >= 0):
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
    if var_floor is None:
        var_floor = 1e-8 * float(np.var(y)) + 1e-300
    if not var_floor > 0:
        raise ValueError(f"var_floor must be > 0; got {var_floor}")
    kinds = _start_kinds(init, int(n_init))
    opts = tuple(sorted((gate_options or {}).items())) or None
    ms = multistart(jax.random.key(seed), spec, jnp.asarray(x), jnp.asarray(y), kinds=kinds,
                    n_keep=n_keep, tol=float(tol), max_iter=int(max_iter), var_floor=var_floor,
                    truth=None if truth is None else jax.tree.map(jnp.asarray, truth),
                    gate_options=opts)
    best = ms.best
    params = as_numpy_params(best.params)
    check_params(spec, params)
    trace = np.asarray(best.trace)
    trace = trace[np.isfinite(trace)]  # the continued run's trace (monotone), NaN padding removed
    converged = bool(best.converged)
    if not converged:
        warnings.warn(
            f"EM did not converge in max_iter={max_iter} iterations (tol={tol:g}); the estimate may be "
            "inaccurate. Try a larger max_iter, a looser tol, more starts (n_init), or fewer experts.",
            ConvergenceWarning, stacklevel=2)
    if not np.isfinite(float(best.loglik)):
        raise FloatingPointError("every EM start ended with a non-finite log-likelihood; "
                                 "check the data scale or try another seed/init")
    return FitResult(spec=spec, params=params, loglik=float(best.loglik), n_obs=int(x.shape[0]),
                     n_iter=int(best.n_iter), converged=converged, trace=trace,
                     var_floor=float(var_floor), var_floor_hit=bool(best.floor_hit),
                     start_kinds=ms.start_kinds, start_logliks=np.asarray(ms.start_logliks),
                     x=x, y=y, cov_type=cov_type)


class MoERegressor:
    """scikit-learn style estimator around :func:`fit`.

    Fitted attributes end in ``_``: ``result_``, ``params_``, ``n_iter_``, ``converged_``,
    ``loglik_``, ``n_features_in_``.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-1, 1, (300, 1)); y = np.abs(x[:, 0]) + 0.05 * rng.standard_normal(300)
    >>> est = MoERegressor(n_experts=2).fit(x, y)
    >>> est.predict(x).shape
    (300,)
    """

    def __init__(self, n_experts: int = 2, gate: str = "softmax", *, top_k=None, select_by="score",
                 activation=None, tau="fixed", init="auto", n_init=None, tol=1e-10, max_iter=5000,
                 seed=0):
        self.n_experts = n_experts
        self.gate = gate
        self.top_k = top_k
        self.select_by = select_by
        self.activation = activation
        self.tau = tau
        self.init = init
        self.n_init = n_init
        self.tol = tol
        self.max_iter = max_iter
        self.seed = seed

    _PARAMS = ("n_experts", "gate", "top_k", "select_by", "activation", "tau", "init", "n_init",
               "tol", "max_iter", "seed")

    def get_params(self, deep: bool = True) -> dict:
        return {name: getattr(self, name) for name in self._PARAMS}

    def set_params(self, **params) -> "MoERegressor":
        for name, value in params.items():
            if name not in self._PARAMS:
                raise ValueError(f"invalid parameter {name!r} for MoERegressor; valid: {self._PARAMS}")
            setattr(self, name, value)
        return self

    def fit(self, X, y) -> "MoERegressor":
        res = fit(X, y, **self.get_params())
        self.result_ = res
        self.params_ = res.params
        self.n_iter_ = res.n_iter
        self.converged_ = res.converged
        self.loglik_ = res.loglik
        self.n_features_in_ = res.spec.dim
        return self

    def _check_fitted(self):
        if not hasattr(self, "result_"):
            raise RuntimeError("this MoERegressor is not fitted yet: call fit(X, y) first")

    def predict(self, X) -> np.ndarray:
        """Predictive mean, (n,)."""
        self._check_fitted()
        return self.result_.predict(X)

    def predict_proba(self, X) -> np.ndarray:
        """Gate probabilities g_i(x), (n, k)."""
        self._check_fitted()
        return self.result_.gate_probabilities(X)

    def score(self, X, y) -> float:
        """Coefficient of determination R² of the predictive mean (scikit-learn convention)."""
        self._check_fitted()
        from moetheory.validation import check_xy

        X, y = check_xy(X, y, self.n_features_in_)
        resid = y - self.predict(X)
        return float(1.0 - (resid @ resid) / ((y - y.mean()) @ (y - y.mean())))

    def __repr__(self):
        return f"MoERegressor(n_experts={self.n_experts!r}, gate={self.gate!r})"
