"""Kernel/feature ridge regression with a kernel normalised by the feature count.

For features ``Phi`` (n x p) the normalised kernel is ``K = Phi Phi^T / p`` and the ridge
predictor with penalty ``lam`` is

    f(x) = k(x)^T (K + lam I)^{-1} y          (dual, n x n solve)
         = phi(x)^T (Phi^T Phi / p + lam I)^{-1} Phi^T y / p      (primal, p x p solve),

the two being algebraically identical.  Use the dual when ``n <= p`` and the primal
otherwise (:func:`choose_solver`).  The path functions eigendecompose once and return the
predictions for every ``lam`` of a grid, so a validation split can pick ``lam`` at the
cost of one decomposition.  ``y`` may hold several targets as columns (same kernel).
"""
from __future__ import annotations

import numpy as np
import scipy.linalg as sla

from .inputs import check_choice

__all__ = ["DEFAULT_LAMBDAS", "choose_solver", "ridge_path_dual", "ridge_path_primal",
           "ridge_solve_dual", "ridge_solve_primal", "ridge_predict", "select_lambda"]

#: Default log grid of penalties for the normalised kernel.
DEFAULT_LAMBDAS = np.logspace(-10, 3, 27)


def _as_2d(y):
    y = np.asarray(y, dtype=np.float64)
    return (y[:, None], True) if y.ndim == 1 else (y, False)


def _check_lambdas(lambdas):
    lam = np.atleast_1d(np.asarray(lambdas, dtype=np.float64))
    if lam.ndim != 1 or lam.size == 0 or not np.all(np.isfinite(lam)) or np.any(lam <= 0):
        raise ValueError(f"lambdas must be a non-empty 1-d array of finite values > 0, got {lambdas!r}")
    return lam


def choose_solver(n: int, p: int) -> str:
    """``"dual"`` when ``n <= p`` (n x n system), else ``"primal"`` (p x p).

    Parameters
    ----------
    n : int
        Number of training points (rows of ``Phi``, shape (n, p)).
    p : int
        Number of features (columns of ``Phi``).

    Returns
    -------
    str
        ``"dual"`` or ``"primal"``.

    Examples
    --------
    >>> choose_solver(100, 1000), choose_solver(1000, 100)
    ('dual', 'primal')
    """
    return "dual" if n <= p else "primal"


def ridge_path_dual(K, y, K_eval, lambdas) -> np.ndarray:
    """Dual ridge predictions for a grid of penalties from one eigendecomposition.

    Parameters
    ----------
    K : ndarray, shape (n, n)
        Normalised training kernel.
    y : ndarray, shape (n,) or (n, T)
    K_eval : ndarray, shape (m, n)
        Kernel between evaluation and training points.
    lambdas : array_like, shape (L,)

    Returns
    -------
    ndarray, shape (L, m) or (L, m, T)

    Examples
    --------
    >>> Phi = np.random.default_rng(0).standard_normal((5, 8)); K = Phi @ Phi.T / 8
    >>> ridge_path_dual(K, np.ones(5), K[:2], [1e-3, 1.0]).shape
    (2, 2)
    """
    lam = _check_lambdas(lambdas)
    Y, squeeze = _as_2d(y)
    s, U = np.linalg.eigh(np.asarray(K, dtype=np.float64))
    s = np.maximum(s, 0.0)                      # PSD up to rounding
    proj = U.T @ Y                              # (n, T)
    A = np.asarray(K_eval, dtype=np.float64) @ U   # (m, n)
    out = np.stack([A @ (proj / (s + l)[:, None]) for l in lam])
    return out[..., 0] if squeeze else out


def ridge_path_primal(Phi, y, Phi_eval, lambdas) -> np.ndarray:
    """Primal ridge predictions for a grid of penalties (kernel normalised by ``p``).

    Parameters
    ----------
    Phi : ndarray, shape (n, p)
    y : ndarray, shape (n,) or (n, T)
    Phi_eval : ndarray, shape (m, p)
    lambdas : array_like, shape (L,)

    Returns
    -------
    ndarray, shape (L, m) or (L, m, T)

    Examples
    --------
    >>> Phi = np.random.default_rng(0).standard_normal((9, 3))
    >>> ridge_path_primal(Phi, np.ones(9), Phi[:4], [1e-3]).shape
    (1, 4)
    """
    lam = _check_lambdas(lambdas)
    Y, squeeze = _as_2d(y)
    Phi = np.asarray(Phi, dtype=np.float64)
    p = Phi.shape[1]
    s, V = np.linalg.eigh(Phi.T @ Phi / p)
    s = np.maximum(s, 0.0)
    b = V.T @ (Phi.T @ Y) / p                    # (p, T)
    A = np.asarray(Phi_eval, dtype=np.float64) @ V
    out = np.stack([A @ (b / (s + l)[:, None]) for l in lam])
    return out[..., 0] if squeeze else out


def ridge_solve_dual(K, y, lam: float) -> np.ndarray:
    """Dual coefficients ``alpha = (K + lam I)^{-1} y`` by Cholesky; predict with ``K_eval @ alpha``.

    Parameters
    ----------
    K : ndarray, shape (n, n)
        Normalised training kernel (PSD).
    y : ndarray, shape (n,) or (n, T)
    lam : float
        Penalty (> 0).

    Returns
    -------
    alpha : ndarray, shape (n,) or (n, T)

    Examples
    --------
    >>> Phi = np.random.default_rng(0).standard_normal((5, 8)); K = Phi @ Phi.T / 8
    >>> alpha = ridge_solve_dual(K, np.ones(5), 0.1)
    >>> alpha.shape, bool(np.allclose((K + 0.1 * np.eye(5)) @ alpha, 1.0))
    ((5,), True)
    """
    lam = float(_check_lambdas(lam)[0])
    K = np.asarray(K, dtype=np.float64)
    return _spd_solve(K, np.asarray(y, dtype=np.float64), lam)


def _spd_solve(G, b, lam):
    """Solve ``(G + lam I) x = b`` for PSD ``G`` by Cholesky (one n x n copy, no eye());
    if rounding makes the factorisation fail (tiny ``lam``), fall back to an
    eigendecomposition of ``G`` with eigenvalues clipped at 0 (as in the path functions)."""
    A = np.array(G, dtype=np.float64, order="F", copy=True)
    A.flat[:: A.shape[0] + 1] += lam
    try:
        c = sla.cho_factor(A, lower=True, overwrite_a=True, check_finite=False)
        return sla.cho_solve(c, b, check_finite=False)
    except np.linalg.LinAlgError:
        del A
        s, U = np.linalg.eigh(G)
        s = np.maximum(s, 0.0) + lam
        return U @ ((U.T @ b) / (s[:, None] if b.ndim == 2 else s))


def ridge_solve_primal(Phi, y, lam: float) -> np.ndarray:
    """Primal weights ``w = (Phi^T Phi / p + lam I)^{-1} Phi^T y / p``; predict with ``Phi_eval @ w``.

    Parameters
    ----------
    Phi : ndarray, shape (n, p)
        Training features.
    y : ndarray, shape (n,) or (n, T)
    lam : float
        Penalty (> 0).

    Returns
    -------
    w : ndarray, shape (p,) or (p, T)

    Examples
    --------
    >>> Phi = np.random.default_rng(0).standard_normal((9, 3))
    >>> w = ridge_solve_primal(Phi, np.ones(9), 0.1)
    >>> w.shape, bool(np.allclose(Phi @ w, ridge_predict(Phi, np.ones(9), Phi, 0.1, "dual")))
    ((3,), True)
    """
    lam = float(_check_lambdas(lam)[0])
    Phi = np.asarray(Phi, dtype=np.float64)
    p = Phi.shape[1]
    return _spd_solve(Phi.T @ Phi / p, Phi.T @ np.asarray(y, dtype=np.float64) / p, lam)


def ridge_predict(Phi, y, Phi_eval, lam: float, solver: str = "auto") -> np.ndarray:
    """Fit ridge on features ``Phi`` and predict at ``Phi_eval``.

    Parameters
    ----------
    Phi : ndarray, shape (n, p)
    y : ndarray, shape (n,) or (n, T)
    Phi_eval : ndarray, shape (m, p)
    lam : float
    solver : {"auto", "dual", "primal"}

    Returns
    -------
    ndarray, shape (m,) or (m, T)

    Examples
    --------
    >>> Phi = np.random.default_rng(0).standard_normal((6, 4))
    >>> a = ridge_predict(Phi, np.arange(6.), Phi, 0.1, "dual")
    >>> b = ridge_predict(Phi, np.arange(6.), Phi, 0.1, "primal")
    >>> bool(np.allclose(a, b))
    True
    """
    check_choice("solver", solver, ("auto", "dual", "primal"))
    Phi = np.asarray(Phi, dtype=np.float64)
    Phi_eval = np.asarray(Phi_eval, dtype=np.float64)
    n, p = Phi.shape
    if solver == "auto":
        solver = choose_solver(n, p)
    if solver == "dual":
        alpha = ridge_solve_dual(Phi @ Phi.T / p, y, lam)
        return (Phi_eval @ Phi.T / p) @ alpha
    return Phi_eval @ ridge_solve_primal(Phi, y, lam)


def select_lambda(preds, y_val, lambdas):
    """Pick, per target column, the penalty with the smallest validation MSE.

    Parameters
    ----------
    preds : ndarray, shape (L, m) or (L, m, T)
        Output of a path function on the validation points.
    y_val : ndarray, shape (m,) or (m, T)
    lambdas : array_like, shape (L,)

    Returns
    -------
    best : ndarray, shape (T,) (or scalar float for 1-d ``y_val``)
        Selected penalties.
    val_mse : ndarray, shape (L, T) (or (L,))
        Validation MSE along the grid (non-finite entries count as +inf).

    Examples
    --------
    >>> preds = np.array([[0.0, 0.0], [1.0, 1.0], [2.0, 2.0]])   # (L, m) = (3, 2)
    >>> best, mse = select_lambda(preds, np.ones(2), [0.01, 0.1, 1.0])
    >>> best, mse.tolist()
    (0.1, [1.0, 0.0, 1.0])
    """
    lam = _check_lambdas(lambdas)
    Y, squeeze = _as_2d(y_val)
    P = preds[..., None] if squeeze else preds
    mse = np.mean((P - Y[None]) ** 2, axis=1)           # (L, T)
    mse = np.where(np.isfinite(mse), mse, np.inf)
    best = lam[np.argmin(mse, axis=0)]
    return (float(best[0]), mse[:, 0]) if squeeze else (best, mse)
