"""Convergence-rate fits and rate-law tests (DESIGN.md §4.3).

Two layers:

* :func:`fit_rate` — the headline power-law slope of the *mean* loss (OLS on log(mean loss) vs
  log n, statsmodels), with the historical AIC comparison against a free-exponent slow law;
* the rate-law tools that have power: :func:`law_test` (lack-of-fit F tests of laws with their
  exponent **fixed** — n^−1/2, √(log n / n), 1/log n — on the replicate log-losses, the slow law
  with a **free** exponent reported apart, and a curvature test), :func:`local_slopes` (slopes
  over sliding windows), :func:`bootstrap_slope` (intervals that resample replicates, for
  heavy-tailed replicate losses), and :func:`law_curve` / :func:`window_slope` (the theory curve
  √(log n / n), whose slope over [1e3, 1e5] is ≈ −0.44, to draw beside n^−1/2).

Why fixed exponents: (log n)^s with a free s is locally a power law — on the quick grid
corr(log n, log log n) = 0.9992 — so a free-exponent comparison cannot tell the two families apart
(the AIC said "neither" in 95–99.7% of simulated quick-grid runs). A law with its exponent fixed
predicts the whole drop of the loss over the grid, which is what distinguishes
n^−1/2 (a drop of 2.3 nats over [1e3, 1e5]) from 1/log n (0.5 nats). The power of the test is
measured by ``simulations/rate_power.py`` (table in docs/theory/rates.md).

The historical AIC comparison
-----------------------------

A Monte Carlo study produces, for each sample size ``n``, a set of replicate
losses.  :func:`fit_rate` summarises them as the mean loss per ``n`` and fits

* the **power law**  ``log(mean loss) = c + s * log(n)``   (rate ``n^s``), and
* the **logarithmic law** ``log(mean loss) = c + s * log(log(n))``
  (rate ``(log n)^s``; ``s = -1`` is the ``1/log n`` rate of the temperature
  gate),

both by ordinary least squares (statsmodels), and compares them by AIC.

Why the log-log-log form of the slow law, and not ``mean loss = c + s/log n``:
AIC values are only comparable between models of the *same* dependent
variable (the likelihoods are densities of the same data).  The power law
is naturally fit on ``log(mean loss)``; fitting the slow law on the same
response ``log(mean loss)`` keeps the two likelihoods comparable with no
Jacobian correction, and both models then have the same number of
parameters (2), so the AIC comparison is simply a comparison of residual sums
of squares.  ``(log n)^s`` also contains ``1/log n`` as the special case
``s = -1`` without forcing the exponent.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["RateFit", "fit_rate", "LAWS", "law_curve", "window_slope", "local_slopes",
           "BootstrapSlope", "bootstrap_slope", "LawTest", "law_test"]

_LAWS = ("power", "log")


#: AIC difference below which neither law is preferred.
AIC_MARGIN = 2.0


@dataclass(frozen=True)
class RateFit:
    """Result of :func:`fit_rate` (immutable).

    Attributes
    ----------
    slope, intercept : float
        Power-law fit ``log(mean loss) = intercept + slope * log(n)``.
    ci : tuple of float
        ``(lower, upper)`` two-sided ``1 - alpha`` confidence interval for ``slope``
        (t distribution, from statsmodels).
    stderr : float
        Standard error of ``slope``.
    alpha : float
        Level used for ``ci``.
    window : tuple of float
        ``(n_min, n_max)`` inclusive window of sample sizes used by the fit.
    n_points : int
        Number of sample sizes in the window that entered the fit.
    n_replicates : int
        Replicates per sample size (columns of ``losses``; 1 for mean losses).
    n_failed : int
        Failed (NaN) replicates inside the window, excluded from the means.
    n_dropped : int
        Sample sizes in the window dropped because *every* replicate failed.
    aic_power, aic_log : float
        AIC of the power law and of the logarithmic law (same response).
    log_slope, log_intercept : float
        Logarithmic-law fit ``log(mean loss) = log_intercept + log_slope * log(log(n))``.
    preferred_law : {"power", "log", "neither"}
        Law with the smaller AIC, or ``"neither"`` when the AICs differ by less than
        :data:`AIC_MARGIN` (= 2, the usual "no real support either way" margin: with a handful
        of sample sizes the two laws are often indistinguishable, and saying so is the honest
        diagnosis).
    n, mean_loss : tuple of float
        The sample sizes and mean losses that entered the fit, shape ``(n_points,)``.

    Examples
    --------
    >>> import numpy as np
    >>> n = np.array([100, 200, 400, 800])
    >>> fit = fit_rate(n, 2.0 * n ** -1.0)
    >>> round(fit.slope, 6), fit.n_points, fit.preferred_law
    (-1.0, 4, 'power')
    >>> fit.predict([100.0, 400.0]).round(6).tolist()
    [0.02, 0.005]
    """

    slope: float
    intercept: float
    ci: tuple
    stderr: float
    alpha: float
    window: tuple
    n_points: int
    n_replicates: int
    n_failed: int
    n_dropped: int
    aic_power: float
    aic_log: float
    log_slope: float
    log_intercept: float
    preferred_law: str
    n: tuple
    mean_loss: tuple

    def predict(self, n, law="power"):
        """Predicted mean loss at sample sizes ``n``.

        Parameters
        ----------
        n : array_like, shape (p,) or scalar
            Sample sizes (> 1).
        law : {"power", "log"}
            Which fitted law to evaluate.

        Returns
        -------
        numpy.ndarray, shape (p,) (or a 0-d array for a scalar ``n``)
        """
        if law not in _LAWS:
            raise ValueError(f"law must be one of {_LAWS}, got {law!r}")
        n = np.asarray(n, dtype=float)
        if np.any(~np.isfinite(n)) or np.any(n <= 1):
            raise ValueError("n must be finite and > 1")
        if law == "power":
            return np.exp(self.intercept + self.slope * np.log(n))
        return np.exp(self.log_intercept + self.log_slope * np.log(np.log(n)))

    def summary(self) -> str:
        """A small statsmodels-like text table of both fits and the comparison."""
        lo, hi = self.ci
        level = int(round(100 * (1 - self.alpha)))
        w = 72
        lines = [
            "Convergence-rate fit".center(w),
            "=" * w,
            f"window n in [{self.window[0]:g}, {self.window[1]:g}]   points: {self.n_points}"
            f"   replicates/point: {self.n_replicates}",
            f"failed replicates (excluded): {self.n_failed}"
            f"   points dropped (all failed): {self.n_dropped}",
            "-" * w,
            f"{'law':<30}{'coef':>10}{'std err':>10}{f'[{level}% CI]':>22}",
            f"{'power: log L = c + s log n':<30}{self.slope:>10.4f}{self.stderr:>10.4f}"
            f"{f'[{lo:.4f}, {hi:.4f}]':>22}",
            f"{'log:   log L = c + s loglog n':<30}{self.log_slope:>10.4f}",
            "-" * w,
            f"AIC power = {self.aic_power:.3f}   AIC log = {self.aic_log:.3f}"
            f"   preferred: {self.preferred_law}",
            "=" * w,
        ]
        return "\n".join(lines)


def _as_1d_float(name, value):
    arr = np.asarray(value, dtype=float)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {arr.shape}")
    return arr


def fit_rate(n, losses, window=None, alpha=0.05) -> RateFit:
    """Fit a convergence rate to losses measured at several sample sizes.

    Parameters
    ----------
    n : array_like, shape (m,)
        Sample sizes, finite and > 1 (``log log n`` must be defined).
    losses : array_like, shape (m, R) or (m,)
        Replicate losses (NaN marks a failed replicate: it is excluded from
        the mean and counted in ``n_failed``) or, if 1-D, mean losses.
        Non-NaN values must be finite and > 0.
    window : tuple of float, optional
        ``(n_min, n_max)``, inclusive; default: all of ``n``.  Must leave at
        least 3 usable sample sizes.
    alpha : float
        Confidence level of the slope interval is ``1 - alpha``.

    Returns
    -------
    RateFit

    Raises
    ------
    ValueError
        Naming the offending argument, for mismatched shapes, ``n <= 1``,
        non-positive or infinite losses, a bad window or too few points.

    Examples
    --------
    >>> import numpy as np
    >>> n = np.array([100, 200, 400, 800, 1600])
    >>> fit = fit_rate(n, 3.0 * n ** -0.5)
    >>> round(fit.slope, 6)
    -0.5
    """
    import statsmodels.api as sm  # lazy: keeps package import light

    n = _as_1d_float("n", n)
    losses = np.asarray(losses, dtype=float)
    if losses.ndim == 1:
        losses = losses[:, None]
    if losses.ndim != 2:
        raise ValueError(f"losses must have shape (m,) or (m, R), got shape {losses.shape}")
    if losses.shape[0] != n.shape[0]:
        raise ValueError(
            f"losses must have one row per sample size: n has shape {n.shape}, "
            f"losses has shape {losses.shape}"
        )
    if losses.shape[1] < 1:
        raise ValueError("losses must have at least one replicate column")
    if not (np.all(np.isfinite(n)) and np.all(n > 1)):
        raise ValueError(f"n must be finite and > 1, got min {np.nanmin(n)!r}")
    ok = ~np.isnan(losses)
    if np.any(~np.isfinite(losses[ok])) or np.any(losses[ok] <= 0):
        raise ValueError("losses must be finite and > 0 (NaN marks a failed replicate)")
    if not (0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1), got {alpha!r}")

    if window is None:
        window = (float(n.min()), float(n.max()))
    else:
        try:
            window = (float(window[0]), float(window[1]))
        except (TypeError, IndexError, ValueError):
            raise ValueError(f"window must be a pair (n_min, n_max), got {window!r}") from None
        if not window[0] <= window[1]:
            raise ValueError(f"window must satisfy n_min <= n_max, got {window!r}")
    inside = (n >= window[0]) & (n <= window[1])

    n_w, l_w, ok_w = n[inside], losses[inside], ok[inside]
    n_failed = int((~ok_w).sum())
    counts = ok_w.sum(axis=1)
    usable = counts > 0  # a point whose replicates all failed has no mean
    n_dropped = int((~usable).sum())
    if inside.sum() < 3:
        raise ValueError(
            f"window {window!r} leaves {int(inside.sum())} sample sizes; at least 3 are needed"
        )
    if usable.sum() < 3:
        raise ValueError(
            f"losses: only {int(usable.sum())} sample sizes in the window have a "
            "non-failed replicate; at least 3 are needed"
        )
    n_u = n_w[usable]
    # mean over successful replicates only (never a NaN-poisoned mean)
    mean = np.where(ok_w, l_w, 0.0).sum(axis=1)[usable] / counts[usable]

    y = np.log(mean)
    fit_p = sm.OLS(y, sm.add_constant(np.log(n_u))).fit()
    fit_l = sm.OLS(y, sm.add_constant(np.log(np.log(n_u)))).fit()
    lo, hi = fit_p.conf_int(alpha=alpha)[1]

    return RateFit(
        slope=float(fit_p.params[1]),
        intercept=float(fit_p.params[0]),
        ci=(float(lo), float(hi)),
        stderr=float(fit_p.bse[1]),
        alpha=float(alpha),
        window=window,
        n_points=int(usable.sum()),
        n_replicates=int(losses.shape[1]),
        n_failed=n_failed,
        n_dropped=n_dropped,
        aic_power=float(fit_p.aic),
        aic_log=float(fit_l.aic),
        log_slope=float(fit_l.params[1]),
        log_intercept=float(fit_l.params[0]),
        preferred_law=("neither" if abs(fit_p.aic - fit_l.aic) < AIC_MARGIN
                       else "power" if fit_p.aic < fit_l.aic else "log"),
        n=tuple(float(v) for v in n_u),
        mean_loss=tuple(float(v) for v in mean),
    )



# ----------------------------------------------------------------------------------------------
# rate laws with fixed exponents
# ----------------------------------------------------------------------------------------------

#: Laws with a fixed exponent: name -> log L(n) up to a constant (n > 1; log log n needs n > e
#: for a real slope, n > 1 for a finite value).
LAWS = {
    "n^-1/2": lambda n: -0.5 * np.log(n),
    "sqrt(log n/n)": lambda n: 0.5 * (np.log(np.log(n)) - np.log(n)),
    "1/log n": lambda n: -np.log(np.log(n)),
}


def _slow_law(s):
    return lambda n: s * np.log(np.log(n))


def _law_fn(law):
    if callable(law):
        return law
    if isinstance(law, str) and law in LAWS:
        return LAWS[law]
    if isinstance(law, str) and law.startswith("(log n)^"):
        try:
            return _slow_law(float(law[len("(log n)^"):]))
        except ValueError:
            pass
    raise ValueError(f"law must be one of {sorted(LAWS)} or '(log n)^s' with a number s; "
                     f"got {law!r}")


def law_curve(law, n, anchor=None) -> np.ndarray:
    """Values of a rate law at ``n``, optionally scaled to pass through ``anchor = (n0, L0)``.

    Parameters
    ----------
    law : str
        A key of :data:`LAWS` (``"n^-1/2"``, ``"sqrt(log n/n)"``, ``"1/log n"``) or
        ``"(log n)^s"`` with a number s (e.g. ``"(log n)^-2"``).
    n : array_like, shape (p,)
        Sample sizes > 1.
    anchor : tuple (n0, L0), optional
        Scale the curve so that L(n0) = L0 (default: the law itself).

    Returns
    -------
    numpy.ndarray, shape (p,)

    Examples
    --------
    >>> law_curve("sqrt(log n/n)", [1000.0], anchor=(1000.0, 0.1)).tolist()
    [0.1]
    >>> round(float(law_curve("1/log n", [np.e ** 2])[0]), 6)
    0.5
    """
    fn = _law_fn(law)
    n = np.asarray(n, dtype=float)
    if np.any(~np.isfinite(n)) or np.any(n <= 1):
        raise ValueError("n must be finite and > 1")
    out = np.exp(fn(n))
    if anchor is not None:
        n0, l0 = float(anchor[0]), float(anchor[1])
        out = out * l0 / float(np.exp(fn(np.asarray(n0))))
    return out


def window_slope(law, lo: float, hi: float, points: int = 50) -> float:
    """OLS slope of log L(n) on log n over ``points`` log-spaced n in [lo, hi].

    The slope a power-law fit reports when the truth is ``law``: √(log n / n) gives −0.445
    on [1e3, 1e5] (not −0.5), 1/log n −0.110.

    Examples
    --------
    >>> round(window_slope("sqrt(log n/n)", 1e3, 1e5), 3)
    -0.445
    >>> round(window_slope("n^-1/2", 10, 1e6), 6)
    -0.5
    """
    if not (1 < lo < hi):
        raise ValueError(f"need 1 < lo < hi; got lo={lo!r}, hi={hi!r}")
    n = np.geomspace(lo, hi, int(points))
    x = np.log(n)
    y = np.log(law_curve(law, n))
    return float(np.polyfit(x, y, 1)[0])


def _clean(n, losses):
    n = _as_1d_float("n", n)
    losses = np.asarray(losses, dtype=float)
    if losses.ndim == 1:
        losses = losses[:, None]
    if losses.ndim != 2 or losses.shape[0] != n.shape[0]:
        raise ValueError(f"losses must have shape (m, R) with m = len(n) = {n.shape[0]}; "
                         f"got {losses.shape}")
    if not (np.all(np.isfinite(n)) and np.all(n > 1)):
        raise ValueError("n must be finite and > 1")
    ok = np.isfinite(losses)
    if np.any(losses[ok] <= 0):
        raise ValueError("losses must be > 0 (NaN marks a failed replicate)")
    return n, losses, ok


def local_slopes(n, losses, width: int = 5, stat: str = "mean"):
    """Power-law slopes of the summarised loss over sliding windows of ``width`` sample sizes.

    A power law has constant local slopes; a slow law (log n)^s has local slopes s / log n
    that shrink towards 0 as n grows; √(log n / n) has slopes −1/2 + 1/(2 log n).

    Parameters
    ----------
    n : array_like, shape (m,)
    losses : array_like, shape (m, R) or (m,)
        Replicate losses (NaN: failed, left out) or one summary per size.
    width : int
        Sizes per window (>= 2).
    stat : {"mean", "median", "geomean"}
        Summary of the replicates at each size.

    Returns
    -------
    centers : numpy.ndarray, shape (m - width + 1,)
        Geometric mean of the n of each window.
    slopes : numpy.ndarray, shape (m - width + 1,)

    Examples
    --------
    >>> n = np.geomspace(1e3, 1e5, 9)
    >>> c, s = local_slopes(n, n ** -0.5, width=3)
    >>> np.allclose(s, -0.5)
    True
    """
    n, losses, ok = _clean(n, losses)
    if isinstance(width, bool) or not isinstance(width, (int, np.integer)) or not \
            2 <= width <= n.size:
        raise ValueError(f"width must be an integer in [2, {n.size}]; got {width!r}")
    summ = _summary(losses, ok, stat)
    order = np.argsort(n)
    n, summ = n[order], summ[order]
    centers, slopes = [], []
    for i in range(n.size - width + 1):
        x, y = np.log(n[i:i + width]), np.log(summ[i:i + width])
        good = np.isfinite(y)
        if good.sum() < 2:
            centers.append(float(np.exp(x.mean())))
            slopes.append(float("nan"))
            continue
        centers.append(float(np.exp(x.mean())))
        slopes.append(float(np.polyfit(x[good], y[good], 1)[0]))
    return np.asarray(centers), np.asarray(slopes)


def _summary(losses, ok, stat):
    if stat not in ("mean", "median", "geomean"):
        raise ValueError(f"stat must be 'mean', 'median' or 'geomean'; got {stat!r}")
    out = np.full(losses.shape[0], np.nan)
    for i, (row, good) in enumerate(zip(losses, ok)):
        v = row[good]
        if v.size:
            out[i] = (v.mean() if stat == "mean" else np.median(v) if stat == "median"
                      else np.exp(np.log(v).mean()))
    return out


@dataclass(frozen=True)
class BootstrapSlope:
    """Result of :func:`bootstrap_slope`.

    Attributes
    ----------
    slope : float
        Power-law slope of the summary curve on the data.
    ci : tuple of float
        Percentile ``1 - alpha`` interval over the bootstrap slopes.
    se : float
        Standard deviation of the bootstrap slopes.
    stat : str
        The summary at each n ("mean", "median" or "geomean").
    n_boot, alpha : int, float

    Examples
    --------
    >>> BootstrapSlope(-0.5, (-0.6, -0.4), 0.05, "mean", 100, 0.05).ci
    (-0.6, -0.4)
    """

    slope: float
    ci: tuple
    se: float
    stat: str
    n_boot: int
    alpha: float


def bootstrap_slope(n, losses, n_boot: int = 2000, seed: int = 0, stat: str = "mean",
                    alpha: float = 0.05) -> BootstrapSlope:
    """Power-law slope of the summary curve with a replicate-bootstrap percentile interval.

    Each bootstrap sample redraws, independently at every n, the replicates of that n with
    replacement (replicates at different n are independent draws in a study), recomputes the
    summary at every n and the OLS slope of log(summary) on log n. Unlike the OLS interval of
    :func:`fit_rate`, which treats the few means as exact points on a line, this interval carries
    the heavy-tailed replicate noise (a replicate at a loss ceiling moves its mean a lot).

    Parameters
    ----------
    n : array_like, shape (m,)
    losses : array_like, shape (m, R)
        Replicate losses; NaN entries (failed replicates) are left out of their row.
    n_boot : int
        Bootstrap samples.
    seed : int
        Seed of the resampling (same seed: same interval).
    stat : {"mean", "median", "geomean"}
    alpha : float
        The interval is the (alpha/2, 1 − alpha/2) percentile range.

    Returns
    -------
    BootstrapSlope

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> n = np.geomspace(1e3, 1e5, 8)
    >>> losses = n[:, None] ** -0.5 * rng.lognormal(0, 0.5, (8, 20))
    >>> b = bootstrap_slope(n, losses, n_boot=500)
    >>> b.ci[0] < -0.5 < b.ci[1]
    True
    """
    n, losses, ok = _clean(n, losses)
    if not (0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 10:
        raise ValueError(f"n_boot must be an integer >= 10; got {n_boot!r}")
    rows = [row[good] for row, good in zip(losses, ok)]
    keep = np.array([r.size > 0 for r in rows])
    if keep.sum() < 3:
        raise ValueError("losses: at least 3 sample sizes need a non-failed replicate")
    x = np.log(n[keep])
    rows = [r for r, k in zip(rows, keep) if k]
    reduce = {"mean": np.mean, "median": np.median,
              "geomean": lambda v, axis: np.exp(np.log(v).mean(axis=axis))}[stat] \
        if stat in ("mean", "median", "geomean") else None
    if reduce is None:
        raise ValueError(f"stat must be 'mean', 'median' or 'geomean'; got {stat!r}")
    y0 = np.log([reduce(r, axis=0) for r in rows])
    slope = float(np.polyfit(x, y0, 1)[0])
    rng = np.random.default_rng(seed)
    ys = np.empty((int(n_boot), x.size))
    for j, r in enumerate(rows):
        idx = rng.integers(0, r.size, size=(int(n_boot), r.size))
        ys[:, j] = np.log(reduce(r[idx], axis=1))
    xc = x - x.mean()
    boots = (ys - ys.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)
    lo, hi = np.quantile(boots, [alpha / 2, 1 - alpha / 2])
    return BootstrapSlope(slope, (float(lo), float(hi)), float(boots.std(ddof=1)), stat,
                          int(n_boot), float(alpha))


@dataclass(frozen=True)
class LawTest:
    """Result of :func:`law_test` (immutable).

    Attributes
    ----------
    verdict : str
        The single fixed-exponent law not rejected at level ``alpha``; ``"undecided: A or B"`` when
        several survive; ``"none"`` when all are rejected.
    family : str
        ``"parametric"`` (every surviving law is n^−1/2 or √(log n / n)), ``"slow"`` (every
        surviving law is a (log n)^s law), ``"undecided"`` (both kinds survive) or ``"none"``.
    pvalues : dict
        Lack-of-fit p-value of every fixed law (law name -> p).
    free_power : tuple
        (slope, (lo, hi)) of log loss = c + s log n on the replicate log-losses.
    free_slow : tuple
        (s, (lo, hi)) of log loss = c + s log log n — the slow law with a free exponent, reported
        apart from the verdict (it fits power-law data too).
    curvature : tuple
        (q, p-value) of the quadratic term of log loss = c + s u + q u², u = log n − mean:
        q > 0 (convex) for slow laws, q < 0 for √(log n / n), 0 for a power law.
    method : str
        ``"median"`` or ``"mean"`` (see :func:`law_test`).
    alpha : float
    n_points, n_obs : int
        Sample sizes and non-failed replicates used.

    Examples
    --------
    >>> t = LawTest("n^-1/2", "parametric", {"n^-1/2": 0.5}, (-0.5, (-0.6, -0.4)),
    ...             (-3.0, (-4, -2)), (0.0, 1.0), "median", 0.05, 5, 40)
    >>> t.short()
    'law test: n^-1/2'
    """

    verdict: str
    family: str
    pvalues: dict
    free_power: tuple
    free_slow: tuple
    curvature: tuple
    method: str
    alpha: float
    n_points: int
    n_obs: int

    def short(self) -> str:
        """One legend line."""
        return f"law test: {self.verdict}"

    def summary(self) -> str:
        """A small text table of the test."""
        lines = [f"rate-law test ({self.method} of log losses, lack of fit at alpha = "
                 f"{self.alpha:g}; {self.n_points} sizes, {self.n_obs} replicate losses)"]
        for law, p in self.pvalues.items():
            lines.append(f"  {law:<16} p = {p:.3g}  {'rejected' if p < self.alpha else 'kept'}")
        s, (lo, hi) = self.free_power
        lines.append(f"  free power law   slope {s:+.3f} [{lo:+.3f}, {hi:+.3f}]")
        s, (lo, hi) = self.free_slow
        lines.append(f"  free slow law    (log n)^s, s = {s:+.2f} [{lo:+.2f}, {hi:+.2f}]")
        q, p = self.curvature
        lines.append(f"  curvature        q = {q:+.4f} (p = {p:.3g})")
        lines.append(f"  verdict: {self.verdict}  (family: {self.family})")
        return "\n".join(lines)


_PARAMETRIC = ("n^-1/2", "sqrt(log n/n)")


def law_test(n, losses, laws=tuple(LAWS), alpha: float = 0.05, method: str = "median") -> LawTest:
    """Which rate law do replicate losses follow? Lack-of-fit tests with fixed exponents.

    Model: the replicate log-losses are y_ir = c + log L(n_i) + ε_ir, the ε_ir i.i.d. across
    replicates and sizes (a scale family of losses, so the law is the law of the median, of the
    geometric mean and, for a fixed shape, of the mean). For each law L with its exponent fixed,
    the intercept c is fitted and the per-size summaries are compared with the law:

    * ``method="median"`` (default): the summaries are the medians of the log-losses, weighted by
      1 / v_i with v_i = (π/2) σ̂² / R_i (the large-sample variance of a median; conservative for
      small R_i) and σ̂ the MAD of all log-losses around their size's median (pooled);
      T = Σ_i (med_i − c − log L(n_i))² / v_i is compared with (m − 1)·F(m − 1, N − m). The median
      follows the law exactly as long as fewer than half the replicates of a size are stuck at a
      loss ceiling (a fit far from the truth), which moves every mean;
    * ``method="mean"``: the classical lack-of-fit F test of OLS on the log-losses against one
      mean per size, with (m − 1, N − m) degrees of freedom (efficient without outliers; ceiling
      hits make it reject true laws).

    The verdict is the law that survives at level ``alpha`` when exactly one does; ``family``
    pools n^−1/2 and √(log n / n) (parametric up to a log factor) against the slow laws. The
    free-exponent fits (power and slow, OLS on the log-losses) and the curvature test are reported
    beside it. The power of the test is in docs/theory/rates.md (``simulations/rate_power.py``).

    Parameters
    ----------
    n : array_like, shape (m,)
        Sample sizes (> e, so that log log n > 0), m >= 3.
    losses : array_like, shape (m, R)
        Replicate losses > 0; NaN marks a failed replicate (left out). At least two non-failed
        replicates at some size (the pure error needs them).
    laws : sequence of str
        Fixed-exponent laws to test (:func:`law_curve` names).
    alpha : float
        Level of each test.
    method : {"median", "mean"}

    Returns
    -------
    LawTest

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> n = np.geomspace(1e3, 1e6, 20)
    >>> losses = 1 / np.log(n)[:, None] * rng.lognormal(0, 0.5, (20, 40))
    >>> t = law_test(n, losses)
    >>> t.verdict, t.family
    ('1/log n', 'slow')
    """
    import statsmodels.api as sm
    from scipy import stats

    n, losses, ok = _clean(n, losses)
    if np.any(n <= np.e):
        raise ValueError("n must be > e (log log n > 0) for the rate-law test")
    if not (0 < alpha < 1):
        raise ValueError(f"alpha must be in (0, 1); got {alpha!r}")
    if method not in ("median", "mean"):
        raise ValueError(f"method must be 'median' or 'mean'; got {method!r}")
    fns = {law: _law_fn(law) for law in laws}
    if not fns:
        raise ValueError("laws must name at least one law")
    ii, jj = np.nonzero(ok)
    y = np.log(losses[ii, jj])
    nn = n[ii]
    groups = np.unique(ii)
    m, N = groups.size, y.size
    if m < 3:
        raise ValueError(f"losses: {m} sample sizes have a non-failed replicate; at least 3 needed")
    if N - m < 1:
        raise ValueError("losses: the rate-law test needs at least two replicates at some size")
    ng = n[groups]
    cnt = np.array([np.sum(ii == g) for g in groups])
    pvalues = {}
    if method == "mean":
        centre = np.array([y[ii == g].mean() for g in groups])
        ss_pure = float(np.sum((y - centre[np.searchsorted(groups, ii)]) ** 2))
        scale2 = ss_pure / (N - m)
        w = cnt / scale2 if scale2 > 0 else np.full(m, np.inf)
    else:
        centre = np.array([np.median(y[ii == g]) for g in groups])
        mad = np.median(np.abs(y - centre[np.searchsorted(groups, ii)]))
        scale2 = (1.4826 * mad) ** 2
        w = cnt / (0.5 * np.pi * scale2) if scale2 > 0 else np.full(m, np.inf)
    for law, fn in fns.items():
        r = centre - fn(ng)
        if not np.all(np.isfinite(w)):
            pvalues[law] = float(np.ptp(r) < 1e-12)
            continue
        c = np.sum(w * r) / np.sum(w)
        T = float(np.sum(w * (r - c) ** 2))
        pvalues[law] = float(stats.f.sf(T / (m - 1), m - 1, N - m))
    lx, llx = np.log(nn), np.log(np.log(nn))
    fp = sm.OLS(y, sm.add_constant(lx)).fit()
    fs = sm.OLS(y, sm.add_constant(llx)).fit()
    u = lx - lx.mean()
    fq = sm.OLS(y, np.column_stack([np.ones_like(u), u, u ** 2])).fit()
    kept = [law for law, p in pvalues.items() if p >= alpha]
    verdict = kept[0] if len(kept) == 1 else "none" if not kept else "undecided: " + " or ".join(kept)
    if not kept:
        family = "none"
    elif all(k in _PARAMETRIC for k in kept):
        family = "parametric"
    elif not any(k in _PARAMETRIC for k in kept):
        family = "slow"
    else:
        family = "undecided"
    ci_p, ci_s = fp.conf_int(alpha)[1], fs.conf_int(alpha)[1]
    return LawTest(verdict, family, pvalues,
                   (float(fp.params[1]), (float(ci_p[0]), float(ci_p[1]))),
                   (float(fs.params[1]), (float(ci_s[0]), float(ci_s[1]))),
                   (float(fq.params[2]), float(fq.pvalues[2])), method, float(alpha), int(m),
                   int(N))
