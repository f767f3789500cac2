"""The estimator's configuration: one frozen object for :func:`moetheory.fit` and for studies.

:class:`EMConfig` holds everything that decides an estimate: the starts (kind, number, short
runs), the EM stopping rule, the gate step, the variance floor, the accelerator, the polish and
the certificate's tolerance. :func:`moetheory.fit` builds one from its keyword arguments; a study
declares one (``StudySpec.estimator``); both hand it to :func:`moetheory.em.pipeline.run_pipeline`.

The stopping rule is defined here and nowhere else (:meth:`EMConfig.stop_thresholds`): EM stops
at the first iteration t with |ℓ_t − ℓ_{t−1}| ≤ max(rel·|ℓ_{t−1}|, abs), where

* ``stop_rule="mean"`` (default): rel = 0, abs = tol·Σw — the change of the *mean*
  log-likelihood per observation is at most ``tol``; the threshold does not loosen as n grows;
* ``stop_rule="relative"`` (the softmax paper's official code): rel = tol, abs = tol·0.01·Σw
  (|ℓ| floored at 0.01 nats per observation) — at n = 1e5 and tol = 1e-6 this stops when ℓ
  changes by less than ≈ 0.04 nats, which over-fitted EM meets after 3–4 iterations on a flat
  likelihood.

The EM kernels (:func:`moetheory.em.run.run_em`, the Numba loop, the NumPy oracle) only apply
the two numbers.

Named estimators (:data:`ESTIMATORS`): ``"mle"`` (the default: EM, then a Newton polish of the
observed log-likelihood, then a convergence certificate) and ``"official"`` (the softmax paper's
protocol: relative tol 1e-6, at most 2000 iterations, near-truth ``paper`` starts, no polish —
its certificate is still computed, and says when it stopped short of the maximum).

Examples
--------
>>> cfg = EMConfig()
>>> cfg.stop_thresholds(1000)
(0.0, 1e-05)
>>> ESTIMATORS["official"].stop_thresholds(1000)
(1e-06, 1e-05)
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass, fields, replace

import numpy as np

#: start kinds: "auto" cycles through the data-driven kinds :data:`AUTO_KINDS`; "paper" and
#: "perturb" start near a known truth (simulation studies)
INIT_KINDS = ("auto", "kmeans", "random", "lines", "paper", "perturb")
#: the data-driven kinds "auto" cycles through (different kinds fail on different data: k-means
#: finds clusters in (x, y), random partitions mixed regimes, random lines thin regimes along a
#: line that k-means splits)
AUTO_KINDS = ("lines", "kmeans", "random")
#: what to do with spurious maxima (:mod:`moetheory.em.spurious`)
SPURIOUS = ("reject", "keep")
STOP_RULES = ("mean", "relative")
ACCELERATIONS = ("none", "squarem")
POLISHES = ("newton", "none")
#: the stopping rule's floor on |ℓ| per observation under ``stop_rule="relative"``
REL_LL_FLOOR = 0.01
#: default number of starts for data-driven initialisation (per round of the start policy)
DEFAULT_N_INIT = 12
#: fields that only data-driven starts use (the start policy and the spurious-solution rule):
#: a near-truth configuration omits them from :meth:`EMConfig.to_dict` at their defaults, so
#: the identity (hash) of a near-truth study panel does not depend on them
DATA_DRIVEN_FIELDS = ("min_best_hits", "max_new_rate", "max_starts", "spurious", "min_size")


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_real(v) -> bool:
    return isinstance(v, numbers.Real) and not isinstance(v, (bool, np.bool_))


@dataclass(frozen=True)
class EMConfig:
    """How an estimate is computed (frozen, hashable; a static argument under ``jit``).

    Parameters
    ----------
    init : {"auto", "kmeans", "random", "lines", "paper", "perturb"}
        Kind of the starts: ``"auto"`` cycles through random lines, k-means on standardised
        (x, y) and random partitions (:data:`AUTO_KINDS`); ``"paper"`` (the softmax paper's
        near-truth starts, noise shrinking with n) and ``"perturb"`` (n-independent noise) need
        the truth.
    n_init : int, optional
        Number of starts (default: 12 for data-driven kinds, 1 near the truth); for data-driven
        kinds, the starts of each round of the start policy (``min_best_hits``).
    n_keep : int
        Starts continued to convergence after a short run of all of them (when n_init > n_keep).
    n_short, n_hard : int
        Iterations of the short runs, and how many of them use hard (classification) E-steps.
    perturb_scale : float
        Noise sd of ``perturb`` starts.
    var_from_sd : bool
        ``paper`` starts only: start the variance at the true standard deviation (the official
        code's slip; off by default).
    tol : float
        EM stopping tolerance, see :meth:`stop_thresholds`.
    stop_rule : {"mean", "relative"}
        ``"mean"``: |Δℓ| / Σw ≤ tol; ``"relative"``: |Δℓ| ≤ tol·max(|ℓ|, 0.01·Σw).
    max_iter : int
        Maximum EM iterations of a continued start.
    max_newton : int
        Newton steps of the gate M-step per EM iteration (1: the ECM step, the default: the same
        fixed points, monotone, and the polish finishes the maximisation).
    gate_options : tuple of (name, value) pairs
        Further gate-step options (``newton_tol``, top-K ``method``/``max_halvings``,
        ``tau_value``); each gate lists its own in ``step_options``
        (:class:`moetheory.gates.Gate`).
    var_floor : float, optional
        Minimum expert variance (default: :func:`moetheory.api.default_var_floor` of y in
        ``fit``; 1e-10 in studies).
    acceleration : {"none", "squarem"}
        SQUAREM extrapolation of the EM map with a monotone safeguard (Varadhan & Roland 2008).
    polish : {"newton", "none"}
        After EM, maximise the observed log-likelihood directly: a trust-region Newton method
        (``scipy.optimize.minimize(method="trust-exact")``) in the free coordinates with
        log-variances, exact gradient and Hessian.
    max_polish : int
        Iterations of the polish.
    cert_tol : float
        The certificate's tolerance (nats): an estimate is certified when the Hessian of ℓ is
        negative definite there and the Newton decrement ½ gᵀ(−H)⁻¹g, the log-likelihood a
        Newton step would still gain, is at most ``cert_tol``.
    fixed_iter : bool
        Run exactly ``max_iter`` EM iterations (JAX backend; batches under ``vmap`` then do not
        wait on data-dependent loops).
    min_best_hits : int
        The start policy (data-driven starts only): rounds of ``n_init`` new starts are drawn
        until the best log-likelihood has been reached in at least this many rounds (each round
        is an independent draw; the starts one round continues are not, as they are the best of
        its short runs), or ``max_starts`` starts have been drawn; the result reports how many
        rounds and starts reached it (1: a single round, as many starts as ``n_init``).
    max_new_rate : float
        The start policy also draws rounds until the chance that one more round finds a maximum
        no round has found yet is estimated at most this (default 0.34). The estimate is Good's
        (1953) frequency of singletons, counted by rounds: the number of maxima (regular or not)
        reached in exactly one round over the number of rounds — the measure of a search's
        adequacy of Finch, Mendell & Thode (1989, JASA 84, 1020–1023). Rugged likelihoods (many
        maxima, small basins) thus get more rounds, and a warning if the budget runs out.
        1 turns the check off.
    max_starts : int
        The policy's budget of starts (data-driven starts only; at least one round).
    spurious : {"reject", "keep"}
        Data-driven starts only: ``"reject"`` (default) never returns a spurious maximum — an
        expert with effective size below ``min_size``, a step gate, a variance on the floor —
        when a regular one was found (:mod:`moetheory.em.spurious`); ``"keep"`` returns the
        raw highest log-likelihood (starts on the variance floor are still passed over).
    min_size : float
        The smallest effective expert size Σ_n r_ni of a regular fit, as a fraction of n
        (default 0.05, flexmix's ``minprior``), and never below d + 2 observations.
    Examples
    --------
    >>> EMConfig(tol=1e-9).tol
    1e-09
    >>> EMConfig.from_dict(EMConfig(n_init=4).to_dict()) == EMConfig(n_init=4)
    True
    >>> EMConfig(stop_rule="absolute")
    Traceback (most recent call last):
    ...
    ValueError: estimator stop_rule must be one of ('mean', 'relative'); got 'absolute'
    """

    init: str = "auto"
    n_init: int | None = None
    n_keep: int = 3
    n_short: int = 20
    n_hard: int = 3
    perturb_scale: float = 0.1
    var_from_sd: bool = False
    tol: float = 1e-8
    stop_rule: str = "mean"
    max_iter: int = 5000
    max_newton: int = 1
    gate_options: tuple = ()
    var_floor: float | None = None
    acceleration: str = "none"
    polish: str = "newton"
    max_polish: int = 200
    cert_tol: float = 1e-6
    fixed_iter: bool = False
    min_best_hits: int = 2
    max_new_rate: float = 0.34
    max_starts: int = 96
    spurious: str = "reject"
    min_size: float = 0.05

    def __post_init__(self):
        for name, choices in (("init", INIT_KINDS), ("stop_rule", STOP_RULES),
                              ("acceleration", ACCELERATIONS), ("polish", POLISHES),
                              ("spurious", SPURIOUS)):
            if getattr(self, name) not in choices:
                raise ValueError(f"estimator {name} must be one of {choices}; got {getattr(self, name)!r}")
        for name, low in (("n_keep", 1), ("n_short", 0), ("n_hard", 0), ("max_iter", 1),
                          ("max_newton", 1), ("max_polish", 0), ("min_best_hits", 1),
                          ("max_starts", 1)):
            v = getattr(self, name)
            if not _is_int(v) or v < low:
                raise ValueError(f"estimator {name} must be an integer >= {low}; got {v!r}")
            object.__setattr__(self, name, int(v))
        if self.n_init is not None:
            if not _is_int(self.n_init) or self.n_init < 1:
                raise ValueError(f"estimator n_init must be a positive integer; got {self.n_init!r}")
            object.__setattr__(self, "n_init", int(self.n_init))
        for name in ("tol", "perturb_scale", "cert_tol"):
            v = getattr(self, name)
            if not _is_real(v) or not (math.isfinite(v) and v >= 0):
                raise ValueError(f"estimator {name} must be a finite number >= 0; got {v!r}")
            object.__setattr__(self, name, float(v))
        if not _is_real(self.max_new_rate) or not 0 <= self.max_new_rate <= 1:
            raise ValueError(f"estimator max_new_rate must be a number in [0, 1]; got "
                             f"{self.max_new_rate!r}")
        object.__setattr__(self, "max_new_rate", float(self.max_new_rate))
        if not _is_real(self.min_size) or not 0 <= self.min_size < 1:
            raise ValueError(f"estimator min_size must be a fraction of n in [0, 1); got "
                             f"{self.min_size!r}")
        object.__setattr__(self, "min_size", float(self.min_size))
        if self.var_floor is not None:
            v = self.var_floor
            if not _is_real(v) or not (math.isfinite(v) and v > 0):
                raise ValueError(f"estimator var_floor must be a finite number > 0 (a variance); "
                                 f"got {v!r}")
            object.__setattr__(self, "var_floor", float(v))
        for name in ("var_from_sd", "fixed_iter"):
            v = getattr(self, name)
            if not isinstance(v, (bool, np.bool_)):
                raise ValueError(f"estimator {name} must be true or false; got {v!r}")
            object.__setattr__(self, name, bool(v))
        opts = self.gate_options
        if isinstance(opts, dict):
            opts = tuple(sorted(opts.items()))
        if not isinstance(opts, tuple) or not all(isinstance(o, tuple) and len(o) == 2 for o in opts):
            raise ValueError(f"estimator gate_options must be a table of option = value; got {opts!r}")
        if any(name == "max_newton" for name, _ in opts):
            raise ValueError("give max_newton as the estimator's own field, not in gate_options")
        object.__setattr__(self, "gate_options", tuple(sorted(opts)))

    # ------------------------------------------------------------------ derived values
    @property
    def near_truth(self) -> bool:
        """True for starts drawn near a known truth (``paper``, ``perturb``)."""
        return self.init in ("paper", "perturb")

    def start_kinds(self, n_init: int | None = None, first: int = 0) -> tuple:
        """The kind of each start (length ``n_init``, default :attr:`n_init` or its default);
        ``first``: the index of the first start in the whole sequence (later rounds of the
        start policy continue the cycle of ``"auto"``).

        Examples
        --------
        >>> EMConfig().start_kinds(4)
        ('lines', 'kmeans', 'random', 'lines')
        >>> EMConfig().start_kinds(2, first=4)
        ('kmeans', 'random')
        """
        n = n_init or self.n_init or (1 if self.near_truth else DEFAULT_N_INIT)
        if self.init == "auto":
            return tuple(AUTO_KINDS[(first + i) % len(AUTO_KINDS)] for i in range(n))
        return (self.init,) * n

    def stop_thresholds(self, n_weight: float) -> tuple:
        """(rel, abs) of the stopping test |ℓ_t − ℓ_{t−1}| ≤ max(rel·|ℓ_{t−1}|, abs), for a
        total observation weight ``n_weight`` (the module docstring).

        Examples
        --------
        >>> EMConfig(tol=1e-6, stop_rule="relative").stop_thresholds(1e5)
        (1e-06, 0.001)
        """
        n_weight = float(n_weight)
        if self.stop_rule == "relative":
            return self.tol, self.tol * REL_LL_FLOOR * n_weight
        return 0.0, self.tol * n_weight

    def gate_step_options(self) -> tuple:
        """The gate M-step's options as sorted (name, value) pairs (static under jit)."""
        return tuple(sorted(self.gate_options + (("max_newton", self.max_newton),)))

    # ------------------------------------------------------------------ serialisation
    def with_(self, **changes) -> "EMConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        """The fields as a table; a near-truth configuration leaves out the data-driven fields
        (:data:`DATA_DRIVEN_FIELDS`) that are at their defaults: they change nothing it computes.

        Examples
        --------
        >>> "min_best_hits" in EMConfig().to_dict(), "min_best_hits" in EMConfig(init="paper").to_dict()
        (True, False)
        """
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["gate_options"] = dict(self.gate_options)
        if self.near_truth:
            defaults = {f.name: f.default for f in fields(self)}
            for name in DATA_DRIVEN_FIELDS:
                if d[name] == defaults[name]:
                    del d[name]
        return d

    @classmethod
    def from_dict(cls, d, where: str = "estimator") -> "EMConfig":
        """From a declaration table (unknown keys are named with ``where``), or a name of
        :data:`ESTIMATORS` (a table may also say ``name = "official"`` and change fields)."""
        if isinstance(d, str):
            return named(d)
        if not isinstance(d, dict):
            raise TypeError(f"{where} must be a table of EMConfig fields or a name in "
                            f"{sorted(ESTIMATORS)}; got {type(d).__name__}")
        d = dict(d)
        base = named(d.pop("name")) if "name" in d else cls()
        known = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(known))
        if unknown:
            raise ValueError(f"unknown {where} field(s) {unknown}; expected some of {known}")
        if isinstance(d.get("gate_options"), dict):
            d["gate_options"] = tuple(sorted(d["gate_options"].items()))
        return replace(base, **d)


#: Named estimators (see the module docstring).
ESTIMATORS = {
    "mle": EMConfig(),
    "official": EMConfig(init="paper", tol=1e-6, stop_rule="relative", max_iter=2000,
                         polish="none"),
}


def named(name: str) -> EMConfig:
    """The named estimator ``name`` of :data:`ESTIMATORS`.

    Examples
    --------
    >>> named("official").stop_rule
    'relative'
    """
    if name not in ESTIMATORS:
        raise ValueError(f"unknown estimator {name!r}; choose one of {sorted(ESTIMATORS)}")
    return ESTIMATORS[name]
