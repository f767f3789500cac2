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
