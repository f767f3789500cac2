"""Inputs of the random-feature attention experiments.

A sample is one query ``x_0`` and ``N`` keys ``x_1..x_N`` in ``R^d``, all i.i.d.
uniform on the sphere of radius ``radius``.  A batch of ``n`` samples is stored as one
float64 array ``X`` of shape ``(n, N + 1, d)`` with ``X[:, 0]`` the query and
``X[:, 1:]`` the keys.  Randomness is threaded through an explicit
:class:`numpy.random.Generator` (first argument), so the same seed gives identical
numbers.  Because the normal draws fill the output in C order, the first ``k`` samples
of a draw of ``n >= k`` samples do not depend on ``n`` (nested sample sizes).

This module also holds the small argument checks shared by the subpackage; they raise
``ValueError`` naming the argument, the expected and the received value.
"""
from __future__ import annotations

import numbers

import numpy as np

__all__ = ["sample_sphere", "sample_inputs", "augment", "make_rng"]


# ----------------------------------------------------------------------------- checks
def check_positive_int(name: str, value, minimum: int = 1) -> int:
    """Return ``value`` as int if it is an integer ``>= minimum``, else raise ValueError.

    Parameters
    ----------
    name : str
        Argument name used in the error message.
    value : int, scalar
        Value to check (``bool`` is rejected).
    minimum : int
        Smallest allowed value.

    Returns
    -------
    int

    Examples
    --------
    >>> check_positive_int("n", np.int64(3))
    3
    >>> check_positive_int("n", 0)
    Traceback (most recent call last):
    ...
    ValueError: n must be an integer >= 1, got 0
    """
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def check_positive(name: str, value, allow_zero: bool = False) -> float:
    """Return ``value`` as float if it is finite and positive (or zero), else raise.

    Parameters
    ----------
    name : str
        Argument name used in the error message.
    value : float, scalar
        Value to check (``bool`` is rejected).
    allow_zero : bool
        Accept ``0`` as well.

    Returns
    -------
    float

    Examples
    --------
    >>> check_positive("radius", 2)
    2.0
    >>> check_positive("noise_sd", 0.0, allow_zero=True)
    0.0
    >>> check_positive("radius", float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: radius must be a finite real number > 0, got inf
    """
    ok = isinstance(value, numbers.Real) and not isinstance(value, bool) and np.isfinite(value)
    if ok:
        ok = value >= 0 if allow_zero else value > 0
    if not ok:
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be a finite real number {bound}, got {value!r}")
    return float(value)


def check_choice(name: str, value, choices) -> str:
    """Raise ValueError unless ``value`` is one of ``choices``; return ``value``.

    Parameters
    ----------
    name : str
        Argument name used in the error message.
    value : scalar (usually str)
        Value to check.
    choices : iterable
        Allowed values.

    Examples
    --------
    >>> check_choice("solver", "dual", ("auto", "dual", "primal"))
    'dual'
    >>> check_choice("solver", "lu", ("dual", "primal"))
    Traceback (most recent call last):
    ...
    ValueError: solver must be one of ['dual', 'primal'], got 'lu'
    """
    if value not in tuple(choices):
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_inputs(X, name: str = "X") -> np.ndarray:
    """Check an input batch of shape ``(n, N + 1, d)`` with ``N >= 1``; return float64.

    Parameters
    ----------
    X : array_like, shape (n, N + 1, d)
        Query ``X[:, 0]`` then keys ``X[:, 1:]``; all entries finite.
    name : str
        Argument name used in the error message.

    Returns
    -------
    ndarray, shape (n, N + 1, d), float64

    Examples
    --------
    >>> check_inputs(np.zeros((2, 3, 4), dtype=np.float32)).dtype
    dtype('float64')
    >>> check_inputs(np.zeros((2, 1, 4)))
    Traceback (most recent call last):
    ...
    ValueError: X must have shape (n, N + 1, d) with N >= 1 (query then keys), got shape (2, 1, 4)
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 3 or X.shape[1] < 2 or X.shape[2] < 1:
        raise ValueError(
            f"{name} must have shape (n, N + 1, d) with N >= 1 (query then keys), "
            f"got shape {X.shape}"
        )
    if not np.all(np.isfinite(X)):
        raise ValueError(f"{name} must be finite, got non-finite entries")
    return X


# ----------------------------------------------------------------------------- sampling
def make_rng(seed: int, *stream: int) -> np.random.Generator:
    """Deterministic generator for ``(seed, *stream)``.

    Parameters
    ----------
    seed : int
        Study seed (>= 0).
    *stream : int
        Sub-stream identifiers (e.g. a replicate index and a purpose code), so that
        independent parts of a study never share random numbers.

    Examples
    --------
    >>> a = make_rng(0, 1).standard_normal(2); b = make_rng(0, 1).standard_normal(2)
    >>> bool((a == b).all())
    True
    """
    check_positive_int("seed", seed, minimum=0)
    return np.random.default_rng([int(seed), *[int(s) for s in stream]])


def sample_sphere(rng: np.random.Generator, shape, d: int, radius: float = 1.0) -> np.ndarray:
    """I.i.d. points uniform on the sphere ``{x in R^d : |x| = radius}``.

    Parameters
    ----------
    rng : numpy.random.Generator
    shape : tuple of int
        Batch shape.
    d : int
        Ambient dimension (>= 1).
    radius : float
        Sphere radius (> 0).

    Returns
    -------
    ndarray, shape ``shape + (d,)``, float64

    Examples
    --------
    >>> x = sample_sphere(np.random.default_rng(0), (5,), 3, radius=2.0)
    >>> np.allclose(np.linalg.norm(x, axis=-1), 2.0)
    True
    """
    d = check_positive_int("d", d)
    radius = check_positive("radius", radius)
    shape = tuple(int(s) for s in np.atleast_1d(shape)) if not isinstance(shape, int) else (shape,)
    g = rng.standard_normal(shape + (d,))
    norm = np.linalg.norm(g, axis=-1, keepdims=True)
    norm = np.where(norm > 0, norm, 1.0)  # probability-zero event, never divide by 0
    return radius * g / norm


def sample_inputs(rng: np.random.Generator, n: int, N: int, d: int, radius: float = 1.0) -> np.ndarray:
    """Sample ``n`` inputs (query + ``N`` keys) uniform on the sphere of radius ``radius``.

    Parameters
    ----------
    rng : numpy.random.Generator
    n : int
        Number of samples (>= 1).
    N : int
        Number of keys per sample (>= 1).
    d : int
        Dimension (>= 1).
    radius : float
        Sphere radius, typically ``1`` or ``sqrt(d)`` (> 0).

    Returns
    -------
    X : ndarray, shape (n, N + 1, d)
        ``X[:, 0]`` is the query ``x_0``, ``X[:, 1:]`` the keys.

    Examples
    --------
    >>> X = sample_inputs(np.random.default_rng(0), n=4, N=8, d=8)
    >>> X.shape
    (4, 9, 8)
    """
    n = check_positive_int("n", n)
    N = check_positive_int("N", N)
    return sample_sphere(rng, (n, N + 1), d, radius)


def augment(X, augment: bool = True) -> np.ndarray:
    """Append a constant 1 coordinate: ``x -> [x; 1]`` (last axis).

    Parameters
    ----------
    X : array_like, shape (..., d)
    augment : bool
        If False, return ``X`` unchanged (as float64).

    Returns
    -------
    ndarray, shape (..., d + 1) (or (..., d))

    Examples
    --------
    >>> augment(np.zeros((2, 3))).shape
    (2, 4)
    """
    X = np.asarray(X, dtype=np.float64)
    if not augment:
        return X
    return np.concatenate([X, np.ones(X.shape[:-1] + (1,))], axis=-1)
