"""``MoERegressor``: :func:`moetheory.fit` as a scikit-learn estimator (optional extra ``sklearn``).

scikit-learn supplies ``get_params``/``set_params``, cloning, tags, input validation and
``score`` (R² of the predictive mean); this module only maps the estimator's parameters one to
one onto :func:`moetheory.fit`'s keyword arguments. Imported on first use of
``moetheory.MoERegressor``, so that ``import moetheory`` neither needs nor loads scikit-learn.
"""
from __future__ import annotations

import numpy as np

try:
    from sklearn.base import BaseEstimator, RegressorMixin
    from sklearn.utils.validation import check_is_fitted, validate_data
except ModuleNotFoundError as err:  # pragma: no cover - exercised without scikit-learn only
    raise ImportError("moetheory.MoERegressor is a scikit-learn estimator and needs scikit-learn: "
                      "pip install 'moetheory[sklearn]'") from err

from moetheory.api import fit
from moetheory.validation import select_columns


class MoERegressor(RegressorMixin, BaseEstimator):
    """Gaussian mixture of linear experts as a scikit-learn regressor.

    Every parameter is the keyword argument of :func:`moetheory.fit` of the same name (see
    there); ``fit(X, y)`` calls ``moetheory.fit(X, y, **get_params())``. Fitted attributes end in
    ``_``: ``result_`` (the :class:`~moetheory.results.FitResult`, with inference and
    ``summary()``), ``params_``, ``n_iter_``, ``converged_``, ``loglik_``, ``n_features_in_`` and,
    when X was a DataFrame, ``feature_names_in_`` (new data are then matched by column name).

    Parameters
    ----------
    n_experts : int, default 2
    gate : {"softmax", "topk", "temperature", "activation"}, default "softmax"
    top_k, select_by, activation, tau, tau_value, estimator, init, n_init, tol, max_iter,
    var_floor, polish, acceleration, cert_tol, seed, cov_type, gate_options, em_backend : as in
    :func:`moetheory.fit` (None: the estimator's value)

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(-1, 1, (300, 1)); y = np.abs(X[:, 0]) + 0.05 * rng.standard_normal(300)
    >>> est = MoERegressor(n_experts=2).fit(X, y)
    >>> est.predict(X).shape, est.gate_proba(X).shape, est.posterior_proba(X, y).shape
    ((300,), (300, 2), (300, 2))
    >>> bool(est.score(X, y) > 0.9)
    True
    """

    def __init__(self, n_experts=2, gate="softmax", *, top_k=None, select_by="score",
                 activation=None, tau="fixed", tau_value=None, estimator=None, init=None,
                 n_init=None, tol=None, max_iter=None, var_floor=None, polish=None,
                 acceleration=None, cert_tol=None, seed=0, cov_type="oim", gate_options=None,
                 em_backend=None):
        self.n_experts = n_experts
        self.gate = gate
        self.top_k = top_k
        self.select_by = select_by
        self.activation = activation
        self.tau = tau
        self.tau_value = tau_value
        self.estimator = estimator
        self.init = init
        self.n_init = n_init
        self.tol = tol
        self.max_iter = max_iter
        self.var_floor = var_floor
        self.polish = polish
        self.acceleration = acceleration
        self.cert_tol = cert_tol
        self.seed = seed
        self.cov_type = cov_type
        self.gate_options = gate_options
        self.em_backend = em_backend

    def fit(self, X, y, sample_weight=None):
        """Fit by :func:`moetheory.fit`.

        Parameters
        ----------
        X : array (n, d) or DataFrame
        y : array (n,)
        sample_weight : array (n,), optional
            Case weights ≥ 0 (``moetheory.fit``'s ``weights``: a row of weight w counts w times)

        Returns
        -------
        self
        """
        # scikit-learn's validation (its messages, feature_names_in_, n_features_in_); at
        # least 2 rows, so that one row fails with scikit-learn's "1 sample" message
        # (moetheory.fit then checks n against the model's number of parameters).
        X, y = validate_data(self, X, y, dtype=np.float64, y_numeric=True, ensure_min_samples=2)
        names = getattr(self, "feature_names_in_", None)
        res = fit(X, y, x_names=None if names is None else list(names), weights=sample_weight,
                  **self.get_params())
        self.result_ = res
        self.params_ = res.params
        self.n_iter_ = res.n_iter
        self.converged_ = res.converged
        self.loglik_ = res.loglik
        return self

    def _validate_X(self, X):
        check_is_fitted(self)
        # A DataFrame's columns are matched by name whatever their order.
        X = select_columns(X, getattr(self.result_, "x_names", None))
        return validate_data(self, X, dtype=np.float64, reset=False)

    def predict(self, X) -> np.ndarray:
        """Predictive mean E[y | x], (n,)."""
        X = self._validate_X(X)
        return self.result_.predict(X)

    def gate_proba(self, X) -> np.ndarray:
        """Gate probabilities g_i(x) (the prior of expert i at x), (n, k)."""
        X = self._validate_X(X)
        return self.result_.gate_probabilities(X)

    def posterior_proba(self, X, y) -> np.ndarray:
        """Posterior expert probabilities P(z = i | x, y), (n, k)."""
        X = self._validate_X(X)
        return self.result_.posterior_probabilities(X, y)

    def predict_proba(self, X, y=None) -> np.ndarray:
        """Posterior expert probabilities P(z = i | x, y) when y is given, else the gate
        probabilities g_i(x) (:meth:`posterior_proba`, :meth:`gate_proba`), (n, k)."""
        return self.gate_proba(X) if y is None else self.posterior_proba(X, y)

    def predict_cluster(self, X, y=None) -> np.ndarray:
        """The most probable expert of each row, (n,) int: by the posterior when y is given
        (flexmix's ``clusters()``), else by the gate."""
        return np.argmax(self.predict_proba(X, y), axis=1)
