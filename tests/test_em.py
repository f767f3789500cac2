"""EM: monotonicity, M-steps against independent references, vmap, consistency, inits, multistart."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import statsmodels.api as sm
from scipy.optimize import minimize
from scipy.special import logsumexp

from conftest import TRUTHS, simulate_softmax
from moetheory.em.estep import e_step
from moetheory.em.init import assign_to_truth, paper_init, perturb_init
from moetheory.em.mstep import expert_m_step, softmax_gate_m_step
from moetheory.em.backend import run_batch
from moetheory.em.config import EMConfig
from moetheory.em.pipeline import run_pipeline
from moetheory.em.starts import continuation_order, draw_starts
from moetheory.em.run import run_em
from moetheory.kernels import reference as ref
from moetheory.params import MoEParams
from moetheory.spec import MoESpec

N = 300
#: EM's iteration cap. The default of moetheory.fit, so that compiled EM loops (max_iter is a
#: static argument) are shared with test_api, which fits the same (k, d, n) shapes.
MAX_ITER = 5000
#: the number of starts moetheory.fit draws by default, for the same reason
N_STARTS = 12
KINDS = ("kmeans", "random") * (N_STARTS // 2)


def _jnp(params):
    return jax.tree.map(jnp.asarray, params)


def _np(params):
    return MoEParams(*(np.asarray(v, dtype=np.float64) for v in params))


@pytest.fixture(scope="module")
def datasets():
    """Three data sets of n = N per (k, d) truth, keyed by (k, d, seed)."""
    return {(k, d, s): simulate_softmax(TRUTHS[(k, d)], N, seed=100 * k + 10 * d + s)
            for (k, d) in TRUTHS for s in range(3)}


# --- monotonicity ---------------------------------------------------------------------------


@pytest.mark.parametrize("kd", list(TRUTHS), ids=lambda kd: f"k{kd[0]}d{kd[1]}")
def test_loglik_non_decreasing_along_em(kd, datasets):
    # EM guarantees ℓ(θ_{t+1}) ≥ ℓ(θ_t) in exact arithmetic. The only slack allowed is
    # floating-point rounding of a sum of n log-densities: 1e-9·|ℓ| (|ℓ| ~ 300 here, so 3e-7,
    # many orders above double rounding of the sum and far below any genuine EM decrease).
    k, d = kd
    spec = MoESpec(k, d)
    for seed in range(3):
        x, y = datasets[(k, d, seed)]
        x, y = jnp.asarray(x), jnp.asarray(y)
        # Three of the default twelve data-driven starts (k-means, random, k-means).
        starts = jax.tree.map(lambda v: v[:3], draw_starts(jax.random.key(seed), spec, x, y, KINDS))
        res = run_batch(spec, starts, x, y, tol_rel=1e-12, max_iter=MAX_ITER)
        for r in range(3):
            trace = np.asarray(res.trace[r])
            trace = trace[np.isfinite(trace)]
            assert trace.size >= 3
            steps = np.diff(trace)
            slack = 1e-9 * np.abs(trace[1:])
            assert np.all(steps >= -slack), (seed, r, steps.min())
            assert float(res.loglik[r]) == pytest.approx(trace[-1], abs=1e-9 * abs(trace[-1]))


def test_em_trace_matches_numpy_oracle_em(datasets):
    # The whole EM path (E-step, expert WLS, Newton gate step) against the plain NumPy loop.
    truth = TRUTHS[(2, 2)]
    x, y = datasets[(2, 2, 0)]
    spec = MoESpec(2, 2)
    start = perturb_init(jax.random.key(3), _jnp(truth), 2, scale=0.5)
    n_steps = 15
    res = run_em(spec, start, jnp.asarray(x), jnp.asarray(y), max_iter=n_steps)
    oracle = ref.em_softmax(_np(start), x, y, max_iter=n_steps)
    np.testing.assert_allclose(np.asarray(res.trace), oracle["trace"], rtol=1e-10)
    for name in ("beta0", "beta1", "a", "b", "var"):
        np.testing.assert_allclose(np.asarray(getattr(res.params, name)),
                                   getattr(oracle["params"], name), atol=1e-8, err_msg=name)


# --- M-steps against independent references ------------------------------------------------


@pytest.fixture(scope="module")
def mstep_problem(datasets):
    """Responsibilities at a point away from the optimum, for k = 3, d = 1."""
    truth = TRUTHS[(3, 1)]
    x, y = datasets[(3, 1, 0)]
    start = _np(perturb_init(jax.random.key(7), _jnp(truth), 3, scale=0.5))
    resp = ref.responsibilities(MoESpec(3, 1), start, x, y)
    return start, x, y, resp


def test_expert_m_step_equals_statsmodels_wls(mstep_problem):
    start, x, y, resp = mstep_problem
    new, floor_hit = expert_m_step(_jnp(start), jnp.asarray(x), jnp.asarray(y), jnp.asarray(resp), 1e-12)
    assert not np.any(np.asarray(floor_hit))
    a_ref, b_ref, var_ref = ref.expert_m_step(x, y, resp)
    design = sm.add_constant(x, prepend=False)  # columns: x, const
    for i in range(3):
        wls = sm.WLS(y, design, weights=resp[:, i]).fit()
        np.testing.assert_allclose(np.asarray(new.a[i]), wls.params[:1], atol=1e-9)
        np.testing.assert_allclose(float(new.b[i]), wls.params[1], atol=1e-9)
        # The MLE variance: weighted mean squared residual (no n/(n-p) correction).
        var_wls = np.sum(resp[:, i] * wls.resid ** 2) / resp[:, i].sum()
        assert float(new.var[i]) == pytest.approx(var_wls, rel=1e-9)
        np.testing.assert_allclose(a_ref[i], wls.params[:1], atol=1e-9)
        assert var_ref[i] == pytest.approx(var_wls, rel=1e-9)
    np.testing.assert_allclose(b_ref, np.asarray(new.b), atol=1e-9)


def _scipy_weighted_mnlogit(x, resp):
    """Independent reference: minimise the weighted multinomial-logit negative log-likelihood
    −Σ_n Σ_i r_ni log softmax_i(β_1ᵀx_n + β_0), last expert pinned, with scipy's BFGS
    (analytic gradient, gtol 1e-10) from zero."""
    n, d = x.shape
    k = resp.shape[1]
    design = np.column_stack([np.ones(n), x])  # const, x

    def nll(theta):
        coef = np.vstack([theta.reshape(k - 1, d + 1), np.zeros((1, d + 1))])  # (k, d+1)
        h = design @ coef.T
        logp = h - logsumexp(h, axis=1, keepdims=True)
        p = np.exp(logp)
        grad = -(resp - resp.sum(1, keepdims=True) * p)[:, :-1].T @ design
        return -np.sum(resp * logp), grad.ravel()

    out = minimize(nll, np.zeros((k - 1) * (d + 1)), jac=True, method="BFGS",
                   options={"gtol": 1e-10, "maxiter": 10_000})
    coef = out.x.reshape(k - 1, d + 1)
    beta0 = np.append(coef[:, 0], 0.0)
    beta1 = np.vstack([coef[:, 1:], np.zeros((1, d))])
    return beta0, beta1


def test_softmax_gate_m_step_equals_scipy_weighted_mnlogit(mstep_problem):
    start, x, y, resp = mstep_problem
    spec = MoESpec(3, 1)
    b0_ref, b1_ref = _scipy_weighted_mnlogit(x, resp)
    new = softmax_gate_m_step(spec, _jnp(start), jnp.asarray(x), jnp.asarray(resp))
    np.testing.assert_allclose(np.asarray(new.beta0), b0_ref, atol=1e-6)
    np.testing.assert_allclose(np.asarray(new.beta1), b1_ref, atol=1e-6)
    # The NumPy oracle's Newton step reaches the same maximiser, from the same warm start.
    b0_np, b1_np = ref.softmax_gate_m_step(x, resp, start.beta0, start.beta1)
    np.testing.assert_allclose(b0_np, b0_ref, atol=1e-6)
    np.testing.assert_allclose(b1_np, b1_ref, atol=1e-6)
    np.testing.assert_allclose(np.asarray(new.beta0), b0_np, atol=1e-9)
    np.testing.assert_allclose(np.asarray(new.beta1), b1_np, atol=1e-9)
    # Experts are untouched by the gate step; the last gate is pinned at exactly zero.
    np.testing.assert_array_equal(np.asarray(new.a), start.a)
    assert float(new.beta0[-1]) == 0.0 and float(new.beta1[-1, 0]) == 0.0


def test_e_step_matches_oracle(mstep_problem):
    start, x, y, resp = mstep_problem
    r, ll = e_step(MoESpec(3, 1), _jnp(start), jnp.asarray(x), jnp.asarray(y))
    np.testing.assert_allclose(np.asarray(r), resp, atol=1e-10)
    assert float(ll) == pytest.approx(ref.log_likelihood(MoESpec(3, 1), start, x, y), rel=1e-12)


# --- vmap, fixed_iter -------------------------------------------------------------------------


def test_vmap_over_replicates_equals_python_loop(datasets):
    # vmap batches the reductions (einsum, solve), which can change the last bit of a sum: one
    # EM step agrees to ~1e-15. Over a whole run, the gate M-step's *discrete* Newton stopping
    # rule (stop when a step gains < 1e-12·(1 + |Q|)) can flip on such a last-bit difference and
    # take one Newton step more or less, a ~1e-10 change in β. So: one step and the
    # log-likelihoods to 1e-12, iteration counts exactly, converged parameters to 1e-8.
    spec = MoESpec(2, 1)
    x, y = (jnp.asarray(v) for v in datasets[(2, 1, 0)])
    starts = jax.tree.map(lambda v: v[:3], draw_starts(jax.random.key(1), spec, x, y, KINDS))
    one_b = run_batch(spec, starts, x, y, tol_rel=0.0, max_iter=1, fixed_iter=True)
    batched = run_batch(spec, starts, x, y, tol_rel=1e-12, max_iter=MAX_ITER)
    for r in range(3):
        start_r = jax.tree.map(lambda v: v[r], starts)
        one = run_em(spec, start_r, x, y, tol_rel=0.0, max_iter=1, fixed_iter=True)
        for u, v in zip(jax.tree.leaves(one), jax.tree.leaves(jax.tree.map(lambda t: t[r], one_b))):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-12, atol=1e-12)
        single = run_em(spec, start_r, x, y, tol_rel=1e-12, max_iter=MAX_ITER)
        assert int(single.n_iter) == int(batched.n_iter[r])
        assert bool(single.converged) == bool(batched.converged[r])
        assert float(single.loglik) == pytest.approx(float(batched.loglik[r]), rel=1e-12)
        for u, v in zip(jax.tree.leaves(single.params), jax.tree.leaves(jax.tree.map(lambda t: t[r], batched.params))):
            np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-8, atol=1e-8)


def test_fixed_iter_mode(datasets):
    spec = MoESpec(2, 1)
    truth = TRUTHS[(2, 1)]
    x, y = (jnp.asarray(v) for v in datasets[(2, 1, 1)])
    start = perturb_init(jax.random.key(0), _jnp(truth), 2)
    cap = 150
    free = run_em(spec, start, x, y, tol_rel=1e-8, max_iter=cap)
    fixed = run_em(spec, start, x, y, tol_rel=1e-8, max_iter=cap, fixed_iter=True)
    assert bool(free.converged) and int(free.n_iter) < cap
    # After convergence the fixed-iteration loop keeps the parameters: same answer, same count.
    assert int(fixed.n_iter) == int(free.n_iter) and bool(fixed.converged)
    for u, v in zip(jax.tree.leaves(free), jax.tree.leaves(fixed)):
        np.testing.assert_allclose(np.asarray(u), np.asarray(v), rtol=1e-12, atol=1e-12)
    # tol = 0 only stops once ℓ is stationary to the last bit (EM gets there in a few dozen
    # iterations here); the trace up to that point is finite and monotone.
    exact = run_em(spec, start, x, y, tol_rel=0.0, max_iter=cap, fixed_iter=True)
    n_it = int(exact.n_iter)
    trace = np.asarray(exact.trace)
    assert trace.shape == (cap + 1,) and np.all(np.isfinite(trace[:n_it + 1]))
    assert np.all(np.diff(trace[:n_it + 1]) >= -1e-9 * np.abs(trace[1:n_it + 1]))
    if n_it < cap:
        assert bool(exact.converged) and trace[n_it] == trace[n_it - 1]
    # A cap below convergence: exactly max_iter iterations, not converged.
    one = run_em(spec, start, x, y, tol_rel=0.0, max_iter=1, fixed_iter=True)
    assert int(one.n_iter) == 1 and not bool(one.converged)
    assert np.all(np.isfinite(np.asarray(one.trace))) and float(one.trace[1]) > float(one.trace[0])


# --- consistency ------------------------------------------------------------------------------


def _param_error(spec, est, truth):
    """Mean absolute error over the identified coordinates (pinned gate, experts, variances)."""
    e, t = _np(est).pinned(), truth.pinned()
    diffs = [e.beta0[:-1] - t.beta0[:-1], (e.beta1[:-1] - t.beta1[:-1]).ravel(),
             (e.a - t.a).ravel(), e.b - t.b, e.var - t.var]
    return float(np.mean(np.abs(np.concatenate(diffs))))


def test_errors_shrink_with_n():
    # Exact-fitted, well-separated truth: parameter errors are O(n^-1/2), so going from n = 500
    # to n = 8000 divides them by about 4; we require a factor 2. Over 16 replicates the mean
    # errors here are ≈ 0.076 (Monte Carlo SE ≈ 0.010) and ≈ 0.018 (SE ≈ 0.002): the margin
    # of the test, 0.038 − 0.018, is ≈ 3.7 standard errors of that difference.
    truth = TRUTHS[(2, 1)]
    spec = MoESpec(2, 1)
    errors = {}
    for n in (500, 8000):
        errs = []
        for rep in range(16):
            x, y = simulate_softmax(truth, n, seed=1000 * rep + n)
            start = perturb_init(jax.random.key(rep), _jnp(truth), 2)
            res = run_em(spec, start, jnp.asarray(x), jnp.asarray(y), tol_rel=1e-10, max_iter=500)
            assert bool(res.converged)
            errs.append(_param_error(spec, res.params, truth))
        errors[n] = np.mean(errs)
    assert errors[8000] < errors[500] / 2, errors


# --- initialisation -------------------------------------------------------------------------


def test_assign_to_truth_uses_every_true_expert():
    for k, k_true in ((2, 2), (3, 2), (4, 2), (5, 3)):
        for s in range(8):
            idx = np.asarray(assign_to_truth(jax.random.key(s), k, k_true))
            assert idx.shape == (k,)
            assert set(idx.tolist()) == set(range(k_true))
            assert idx[-1] == k_true - 1  # last fitted ↔ last true (the pinned reference)
    with pytest.raises(ValueError, match="at least as many experts"):
        assign_to_truth(jax.random.key(0), 1, 2)


def test_paper_init_is_near_truth_and_pinned():
    truth = TRUTHS[(2, 1)]
    for n in (100, 10_000):
        p = _np(paper_init(jax.random.key(0), _jnp(truth), 3, n))
        assert p.beta0[-1] == 0.0 and np.all(p.beta1[-1] == 0.0)
        assert np.all(p.var > 0)
        # Which true expert each fitted one started from: the nearest intercept (the true ones,
        # 1 and −1, are far apart relative to the noise sd ≤ 0.05·n^-0.083; 8 sd is a generous
        # bound for one start). Every true expert is used, the last fitted ↔ the last true.
        t = truth.pinned()
        idx = np.argmin(np.abs(p.b[:, None] - t.b[None, :]), axis=1)
        assert set(idx.tolist()) == {0, 1} and idx[-1] == 1
        assert np.all(np.abs(p.b - t.b[idx]) <= 8 * 0.05 * n ** -0.083)
        assert np.all(np.abs(p.a - t.a[idx]) <= 8 * 0.05 * n ** -0.083)
        assert np.all(p.var >= t.var[idx])  # variance noise is |N(0, ·)|, added
    # The official code's slip (variance started at the standard deviation) is opt-in.
    slip = _np(paper_init(jax.random.key(0), _jnp(truth), 2, 10**6, var_from_sd=True))
    np.testing.assert_allclose(slip.var, np.sqrt(truth.var), atol=1e-3)


@pytest.mark.parametrize("kind", ["kmeans", "random"])
def test_data_driven_inits_are_valid(kind, datasets):
    for k, d in TRUTHS:
        spec = MoESpec(k, d)
        x, y = (jnp.asarray(v) for v in datasets[(k, d, 0)])
        every = _np(draw_starts(jax.random.key(0), spec, x, y, KINDS))
        starts = jax.tree.map(lambda v: v[[i for i, kd in enumerate(KINDS) if kd == kind]], every)
        assert starts.beta1.shape == (N_STARTS // 2, k, d) and starts.var.shape == (N_STARTS // 2, k)
        for leaf in starts:
            assert np.all(np.isfinite(leaf))
        assert np.all(starts.var > 0)
        np.testing.assert_array_equal(starts.beta0[:, -1], 0.0)
        np.testing.assert_array_equal(starts.beta1[:, -1], 0.0)
        if kind == "random":  # different keys, different partitions (k-means may agree)
            assert not np.allclose(starts.b[0], starts.b[1])


def test_draw_starts_errors(datasets):
    spec = MoESpec(2, 1)
    x, y = (jnp.asarray(v) for v in datasets[(2, 1, 0)])
    with pytest.raises(ValueError, match="truth"):
        draw_starts(jax.random.key(0), spec, x, y, ("paper",))
    with pytest.raises(ValueError, match="unknown init kind"):
        draw_starts(jax.random.key(0), spec, x, y, ("kmeens",))


# --- multistart -----------------------------------------------------------------------------


def test_continuation_order_skips_duplicates_and_floored_short_runs():
    ll = np.array([-5.0, -5.0 * (1 + 1e-12), -6.0, -4.0, np.nan, -7.0])
    hit = np.array([False, False, False, True, False, False])
    # -4 hit the floor, the second -5 is the first one again: -5, -6, -7 are the distinct
    # healthy ones
    np.testing.assert_array_equal(continuation_order(ll, hit, 3), [0, 2, 5])
    # too few distinct healthy starts: the rest fill in log-likelihood order
    np.testing.assert_array_equal(continuation_order(ll, hit, 5), [0, 2, 5, 3, 1])
    np.testing.assert_array_equal(continuation_order(ll, np.zeros(6, bool), 2), [3, 0])


def test_pipeline_reports_every_start_and_picks_the_best(datasets):
    spec = MoESpec(3, 1)
    x, y = datasets[(3, 1, 1)]
    # one round of the start policy (no confirmation in a second round, no coverage check)
    cfg = EMConfig(n_init=N_STARTS, n_keep=3, min_best_hits=1, max_new_rate=1.0)
    ms = run_pipeline(jax.random.key(4), spec, x, y, cfg)
    assert ms.n_rounds == 1
    assert ms.start_kinds == cfg.start_kinds(N_STARTS)
    assert ms.start_logliks.shape == (N_STARTS,) and np.all(np.isfinite(ms.start_logliks))
    # The continued starts: the best distinct healthy short runs first (continuation_order).
    assert np.all(np.isfinite(ms.short_logliks))
    np.testing.assert_array_equal(
        ms.continued, continuation_order(ms.short_logliks, ms.short_floor_hit, 3,
                                         floor=0.01 * N))
    # every start's record is where it stopped: continued starts at their final value
    np.testing.assert_array_equal(ms.start_logliks[ms.continued], ms.final_logliks)
    others = np.setdiff1d(np.arange(N_STARTS), ms.continued)
    np.testing.assert_array_equal(ms.start_logliks[others], ms.short_logliks[others])
    assert ms.final_logliks.shape == (3,)
    # The winner is the best continued start among those that kept every variance above the
    # floor (all of them when none did); final log-likelihoods within 1e-12·|best| of the best
    # are ties (one optimum reached by several starts), won by a certified start, then by the
    # smallest start index.
    healthy = ~ms.final_floor_hit if (~ms.final_floor_hit).any() else np.ones(3, bool)
    score = np.where(healthy, ms.final_logliks, -np.inf)
    top = score.max()
    tied = [i for i in range(3) if score[i] >= top - 1e-12 * abs(top)]
    if ms.final_certified[tied].any():
        tied = [i for i in tied if ms.final_certified[i]]
    assert ms.best_start == min(int(ms.continued[i]) for i in tied)
    best = list(ms.continued).index(ms.best_start)
    assert ms.loglik == pytest.approx(ms.final_logliks[best], abs=1e-12)
    # Continuing (and polishing) never loses likelihood relative to the short run.
    assert np.all(ms.final_logliks >= ms.short_logliks[ms.continued] - 1e-9 * np.abs(ms.final_logliks))
    # The reported log-likelihood is the NumPy oracle's at the winning parameters.
    oracle_ll = ref.log_likelihood(spec, _np(ms.params), np.asarray(x), np.asarray(y))
    assert oracle_ll == pytest.approx(ms.loglik, rel=1e-12)
    assert ms.certificate.certified
