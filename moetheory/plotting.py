"""A picture of a fitted mixture of experts: :meth:`moetheory.FitResult.plot`.

Top panel: the data, each point coloured by its posterior expert probabilities (the colours of
the experts mixed in proportion to r_ni, so an observation the fit cannot assign is a blend),
and each expert's regression line E[y | x, z = i] drawn where its gate weight is at least
``min_weight`` (a line outside its gate's region explains no data). Bottom panel: the gate
probabilities g_i(x) along the covariate. One covariate is drawn against its range; with
several, the plot runs along the chosen column ``along`` with the others held at their medians.
"""
from __future__ import annotations

import numpy as np


def _colours(k: int) -> np.ndarray:
    import matplotlib

    cmap = matplotlib.colormaps["tab10" if k <= 10 else "tab20"]
    return np.asarray([cmap(i % cmap.N)[:3] for i in range(k)])


def plot_fit(res, along: int = 0, ax=None, n_grid: int = 400, min_weight: float = 0.05):
    """Experts over the data coloured by posterior, gate probabilities beneath.

    Parameters
    ----------
    res : FitResult
    along : int, the covariate column on the horizontal axis (others at their medians)
    ax : a pair of matplotlib Axes (top, bottom), optional (default: a new figure)
    n_grid : int, points of the covariate grid
    min_weight : float in [0, 1), an expert's line is drawn where its gate weight ≥ this

    Returns
    -------
    (figure, (top Axes, bottom Axes))

    Examples
    --------
    >>> import matplotlib; matplotlib.use("Agg")
    >>> import moetheory as mt
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-1, 1, (200, 1)); y = np.abs(x[:, 0]) + 0.1 * rng.standard_normal(200)
    >>> fig, (top, bottom) = mt.fit(x, y, 2).plot()
    >>> len(bottom.get_lines())                 # one gate curve per expert
    2
    """
    import matplotlib.pyplot as plt

    d = res.spec.dim
    if not (isinstance(along, (int, np.integer)) and 0 <= along < d):
        raise ValueError(f"along must be a covariate column in 0..{d - 1}; got {along!r}")
    if not 0 <= min_weight < 1:
        raise ValueError(f"min_weight must be in [0, 1); got {min_weight!r}")
    k = res.spec.n_experts
    x, y = np.asarray(res.x), np.asarray(res.y)
    if ax is None:
        fig, ax = plt.subplots(2, 1, sharex=True, figsize=(6.4, 6.0),
                               gridspec_kw={"height_ratios": [3, 1]})
    top, bottom = ax
    fig = top.figure
    col = _colours(k)
    r = res.responsibilities
    top.scatter(x[:, along], y, c=np.clip(r @ col, 0.0, 1.0), s=12, linewidths=0)
    grid = np.tile(np.median(x, axis=0), (n_grid, 1))
    grid[:, along] = np.linspace(x[:, along].min(), x[:, along].max(), n_grid)
    g = res.gate_probabilities(grid)  # (n_grid, k)
    p = res.params
    means = grid @ np.asarray(p.a).T + np.asarray(p.b)  # (n_grid, k)
    names = res.x_names
    for i in range(k):
        line = np.where(g[:, i] >= min_weight, means[:, i], np.nan)
        top.plot(grid[:, along], line, color=col[i], lw=2, label=f"expert {i + 1}")
        bottom.plot(grid[:, along], g[:, i], color=col[i], lw=2)
    top.set_ylabel("y")
    top.legend(loc="best", fontsize="small")
    top.set_title("experts (coloured by posterior)")
    bottom.set_ylim(-0.02, 1.02)
    bottom.set_ylabel("gate g_i(x)")
    bottom.set_xlabel(names[along] if names is not None else f"x{along + 1}")
    return fig, (top, bottom)
