"""Bad input gets a clear error naming the argument and what was expected (DESIGN.md §7).

Every check here must fire before any JAX computation, so these tests are fast.
"""
import numpy as np
import pytest

import moetheory as mt
from moetheory.params import MoEParams
from moetheory.spec import MoESpec

RNG = np.random.default_rng(0)
X = RNG.uniform(-1, 1, 50)
Y = RNG.normal(size=50)
GOOD = dict(beta0=[0.0, 0.0], beta1=[[1.0], [0.0]], a=[[1.0], [-1.0]], b=[0.0, 0.0], var=[0.1, 0.2])


def _nan_at(arr, idx):
    out = np.array(arr, dtype=float)
    out[idx] = np.nan
    return out


@pytest.mark.parametrize("x,y,match", [
    (np.zeros((50, 2, 2)), Y, r"x must be a 1-d or 2-d array .* got shape \(50, 2, 2\)"),
    (X, np.zeros((50, 2)), r"y must be a 1-d array of shape \(n,\); got shape \(50, 2\)"),
    (X, Y[:40], r"x and y must have the same number of rows; got x: 50, y: 40"),
    (X[:0], Y[:0], r"x must have at least one row"),
    (_nan_at(X, 3), Y, r"x contains NaN or inf in 1 row\(s\), first at row 3"),
    (np.where(np.arange(50) == 7, np.inf, X), Y, r"x contains NaN or inf .* first at row 7"),
    (X, _nan_at(Y, 5), r"y contains NaN or inf in 1 row\(s\), first at row 5"),
    (X, np.where(np.arange(50) == 9, -np.inf, Y), r"y contains NaN or inf .* first at row 9"),
], ids=["x-3d", "y-2d", "length-mismatch", "empty", "x-nan", "x-inf", "y-nan", "y-inf"])
def test_bad_data(x, y, match):
    with pytest.raises(ValueError, match=match):
        mt.fit(x, y, n_experts=2)


def test_too_few_observations():
    # k = 2, d = 1: (k−1)(d+1) + k(d+2) = 8 free parameters.
    with pytest.raises(ValueError, match=r"n=8 rows.*8 free parameters: n must exceed that"):
        mt.fit(X[:8], Y[:8], n_experts=2)
    with pytest.raises(ValueError, match=r"n=5 rows"):
        mt.fit(X[:5], Y[:5], n_experts=2)


@pytest.mark.parametrize("kwargs,match", [
    (dict(n_experts=0), r"n_experts must be a positive integer; got 0"),
    (dict(n_experts=2.5), r"n_experts must be a positive integer; got 2.5"),
    (dict(n_experts=True), r"n_experts must be a positive integer"),
    (dict(n_experts=2, gate="sofmax"), r"gate must be one of .*'softmax'.*; got 'sofmax'"),
    (dict(n_experts=2, gate="topk", top_k=3), r"top_k must be in 1..n_experts=2; got top_k=3"),
    (dict(n_experts=2, gate="topk"), r"top_k is required for gate='topk'"),
    (dict(n_experts=2, top_k=1), r"top_k is only used by gate='topk'"),
    (dict(n_experts=2, gate="topk", top_k=1, select_by="scores"),
     r"select_by must be one of \('score', 'logit'\); got 'scores'"),
    (dict(n_experts=2, gate="activation", activation="relu6"),
     r"activation must be one of .*'tanh'.*; got 'relu6'"),
    (dict(n_experts=2, gate="activation"), r"activation is required for gate='activation'"),
    (dict(n_experts=2, tau="learned", gate="temperature"), r"tau must be one of .*; got 'learned'"),
    (dict(n_experts=2, init="kmean"), r"init must be one of \('auto', .*\); got 'kmean'"),
    (dict(n_experts=2, init="paper"), r"init='paper' starts near the truth: pass truth"),
    (dict(n_experts=2, init="perturb"), r"init='perturb' starts near the truth: pass truth"),
    (dict(n_experts=2, tol=-1.0), r"tol must be a finite number >= 0; got -1.0"),
    (dict(n_experts=2, max_iter=0), r"max_iter must be an integer >= 1; got 0"),
    (dict(n_experts=2, n_init=0), r"n_init must be a positive integer; got 0"),
    (dict(n_experts=2, var_floor=0.0), r"var_floor must be a finite number > 0 \(a variance\); got 0.0"),
    (dict(n_experts=2, cov_type="robust"), r"cov_type must be one of .*; got 'robust'"),
    (dict(n_experts=2, n_keep=0), r"n_keep must be an integer >= 1; got 0"),
    (dict(n_experts=2, n_keep=2.5), r"n_keep must be an integer >= 1; got 2.5"),
], ids=lambda v: str(v)[:40] if isinstance(v, dict) else "")
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        mt.fit(X, Y, **kwargs)


def test_bad_seed():
    with pytest.raises(TypeError, match=r"seed must be an integer; got 'a' \(str\)"):
        mt.fit(X, Y, n_experts=2, seed="a")


def test_non_numeric_data():
    with pytest.raises(ValueError, match=r"y must be a numeric array .*could not convert string"):
        mt.fit(X, ["a"] * 50, n_experts=2)
    with pytest.raises(ValueError, match=r"x must be a numeric array"):
        mt.fit([[1.0, "b"]] * 50, Y, n_experts=2)


def test_bad_truth():
    with pytest.raises(TypeError, match=r"truth must be MoEParams; got dict"):
        mt.fit(X, Y, n_experts=2, init="paper", truth=GOOD)
    truth2d = MoEParams.create(beta0=[0.0, 0.0], beta1=np.zeros((2, 2)), a=np.zeros((2, 2)),
                               b=[0.0, 0.0], var=[1.0, 1.0])
    with pytest.raises(ValueError, match=r"truth has dim 2 but x has 1 column"):
        mt.fit(X, Y, n_experts=2, init="paper", truth=truth2d)


@pytest.mark.parametrize("change,match", [
    (dict(var=[0.1, 0.0]), r"var must be finite and > 0 \(variances, not standard deviations\)"),
    (dict(var=[-0.1, 0.2]), r"var must be finite and > 0"),
    (dict(var=[np.nan, 0.2]), r"var must be finite and > 0"),
    (dict(tau=0.0), r"tau must be finite and > 0; got 0.0"),
    (dict(tau=-2.0), r"tau must be finite and > 0; got -2.0"),
    (dict(tau=[1.0, 1.0]), r"tau must be a scalar; got shape \(2,\)"),
    (dict(b=[0.0, 0.0, 0.0]), r"b must have shape \(2,\) to match beta0; got \(3,\)"),
    (dict(var=[0.1]), r"var must have shape \(2,\) to match beta0; got \(1,\)"),
    (dict(a=[[1.0, 2.0], [0.0, 0.0]]), r"beta1 and a must both have shape \(k, d\); got \(2, 1\) and \(2, 2\)"),
    (dict(beta0=[[0.0, 0.0]]), r"beta0 must be a 1-d array; got shape \(1, 2\)"),
    (dict(b=[np.inf, 0.0]), r"b must be finite"),
], ids=["var-zero", "var-neg", "var-nan", "tau-zero", "tau-neg", "tau-vector", "b-shape",
        "var-shape", "a-shape", "beta0-2d", "b-inf"])
def test_bad_params(change, match):
    with pytest.raises(ValueError, match=match):
        MoEParams.create(**{**GOOD, **change})


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(n_experts=0, dim=1), ValueError, r"n_experts must be an integer >= 1; got 0"),
    (dict(n_experts=2, dim=1.0), TypeError, r"dim must be an integer >= 1; got 1.0 \(float\)"),
    (dict(n_experts=2, dim=1, gate="soft"), ValueError, r"gate must be one of"),
    (dict(n_experts=2, dim=1, gate="topk", top_k=0), ValueError, r"top_k must be an integer >= 1; got 0"),
    (dict(n_experts=3, dim=1, gate="topk", top_k=4), ValueError, r"top_k must be in 1..n_experts=3; got top_k=4"),
    (dict(n_experts=2, dim=1, gate="topk", top_k=1, select_by="logits"), ValueError, r"select_by must be one of"),
    (dict(n_experts=2, dim=1, gate="activation", activation="swish"), ValueError, r"activation must be one of"),
    (dict(n_experts=2, dim=1, activation="tanh"), ValueError, r"activation is only used by gate='activation'"),
    (dict(n_experts=2, dim=1, tau="estimated"), ValueError, r"tau='estimated' needs gate 'temperature' or 'activation'"),
])
def test_bad_spec(kwargs, exc, match):
    with pytest.raises(exc, match=match):
        MoESpec(**kwargs)


def test_regressor_bad_options_fail_at_fit():
    est = mt.MoERegressor(n_experts=2, gate="sofmax")  # scikit-learn: no validation in __init__
    with pytest.raises(ValueError, match=r"gate must be one of"):
        est.fit(X.reshape(-1, 1), Y)  # scikit-learn estimators take 2-d X


@pytest.mark.parametrize("x,y,exc,match", [
    (X + 1j * X, Y, TypeError, r"x must hold real numbers; got complex values \(dtype complex128\)"),
    (X.astype(complex), Y, TypeError, r"x must hold real numbers"),  # zero imaginary parts too
    (X, list(Y[:-1]) + [1 + 2j], TypeError, r"y must hold real numbers"),
    (np.array([*X[:-1], 2j], dtype=object), Y, TypeError, r"x must hold real numbers; .*dtype object"),
    (np.arange(50).astype("datetime64[D]"), Y, TypeError, r"x must hold numbers; got dates"),
    (np.zeros((50, 0)), Y, ValueError, r"x must have at least one column; got shape \(50, 0\)"),
], ids=["x-complex", "x-complex-real", "y-complex", "x-object-complex", "x-dates", "x-no-columns"])
def test_non_real_data(x, y, exc, match):
    with pytest.raises(exc, match=match):
        mt.fit(x, y, n_experts=2)


@pytest.mark.parametrize("x,y,match", [
    # |x| ≳ 1e153 made np.std overflow: the covariate was dropped (slopes exactly 0)
    (X * 1e200, Y, r"x column 1 holds -?[\d.]+e\+199 \(row \d+\): magnitudes above 1e\+150 overflow "
                   r"float64 in the fit; rescale it \(e.g. divide it by 1e\+199\)"),
    (np.c_[X, X * 1e154], Y, r"x column 2 holds .*e\+153 \(row \d+\)"),
    (X * 1e-200, Y, r"x column 1 varies by only [\d.]+e-200 \(max - min\): spreads below 1e-140 "
                    r"underflow .*multiply it by 1e\+200"),
    # y ≈ 1e300 ran 17 s and stopped on a non-finite log-likelihood
    (X, Y * 1e300, r"y holds .*e\+29\d \(row \d+\): magnitudes above 1e\+75"),
    (X, Y * 1e-100, r"y varies by only .*e-100 \(max - min\): spreads below 1e-70"),
], ids=["x-huge", "x2-huge", "x-tiny", "y-huge", "y-tiny"])
def test_data_beyond_float64_scale(x, y, match):
    with pytest.raises(ValueError, match=match):
        mt.fit(x, y, n_experts=2)


def test_scale_error_names_the_dataframe_column():
    import pandas as pd

    with pytest.raises(ValueError, match=r"x column 2 \('income'\) holds"):
        mt.fit(pd.DataFrame({"age": X, "income": X * 1e160}), Y, n_experts=2)


@pytest.mark.parametrize("kwargs,exc,match", [
    (dict(var_floor=np.inf), ValueError, r"var_floor must be a finite number > 0 \(a variance\); got inf"),
    (dict(var_floor=np.nan), ValueError, r"var_floor must be a finite number > 0 .*; got nan"),
    (dict(var_floor=True), ValueError, r"var_floor must be a finite number > 0 .*; got True"),
    (dict(var_floor="1e-8"), ValueError, r"var_floor must be a finite number > 0 .*; got '1e-8'"),
    (dict(tol=np.inf), ValueError, r"tol must be a finite number >= 0; got inf"),
    (dict(tol=np.nan), ValueError, r"tol must be a finite number >= 0; got nan"),
    (dict(seed=2**70), ValueError, r"seed must fit in a signed 64-bit integer"),
], ids=["var_floor-inf", "var_floor-nan", "var_floor-bool", "var_floor-str", "tol-inf", "tol-nan",
        "seed-huge"])
def test_non_finite_options(kwargs, exc, match):
    # var_floor=inf ran 17 s of EM before failing; a huge seed was an OverflowError inside JAX
    with pytest.raises(exc, match=match):
        mt.fit(X, Y, n_experts=2, **kwargs)


def _se_units(res, c):
    """The factor each free parameter's standard error scales by when y is multiplied by c:
    c for expert intercepts and slopes, c² for variances, 1 for the gate."""
    names = list(res.param_names)
    return np.array([c**2 if name.endswith(":var") else c if name.startswith("expert") else 1.0
                     for name in names])


def _fit300(x, y):
    return mt.fit(x, y, n_experts=2, n_init=2)


@pytest.fixture(scope="module")
def scale_data():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 300)
    y = np.where(x > 0, 2 * x, -x) + 0.2 * rng.standard_normal(300)
    return x, y, _fit300(x, y)


@pytest.mark.parametrize("edge", ["max", "min"])
def test_covariates_at_the_scale_limits_fit_exactly(scale_data, edge):
    """x rescaled to the accepted limits (|x| up to 1e150, a spread down to 1e-140) gives the
    same fit in x's units: EM runs on standardised covariates, identical up to rounding, so
    the log-likelihood agrees to round-off (measured 3e-13) and the slopes scale exactly."""
    from moetheory.validation import X_LIMITS

    x, y, base = scale_data
    c = X_LIMITS[0] / np.abs(x).max() if edge == "max" else X_LIMITS[1] / np.ptp(x) * 1.001
    res = _fit300(x * c, y)
    assert res.loglik == pytest.approx(base.loglik, abs=1e-8)
    np.testing.assert_allclose(res.params.a * c, base.params.a, rtol=1e-7)
    np.testing.assert_allclose(res.params.beta1 * c, base.params.beta1, rtol=1e-7)
    se = res.bse()
    assert np.all(np.isfinite(se)) and np.all(se > 0)


@pytest.mark.parametrize("edge", ["max", "min"])
def test_response_at_the_scale_limits_keeps_finite_standard_errors(scale_data, edge):
    """y rescaled to its limits (|y| up to 1e75, a spread down to 1e-70): the variances scale
    as c² and their standard errors (from a covariance that scales as c⁴) stay finite and
    non-zero. EM's path is not exactly equivariant in y's scale (its stopping rule): the
    log-likelihood agrees to 5e-6 and the standard errors to 1e-3 relative (measured), so the
    tolerances are 1e-4 and 1e-2 — this checks for overflow and underflow, not for EM."""
    from moetheory.validation import Y_LIMITS

    x, y, base = scale_data
    c = Y_LIMITS[0] / np.abs(y).max() if edge == "max" else Y_LIMITS[1] / np.ptp(y) * 1.001
    res = _fit300(x, y * c)
    assert res.loglik + y.size * np.log(c) == pytest.approx(base.loglik, abs=1e-4)
    assert np.sort(res.params.var / c**2) == pytest.approx(np.sort(base.params.var), rel=1e-2)
    se, se_base = np.sort(res.bse() / _se_units(res, c)), np.sort(base.bse())
    assert np.all(np.isfinite(se)) and np.all(se > 0)
    np.testing.assert_allclose(se, se_base, rtol=1e-2)

