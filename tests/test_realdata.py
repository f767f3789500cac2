"""moetheory on seven real data sets against stored R flexmix fits polished to the exact maximum.

The reference (tests/data/realdata/README.md; no R needed here): for each data set and k,
flexmix's optima over 50 random starts and the maxima moetheory.fit's seeds 0..9 reach, each
polished by Newton's method on an independent implementation of the exact log-likelihood and
verified (gradient ≈ 0, negative definite Hessian); the best of them is the best known maximum,
with exact-Hessian standard errors.
"""
import warnings

import numpy as np
import pytest

import moetheory as mt
import realdata_reference as rr
from moetheory import model
from moetheory.results import FitResult
from moetheory.spec import MoESpec

#: A fit reaches the best known maximum when ℓ ≥ best − REACH_TOL (nats). EM stops at a relative
#: change of 1e-10 per iteration: on the seeds that reach the best here it stops at most 3e-6
#: nats below it (benchmarks/results/realdata.json); distinct maxima of these data are at least
#: 0.043 nats apart (the closest pair in the reference); and a shortfall of 1e-3 nats moves a
#: likelihood-ratio statistic by 0.002, nothing a user would see.
REACH_TOL = 1e-3
SEEDS = range(10)

CASES = rr.cases()
#: k = 1 has one maximum (least squares); the start strategy matters from k = 2 on.
FIT_CASES = [c for c in CASES if c.k >= 2]

#: Cases where the default fit misses the best known regular maximum in some seed without a
#: warning (measured: python benchmarks/realdata.py, docs/realdata.md). None since the start
#: policy asks for ROUNDS_PER_MAXIMUM rounds per maximum found (moetheory.em.pipeline); AIS
#: k = 4 used to miss in 2 of 10 seeds.
MISSES_BEST = {}


def _id(case):
    return f"{case.name}-k{case.k}"


def _params(cases, xfails):
    return [pytest.param(c, id=_id(c), marks=[pytest.mark.xfail(strict=True, reason=xfails[(c.name, c.k)])]
                         if (c.name, c.k) in xfails else []) for c in cases]


def _moetheory_warnings(caught):
    return sorted({w.category.__name__ for w in caught if w.category.__module__.startswith("moetheory")})


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_reference_is_a_verified_maximum(case):
    ref = case.ref
    best = ref["best"]
    # flexmix's own log-likelihood uses its n/(n − 2) variance: below the exact maximum.
    assert ref["best_loglik"] >= ref["flexmix_best_polished_loglik"] >= ref["flexmix_best_loglik"]
    assert best["max_abs_grad"] < 1e-5
    if case.has_cov:
        assert best["max_hess_eig"] < 0
    # The data as stored: n rows, one covariate, finite.
    assert case.x.shape == (ref_n(case), 1) and np.all(np.isfinite(case.x)) and np.all(np.isfinite(case.y))


def ref_n(case):
    return rr.load_set(case.name)["n"]


@pytest.mark.parametrize("case", CASES, ids=_id)
def test_moetheory_log_likelihood_at_the_reference(case):
    # Two implementations of one likelihood (polish.py's and moetheory.model's).
    spec = MoESpec(case.k, 1)
    ll = float(model.log_likelihood(spec, rr.reference_params(case), case.x, case.y))
    assert ll == pytest.approx(case.best_loglik, rel=1e-12, abs=1e-10)


def _result_at(case, params):
    """A FitResult at given parameters (no EM): moetheory's inference alone."""
    spec = MoESpec(case.k, 1)
    ll = float(model.log_likelihood(spec, params, case.x, case.y))
    return FitResult(spec=spec, params=params, loglik=ll, n_obs=case.y.size, n_iter=0, converged=True,
                     trace=np.array([ll]), var_floor=0.0, var_floor_hit=False, start_kinds=(),
                     start_logliks=np.array([ll]), x=case.x, y=case.y)


SE_CASES = [c for c in CASES if rr.local_maxima(c)]


@pytest.mark.parametrize("case", SE_CASES, ids=_id)
def test_standard_errors_at_local_maxima_equal_the_exact_hessian(case):
    # At the three highest regular local maxima (negative definite Hessian) of each case.
    for est in rr.local_maxima(case):
        res = _result_at(case, rr.reference_params(case, est=est))
        se_ref = np.sqrt(np.diag(rr.reference_cov(case, np.arange(case.k), est=est)))
        # Both are inverses of exact (autodiff) Hessians at one point: they differ by rounding,
        # amplified by the information's condition number (up to ~1e10 here): 1e-6 relative.
        np.testing.assert_allclose(res.bse(), se_ref, rtol=1e-6,
                                   err_msg=f"{_id(case)} at the maximum l = {est['loglik']:.4f}")


@pytest.mark.slow
@pytest.mark.parametrize("case", _params(FIT_CASES, MISSES_BEST))
def test_default_fit_reaches_the_best_known_maximum_or_warns(case):
    # The target is the best known *regular* maximum: the default spurious-solution rule sets
    # the others aside (moetheory.em.spurious; docs/fit_quality.md).
    best_regular, _ = rr.best_regular(case)
    target = case.best_loglik if best_regular is None else best_regular
    misses = []
    for seed in SEEDS:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            res = mt.fit(case.x, case.y, n_experts=case.k, seed=seed)
        gap = res.loglik - target
        if gap < -REACH_TOL and not _moetheory_warnings(caught):
            misses.append((seed, round(gap, 4)))
    assert not misses, f"{_id(case)}: seeds below the best known maximum without a warning: {misses}"
