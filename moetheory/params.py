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
| `extra` | dict     | further gate arrays, name -> (k, ...) (empty for most gates) |

``extra`` holds the arrays of a gate whose parameters do not fit the slots above, e.g. the
covariances Σ_i (k, d, d) of the Gaussian gate (:mod:`moetheory.gates.gaussian`): each has the
expert axis first (after any batch axes, at the position of ``beta0``'s last axis). It is empty
for the softmax, top-K, temperature, activation and sigmoid gates, and an empty ``extra`` is
left out of :meth:`MoEParams.to_dict` (so serialised parameters of those gates are unchanged).
"""
from __future__ import annotations

from typing import Callable, NamedTuple

import numpy as np

from moetheory.spec import MoESpec
from moetheory.validation import as_float


class _Fields(NamedTuple):
    beta0: np.ndarray
    beta1: np.ndarray
    a: np.ndarray
    b: np.ndarray
    var: np.ndarray
    tau: np.ndarray
    extra: dict = {}  # never mutated in place: replaced as a whole (``_replace``)


class MoEParams(_Fields):
    """Parameters of a Gaussian MoE (a pytree of arrays only).

    Iterating over a MoEParams yields its six arrays (beta0, beta1, a, b, var, tau), then the
    ``extra`` dict only when it holds arrays: code written for the six fields (``MoEParams(*(f(v)
    for v in p))``, ``zip(p, q)``) keeps working for every gate without extra arrays. JAX sees all
    seven children (an empty dict has no leaves).

    Examples
    --------
    >>> p = MoEParams.create(beta0=[-8.0, 0.0], beta1=[[25.0], [0.0]], a=[[-20.0], [20.0]],
    ...                      b=[15.0, -5.0], var=[0.09, 0.16])
    >>> p.a.shape, len(list(p))
    ((2, 1), 6)
    """

    __slots__ = ()

    def __iter__(self):
        items = tuple.__iter__(self)
        return items if tuple.__getitem__(self, 6) else iter(tuple(items)[:6])

    def _asdict(self) -> dict:
        return {f: tuple.__getitem__(self, i) for i, f in enumerate(self._fields)}

    def _replace(self, **changes) -> "MoEParams":
        unknown = set(changes) - set(self._fields)
        if unknown:
            raise ValueError(f"Got unexpected field names: {sorted(unknown)!r}")
        return type(self)(**{**self._asdict(), **changes})

    @classmethod
    def create(cls, beta0, beta1, a, b, var, tau=1.0, extra=None) -> "MoEParams":
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
        extra : dict of str -> array (k, ...), optional
            Further gate arrays (e.g. ``{"cov": (k, d, d)}`` for the Gaussian gate).

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
        return cls(beta0, beta1, a, b, var, tau, _check_extra(extra, k))

    @property
    def n_experts(self) -> int:
        """Number of experts k (the last axis of ``beta0``)."""
        return self.beta0.shape[-1]

    @property
    def dim(self) -> int:
        """Covariate dimension d (the last axis of ``beta1``)."""
        return self.beta1.shape[-1]

    def map(self, fn: Callable) -> "MoEParams":
        """Apply ``fn`` to every array (the six fields and each ``extra`` array).

        Examples
        --------
        >>> p = MoEParams.create([0.], [[0.]], [[1.]], [0.], [2.])
        >>> p.map(lambda v: 2 * v).var.tolist()
        [4.0]
        """
        return MoEParams(*(fn(getattr(self, f)) for f in ARRAY_FIELDS),
                         {name: fn(v) for name, v in self.extra.items()})

    def arrays(self) -> dict:
        """Every array by name: the six fields, then the ``extra`` arrays (names not shared).

        Examples
        --------
        >>> list(MoEParams.create([0.], [[0.]], [[1.]], [0.], [2.]).arrays())
        ['beta0', 'beta1', 'a', 'b', 'var', 'tau']
        """
        out = {f: getattr(self, f) for f in ARRAY_FIELDS}
        out.update(self.extra)
        return out

    @classmethod
    def from_arrays(cls, arrays: dict) -> "MoEParams":
        """Inverse of :meth:`arrays` (no validation: arrays may be batched or traced)."""
        extra = {k: v for k, v in arrays.items() if k not in ARRAY_FIELDS}
        return cls(*(arrays[f] for f in ARRAY_FIELDS), extra)

    def all_finite(self) -> bool:
        """True when every entry of every array is finite."""
        return all(bool(np.all(np.isfinite(np.asarray(v)))) for v in self.arrays().values())

    def to_numpy(self) -> "MoEParams":
        """Copy as NumPy float64 arrays (e.g. after a JAX computation)."""
        return self.map(lambda v: np.asarray(v, dtype=np.float64))

    def to_dict(self) -> dict:
        """JSON-ready nested lists (``extra`` only when it holds arrays)."""
        out = {name: np.asarray(getattr(self, name)).tolist() for name in ARRAY_FIELDS}
        if self.extra:
            out["extra"] = {name: np.asarray(v).tolist() for name, v in self.extra.items()}
        return out

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
        axis = np.ndim(self.beta0) - 1  # the expert axis of every array (after batch axes)
        return MoEParams(self.beta0[..., order], self.beta1[..., order, :], self.a[..., order, :],
                         self.b[..., order], self.var[..., order], self.tau,
                         {k: np.take(v, order, axis=axis) for k, v in self.extra.items()})

    def pinned(self) -> "MoEParams":
        """Shift the gate so that the last expert's (β_0, β_1) is zero.

        For softmax and top-K (score rule is also invariant to a common β_1 shift) this leaves
        the model unchanged: it is the reference-category normalisation estimators use
        (:func:`moetheory.gates.base.reference_pin`).
        """
        from moetheory.gates.base import reference_pin

        return reference_pin(self, True, True)


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
    extra = spec.extra_shapes  # the gate's arrays, and df (k,) for t experts
    if set(params.extra) != set(extra):
        raise ValueError(f"params.extra must hold {sorted(extra)} for {spec}; got {sorted(params.extra)}")
    for name, shape in extra.items():
        got = np.shape(params.extra[name])
        if got != tuple(shape):
            raise ValueError(f"params.extra[{name!r}] must have shape {tuple(shape)} for {spec}; got {got}")
    if spec.t_experts and not np.all(np.asarray(params.extra["df"]) > 0):
        raise ValueError(f"params.extra['df'] (the t experts' degrees of freedom) must be > 0; got "
                         f"{np.asarray(params.extra['df'])}")


#: the array fields of MoEParams (every one but ``extra``)
ARRAY_FIELDS = ("beta0", "beta1", "a", "b", "var", "tau")


def _check_extra(extra, k) -> dict:
    """Validated float64 copies of the extra gate arrays (expert axis first, finite)."""
    if extra is None:
        return {}
    if not isinstance(extra, dict):
        raise TypeError(f"extra must be a dict of gate arrays; got {type(extra).__name__}")
    out = {}
    for name, value in extra.items():
        if not isinstance(name, str) or not name.isidentifier() or name in ARRAY_FIELDS + ("extra",):
            raise ValueError(f"extra names must be identifiers other than {ARRAY_FIELDS}; got {name!r}")
        arr = as_float(f"extra[{name!r}]", value)
        if arr.ndim < 1 or arr.shape[0] != k:
            raise ValueError(f"extra[{name!r}] must have the expert axis first, shape ({k}, ...); "
                             f"got {arr.shape}")
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"extra[{name!r}] must be finite; got {arr}")
        out[name] = arr
    return out


def _as_float(name, value, ndim, k=None):
    arr = as_float(name, value)
    if ndim == 2 and arr.ndim == 1 and k is not None and arr.shape[0] == k:
        arr = arr[:, None]
    if arr.ndim != ndim:
        raise ValueError(f"{name} must be a {ndim}-d array; got shape {arr.shape}")
    return arr
