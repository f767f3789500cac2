"""Conformance of the fused Numba EM kernels with the JAX EM (DESIGN.md §3.4).

The Numba kernels (:mod:`moetheory.kernels.numba_em`) are an optional CPU fast path; these tests
bind them to the JAX implementation: same log-likelihood, same responsibilities, same expert
sufficient statistics and same gate gradient/information to 1e-10 (relative), and the same EM
path. No timing assertions here: speed is measured in ``benchmarks/``.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("numba")

from conftest import TRUTHS, simulate_softmax  # noqa: E402

from moetheory.em.estep import e_step  # noqa: E402
from moetheory.em.mstep import expert_m_step, gate_objective, softmax_gate_m_step  # noqa: E402
from moetheory.em.run import run_em  # noqa: E402
from moetheory.kernels import numba_em  # noqa: E402
from moetheory.params import MoEParams  # noqa: E402
from moetheory.spec import MoESpec  # noqa: E402

RTOL = 1e-10


def _start(truth, seed=0):
    """A start away from the truth (the kernels must agree anywhere, not only at an optimum)."""
    rng = np.random.default_rng(seed)
    k, d = truth.beta1.shape
    return truth._replace(beta0=truth.beta0 + 0.3 * rng.standard_normal(k),
                          beta1=truth.beta1 + 0.5 * rng.standard_normal((k, d)),
                          a=truth.a + 0.3 * rng.standard_normal((k, d)),
                          b=truth.b + 0.3 * rng.standard_normal(k),
                          var=truth.var * np.exp(0.3 * rng.standard_normal(k)))


def _close(got, want, rtol=RTOL, what=""):
    got, want = np.asarray(got, dtype=float), np.asarray(want, dtype=float)
    scale = max(1.0, float(np.max(np.abs(want))))
    err = float(np.max(np.abs(got - want))) / scale
    assert err <= rtol, f"{what}: max abs diff / max(1, max |ref|) = {err:.3g} > {rtol:g}"


def _jax(tree):
    return jax.tree.map(jnp.asarray, tree)


def _weights(n, kind, seed=1):
    if kind is None:
        return None
    rng = np.random.default_rng(seed)
    w = np.ones(n)
    w[rng.choice(n, n // 5, replace=False)] = 0.0  # padded rows
    if kind == "real":
        w *= rng.uniform(0.5, 2.0, n)
    return w


@pytest.mark.parametrize("kd", [(2, 1), (3, 1), (2, 2)])
@pytest.mark.parametrize("weights", [None, "mask", "real"])
@pytest.mark.parametrize("n_chunks", [1, 7])
def test_estep_stats_match_jax(kd, weights, n_chunks):
    truth = TRUTHS[kd]
    k, d = kd
    spec = MoESpec(k, d)
    x, y = simulate_softmax(truth, 600, seed=5)
    w = _weights(x.shape[0], weights)
    p = _start(truth).pinned()
    s = numba_em.estep_stats(p, x, y, w, n_chunks=n_chunks, return_resp=True)

    resp, ll = e_step(spec, _jax(p), jnp.asarray(x), jnp.asarray(y),
                      None if w is None else jnp.asarray(w))
    resp = np.asarray(resp)
    _close(s["loglik"], float(ll), what="log-likelihood")
    _close(s["resp"], resp, what="responsibilities")
    xt = np.column_stack([x, np.ones(x.shape[0])])
    _close(s["R"], resp.sum(0), what="Σ r")
    _close(s["G"], np.einsum("ni,na,nb->iab", resp, xt, xt), what="Σ r x̃x̃ᵀ")
    yf = numba_em.stats_in_y_form(p, s)
    _close(yf["rxy"], np.einsum("ni,na,n->ia", resp, xt, y), what="Σ r x̃ y")
    _close(yf["ryy"], (resp * (y * y)[:, None]).sum(0), what="Σ r y²")
    _close(s["q"], float(gate_objective(spec, _jax(p), jnp.asarray(x), jnp.asarray(resp))),
           what="gate objective")

    # The gate gradient and information at the current gate, against JAX autodiff of the
    # gate objective in the packed coordinates θ (k-1, d+1) = [β_1, β_0] (last expert pinned).
    def q_of_theta(theta):
        full = jnp.concatenate([theta, jnp.zeros((1, d + 1))], axis=0)
        pp = _jax(p)._replace(beta1=full[:, :d], beta0=full[:, d])
        return gate_objective(spec, pp, jnp.asarray(x), jnp.asarray(resp))

    theta = jnp.concatenate([p.beta1[:-1], p.beta0[:-1, None]], axis=1)
    m = (k - 1) * (d + 1)
    _close(s["grad"], jax.grad(q_of_theta)(theta), what="gate gradient")
    _close(s["info"], -np.asarray(jax.hessian(q_of_theta)(theta)).reshape(m, m),
           what="gate information")


@pytest.mark.parametrize("k", [3, 12])
@pytest.mark.parametrize("hard", [False, True])
def test_grouped_logs_equal_per_row_logs(k, hard):
    """With 0/1 weights the pass takes one log per group of rows (of the product of their
    normalisers); the per-row path (any weights) must give the same ℓ, Q and Σ w lse, to
    rounding. Many experts with flat gates put every normaliser near k (the largest products);
    n = 1001 leaves a partial block and a partial group."""
    rng = np.random.default_rng(7)
    n, d = 1001, 1
    x = rng.uniform(-1, 1, (n, d))
    y = rng.standard_normal(n)
    w = (rng.uniform(size=n) > 0.2).astype(float)
    args = (np.zeros(k), 0.01 * rng.standard_normal((k, d)), rng.standard_normal((k, d)),
            rng.standard_normal(k), np.full(k, 4.0))
    out = {}
    for unit in (True, False):
        resp = np.empty((n, k))
        out[unit] = numba_em.estep_pass(x, y, w, *args, resp, 3, hard, True, unit)
    # The two paths differ only in the rounding of the logs and of their sums: about
    # n·ε·log k absolute, ~1e-15 of these sums; 1e-13 is rounding level, not a modelling slack.
    for idx, what in ((0, "log-likelihood"), (5, "Q"), (8, "Σ w lse")):
        assert abs(out[True][idx] - out[False][idx]) <= 1e-13 * abs(out[False][idx]), what
    _close(out[True][1], out[False][1], rtol=1e-14, what="Σ r")


@pytest.mark.parametrize("kd", [(2, 1), (3, 1), (2, 2)])
def test_expert_m_step_from_stats_matches_jax(kd):
    """The exact expert M-step solved from the fused statistics equals the JAX M-step."""
    truth = TRUTHS[kd]
    k, d = kd
    spec = MoESpec(k, d)
    x, y = simulate_softmax(truth, 500, seed=9)
    p = _start(truth, seed=3)
    s = numba_em.estep_stats(p, x, y)
    coef = np.concatenate([p.a, p.b[:, None]], axis=1)
    new_coef = np.empty_like(coef)
    var = np.empty(k)
    for i in range(k):
        delta = np.linalg.solve(s["G"][i], s["rxe"][i])
        new_coef[i] = coef[i] + delta
        var[i] = (s["ree"][i] - delta @ s["rxe"][i]) / s["R"][i]
    resp, _ = e_step(spec, _jax(p), jnp.asarray(x), jnp.asarray(y))
    want, _ = expert_m_step(_jax(p), jnp.asarray(x), jnp.asarray(y), resp, 1e-10)
    _close(new_coef[:, :d], want.a, what="expert slopes")
    _close(new_coef[:, d], want.b, what="expert intercepts")
    _close(var, want.var, what="expert variances")


@pytest.mark.parametrize("kd", [(2, 1), (3, 1), (2, 2)])
def test_gate_pass_matches_jax_newton(kd):
    """One Newton step from the fused gate pass equals JAX's first Newton/IRLS step."""
    truth = TRUTHS[kd]
    k, d = kd
    spec = MoESpec(k, d)
    x, y = simulate_softmax(truth, 500, seed=2)
    p = _start(truth, seed=4).pinned()
    resp, _ = e_step(spec, _jax(p), jnp.asarray(x), jnp.asarray(y))
    resp = np.asarray(resp)
    g = numba_em.gate_stats(p.beta0, p.beta1, x, resp)
    m = (k - 1) * (d + 1)
    step = np.linalg.solve(g["info"], g["grad"].reshape(m)).reshape(k - 1, d + 1)
    theta = np.concatenate([p.beta1[:-1], p.beta0[:-1, None]], axis=1) + step
    q_new = numba_em.gate_stats(np.append(theta[:, d], 0.0),
                                np.vstack([theta[:, :d], np.zeros((1, d))]), x, resp,
                                derivs=False)["q"]
    if q_new >= g["q"]:  # the full step is accepted by the step-halving rule
        want = softmax_gate_m_step(spec, _jax(p), jnp.asarray(x), jnp.asarray(resp), max_newton=1)
        _close(theta[:, :d], np.asarray(want.beta1)[:-1], rtol=1e-9, what="β_1 after one step")
        _close(theta[:, d], np.asarray(want.beta0)[:-1], rtol=1e-9, what="β_0 after one step")


@pytest.mark.parametrize("kd", [(2, 1), (3, 1), (2, 2)])
@pytest.mark.parametrize("max_newton", [1, 50])
def test_run_em_numba_matches_run_em(kd, max_newton):
    """Same start, same tolerance: the same EM path (iterations, trace, estimate)."""
    truth = TRUTHS[kd]
    k, d = kd
    spec = MoESpec(k, d)
    x, y = simulate_softmax(truth, 800, seed=13)
    p = _start(truth, seed=6)
    opts = (("max_newton", max_newton),)
    want = run_em(spec, _jax(p), jnp.asarray(x), jnp.asarray(y), tol_rel=1e-9, max_iter=300,
                  gate_options=opts)
    got = numba_em.run_em_numba(p, x, y, tol_rel=1e-9, max_iter=300, max_newton=max_newton)
    assert got["converged"] == bool(want.converged)
    assert got["n_iter"] == int(want.n_iter)
    wt = np.asarray(want.trace)
    _close(got["trace"][np.isfinite(wt)], wt[np.isfinite(wt)], rtol=1e-9, what="trace")
    assert np.isnan(got["trace"][~np.isfinite(wt)]).all()
    _close(got["loglik"], float(want.loglik), rtol=1e-10, what="final log-likelihood")
    for name in ("a", "b", "var", "beta0", "beta1"):
        _close(getattr(got["params"], name), getattr(want.params, name), rtol=1e-5, what=name)


def test_run_em_numba_monotone_and_weights():
    """The fused EM never decreases the log-likelihood; zero weights drop rows exactly."""
    truth = TRUTHS[(3, 1)]
    x, y = simulate_softmax(truth, 700, seed=21)
    p = _start(truth, seed=8)
    res = numba_em.run_em_numba(p, x, y, tol_rel=1e-10, max_iter=400, max_newton=1)
    tr = res["trace"][np.isfinite(res["trace"])]
    assert np.all(np.diff(tr) >= -1e-9 * np.abs(tr[:-1]))
    # Padding with zero-weight rows changes nothing.
    rng = np.random.default_rng(0)
    xp = np.vstack([x, rng.uniform(-5, 5, (300, 1))])
    yp = np.concatenate([y, rng.normal(0, 50, 300)])
    w = np.concatenate([np.ones(700), np.zeros(300)])
    a = numba_em.run_em_numba(p, x, y, tol_rel=1e-10, max_iter=50)
    b = numba_em.run_em_numba(p, xp, yp, weights=w, tol_rel=1e-10, max_iter=50)
    assert a["n_iter"] == b["n_iter"]
    _close(b["loglik"], a["loglik"], what="padded log-likelihood")
    for name in ("a", "b", "var", "beta0", "beta1"):
        _close(getattr(b["params"], name), getattr(a["params"], name), rtol=1e-9, what=name)


def test_bad_input_is_a_clear_error():
    truth = TRUTHS[(2, 1)]
    x, y = simulate_softmax(truth, 50, seed=0)
    with pytest.raises(ValueError, match="x must be"):
        numba_em.estep_stats(truth, x, y[:-1])
    with pytest.raises(ValueError, match="weights must"):
        numba_em.run_em_numba(truth, x, y, weights=np.ones(3))


@pytest.mark.parametrize("seed", [0, 1, 5])
def test_fused_step_check_gives_the_same_iterates(seed):
    """max_newton=1: testing the gate step inside the next E-step pass (one pass per iteration)
    visits exactly the iterates of the plain two-pass iteration, including when the full Newton
    step is rejected and halved (far starts make that happen)."""
    truth = TRUTHS[(3, 1)]
    x, y = simulate_softmax(truth, 1500, seed=seed)
    rng = np.random.default_rng(seed)
    p = truth._replace(beta0=truth.beta0 + 1.5 * rng.standard_normal(3),
                       beta1=truth.beta1 + 1.5 * rng.standard_normal((3, 1)),
                       a=truth.a + 1.5 * rng.standard_normal((3, 1)))
    fused = numba_em.run_em_numba(p, x, y, tol_rel=1e-10, max_iter=300, max_newton=1)
    plain = numba_em.run_em_numba(p, x, y, tol_rel=1e-10, max_iter=300, max_newton=1,
                                  fuse_check=False)
    assert fused["n_iter"] == plain["n_iter"]
    np.testing.assert_array_equal(fused["trace"], plain["trace"])
    assert fused["data_passes"] < plain["data_passes"]


@pytest.mark.parametrize("kd", [(3, 1), (2, 2)])
def test_hard_e_steps_match_run_em(kd):
    """Classification-EM warm-up (n_hard) as in run_em: same statistics, same EM path."""
    truth = TRUTHS[kd]
    k, d = kd
    spec = MoESpec(k, d)
    x, y = simulate_softmax(truth, 700, seed=17)
    p = _start(truth, seed=2)
    from moetheory.em.estep import hard_assign

    resp, ll = e_step(spec, _jax(p), jnp.asarray(x), jnp.asarray(y))
    hard = np.asarray(hard_assign(resp))
    s = numba_em.estep_stats(p, x, y, return_resp=True, hard=True)
    _close(s["loglik"], float(ll), what="log-likelihood (observed, also in hard steps)")
    _close(s["resp"], hard, what="hard responsibilities")
    xt = np.column_stack([x, np.ones(x.shape[0])])
    _close(s["G"], np.einsum("ni,na,nb->iab", hard, xt, xt), what="hard Σ r x̃x̃ᵀ")
    want = run_em(spec, _jax(p), jnp.asarray(x), jnp.asarray(y), tol_rel=1e-9, max_iter=200,
                  n_hard=3)
    got = numba_em.run_em_numba(p, x, y, tol_rel=1e-9, max_iter=200, n_hard=3)
    assert got["n_iter"] == int(want.n_iter)
    wt = np.asarray(want.trace)
    _close(got["trace"][np.isfinite(wt)], wt[np.isfinite(wt)], rtol=1e-9, what="trace")
    _close(got["loglik"], float(want.loglik), what="final log-likelihood")


@pytest.mark.parametrize("kd", [(2, 1), (3, 1), (2, 2)])
@pytest.mark.parametrize("hard", [False, True])
def test_gate_objective_from_statistics_equals_the_row_sum(kd, hard):
    """The fused step check's Q(β) = Σ_i β_iᵀ Σ_n r_ni x̃_n − Σ_n w_n lse_n(β) (from the pass's
    statistics) equals Σ_n Σ_i r_ni log g_i(x_n; β) summed row by row, at the pass's gate and at
    another gate, with zero and real weights and with hard responsibilities."""
    truth = TRUTHS[kd]
    x, y = simulate_softmax(truth, 1500, seed=5)
    p = _start(truth, seed=2)
    w = _weights(x.shape[0], "real")
    st = numba_em.estep_stats(p, x, y, weights=w, return_resp=True, hard=hard)
    b0, b1 = np.asarray(p.beta0, float), np.asarray(p.beta1, float)
    z = numba_em.gate_lse(x, w, b0, b1, 1)
    _close(numba_em.gate_objective_from_stats(b0, b1, st["R"], st["G"], z), st["q"],
           what="Q at the pass's gate")
    rng = np.random.default_rng(9)
    c0 = b0 + 0.4 * rng.standard_normal(b0.shape)
    c1 = b1 + 0.4 * rng.standard_normal(b1.shape)
    want = numba_em.gate_stats(c0, c1, x, st["resp"], weights=w, derivs=False)["q"]
    got = numba_em.gate_objective_from_stats(c0, c1, st["R"], st["G"],
                                             numba_em.gate_lse(x, w, c0, c1, 3))
    _close(got, want, what="Q at another gate")


@pytest.mark.parametrize("rule", ["mean", "relative"])
def test_three_em_implementations_stop_by_the_config_rule(rule):
    # The stopping rule is defined once (EMConfig.stop_thresholds); JAX, Numba and the NumPy
    # oracle apply its two numbers and stop at the same iteration on the same data.
    from moetheory.em.config import EMConfig
    from moetheory.kernels import reference

    spec = MoESpec(2, 1)
    truth = TRUTHS[(2, 1)]
    x, y = simulate_softmax(truth, 400, seed=5)
    p = _start(truth).pinned()
    rel, abs_ = EMConfig(tol=1e-7, stop_rule=rule).stop_thresholds(x.shape[0])
    jx = run_em(spec, _jax(p), jnp.asarray(x), jnp.asarray(y), tol_rel=rel, tol_abs=abs_,
                max_iter=300, gate_options=(("max_newton", 100),))
    nb = numba_em.run_em_numba(p, x, y, tol_rel=rel, tol_abs=abs_, max_iter=300, max_newton=100)
    npy = reference.em_softmax(p, x, y, tol_rel=rel, tol_abs=abs_, max_iter=300, max_newton=100)
    assert bool(jx.converged) and nb["converged"] and npy["converged"]
    assert int(jx.n_iter) == nb["n_iter"] == npy["n_iter"]


@pytest.mark.parametrize("k,d", [(2, 1), (3, 1), (3, 2), (4, 3)])
def test_softmax_derivatives_equal_jax_autodiff(k, d):
    # The one-pass Numba gradient and Hessian (closed forms, Louis' identity) against
    # jax.grad/jax.hessian of the weighted log-likelihood: the same numbers up to rounding of
    # sums of n = 500 terms of size ≤ |H| ~ 300 (1e-12 relative).
    from moetheory.kernels.numba_derivs import softmax_derivatives, softmax_loglik
    from moetheory.mle import pack, unpack
    from moetheory.model import log_likelihood

    rng = np.random.default_rng(10 * k + d)
    n = 500
    x = rng.normal(size=(n, d))
    y = rng.normal(size=n)
    w = rng.uniform(0, 2, n)
    w[:7] = 0.0  # dropped rows
    p = MoEParams.create(rng.normal(size=k), rng.normal(size=(k, d)), rng.normal(size=(k, d)),
                         rng.normal(size=k), rng.uniform(0.5, 2, k)).pinned()
    spec = MoESpec(k, d)
    pj = _jax(p)
    th = pack(spec, pj)
    f = lambda t: log_likelihood(spec, unpack(spec, t, pj), jnp.asarray(x), jnp.asarray(y),  # noqa: E731
                                 jnp.asarray(w))
    ll, g, H = softmax_derivatives(p, x, y, w, n_chunks=2)
    scale = np.abs(np.asarray(jax.hessian(f)(th))).max()
    _close(ll, float(f(th)), rtol=1e-12, what="ℓ")
    np.testing.assert_allclose(g, np.asarray(jax.grad(f)(th)), rtol=0, atol=1e-12 * scale)
    np.testing.assert_allclose(H, np.asarray(jax.hessian(f)(th)), rtol=0, atol=1e-12 * scale)
    np.testing.assert_array_equal(H, H.T)
    _close(softmax_loglik(p, x, y, w), float(f(th)), rtol=1e-12, what="ℓ (E-step pass)")
