"""Choosing the number of experts: select_k, the parametric-bootstrap LRT, ``--experts A-B``."""
import json
import math
import warnings

import numpy as np
import pytest

import moetheory as mt
from conftest import TRUTHS, simulate_softmax
from moetheory.cli import main
from moetheory.selection import BootstrapWarning, simulate_responses


@pytest.fixture(scope="module")
def two_regimes():
    """n = 300 draws from TRUTHS[(2, 1)] (two experts, softmax gate): (x, y)."""
    return simulate_softmax(TRUTHS[(2, 1)], 300, seed=213)


@pytest.fixture(scope="module")
def selection(two_regimes):
    x, y = two_regimes
    return mt.select_k(x, y, k=range(1, 4))


def test_select_k_picks_two_on_two_regime_data(selection):
    assert selection.k == 2 and selection.criterion == "bic"
    assert selection.best is selection.fits[2]
    # ICL and AIC agree here (well-separated experts, n = 300).
    assert int(selection.table["icl"].idxmin()) == 2


def test_select_k_table_is_the_fits(selection, two_regimes):
    x, y = two_regimes
    t = selection.table
    assert list(t.index) == [1, 2, 3] and t.index.name == "k"
    for k, res in selection.fits.items():
        assert res.spec.n_experts == k
        assert t.loc[k, "loglik"] == res.loglik and t.loc[k, "df"] == res.df_model
        assert t.loc[k, "aic"] == res.aic and t.loc[k, "bic"] == res.bic and t.loc[k, "icl"] == res.icl
    # the same fit as a direct call (same defaults, same seed)
    assert selection.fits[2].loglik == mt.fit(x, y, n_experts=2).loglik
    # df: (k - 1)(d + 1) + k(d + 2) with d = 1; BIC from its definition
    assert list(t["df"]) == [3, 8, 13]
    np.testing.assert_allclose(t["bic"], -2 * t["loglik"] + math.log(300) * t["df"], rtol=1e-14)
    text = selection.summary()
    assert "k = 2" in text and "*" in text and "bootstrap_lrt" in text
    d = selection.to_dict()
    assert d["k"] == 2 and [r["k"] for r in d["table"]] == [1, 2, 3]
    json.dumps(d, allow_nan=False)


def test_select_k_bad_arguments(two_regimes):
    x, y = two_regimes
    with pytest.raises(ValueError, match="criterion must be one of"):
        mt.select_k(x, y, criterion="bicc")
    with pytest.raises(ValueError, match="k must hold integers >= 1"):
        mt.select_k(x, y, k=[0, 1])
    with pytest.raises(ValueError, match="must not repeat"):
        mt.select_k(x, y, k=[1, 1])
    with pytest.raises(TypeError, match="not n_experts"):
        mt.select_k(x, y, n_experts=2)
    with pytest.raises(ValueError, match="n_boot must be a positive integer"):
        mt.bootstrap_lrt(x, y, k=1, n_boot=0)
    with pytest.raises(ValueError, match="k \\(experts under the null\\)"):
        mt.bootstrap_lrt(x, y, k=0)


def test_simulated_responses_follow_the_fitted_model(two_regimes):
    x, y = two_regimes
    res = mt.fit(x, y, n_experts=2)
    ys = simulate_responses(res, n_boot=400, seed=3)
    assert ys.shape == (400, 300)
    # Mean over 400 replicates at each x: within 4 Monte Carlo standard errors of E[y | x]
    # (sd of the mean: sqrt(Var[y | x] / 400)); every x at once, so 4 rather than 2.
    se = np.sqrt(res.predict_var() / 400)
    assert np.all(np.abs(ys.mean(axis=0) - res.predict()) < 4 * se)
    np.testing.assert_array_equal(ys, simulate_responses(res, n_boot=400, seed=3))


def test_bootstrap_lrt_statistics_are_refits(two_regimes):
    x, y = two_regimes
    r = mt.bootstrap_lrt(x, y, k=1, n_boot=9, seed=5, n_init=4)
    assert r.k == 1 and r.n_boot == 9 and r.boot_statistics.shape == (9,)
    assert r.statistic == pytest.approx(2 * (r.alternative.loglik - r.null.loglik), rel=1e-14)
    # Two regimes, n = 300: one expert is rejected at the smallest attainable p-value.
    assert r.statistic > r.boot_statistics.max() and r.p_value == pytest.approx(0.1)
    # Replicate 4, by hand: simulate from the null fit, refit both models.
    y4 = simulate_responses(r.null, 9, seed=5)[4]
    l0 = mt.fit(x, y4, n_experts=1, n_init=4).loglik
    l1 = mt.fit(x, y4, n_experts=2, n_init=4).loglik
    assert r.boot_statistics[4] == pytest.approx(2 * (l1 - l0), rel=1e-12)
    assert "H0 k = 1 vs H1 k = 2" in r.summary()
    again = mt.bootstrap_lrt(x, y, k=1, n_boot=9, seed=5, n_init=4)
    np.testing.assert_array_equal(again.boot_statistics, r.boot_statistics)


def test_bootstrap_refit_warnings_are_counted_and_reported(two_regimes):
    x, y = two_regimes
    with pytest.warns(BootstrapWarning, match=r"ConvergenceWarning in 3 of 3 replicates"):
        with pytest.warns(mt.ConvergenceWarning):  # the fits on the data warn too
            # EM stopped at 2 iterations and not polished: not certified, warned
            r = mt.bootstrap_lrt(x, y, k=1, n_boot=3, seed=0, n_init=2, max_iter=2, polish="none")
    assert r.refit_warnings["ConvergenceWarning"] == 3


@pytest.mark.slow
def test_bootstrap_lrt_size_near_nominal():
    # H0 true (one linear expert, n = 100): with B = 9 replicates the test rejects at 10% when
    # the observed statistic exceeds all 9 simulated ones, which under H0 (exchangeable, no
    # ties) has probability exactly 1/10. 40 data sets: Monte Carlo sd of the rejection rate
    # sqrt(0.1 * 0.9 / 40) = 0.047; accept within 3 sd, i.e. at most 0.24 (rates >= 0.25 fail;
    # the chi-squared test's rate is in docs/bootstrap_lrt_size.md).
    rng = np.random.default_rng(2024)
    reject, warned = 0, []
    for rep in range(40):
        x = rng.uniform(-1, 1, 100)
        y = 0.5 + 1.5 * x + 0.4 * rng.standard_normal(100)
        # Over-fitted refits (two experts on one-expert data) may warn: recorded, and shown
        # when the test fails; the rejection rate is what is tested.
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = mt.bootstrap_lrt(x, y, k=1, n_boot=9, seed=rep, n_init=4)
        warned += [f"rep {rep}: {w.category.__name__}" for w in caught]
        reject += r.p_value <= 0.1
    assert abs(reject / 40 - 0.1) <= 3 * math.sqrt(0.1 * 0.9 / 40), (reject, warned)


def test_cli_experts_range(tmp_path, two_regimes, capsys):
    x, y = two_regimes
    path = tmp_path / "data.csv"
    np.savetxt(path, np.column_stack([x[:, 0], y]), delimiter=",", header="x,y", comments="")
    assert main(["fit", str(path), "--experts", "1-3", "--n-init", "4"]) == 0
    out = capsys.readouterr().out
    assert "Number of experts by BIC (smallest wins): k = 2" in out and "icl" in out
    assert main(["fit", str(path), "--experts", "1-2", "--n-init", "4", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["k"] == 2 and [r["k"] for r in d["table"]] == [1, 2]
    for bad in ("3-1", "0-2", "1-x", "two"):
        with pytest.raises(SystemExit) as exc:
            main(["fit", str(path), "--experts", bad])
        assert exc.value.code == 2
        assert "expected a number of experts K >= 1 or a range A-B" in capsys.readouterr().err
