"""A study cell on the Numba backend (replicates on a thread pool) against the JAX backend.

Both run the one estimator pipeline on the same data and the same starts (one JAX function
draws them) and finish at the certified maximum, so they must agree: integer outputs (EM
iterations, best start, flags) exactly, estimates to the precision of a certified maximum.
The two differ in summation order (and the JAX path pads the data with zero-weight rows), i.e.
by rounding, which the polish does not amplify beyond ~1e-7 relative in the least-determined
direction (a certified Hessian's smallest scaled eigenvalue is ≥ 1e-4 here).
"""
from __future__ import annotations

import numpy as np
import pytest

from moetheory.params import MoEParams
from moetheory.spec import MoESpec
from moetheory.em.config import EMConfig
from moetheory.study.spec import DesignSpec, FitSpec, StudySpec

TRUTH = MoEParams.create(beta0=[0.3, 0.0], beta1=[[3.0], [0.0]], a=[[2.0], [-1.5]],
                         b=[1.0, -1.0], var=[0.09, 0.25])


def small_study(**changes) -> StudySpec:
    est = EMConfig(init="paper", max_iter=500)
    base = dict(name="numba-vs-jax", truth_spec=MoESpec(2, 1), truth=TRUTH,
                fits=(FitSpec("k2", MoESpec(2, 1), sizes=(300,)),
                      FitSpec("k3", MoESpec(3, 1), sizes=(400,), n_starts=3)),
                design=DesignSpec("uniform", low=-1.0, high=1.0), estimator=est,
                replicates=4, seed=11, losses=("voronoi", "hellinger"), buckets=(512,))
    base.update(changes)
    return StudySpec(**base)


@pytest.mark.parametrize("label,n", [("k2", 300), ("k3", 400)])
def test_numba_cell_matches_jax_cell(label, n):
    from moetheory.study.runner import compute_cell

    study = small_study()
    jx = compute_cell(study, label, n, em_backend="jax")
    nb = compute_cell(study, label, n, em_backend="numba")
    assert set(jx) == set(nb)
    assert (jx["em_backend"] == "jax").all() and (nb["em_backend"] == "numba").all()
    assert jx["certified"].all() and nb["certified"].all()
    for key, want in jx.items():
        got = nb[key]
        if key in ("em_backend", "n_polish"):  # the polish's path may differ by a rounding step
            continue
        assert got.dtype == want.dtype and got.shape == want.shape, key
        if key in ("cert_gap", "cert_score"):  # rounding-level numbers at a certified maximum
            assert np.all(got <= 1e-6) if key == "cert_gap" else np.all(got < 1e-3), key
        elif want.dtype.kind in "biu":
            np.testing.assert_array_equal(got, want, err_msg=key)
        else:
            scale = max(1.0, float(np.nanmax(np.abs(want))))
            tol = 1e-10 if key == "loglik" else 1e-4 if key == "cert_min_eig" else 1e-6
            np.testing.assert_allclose(got, want, rtol=0, atol=tol * scale, err_msg=key)
    # the comparison is not vacuous: the fits moved away from their starts
    assert (nb["n_iter"] > 1).all()


def test_backend_choice_and_bad_requests(monkeypatch):
    from moetheory.em.backend import thread_count
    from moetheory.study.runner import cell_backend

    study = small_study()
    assert cell_backend(study, "k2", "auto") == "numba"  # CPU JAX, softmax gate
    assert cell_backend(study, "k2", "jax") == "jax"
    monkeypatch.setenv("MOETHEORY_EM_BACKEND", "jax")
    assert cell_backend(study, "k2") == "jax"
    monkeypatch.setenv("MOETHEORY_EM_BACKEND", "fast")
    with pytest.raises(ValueError, match="em_backend"):
        cell_backend(study, "k2")
    monkeypatch.delenv("MOETHEORY_EM_BACKEND")
    topk = small_study(fits=(FitSpec("k3", MoESpec(3, 1, gate="topk", top_k=2), sizes=(300,)),))
    assert cell_backend(topk, "k3") == "jax"  # auto falls back where the kernel has no estimator
    with pytest.raises(ValueError, match="em_backend='numba'.*topk"):
        cell_backend(topk, "k3", "numba")
    monkeypatch.setenv("MOETHEORY_THREADS", "0")
    with pytest.raises(ValueError, match="MOETHEORY_THREADS"):
        thread_count()
    monkeypatch.setenv("MOETHEORY_THREADS", "3")
    assert thread_count() == 3


def test_thread_count_does_not_change_results(monkeypatch):
    from moetheory.study.runner import compute_cell

    study = small_study()
    monkeypatch.setenv("MOETHEORY_THREADS", "1")
    one = compute_cell(study, "k3", 400, em_backend="numba")
    monkeypatch.setenv("MOETHEORY_THREADS", "2")
    two = compute_cell(study, "k3", 400, em_backend="numba")
    for key in one:
        np.testing.assert_array_equal(one[key], two[key], err_msg=key)


def test_a_failing_start_is_recorded_not_averaged(monkeypatch):
    """A start whose kernel raises counts as non-finite: another start wins; if every start of
    a replicate fails, the replicate is a recorded failure (status bit ``nonfinite``)."""
    from moetheory.kernels import numba_em
    from moetheory.study.runner import STATUS_BITS, compute_cell

    study = small_study()
    ok = compute_cell(study, "k3", 400, em_backend="numba")
    real = numba_em.em_loop
    calls = {"n": 0}

    def flaky(x, y, w, beta0, *args):
        calls["n"] += 1
        # start 0 of every replicate fails (recognised by its values, so thread order is moot)
        if np.any(np.isin(beta0, starts0)):
            raise np.linalg.LinAlgError("singular")
        return real(x, y, w, beta0, *args)

    from moetheory.em.starts import draw_starts
    from moetheory.study.runner import replicate_data, replicate_keys

    keys = replicate_keys(study.seed, 400, np.arange(4))
    starts0 = []
    for key in keys:  # the starts each replicate's pipeline draws
        x, y, k_starts = replicate_data(study, 400, key)
        starts = draw_starts(k_starts, study.fit("k3").spec, x, y, ("paper",) * 3,
                             truth=study.truth_params, n_obs=400)
        starts0.append(np.asarray(starts.beta0)[0, :-1])  # free gate intercepts of start 0
    starts0 = np.concatenate(starts0)
    monkeypatch.setattr(numba_em, "em_loop", flaky)
    got = compute_cell(study, "k3", 400, em_backend="numba")
    assert calls["n"] == 4 * 3
    assert (got["n_starts_finite"] == 2).all()
    assert (got["best_start"] != 0).all()
    assert np.all(got["loglik"] <= ok["loglik"] + 1e-9 * np.abs(ok["loglik"]))
    assert not got["failed"].any()

    monkeypatch.setattr(numba_em, "em_loop", lambda *a: (_ for _ in ()).throw(ValueError("x")))
    bad = compute_cell(study, "k3", 400, em_backend="numba")
    assert (bad["n_starts_finite"] == 0).all()
    assert np.isnan(bad["loglik"]).all()
    assert bad["failed"].all()
    assert ((bad["status"] & STATUS_BITS["nonfinite"]) > 0).all()


@pytest.mark.parametrize("k_fit", [2, 3])
def test_hellinger_matches_scipy_quadrature(k_fit):
    """H²(x) of the study's density kernel against scipy.integrate.quad of ½(√p − √p*)²."""
    import jax.numpy as jnp
    from scipy import integrate, stats

    from moetheory.gates import log_gate_weights
    from moetheory.study.density import hellinger_sq_at

    rng = np.random.default_rng(k_fit)
    fitted = MoEParams.create(rng.normal(size=k_fit), rng.normal(size=(k_fit, 1)) * 2,
                              rng.normal(size=(k_fit, 1)), rng.normal(size=k_fit),
                              rng.uniform(0.05, 0.4, size=k_fit))
    xs = np.array([[-0.9], [-0.2], [0.4], [1.0]])
    got = np.asarray(hellinger_sq_at(MoESpec(k_fit, 1), fitted, MoESpec(2, 1), TRUTH,
                                     jnp.asarray(xs)))

    def density(p, spec, x, y):
        g = np.exp(np.asarray(log_gate_weights(spec, p, jnp.asarray([[x]])))[0])
        mu = np.asarray(p.a)[:, 0] * x + np.asarray(p.b)
        return float(np.sum(g * stats.norm.pdf(y, mu, np.sqrt(np.asarray(p.var)))))

    for i, (x,) in enumerate(xs):
        f = lambda y: 0.5 * (np.sqrt(density(fitted, MoESpec(k_fit, 1), x, y))  # noqa: E731
                             - np.sqrt(density(TRUTH, MoESpec(2, 1), x, y))) ** 2
        want, _ = integrate.quad(f, -np.inf, np.inf, limit=400, epsabs=1e-13, epsrel=1e-10)
        # the trapezoid rule on 2048 points over ±10 sd: error far below 1e-6 of H² here
        assert abs(got[i] - want) <= 1e-6 * max(want, 1e-3), (x, got[i], want)


def _two_regimes(n=600, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    g = 1 / (1 + np.exp(-4 * x))
    z = rng.uniform(size=n) < g
    y = np.where(z, 2 * x + 1, -x - 1) + 0.3 * rng.standard_normal(n)
    return x, y


@pytest.mark.parametrize("k,gate_options", [
    (2, None), (3, None),
    pytest.param(3, {"max_newton": 50}, marks=pytest.mark.xfail(
        strict=True, reason="start 33 of 96 (k = 3 over-fitted, 50 gate Newton steps per "
        "iteration) ends at maxima 3.65 nats apart on the two backends: its EM path amplifies "
        "their rounding; the certified estimates agree to 6e-14 (both fits of this test, "
        "2026-12-06)"))])
def test_fit_numba_backend_matches_jax(k, gate_options):
    """moetheory.fit on the Numba path: the same starts, the same winner and iteration counts,
    the same certified estimate (to the rounding a certified maximum allows, 1e-6)."""
    import moetheory as mt

    x, y = _two_regimes()
    jx = mt.fit(x, y, k, em_backend="jax", gate_options=gate_options)
    nb = mt.fit(x, y, k, em_backend="numba", gate_options=gate_options)
    assert nb.start_kinds == jx.start_kinds
    np.testing.assert_allclose(nb.start_logliks, jx.start_logliks, rtol=1e-9)
    assert nb.n_iter == jx.n_iter and nb.converged == jx.converged and nb.converged
    assert abs(nb.loglik - jx.loglik) <= 1e-10 * abs(jx.loglik)
    for name in ("a", "b", "var", "beta0", "beta1"):
        np.testing.assert_allclose(getattr(nb.params, name), getattr(jx.params, name),
                                   rtol=0, atol=1e-6, err_msg=name)
    # the trace is the continued start's and never decreases
    assert np.all(np.diff(nb.trace) >= -1e-9 * np.abs(nb.trace[:-1]))


def test_fit_em_backend_bad_values():
    import moetheory as mt

    x, y = _two_regimes(200)
    with pytest.raises(ValueError, match="em_backend"):
        mt.fit(x, y, 2, em_backend="gpu")
    with pytest.raises(ValueError, match="em_backend='numba'.*topk"):
        mt.fit(x, y, 3, gate="topk", top_k=2, em_backend="numba")
