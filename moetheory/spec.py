"""MoESpec: the static description of a Gaussian mixture of experts.

A spec is frozen and hashable so that it can be a static argument under ``jax.jit``: it holds
the number of experts, the covariate dimension, the gate family and the gate's options. The
arrays live in :class:`moetheory.params.MoEParams`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields, replace

import jax.numpy as jnp
import numpy as np

SELECT_BY = ("score", "logit")
TAU_MODES = ("fixed", "estimated")
#: How a Voronoi loss removes the gate's unidentifiable shift (moetheory.losses.voronoi_loss).
TRANSLATIONS = ("infimum", "bias", "pinned", "none")
#: Expert families: Gaussian noise, or Student t (location aᵀx + b, scale² ``var``, ν ``df``).
EXPERT_FAMILIES = ("gaussian", "t")
#: Where an estimated ν of t experts starts, and the interval the EM's ν step searches
#: (:func:`moetheory.em.mstep.t_df_step`).
T_DF_START = 10.0
T_DF_BOUNDS = (0.1, 1000.0)


def gate_translation(gate) -> str:
    """The ``translation`` that removes exactly the gate's unidentifiable shift (the gate's own,
    :meth:`moetheory.gates.Gate.translation`): ``"infimum"`` for the softmax, top-K and
    temperature gates (a common shift of every expert's (β_0, β_1)), ``"bias"`` for the activation
    gate (σ(β_1ᵀx) is not linear in β_1), ``"none"`` for gates without a shift invariance.

    Examples
    --------
    >>> gate_translation("softmax"), gate_translation("activation")
    ('infimum', 'bias')
    """
    from moetheory.gates import gate_translation as _translation

    return _translation(gate)


@dataclass(frozen=True)
class MoESpec:
    """Static structure of a Gaussian MoE with linear experts (DESIGN.md §2).

    Parameters
    ----------
    n_experts : int
        Number of experts k >= 1.
    dim : int
        Covariate dimension d >= 1.
    gate : str or moetheory.gates.Gate
        Gate family (DESIGN.md §2.2): a registered name (``"softmax"``, ``"topk"``,
        ``"temperature"``, ``"activation"``, ``"sigmoid"``, ``"gaussian"``, or one added by
        :func:`moetheory.gates.register_gate`) or a gate object. A built-in gate object is stored
        as its name and options (so specs compare and serialise alike); any other object is kept.
    top_k : int, optional
        Number K of active experts for ``gate="topk"`` (1 <= K <= k). Required for topk.
    select_by : {"score", "logit"}
        Top-K selection rule: ``"score"`` ranks by beta1ᵀx (default, the paper reading, OPEN),
        ``"logit"`` by the full logit beta1ᵀx + beta0 (as neural routers do).
    activation : str, optional
        Activation σ of the activation gate (a name in ``moetheory.gates.ACTIVATIONS``).
    tau : {"fixed", "estimated"}
        Whether an estimator treats the temperature τ as known or estimates it. Applies to the
        temperature and activation gates; the softmax and top-K gates have τ = 1.
    gate_columns, expert_columns : tuple of int, optional
        The columns of x (0-based, each < d) that enter the gate's logits and the experts'
        regressions; None (default): every column. The coefficients of the other columns are
        held at zero and are not parameters (flexmix: ``concomitant = FLXPmultinom(~ z)`` with
        experts ``y ~ x``). ``gate_columns=()`` is a gate without covariates: constant mixing
        proportions, a mixture of regressions. Softmax and sigmoid gates only
        (:attr:`moetheory.gates.Gate.column_selection`).
    equal_var : bool
        One noise variance shared by every expert (mixtools ``regmixEM(arbvar = FALSE)``): a
        single free parameter, estimated by the pooled residual variance. Default False.
    experts : {"gaussian", "t"}
        The experts' noise: Gaussian (default), or Student t (meteorits ``tmixreg``; Peel &
        McLachlan 2000): y | x, expert i ~ t_ν_i(a_iᵀx + b_i, scale² ``var``_i), ν_i in
        ``params.extra["df"]`` (k,).
    t_df : float, optional
        t experts only: a known ν > 0 shared by every expert; None (default): each expert's ν is
        estimated.

    Examples
    --------
    >>> MoESpec(n_experts=3, dim=1)
    MoESpec(n_experts=3, dim=1, gate='softmax', top_k=None, select_by='score', activation=None, tau='fixed')
    >>> MoESpec(4, 2, gate="topk", top_k=2).top_k
    2
    >>> MoESpec(2, 2, gate_columns=(1,), expert_columns=(0,))    # gate on x2, experts on x1
    MoESpec(n_experts=2, dim=2, gate='softmax', top_k=None, select_by='score', activation=None, tau='fixed', gate_columns=(1,), expert_columns=(0,))
    """

    n_experts: int
    dim: int
    gate: str = "softmax"
    top_k: int | None = None
    select_by: str = "score"
    activation: str | None = None
    tau: str = "fixed"
    gate_columns: tuple | None = None
    expert_columns: tuple | None = None
    equal_var: bool = False
    experts: str = "gaussian"
    t_df: float | None = None

    def __repr__(self):
        # the constraints only when set, so that a plain spec reads as it always has
        shown = [f for f in fields(self) if not _default_constraint(self, f.name)]
        return f"MoESpec({', '.join(f'{f.name}={getattr(self, f.name)!r}' for f in shown)})"

    def __post_init__(self):
        from moetheory.gates.base import Gate
        from moetheory.gates.registry import canonical_gate, check_spec

        for name in ("n_experts", "dim", "top_k"):
            value = getattr(self, name)
            if value is not None:
                # numpy integers are accepted but stored as int so specs hash equal.
                object.__setattr__(self, name, _check_int(name, value, 1))
        if isinstance(self.gate, Gate):
            fields = canonical_gate(self.gate)
            if fields is not None:  # a built-in family: named by its fields
                for key, value in fields.items():
                    if key != "gate" and getattr(self, key) not in (None, "fixed", "score", value):
                        raise ValueError(f"{key}={getattr(self, key)!r} contradicts gate={self.gate!r}")
                    object.__setattr__(self, key, value)
        elif not isinstance(self.gate, str):
            raise TypeError(f"gate must be a gate name or a moetheory.gates.Gate; got "
                            f"{type(self.gate).__name__}")
        if self.select_by not in SELECT_BY:
            raise ValueError(f"select_by must be one of {SELECT_BY}; got {self.select_by!r}")
        if self.tau not in TAU_MODES:
            raise ValueError(f"tau must be one of {TAU_MODES}; got {self.tau!r}")
        check_spec(self)
        for name in ("gate_columns", "expert_columns"):
            object.__setattr__(self, name, _check_columns(name, getattr(self, name), self.dim))
        if not isinstance(self.equal_var, (bool, np.bool_)):
            raise TypeError(f"equal_var must be True or False; got {self.equal_var!r}")
        object.__setattr__(self, "equal_var", bool(self.equal_var))
        if self.experts not in EXPERT_FAMILIES:
            raise ValueError(f"experts must be one of {EXPERT_FAMILIES}; got {self.experts!r}")
        if self.t_df is not None:
            if self.experts != "t":
                raise ValueError(f"t_df is the degrees of freedom of t experts: set experts='t' "
                                 f"(got experts={self.experts!r})")
            if (isinstance(self.t_df, bool) or not isinstance(self.t_df, (int, float, np.number))
                    or not np.isfinite(self.t_df) or self.t_df <= 0):
                raise ValueError(f"t_df must be a finite number > 0 (or None: estimated); got "
                                 f"{self.t_df!r}")
            object.__setattr__(self, "t_df", float(self.t_df))
        if self.restricted and not getattr(self.gate_family, "column_selection", False):
            raise ValueError(f"gate_columns and expert_columns are implemented for the softmax and "
                             f"sigmoid gates; got gate={self.gate_name!r}")

    @property
    def gate_family(self):
        """The gate object (:class:`moetheory.gates.Gate`): every gate-specific rule lives there."""
        from moetheory.gates.registry import gate_of

        return gate_of(self)

    @property
    def gate_name(self) -> str:
        """The gate's registry name (``spec.gate`` for a named gate)."""
        return self.gate if isinstance(self.gate, str) else self.gate.name

    def to_dict(self) -> dict:
        """The spec's fields, the gate as its name (a gate object must be registered under it,
        :func:`moetheory.gates.register_gate`, for the dict to be read back)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)
               if not _default_constraint(self, f.name)}
        out["gate"] = self.gate_name
        return out

    @property
    def has_tau(self) -> bool:
        """True when the gate divides its logits by a temperature τ."""
        return self.gate_family.has_tau

    @property
    def estimates_tau(self) -> bool:
        """True when estimators treat τ as a free parameter."""
        return self.gate_family.estimates_tau(self)

    @property
    def restricted(self) -> bool:
        """True when the gate or the experts use only some columns of x (``gate_columns``,
        ``expert_columns``)."""
        return self.gate_columns is not None or self.expert_columns is not None

    @property
    def cpu_kernels(self) -> bool:
        """Whether the closed-form CPU kernels (Numba and NumPy: the softmax gate on every
        column) implement this model; otherwise EM and ℓ's derivatives run in JAX."""
        return bool(self.gate_family.numba) and not (self.restricted or self.equal_var
                                                     or self.t_experts)

    @property
    def t_experts(self) -> bool:
        """True for Student-t experts (``experts="t"``)."""
        return self.experts == "t"

    @property
    def estimates_df(self) -> bool:
        """True when the t experts' degrees of freedom ν are free parameters (``t_df`` None)."""
        return self.experts == "t" and self.t_df is None

    @property
    def extra_shapes(self) -> dict:
        """Shapes of ``params.extra``: the gate's arrays, and ``df`` (k,) for t experts."""
        out = dict(self.gate_family.extra_shapes(self))
        if self.t_experts:
            out["df"] = (self.n_experts,)
        return out

    def with_expert_arrays(self, params):
        """``params`` with the experts' extra arrays this spec needs and they lack: ``df`` (ν,
        shaped like ``var``) for t experts, at ``t_df`` or :data:`T_DF_START`. Unchanged
        otherwise.

        Examples
        --------
        >>> from moetheory.params import MoEParams
        >>> p = MoEParams.create([0.], [[0.]], [[1.]], [0.], [2.])
        >>> MoESpec(1, 1, experts="t", t_df=4).with_expert_arrays(p).extra["df"].tolist()
        [4.0]
        """
        if not self.t_experts or "df" in params.extra:
            return params
        var = params.var
        value = T_DF_START if self.t_df is None else self.t_df
        return params._replace(extra={**params.extra,
                                      "df": _xp(var).full(np.shape(var), value, var.dtype)})

    def column_mask(self, part: str):
        """(d,) float64 0/1: the columns of x that ``part`` (``"gate"`` or ``"expert"``) uses.

        Examples
        --------
        >>> MoESpec(2, 3, expert_columns=(0, 2)).column_mask("expert").tolist()
        [1.0, 0.0, 1.0]
        """
        cols = self.gate_columns if part == "gate" else self.expert_columns
        mask = np.ones(self.dim)
        if cols is not None:
            mask[:] = 0.0
            mask[list(cols)] = 1.0
        return mask

    def constrain(self, params):
        """``params`` inside the model's parameter space: the coefficients of unused columns set
        to exactly zero (β_1 outside ``gate_columns``, a outside ``expert_columns``), with
        ``equal_var`` every expert's variance set to the first's (the free one), and a known
        ``t_df`` set as every t expert's ν (``extra["df"]``). Leading batch
        axes allowed; NumPy or JAX arrays as given. The identity for an unconstrained spec.

        Examples
        --------
        >>> from moetheory.params import MoEParams
        >>> p = MoEParams.create([0., 0.], [[1., 2.], [0., 0.]], [[3., 4.], [5., 6.]], [0., 0.],
        ...                      [1., 1.])
        >>> MoESpec(2, 2, gate_columns=(1,), expert_columns=(0,)).constrain(p).a.tolist()
        [[3.0, 0.0], [5.0, 0.0]]
        """
        if self.equal_var:
            var = params.var
            params = params._replace(var=_xp(var).broadcast_to(var[..., :1], var.shape) + 0.0)
        if self.t_df is not None and "df" in params.extra:
            df = params.extra["df"]
            params = params._replace(extra={**params.extra, "df": _xp(df).full_like(df, self.t_df)})
        if not self.restricted:
            return params

        def zero(v, part):
            return _xp(v).where(self.column_mask(part) > 0, v, _xp(v).zeros((), v.dtype))

        return params._replace(beta1=zero(params.beta1, "gate"), a=zero(params.a, "expert"))

    def with_(self, **changes) -> "MoESpec":
        """Copy with some fields changed (validated again)."""
        return replace(self, **changes)


#: fields added after specs were first hashed: hidden from the repr and to_dict at their defaults
CONSTRAINT_FIELDS = ("gate_columns", "expert_columns", "equal_var", "experts", "t_df")


def _default_constraint(spec, name) -> bool:
    """Whether field ``name`` is a model constraint left at its default (not shown in the repr
    nor stored by to_dict, so that unconstrained specs keep their form and their hashes)."""
    return (name in CONSTRAINT_FIELDS
            and getattr(spec, name) == MoESpec.__dataclass_fields__[name].default)


def _xp(v):
    """The array module of ``v``: NumPy for a NumPy array, else jax.numpy."""
    return np if isinstance(v, np.ndarray) else jnp


def _check_columns(name, value, dim):
    """None, or a sorted tuple of distinct column indices in [0, dim)."""
    if value is None:
        return None
    try:
        cols = [int(c) for c in value if not isinstance(c, bool)
                and float(c) == int(c)] if not isinstance(value, (str, bytes)) else None
    except (TypeError, ValueError):
        cols = None
    if cols is None or len(cols) != len(value) or len(set(cols)) != len(cols) or any(
            c < 0 or c >= dim for c in cols):
        raise ValueError(f"{name} must be distinct column indices in [0, {dim}) (d={dim}); got "
                         f"{value!r}")
    return tuple(sorted(cols))


def _check_int(name, value, minimum) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer >= {minimum}; got {value!r} ({type(value).__name__})")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}; got {value}")
    return int(value)
