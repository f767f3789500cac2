"""MoEParams: the arrays of a Gaussian mixture of experts, as a JAX pytree.

Shapes for k experts and covariate dimension d (a leading batch axis is allowed everywhere,
e.g. replicates under ``vmap``):

| field   | shape    | meaning                                                    |
|---------|----------|------------------------------------------------------------|
| `beta0` | (k,)     | gate bias β_0i                                             |
| `beta1` | (k, d)   | gate slope β_1i                                            |
| `a`     | (k, d)   | expert slope a_i                                           |
| `b`     | (k,)     | expert intercept b_i                                       |
| `var`   | (k,)     | expert noise **variance** ν_i (never a standard deviation) |
| `tau`   | ()       | gate temperature τ (1 for softmax and top-K)               |
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from moetheory.spec import MoESpec
from moetheory.validation import as_float


class MoEParams(NamedTuple):
    """Parameters of a Gaussian MoE (a pytree of arrays only).

    Examples
    --------
    >>> p = MoEParams.create(beta0=[-8.0, 0.0], beta1=[[25.0], [0.0]], a=[[-20.0], [20.0]],
    ...                      b=[15.0, -5.0], var=[0.09, 0.16])
    >>> p.a.shape
    (2, 1)
    """

    beta0: np.ndarray
    beta1: np.ndarray
    a: np.ndarray
    b: np.ndarray
    var: np.ndarray
    tau: np.ndarray

    @classmethod
    def create(cls, beta0, beta1, a, b, var, tau=1.0) -> "MoEParams":
        """Build validated float64 NumPy parameters (no batch axis).

        Parameters
        ----------
        beta0 : array (k,)
            Gate biases β_0i.
        beta1 : array (k, d), or (k,) when d = 1
            Gate slopes β_1i.
        a : array (k, d), or (k,) when d = 1
            Expert slopes a_i.
        b : array (k,)
            Expert intercepts b_i.
        var : array (k,)
            Expert noise **variances** ν_i > 0 (not standard deviations).
        tau : float
            Gate temperature τ > 0 (keep 1 for the softmax and top-K gates).

        Raises ``ValueError`` naming the field, the expected and the received shape or value.

        Examples
        --------
        >>> p = MoEParams.create([0.5, 0.0], [2.0, 0.0], [-1.0, 1.0], [0.5, -0.5], [0.05, 0.05], tau=0.5)
        >>> p.beta1.shape, float(p.tau)
        ((2, 1), 0.5)
        """
        beta0 = _as_float("beta0", beta0, 1)
        k = beta0.shape[0]
        b = _as_float("b", b, 1)
        var = _as_float("var", var, 1)
        beta1 = _as_float("beta1", beta1, 2, k)
        a = _as_float("a", a, 2, k)
        tau = np.asarray(tau, dtype=np.float64)
        for name, arr in (("b", b), ("var", var)):
            if arr.shape != (k,):
                raise ValueError(f"{name} must have shape ({k},) to match beta0; got {arr.shape}")
        if beta1.shape != a.shape:
            raise ValueError(f"beta1 and a must both have shape (k, d); got {beta1.shape} and {a.shape}")
        if beta1.shape[0] != k:
            raise ValueError(f"beta1 must have shape ({k}, d) to match beta0; got {beta1.shape}")
        if tau.shape != ():
            raise ValueError(f"tau must be a scalar; got shape {tau.shape}")
        if not np.all(np.isfinite(var)) or np.any(var <= 0):
            raise ValueError(f"var must be finite and > 0 (variances, not standard deviations); got {var}")
        if not np.isfinite(tau) or tau <= 0:
            raise ValueError(f"tau must be finite and > 0; got {float(tau)}")
        for name, arr in (("beta0", beta0), ("beta1", beta1), ("a", a), ("b", b)):
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} must be finite; got {arr}")
        return cls(beta0, beta1, a, b, var, tau)

    @property
    def n_experts(self) -> int:
        """Number of experts k (the last axis of ``beta0``)."""
        return self.beta0.shape[-1]

    @property
    def dim(self) -> int:
        """Covariate dimension d (the last axis of ``beta1``)."""
        return self.beta1.shape[-1]

    def to_numpy(self) -> "MoEParams":
        """Copy as NumPy float64 arrays (e.g. after a JAX computation)."""
        return MoEParams(*(np.asarray(v, dtype=np.float64) for v in self))

    def to_dict(self) -> dict:
        """JSON-ready nested lists."""
        return {name: np.asarray(v).tolist() for name, v in self._asdict().items()}

    @classmethod
    def from_dict(cls, d: dict) -> "MoEParams":
        """Inverse of :meth:`to_dict` (validated; an unknown key is an error, not ignored)."""
        if not isinstance(d, dict):
            raise TypeError(f"parameters must be a table/dict of beta0, beta1, a, b, var[, tau]; "
                            f"got {type(d).__name__}")
        unknown = sorted(set(d) - set(cls._fields))
        if unknown:
            raise ValueError(f"unknown parameter(s) {unknown}; expected some of {list(cls._fields)}")
        return cls.create(**{name: d[name] for name in cls._fields if name in d})

    def permute(self, order) -> "MoEParams":
        """Relabel experts: expert i of the result is expert ``order[i]`` of self."""
        order = np.asarray(order)
        return MoEParams(self.beta0[..., order], self.beta1[..., order, :], self.a[..., order, :],
                         self.b[..., order], self.var[..., order], self.tau)

    def pinned(self) -> "MoEParams":
        """Shift the gate so that the last expert's (β_0, β_1) is zero.

        For softmax and top-K (score rule is also invariant to a common β_1 shift) this leaves
        the model unchanged: it is the reference-category normalisation estimators use.
        """
        return self._replace(beta0=self.beta0 - self.beta0[..., -1:],
                             beta1=self.beta1 - self.beta1[..., -1:, :])


def check_params(spec: MoESpec, params: MoEParams) -> None:
    """Raise a clear error when ``params`` does not match ``spec`` (unbatched).

    Expected shapes: ``beta0`` (k,), ``beta1`` (k, d), ``a`` (k, d), ``b`` (k,), ``var`` (k,),
    ``tau`` (); the ``ValueError`` names the field, the expected and the received shape.

    Examples
    --------
    >>> p = MoEParams.create([0., 0.], [[1.], [0.]], [[0.], [0.]], [0., 0.], [1., 1.])
    >>> check_params(MoESpec(2, 1), p)
    >>> check_params(MoESpec(3, 1), p)
    Traceback (most recent call last):
    ValueError: params.beta0 must have shape (3,) for MoESpec(n_experts=3, dim=1, gate='softmax', top_k=None, select_by='score', activation=None, tau='fixed'); got (2,)
    """
    k, d = spec.n_experts, spec.dim
    expected = {"beta0": (k,), "beta1": (k, d), "a": (k, d), "b": (k,), "var": (k,), "tau": ()}
    for name, shape in expected.items():
        got = np.shape(getattr(params, name))
        if got != shape:
            raise ValueError(f"params.{name} must have shape {shape} for {spec}; got {got}")


def _as_float(name, value, ndim, k=None):
    arr = as_float(name, value)
    if ndim == 2 and arr.ndim == 1 and k is not None and arr.shape[0] == k:
        arr = arr[:, None]
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-d array; got shape {arr.shape}")
    return arr
