"""Input checks that turn bad data into clear errors before anything reaches JAX."""
from __future__ import annotations

import numpy as np


def check_x(x, dim: int | None = None, name: str = "x") -> np.ndarray:
    """Return x as a float64 (n, d) array; a 1-d x becomes (n, 1)."""
    arr = np.asarray(x, dtype=np.float64) if not hasattr(x, "dtype") or x.dtype != np.float64 else x
    arr = np.asarray(arr, dtype=np.float64)
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
    """Validate a regression sample: x (n, d) and y (n,) finite float64, same n."""
    x = check_x(x, dim)
    yarr = np.asarray(y, dtype=np.float64)
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
