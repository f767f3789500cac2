"""moetheory.fit with default settings against R flexmix's fits of the same data.

The reference (tests/data/flexmix/README.md, made by make_data.py and make_reference.R there):
flexmix 2.3-18, FLXMRglm experts with an FLXPmultinom(~x) concomitant gate, 5 k-means starts,
tolerance 1e-12. flexmix divides
the Gaussian variance by n − p, so its ``sigma`` and ``loglik`` are slightly off the exact MLE:
an exact MLE reaches a log-likelihood at least as high, and its σ equals ``sigma_mle``.
"""
import importlib.util
import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy.optimize import linear_sum_assignment

import moetheory as mt

SETS = {"k2d1": 2, "k3d1": 3, "k2d2": 2}

_FITS = {}


def _load(flexmix_dir, name):
    df = pd.read_csv(flexmix_dir / f"{name}.csv")
    x = df[[c for c in df.columns if c != "y"]].to_numpy(dtype=float)
    y = df["y"].to_numpy(dtype=float)
    with open(flexmix_dir / f"{name}.flexmix.json") as fh:
        ref = json.load(fh)
    (fx,) = [f for f in ref["fits"] if f["method"] == "flexmix"]
    return x, y, fx


@pytest.fixture(scope="module", params=list(SETS))
def case(request, flexmix_dir):
    """(name, result of moetheory.fit with default settings, flexmix's fit, aligned order)."""
    name = request.param
    x, y, fx = _load(flexmix_dir, name)
    res = mt.fit(x, y, n_experts=SETS[name])
    # Label alignment: match our experts to flexmix's by their (intercept, slopes) coefficients.
    ours = np.column_stack([res.params.b, res.params.a])  # (k, d+1): intercept, slopes
    theirs = np.asarray(fx["experts"]["coef"])
    cost = ((ours[:, None, :] - theirs[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    order = cols[np.argsort(rows)]  # our expert i ↔ flexmix component order[i]
    return name, res, fx, order


def test_loglik_at_least_flexmix(case):
    name, res, fx, _ = case
    assert res.converged
    # No slack: flexmix's n − p variance makes its log-likelihood strictly sub-maximal.
    assert res.loglik >= fx["loglik"], (name, res.loglik, fx["loglik"])
    assert res.loglik - fx["loglik"] < 0.01  # the same optimum, not a different one


def test_experts_equal_flexmix(case):
    name, res, fx, order = case
    theirs = np.asarray(fx["experts"]["coef"])[order]
    ours = np.column_stack([res.params.b, res.params.a])
    np.testing.assert_allclose(ours, theirs, atol=1e-3, err_msg=name)
    sigma = np.asarray(fx["experts"]["sigma_mle"])[order]
    np.testing.assert_allclose(np.sqrt(res.params.var), sigma, atol=1e-3, err_msg=name)


def test_gate_equals_flexmix(case):
    # flexmix's reference is its first component; ours is our last expert. After aligning the
    # rows to our labels, subtracting the last row moves flexmix's reference to ours.
    name, res, fx, order = case
    gate = np.asarray(fx["gate"]["coef"])[order]  # (k, d+1): intercept, slopes
    gate = gate - gate[-1]
    ours = np.column_stack([res.params.beta0, res.params.beta1])
    np.testing.assert_allclose(ours, gate, atol=1e-2, err_msg=name)


def test_information_criteria_consistent_with_flexmix(case):
    name, res, fx, _ = case
    assert res.df_model == fx["df"]
    # Same df: AIC and BIC differ from flexmix's only through the log-likelihood.
    dll = res.loglik - fx["loglik"]
    assert res.aic == pytest.approx(fx["AIC"] - 2 * dll, abs=1e-8)
    assert res.bic == pytest.approx(fx["BIC"] - 2 * dll, abs=1e-8)
    assert res.bic - res.aic == pytest.approx((math.log(res.n_obs) - 2) * fx["df"], abs=1e-8)
    # ICL = BIC − 2 Σ_n log max_i r_ni (flexmix's definition too). The classification term
    # (≈ 100 here) is evaluated at slightly different parameters (flexmix's σ is not the MLE,
    # ~1e-3 apart), so it agrees to ~1e-3 relative: allow 0.1 absolute.
    assert res.icl - res.bic == pytest.approx(fx["ICL"] - fx["BIC"], abs=0.1)


def test_data_match_generator(flexmix_dir):
    """The committed CSV and truth files are, byte for byte, what make_data.py writes."""
    spec = importlib.util.spec_from_file_location("make_data", flexmix_dir / "make_data.py")
    make_data = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_data)
    for name in SETS:
        for fname, text in make_data.files(name).items():
            assert (flexmix_dir / fname).read_text(encoding="utf-8") == text, fname
