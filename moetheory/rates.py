"""Convergence-rate fits: power law vs. logarithmic law (DESIGN.md §4.3).

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

__all__ = ["RateFit", "fit_rate"]

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
