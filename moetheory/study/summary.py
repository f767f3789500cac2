"""Summaries of study results: per-(fit, n) statistics and the loss matrix for rate fits.

Heavy-tailed replicate losses (a replicate stuck at a loss ceiling) make the mean a poor
summary on its own: :func:`summarize` reports the median and quantile bands beside the mean and
sd. A study number counts only at a certified estimate: failed fits (non-finite, variance
collapse) and estimates whose convergence certificate failed (:func:`excluded`) are left out
and counted, never averaged; losses
are never excluded for an unknown exponent r̄(m) any more (D_2 bounds them with r̄ ≥ 7,
:data:`moetheory.losses.voronoi.RBAR_LOWER_BOUND`) — ``n_rbar_bound`` counts the replicates
scored with that bound.
"""
from __future__ import annotations

import numpy as np

__all__ = ["summarize", "loss_matrix", "excluded", "QUANTILES"]

#: default quantile band of :func:`summarize` (10% and 90%, and the quartiles)
QUANTILES = (0.1, 0.25, 0.75, 0.9)


def excluded(df):
    """(failed, not certified) boolean arrays (len(df),) of result rows: a study number counts
    only at a certified estimate (caches written before certificates have no ``certified``
    column: every row counts).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"failed": [False, True, False], "certified": [True, True, False]})
    >>> [v.tolist() for v in excluded(df)]
    [[False, True, False], [False, False, True]]
    """
    failed = df["failed"].to_numpy(bool)
    cert = df["certified"].to_numpy(bool) if "certified" in df.columns else np.ones(len(df), bool)
    return failed, ~failed & ~cert


def summarize(df, loss: str = "loss_voronoi", quantiles=QUANTILES):
    """Per (fit, n): mean, sd, median and quantiles of ``loss`` over the certified, non-failed
    replicates.

    Columns: fit, n, mean, sd, median, q10, q25, q75, q90 (one ``q<100·p>`` per entry of
    ``quantiles``), n_ok, n_failed, n_not_certified, n_undefined, n_not_converged and, when the
    results carry the ``rbar_bound_m`` column, n_rbar_bound. Failed replicates (NaN/inf fit,
    variance collapse), replicates whose estimate is not certified as a maximum and replicates
    where this loss is undefined (NaN) are excluded from the statistics and counted.

    Parameters
    ----------
    df : pandas.DataFrame
        Results (one row per fit × n × replicate) with columns ``fit``, ``n``, ``failed``,
        ``converged`` and ``loss``.
    loss : str
        The loss column.
    quantiles : sequence of float in (0, 1)
        Quantile levels to report.

    Returns
    -------
    pandas.DataFrame
        One row per (fit, n).

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"fit": ["k2"] * 4, "n": [100, 100, 200, 200], "replicate": [0, 1, 0, 1],
    ...                    "failed": [False, True, False, False], "converged": [True] * 4,
    ...                    "loss_voronoi": [0.4, 9.0, 0.2, 0.3]})
    >>> summarize(df)[["fit", "n", "mean", "median", "n_ok", "n_failed"]].values.tolist()
    [['k2', 100, 0.4, 0.4, 1, 1], ['k2', 200, 0.25, 0.25, 2, 0]]
    """
    import pandas as pd

    if loss not in df.columns:
        raise KeyError(f"no column {loss!r}; loss columns: {[c for c in df.columns if c.startswith('loss_')]}")
    qs = tuple(float(q) for q in quantiles)
    if any(not 0 < q < 1 for q in qs):
        raise ValueError(f"quantiles must lie in (0, 1); got {quantiles!r}")
    rows = []
    for (fit, n), g in df.groupby(["fit", "n"], sort=True):
        failed, uncertified = excluded(g)
        vals = g[loss].to_numpy(float)
        undefined = ~failed & ~uncertified & ~np.isfinite(vals)
        ok = ~failed & ~uncertified & ~undefined
        v = vals[ok]
        row = {"fit": fit, "n": int(n), "mean": float(v.mean()) if v.size else float("nan"),
               "sd": float(v.std(ddof=1)) if v.size > 1 else float("nan"),
               "median": float(np.median(v)) if v.size else float("nan")}
        for q in qs:
            row[f"q{100 * q:g}"] = float(np.quantile(v, q)) if v.size else float("nan")
        row.update({"n_ok": int(ok.sum()), "n_failed": int(failed.sum()),
                    "n_not_certified": int(uncertified.sum()),
                    "n_undefined": int(undefined.sum()),
                    "n_not_converged": int((~g["converged"].to_numpy(bool)).sum())})
        if "rbar_bound_m" in g.columns:
            row["n_rbar_bound"] = int((g["rbar_bound_m"].to_numpy() > 0)[~failed].sum())
        rows.append(row)
    return pd.DataFrame(rows)


def loss_matrix(df, fit: str, loss: str = "loss_voronoi", certified_only: bool = True):
    """(sizes, losses (m, R)) for :func:`moetheory.rates.fit_rate`; failed and (unless
    ``certified_only=False``, for an estimator that is meant to stop early, such as the paper's
    protocol) uncertified replicates are NaN.

    Parameters
    ----------
    df : pandas.DataFrame
        Results with columns ``fit``, ``n``, ``replicate``, ``failed`` and ``loss``.
    fit : str
        The fitted-model label.
    loss : str
        The loss column.
    certified_only : bool
        Leave out replicates whose estimate is not certified (default).

    Returns
    -------
    sizes : numpy.ndarray, shape (m,)
        The sorted sample sizes.
    losses : numpy.ndarray, shape (m, R)
        Loss per size and replicate; NaN for failed, missing or non-positive values.

    Examples
    --------
    >>> import pandas as pd
    >>> df = pd.DataFrame({"fit": ["k2"] * 4, "n": [100, 100, 200, 200], "replicate": [0, 1, 0, 1],
    ...                    "failed": [False, True, False, False], "converged": [True] * 4,
    ...                    "loss_voronoi": [0.4, 9.0, 0.2, 0.3]})
    >>> sizes, mat = loss_matrix(df, "k2")
    >>> sizes.tolist(), mat.tolist()
    ([100, 200], [[0.4, nan], [0.2, 0.3]])
    """
    g = df[df["fit"] == fit]
    sizes = np.array(sorted(g["n"].unique()))
    R = int(g["replicate"].max()) + 1 if len(g) else 0
    mat = np.full((sizes.size, R), np.nan)
    pos = {n: i for i, n in enumerate(sizes)}
    failed, uncertified = excluded(g)
    vals = np.where(failed | uncertified if certified_only else failed, np.nan,
                    g[loss].to_numpy(float))
    for n, r, v in zip(g["n"].to_numpy(), g["replicate"].to_numpy(), vals):
        mat[pos[n], r] = v if (np.isfinite(v) and v > 0) else np.nan
    return sizes, mat
