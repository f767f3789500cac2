"""The gate protocol: everything the package needs to know about a gate family, in one object.

A gate is a frozen (hashable) dataclass deriving from :class:`Gate`; a :class:`~moetheory.spec.MoESpec`
names it (``gate="softmax"``) or holds it (``gate=MyGate()``), and :attr:`MoESpec.gate_family`
returns the object. Its methods take the spec first (for k and d) and the parameters
(:class:`~moetheory.params.MoEParams`); ``z`` is the gate's own design matrix (n, d) — today the
same matrix as the experts' x.

What a gate owns, and the default of :class:`Gate` (a gate with no invariance, fitted by the
generic Newton step; override what differs):

===================  ==========================================  =========================================
concern              methods / attributes                        default
===================  ==========================================  =========================================
parameters           :meth:`extra_shapes`, :meth:`blank`,         β_0 (k,), β_1 (k, d) [, τ]; no extras
                     :meth:`free_layout`, :meth:`complete`,
                     :meth:`log_scale`, :attr:`has_tau`
gate weights         :meth:`log_weights` (required),             —
                     :meth:`log_joint_weights`, :meth:`active_mask`
likelihood           :attr:`joint`                               conditional likelihood p(y | x)
identifiability      :meth:`pins`, :meth:`pin`, :meth:`finalise`, nothing pinned; no notes
                     :meth:`notes`, :meth:`unidentified_fields`,
                     :meth:`unused_fields`, :meth:`identified_scale`
EM gate step         :meth:`m_step`, :attr:`step_options`,       monotone Newton on Σ r log g over the
                     :meth:`needs_likelihood`                    free gate coordinates
standardisation      :meth:`affine_rule`, :meth:`to_standard`,   "none": x is not standardised
                     :meth:`from_standard`, :meth:`standard_gate`
summary()            :meth:`describe`, :meth:`summary_notes`,    the name
                     :attr:`reference_note`, :meth:`step_slopes`
Voronoi losses       :meth:`translation`, :meth:`loss_exponents`, "none", softmax exponents,
                     :meth:`voronoi`, :meth:`loss_weights`        exp(β_0) weights
torch router         :meth:`torch_log_weights`,                  none (``to_torch`` refuses)
                     :meth:`neural_routers`
theory pdes          :meth:`sympy_weight`, :meth:`sympy_extra`,   none (``pde_table`` refuses)
                     :attr:`sympy_checks`
NumPy oracle         :meth:`numpy_log_weights`                   none
Numba fast path      :attr:`numba`                               False
===================  ==========================================  =========================================

The free layout decides everything the inference sees: :func:`moetheory.mle.free_layout` is the
gate's ``head`` entries, each expert's (a, b, ν), then the gate's ``tail`` entries. An entry is
``(field, index, label)``: ``field`` a MoEParams field or a key of ``extra``.

Examples
--------
>>> from moetheory.spec import MoESpec
>>> gate = MoESpec(3, 1).gate_family
>>> gate.name, gate.pins(MoESpec(3, 1)), gate.translation(MoESpec(3, 1))
('softmax', (True, True), 'infimum')
"""
from __future__ import annotations

from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np

#: Logit change over one sd of x beyond which a gate counts as a step (e^-30 ≈ 1e-13).
STEP_LOGIT = 30.0

#: options every gate step accepts (the ECM inner Newton steps and their tolerance)
NEWTON_OPTIONS = ("max_newton", "newton_tol")


# ------------------------------------------------------------------------------ field helpers
def get_field(params, name):
    """The array ``name`` of ``params``: a MoEParams field or a key of ``params.extra``.

    Parameters
    ----------
    params : MoEParams; name : str

    Returns
    -------
    array, shape (k, ...) (``tau``: shape ())

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> p = MoEParams.create([0.], [[0.]], [[1.]], [0.], [2.], extra={"cov": [[[3.]]]})
    >>> get_field(p, "var").tolist(), get_field(p, "cov").tolist()
    ([2.0], [[[3.0]]])
    """
    return params.extra[name] if name in params.extra else getattr(params, name)


def replace_fields(params, fields: dict):
    """``params`` with the arrays in ``fields`` (MoEParams fields or ``extra`` keys) replaced.

    Parameters
    ----------
    params : MoEParams
    fields : dict of name -> array, each of the shape of the array it replaces, e.g. (k, d, d)

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> p = MoEParams.create([0.], [[0.]], [[1.]], [0.], [2.], extra={"cov": [[[3.]]]})
    >>> q = replace_fields(p, {"var": [5.], "cov": [[[7.]]]})
    >>> q.var, q.extra["cov"]
    ([5.0], [[[7.0]]])
    """
    own = {k: v for k, v in fields.items() if k in params._fields and k != "extra"}
    extra = {k: v for k, v in fields.items() if k not in own}
    if extra:
        own["extra"] = {**params.extra, **extra}
    return params._replace(**own)


def reference_pin(params, bias: bool = True, slopes: bool = True):
    """Reference-category normalisation: subtract the last expert's β_0 (and β_1).

    Works with leading batch axes: ``beta0`` (..., k), ``beta1`` (..., k, d).

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> p = MoEParams.create([1., 3.], [[2.], [5.]], [[0.], [0.]], [0., 0.], [1., 1.])
    >>> q = reference_pin(p)
    >>> q.beta0.tolist(), q.beta1.tolist()
    ([-2.0, 0.0], [[-3.0], [0.0]])
    """
    out = {}
    if bias:
        out["beta0"] = params.beta0 - params.beta0[..., -1:]
    if slopes:
        out["beta1"] = params.beta1 - params.beta1[..., -1:, :]
    return params._replace(**out)


def gate_objective(spec, params, z, resp, mask=None):
    """Q_gate = Σ_n Σ_i r_ni log w_i(z_n), w the gate's joint weights (its weights g_i(z) for a
    conditional gate); terms with r_ni = 0 contribute 0. The EM gate step maximises it.

    Parameters
    ----------
    spec : MoESpec
    params : MoEParams, the gate arrays
    z : array (n, d), the gate's design; resp : array (n, k)
    mask : bool array (n, k), optional, active sets to hold fixed (top-K gate)

    Returns
    -------
    scalar

    Examples
    --------
    >>> from moetheory._jax import ensure_x64; ensure_x64()
    >>> import jax.numpy as jnp
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> p = MoEParams.create([0., 0.], [[0.], [0.]], [[1.], [-1.]], [0., 0.], [1., 1.])
    >>> resp = jnp.array([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]])
    >>> round(float(gate_objective(MoESpec(2, 1), p, jnp.zeros((3, 1)), resp)), 6)  # g = 1/2
    -2.079442
    """
    logw = spec.gate_family.log_joint_weights(spec, params, z, mask)
    return jnp.where(resp > 0, resp * logw, 0.0).sum()


def linear_logit_to_standard(params, center, scale):
    """A logit β_1ᵀx + β_0 in x̃ = (x − m)/s coordinates: β_1 s and β_0 + β_1ᵀm.

    Parameters
    ----------
    params : MoEParams, ``beta1`` (k, d), ``beta0`` (k,)
    center, scale : arrays (d,)

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> p = MoEParams.create([1.], [[2.]], [[0.]], [0.], [1.])
    >>> q = linear_logit_to_standard(p, np.array([1.0]), np.array([3.0]))  # 2x + 1 = 6x̃ + 3
    >>> q.beta1.tolist(), q.beta0.tolist()
    ([[6.0]], [3.0])
    """
    beta1 = np.asarray(params.beta1) * scale
    beta0 = np.asarray(params.beta0) + np.asarray(params.beta1) @ center
    return params._replace(beta0=beta0, beta1=beta1)


def linear_logit_from_standard(params, center, scale):
    """Inverse of :func:`linear_logit_to_standard` (``beta1`` (k, d), ``beta0`` (k,); center and
    scale (d,)).

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> p = MoEParams.create([3.], [[6.]], [[0.]], [0.], [1.])
    >>> q = linear_logit_from_standard(p, np.array([1.0]), np.array([3.0]))
    >>> q.beta1.tolist(), q.beta0.tolist()
    ([[2.0]], [1.0])
    """
    beta1 = np.asarray(params.beta1) / scale
    beta0 = np.asarray(params.beta0) - beta1 @ center
    return params._replace(beta0=beta0, beta1=beta1)


# ------------------------------------------------------------------------------ the protocol
@dataclass(frozen=True)
class Gate:
    """Base class of the gate families (module docstring). Subclasses set :attr:`name` and
    implement :meth:`log_weights`; the rest has defaults for a gate with parameters
    ``beta0`` (k,), ``beta1`` (k, d), no invariance, fitted by the generic Newton step.

    Examples
    --------
    >>> from dataclasses import dataclass
    >>> import jax
    >>> @dataclass(frozen=True)
    ... class Normalised(Gate):
    ...     name: str = "normalised-exp"
    ...     def log_weights(self, spec, params, z, mask=None):
    ...         return jax.nn.log_softmax(z @ params.beta1.T + params.beta0, axis=-1)
    >>> Normalised().describe(None)
    'normalised-exp'
    """

    #: registry name (also what a serialised MoESpec stores)
    name = "gate"
    #: the fused Numba kernels (EM and derivatives) implement this gate: the one switch of that
    #: fast path (read by moetheory.em.backend and moetheory.em.certify)
    numba = False
    #: whether ``MoESpec.gate_columns`` / ``expert_columns`` may restrict the covariates: the
    #: gate's logits are linear in x through β_1 alone and its layout is :meth:`free_layout`'s
    column_selection = False
    #: the gate is a model of its input z (p(z) = Σ_i w_i(z)): estimators maximise the joint
    #: likelihood Σ log p(z, y) instead of the conditional Σ log p(y | z)
    joint = False
    #: the gate divides by a temperature τ (the spec's ``tau`` field applies)
    has_tau = False
    #: options of the EM gate step (``gate_options`` of fit / EMConfig)
    step_options = NEWTON_OPTIONS
    #: which groups of symbolic checks ``moetheory.symbolic.pde_checks`` reports
    sympy_checks = ("pdes", "translation")
    #: the first note of summary()
    reference_note = "No reference expert: every expert's gate parameters are free; 'var' is the expert noise variance."

    # ---------------------------------------------------------------- spec options
    @classmethod
    def from_spec(cls, spec):
        """The gate of ``spec`` (a registered name resolves here); default: a parameterless gate."""
        return cls()

    def spec_fields(self):
        """MoESpec fields (gate, top_k, select_by, activation, tau) that name this gate, or None
        for a gate that only exists as an object."""
        return None

    def estimates_tau(self, spec) -> bool:
        """Whether estimators treat τ as a free parameter."""
        return self.has_tau and spec.tau == "estimated"

    # ---------------------------------------------------------------- parameters
    def extra_shapes(self, spec) -> dict:
        """Shapes of the gate's ``extra`` arrays (name -> (k, ...)); empty by default."""
        return {}

    def blank(self, spec, dtype, tau=1.0) -> dict:
        """Gate arrays of a data-driven start before its first gate step (beta0, beta1, tau, extras)."""
        k, d = spec.n_experts, spec.dim
        return {"beta0": jnp.zeros(k, dtype), "beta1": jnp.zeros((k, d), dtype),
                "tau": jnp.asarray(tau, dtype)}

    def pins(self, spec) -> tuple:
        """(bias, slopes): whether the last expert's β_0 / β_1 is pinned at zero."""
        return (False, False)

    def free_tau(self, spec) -> bool:
        """τ is a free coordinate (appended after the experts)."""
        return False

    def free_layout(self, spec, names) -> tuple:
        """(head, tail) lists of (field, index, label): the gate's free coordinates before and
        after the experts'. Default: each expert's β_1 (slopes) and β_0 unless pinned; nothing for
        one expert (a conditional gate is then identically 1); τ last when free."""
        k, d = spec.n_experts, spec.dim
        head, tail = [], []
        if k == 1 and not self.joint:
            return head, tail
        bias, slopes = self.pins(spec)
        cols = range(d) if spec.gate_columns is None else spec.gate_columns
        for i in range(k):
            if i < k - 1 or not slopes:
                head += [("beta1", (i, j), f"gate{i + 1}:{names[j]}") for j in cols]
            if i < k - 1 or not bias:
                head.append(("beta0", (i,), f"gate{i + 1}:const"))
        if self.free_tau(spec):
            tail.append(("tau", (), "tau"))
        return head, tail

    def complete(self, spec, params):
        """Fill entries determined by the free ones (e.g. a symmetric matrix's upper triangle)."""
        return params

    def log_scale(self, field: str, index: tuple) -> bool:
        """Whether a free coordinate is optimised on the log scale (positive parameters)."""
        return field == "tau"

    # ---------------------------------------------------------------- gate weights
    def n_active_sets(self, spec) -> int:
        """How many distinct active sets the gate can select (1: every expert always active)."""
        return 1

    def selection_fields(self, spec) -> tuple:
        """Gate fields that decide the active sets (empty: every expert always active). The
        likelihood is only piecewise smooth in them, so the polish holds them and the certificate
        leaves them out (:func:`moetheory.em.certify.held_labels`)."""
        return ()

    def softmax_of_linear(self, spec) -> bool:
        """Whether the gate weights are a softmax over every expert of logits linear in x: then
        the gate's Fisher information tells a step gate from a regular one
        (:func:`moetheory.em.spurious.gate_information`)."""
        return False

    def active_mask(self, spec, params, z):
        """Boolean (n, k): active experts (all of them by default)."""
        return jnp.ones((z.shape[0], spec.n_experts), dtype=bool)

    def log_weights(self, spec, params, z, mask=None):
        """log g_i(z) (n, k), rows summing to 1 in probability; ``-inf`` for inactive experts."""
        raise NotImplementedError(f"gate {self.name!r} must implement log_weights")

    def log_joint_weights(self, spec, params, z, mask=None):
        """log of the gate term of the complete-data likelihood (n, k): log g_i(z) for a
        conditional gate, log p(z, expert i) for a gate that models z (:attr:`joint`)."""
        return self.log_weights(spec, params, z, mask)

    # ---------------------------------------------------------------- identifiability
    def pin(self, spec, params):
        """The canonical representative (batched arrays allowed): :meth:`pins` applied."""
        bias, slopes = self.pins(spec)
        if not (bias or slopes):
            return params
        return reference_pin(params, bias, slopes)

    def finalise(self, spec, params):
        """The representative reported by fit and compared by the losses (default: as is)."""
        return params

    def notes(self, spec) -> list:
        """(key, message) pairs on what this model cannot identify (warned once by fit)."""
        return []

    def unidentified_fields(self, spec) -> tuple:
        """Fields whose free coordinates have no standard error (reported as NaN)."""
        return ()

    def unused_fields(self, spec) -> tuple:
        """Fields whose free coordinates never enter the likelihood (not counted in df)."""
        return ()

    def identified_scale(self, spec, params):
        """τ when the gate is identified only through β/τ (temperature gate), else None."""
        return None

    # ---------------------------------------------------------------- EM gate step
    def needs_likelihood(self, spec) -> bool:
        """The gate step needs (y, weights) to evaluate the observed likelihood (top-K)."""
        return False

    def m_step(self, spec, params, z, resp, y=None, weights=None, max_newton=50,
               newton_tol=1e-12, **options):
        """Gate M-step: maximise :func:`gate_objective` over the free gate coordinates from the
        current gate by :func:`moetheory.gates.newton.monotone_newton` (never decreases it).

        Returns MoEParams with a new gate (pinned as :meth:`pin` says).
        """
        from moetheory.gates.newton import monotone_newton

        params = self.pin(spec, params)
        layout = self.gate_layout(spec)
        if not layout:
            return params

        def objective(theta):
            return gate_objective(spec, self.unpack_gate(spec, layout, params, theta), z, resp)

        theta, _ = monotone_newton(objective, self.pack_gate(layout, params), max_newton, newton_tol)
        return self.unpack_gate(spec, layout, params, theta)

    def gate_layout(self, spec) -> list:
        """The gate's free coordinates (field, index) (head then tail of :meth:`free_layout`)."""
        head, tail = self.free_layout(spec, [f"x{j + 1}" for j in range(spec.dim)])
        return [(f, idx) for f, idx, _ in head + tail]

    def pack_gate(self, layout, params):
        vals = []
        for f, idx in layout:
            v = get_field(params, f)[idx]
            vals.append(jnp.log(v) if self.log_scale(f, idx) else v)
        return jnp.stack(vals)

    def unpack_gate(self, spec, layout, params, theta):
        fields = {}
        for t, (f, idx) in enumerate(layout):
            arr = fields.get(f, get_field(params, f))
            val = jnp.exp(theta[t]) if self.log_scale(f, idx) else theta[t]
            fields[f] = arr.at[idx].set(val)
        return self.complete(spec, replace_fields(params, fields))

    def paper_start(self, key, truth, k, n, var_from_sd=False):
        """The near-truth start of the gate's own paper (``init="paper"``), or None for the
        softmax paper's scheme (:func:`moetheory.em.init.paper_init`)."""
        return None

    def sample_input(self, key, spec, params, n):
        """n draws of the gate's input z (gates that model their input, :attr:`joint`)."""
        raise NotImplementedError(f"gate {self.name!r} does not model its input")

    # ---------------------------------------------------------------- standardisation
    def affine_rule(self, spec) -> str:
        """Which maps x̃ = (x − m)/s the model is closed under: "affine", "scale" or "none"."""
        return "none"

    def to_standard(self, spec, params, center, scale):
        """Gate arrays in x̃ = (x − center)/scale coordinates (same model)."""
        return params

    def from_standard(self, spec, params, center, scale):
        """Inverse of :meth:`to_standard`."""
        return params

    def standard_gate(self, spec, center, scale):
        """The gate of the same model in x̃ = (x − center)/scale coordinates, with the parameters
        of :meth:`to_standard` (default: this gate; the top-K score rule moves a fixed selection
        offset)."""
        return self

    # ---------------------------------------------------------------- summary()
    def describe(self, spec) -> str:
        """The summary's "Gate:" line."""
        return self.name

    def summary_notes(self, spec, res) -> tuple:
        """Gate notes of summary(): (notes before, notes after) the generic ones (not identified,
        near-step gate) — normalisation, identifiability, what the errors mean."""
        return [], []

    def step_slopes(self, spec, params, sd) -> list:
        """(i, j) of gate slopes whose logit changes by more than STEP_LOGIT over one sd of x_j."""
        return []

    # ---------------------------------------------------------------- Voronoi losses
    def translation(self, spec) -> str:
        """The loss translation that removes exactly the gate's unidentifiable shift."""
        return "none"

    def loss_exponents(self, spec) -> str:
        """D_2 exponent rule (a key of moetheory.losses.voronoi.D2_EXPONENTS)."""
        return "softmax"

    def voronoi(self, spec, fitted, truth, kind, translation, coords, **kwargs):
        """The Voronoi loss of ``fitted`` against ``truth`` with its translation and cells
        (:func:`moetheory.losses.best_translation`; a gate may define its paper's loss)."""
        from moetheory.losses.voronoi import best_translation

        kwargs.setdefault("exponents", self.loss_exponents(spec))
        return best_translation(fitted, truth, kind, translation, None, coords, **kwargs)

    # ---------------------------------------------------------------- torch router
    def torch_log_weights(self, spec, tensors: dict, x):
        """(log weights (n, k), dense probabilities (n, k), dispatch mask (n, k)) of the torch
        layer; ``tensors`` holds the layer's beta0, beta1, tau and extra tensors."""
        raise NotImplementedError(f"gate {self.name!r} has no torch router")

    def neural_routers(self, spec) -> tuple:
        """Neural routers (moetheory.bridge.torch) that share this gate's parameters."""
        return ()

    # ---------------------------------------------------------------- symbolic form
    def sympy_extra(self, sp) -> dict:
        """Symbols of the extra gate parameters for :meth:`sympy_weight` (name -> symbol)."""
        return {}

    def sympy_weight(self, sp, x, beta1, beta0, tau, extra):
        """The unnormalised gate weight w(x) of one expert as a sympy expression (the gate
        weight is w_i / Σ_j w_j); ``x`` and ``beta1`` are tuples of d symbols."""
        raise NotImplementedError(f"gate {self.name!r} has no symbolic form")

    def sympy_relations(self, sp, u, sym) -> list:
        """The gate's own relations for ``theory pdes``: (name, "holds"/"breaks", detail) list;
        ``u`` is one expert's w(x) N(y; a x + b, ν), ``sym`` its symbols."""
        return []

    # ---------------------------------------------------------------- NumPy oracle
    def numpy_logits(self, spec, params, z):
        """NumPy logits (n, k), written apart from the JAX code (gates with logits)."""
        raise NotImplementedError(f"gate {self.name!r} has no logits")

    def numpy_active_set(self, spec, params, z):
        """NumPy active sets (n, k) (all experts by default)."""
        return np.ones((z.shape[0], np.shape(params.beta0)[0]), dtype=bool)

    def numpy_log_weights(self, spec, params, z):
        """An independent NumPy implementation of :meth:`log_weights` (the test oracle)."""
        raise NotImplementedError(f"gate {self.name!r} has no NumPy oracle")

    def numpy_log_joint_weights(self, spec, params, z):
        """NumPy :meth:`log_joint_weights` (default: :meth:`numpy_log_weights`)."""
        return self.numpy_log_weights(spec, params, z)

    # ---------------------------------------------------------------- validation
    def check_options(self, options: dict) -> dict:
        """Validate gate-step options beyond their names (default: as given)."""
        return options


def step_slopes_linear(spec, params, sd, relative=True):
    """Slopes (i, j) with |β_1ij − β_1kj|·sd_j/τ > STEP_LOGIT (``relative``: to the reference;
    else |β_1ij|·sd_j/τ); ``beta1`` (k, d), ``sd`` (d,).

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> p = MoEParams.create([0., 0.], [[40.], [0.]], [[0.], [0.]], [0., 0.], [1., 1.])
    >>> step_slopes_linear(MoESpec(2, 1), p, np.array([1.0]))
    [(0, 0)]
    """
    beta1 = np.asarray(params.beta1)
    slopes = beta1 - beta1[-1] if relative else beta1
    scaled = np.abs(slopes) * sd / float(params.tau)
    rows = spec.n_experts - 1 if relative else spec.n_experts
    return [(i, j) for i in range(rows) for j in range(spec.dim) if scaled[i, j] > STEP_LOGIT]
