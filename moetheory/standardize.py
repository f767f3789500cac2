"""Covariate standardisation for fitting: EM runs on x̃ = (x − m)/s, estimates come back in x.

EM's expert step (weighted least squares with a tiny ridge) and the gate's Newton step are
well conditioned only when the covariates have moderate scale and offset: a year-like column
(2000 + 10u) or one in micro-units (1e6·z) otherwise costs accuracy or convergence. The model
is closed under the affine map for the gates whose logit is linear in x (softmax, temperature,
top-K), so :func:`moetheory.fit` centres and scales there. Top-K ranking by the score β_1ᵀx
stays the same model on centred x through a fixed selection offset of its gate in x̃
coordinates (:func:`standard_spec`; the score is β_1'ᵀ(x̃ + m/s)). The activation gate
σ(β_1ᵀx) + β_0 is closed under scaling only (a shift of x would add an expert-dependent
constant inside σ): it is scaled, not centred. The maximum of the likelihood is the same; only
the path to it is better conditioned. Each gate states its rule
(:meth:`moetheory.gates.Gate.affine_rule`: "affine", "scale" or "none" — a gate that declares no
rule is fitted in the data's own x coordinates), maps its parameters
(:meth:`~moetheory.gates.Gate.to_standard`) and, where the model needs it, itself
(:meth:`~moetheory.gates.Gate.standard_gate`).
"""
from __future__ import annotations

from typing import NamedTuple

import numpy as np

from moetheory.params import MoEParams
from moetheory.spec import MoESpec


class Standardizer(NamedTuple):
    """x̃ = (x − center) / scale, column by column (``center``, ``scale``: shape (d,)).

    Examples
    --------
    >>> st = Standardizer(np.array([10.0]), np.array([2.0]))
    >>> st.apply(np.array([[8.0], [12.0]])).ravel().tolist()
    [-1.0, 1.0]
    """

    center: np.ndarray
    scale: np.ndarray

    def apply(self, x: np.ndarray) -> np.ndarray:
        """x (n, d) → x̃ (n, d)."""
        return (x - self.center) / self.scale


def centres_allowed(spec: MoESpec) -> bool:
    """Whether the model is closed under shifting x (the gate's affine rule is "affine").

    Examples
    --------
    >>> centres_allowed(MoESpec(3, 1)), centres_allowed(MoESpec(3, 1, gate="activation", activation="tanh"))
    (True, False)
    """
    return spec.gate_family.affine_rule(spec) == "affine"


def standardizer(spec: MoESpec, x: np.ndarray) -> Standardizer:
    """Column means (if :func:`centres_allowed`) and standard deviations of x (n, d); a
    constant column is left as it is (center 0, scale 1); a gate closed under no affine map of x
    (affine rule "none") gets the identity.

    Examples
    --------
    >>> st = standardizer(MoESpec(2, 1), np.array([[2000.0], [2010.0], [2020.0]]))
    >>> st.center.tolist(), round(float(st.scale[0]), 4)
    ([2010.0], 8.165)
    """
    if spec.gate_family.affine_rule(spec) == "none":
        return identity_standardizer(x.shape[1])
    sd = np.std(x, axis=0)
    constant = ~(sd > 0)
    scale = np.where(constant, 1.0, sd)
    center = np.mean(x, axis=0) if centres_allowed(spec) else np.zeros(x.shape[1])
    return Standardizer(np.where(constant, 0.0, center), scale)


def identity_standardizer(d: int) -> Standardizer:
    """x̃ = x (center 0, scale 1 for each of the d columns).

    Examples
    --------
    >>> identity_standardizer(2).scale.tolist()
    [1.0, 1.0]
    """
    return Standardizer(np.zeros(d), np.ones(d))


def standard_spec(spec: MoESpec, st: Standardizer) -> MoESpec:
    """The spec of the same model in x̃ = (x − st.center)/st.scale coordinates, to be used with
    the parameters of :func:`to_fitted_coordinates` (the gate's
    :meth:`~moetheory.gates.Gate.standard_gate`): ``spec`` itself except for top-K ranking by
    score on a shifted x, whose gate then carries the selection offset (m + c)/s.

    Examples
    --------
    >>> spec = MoESpec(3, 1, gate="topk", top_k=2)
    >>> standard_spec(spec, Standardizer(np.array([1000.0]), np.array([0.5]))).gate
    TopKGate(top_k=2, select_by='score', select_offset=(2000.0,))
    >>> standard_spec(spec, Standardizer(np.zeros(1), np.array([0.5]))) == spec
    True
    """
    gate = spec.gate_family
    new = gate.standard_gate(spec, st.center, st.scale)
    if new is gate:
        return spec
    # the gate object carries its options now; every other field stays
    return spec.with_(gate=new, top_k=None, select_by="score", activation=None)


def to_fitted_coordinates(params: MoEParams, st: Standardizer, spec: MoESpec | None = None) -> MoEParams:
    """Parameters in x coordinates → the same model in x̃ coordinates.

    a x + b = (a s) x̃ + (b + a·m) for the experts; the gate's arrays by the gate's rule
    (:meth:`moetheory.gates.Gate.to_standard`; without ``spec``: a linear logit, (β_1, β_0) like
    (a, b)).

    Parameters
    ----------
    params : MoEParams, ``beta1``, ``a`` (k, d); ``beta0``, ``b`` (k,)
    st : Standardizer, ``center`` and ``scale`` (d,)
    spec : MoESpec, optional, whose gate maps the gate arrays

    Returns
    -------
    MoEParams with the same shapes (``var`` and ``tau`` unchanged)

    Examples
    --------
    >>> st = Standardizer(np.array([1.0]), np.array([2.0]))
    >>> p = MoEParams.create([0.0], [[0.0]], [[3.0]], [1.0], [1.0])
    >>> q = to_fitted_coordinates(p, st)          # 3x + 1 = 6 x̃ + 4 with x̃ = (x − 1)/2
    >>> q.a.ravel().tolist(), q.b.tolist()
    ([6.0], [4.0])
    """
    from moetheory.gates.base import linear_logit_to_standard

    a = np.asarray(params.a) * st.scale
    b = np.asarray(params.b) + np.asarray(params.a) @ st.center
    params = params._replace(a=a, b=b)
    if spec is None:
        return linear_logit_to_standard(params, st.center, st.scale)
    return spec.gate_family.to_standard(spec, params, st.center, st.scale)


def from_fitted_coordinates(params: MoEParams, st: Standardizer, spec: MoESpec | None = None) -> MoEParams:
    """Inverse of :func:`to_fitted_coordinates`: estimates in x̃ coordinates → x coordinates.

    Examples
    --------
    >>> st = Standardizer(np.array([2010.0]), np.array([10.0]))
    >>> p = MoEParams.create([0.5, 0.0], [[2.0], [0.0]], [[1.0], [-1.0]], [3.0, 0.0], [1.0, 1.0])
    >>> q = from_fitted_coordinates(p, st)
    >>> round(float(q.a[0, 0]), 6), round(float(q.b[0]), 6)   # (x − 2010)/10 + 3
    (0.1, -198.0)
    >>> back = to_fitted_coordinates(q, st)
    >>> bool(np.allclose(back.b, p.b) and np.allclose(back.beta0, p.beta0))
    True
    """
    from moetheory.gates.base import linear_logit_from_standard

    a = np.asarray(params.a) / st.scale
    b = np.asarray(params.b) - a @ st.center
    params = params._replace(a=a, b=b)
    if spec is None:
        return linear_logit_from_standard(params, st.center, st.scale)
    return spec.gate_family.from_standard(spec, params, st.center, st.scale)


class DataScale(NamedTuple):
    """Standardised coordinates of a sample: x̃ = (x − x.center)/x.scale, ỹ = (y − y_center)/y_scale.

    Examples
    --------
    >>> ds = DataScale(standardizer(MoESpec(2, 1), np.array([[0.0], [2.0]])), 20.0, 10.0)
    >>> ds.y_center, ds.y_scale
    (20.0, 10.0)
    """

    x: Standardizer
    y_center: float
    y_scale: float


def data_scale(spec: MoESpec, x: np.ndarray, y: np.ndarray) -> DataScale:
    """:func:`standardizer` for x (n, d) and the mean and standard deviation of y (n,) (scale 1
    for a constant y).

    Examples
    --------
    >>> data_scale(MoESpec(2, 1), np.zeros((3, 1)), np.ones(3)).y_scale
    1.0
    """
    sd = float(np.std(y))
    return DataScale(standardizer(spec, x), float(np.mean(y)), sd if sd > 0 else 1.0)


def to_standard(params: MoEParams, ds: DataScale, spec: MoESpec | None = None) -> MoEParams:
    """Parameters in (x, y) units → the same model in the standardised coordinates (x̃, ỹ)
    (``spec``: whose gate maps the gate arrays, see :func:`to_fitted_coordinates`).

    Examples
    --------
    >>> ds = DataScale(Standardizer(np.zeros(1), np.ones(1)), 1.0, 2.0)
    >>> p = MoEParams.create([0.0], [[0.0]], [[4.0]], [3.0], [8.0])
    >>> q = to_standard(p, ds)                 # ỹ = (y − 1)/2: slope 2, intercept 1, variance 2
    >>> q.a.ravel().tolist(), q.b.tolist(), q.var.tolist()
    ([2.0], [1.0], [2.0])
    """
    p = to_fitted_coordinates(params, ds.x, spec)
    return p._replace(a=np.asarray(p.a) / ds.y_scale, b=(np.asarray(p.b) - ds.y_center) / ds.y_scale,
                      var=np.asarray(p.var) / ds.y_scale ** 2)


def from_standard(params: MoEParams, ds: DataScale, spec: MoESpec | None = None) -> MoEParams:
    """Inverse of :func:`to_standard`.

    Examples
    --------
    >>> ds = DataScale(Standardizer(np.array([5.0]), np.array([2.0])), 1.0, 2.0)
    >>> p = MoEParams.create([0.3, 0.0], [[1.0], [0.0]], [[4.0], [1.0]], [3.0, 0.0], [8.0, 1.0])
    >>> back = from_standard(to_standard(p, ds), ds)
    >>> bool(all(np.allclose(back.arrays()[k], v) for k, v in p.arrays().items()))
    True
    """
    p = params._replace(a=np.asarray(params.a) * ds.y_scale,
                        b=np.asarray(params.b) * ds.y_scale + ds.y_center,
                        var=np.asarray(params.var) * ds.y_scale ** 2)
    return from_fitted_coordinates(p, ds.x, spec)


def standard_jacobian(spec: MoESpec, params_std: MoEParams, ds: DataScale) -> np.ndarray:
    """J (p, p) = ∂θ/∂θ̃ of the free parameters (:func:`moetheory.mle.free_layout`) in (x, y)
    units with respect to those in standardised coordinates. The map is affine, so its columns
    are the images of the unit vectors minus the image of 0, and a covariance maps as J C Jᵀ.

    Parameters
    ----------
    spec : MoESpec
    params_std : MoEParams in standardised coordinates (supplies the pinned entries)
    ds : DataScale

    Examples
    --------
    >>> ds = DataScale(Standardizer(np.zeros(1), np.array([2.0])), 0.0, 3.0)
    >>> p = MoEParams.create([0.0], [[0.0]], [[1.0]], [0.0], [1.0])
    >>> np.diag(standard_jacobian(MoESpec(1, 1), p, ds)).tolist()   # a: 3/2, b: 3, var: 9
    [1.5, 3.0, 9.0]
    """
    from moetheory.mle import pack_numpy, unpack_numpy

    def image(theta):
        return pack_numpy(spec, from_standard(unpack_numpy(spec, theta, params_std), ds, spec))

    p_free = len(pack_numpy(spec, params_std))
    origin = image(np.zeros(p_free))
    return np.column_stack([image(e) - origin for e in np.eye(p_free)])
