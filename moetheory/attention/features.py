"""Random feature maps: random-feature attention (RFA), biased RFA and the RF-MLP baseline.

RFA with ``M`` heads (Fu, Guo, Bai & Mei, NeurIPS 2023) is

    f(X) = sum_m (1/N) sum_i sigma(x~_0^T W_m x~_i) <v_m, x~_i>,

with frozen random ``W_m`` and trained values ``v_m in R^{d_in}``; ``x~ = [x; 1]`` when
``augment`` (``d_in = d + 1``), else ``x~ = x`` (``d_in = d``).  The model is linear in
``v`` with features (head-major column order ``m * d_in + j``)

    phi_{m,j}(X) = (1/N) sum_i sigma(x~_0^T W_m x~_i) x~_{i,j}.

* ``W_m`` entries i.i.d. ``N(mean, w_var)``; default ``w_var = 1 / d_in`` (**OPEN**: the
  paper's constants).  Zero mean is RFA; the *biased* RFA uses the mean
  ``mean_scale * blockdiag(I_d, 0)`` (identity on the x-block), see
  :func:`identity_mean_scale` for the documented default scale.
* ``activation``: ``"relu"`` (default), ``"exp"`` (``sigma = exp``, still with ``1/N``),
  or ``"softmax"`` where ``(1/N) sigma(s_i)`` is replaced by ``softmax_i(s)`` over keys.

The RF-MLP baseline is a two-layer random-feature network on the flattened input
``z = [x_0, x_1, ..., x_N, 1]`` (the 1 only when ``augment``):
``psi_k(X) = relu(<w_k, z>)``, ``w_k ~ N(0, w_var I)``, default ``w_var = 1 / dim(z)``.

All maps expose ``n_units`` (heads / neurons), ``unit_size`` (features per unit),
``n_features`` and ``block(X, start, stop)`` (features of units ``start:stop``), so that
feature and kernel matrices can be accumulated over blocks of units with bounded memory
(:func:`feature_matrix`, :func:`kernel_matrix`).  The kernel is normalised by the feature
count: ``K = Phi(X) Phi(Y)^T / n_features``.  Everything is float64 NumPy: a jitted
float64 JAX version of :meth:`RFAFeatures.block` measured about as fast on 2 CPU cores
(JAX / NumPy time ratio 0.9, ``benchmarks/attention_memory.py speed``) and the feature
maps are not the bottleneck (the ridge eigendecompositions are), so NumPy is kept.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .inputs import (augment as _augment, check_choice, check_inputs, check_positive,
                     check_positive_int)

__all__ = [
    "ACTIVATIONS", "RFAFeatures", "RFMLPFeatures", "identity_mean_scale",
    "feature_matrix", "kernel_matrix", "rfa_kernel_infinite",
]

ACTIVATIONS = ("relu", "exp", "softmax")
MLP_ACTIVATIONS = ("relu",)


def identity_mean_scale(d: int, radius: float, w_var: float | None = None,
                        augment: bool = True, relative: float = 1.0) -> float:
    """Default scale ``c`` of the biased-RFA mean ``c * blockdiag(I_d, 0)``.

    ``c`` is chosen so that the mean part ``c <x_0, x_i>`` of the pre-activation has
    ``relative`` times the standard deviation of the random part ``x~_0^T G x~_i``:
    ``sd(<x_0, x_i>) = radius^2 / sqrt(d)`` and ``sd(random) = sqrt(w_var) |x~|^2``.

    Examples
    --------
    >>> round(identity_mean_scale(8, 1.0), 4)   # w_var = 1/9, |x~|^2 = 2
    1.8856
    """
    d = check_positive_int("d", d)
    radius = check_positive("radius", radius)
    relative = check_positive("relative", relative, allow_zero=True)
    d_in = d + 1 if augment else d
    w_var = 1.0 / d_in if w_var is None else check_positive("w_var", w_var)
    sq = radius ** 2 + (1.0 if augment else 0.0)
    return float(relative * np.sqrt(w_var) * sq * np.sqrt(d) / radius ** 2)


@dataclass(frozen=True, eq=False)
class RFAFeatures:
    """Random-feature attention feature map (frozen weights).

    Attributes
    ----------
    weights : ndarray, shape (M, d_in, d_in)
        Frozen query-key matrices ``W_m``.
    activation : {"relu", "exp", "softmax"}
    augment : bool
        Whether inputs are augmented with a constant 1 (``d_in = d + 1``).

    Examples
    --------
    >>> from moetheory.attention.inputs import sample_inputs
    >>> rng = np.random.default_rng(0)
    >>> fmap = RFAFeatures.sample(rng, d=4, n_heads=3)
    >>> fmap.block(sample_inputs(rng, 5, N=2, d=4), 0, 3).shape
    (5, 15)
    """

    weights: np.ndarray
    activation: str = "relu"
    augment: bool = True

    def __post_init__(self):
        check_choice("activation", self.activation, ACTIVATIONS)
        W = np.asarray(self.weights, dtype=np.float64)
        if W.ndim != 3 or W.shape[1] != W.shape[2] or W.shape[0] < 1:
            raise ValueError(f"weights must have shape (M, d_in, d_in) with M >= 1, got {W.shape}")
        object.__setattr__(self, "weights", W)

    @classmethod
    def sample(cls, rng: np.random.Generator, d: int, n_heads: int, *, augment: bool = True,
               activation: str = "relu", w_var: float | None = None,
               mean_scale: float = 0.0) -> "RFAFeatures":
        """Draw ``n_heads`` matrices ``W_m = mean_scale * blockdiag(I_d, 0) + G_m``.

        Parameters
        ----------
        rng : numpy.random.Generator
        d : int
            Input dimension (>= 1).
        n_heads : int
            Number of heads ``M`` (>= 1).
        augment : bool
            Append a constant 1 to every token (default True).
        activation : {"relu", "exp", "softmax"}
        w_var : float, optional
            Variance of the entries of ``G_m``; default ``1 / d_in``.
        mean_scale : float
            0 gives RFA; > 0 gives biased RFA (identity mean on the x-block).
        """
        d = check_positive_int("d", d)
        M = check_positive_int("M (n_heads)", n_heads)
        check_choice("activation", activation, ACTIVATIONS)
        d_in = d + 1 if augment else d
        w_var = 1.0 / d_in if w_var is None else check_positive("w_var", w_var)
        mean_scale = float(mean_scale)
        W = np.sqrt(w_var) * rng.standard_normal((M, d_in, d_in))
        if mean_scale != 0.0:
            W[:, np.arange(d), np.arange(d)] += mean_scale
        return cls(W, activation, augment)

    @property
    def n_units(self) -> int:
        return self.weights.shape[0]

    @property
    def unit_size(self) -> int:
        return self.weights.shape[1]

    @property
    def n_features(self) -> int:
        return self.n_units * self.unit_size

    def block(self, X, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Features of heads ``start:stop``.

        Parameters
        ----------
        X : array_like, shape (n, N + 1, d)

        Returns
        -------
        ndarray, shape (n, (stop - start) * d_in), head-major columns.
        """
        X = check_inputs(X)
        Xt = _augment(X, self.augment)
        if Xt.shape[2] != self.unit_size:
            raise ValueError(f"X must have last dimension {self.unit_size - self.augment}, "
                             f"got {X.shape[2]}")
        W = self.weights[start:stop]
        n, N1, d_in = Xt.shape
        B = W.shape[0]
        q, keys = Xt[:, 0], Xt[:, 1:]
        # U[n, b, :] = W_b^T x~_0  -> scores S[n, b, i] = x~_0^T W_b x~_i
        U = (q @ W.transpose(1, 0, 2).reshape(d_in, B * d_in)).reshape(n, B, d_in)
        S = U @ keys.transpose(0, 2, 1)
        N = N1 - 1
        if self.activation == "relu":
            A = np.maximum(S, 0.0) / N
        elif self.activation == "exp":
            A = np.exp(S) / N
        else:  # softmax over keys, in a stable form
            A = np.exp(S - S.max(axis=-1, keepdims=True))
            A /= A.sum(axis=-1, keepdims=True)
        return (A @ keys).reshape(n, B * d_in)


@dataclass(frozen=True, eq=False)
class RFMLPFeatures:
    """Two-layer random-feature MLP on the flattened input ``[x_0, ..., x_N, (1)]``.

    Attributes
    ----------
    weights : ndarray, shape (D, p)
        First-layer weights; ``D = (N + 1) d (+ 1)``, ``p`` random neurons.
    augment : bool
        Whether a single constant 1 is appended to the flattened input.

    Examples
    --------
    >>> from moetheory.attention.inputs import sample_inputs
    >>> rng = np.random.default_rng(0)
    >>> fmap = RFMLPFeatures.sample(rng, d=4, N=2, n_features=7)
    >>> fmap.block(sample_inputs(rng, 5, N=2, d=4)).shape
    (5, 7)
    """

    weights: np.ndarray
    augment: bool = True
    activation: str = "relu"

    def __post_init__(self):
        check_choice("activation", self.activation, MLP_ACTIVATIONS)
        W = np.asarray(self.weights, dtype=np.float64)
        if W.ndim != 2 or W.shape[1] < 1:
            raise ValueError(f"weights must have shape (D, p) with p >= 1, got {W.shape}")
        object.__setattr__(self, "weights", W)

    @classmethod
    def sample(cls, rng: np.random.Generator, d: int, N: int, n_features: int, *,
               augment: bool = True, w_var: float | None = None,
               activation: str = "relu") -> "RFMLPFeatures":
        """Draw ``n_features`` neurons with weights i.i.d. ``N(0, w_var)`` (default ``1/D``)."""
        d = check_positive_int("d", d)
        N = check_positive_int("N", N)
        p = check_positive_int("n_features", n_features)
        check_choice("activation", activation, MLP_ACTIVATIONS)
        D = (N + 1) * d + (1 if augment else 0)
        w_var = 1.0 / D if w_var is None else check_positive("w_var", w_var)
        return cls(np.sqrt(w_var) * rng.standard_normal((D, p)), augment, activation)

    @property
    def n_units(self) -> int:
        return self.weights.shape[1]

    @property
    def unit_size(self) -> int:
        return 1

    @property
    def n_features(self) -> int:
        return self.n_units

    def block(self, X, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Features of neurons ``start:stop``; returns shape (n, stop - start)."""
        X = check_inputs(X)
        Z = X.reshape(X.shape[0], -1)
        if self.augment:
            Z = np.concatenate([Z, np.ones((Z.shape[0], 1))], axis=1)
        if Z.shape[1] != self.weights.shape[0]:
            raise ValueError(f"flattened X must have {self.weights.shape[0]} columns, "
                             f"got {Z.shape[1]} (check N and d)")
        return np.maximum(Z @ self.weights[:, start:stop], 0.0)


def _blocks(fmap, block_size: int | None):
    M = fmap.n_units
    bs = M if block_size is None else check_positive_int("block_size", block_size)
    for s in range(0, M, bs):
        yield s, min(s + bs, M)


def feature_matrix(fmap, X, block_size: int | None = None) -> np.ndarray:
    """Full feature matrix ``Phi(X)``, shape (n, n_features), filled block by block.

    Examples
    --------
    >>> from moetheory.attention.inputs import sample_inputs
    >>> rng = np.random.default_rng(0)
    >>> fmap = RFAFeatures.sample(rng, d=3, n_heads=5)
    >>> feature_matrix(fmap, sample_inputs(rng, 2, 4, 3), block_size=2).shape
    (2, 20)
    """
    X = check_inputs(X)
    out = np.empty((X.shape[0], fmap.n_features))
    u = fmap.unit_size
    for s, e in _blocks(fmap, block_size):
        out[:, s * u:e * u] = fmap.block(X, s, e)
    return out


def kernel_matrix(fmap, X, Y=None, block_size: int | None = 64) -> np.ndarray:
    """Normalised feature kernel ``Phi(X) Phi(Y)^T / n_features``, accumulated over blocks.

    Peak memory is ``O(n_X n_Y + (n_X + n_Y) * block_size * unit_size)``: the full feature
    matrices are never formed.

    Parameters
    ----------
    fmap : RFAFeatures or RFMLPFeatures
    X : array_like, shape (n_X, N + 1, d)
    Y : array_like, shape (n_Y, N + 1, d), optional
        Defaults to ``X`` (symmetric kernel).
    block_size : int or None
        Units (heads / neurons) per block; None = all at once.

    Returns
    -------
    ndarray, shape (n_X, n_Y)

    Examples
    --------
    >>> from moetheory.attention.inputs import sample_inputs
    >>> rng = np.random.default_rng(0)
    >>> fmap = RFAFeatures.sample(rng, d=3, n_heads=5)
    >>> kernel_matrix(fmap, sample_inputs(rng, 4, 2, 3), block_size=2).shape
    (4, 4)
    """
    X = check_inputs(X)
    Y = None if Y is None else check_inputs(Y, "Y")
    K = np.zeros((X.shape[0], X.shape[0] if Y is None else Y.shape[0]))
    for s, e in _blocks(fmap, block_size):
        Px = fmap.block(X, s, e)
        Py = Px if Y is None else fmap.block(Y, s, e)
        K += Px @ Py.T
    K /= fmap.n_features
    if Y is None:
        K = 0.5 * (K + K.T)
    return K


def rfa_kernel_infinite(X, Y=None, *, activation: str = "relu", w_var: float | None = None,
                        augment: bool = True) -> np.ndarray:
    """Closed-form infinite-width limit (M -> inf) of the zero-mean RFA kernel.

    With the normalisation of :func:`kernel_matrix`,

        K(X, Y) = (1 / (d_in N^2)) sum_{i, i'} <x~_i, y~_i'> E[sigma(a_i) sigma(b_i')],

    where ``a_i = x~_0^T W x~_i`` and ``b_i' = y~_0^T W y~_i'`` are jointly Gaussian with
    ``Cov = w_var <x~_0, y~_0> <x~_i, y~_i'>``.  For ReLU the expectation is the
    first-order arc-cosine kernel ``s_a s_b (sin t + (pi - t) cos t) / (2 pi)``; for exp
    it is ``exp((Var a + Var b + 2 Cov) / 2)``.  Softmax has no closed form here.
    Memory is ``O(n_X n_Y N N')`` (meant for checks on small inputs; the Monte Carlo
    estimate is :func:`kernel_matrix` of a wide :class:`RFAFeatures`).

    Parameters
    ----------
    X : array_like, shape (n_X, N + 1, d)
    Y : array_like, shape (n_Y, N' + 1, d), optional (default ``X``)

    Returns
    -------
    ndarray, shape (n_X, n_Y)

    Examples
    --------
    >>> from moetheory.attention.inputs import sample_inputs
    >>> X = sample_inputs(np.random.default_rng(0), 3, 2, 4)
    >>> rfa_kernel_infinite(X).shape
    (3, 3)
    """
    check_choice("activation", activation, ("relu", "exp"))
    X = _augment(check_inputs(X), augment)
    Y = X if Y is None else _augment(check_inputs(Y, "Y"), augment)
    d_in = X.shape[2]
    w_var = 1.0 / d_in if w_var is None else check_positive("w_var", w_var)
    q0 = np.einsum("ad,bd->ab", X[:, 0], Y[:, 0])                    # (nx, ny)
    kk = np.einsum("aid,bjd->abij", X[:, 1:], Y[:, 1:])              # (nx, ny, N, N')
    va = w_var * np.sum(X[:, 0] ** 2, -1)[:, None] * np.sum(X[:, 1:] ** 2, -1)  # (nx, N)
    vb = w_var * np.sum(Y[:, 0] ** 2, -1)[:, None] * np.sum(Y[:, 1:] ** 2, -1)  # (ny, N')
    cov = w_var * q0[:, :, None, None] * kk
    va4, vb4 = va[:, None, :, None], vb[None, :, None, :]
    if activation == "relu":
        sab = np.sqrt(va4 * vb4)
        rho = np.clip(cov / sab, -1.0, 1.0)
        t = np.arccos(rho)
        E = sab * (np.sin(t) + (np.pi - t) * rho) / (2 * np.pi)
    else:
        E = np.exp(0.5 * (va4 + vb4 + 2 * cov))
    N, N2 = X.shape[1] - 1, Y.shape[1] - 1
    return np.sum(kk * E, axis=(2, 3)) / (d_in * N * N2)
