"""Direct-likelihood tools: free-parameter layout, information matrices, standard errors.

The free parameters of a fitted model exclude what the gate's normalisation pins (the last
expert's gate for softmax/top-K/temperature, the last expert's bias for the activation gate,
nothing for the sigmoid gate): the gate's part of the layout is the gate's own
(:meth:`moetheory.gates.Gate.free_layout`). Inference is on the natural scale (variances, not
log-variances), like statsmodels reports coefficients.
"""
from __future__ import annotations

import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from moetheory.model import log_density
from moetheory.params import MoEParams
from moetheory.spec import MoESpec


class SingularInformationWarning(UserWarning):
    """The information matrix is singular or ill-conditioned (e.g. an over-fitted model).

    Examples
    --------
    >>> import warnings
    >>> import numpy as np
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     _ = covariance(np.zeros((2, 2)), np.zeros((3, 2)))  # a singular (p, p) information
    >>> caught[0].category is SingularInformationWarning
    True
    """


COV_TYPES = ("oim", "opg", "sandwich")


class IdentifiabilityWarning(UserWarning):
    """The fitted model has parameters the data cannot identify (top-K with K = 1, τ estimated
    in the temperature gate, ...); see docs/gates.md.

    Examples
    --------
    >>> issubclass(IdentifiabilityWarning, UserWarning)
    True
    >>> from moetheory.spec import MoESpec
    >>> [key for key, _ in identifiability_notes(MoESpec(3, 1, gate="topk", top_k=1))]
    ['topk-K1-score']
    """


_WARNED: set = set()


def warn_once(key: str, message: str, category=IdentifiabilityWarning, stacklevel: int = 3) -> None:
    """Warn ``message`` the first time ``key`` is seen in this process (then stay silent).

    Parameters
    ----------
    key : str, identifies the warning; message : str
    category : Warning subclass; stacklevel : int, as for :func:`warnings.warn`

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings(record=True) as caught:
    ...     warnings.simplefilter("always")
    ...     warn_once("doctest-example", "shown once")
    ...     warn_once("doctest-example", "shown once")
    >>> len(caught)
    1
    """
    if key in _WARNED:
        return
    _WARNED.add(key)
    warnings.warn(message, category, stacklevel=stacklevel)


def identifiability_notes(spec: MoESpec) -> list[tuple[str, str]]:
    """(key, message) pairs describing what ``spec`` cannot identify (the gate's
    :meth:`~moetheory.gates.Gate.notes`, DESIGN.md §2.2).

    Parameters
    ----------
    spec : MoESpec

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> identifiability_notes(MoESpec(2, 1))
    []
    >>> identifiability_notes(MoESpec(3, 1, gate="topk", top_k=1))[0][0]
    'topk-K1-score'
    """
    return list(spec.gate_family.notes(spec))


def unidentified_labels(spec: MoESpec) -> list[str]:
    """Labels of free parameters without a regular standard error (reported as NaN): those of
    the gate's :meth:`~moetheory.gates.Gate.unidentified_fields`.

    Top-K with K = 1: every gate parameter (β_0 is not identifiable; the log-likelihood is
    piecewise constant in β_1, so it has no information about it).

    Parameters
    ----------
    spec : MoESpec

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> unidentified_labels(MoESpec(2, 1, gate="topk", top_k=1))
    ['gate1:x1', 'gate1:const']
    >>> unidentified_labels(MoESpec(2, 1))
    []
    """
    bad = spec.gate_family.unidentified_fields(spec)
    return [lab for f, _, lab in free_layout(spec) if f in bad]


def free_layout(spec: MoESpec, names=None) -> list[tuple[str, tuple, str]]:
    """The free parameters as (field, index, label) triples, in a fixed order.

    Order: the gate's head entries (softmax-type gates: each non-reference expert's slopes, then
    its bias), then each expert's slopes, intercept and variance (and its degrees of freedom ν for
    t experts with ν estimated), then the gate's tail entries
    (τ when it is free). Labels are 1-based like flexmix/R. ``field`` is a MoEParams field or a
    key of ``params.extra``.

    Normalisations (the gate's, :meth:`moetheory.gates.Gate.free_layout`): softmax, top-K and
    temperature pin the last expert's (β_0, β_1) at 0. The temperature gate depends on (β, τ) only
    through β/τ, so τ is never free here: when it is "estimated" its value is fixed by the
    normalisation ‖(β_0, β_1, τ)‖₂ = 1 (free gate entries and τ), and the gate entries are a chart
    of the model with τ held at that value. The activation gate pins only the last expert's β_0 (a
    common β_1 shift is no invariance once σ is non-linear) and frees τ when it is estimated;
    σ = identity is the temperature gate, so its last β_1 is pinned too. The sigmoid gate pins
    nothing; the Gaussian gate frees means, covariances (lower triangle) and log-proportions.

    Parameters
    ----------
    spec : MoESpec
    names : sequence of d str, optional
        The covariates' names in the labels (default ``x1 .. xd``).

    Returns
    -------
    list of (field, index, label), one per free parameter (p of them)

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> free_layout(MoESpec(2, 1))[:3]
    [('beta1', (0, 0), 'gate1:x1'), ('beta0', (0,), 'gate1:const'), ('a', (0, 0), 'expert1:x1')]
    >>> len(free_layout(MoESpec(2, 1)))  # (k-1)(d+1) gate + k(d+2) expert parameters
    8
    """
    k, d = spec.n_experts, spec.dim
    xs = [f"x{j + 1}" for j in range(d)] if names is None else list(names)
    if len(xs) != d:
        raise ValueError(f"names must hold one name per covariate (d={d}); got {list(names)}")
    head, tail = spec.gate_family.free_layout(spec, xs)
    layout = list(head)
    cols = range(d) if spec.expert_columns is None else spec.expert_columns
    for i in range(k):
        layout += [("a", (i, j), f"expert{i + 1}:{xs[j]}") for j in cols]
        layout.append(("b", (i,), f"expert{i + 1}:const"))
        if not spec.equal_var:
            layout.append(("var", (i,), f"expert{i + 1}:var"))
        if spec.estimates_df:  # t experts' degrees of freedom ν (params.extra["df"])
            layout.append(("df", (i,), f"expert{i + 1}:df"))
    if spec.equal_var:  # one variance, stored in expert 1 and copied by spec.constrain
        layout.append(("var", (0,), "experts:var"))
    return layout + list(tail)


def positive_mask(spec: MoESpec) -> np.ndarray:
    """(p,) bool over :func:`free_layout`: the coordinates that are positive — the variances,
    the t experts' ν and the gate's (τ, a covariance's diagonal: ``Gate.log_scale``). The polish
    works on their logarithm and their intervals are Wald intervals of the logarithm.

    Examples
    --------
    >>> positive_mask(MoESpec(1, 1)).tolist()                     # a, b, var
    [False, False, True]
    """
    gate = spec.gate_family
    return np.array([f in ("var", "df") or gate.log_scale(f, idx)
                     for f, idx, _ in free_layout(spec)], dtype=bool)


def param_names(spec: MoESpec, names=None) -> list[str]:
    """Labels of the free parameters (see :func:`free_layout`).

    Parameters
    ----------
    spec : MoESpec
    names : sequence of d str, optional
        The covariates' names (default ``x1 .. xd``).

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> param_names(MoESpec(2, 1))  # doctest: +NORMALIZE_WHITESPACE
    ['gate1:x1', 'gate1:const', 'expert1:x1', 'expert1:const', 'expert1:var',
     'expert2:x1', 'expert2:const', 'expert2:var']
    """
    return [lab for _, _, lab in free_layout(spec, names)]


def df_model(spec: MoESpec) -> int:
    """Number of free parameters that enter the model (AIC, BIC): those of :func:`free_layout`
    less the top-1 gate biases when experts are selected by score (β_1ᵀx), which the
    likelihood never sees.

    Examples
    --------
    >>> from moetheory.spec import MoESpec
    >>> df_model(MoESpec(3, 1)), df_model(MoESpec(3, 1, gate="topk", top_k=1))
    (13, 11)
    >>> df_model(MoESpec(3, 1, gate="topk", top_k=1, select_by="logit"))
    13
    """
    unused = spec.gate_family.unused_fields(spec)
    return sum(1 for f, _, _ in free_layout(spec) if f not in unused)


def pack(spec: MoESpec, params: MoEParams) -> jnp.ndarray:
    """Free parameters as a flat vector (p,).

    Parameters
    ----------
    spec : MoESpec
    params : MoEParams (``beta1``, ``a`` (k, d); ``beta0``, ``b``, ``var`` (k,); ``tau`` ())

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([0.5, 0.], [[1.], [0.]], [[1.], [-1.]], [0.2, 0.], [1., 2.])
    >>> pack(spec, p).tolist()
    [1.0, 0.5, 1.0, 0.2, 1.0, -1.0, 0.0, 2.0]
    """
    from moetheory.gates.base import get_field

    return jnp.stack([jnp.asarray(get_field(params, f))[idx] for f, idx, _ in free_layout(spec)])


def unpack(spec: MoESpec, theta, template: MoEParams) -> MoEParams:
    """Inverse of :func:`pack`: ``template`` supplies the pinned values.

    Parameters
    ----------
    spec : MoESpec
    theta : array (p,), the free parameters in :func:`free_layout` order
    template : MoEParams, supplies the pinned entries (``beta1`` (k, d), ``beta0`` (k,), ...)

    Returns
    -------
    MoEParams of JAX arrays

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([0.5, 0.], [[1.], [0.]], [[1.], [-1.]], [0.2, 0.], [1., 2.])
    >>> q = unpack(spec, pack(spec, p) + 1.0, p)
    >>> q.a.tolist(), q.beta0.tolist()  # the pinned last gate stays at 0
    ([[2.0], [0.0]], [1.5, 0.0])
    """
    fields = {f: jnp.asarray(v) for f, v in template.arrays().items()}
    for t, (f, idx, _) in enumerate(free_layout(spec)):
        fields[f] = fields[f].at[idx].set(theta[t])
    return spec.constrain(spec.gate_family.complete(spec, MoEParams.from_arrays(fields)))


def pack_numpy(spec: MoESpec, params: MoEParams) -> np.ndarray:
    """:func:`pack` in NumPy (the same numbers; no JAX operation to compile per shape).

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> p = MoEParams.create([0.5, 0.], [[1.], [0.]], [[1.], [-1.]], [0.2, 0.], [1., 2.])
    >>> pack_numpy(MoESpec(2, 1), p).tolist()
    [1.0, 0.5, 1.0, 0.2, 1.0, -1.0, 0.0, 2.0]
    """
    from moetheory.gates.base import get_field

    return np.array([np.asarray(get_field(params, f), dtype=np.float64)[idx]
                     for f, idx, _ in free_layout(spec)], dtype=np.float64)


def unpack_numpy(spec: MoESpec, theta, template: MoEParams) -> MoEParams:
    """:func:`unpack` in NumPy: MoEParams of new float64 arrays, ``template`` supplying the
    pinned values.

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([0.5, 0.], [[1.], [0.]], [[1.], [-1.]], [0.2, 0.], [1., 2.])
    >>> unpack_numpy(spec, pack_numpy(spec, p) + 1.0, p).beta0.tolist()
    [1.5, 0.0]
    """
    fields = {f: np.array(v, dtype=np.float64) for f, v in template.arrays().items()}
    for t, (f, idx, _) in enumerate(free_layout(spec)):
        fields[f][idx] = theta[t]
    return spec.constrain(spec.gate_family.complete(spec, MoEParams.from_arrays(fields)))


@partial(jax.jit, static_argnums=0)
def _derivatives(spec, params, x, y, w):
    theta = pack(spec, params)
    per_obs = lambda th: log_density(spec, unpack(spec, th, params), x, y)  # noqa: E731
    total = lambda th: (w * per_obs(th)).sum()  # noqa: E731
    return jax.hessian(total)(theta), jax.jacfwd(per_obs)(theta)


def information(spec: MoESpec, params: MoEParams, x, y, weights=None):
    """Observed information −∇²ℓ (p, p) and per-observation scores (n, p).

    Parameters
    ----------
    spec : MoESpec
    params : MoEParams, where to evaluate (``beta1``, ``a`` (k, d); ``beta0``, ``b``, ``var`` (k,))
    x : array (n, d); y : array (n,)
    weights : array (n,), optional case weights: ℓ = Σ_n w_n log p(y_n | x_n); the scores
        stay per observation, unweighted

    Returns
    -------
    (information (p, p), scores (n, p)) as NumPy arrays, p = ``len(free_layout(spec))``

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([0.5, 0.], [[1.], [0.]], [[1.], [-1.]], [0.2, 0.], [1., 2.])
    >>> x = np.linspace(-1, 1, 20)[:, None]; y = np.sin(3 * x[:, 0])
    >>> info, scores = information(spec, p, x, y)
    >>> info.shape, scores.shape
    ((8, 8), (20, 8))
    """
    from moetheory.em.certify import derivative_backend

    if derivative_backend(spec, np.shape(y)[0]) != "jax":  # closed forms: nothing to compile
        from moetheory.kernels.numpy_derivs import softmax_information

        return softmax_information(params, x, y, weights)
    w = jnp.ones(np.shape(y)[0]) if weights is None else jnp.asarray(weights, dtype=jnp.float64)
    hess, scores = _derivatives(spec, jax.tree.map(jnp.asarray, params), jnp.asarray(x),
                                jnp.asarray(y), w)
    return -np.asarray(hess), np.asarray(scores)


#: After unit-diagonal (Jacobi) scaling, an eigenvalue below this times the largest counts as
#: zero: a rank test relative to each parameter's own scale, so that units and a very precise
#: parameter (an expert with a small variance has information ∝ n_i/σ⁴) do not make a regular
#: information look singular. Every verified regular maximum of the seven real data sets of
#: docs/realdata.md has a scaled smallest/largest eigenvalue ≥ 4e-5 (its raw ratio reaches
#: 3e-14); an exactly singular information (duplicated experts) has ~1e-16.
SINGULAR_RCOND = 1e-10
#: A parameter whose unit vector has more than this norm in the information's singular (null or
#: negative) eigenspace has no variance: the pseudo-inverse would report one for the part of it
#: that the data determine, down to 0 for a parameter the data do not see at all.
NULL_LOADING = 1e-6


def rank_test(mat):
    """Rank of a symmetric information matrix relative to scale (:data:`SINGULAR_RCOND`).

    Returns (scale (p,), eigenvalues (p,) and eigenvectors (p, p) of the unit-diagonal matrix
    D M D with D = diag(M)^(-1/2) (1 where M_ii ≤ 0), the regular eigenvalues (p,) bool, and the
    reason in words: "regular", "singular: ..." or "not positive definite: ...").

    Examples
    --------
    >>> import numpy as np
    >>> rank_test(np.diag([1e12, 1e-6]))[4]          # ill-scaled, not singular
    'regular'
    >>> rank_test(np.array([[1.0, 1.0], [1.0, 1.0]]))[4]
    'singular (rank 1 of 2; eigenvalues after unit-diagonal scaling from 0 to 2)'
    """
    mat = 0.5 * (mat + mat.T)
    diag = np.diag(mat)
    scale = np.where(diag > 0, 1.0 / np.sqrt(np.where(diag > 0, diag, 1.0)), 1.0)
    eig, vec = np.linalg.eigh(mat * np.outer(scale, scale))
    top = max(float(np.max(np.abs(eig))), 1e-300)
    good = eig > SINGULAR_RCOND * top
    span = f"eigenvalues after unit-diagonal scaling from {eig[0]:.3g} to {eig[-1]:.3g}"
    if good.all():
        reason = "regular"
    elif eig[0] < -SINGULAR_RCOND * top:
        reason = (f"not positive definite ({int(np.sum(eig < -SINGULAR_RCOND * top))} negative "
                  f"eigenvalue(s); {span}): not a maximum")
    else:
        reason = f"singular (rank {int(good.sum())} of {good.size}; {span})"
    return scale, eig, vec, good, reason


def _inverse(mat, what):
    """Inverse of a symmetric information matrix.

    If it is singular or not positive definite (:func:`rank_test`): a pseudo-inverse (with a
    warning that gives the reason) over its positive eigenvalues after unit-diagonal scaling.
    Returns (inverse, singular flag, lost (p,) bool: the parameters loading on the singular
    eigenspace, which have no variance, reason).
    """
    mat = 0.5 * (mat + mat.T)
    p = mat.shape[0]
    if not np.all(np.isfinite(mat)):
        warnings.warn(f"the {what} matrix is not finite; standard errors are NaN",
                      SingularInformationWarning, stacklevel=3)
        return np.zeros(mat.shape), True, np.ones(p, dtype=bool), "not finite"
    scale, eig, vec, good, reason = rank_test(mat)
    outer = np.outer(scale, scale)
    if good.all():
        return (vec / eig) @ vec.T * outer, False, np.zeros(p, dtype=bool), reason
    warnings.warn(
        f"the {what} matrix is {reason}, as for an over-fitted or non-identifiable model; "
        "standard errors use a pseudo-inverse and are not reliable (NaN for parameters the data "
        "do not determine). Try fewer experts or a fixed temperature.",
        SingularInformationWarning, stacklevel=3)
    inv = (vec[:, good] / eig[good]) @ vec[:, good].T * outer
    loading = np.sqrt(np.sum(vec[:, ~good] ** 2, axis=1))  # (p,)
    return inv, True, loading > NULL_LOADING, reason


def covariance(information_matrix, scores, cov_type: str = "oim", return_reason: bool = False):
    """Covariance of the MLE.

    ``oim``: (−H)⁻¹; ``opg``: (SᵀS)⁻¹; ``sandwich``: (−H)⁻¹ SᵀS (−H)⁻¹ (robust to a
    misspecified density). Returns (cov (p, p), singular flag), and the reason of
    :func:`rank_test` with ``return_reason``. Whether the matrix is singular is a rank test
    relative to each parameter's scale (:func:`rank_test`). A singular matrix is inverted by a
    pseudo-inverse (with a :class:`SingularInformationWarning`); the rows and columns of
    parameters that load on its null (or negative) eigenspace are NaN: the data do not
    determine them, and the pseudo-inverse would report a variance of the determined part only
    (0 for a parameter the likelihood does not see).

    Parameters
    ----------
    information_matrix : array (p, p), observed information −H
    scores : array (n, p), per-observation scores S
    cov_type : {"oim", "opg", "sandwich"}

    Examples
    --------
    >>> import numpy as np
    >>> cov, singular = covariance(4.0 * np.eye(2), np.ones((3, 2)), "oim")
    >>> cov.tolist(), singular
    ([[0.25, 0.0], [0.0, 0.25]], False)
    """
    if cov_type not in COV_TYPES:
        raise ValueError(f"cov_type must be one of {COV_TYPES}; got {cov_type!r}")
    opg = scores.T @ scores
    if cov_type == "opg":
        cov, singular, lost, reason = _inverse(opg, "outer-product-of-gradients")
    else:
        cov, singular, lost, reason = _inverse(information_matrix, "observed information")
        if cov_type == "sandwich":
            cov = cov @ opg @ cov
    cov[lost, :] = np.nan
    cov[:, lost] = np.nan
    return (cov, singular, reason) if return_reason else (cov, singular)
