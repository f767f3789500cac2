"""MoERegressor as a scikit-learn estimator: scikit-learn's own checks, model selection tools,
gate and posterior probabilities."""
import inspect
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn.base import BaseEstimator, clone  # noqa: E402
from sklearn.model_selection import GridSearchCV, KFold, cross_val_score  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import check_estimator  # noqa: E402

import moetheory as mt  # noqa: E402
from conftest import TRUTHS, simulate_softmax  # noqa: E402
from moetheory.estimator import MoERegressor  # noqa: E402

#: Checks whose data are too small for two experts: n ≤ the number of free parameters
#: (k − 1)(d + 1) + k(d + 2), e.g. 10 rows with d = 4 against 17 parameters; moetheory.fit
#: refuses such data with a ValueError naming both numbers. The same checks pass with one
#: expert (test_check_estimator_one_expert). docs/tutorials/sklearn.md lists them.
TOO_SMALL_FOR_TWO_EXPERTS = {
    "check_estimators_dtypes": "20 rows, d = 5: 20 free parameters for 2 experts",
    "check_estimators_nan_inf": "10 rows, d = 3: 14 free parameters for 2 experts",
    "check_n_features_in_after_fitting": "15 rows, d = 4: 17 free parameters for 2 experts",
    "check_sample_weight_equivalence_on_dense_data": "27 rows of positive weight, d = 30: 95 "
                                                     "free parameters for 2 experts",
}
#: Deliberate: scikit-learn's convention is that a regressor has no predict_proba; MoERegressor's
#: gives the experts' probabilities (gate, or posterior given y), which issue 17 asks for. (With
#: two experts this check's data, 10 rows with d = 4, are also too small.)
DELIBERATE = {
    "check_regressors_no_decision_function": "predict_proba gives expert (not class) probabilities",
}


@pytest.fixture(scope="module")
def data():
    return simulate_softmax(TRUTHS[(2, 1)], 300, seed=212)


@pytest.mark.slow
def test_check_estimator_two_experts():
    # Every scikit-learn check passes except those listed (documented in docs/sklearn.md);
    # an unexpected pass of one of those is reported by check_estimator too.
    check_estimator(MoERegressor(n_experts=2, n_init=4),
                    expected_failed_checks={**TOO_SMALL_FOR_TWO_EXPERTS, **DELIBERATE})


@pytest.mark.slow
def test_check_estimator_one_expert():
    # scikit-learn's weights-equal-repeated-rows check draws d = 30 covariates for 27 rows of
    # positive weight (tests/test_weights.py makes the same check on data a model fits)
    too_small = {"check_sample_weight_equivalence_on_dense_data":
                 "27 rows of positive weight, d = 30: 32 free parameters for 1 expert"}
    check_estimator(MoERegressor(n_experts=1), expected_failed_checks={**DELIBERATE, **too_small})


def test_parameters_are_fit_keywords():
    # One to one: each constructor parameter is fit()'s keyword of the same name and default
    # (n_experts: fit has none). Left out: truth (simulation studies), n_keep (multistart
    # internals), x_names (a DataFrame's columns are used).
    fit_params = inspect.signature(mt.fit).parameters
    for name, p in inspect.signature(MoERegressor).parameters.items():
        assert name in fit_params, name
        if name != "n_experts":
            assert p.default == fit_params[name].default, name
    # get_params / set_params / score are scikit-learn's, not hand-written.
    assert MoERegressor.get_params is BaseEstimator.get_params
    assert MoERegressor.set_params is BaseEstimator.set_params
    assert "get_params" not in vars(MoERegressor) and "score" not in vars(MoERegressor)
    tags = MoERegressor().__sklearn_tags__()
    assert tags.estimator_type == "regressor" and tags.target_tags.required


def test_gate_posterior_and_clusters(data):
    x, y = data
    est = MoERegressor(n_experts=2).fit(x, y)
    res = mt.fit(x, y, n_experts=2)
    gate = est.predict_proba(x)
    np.testing.assert_array_equal(gate, est.gate_proba(x))
    np.testing.assert_array_equal(gate, res.gate_probabilities(x))
    post = est.predict_proba(x, y)
    np.testing.assert_array_equal(post, est.posterior_proba(x, y))
    # At the training data the posterior is the fit's responsibilities.
    np.testing.assert_allclose(post, res.responsibilities, rtol=0, atol=1e-12)
    np.testing.assert_allclose(post.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    # y changes the probabilities: the posterior is sharper than the gate here
    # (well-separated experts), on average much closer to 0/1.
    assert np.mean(post.max(axis=1)) > np.mean(gate.max(axis=1)) + 0.05
    np.testing.assert_array_equal(est.predict_cluster(x, y), res.clusters)
    np.testing.assert_array_equal(est.predict_cluster(x), np.argmax(gate, axis=1))
    # Posterior at new points, by hand: g_i φ_i / Σ_j g_j φ_j.
    p = res.params
    x_new, y_new = np.array([[-0.5], [0.7]]), np.array([0.1, 2.0])
    g = res.gate_probabilities(x_new)
    mu = x_new @ p.a.T + p.b
    phi = np.exp(-0.5 * (y_new[:, None] - mu) ** 2 / p.var) / np.sqrt(2 * np.pi * p.var)
    np.testing.assert_allclose(est.posterior_proba(x_new, y_new), g * phi / (g * phi).sum(1, keepdims=True),
                               rtol=1e-12)
    with pytest.raises(ValueError, match="needs both x and y"):
        res.posterior_probabilities(x_new)


def test_cross_val_score_grid_search_and_pipeline(data):
    x, y = data
    cv = KFold(3, shuffle=True, random_state=0)
    scores = cross_val_score(MoERegressor(n_experts=2, n_init=4), x, y, cv=cv)
    assert scores.shape == (3,) and np.all(np.isfinite(scores))
    # Two regimes: two experts predict better than one out of sample (R² of the predictive
    # mean, 0.40 against 0.31 here).
    grid = GridSearchCV(MoERegressor(n_init=4), {"n_experts": [1, 2]}, cv=cv).fit(x, y)
    assert grid.best_params_ == {"n_experts": 2}
    pipe = make_pipeline(StandardScaler(), MoERegressor(n_experts=2, n_init=4)).fit(x, y)
    assert pipe.predict(x).shape == (300,)
    # clone keeps the parameters and drops the fit
    est = clone(grid.best_estimator_)
    assert est.get_params() == grid.best_estimator_.get_params() and not hasattr(est, "result_")


def test_bad_input_gets_scikit_learn_messages(data):
    x, y = data
    est = MoERegressor(n_experts=2, n_init=2).fit(x, y)
    with pytest.raises(ValueError, match="X has 2 features, but MoERegressor is expecting 1"):
        est.predict(np.zeros((3, 2)))
    bad = x.copy()
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="Input X contains NaN"):
        MoERegressor().fit(bad, y)
    with pytest.raises(ValueError, match="1 sample"):
        MoERegressor().fit(x[:1], y[:1])


def test_without_scikit_learn_fit_works_and_the_estimator_says_what_to_install():
    code = ("import sys; sys.modules['sklearn'] = None\n"
            "import numpy as np, moetheory as mt\n"
            "x = np.linspace(-1, 1, 50); y = x + np.sin(7 * x)\n"
            "assert np.isfinite(mt.fit(x, y, n_experts=1).loglik)\n"
            "from moetheory import *\n"
            "try:\n    mt.MoERegressor\nexcept ImportError as err:\n    print(err)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "pip install 'moetheory[sklearn]'" in out.stdout, out.stdout + out.stderr


def test_dataframe_columns_matched_by_name(data):
    pd = pytest.importorskip("pandas")
    x, y = data
    df = pd.DataFrame({"dose": x[:, 0], "noise": np.linspace(0, 1, 300)})
    est = MoERegressor(n_experts=2, n_init=2).fit(df, y)
    assert list(est.feature_names_in_) == ["dose", "noise"]
    assert est.result_.x_names == ("dose", "noise")
    np.testing.assert_array_equal(est.predict(df[["noise", "dose"]]), est.predict(df))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        est.predict(df)  # same names, same order: no scikit-learn feature-name warning
