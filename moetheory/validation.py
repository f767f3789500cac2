"""Input checks that turn bad data into clear errors before anything reaches JAX."""
from __future__ import annotations

import numpy as np


def check_x(x, dim: int | None = None, name: str = "x") -> np.ndarray:
    """Return x as a float64 (n, d) array; a 1-d x (n,) becomes (n, 1).

    Raises ``ValueError`` naming ``name``, the expected and the received shape when x is not
    1-d or 2-d, is empty, has the wrong number of columns (``dim``), or holds NaN/inf.

    Examples
    --------
    >>> check_x([1.0, 2.0]).shape
    (2, 1)
    >>> check_x([[1.0, float("nan")]])
    Traceback (most recent call last):
    ValueError: x contains NaN or inf in 1 row(s), first at row 0
    """
    arr = _as_float(name, x)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 1-d or 2-d array (n,) or (n, d); got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} must have at least one row; got shape {arr.shape}")
    if dim is not None and arr.shape[1] != dim:
        raise ValueError(f"{name} must have {dim} column(s) to match the model's dim; got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise ValueError(f"{name} contains NaN or inf in {rows.size} row(s), first at row {rows[0]}")
    return arr


def check_xy(x, y, dim: int | None = None):
    """Validate a regression sample: x (n, d) and y (n,) finite float64, same n.

    x may be given as (n,) (one covariate) and y as (n, 1); the result is ``(x (n, d), y (n,))``.

    Examples
    --------
    >>> x, y = check_xy([0.0, 1.0, 2.0], [[1.0], [2.0], [3.0]])
    >>> x.shape, y.shape
    ((3, 1), (3,))
    """
    x = check_x(x, dim)
    yarr = _as_float("y", y)
    if yarr.ndim == 2 and yarr.shape[1] == 1:
        yarr = yarr[:, 0]
    if yarr.ndim != 1:
        raise ValueError(f"y must be a 1-d array of shape (n,); got shape {yarr.shape}")
    if yarr.shape[0] != x.shape[0]:
        raise ValueError(f"x and y must have the same number of rows; got x: {x.shape[0]}, y: {yarr.shape[0]}")
    bad = ~np.isfinite(yarr)
    if bad.any():
        rows = np.flatnonzero(bad)
        raise ValueError(f"y contains NaN or inf in {rows.size} row(s), first at row {rows[0]}")
    return x, yarr


def _as_float(name, value) -> np.ndarray:
    """``value`` as a float64 array; a non-numeric value is a ValueError naming ``name``."""
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a numeric array (convertible to float64); {err}") from None


def frozen_copy(a: np.ndarray) -> np.ndarray:
    """A read-only float64 copy of ``a``: a result that keeps its data cannot be changed
    through the caller's array (or change it).

    Examples
    --------
    >>> x = np.arange(3.0); kept = frozen_copy(x); x[0] = 9.0
    >>> kept.tolist(), kept.flags.writeable
    ([0.0, 1.0, 2.0], False)
    """
    # C order: a DataFrame's (column-major) values then give the same sums, bit for bit, as the
    # same numbers in a NumPy array
    out = np.array(a, dtype=np.float64, copy=True, order="C")
    out.flags.writeable = False
    return out


def covariate_names(x, names=None) -> tuple[str, ...] | None:
    """The covariates' names: ``names`` if given, else a DataFrame's columns or a named
    Series' name, else None (labels ``x1 .. xd``).

    Parameters
    ----------
    x : array (n, d) or (n,), DataFrame (n, d) or Series (n,)
    names : sequence of d str, optional

    Returns
    -------
    tuple of d str, or None

    Examples
    --------
    >>> import pandas as pd
    >>> covariate_names(pd.DataFrame({"age": [1.0], "income": [2.0]}))
    ('age', 'income')
    >>> covariate_names(np.zeros((2, 1))) is None
    True
    """
    if names is not None and hasattr(x, "columns"):
        raise ValueError("x_names relabels the columns of an array; x is a DataFrame, whose "
                         "column names are used (rename its columns instead)")
    if names is None:
        if hasattr(x, "columns"):
            names = list(x.columns)
        elif getattr(x, "ndim", None) == 1 and getattr(x, "name", None) is not None:
            names = [x.name]
        else:
            return None
    elif isinstance(names, str):
        raise ValueError(f"x_names must be a sequence of column names; got the string {names!r}")
    names = tuple(str(n) for n in names)
    if len(set(names)) != len(names):
        raise ValueError(f"x_names must be unique; got {list(names)}")
    return names


def select_columns(x, names: tuple[str, ...] | None):
    """``x`` with its columns in the fitted order when ``x`` is a DataFrame and the model knows
    its covariates' names; a missing column is named in the error. Anything else is returned
    as is (positional columns).

    Examples
    --------
    >>> import pandas as pd
    >>> select_columns(pd.DataFrame({"b": [2.0], "a": [1.0]}), ("a", "b")).to_numpy().tolist()
    [[1.0, 2.0]]
    """
    if names is None or not hasattr(x, "columns"):
        return x
    columns = [str(c) for c in x.columns]
    missing = [n for n in names if n not in columns]
    if missing:
        raise ValueError(f"x is missing column(s) {missing} of the fitted model (fitted with "
                         f"{list(names)}; got {columns})")
    return x[[x.columns[columns.index(n)] for n in names]]
