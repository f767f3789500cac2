"""Tests for moetheory.rates (power-law / log-law rate fits)."""
import dataclasses

import numpy as np
import pytest

from moetheory.rates import RateFit, fit_rate

N = np.geomspace(100, 1e6, 15)


def _replicates(mean_curve, sigma, R=40, seed=0):
    """Replicate losses mean_curve(n) * lognormal noise, shape (len(N), R)."""
    rng = np.random.default_rng(seed)
    return mean_curve(N)[:, None] * rng.lognormal(0.0, sigma, size=(N.size, R))


def test_power_law_slope_recovered_within_ci():
    s = -0.5
    losses = _replicates(lambda n: 2.0 * n**s, sigma=0.3)
    fit = fit_rate(N, losses)
    assert isinstance(fit, RateFit)
    lo, hi = fit.ci
    assert lo <= s <= hi
    # sane width: mean of 40 replicates with sigma 0.3 → tiny noise on log scale
    assert 0 < hi - lo < 0.05
    assert fit.n_points == N.size and fit.n_replicates == 40 and fit.n_failed == 0
    assert fit.preferred_law == "power"
    # predict reproduces the generating curve (mean of lognormal is exp(sigma^2/2) * median)
    np.testing.assert_allclose(fit.predict(N), 2.0 * N**s * np.exp(0.3**2 / 2), rtol=0.05)


def test_ci_coverage_several_seeds():
    # the CI should contain the truth for most seeds (95% nominal)
    hits = 0
    for seed in range(20):
        fit = fit_rate(N, _replicates(lambda n: n**-0.25, sigma=0.5, R=10, seed=seed))
        hits += fit.ci[0] <= -0.25 <= fit.ci[1]
    assert hits >= 16


def test_one_over_log_n_preferred_to_power_law():
    losses = _replicates(lambda n: 3.0 / np.log(n), sigma=0.05, seed=1)
    fit = fit_rate(N, losses)
    assert fit.preferred_law == "log"
    assert fit.aic_log < fit.aic_power
    assert abs(fit.log_slope + 1) < 0.05


def test_power_law_preferred_to_log_law():
    losses = _replicates(lambda n: 3.0 * n**-0.25, sigma=0.05, seed=2)
    fit = fit_rate(N, losses)
    assert fit.preferred_law == "power"
    assert fit.aic_power < fit.aic_log


def test_aics_use_same_response():
    # With identical responses the AIC difference is n*log(RSS_p/RSS_l) (same k).
    import statsmodels.api as sm

    losses = _replicates(lambda n: n**-0.3, sigma=0.2, seed=3)
    fit = fit_rate(N, losses)
    y = np.log(losses.mean(axis=1))
    rss_p = sm.OLS(y, sm.add_constant(np.log(N))).fit().ssr
    rss_l = sm.OLS(y, sm.add_constant(np.log(np.log(N)))).fit().ssr
    assert fit.aic_power - fit.aic_log == pytest.approx(N.size * np.log(rss_p / rss_l))


def test_window_selection():
    # slope changes at n = 1e4: the window isolates the tail
    curve = lambda n: np.where(n < 1e4, n**-1.0, 1e-2 * (n / 1e4) ** -0.5)  # noqa: E731
    fit = fit_rate(N, curve(N), window=(1e4, 1e6))
    assert fit.window == (1e4, 1e6)
    assert fit.n_points == int(((N >= 1e4) & (N <= 1e6)).sum())
    assert fit.slope == pytest.approx(-0.5, abs=1e-8)
    assert all(1e4 <= v <= 1e6 for v in fit.n)
    assert "window" in fit.summary()


def test_nan_replicates_counted_and_excluded():
    losses = _replicates(lambda n: n**-0.5, sigma=0.1, R=5, seed=4)
    clean = fit_rate(N, losses)
    bad = losses.copy()
    bad[0, :2] = np.nan
    bad[3, 4] = np.nan
    bad[5, :] = np.nan  # a point with every replicate failed is dropped
    fit = fit_rate(N, bad)
    assert fit.n_failed == 2 + 1 + 5
    assert fit.n_dropped == 1
    assert fit.n_points == N.size - 1
    assert np.all(np.isfinite([fit.slope, fit.aic_power, fit.aic_log]))
    assert fit.mean_loss[0] == pytest.approx(losses[0, 2:].mean())
    assert abs(fit.slope - clean.slope) < 0.02


def test_mean_losses_1d_and_frozen():
    fit = fit_rate(N, 2 * N**-0.5 * (1 + 0.01 * np.sin(N)))
    assert fit.n_replicates == 1
    with pytest.raises(dataclasses.FrozenInstanceError):
        fit.slope = 0.0
    s = fit.summary()
    assert "AIC" in s and "preferred" in s


@pytest.mark.parametrize(
    "kwargs, word",
    [
        (dict(n=N[:-1], losses=N**-0.5), "losses"),
        (dict(n=N, losses=np.ones((N.size, 2, 2))), "losses"),
        (dict(n=np.r_[0.0, N[1:]], losses=N**-0.5), "n"),
        (dict(n=-N, losses=N**-0.5), "n"),
        (dict(n=N, losses=np.r_[-1.0, N[1:] ** -0.5]), "losses"),
        (dict(n=N, losses=np.r_[0.0, N[1:] ** -0.5]), "losses"),
        (dict(n=N, losses=N**-0.5, window=(3e5, 1e6)), "window"),
        (dict(n=N, losses=N**-0.5, window=(1e6, 1e2)), "window"),
        (dict(n=N, losses=N**-0.5, alpha=1.5), "alpha"),
    ],
)
def test_bad_input_raises_naming_argument(kwargs, word):
    with pytest.raises(ValueError, match=word):
        fit_rate(**kwargs)


def test_predict_law_and_bad_n():
    fit = fit_rate(N, 3.0 / np.log(N))
    np.testing.assert_allclose(fit.predict(N, law="log"), 3.0 / np.log(N), rtol=1e-8)
    with pytest.raises(ValueError, match="law"):
        fit.predict(N, law="exp")
    with pytest.raises(ValueError, match="n"):
        fit.predict([0.5])


# ------------------------------------------------------------------ rate-law tools with power
from moetheory.rates import (LAWS, bootstrap_slope, law_curve, law_test, local_slopes,  # noqa: E402
                             window_slope)

FULL = np.geomspace(1e3, 1e5, 20)


def test_law_curves_and_window_slopes():
    n = np.array([1e3, 1e4, 1e5])
    np.testing.assert_allclose(law_curve("n^-1/2", n), n ** -0.5, rtol=1e-14)
    np.testing.assert_allclose(law_curve("sqrt(log n/n)", n), np.sqrt(np.log(n) / n), rtol=1e-14)
    np.testing.assert_allclose(law_curve("(log n)^-2", n), np.log(n) ** -2.0, rtol=1e-14)
    np.testing.assert_allclose(law_curve("1/log n", n, anchor=(1e3, 2.0)),
                               2.0 * np.log(1e3) / np.log(n), rtol=1e-14)
    # the theory curve's slope over [1e3, 1e5] is not -1/2 (closed form of the local slope:
    # -1/2 + 1/(2 log n), between -0.428 and -0.457 there)
    assert window_slope("sqrt(log n/n)", 1e3, 1e5) == pytest.approx(-0.445, abs=5e-4)
    assert -0.457 < window_slope("sqrt(log n/n)", 1e3, 1e5) < -0.428
    assert window_slope("1/log n", 1e3, 1e5) == pytest.approx(-0.110, abs=5e-4)
    with pytest.raises(ValueError, match="law must be one of"):
        law_curve("n^-1", n)
    with pytest.raises(ValueError, match="n must be finite and > 1"):
        law_curve("n^-1/2", [1.0])


def test_local_slopes_tell_the_laws_apart_without_noise():
    n = np.geomspace(1e3, 1e6, 13)
    c, s = local_slopes(n, law_curve("sqrt(log n/n)", n), width=3)
    # local slope of sqrt(log n/n): -1/2 + 1/(2 log n), evaluated near the window centre
    np.testing.assert_allclose(s, -0.5 + 0.5 / np.log(c), atol=2e-3)
    _, s = local_slopes(n, law_curve("1/log n", n), width=3)
    assert np.all(np.diff(s) > 0)  # the slow law flattens: -1/log n -> 0
    _, s = local_slopes(n, 3 * n ** -0.5, width=4)
    np.testing.assert_allclose(s, -0.5, atol=1e-12)
    with pytest.raises(ValueError, match="width"):
        local_slopes(n, n ** -0.5, width=1)


def test_bootstrap_interval_coverage_heavy_tails():
    # 40 replicates, lognormal sigma 0.7 and 5% replicates at a ceiling: the median's slope is
    # exactly -1/2 in expectation. 20 seeds, nominal 95%: P(fewer than 16 hits) = 0.016 under
    # exact coverage (binomial), so >= 16 allows for the percentile interval's small-R bias.
    hits = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        losses = FULL[:, None] ** -0.5 * rng.lognormal(0.0, 0.7, (20, 40))
        losses[rng.random(losses.shape) < 0.05] = 1.0
        b = bootstrap_slope(FULL, losses, n_boot=400, seed=seed, stat="median")
        hits += b.ci[0] <= -0.5 <= b.ci[1]
    assert hits >= 16
    # same seed, same interval
    assert bootstrap_slope(FULL, losses, n_boot=400, seed=3) == bootstrap_slope(FULL, losses, n_boot=400, seed=3)


def test_law_test_power_on_the_full_grid():
    # 100 simulated studies per law on the full grid (20 sizes in [1e3, 1e5], 40 replicates,
    # lognormal sigma 0.7). The simulated shares (simulations/rate_power.py, 1000 runs) are about
    # 0.93 for the family of n^-1/2 and the law 1/log n; with 100 runs the Monte Carlo SE is
    # about 0.025, so 0.85 is more than 3 SE below.
    rng = np.random.default_rng(2024)
    fam = slow = 0
    for _ in range(100):
        t = law_test(FULL, FULL[:, None] ** -0.5 * rng.lognormal(0.0, 0.7, (20, 40)))
        fam += t.family == "parametric"
        t = law_test(FULL, law_curve("1/log n", FULL)[:, None] * rng.lognormal(0.0, 0.7, (20, 40)))
        slow += t.verdict == "1/log n"
    assert fam >= 85 and slow >= 85


def test_law_test_reports_free_fits_and_validates():
    rng = np.random.default_rng(5)
    losses = law_curve("(log n)^-2", FULL)[:, None] * rng.lognormal(0.0, 0.3, (20, 40))
    t = law_test(FULL, losses)
    assert t.verdict == "none" and set(t.pvalues) == set(LAWS)
    s, (lo, hi) = t.free_slow
    assert lo <= -2.0 <= hi  # the free slow exponent is estimated, reported apart
    q, p = t.curvature
    assert q > 0  # slow laws are convex in log-log
    assert "verdict: none" in t.summary()
    losses[0, :] = np.nan  # a size whose replicates all failed is left out
    assert law_test(FULL, losses).n_points == 19
    with pytest.raises(ValueError, match="two replicates"):
        law_test(FULL, losses[:, :1])
    with pytest.raises(ValueError, match="method"):
        law_test(FULL, losses, method="trimmed")
    with pytest.raises(ValueError, match="> e"):
        law_test(np.array([2.0, 10.0, 100.0]), np.ones((3, 4)))


def test_rate_power_script_pieces(tmp_path):
    from simulations import rate_power as rp

    assert rp.correct("n^-1/2", "n^-1/2") and not rp.correct("n^-1/2", "undecided: n^-1/2 or x")
    assert rp.correct("(log n)^-2", "none")
    assert rp.family_correct("1/log n", "slow") and not rp.family_correct("n^-1/2", "undecided")
    rows = rp.run(n_sim=2, seed=0, progress=False)
    assert len(rows) == 3 * 2 * 4 and all(0 <= r["correct"] <= 1 for r in rows)
    doc = tmp_path / "rates.md"
    doc.write_text(f"intro\n{rp.BLOCK[0]}\nPLACEHOLDER\n{rp.BLOCK[1]}\nend\n")
    rp.write_docs(rows, doc=doc, out=tmp_path / "r.json", command="cmd")
    text = doc.read_text()
    assert text.startswith("intro\n") and text.endswith("end\n") and "| n^-1/2 | quick" in text
    assert "PLACEHOLDER" not in text and "Measured with `cmd`." in text
