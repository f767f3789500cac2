"""Choosing the number of experts: an information-criterion table over k (flexmix's
``stepFlexmix``) and a parametric-bootstrap likelihood-ratio test of k against k + 1 (mixtools'
``boot.comp``; McLachlan 1987).

The χ² reference distribution of the likelihood-ratio statistic fails for k against k + 1
experts (the null lies on the boundary of the larger model and its parameters are not
identified there), so the test simulates the statistic's null distribution from the fitted
k-expert model.
"""
from __future__ import annotations

import numbers
import warnings
from collections import Counter
from dataclasses import dataclass, field

import jax
import numpy as np

from moetheory.api import fit
from moetheory.results import FitResult

CRITERIA = ("bic", "aic", "icl")


def _check_ks(k) -> list[int]:
    if isinstance(k, (int, np.integer)) and not isinstance(k, bool):
        k = [k]
    try:
        ks = list(k)
    except TypeError:
        raise TypeError(f"k must be an integer or an iterable of integers >= 1; got {k!r}") from None
    if not ks or any(isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in ks):
        raise ValueError(f"k must hold integers >= 1; got {ks!r}")
    if len(set(ks)) != len(ks):
        raise ValueError(f"k must not repeat a value; got {ks!r}")
    return sorted(int(v) for v in ks)


def _check_fit_kwargs(fit_kwargs):
    if "n_experts" in fit_kwargs:
        raise TypeError("give the numbers of experts as k=..., not n_experts=...")


@dataclass(frozen=True, eq=False)
class SelectKResult:
    """Result of :func:`select_k`.

    Attributes
    ----------
    table : pandas.DataFrame indexed by k: ``loglik``, ``df``, ``aic``, ``bic``, ``icl``,
        ``converged``, ``var_floor_hit``, ``spurious`` (the fit is not a regular maximum,
        :mod:`moetheory.em.spurious`)
    criterion : str, the criterion that chose (smallest value wins among the k whose fit has no
        expert on a few observations, when there is one)
    k : int, the chosen number of experts
    fits : dict k → FitResult

    Examples
    --------
    >>> import numpy as np, moetheory as mt
    >>> rng = np.random.default_rng(1)
    >>> x = rng.uniform(-1, 1, 400)
    >>> y = np.where(x > 0, 2 * x, -2 * x) + 0.1 * rng.standard_normal(400)
    >>> sel = mt.select_k(x, y, k=[1, 2, 3])
    >>> sel.k, list(sel.table.columns[:5])
    (2, ['loglik', 'df', 'aic', 'bic', 'icl'])
    """

    table: object
    criterion: str
    k: int
    fits: dict = field(repr=False)

    @property
    def best(self) -> FitResult:
        """The fit with the chosen number of experts."""
        return self.fits[self.k]

    def summary(self) -> str:
        """The table as text, the chosen k marked with ``*``."""
        t = self.table.copy()
        t.insert(0, "chosen", ["*" if k == self.k else "" for k in t.index])
        lines = [f"Number of experts by {self.criterion.upper()} (smallest wins): k = {self.k}",
                 t.to_string(float_format=lambda v: f"{v:.4f}"),
                 "Information criteria compare maxima: each row is the best of the fit's starts. "
                 "For a test of k against k + 1 use moetheory.bootstrap_lrt (the chi-squared "
                 "reference fails for mixtures)."]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        """JSON-ready: criterion, chosen k and the table's rows."""
        rows = [{"k": int(k), **{c: (bool(v) if isinstance(v, (bool, np.bool_)) else
                                     int(v) if c == "df" else float(v)) for c, v in row.items()}}
                for k, row in self.table.iterrows()]
        return {"criterion": self.criterion, "k": self.k, "table": rows}


def select_k(x, y, k=range(1, 5), criterion: str = "bic", **fit_kwargs) -> SelectKResult:
    """Fit k = 1..K experts and choose k by an information criterion.

    Parameters
    ----------
    x : array (n, d) or (n,), or a DataFrame
    y : array (n,)
    k : int or iterable of int >= 1
        The numbers of experts to fit (default 1, 2, 3, 4).
    criterion : {"bic", "aic", "icl"}
        The criterion that chooses (smallest wins); all three are in the table.
    **fit_kwargs
        Passed to :func:`moetheory.fit` for every k (``gate``, ``seed``, ``n_init``, ...).

    Returns
    -------
    SelectKResult

    Examples
    --------
    >>> import numpy as np, moetheory as mt
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-1, 1, 300)
    >>> y = np.where(x > 0, 1 + x, -1 - x) + 0.2 * rng.standard_normal(300)
    >>> mt.select_k(x, y, k=range(1, 4)).k
    2
    """
    import pandas as pd

    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}; got {criterion!r}")
    _check_fit_kwargs(fit_kwargs)
    ks = _check_ks(k)
    fits = {kk: fit(x, y, n_experts=kk, **fit_kwargs) for kk in ks}
    table = pd.DataFrame(
        {"loglik": [f.loglik for f in fits.values()], "df": [f.df_model for f in fits.values()],
         "aic": [f.aic for f in fits.values()], "bic": [f.bic for f in fits.values()],
         "icl": [f.icl for f in fits.values()],
         "converged": [bool(f.converged) for f in fits.values()],
         "var_floor_hit": [bool(f.var_floor_hit) for f in fits.values()],
         "spurious": [f.spurious_cause not in (None, "regular") for f in fits.values()]},
        index=pd.Index(ks, name="k"))
    # A fit with an expert on a few observations (or fitted exactly) has a likelihood that no
    # criterion penalises enough (the spike's ℓ grows without bound): it is not a candidate
    # while a k without one exists. A step gate is a sharp regime switch, not a spike.
    few = pd.Series([f.spurious_cause in ("small_expert", "variance_floor") for f in fits.values()],
                    index=table.index)
    pool = table[~few] if (~few).any() else table
    chosen = int(pool[criterion].idxmin())
    return SelectKResult(table=table, criterion=criterion, k=chosen, fits=fits)


class BootstrapWarning(UserWarning):
    """Some refits of :func:`bootstrap_lrt`'s simulated data warned (did not converge, hit the
    variance floor, ...): the count per warning is in the message and in
    ``BootstrapLRTResult.refit_warnings``.

    Examples
    --------
    >>> issubclass(BootstrapWarning, UserWarning)
    True
    """


@dataclass(frozen=True, eq=False)
class BootstrapLRTResult:
    """Result of :func:`bootstrap_lrt`.

    Attributes
    ----------
    k : int, experts under the null (the alternative has k + 1)
    statistic : float, 2 (ℓ_{k+1} − ℓ_k) on the data
    p_value : float, (1 + #{boot ≥ statistic}) / (n_boot + 1)
    boot_statistics : (n_boot,) the statistic on each data set simulated from the null fit
    null, alternative : FitResult on the data
    refit_warnings : dict, warning category name → number of bootstrap refits that issued it
    seed : int

    Examples
    --------
    >>> r = bootstrap_lrt(x, y, k=1, n_boot=99)   # doctest: +SKIP
    >>> r.p_value, r.summary()                    # doctest: +SKIP
    """

    k: int
    statistic: float
    p_value: float
    boot_statistics: np.ndarray
    null: FitResult = field(repr=False)
    alternative: FitResult = field(repr=False)
    refit_warnings: dict
    seed: int

    @property
    def n_boot(self) -> int:
        return int(self.boot_statistics.size)

    def summary(self) -> str:
        """One paragraph: the hypotheses, the statistic, the p-value and the bootstrap quantiles."""
        q = np.quantile(self.boot_statistics, [0.5, 0.9, 0.95, 0.99])
        lines = [f"Parametric-bootstrap likelihood-ratio test: H0 k = {self.k} vs H1 k = {self.k + 1} experts",
                 f"LR = 2 (l1 - l0) = {self.statistic:.4f}   (l0 = {self.null.loglik:.4f}, "
                 f"l1 = {self.alternative.loglik:.4f})",
                 f"p-value = {self.p_value:.4f} from {self.n_boot} bootstrap replicates (seed {self.seed})",
                 "bootstrap LR quantiles 50/90/95/99%: " + ", ".join(f"{v:.3f}" for v in q)]
        if self.refit_warnings:
            lines.append("bootstrap refits that warned: " + ", ".join(
                f"{name} x{count}" for name, count in sorted(self.refit_warnings.items())))
        return "\n".join(lines)


def simulate_responses(fitted: FitResult, n_boot: int, seed: int) -> np.ndarray:
    """Responses drawn from a fitted model at its own covariates, all replicates in one
    vectorised call, (n_boot, n).

    Parameters
    ----------
    fitted : FitResult
    n_boot : int
    seed : int

    Examples
    --------
    >>> import numpy as np, moetheory as mt
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-1, 1, 200); y = x + 0.1 * rng.standard_normal(200)
    >>> simulate_responses(mt.fit(x, y, n_experts=1), n_boot=5, seed=0).shape
    (5, 200)
    """
    from moetheory.model import _sample

    spec = fitted.spec
    params = jax.tree.map(jax.numpy.asarray, fitted.params)
    x = jax.numpy.asarray(fitted.x)
    keys = jax.random.split(jax.random.key(seed), n_boot)
    ys, _ = jax.vmap(lambda key: _sample(key, spec, params, x))(keys)
    return np.asarray(ys)


def bootstrap_lrt(x, y, k: int, n_boot: int = 99, seed: int = 0, **fit_kwargs) -> BootstrapLRTResult:
    """Parametric-bootstrap likelihood-ratio test of k against k + 1 experts.

    Fits k and k + 1 experts to (x, y); draws ``n_boot`` response vectors from the fitted
    k-expert model at the observed x (in one vectorised call); refits both models to each; the
    p-value is the share of simulated statistics at least as large as the observed one,
    (1 + #{LR*_b ≥ LR}) / (n_boot + 1). This is mixtools' ``boot.comp`` (McLachlan 1987,
    Appl. Statist. 36:318) for mixtures of experts.

    The test is only as good as the fits: each refit is :func:`moetheory.fit` with
    ``fit_kwargs`` (its starts and seed), so a refit stuck below its maximum biases the
    simulated statistics; refits that warn are counted in ``refit_warnings`` and summarised in
    one :class:`BootstrapWarning`.

    Parameters
    ----------
    x : array (n, d) or (n,)
    y : array (n,)
    k : int >= 1
        Experts under the null hypothesis.
    n_boot : int >= 1
        Bootstrap replicates (99 gives p-values on a grid of 0.01).
    seed : int
        Seed of the simulated responses (the refits use ``fit_kwargs['seed']``, default 0).
    **fit_kwargs
        Passed to :func:`moetheory.fit` (``gate``, ``n_init``, ``seed``, ...).

    Returns
    -------
    BootstrapLRTResult

    Examples
    --------
    >>> import numpy as np, moetheory as mt
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-1, 1, 200)
    >>> y = np.where(x > 0, 1 + x, -1 - x) + 0.2 * rng.standard_normal(200)
    >>> r = mt.bootstrap_lrt(x, y, k=1, n_boot=19, seed=1)
    >>> r.p_value                         # two regimes: k = 1 rejected
    0.05
    """
    _check_fit_kwargs(fit_kwargs)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k (experts under the null) must be an integer >= 1; got {k!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, (int, np.integer)) or n_boot < 1:
        raise ValueError(f"n_boot must be a positive integer; got {n_boot!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer; got {seed!r} ({type(seed).__name__})")
    if fit_kwargs.get("weights") is not None:
        raise ValueError("bootstrap_lrt does not take weights: it simulates one response per row; "
                         "for integer case weights repeat the rows instead (np.repeat)")
    k = int(k)
    null = fit(x, y, n_experts=k, **fit_kwargs)
    alternative = fit(x, y, n_experts=k + 1, **fit_kwargs)
    statistic = 2.0 * (alternative.loglik - null.loglik)
    ys = simulate_responses(null, int(n_boot), int(seed))
    boot = np.empty(int(n_boot))
    warned = Counter()
    refit_kwargs = {**fit_kwargs, "x_names": null.x_names}  # null.x is an array: keep the names
    for b in range(int(n_boot)):
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            l0 = fit(null.x, ys[b], n_experts=k, **refit_kwargs).loglik
            l1 = fit(null.x, ys[b], n_experts=k + 1, **refit_kwargs).loglik
        for category in {w.category.__name__ for w in caught}:
            warned[category] += 1
        boot[b] = 2.0 * (l1 - l0)
    if warned:
        warnings.warn("bootstrap refits warned: " + ", ".join(
            f"{name} in {count} of {n_boot} replicates" for name, count in sorted(warned.items()))
            + "; see BootstrapLRTResult.refit_warnings", BootstrapWarning, stacklevel=2)
    p_value = (1.0 + np.count_nonzero(boot >= statistic)) / (n_boot + 1.0)
    return BootstrapLRTResult(k=k, statistic=float(statistic), p_value=float(p_value),
                              boot_statistics=boot, null=null, alternative=alternative,
                              refit_warnings=dict(warned), seed=int(seed))
