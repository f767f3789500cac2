"""Student-t experts (MoESpec(experts="t")): density, ECM, fit, robustness, certification.

References: Peel & McLachlan (2000), "Robust mixture modelling using the t distribution";
Chamroukhi (2016), "Robust mixture of experts modeling using the t distribution" (meteorits'
``tmixreg``). The univariate t MLE of scipy is the reference for one expert with an intercept.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.optimize as so
import scipy.stats as st

import moetheory as mt
from moetheory import model
from moetheory._jax import ensure_x64
from moetheory.em.run import run_em
from moetheory.mle import free_layout
from moetheory.params import MoEParams, check_params
from moetheory.spec import MoESpec

ensure_x64()


def _tight(func, x0, args=(), disp=0):
    """scipy's t.fit optimiser (Nelder–Mead) run to convergence: its default xtol 1e-4 leaves
    ~1e-5 relative errors in the reference itself."""
    return so.fmin(func, x0, args=args, xtol=1e-12, ftol=1e-14, maxiter=20000, maxfun=40000,
                   disp=0)


@pytest.fixture(scope="module")
def t_sample():
    rng = np.random.default_rng(1)
    y = st.t.rvs(4, loc=2.0, scale=1.5, size=400, random_state=rng)
    x = rng.normal(size=(400, 1))  # unused by the intercept-only experts
    return x, y


def test_one_intercept_expert_equals_scipy_t_fit(t_sample):
    x, y = t_sample
    res = mt.fit(x, y, 1, experts="t", expert_covariates=[])
    df, loc, scale = st.t.fit(y, optimizer=_tight)
    got = np.array([res.params.extra["df"][0], res.params.b[0], np.sqrt(res.params.var[0])])
    # Both are the same MLE found by different optimisers (certified Newton vs converged
    # Nelder-Mead): measured differences 1e-7..5e-6 relative; 2e-5 leaves room for rounding.
    np.testing.assert_allclose(got, [df, loc, scale], rtol=2e-5)
    assert res.loglik >= st.t.logpdf(y, df, loc, scale).sum() - 1e-8
    assert res.converged


def test_one_intercept_expert_fixed_df_equals_scipy(t_sample):
    x, y = t_sample
    res = mt.fit(x, y, 1, experts="t", t_df=4.0, expert_covariates=[])
    df, loc, scale = st.t.fit(y, fix_df=4.0, optimizer=_tight)
    assert df == 4.0 and res.params.extra["df"].tolist() == [4.0]
    # same MLE, two optimisers; measured agreement ~1e-7 relative
    np.testing.assert_allclose([res.params.b[0], np.sqrt(res.params.var[0])], [loc, scale],
                               rtol=2e-5)
    assert [lab for _, _, lab in free_layout(res.spec)] == ["expert1:const", "expert1:var"]


def _two_regimes(seed=0, n=400, df=3.0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    z = rng.random(n) < 1 / (1 + np.exp(-4 * x))
    noise = 0.3 * rng.standard_t(df, n)
    return x[:, None], np.where(z, 1 + 2 * x, -1 - x) + noise


@pytest.mark.parametrize("t_df", [None, 2.5])
def test_ecm_loglik_never_decreases(t_df):
    spec = MoESpec(2, 1, experts="t", t_df=t_df)
    x, y = _two_regimes()
    start = spec.constrain(MoEParams.create([0.3, 0.0], [[0.5], [0.0]], [[0.5], [-0.2]],
                                            [0.2, -0.3], [1.0, 0.5], extra={"df": [20.0, 5.0]}))
    res = run_em(spec, jax.tree.map(jnp.asarray, start), jnp.asarray(x), jnp.asarray(y),
                 max_iter=300)
    trace = np.asarray(res.trace)[: int(res.n_iter) + 1]
    trace = trace[np.isfinite(trace)]
    assert trace.size > 20  # (ν fixed: an exact fixed point after 40 iterations)
    # ECM is monotone (each CM step maximises the expected complete log-likelihood); 1e-9
    # relative allows the rounding of sums of 400 terms of size ~1.
    assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[1:])), np.diff(trace).min()
    assert trace[-1] - trace[0] > 10.0  # it did move
    if t_df is not None:
        assert np.all(np.asarray(res.params.extra["df"]) == t_df)
    else:
        df = np.asarray(res.params.extra["df"])
        assert np.all((df >= 0.1) & (df <= 1000.0)) and not np.allclose(df, [20.0, 5.0])


def test_t_loglik_tends_to_gaussian():
    x, y = _two_regimes(seed=1)
    p = MoEParams.create([0.3, 0.0], [[2.0], [0.0]], [[2.0], [-1.0]], [1.0, -1.0], [0.1, 0.2])
    gauss = float(model.log_likelihood(MoESpec(2, 1), p, x, y))
    big = p._replace(extra={"df": np.array([1e8, 1e8])})
    t = float(model.log_likelihood(MoESpec(2, 1, experts="t"), big, x, y))
    # the t density is N(1 + O(1/ν)): differences ~1e-8 relative at ν = 1e8
    assert abs(t - gauss) <= 1e-6 * abs(gauss)
    small = p._replace(extra={"df": np.array([3.0, 3.0])})
    assert abs(float(model.log_likelihood(MoESpec(2, 1, experts="t"), small, x, y)) - gauss) > 1.0


def test_t_density_matches_scipy():
    spec = MoESpec(2, 1, experts="t")
    p = MoEParams.create([0.0, 0.0], [[0.0], [0.0]], [[1.0], [-2.0]], [0.5, 0.0], [0.7, 2.0],
                         extra={"df": [1.5, 7.0]})
    x = np.linspace(-2, 2, 9)[:, None]
    y = np.linspace(-3, 3, 9)
    got = np.asarray(model.log_expert_density(spec, p, x, y))
    mu = x @ p.a.T + p.b
    want = st.t.logpdf(y[:, None], p.extra["df"], mu, np.sqrt(p.var))
    np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.fixture(scope="module")
def outlier_fits():
    """Two regimes with 5% gross outliers (y + 50), fitted with Gaussian and with t experts."""
    rng = np.random.default_rng(3)
    n = 500
    x = rng.uniform(-1, 1, n)
    z = rng.random(n) < 1 / (1 + np.exp(-4 * x))
    y = np.where(z, 1 + 2 * x, -1 - x) + 0.3 * rng.standard_normal(n)
    y[rng.choice(n, n // 20, replace=False)] += 50.0
    gauss = mt.fit(x, y, 2)
    # one expert takes the outliers into a heavy tail (ν̂ ≈ 0.7); the other's ν runs off to
    # the Gaussian limit, which fit says
    with pytest.warns(mt.GaussianLimitWarning, match="expert [12]'s degrees of freedom ran"):
        t = mt.fit(x, y, 2, experts="t")
    return gauss, t


def test_t_experts_resist_outliers(outlier_fits):
    gauss, t = outlier_fits
    truth = np.array([-1.0, 2.0])
    err_g = np.abs(np.sort(gauss.params.a[:, 0]) - truth).max()
    err_t = np.abs(np.sort(t.params.a[:, 0]) - truth).max()
    # Measured: t 0.044 (the slopes' standard errors are ~0.05), Gaussian 2.7 (one expert
    # spends itself on the outliers, the other averages the two regimes).
    assert err_t < 0.15
    assert err_g > 1.0
    assert err_t < err_g / 10


def test_t_fit_certified_with_finite_standard_errors(outlier_fits):
    _, t = outlier_fits
    assert t.converged and t.certificate.certified
    check_params(t.spec, t.params)
    se = np.asarray(t.bse())
    labels = t.param_names
    assert "expert1:df" in labels and "expert2:df" in labels
    assert np.all(np.isfinite(se)) and np.all(se > 0)
    df = t.params.extra["df"]
    assert df.min() < 2 and df.max() > 1000  # the heavy-tailed expert and the Gaussian limit
    assert "Student-t" in t.summary() and "degrees of" in t.summary()
    # predict_var: σ²ν/(ν−2) where ν > 2, infinite otherwise
    v = np.asarray(model.expert_variances(t.spec, t.params))
    df = t.params.extra["df"]
    np.testing.assert_allclose(v[df > 2], (t.params.var * df / (df - 2))[df > 2])
    assert np.all(np.isinf(v[df <= 2]))


def test_sample_draws_t_noise():
    spec = MoESpec(1, 1, experts="t")
    p = MoEParams.create([0.0], [[0.0]], [[0.0]], [1.0], [4.0], extra={"df": [3.0]})
    y = np.asarray(model.sample(jax.random.key(0), spec, p, np.zeros((20000, 1))))
    # Kolmogorov–Smirnov against t_3(1, 2): with n = 20000 a correct sampler has p ~ U(0, 1);
    # Gaussian noise of the same scale gives p < 1e-50
    assert st.kstest(y, st.t(3.0, 1.0, 2.0).cdf).pvalue > 1e-3
    assert float(model.predict_var(spec, p, np.zeros((1, 1)))[0]) == pytest.approx(12.0)


def test_spec_validation_and_plain_repr():
    assert "experts" not in MoESpec(2, 1).to_dict() and "t_df" not in MoESpec(2, 1).to_dict()
    assert repr(MoESpec(2, 1)) == ("MoESpec(n_experts=2, dim=1, gate='softmax', top_k=None, "
                                   "select_by='score', activation=None, tau='fixed')")
    assert MoESpec(2, 1) == MoESpec(2, 1, experts="gaussian")
    assert hash(MoESpec(2, 1)) == hash(MoESpec(2, 1, experts="gaussian"))
    spec = MoESpec(2, 1, experts="t", t_df=4)
    assert spec.to_dict()["experts"] == "t" and spec.t_df == 4.0 and not spec.cpu_kernels
    assert "t_df" not in MoESpec(2, 1, experts="t").to_dict()
    assert "experts='t'" in repr(MoESpec(2, 1, experts="t"))
    with pytest.raises(ValueError, match="experts must be one of"):
        MoESpec(2, 1, experts="cauchy")
    with pytest.raises(ValueError, match="set experts='t'"):
        MoESpec(2, 1, t_df=4.0)
    for bad in (0.0, -1.0, np.inf, np.nan, "4", True):
        with pytest.raises(ValueError, match="t_df must be a finite number > 0"):
            MoESpec(2, 1, experts="t", t_df=bad)
    p = MoEParams.create([0.0], [[0.0]], [[1.0]], [0.0], [1.0])
    with pytest.raises(ValueError, match="df"):
        check_params(MoESpec(1, 1, experts="t"), p)
    with pytest.raises(ValueError, match="experts must be one of"):
        mt.fit(np.arange(20.0), np.sin(np.arange(20.0)), 1, experts="T")


def test_cli_fit_t_experts(tmp_path, capsys):
    from moetheory.cli import main

    rng = np.random.default_rng(5)
    y = 1.0 + 0.5 * rng.standard_t(4, 200)
    path = tmp_path / "t.csv"
    path.write_text("x,y\n" + "\n".join(f"{a},{b}" for a, b in zip(rng.normal(size=200), y)))
    assert main(["fit", str(path), "--experts", "1", "--experts-family", "t", "--t-df", "4",
                 "--expert-cols"]) == 0
    out = capsys.readouterr().out
    assert "Student-t" in out and "fixed at 4" in out
    assert main(["fit", str(path), "--experts", "1", "--t-df", "4"]) == 2
    assert "--t-df" in capsys.readouterr().err
