"""The model (gates, densities, sampling, designs) against the NumPy oracle and Monte Carlo."""
import jax
import numpy as np
import pytest

from moetheory import model
from moetheory.designs import make_design
from moetheory.gates import active_mask, log_gate_weights
from moetheory.kernels import reference as ref
from moetheory.params import MoEParams, check_params
from moetheory.spec import MoESpec

K, D, N = 3, 2, 300

GATE_SPECS = [
    MoESpec(K, D),
    MoESpec(K, D, gate="topk", top_k=2),
    MoESpec(K, D, gate="topk", top_k=2, select_by="logit"),
    MoESpec(K, D, gate="topk", top_k=1),
    MoESpec(K, D, gate="topk", top_k=K),
    MoESpec(K, D, gate="temperature"),
    MoESpec(K, D, gate="temperature", tau="estimated"),
    MoESpec(K, D, gate="activation", activation="tanh"),
    MoESpec(K, D, gate="activation", activation="sigmoid"),
]
GATE_IDS = ["softmax", "topk2-score", "topk2-logit", "topk1", "topk3", "temperature",
            "temperature-est", "act-tanh", "act-sigmoid"]


@pytest.fixture(scope="module")
def problem():
    """Random parameters (with a non-trivial τ and gate bias) and data (x, y)."""
    rng = np.random.default_rng(0)
    params = MoEParams.create(beta0=rng.normal(0, 1, K), beta1=rng.normal(0, 2, (K, D)),
                              a=rng.normal(0, 1, (K, D)), b=rng.normal(0, 1, K),
                              var=rng.uniform(0.1, 0.5, K), tau=0.7)
    x = rng.uniform(-1.5, 1.5, (N, D))
    y = rng.normal(0, 1.5, N)
    return params, x, y


@pytest.mark.parametrize("spec", GATE_SPECS, ids=GATE_IDS)
def test_jax_matches_numpy_oracle(spec, problem):
    params, x, y = problem
    logg = np.asarray(log_gate_weights(spec, params, x))
    logg_ref = ref.log_gate_weights(spec, params, x)
    # Same active sets (-inf in the same places), same finite values.
    np.testing.assert_array_equal(np.isfinite(logg), np.isfinite(logg_ref))
    fin = np.isfinite(logg_ref)
    np.testing.assert_allclose(logg[fin], logg_ref[fin], rtol=0, atol=1e-10)

    ld = np.asarray(model.log_density(spec, params, x, y))
    np.testing.assert_allclose(ld, ref.log_density(spec, params, x, y), rtol=0, atol=1e-10)
    ll = float(model.log_likelihood(spec, params, x, y))
    ll_ref = ref.log_likelihood(spec, params, x, y)
    assert abs(ll - ll_ref) <= 1e-10 * max(1.0, abs(ll_ref))
    resp = np.asarray(model.responsibilities(spec, params, x, y))
    np.testing.assert_allclose(resp, ref.responsibilities(spec, params, x, y), rtol=0, atol=1e-10)
    np.testing.assert_allclose(resp.sum(axis=1), 1.0, atol=1e-12)
    np.testing.assert_allclose(np.asarray(model.log_expert_density(spec, params, x, y)),
                               ref.log_expert_density(params, x, y), rtol=0, atol=1e-10)


def test_oracle_against_textbook_formula(problem):
    # The oracle itself, row by row in plain Python: p(y|x) = Σ_i g_i(x) N(y; a_iᵀx + b_i, ν_i)
    # with g the softmax of (β_1ᵀx + β_0)/τ (temperature gate).
    from scipy.stats import norm

    params, x, y = problem
    spec = MoESpec(K, D, gate="temperature")
    tau = float(params.tau)
    for n in range(5):
        h = [(float(params.beta1[i] @ x[n]) + params.beta0[i]) / tau for i in range(K)]
        g = np.exp(h) / np.sum(np.exp(h))
        dens = sum(g[i] * norm.pdf(y[n], float(params.a[i] @ x[n]) + params.b[i], np.sqrt(params.var[i]))
                   for i in range(K))
        assert ref.log_density(spec, params, x[n:n + 1], y[n:n + 1])[0] == pytest.approx(np.log(dens), rel=1e-12)


@pytest.mark.parametrize("spec", GATE_SPECS, ids=GATE_IDS)
def test_gate_weights_are_probabilities(spec, problem):
    params, x, _ = problem
    g = np.asarray(model.gate_probabilities(spec, params, x))
    assert g.shape == (N, K)
    assert np.all(g >= 0)
    np.testing.assert_allclose(g.sum(axis=1), 1.0, atol=1e-12)
    if spec.gate == "topk":
        # Exactly K experts carry (strictly positive) weight in every row.
        np.testing.assert_array_equal((g > 0).sum(axis=1), spec.top_k)
        np.testing.assert_array_equal(np.asarray(active_mask(spec, params, x)), g > 0)
    else:
        assert np.all(g > 0)


def test_topk_selection_rules_differ_and_ties_go_to_lower_index():
    # Scores β_1ᵀx tie between experts 0 and 1 at x = 0: the lower index is kept.
    spec = MoESpec(3, 1, gate="topk", top_k=1)
    p = MoEParams.create([0.0, 5.0, 0.0], [[1.0], [1.0], [-1.0]], [[0.0]] * 3, [0.0] * 3, [1.0] * 3)
    x = np.array([[0.0], [1.0], [-1.0]])
    g = np.asarray(model.gate_probabilities(spec, p, x))
    np.testing.assert_array_equal(g, [[1, 0, 0], [1, 0, 0], [0, 0, 1]])
    # Ranking by the full logit: expert 1's bias wins at x = 0 and x = 1.
    g_logit = np.asarray(model.gate_probabilities(spec.with_(select_by="logit"), p, x))
    np.testing.assert_array_equal(g_logit, [[0, 1, 0], [0, 1, 0], [0, 1, 0]])
    np.testing.assert_array_equal(ref.active_set(spec, p, x), g > 0)
    np.testing.assert_array_equal(ref.active_set(spec.with_(select_by="logit"), p, x), g_logit > 0)


def test_topk_with_k_equal_n_experts_is_softmax(problem):
    params, x, y = problem
    full = model.log_likelihood(MoESpec(K, D, gate="topk", top_k=K), params, x, y)
    soft = model.log_likelihood(MoESpec(K, D), params, x, y)
    assert float(full) == pytest.approx(float(soft), abs=1e-10)


def test_temperature_one_is_softmax(problem):
    params, x, y = problem
    p1 = params._replace(tau=np.asarray(1.0))
    ll_t = model.log_likelihood(MoESpec(K, D, gate="temperature"), p1, x, y)
    assert float(ll_t) == pytest.approx(float(model.log_likelihood(MoESpec(K, D), p1, x, y)), abs=1e-10)


def test_softmax_invariant_to_common_gate_shift(problem):
    params, x, y = problem
    spec = MoESpec(K, D)
    shifted = params._replace(beta0=params.beta0 + 1.7, beta1=params.beta1 + np.array([0.4, -2.0]))
    ll = float(model.log_likelihood(spec, params, x, y))
    assert float(model.log_likelihood(spec, shifted, x, y)) == pytest.approx(ll, abs=1e-9)
    assert float(model.log_likelihood(spec, params.pinned(), x, y)) == pytest.approx(ll, abs=1e-9)
    np.testing.assert_array_equal(params.pinned().beta1[-1], 0.0)
    assert params.pinned().beta0[-1] == 0.0


def test_predict_moments_match_oracle_formula(problem):
    params, x, _ = problem
    spec = MoESpec(K, D)
    g = np.exp(ref.log_gate_weights(spec, params, x))
    mu = x @ params.a.T + params.b
    mean = (g * mu).sum(1)
    var = (g * (params.var + mu ** 2)).sum(1) - mean ** 2
    np.testing.assert_allclose(np.asarray(model.predict_mean(spec, params, x)), mean, atol=1e-12)
    np.testing.assert_allclose(np.asarray(model.predict_var(spec, params, x)), var, atol=1e-10)


# --- sampling: Monte Carlo checks -------------------------------------------------------------

SAMPLE_SPECS = [MoESpec(2, 1), MoESpec(3, 1, gate="topk", top_k=2)]
SAMPLE_PARAMS = [
    MoEParams.create([0.5, 0.0], [[2.0], [0.0]], [[1.0], [-2.0]], [0.5, 0.0], [0.2, 0.5]),
    MoEParams.create([0.0, 0.5, 0.0], [[-3.0], [0.0], [3.0]], [[-2.0], [1.0], [2.0]],
                     [1.0, 0.0, -1.0], [0.1, 0.3, 0.2]),
]
X_POINTS = np.array([-0.8, 0.1, 0.6])
M_DRAWS = 20_000


@pytest.mark.parametrize("spec,params", list(zip(SAMPLE_SPECS, SAMPLE_PARAMS)), ids=["softmax", "topk"])
def test_sample_reproduces_conditional_moments(spec, params):
    # M_DRAWS draws at each of a few fixed x. Each comparison allows 4 Monte Carlo standard
    # errors: SE(mean) = sqrt(Var/M); SE(sample variance) = sqrt((m4 − s⁴)/M) with m4 the sample
    # 4th central moment (delta method); SE(frequency of expert i) = sqrt(g_i(1 − g_i)/M).
    # With ~20 comparisons at 4 SE a false alarm has probability < 2e-3 (and seeds are fixed).
    x = np.repeat(X_POINTS, M_DRAWS)[:, None]
    y, z = model.sample(jax.random.key(123), spec, params, x, return_labels=True)
    y = np.asarray(y).reshape(len(X_POINTS), M_DRAWS)
    z = np.asarray(z).reshape(len(X_POINTS), M_DRAWS)
    xp = X_POINTS[:, None]
    mean = np.asarray(model.predict_mean(spec, params, xp))
    var = np.asarray(model.predict_var(spec, params, xp))
    gate = np.asarray(model.gate_probabilities(spec, params, xp))
    for j in range(len(X_POINTS)):
        yj = y[j]
        s2 = yj.var()
        m4 = np.mean((yj - yj.mean()) ** 4)
        assert abs(yj.mean() - mean[j]) <= 4 * np.sqrt(var[j] / M_DRAWS)
        assert abs(s2 - var[j]) <= 4 * np.sqrt((m4 - s2 ** 2) / M_DRAWS)
        freq = np.bincount(z[j], minlength=spec.n_experts) / M_DRAWS
        se = np.sqrt(gate[j] * (1 - gate[j]) / M_DRAWS)
        assert np.all(np.abs(freq - gate[j]) <= 4 * se + 1e-15)  # inactive experts: exactly 0
        if spec.gate == "topk":
            assert np.count_nonzero(freq) <= spec.top_k


def test_sample_is_reproducible_and_validates_x():
    spec, params = SAMPLE_SPECS[0], SAMPLE_PARAMS[0]
    x = np.linspace(-1, 1, 50)
    y1 = np.asarray(model.sample(jax.random.key(5), spec, params, x))
    y2 = np.asarray(model.sample(jax.random.key(5), spec, params, x))
    np.testing.assert_array_equal(y1, y2)
    assert y1.shape == (50,) and y1.dtype == np.float64
    with pytest.raises(ValueError, match="x"):
        model.sample(jax.random.key(0), spec, params, np.zeros((5, 2)))


# --- designs ---------------------------------------------------------------------------------


def test_design_grid():
    x = np.asarray(make_design(None, "grid", 11, low=0.0, high=1.0))
    assert x.shape == (11, 1)
    assert x[0, 0] == 0.0 and x[-1, 0] == 1.0
    np.testing.assert_allclose(np.diff(x[:, 0]), 0.1, atol=1e-12)
    with pytest.raises(ValueError, match="dim"):
        make_design(None, "grid", 5, dim=2)


def test_design_uniform_box():
    n = 20_000
    x = np.asarray(make_design(jax.random.key(0), "uniform", n, 3, low=-2.0, high=1.0))
    assert x.shape == (n, 3) and x.dtype == np.float64
    assert x.min() >= -2.0 and x.max() <= 1.0
    # Mean -0.5 per column; SE = (3/sqrt(12))/sqrt(n); 4 SE.
    assert np.all(np.abs(x.mean(0) + 0.5) <= 4 * (3 / np.sqrt(12)) / np.sqrt(n))


def test_design_sphere_radius():
    x = np.asarray(make_design(jax.random.key(1), "sphere", 500, 4, radius=2.5))
    np.testing.assert_allclose(np.linalg.norm(x, axis=1), 2.5, rtol=1e-12)
    # Uniform on the sphere: mean zero; each coordinate has variance r²/d = 2.5²/4; 4 SE.
    assert np.all(np.abs(x.mean(0)) <= 4 * np.sqrt(2.5 ** 2 / 4 / 500))


def test_design_gaussian_moments():
    n = 20_000
    x = np.asarray(make_design(jax.random.key(2), "gaussian", n, 2, scale=2.0))
    # Mean 0, SE = 2/sqrt(n); variance 4, SE = sqrt(2·4²/n) for a Gaussian; covariance 0,
    # SE = 4/sqrt(n). Each within 4 SE.
    assert np.all(np.abs(x.mean(0)) <= 4 * 2.0 / np.sqrt(n))
    assert np.all(np.abs(x.var(0) - 4.0) <= 4 * np.sqrt(2 * 16 / n))
    assert abs(np.mean(x[:, 0] * x[:, 1])) <= 4 * 4.0 / np.sqrt(n)


def test_design_errors():
    with pytest.raises(ValueError, match="design must be one of"):
        make_design(None, "grd", 5)
    with pytest.raises(ValueError, match="key"):
        make_design(None, "uniform", 5)
    with pytest.raises(ValueError, match="n must be"):
        make_design(None, "grid", 0)
    with pytest.raises(ValueError, match="high must exceed low"):
        make_design(jax.random.key(0), "uniform", 5, low=1.0, high=1.0)


# --- spec and params -------------------------------------------------------------------------


def test_spec_is_hashable_and_static():
    a = MoESpec(3, 2, gate="topk", top_k=np.int64(2))
    b = MoESpec(3, 2, gate="topk", top_k=2)
    assert a == b and hash(a) == hash(b)
    assert a.with_(select_by="logit").select_by == "logit"
    with pytest.raises(Exception):
        a.n_experts = 4
    assert MoESpec(2, 1, gate="temperature", tau="estimated").estimates_tau
    assert not MoESpec(2, 1, gate="temperature").estimates_tau
    assert not MoESpec(2, 1).has_tau


def test_params_create_shapes_roundtrip_and_permute():
    p = MoEParams.create([1.0, 0.0], [2.0, 0.0], [3.0, -1.0], [0.5, 0.1], [0.2, 0.3])
    assert p.beta1.shape == (2, 1) and p.a.shape == (2, 1) and p.tau.shape == ()
    assert p.n_experts == 2 and p.dim == 1
    check_params(MoESpec(2, 1), p)
    with pytest.raises(ValueError, match="params.beta1 must have shape"):
        check_params(MoESpec(2, 2), p)
    back = MoEParams.from_dict(p.to_dict())
    for u, v in zip(back, p):
        np.testing.assert_array_equal(u, v)
    q = p.permute([1, 0])
    np.testing.assert_array_equal(q.var, [0.3, 0.2])
    np.testing.assert_array_equal(q.a[:, 0], [-1.0, 3.0])


def test_public_functions_compute_in_float64_in_a_fresh_process():
    # JAX defaults to float32 and the switch is global: the model's public functions must turn
    # float64 on themselves, whatever ran before them (a fresh interpreter has run nothing)
    import subprocess
    import sys

    code = """
import jax
import numpy as np
from moetheory.designs import make_design
from moetheory.gates import log_gate_weights
from moetheory.model import log_density, log_likelihood
from moetheory.params import MoEParams
from moetheory.spec import MoESpec
p = MoEParams.create([0.5, 0.0], [[2.0], [0.0]], [[-1.0], [1.0]], [0.5, -0.5], [0.05, 0.05])
x = np.linspace(-1, 1, 7)[:, None]
print(log_density(MoESpec(2, 1), p, x, x[:, 0]).dtype,
      log_likelihood(MoESpec(2, 1), p, x, x[:, 0]).dtype,
      log_gate_weights(MoESpec(2, 1), p, x).dtype,
      make_design(jax.random.key(0), "uniform", 5).dtype)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["float64"] * 4
