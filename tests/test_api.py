"""The statistical API: moetheory.fit, FitResult, inference, MoERegressor."""
import dataclasses
import json
import math
import warnings

import numpy as np
import pytest

import moetheory as mt
from conftest import TRUTHS, simulate_softmax
from moetheory import mle
from moetheory.kernels import reference as ref
from moetheory.mle import SingularInformationWarning
from moetheory.params import MoEParams
from moetheory.spec import MoESpec

# Same (k, d, n) shapes as tests/test_em.py so that compiled EM programs are shared.
N = 300


@pytest.fixture(scope="module")
def data():
    return simulate_softmax(TRUTHS[(2, 1)], N, seed=210)


@pytest.fixture(scope="module")
def res(data):
    x, y = data
    return mt.fit(x, y, n_experts=2)


@pytest.fixture(scope="module")
def overfit(data):
    """k = 3 experts on data from k = 2: an over-fitted model."""
    x, y = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mt.fit(x, y, n_experts=3)


def test_fit_result_fields(res, data):
    x, y = data
    k, d = 2, 1
    assert res.converged and res.n_iter > 0 and res.n_obs == N
    assert res.spec == MoESpec(2, 1)
    # The reported log-likelihood is the NumPy oracle's at the reported parameters.
    assert res.loglik == pytest.approx(ref.log_likelihood(res.spec, res.params, x, y), rel=1e-12)
    # Trace: monotone, ends at the final log-likelihood (slack: rounding, 1e-9·|ℓ|).
    assert np.all(np.diff(res.trace) >= -1e-9 * abs(res.loglik))
    assert res.trace[-1] == pytest.approx(res.loglik, rel=1e-12)
    from moetheory.em.config import DEFAULT_N_INIT

    # Rounds of DEFAULT_N_INIT starts; the start policy confirms the best in a second round.
    assert len(res.start_kinds) == len(res.start_logliks)
    assert len(res.start_kinds) % DEFAULT_N_INIT == 0 and len(res.start_kinds) >= 2 * DEFAULT_N_INIT
    assert res.params.beta0[-1] == 0.0 and np.all(res.params.beta1[-1] == 0.0)
    assert not res.var_floor_hit
    # df: the pinned last gate is not free: (k−1)(d+1) gate + k(d+2) expert parameters.
    df = (k - 1) * (d + 1) + k * (d + 2)
    assert res.df_model == df == len(res.param_names) == res.free_params.size
    assert res.aic == pytest.approx(-2 * res.loglik + 2 * df, rel=1e-14)
    assert res.bic == pytest.approx(-2 * res.loglik + math.log(N) * df, rel=1e-14)
    r = ref.responsibilities(res.spec, res.params, x, y)
    np.testing.assert_allclose(res.responsibilities, r, atol=1e-10)
    icl = res.bic - 2 * np.sum(np.log(r.max(axis=1)))
    assert res.icl == pytest.approx(icl, rel=1e-10)
    assert res.icl >= res.bic


def test_df_formula_other_shapes():
    for k, d in ((3, 1), (3, 2), (4, 3)):
        assert len(mle.free_layout(MoESpec(k, d))) == (k - 1) * (d + 1) + k * (d + 2)
        assert mle.df_model(MoESpec(k, d)) == (k - 1) * (d + 1) + k * (d + 2)
        # top-1 selected by score: the k − 1 gate biases never enter the likelihood
        top1 = MoESpec(k, d, gate="topk", top_k=1)
        assert mle.df_model(top1) == (k - 1) * d + k * (d + 2)
        assert mle.df_model(MoESpec(k, d, gate="topk", top_k=1, select_by="logit")) == \
            (k - 1) * (d + 1) + k * (d + 2)
    # one expert: the gate is identically 1 (activation gate included), d + 2 parameters
    for spec in (MoESpec(1, 2), MoESpec(1, 2, gate="activation", activation="tanh"),
                 MoESpec(1, 2, gate="activation", activation="tanh", tau="estimated")):
        assert mle.df_model(spec) == 4


def test_units_and_origin_of_x_do_not_change_the_fit(data):
    # EM runs on standardised covariates: a year-like or a micro-unit column is the same model
    x, y = data
    base = mt.fit(x, y, n_experts=2, n_init=4)
    for shift, scale in ((2000.0, 10.0), (1e4, 10.0), (0.0, 1e6)):
        for backend in ("numba", "jax"):
            moved = mt.fit(shift + scale * x, y, n_experts=2, n_init=4, em_backend=backend)
            assert moved.loglik == pytest.approx(base.loglik, rel=1e-9), (shift, scale, backend)
            np.testing.assert_allclose(moved.params.a * scale, base.params.a, rtol=1e-5)
            np.testing.assert_allclose(moved.predict(), base.predict(), rtol=1e-6, atol=1e-8)
    # ... and standard errors in any units: slopes' scale with 1/scale, variances' not at all
    # (the information is evaluated in standardised coordinates and mapped back; tolerance: the
    # estimates themselves agree to ~1e-6)
    names = base.param_names
    slopes = [names.index(n) for n in ("gate1:x1", "expert1:x1", "expert2:x1")]
    variances = [names.index(n) for n in ("expert1:var", "expert2:var")]
    for shift, scale in ((2000.0, 10.0), (0.0, 1e6), (1e5, 1.0)):
        moved = mt.fit(shift + scale * x, y, n_experts=2, n_init=4)
        se = moved.bse()
        assert np.all(np.isfinite(se)) and np.all(se > 0)
        np.testing.assert_allclose(se[slopes] * scale, base.bse()[slopes], rtol=1e-4)
        np.testing.assert_allclose(se[variances], base.bse()[variances], rtol=1e-4)
    big_y = mt.fit(x, 1e4 * y, n_experts=2, n_init=4)  # a response in large units
    np.testing.assert_allclose(big_y.bse()[variances], 1e8 * base.bse()[variances], rtol=1e-4)
    np.testing.assert_allclose(big_y.bse()[slopes[1:]], 1e4 * base.bse()[slopes[1:]], rtol=1e-4)
    # one expert is ordinary least squares, whatever the units (statsmodels as the reference)
    import statsmodels.api as sm

    big = 1e6 * x
    ols = sm.OLS(y, sm.add_constant(big)).fit()
    one = mt.fit(big, y, n_experts=1, em_backend="jax", n_init=2)
    np.testing.assert_allclose([one.params.b[0], one.params.a[0, 0]], ols.params, rtol=1e-9)
    assert one.loglik == pytest.approx(ols.llf, rel=1e-12)


def test_log_likelihood_near_zero_converges_like_elsewhere():
    # where ℓ ≈ 0 depends on the units of y; the stopping rule floors |ℓ| at 0.01 nats per
    # observation, so rescaling y must not make EM run (almost) forever
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (1000, 1))
    y = np.abs(2 * x[:, 0]) + 0.3 * rng.normal(size=1000)
    ref_fit = mt.fit(x, y, n_experts=2)
    c = np.exp(ref_fit.loglik / 1000) * (1 + 1e-9)  # y·c has its maximum ℓ at about 0
    for backend in ("numba", "jax"):
        with warnings.catch_warnings():
            warnings.simplefilter("error", mt.ConvergenceWarning)
            near0 = mt.fit(x, c * y, n_experts=2, em_backend=backend)
        assert abs(near0.loglik) < 1e-3 * 1000 and near0.converged
        assert near0.n_iter <= 2 * ref_fit.n_iter, (backend, near0.n_iter, ref_fit.n_iter)


def test_default_variance_floor_is_robust_and_a_floored_fit_warns():
    rng = np.random.default_rng(5)
    x = rng.uniform(-1, 1, 500)
    y = np.where(x > 0, 2 * x, -x) + 0.2 * rng.standard_normal(500)
    y[17] = 1e6  # one gross outlier must not lift the floor above the experts' variances
    assert mt.api.default_var_floor(y) < 1e-8 and 1e-8 * np.var(y) > 10
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fitted = mt.fit(x, y, n_experts=3, n_init=4)
    # one expert sits on the outlier (a spike: the likelihood is unbounded there); the two others
    # keep variances near the noise's 0.04 (with the floor 1e-8·Var(y) ≈ 20 they sat at 20)
    spike = int(np.argmax(np.abs(fitted.params.b)))
    healthy = np.delete(fitted.params.var, spike)
    assert np.all((healthy > 0.02) & (healthy < 0.1)), fitted.params.var
    x, y = simulate_softmax(TRUTHS[(2, 1)], N, seed=210)
    with pytest.warns(mt.VarianceFloorWarning, match="var_floor"):
        floored = mt.fit(x, y, n_experts=2, n_init=2, var_floor=10 * np.var(y))
    assert floored.var_floor_hit


def test_gate_option_values_are_checked(data):
    x, y = data
    for bad in (None, "1e-8", -1.0, float("nan")):
        with pytest.raises(ValueError, match=r"gate_options\['newton_tol'\] must be"):
            mt.fit(x, y, n_experts=2, gate_options={"newton_tol": bad})


def test_fit_keeps_a_read_only_copy_of_the_data(data):
    x, y = (v.copy() for v in data)
    fitted = mt.fit(x, y, n_experts=2)
    before = fitted.predict(), fitted.log_density(fitted.x, fitted.y).sum()
    assert not np.shares_memory(fitted.x, x) and not np.shares_memory(fitted.y, y)
    assert not fitted.x.flags.writeable and not fitted.y.flags.writeable
    x -= x.mean()  # the caller standardises afterwards: the result must not see it
    y *= 10.0
    np.testing.assert_array_equal(fitted.predict(), before[0])
    assert fitted.log_density(fitted.x, fitted.y).sum() == before[1]
    assert before[1] == pytest.approx(fitted.loglik, rel=1e-12)


def test_constant_y_and_numpy_scalar_tol(data):
    x, y = data
    with pytest.raises(ValueError, match="y is constant"):
        mt.fit(x, np.ones_like(y), n_experts=2)
    # a NumPy scalar is a number: same fit as the Python float
    a = mt.fit(x, y, n_experts=2, tol=np.float32(1e-6), n_init=2)
    b = mt.fit(x, y, n_experts=2, tol=float(np.float32(1e-6)), n_init=2)
    assert a.loglik == b.loglik
    with pytest.raises(ValueError, match="tol must be a finite number >= 0"):
        mt.fit(x, y, n_experts=2, tol=-1.0)


def test_covariate_names_label_parameters_and_are_matched_in_predict():
    pd = pytest.importorskip("pandas")
    x, y = simulate_softmax(TRUTHS[(2, 2)], N, seed=211)
    df = pd.DataFrame({"age": x[:, 0], "income": x[:, 1]})
    named = mt.fit(df, y, n_experts=2, n_init=2)
    plain = mt.fit(x, y, n_experts=2, n_init=2)
    assert named.x_names == ("age", "income")
    assert named.param_names[:3] == ["gate1:age", "gate1:income", "gate1:const"]
    assert plain.param_names[:3] == ["gate1:x1", "gate1:x2", "gate1:const"]
    np.testing.assert_array_equal(named.bse(), plain.bse())  # names change labels only
    assert "expert2:income" in named.summary()
    # columns are matched by name, whatever their order; a missing one is named
    swapped = df[["income", "age"]]
    np.testing.assert_array_equal(named.predict(swapped), plain.predict(x))
    with pytest.raises(ValueError, match=r"missing column\(s\) \['income'\]"):
        named.predict(df[["age"]].rename(columns={"age": "age"}).assign(other=1.0))
    assert named.to_dict()["x_names"] == ["age", "income"]
    est = mt.MoERegressor(n_experts=2, n_init=2).fit(df, y)
    assert list(est.feature_names_in_) == ["age", "income"]
    assert est.score(swapped, y) == pytest.approx(est.score(df, y), rel=1e-14)
    with pytest.raises(ValueError, match="x_names has 1 name"):
        mt.fit(x, y, n_experts=2, x_names=["age"])
    with pytest.raises(ValueError, match="rename its columns"):
        mt.fit(df, y, n_experts=2, x_names=["Age (years)", "income"])


def test_fit_recovers_truth_roughly(res):
    # n = 300, well-separated experts: expert parameters within ~5 standard errors.
    # The truth is relabelled to the fit's labels (then re-pinned: the same model).
    truth = TRUTHS[(2, 1)]
    perm = min(([0, 1], [1, 0]), key=lambda o: np.abs(res.params.b - truth.b[o]).sum())
    se = res.bse()
    est = res.free_params
    tru = np.asarray(mle.pack(res.spec, truth.permute(perm).pinned()))
    assert np.all(np.abs(est - tru) <= 5 * se), (est, tru, se)


def test_fit_from_paper_init_reaches_the_same_optimum(res, data):
    # One start near the truth (the softmax paper's scheme) on well-separated data: the same
    # maximum as the default data-driven multistart, up to EM's stopping tolerance.
    x, y = data
    near = mt.fit(x, y, n_experts=2, init="paper", truth=TRUTHS[(2, 1)])
    assert near.converged and len(near.start_logliks) == 1 and near.start_kinds == ("paper",)
    assert near.loglik == pytest.approx(res.loglik, abs=1e-6)
    perm = [0, 1] if abs(near.params.b[0] - res.params.b[0]) < 0.5 else [1, 0]
    aligned = res.params.permute(perm).pinned()
    np.testing.assert_allclose(near.params.b, aligned.b, atol=1e-4)
    np.testing.assert_allclose(near.params.var, aligned.var, atol=1e-4)


def test_predict_shapes(res):
    n_new = 7
    xs = np.linspace(-1, 1, n_new)
    assert res.predict().shape == (N,)
    assert res.predict_var().shape == (N,)
    assert res.predict(xs).shape == (n_new,)
    assert res.predict(xs[:, None]).shape == (n_new,)
    assert res.predict_var(xs).shape == (n_new,) and np.all(res.predict_var(xs) > 0)
    g = res.gate_probabilities(xs)
    assert g.shape == (n_new, 2)
    np.testing.assert_allclose(g.sum(1), 1.0, atol=1e-12)
    assert res.responsibilities.shape == (N, 2)
    assert res.log_density(xs, np.zeros(n_new)).shape == (n_new,)
    with pytest.raises(ValueError, match="x must have 1 column"):
        res.predict(np.zeros((3, 2)))


def test_standard_errors_exact_fit(res, data):
    x, y = data
    p = res.df_model
    with warnings.catch_warnings():
        warnings.simplefilter("error", SingularInformationWarning)
        for cov_type in ("oim", "opg", "sandwich"):
            se = res.bse(cov_type)
            assert se.shape == (p,) and np.all(np.isfinite(se)) and np.all(se > 0), cov_type
            cov = res.cov_params(cov_type)
            assert cov.shape == (p, p)
            np.testing.assert_allclose(cov, cov.T, atol=1e-12 * np.abs(cov).max())
    ci = res.conf_int()
    assert ci.shape == (p, 2) and np.all(ci[:, 0] < res.free_params) and np.all(res.free_params < ci[:, 1])
    table = res.params_table()
    assert list(table.index) == res.param_names
    assert list(table.columns[:4]) == ["coef", "std err", "z", "P>|z|"]
    with pytest.raises(ValueError, match="cov_type"):
        res.bse("hessian")


def test_observed_information_matches_finite_differences(res, data):
    # Independent check of the JAX Hessian: central second differences of the NumPy oracle's
    # log-likelihood in the free coordinates (step 1e-4: truncation error O(h²)·ℓ'''' ≈ 1e-6
    # relative, rounding O(ε·|ℓ|/h²) ≈ 1e-5 absolute on entries of size 10²–10⁴).
    x, y = data
    spec, params = res.spec, res.params
    theta = np.asarray(mle.pack(spec, params))
    info, scores = mle.information(spec, params, x, y)

    def ll(th):
        return ref.log_likelihood(spec, mle.unpack(spec, th, params), x, y)

    h = 1e-4
    p = theta.size
    fd = np.zeros((p, p))
    for i in range(p):
        for j in range(i, p):
            ei, ej = np.eye(p)[i] * h, np.eye(p)[j] * h
            fd[i, j] = fd[j, i] = (ll(theta + ei + ej) - ll(theta + ei - ej) - ll(theta - ei + ej)
                                   + ll(theta - ei - ej)) / (4 * h * h)
    np.testing.assert_allclose(info, -fd, rtol=1e-4, atol=1e-2)
    # Per-observation scores sum to the gradient of ℓ, ~0 at the estimate: EM stops at a
    # relative change of 1e-10, so measure closeness by the Newton decrement gᵀ I⁻¹ g (twice the
    # log-likelihood still to gain; its square root is the distance to the exact MLE in
    # standard-error units): < 1e-6 means within 1e-3 standard errors.
    assert scores.shape == (N, p)
    g = scores.sum(0)
    assert g @ np.linalg.solve(info, g) < 1e-6


def test_overfitted_model_does_not_crash(overfit):
    # k = 3 on k = 2 data. The default fit prefers starts whose variances stayed above the
    # floor, so it lands on a proper (if poorly determined) optimum: its information matrix is
    # ill-conditioned but invertible. Exact singularity, which must warn, is covered by
    # test_duplicated_experts_have_singular_information below.
    assert overfit.spec.n_experts == 3
    assert not overfit.var_floor_hit
    info, _ = overfit._information
    assert np.all(np.linalg.eigvalsh(0.5 * (info + info.T)) > 0)
    se = overfit.bse()
    assert se.shape == (overfit.df_model,)
    assert np.all(np.isfinite(se)) and np.all(se > 0)
    text = overfit.summary()
    assert "expert3:var" in text
    json.dumps(overfit.to_dict(), allow_nan=False)


def test_duplicated_experts_have_singular_information(res, data):
    # Split expert 0 into two identical experts sharing its gate weight: moving weight between
    # the twins leaves the density unchanged, so the information is exactly singular.
    p = res.params
    dup = MoEParams(beta0=np.array([p.beta0[0] - np.log(2), p.beta0[0] - np.log(2), 0.0]),
                    beta1=np.vstack([p.beta1[0], p.beta1[0], p.beta1[1]]),
                    a=np.vstack([p.a[0], p.a[0], p.a[1]]), b=np.array([p.b[0], p.b[0], p.b[1]]),
                    var=np.array([p.var[0], p.var[0], p.var[1]]), tau=p.tau)
    fake = dataclasses.replace(res, spec=MoESpec(3, 1), params=dup)
    x, y = data
    assert fake.loglik == pytest.approx(ref.log_likelihood(MoESpec(3, 1), dup, x, y), rel=1e-12)
    with pytest.warns(SingularInformationWarning):
        se = fake.bse()
    assert se.shape == (13,)
    assert "singular" in fake.summary()
    # the twins' gate biases trade weight along the null direction: no variance (NaN, never 0);
    # the untouched expert's parameters keep theirs
    names = fake.param_names
    for lab in ("gate1:const", "gate2:const"):
        assert np.isnan(se[names.index(lab)]), lab
    for lab in ("expert3:x1", "expert3:const", "expert3:var"):
        assert np.isfinite(se[names.index(lab)]) and se[names.index(lab)] > 0, lab
    assert fake.to_dict()["singular_information"] is True


def test_singular_covariance_is_nan_only_where_undetermined():
    # parameters 0 and 1 are determined only through their sum; parameter 2 is regular
    u = np.array([1.0, 1.0, 0.0]) / np.sqrt(2.0)
    info = 8.0 * np.outer(u, u) + np.diag([0.0, 0.0, 4.0])
    scores = np.random.default_rng(0).normal(size=(50, 3)) @ np.diag([1.0, 1.0, 2.0])
    for cov_type in ("oim", "sandwich"):
        with pytest.warns(SingularInformationWarning):
            cov, singular = mle.covariance(info, scores, cov_type)
        assert singular
        assert np.all(np.isnan(cov[:2, :])) and np.all(np.isnan(cov[:, :2]))
        assert np.isfinite(cov[2, 2]) and cov[2, 2] > 0
    oim, _ = mle.covariance(np.diag([4.0, 1.0, 2.0]), scores, "oim")  # regular: plain inverse
    np.testing.assert_allclose(np.diag(oim), [0.25, 1.0, 0.5], rtol=1e-15)
    # not a maximum (a negative eigenvalue): that parameter has no variance either
    with pytest.warns(SingularInformationWarning):
        cov, _ = mle.covariance(np.diag([4.0, -1.0, 2.0]), scores, "oim")
    assert np.isnan(cov[1, 1]) and cov[0, 0] == pytest.approx(0.25, rel=1e-15)


def test_summary_contents(res):
    text = res.summary()
    for needle in ("Gaussian Mixture-of-Experts Results", "Log-Likelihood:", "AIC:", "BIC:", "ICL:",
                   "coef", "std err", "P>|z|", "No. Observations:", "softmax"):
        assert needle in text, needle
    for name in res.param_names:
        assert name in text, name
    assert "gate1:x1" in res.param_names and "expert2:var" in res.param_names
    assert f"{res.loglik:.4f}" in text
    assert "singular" not in text


def test_summary_flags_near_step_gates(res):
    assert "Near-step gate" not in res.summary()
    sd = float(np.std(res.x))
    steep = res.params._replace(beta1=np.array([[40.0 / sd], [0.0]]))  # logit +40 per sd of x
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularInformationWarning)
        text = dataclasses.replace(res, params=steep).summary()
    assert "Near-step gate (gate1:x1)" in text
    mild = res.params._replace(beta1=np.array([[20.0 / sd], [0.0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SingularInformationWarning)
        assert "Near-step gate" not in dataclasses.replace(res, params=mild).summary()


def test_to_dict_is_json(res):
    d = json.loads(json.dumps(res.to_dict(), allow_nan=False))
    assert d["loglik"] == res.loglik and d["df_model"] == res.df_model
    assert set(d["inference"]) == set(res.param_names)
    assert d["params"]["var"] == res.params.var.tolist()
    assert d["spec"]["n_experts"] == 2


def test_fit_result_is_immutable(res):
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.loglik = 0.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        res.params = None


def test_same_seed_same_numbers(res, data):
    x, y = data
    again = mt.fit(x, y, n_experts=2, seed=0)
    assert again.loglik == res.loglik
    for u, v in zip(again.params, res.params):
        np.testing.assert_array_equal(u, v)
    np.testing.assert_array_equal(again.start_logliks, res.start_logliks)
    np.testing.assert_array_equal(again.bse(), res.bse())


def test_convergence_warning_when_max_iter_tiny(data):
    x, y = data
    # without the polish, EM stopped by max_iter is not at the maximum: not certified, warned
    with pytest.warns(mt.ConvergenceWarning, match="max_iter") as rec:
        out = mt.fit(x, y, n_experts=2, max_iter=2, polish="none")
    msg = str(rec[0].message)
    assert "larger max_iter" in msg and "not certified" in msg
    assert not out.converged and not out.em_converged and np.isfinite(out.loglik)
    assert "NOT certified" in out.summary()
    # with it (the default), the polish finishes what EM did not: certified, no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        done = mt.fit(x, y, n_experts=2, max_iter=2)
    assert done.converged and not done.em_converged


def test_regressor_facade(data, res):
    x, y = data
    from sklearn.exceptions import NotFittedError

    est = mt.MoERegressor(n_experts=2)
    with pytest.raises(NotFittedError, match="not fitted"):
        est.predict(x)
    params = est.get_params()
    assert params["n_experts"] == 2 and params["gate"] == "softmax" and params["seed"] == 0
    assert est.set_params(tol=1e-8) is est and est.tol == 1e-8  # the default
    with pytest.raises(ValueError, match="Invalid parameter 'n_expert'"):
        est.set_params(n_expert=3)
    assert est.fit(x, y) is est
    assert est.n_features_in_ == 1 and est.converged_
    assert est.loglik_ == res.loglik  # same data, same defaults, same seed
    pred = est.predict(x)
    np.testing.assert_array_equal(pred, res.predict())
    r2 = est.score(x, y)
    resid = y - pred
    assert r2 == pytest.approx(1 - resid @ resid / np.sum((y - y.mean()) ** 2), rel=1e-12)
    assert 0.5 < r2 <= 1.0
    assert est.predict_proba(x[:5]).shape == (5, 2)
    # Round trip through get_params/set_params (the scikit-learn clone contract).
    clone = mt.MoERegressor().set_params(**est.get_params())
    assert clone.get_params() == est.get_params()
