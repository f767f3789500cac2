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
    arr = as_float(name, x)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be a 1-d or 2-d array (n,) or (n, d); got shape {arr.shape}")
    if arr.shape[0] == 0:
        raise ValueError(f"{name} must have at least one row; got shape {arr.shape}")
    if arr.shape[1] == 0:
        raise ValueError(f"{name} must have at least one column; got shape {arr.shape}")
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
    yarr = as_float("y", y)
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


def check_weights(weights, n: int) -> np.ndarray:
    """Validate case (frequency) weights for n rows: a 1-d array of n finite numbers ≥ 0, not
    all 0. A weight w counts its row w times; 0 leaves the row out.

    Examples
    --------
    >>> check_weights([1, 2, 0], 3).tolist()
    [1.0, 2.0, 0.0]
    >>> check_weights([1, -1, 0], 3)
    Traceback (most recent call last):
    ValueError: weights must be >= 0; got -1.0 at row 1
    """
    w = as_float("weights", weights)
    if w.ndim != 1 or w.shape[0] != n:
        raise ValueError(f"weights must be a 1-d array with one weight per row (n={n}); got shape {w.shape}")
    bad = ~np.isfinite(w)
    if bad.any():
        raise ValueError(f"weights contains NaN or inf, first at row {int(np.flatnonzero(bad)[0])}")
    if (w < 0).any():
        row = int(np.flatnonzero(w < 0)[0])
        raise ValueError(f"weights must be >= 0; got {float(w[row])!r} at row {row}")
    if not w.sum() > 0:
        raise ValueError("weights are all zero: no observation is left to fit")
    return w


def as_float(name, value) -> np.ndarray:
    """``value`` as a float64 array; a non-numeric value is a ValueError, a complex or date/time
    one a TypeError naming ``name`` (NumPy would drop an imaginary part with only a warning, and
    turn dates into day counts).

    Examples
    --------
    >>> as_float("beta0", [1, 2]).dtype
    dtype('float64')
    >>> as_float("beta0", [1 + 2j])
    Traceback (most recent call last):
    TypeError: beta0 must hold real numbers; got complex values (dtype complex128): pass beta0.real if the imaginary parts are all zero
    """
    expected = f"{name} must be a numeric array (convertible to float64)"
    try:
        arr = np.asarray(value)
    except ValueError as err:  # ragged nested sequences
        raise ValueError(f"{expected}; {err}") from None
    if np.iscomplexobj(arr) or (arr.dtype == object and any(isinstance(v, complex) for v in arr.flat)):
        raise TypeError(f"{name} must hold real numbers; got complex values (dtype {arr.dtype}): "
                        f"pass {name}.real if the imaginary parts are all zero")
    if arr.dtype.kind in "mM":
        raise TypeError(f"{name} must hold numbers; got dates or durations (dtype {arr.dtype}): "
                        "convert them to numbers in the unit you mean")
    try:
        return np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{expected}; {err}") from None


#: Scale limits of fit's data, (largest magnitude, smallest non-zero spread max − min), within
#: which the fit, its standard errors and ``summary()`` stay inside float64's normal range (about
#: 2.2e-308 .. 1.8e308). Covariates: sums of n squares of x, and squared deviations, must neither
#: overflow nor underflow (the standardised column would be zero: the covariate silently dropped).
X_LIMITS = (1e150, 1e-140)
#: The response: the experts' variances scale as y² and their covariance (standard errors) as
#: y⁴, so y's limits are the square roots of x's.
Y_LIMITS = (1e75, 1e-70)


def scale_problem(label: str, values, limits=X_LIMITS, where=lambda row: f"row {row}") -> str | None:
    """Why a finite column cannot be fitted in float64 arithmetic (a message naming ``label``),
    or None when it can.

    A value beyond ``limits[0]``, a non-zero spread below ``limits[1]``, or a variance that
    overflows (many values near the limit) make squares and sums of squares overflow or
    underflow float64 once the data are standardised: fits would drop the column (slopes exactly
    0), stop on a non-finite log-likelihood, or report infinite or zero standard errors.

    Parameters
    ----------
    label : str
        The column as the message names it (``"x column 2 ('age')"``, ``"column 'y' of data.csv"``).
    values : array (n,)
        Finite numbers.
    limits : (float, float)
        (largest magnitude, smallest non-zero spread): :data:`X_LIMITS` for a covariate,
        :data:`Y_LIMITS` for the response.
    where : callable
        Row index → how the message names it (default ``"row i"``).

    Returns
    -------
    str or None
        One line: what is wrong and how to rescale.

    Examples
    --------
    >>> scale_problem("x", np.array([0.5, -1.0, 2.0])) is None
    True
    >>> scale_problem("x", np.array([0.0, 3e200]))
    'x holds 3e+200 (row 1): magnitudes above 1e+150 overflow float64 in the fit; rescale it (e.g. divide it by 1e+200)'
    >>> scale_problem("y", np.array([1e-200, 2e-200]), Y_LIMITS)
    'y varies by only 1e-200 (max - min): spreads below 1e-70 underflow float64 in the fit; rescale it (e.g. multiply it by 1e+200)'
    """
    max_magnitude, min_spread = limits
    values = np.asarray(values, dtype=np.float64)
    big = np.abs(values) > max_magnitude
    if big.any():
        row = int(np.flatnonzero(big)[0])
        v = float(values[row])
        return (f"{label} holds {v:.3g} ({where(row)}): magnitudes above {max_magnitude:.0e} overflow "
                f"float64 in the fit; rescale it (e.g. divide it by {_power_of_ten(abs(v)):.0e})")
    spread = float(np.ptp(values)) if values.size else 0.0
    if 0 < spread < min_spread:
        return (f"{label} varies by only {spread:.3g} (max - min): spreads below {min_spread:.0e} "
                f"underflow float64 in the fit; rescale it (e.g. multiply it by "
                f"{1 / _power_of_ten(spread):.0e})")
    with np.errstate(over="ignore"):
        sd = float(np.std(values))
    if not np.isfinite(sd):
        return (f"{label} has a variance that overflows float64 ({values.size} values up to "
                f"{float(np.abs(values).max()):.3g}); rescale it")
    return None


def _power_of_ten(v: float) -> float:
    return 10.0 ** round(np.log10(v))


def check_scale(x: np.ndarray, y: np.ndarray, names=None) -> None:
    """Raise a ValueError naming the column when x (n, d) or y (n,) (finite, as returned by
    :func:`check_xy`) cannot be fitted in float64 (:func:`scale_problem`).

    Examples
    --------
    >>> check_scale(np.zeros((3, 1)), np.array([1.0, 2.0, 3e100]))
    Traceback (most recent call last):
    ValueError: y holds 3e+100 (row 2): magnitudes above 1e+75 overflow float64 in the fit; rescale it (e.g. divide it by 1e+100)
    """
    columns = [(f"x column {j + 1}" + (f" ({names[j]!r})" if names is not None else ""), x[:, j], X_LIMITS)
               for j in range(x.shape[1])] + [("y", y, Y_LIMITS)]
    for label, values, limits in columns:
        problem = scale_problem(label, values, limits)
        if problem is not None:
            raise ValueError(problem)



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
