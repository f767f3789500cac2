"""A PyTorch Gaussian mixture-of-experts layer that reproduces moetheory's gates exactly.

Importing this module imports torch (``import moetheory`` does not); without torch it raises an
``ImportError`` naming the extra: ``pip install "moetheory[torch]"`` (CPU build:
``pip install torch==2.13.0``).

The layer
---------
:class:`GaussianMoE` holds, for k experts and covariate dimension d,

=================  ========  ===============================  ====================
parameter          shape     moetheory field                  note
=================  ========  ===============================  ====================
``gate_weight``    (k, d)    ``beta1``                        router weight
``gate_bias``      (k,)      ``beta0``                        router bias
``expert_weight``  (k, d)    ``a``                            linear experts
``expert_bias``    (k,)      ``b``
``log_var``        (k,)      ``log(var)``                     per-expert log-variance
``log_tau``        ()        ``log(tau)``                     trainable only for τ estimated
``noise_weight``   (k, d)    —                                ``noisy_topk`` only
=================  ========  ===============================  ====================

and computes p(y | x) = Σ_i w_i(x) N(y; a_iᵀx + b_i, ν_i) in log space. ``forward(x)`` returns
the layer output Σ_i w_i(x)(a_iᵀx + b_i) (the predictive mean for normalised gates);
:meth:`GaussianMoE.log_density` / :meth:`GaussianMoE.nll` give the likelihood.

Routers
-------
Statistical routers: every gate of :mod:`moetheory.gates` (a registered name or a gate object)
routes by its own torch code (``Gate.torch_log_weights``, an exact copy of the gate, same tie
rule — ties go to the lower index):

* ``"softmax"``: w = softmax(β_1ᵀx + β_0).
* ``"topk"`` (``top_k``, ``select_by`` "score" | "logit"): the K experts with the largest
  selection score (β_1ᵀx, or the full logit), weights renormalised over them.
* ``"temperature"``: softmax((β_1ᵀx + β_0)/τ), bias inside; τ trainable iff ``learn_tau``.
* ``"activation"``: softmax((σ(β_1ᵀx) + β_0)/τ), σ from :data:`TORCH_ACTIVATIONS`.
* ``"sigmoid"``: σ(β_1ᵀx + β_0) normalised over the experts.
* ``"gaussian"``: π_i N(x; μ_i, Σ_i) normalised (the layer models y given x; its Σ_i are the
  ``gate_extra["cov"]`` parameters).

Neural routers practitioners use (how each maps onto a statistical gate is in docs/bridge.md):

* ``"noisy_topk"`` (Shazeer et al. 2017): H = β_1ᵀx + β_0 + ε·softplus(W_noiseᵀx), ε ~ N(0, 1)
  in training only; w = softmax(KeepTopK(H, K)). In eval mode it *is* ``topk`` with
  ``select_by="logit"``.
* ``"switch"`` (Fedus et al.): top-1 by logit, weight p_max = softmax(h)_max (not renormalised,
  so Σ_i w_i = p_max < 1 and the "density" is sub-normalised). Routing equals ``topk`` K=1
  ``select_by="logit"``; the weight does not (the statistical K=1 gate has weight 1).
* ``"gshard_top2"`` (Lepikhin et al.): top-2 by logit, weights renormalised — exactly ``topk``
  K=2 ``select_by="logit"`` (GShard's random second-expert dispatch and capacity limits are
  not modelled).
* ``"dense_to_sparse"`` (EvoMoE, Nie et al. 2021): Gumbel-softmax w = softmax((h + G)/τ) with
  G ~ Gumbel(0, 1) in training only, experts with w < ``threshold`` (1e-3) dropped, τ from a
  :class:`DenseToSparseSchedule` (linear 2.0 → 0.5, then hard top-1). Without noise and
  threshold, the soft phase is the statistical ``temperature`` gate at the current τ; the hard
  phase is Switch-like top-1 on h/τ_end with weight p_max (``hard_weight="one"``: weight 1,
  exactly ``topk`` K=1 ``select_by="logit"`` with gate β/τ_end).

:func:`load_balancing_loss` is the Switch auxiliary loss α·k·Σ_i f_i P_i.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Callable, NamedTuple

import numpy as np

from moetheory.bridge import require_torch
from moetheory.params import MoEParams, check_params
from moetheory.spec import SELECT_BY, MoESpec

torch = require_torch()
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

#: the built-in gates' routers (any registered gate name or gate object routes too)
STATISTICAL_ROUTERS = ("softmax", "topk", "temperature", "activation", "sigmoid", "gaussian")
NEURAL_ROUTERS = ("noisy_topk", "switch", "gshard_top2", "dense_to_sparse")
ROUTERS = STATISTICAL_ROUTERS + NEURAL_ROUTERS


def _is_statistical(router) -> bool:
    from moetheory.gates import GATES, Gate

    return isinstance(router, Gate) or (isinstance(router, str) and router in GATES
                                        and router not in NEURAL_ROUTERS)

_LOG_2PI = math.log(2.0 * math.pi)


def _softplus(z):
    # log(1 + e^z) without torch's linear cut-off at z > 20 (jax.nn.softplus = logaddexp(z, 0)).
    return torch.logaddexp(z, torch.zeros_like(z))


#: Activations σ of the activation gate, matching :data:`moetheory.gates.ACTIVATIONS` by name.
TORCH_ACTIVATIONS: dict[str, Callable] = {
    "sigmoid": torch.sigmoid,
    "tanh": torch.tanh,
    "gelu": lambda z: F.gelu(z, approximate="none"),
    "softplus": _softplus,
    "identity": lambda z: z,
    "square": lambda z: z * z,
}


def register_torch_activation(name: str, fn: Callable, overwrite: bool = False) -> None:
    """Add the torch twin of an activation registered with :func:`moetheory.gates.register_activation`.

    Parameters
    ----------
    name : str
        Activation name (the same as in :data:`moetheory.gates.ACTIVATIONS`).
    fn : callable
        Elementwise torch function, tensor (n, k) -> tensor (n, k).
    overwrite : bool
        Replace an existing entry of :data:`TORCH_ACTIVATIONS`.

    Examples
    --------
    >>> register_torch_activation("softsign_demo", lambda z: z / (1 + z.abs()))
    >>> TORCH_ACTIVATIONS["softsign_demo"](torch.tensor([1.0])).tolist()
    [0.5]
    >>> register_torch_activation("tanh", torch.tanh)
    Traceback (most recent call last):
    ...
    ValueError: torch activation 'tanh' is already registered; pass overwrite=True
    >>> del TORCH_ACTIVATIONS["softsign_demo"]
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty string; got {name!r}")
    if not callable(fn):
        raise TypeError(f"fn must be callable; got {type(fn).__name__}")
    if name in TORCH_ACTIVATIONS and not overwrite:
        raise ValueError(f"torch activation {name!r} is already registered; pass overwrite=True")
    TORCH_ACTIVATIONS[name] = fn


@dataclass(frozen=True)
class DenseToSparseSchedule:
    """EvoMoE's dense-to-sparse temperature schedule.

    τ falls linearly from ``tau_start`` (2.0) to ``tau_end`` (0.5) over ``anneal_steps`` steps;
    from step ``hard_after`` (default: ``anneal_steps``) the gate is hard top-1.

    Examples
    --------
    >>> s = DenseToSparseSchedule(anneal_steps=100)
    >>> s.tau(0), s.tau(50), s.tau(100), s.is_hard(99), s.is_hard(100)
    (2.0, 1.25, 0.5, False, True)
    """

    tau_start: float = 2.0
    tau_end: float = 0.5
    anneal_steps: int = 1000
    hard_after: int | None = None

    def __post_init__(self):
        for name in ("tau_start", "tau_end"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"{name} must be a finite number > 0; got {v!r}")
        if isinstance(self.anneal_steps, bool) or not isinstance(self.anneal_steps, int) \
                or self.anneal_steps < 1:
            raise ValueError(f"anneal_steps must be an integer >= 1; got {self.anneal_steps!r}")
        if self.hard_after is not None and (isinstance(self.hard_after, bool)
                                            or not isinstance(self.hard_after, int)
                                            or self.hard_after < 0):
            raise ValueError(f"hard_after must be None or an integer >= 0; got {self.hard_after!r}")

    def tau(self, step: int) -> float:
        frac = min(max(step, 0) / self.anneal_steps, 1.0)
        return float(self.tau_start + (self.tau_end - self.tau_start) * frac)

    def is_hard(self, step: int) -> bool:
        start = self.anneal_steps if self.hard_after is None else self.hard_after
        return step >= start


class RouterOutput(NamedTuple):
    """What a router computes for a batch x (n, d).

    log_weights  (n, k) log w_i(x); ``-inf`` where expert i is not used
    probs        (n, k) the router's dense probabilities softmax(routing logits) (the P of the
                 load-balancing loss)
    mask         (n, k) bool, the experts the token is dispatched to (computed)

    Examples
    --------
    >>> layer = GaussianMoE(3, 2, "topk", top_k=1)
    >>> out = layer.route(torch.zeros(4, 2, dtype=torch.float64))
    >>> out.log_weights.shape, out.probs.shape, out.mask.dtype
    (torch.Size([4, 3]), torch.Size([4, 3]), torch.bool)
    >>> out.mask.sum(dim=1).tolist()   # top-1: one expert per row
    [1, 1, 1, 1]
    """

    log_weights: "torch.Tensor"
    probs: "torch.Tensor"
    mask: "torch.Tensor"


def topk_mask(score, k_active: int):
    """Boolean (n, k) mask of the ``k_active`` largest scores per row; ties go to the lower index.

    Same rule as :func:`moetheory.gates.active_mask` (rank_i = #{j : s_j > s_i, or s_j == s_i and
    j < i}); ``torch.topk`` does not promise an order among ties, so it is not used.

    Parameters
    ----------
    score : tensor (n, k)
        Selection scores.
    k_active : int
        Number of experts kept per row (``>= k`` keeps all).

    Returns
    -------
    bool tensor (n, k)

    Examples
    --------
    >>> topk_mask(torch.tensor([[1., 3., 3.], [0., 0., 0.]]), 2)
    tensor([[False,  True,  True],
            [ True,  True, False]])
    """
    k = score.shape[-1]
    if k_active >= k:
        return torch.ones(score.shape, dtype=torch.bool, device=score.device)
    idx = torch.arange(k, device=score.device)
    beats = (score[:, None, :] > score[:, :, None]) | (
        (score[:, None, :] == score[:, :, None]) & (idx[None, :] < idx[:, None])[None])
    return beats.sum(dim=-1) < k_active


def load_balancing_loss(probs, mask, weight: float = 1.0):
    """Switch Transformer load-balancing loss α · k · Σ_i f_i · P_i.

    Parameters
    ----------
    probs : tensor (n, k)
        Router probabilities p_i(x) (dense softmax of the routing logits).
    mask : bool tensor (n, k)
        Dispatch: which experts each token is sent to.
    weight : float
        α (Switch used 1e-2).

    f_i is the fraction of dispatches that go to expert i (Σ_i f_i = 1; for top-1 this is
    Switch's "fraction of tokens routed to i"), P_i = mean_x p_i(x). The loss is α at uniform
    routing and at most α·k.

    Examples
    --------
    >>> p = torch.tensor([[0.9, 0.1], [0.8, 0.2]], dtype=torch.float64)
    >>> round(float(load_balancing_loss(p, p > 0.5)), 12)  # f = (1, 0), P = (0.85, 0.15): 2 * 0.85
    1.7
    """
    if probs.ndim != 2 or mask.shape != probs.shape:
        raise ValueError(f"probs and mask must both have shape (n, k); got {tuple(probs.shape)} "
                         f"and {tuple(mask.shape)}")
    k = probs.shape[-1]
    m = mask.to(probs.dtype)
    total = m.sum()
    f = m.sum(dim=0) / torch.where(total > 0, total, torch.ones_like(total))
    P = probs.mean(dim=0)
    return weight * k * (f * P).sum()


def _exact_exp(log_param, log_shadow, shadow):
    """exp(log_param), but bit-equal to ``shadow`` while ``log_param`` still equals ``log_shadow``
    (the value it was imported with); the gradient is that of exp either way."""
    e = torch.exp(log_param)
    if torch.equal(log_param.detach(), log_shadow):
        return e + (shadow - e).detach()
    return e


class GaussianMoE(nn.Module):
    """Gaussian mixture of linear experts as a PyTorch module (see the module docstring).

    Parameters
    ----------
    n_experts, dim : int
        k and d.
    router : str
        One of :data:`ROUTERS`.
    top_k : int, optional
        K for ``"topk"`` and ``"noisy_topk"`` (``"switch"``: 1, ``"gshard_top2"``: 2).
    select_by : {"score", "logit"}
        Selection rule of ``"topk"`` (the neural routers always select by the logit).
    activation : str, optional
        σ of the ``"activation"`` router (a key of :data:`TORCH_ACTIVATIONS`).
    tau : float
        Initial τ of ``"temperature"``/``"activation"``.
    learn_tau : bool
        Make ``log_tau`` trainable (τ estimated; note the scale non-identifiability of the
        temperature gate, DESIGN.md §2.2).
    noise : bool
        ``"noisy_topk"``: add the trainable Gaussian noise in training mode.
    gumbel : bool
        ``"dense_to_sparse"``: add Gumbel noise in training mode.
    threshold : float
        ``"dense_to_sparse"``: experts with weight below it are dropped (EvoMoE: 1e-3).
    renormalize : bool
        ``"dense_to_sparse"``: renormalise the kept weights (EvoMoE does not; default False).
    hard_weight : {"pmax", "one"}
        ``"dense_to_sparse"`` hard phase: Switch-style weight p_max (default) or weight 1.
    schedule : DenseToSparseSchedule, optional
        ``"dense_to_sparse"`` temperature schedule (default: 2.0 → 0.5 over 1000 steps).
    dtype : torch dtype
        float64 by default (exact agreement with moetheory needs it).

    The layer takes x of shape (n, d) (or (n,) when d = 1) and y of shape (n,); ``forward(x)``
    returns shape (n,), :meth:`log_gate_weights` shape (n, k).

    Examples
    --------
    >>> layer = GaussianMoE(2, 1)
    >>> layer.gate_weight.shape, layer.log_var.shape, layer.gate_weight.dtype
    (torch.Size([2, 1]), torch.Size([2]), torch.float64)
    >>> x = torch.zeros(5, 1, dtype=torch.float64)
    >>> layer(x).shape, layer.gate_weights(x).shape
    (torch.Size([5]), torch.Size([5, 2]))
    """

    def __init__(self, n_experts: int, dim: int, router: str = "softmax", *, top_k: int | None = None,
                 select_by: str = "score", activation: str | None = None, tau: float = 1.0,
                 learn_tau: bool = False, noise: bool = True, gumbel: bool = True,
                 threshold: float = 1e-3, renormalize: bool = False, hard_weight: str = "pmax",
                 schedule: DenseToSparseSchedule | None = None, dtype=None):
        super().__init__()
        for name, v in (("n_experts", n_experts), ("dim", dim)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be an integer >= 1; got {v!r}")
        k, d = int(n_experts), int(dim)
        if not (_is_statistical(router) or router in NEURAL_ROUTERS):
            raise ValueError(f"router must be one of {ROUTERS} (or a registered gate); got {router!r}")
        if select_by not in SELECT_BY:
            raise ValueError(f"select_by must be one of {SELECT_BY}; got {select_by!r}")
        if not (isinstance(tau, (int, float)) and math.isfinite(tau) and tau > 0):
            raise ValueError(f"tau must be a finite number > 0; got {tau!r}")
        dtype = torch.float64 if dtype is None else dtype
        self.n_experts, self.dim = k, d
        self.select_by = select_by
        self.activation = None
        self.gate_spec = None  # the statistical gate's MoESpec (None for a neural router)
        self.learn_tau = bool(learn_tau)
        self.noise, self.gumbel = bool(noise), bool(gumbel)
        self.threshold, self.renormalize, self.hard_weight = float(threshold), bool(renormalize), hard_weight
        self.schedule = None
        self.generator = None  # optional torch.Generator for the routing noise
        if _is_statistical(router):
            # MoESpec validates the gate options with moetheory's own messages.
            spec = MoESpec(k, d, gate=router, top_k=top_k, select_by=select_by, activation=activation)
            if learn_tau and not spec.has_tau:
                raise ValueError(f"learn_tau needs router 'temperature' or 'activation'; got {router!r}")
            if learn_tau:
                spec = spec.with_(tau="estimated")
            self.gate_spec = spec
            router = spec.gate  # a built-in gate object is stored by name
            if spec.activation is not None:
                if activation not in TORCH_ACTIVATIONS:
                    raise ValueError(f"activation {activation!r} has no torch twin; known: "
                                     f"{sorted(TORCH_ACTIVATIONS)} (see register_torch_activation)")
                self.activation = activation
            self.top_k = top_k
        else:
            if activation is not None:
                raise ValueError(f"activation is only used by router='activation'; got {activation!r}")
            if learn_tau:
                raise ValueError(f"learn_tau needs router 'temperature' or 'activation'; got {router!r}")
            if router == "noisy_topk":
                if top_k is None or isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) \
                        or not 1 <= top_k <= k:
                    raise ValueError(f"router='noisy_topk' needs top_k, an integer in 1..{k}; got {top_k!r}")
                self.top_k = int(top_k)
            elif router == "switch":
                if top_k not in (None, 1):
                    raise ValueError(f"router='switch' is top-1; got top_k={top_k!r}")
                self.top_k = 1
            elif router == "gshard_top2":
                if k < 2:
                    raise ValueError(f"router='gshard_top2' needs n_experts >= 2; got {k}")
                if top_k not in (None, 2):
                    raise ValueError(f"router='gshard_top2' is top-2; got top_k={top_k!r}")
                self.top_k = 2
            else:  # dense_to_sparse
                if top_k is not None:
                    raise ValueError(f"router='dense_to_sparse' takes no top_k; got {top_k!r}")
                if not (0.0 <= threshold < 1.0 / k):
                    raise ValueError(f"threshold must be in [0, 1/n_experts) = [0, {1.0 / k:g}) so that "
                                     f"the top expert is always kept; got {threshold!r}")
                if hard_weight not in ("pmax", "one"):
                    raise ValueError(f"hard_weight must be 'pmax' or 'one'; got {hard_weight!r}")
                self.schedule = schedule if schedule is not None else DenseToSparseSchedule()
                if not isinstance(self.schedule, DenseToSparseSchedule):
                    raise TypeError(f"schedule must be a DenseToSparseSchedule; got {type(schedule).__name__}")
                self.top_k = None
                tau = self.schedule.tau(0)
        self.router = router
        z = lambda *shape: torch.zeros(shape, dtype=dtype)  # noqa: E731
        self.gate_weight = nn.Parameter(z(k, d))
        self.gate_bias = nn.Parameter(z(k))
        self.expert_weight = nn.Parameter(z(k, d))
        self.expert_bias = nn.Parameter(z(k))
        self.log_var = nn.Parameter(z(k))
        # further gate arrays (e.g. the Gaussian gate's covariances), identity-like at start
        extra = {} if self.gate_spec is None else self.gate_spec.gate_family.extra_shapes(self.gate_spec)
        self.gate_extra = nn.ParameterDict({
            name: nn.Parameter(torch.eye(shape[-1], dtype=dtype).expand(shape).clone()
                               if len(shape) == 3 and shape[-1] == shape[-2] else z(*shape))
            for name, shape in extra.items()})
        log_tau = torch.tensor(math.log(tau), dtype=dtype)
        if self.gate_spec is not None and self.gate_spec.has_tau:
            self.log_tau = nn.Parameter(log_tau, requires_grad=self.learn_tau)
        else:
            self.register_buffer("log_tau", log_tau)
        if router == "noisy_topk":
            self.noise_weight = nn.Parameter(z(k, d))
        self.register_buffer("hard", torch.tensor(False))
        self.register_buffer("var_shadow", torch.ones(k, dtype=dtype))
        self.register_buffer("log_var_shadow", z(k))
        self.register_buffer("tau_shadow", torch.tensor(float(tau), dtype=dtype))
        self.register_buffer("log_tau_shadow", log_tau.clone())

    # ---------------------------------------------------------------- parameters as moetheory sees them

    @property
    def var(self):
        """Expert variances ν (k,), exactly the imported values until ``log_var`` is changed."""
        return _exact_exp(self.log_var, self.log_var_shadow, self.var_shadow)

    @property
    def tau(self):
        """Temperature τ (0-d), exactly the imported value until ``log_tau`` is changed."""
        return _exact_exp(self.log_tau, self.log_tau_shadow, self.tau_shadow)

    @torch.no_grad()
    def set_params(self, params: MoEParams, noise_weight=None) -> "GaussianMoE":
        """Copy moetheory parameters into the layer (bit-exact; variances and τ via shadows)."""
        k, d = self.n_experts, self.dim
        expected = {"beta0": (k,), "beta1": (k, d), "a": (k, d), "b": (k,), "var": (k,), "tau": ()}
        expected.update({name: tuple(p.shape) for name, p in self.gate_extra.items()})
        arrays = params.arrays()
        for name, shape in expected.items():
            got = np.shape(arrays[name]) if name in arrays else None
            if got != shape:
                raise ValueError(f"params.{name} must have shape {shape} for this layer; got {got}")
        as_t = lambda v: torch.as_tensor(np.array(v, dtype=np.float64), dtype=self.gate_weight.dtype)  # noqa: E731
        var, tau = as_t(params.var), as_t(params.tau)
        if not bool(torch.all(var > 0)) or not bool(tau > 0):
            raise ValueError(f"params.var and params.tau must be > 0; got var={params.var}, tau={params.tau}")
        self.gate_weight.copy_(as_t(params.beta1))
        self.gate_bias.copy_(as_t(params.beta0))
        self.expert_weight.copy_(as_t(params.a))
        self.expert_bias.copy_(as_t(params.b))
        for name, p in self.gate_extra.items():
            p.copy_(as_t(params.extra[name]))
        self.log_var.copy_(torch.log(var))
        self.var_shadow.copy_(var)
        self.log_var_shadow.copy_(self.log_var)
        self.log_tau.copy_(torch.log(tau))
        self.tau_shadow.copy_(tau)
        self.log_tau_shadow.copy_(self.log_tau)
        if noise_weight is not None:
            if self.router != "noisy_topk":
                raise ValueError("noise_weight is only used by router='noisy_topk'")
            self.noise_weight.copy_(as_t(noise_weight).reshape(k, d))
        return self

    @torch.no_grad()
    def set_step(self, step: int) -> "GaussianMoE":
        """Apply the dense-to-sparse schedule at training ``step`` (sets τ and the hard flag)."""
        if self.router != "dense_to_sparse":
            return self
        tau = torch.tensor(self.schedule.tau(step), dtype=self.log_tau.dtype)
        self.log_tau.copy_(torch.log(tau))
        self.tau_shadow.copy_(tau)
        self.log_tau_shadow.copy_(self.log_tau)
        self.hard.fill_(self.schedule.is_hard(step))
        return self

    # ---------------------------------------------------------------- computation

    def _as_x(self, x):
        if isinstance(x, np.ndarray) and not x.flags.writeable:
            x = x.copy()  # torch warns on read-only arrays (e.g. from JAX)
        x = torch.as_tensor(x, dtype=self.gate_weight.dtype)
        if x.ndim == 1 and self.dim == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"x must have shape (n, {self.dim}) (or (n,) when dim=1); got {tuple(x.shape)}")
        return x

    def _as_y(self, y, n):
        if isinstance(y, np.ndarray) and not y.flags.writeable:
            y = y.copy()
        y = torch.as_tensor(y, dtype=self.gate_weight.dtype)
        if y.ndim == 2 and y.shape[1] == 1:
            y = y[:, 0]
        if y.shape != (n,):
            raise ValueError(f"y must have shape ({n},) to match x; got {tuple(y.shape)}")
        return y

    def route(self, x) -> RouterOutput:
        """Router weights, dense probabilities and dispatch mask for x (n, d)."""
        x = self._as_x(x)
        if self.gate_spec is not None:  # a statistical gate routes by its own torch code
            tensors = {"beta0": self.gate_bias, "beta1": self.gate_weight, "tau": self.tau,
                       **dict(self.gate_extra.items())}
            return RouterOutput(*self.gate_spec.gate_family.torch_log_weights(self.gate_spec, tensors, x))
        score = x @ self.gate_weight.T
        h = score + self.gate_bias
        r = self.router
        ninf = -math.inf
        if r == "noisy_topk":
            if self.training and self.noise:
                eps = torch.randn(h.shape, dtype=h.dtype, generator=self.generator)
                h = h + eps * F.softplus(x @ self.noise_weight.T)
            mask = topk_mask(h, self.top_k)
            logw = F.log_softmax(h.masked_fill(~mask, ninf), dim=-1)
            return RouterOutput(logw, F.softmax(h, dim=-1), mask)
        if r == "gshard_top2":
            mask = topk_mask(h, 2)
            logw = F.log_softmax(h.masked_fill(~mask, ninf), dim=-1)
            return RouterOutput(logw, F.softmax(h, dim=-1), mask)
        if r == "switch" or (r == "dense_to_sparse" and bool(self.hard)):
            if r == "dense_to_sparse":
                h = h / self.tau  # τ stays at its final value in the hard phase (no jump)
            logp = F.log_softmax(h, dim=-1)
            mask = topk_mask(h, 1)
            if r == "dense_to_sparse" and self.hard_weight == "one":
                logw = torch.zeros_like(logp).masked_fill(~mask, ninf)
            else:
                logw = logp.masked_fill(~mask, ninf)
            return RouterOutput(logw, logp.exp(), mask)
        # dense_to_sparse, soft phase: Gumbel-softmax with temperature, then the threshold.
        if self.training and self.gumbel:
            u = torch.empty(h.shape, dtype=h.dtype).exponential_(generator=self.generator)
            h = h - torch.log(u)  # + Gumbel(0, 1)
        ht = h / self.tau
        logp = F.log_softmax(ht, dim=-1)
        mask = logp >= math.log(self.threshold) if self.threshold > 0 else torch.ones_like(h, dtype=torch.bool)
        if self.renormalize:
            logw = F.log_softmax(ht.masked_fill(~mask, ninf), dim=-1)
        else:
            logw = logp.masked_fill(~mask, ninf)
        return RouterOutput(logw, logp.exp(), mask)

    def log_gate_weights(self, x):
        """log w_i(x), (n, k); ``-inf`` for unused experts."""
        return self.route(x).log_weights

    def gate_weights(self, x):
        """w_i(x), (n, k)."""
        return self.route(x).log_weights.exp()

    def expert_means(self, x):
        """a_iᵀx + b_i, (n, k)."""
        x = self._as_x(x)
        return x @ self.expert_weight.T + self.expert_bias

    def log_expert_density(self, x, y):
        """log N(y_n; a_iᵀx_n + b_i, ν_i), (n, k)."""
        x = self._as_x(x)
        y = self._as_y(y, x.shape[0])
        resid = y[:, None] - self.expert_means(x)
        return -0.5 * (_LOG_2PI + torch.log(self.var) + resid * resid / self.var)

    def log_density(self, x, y, route: RouterOutput | None = None):
        """log Σ_i w_i(x_n) N(y_n; ...), (n,) (sub-normalised for ``switch``: Σ w = p_max)."""
        x = self._as_x(x)
        if route is None:
            route = self.route(x)
        return torch.logsumexp(route.log_weights + self.log_expert_density(x, y), dim=-1)

    def nll(self, x, y, reduction: str = "sum"):
        """Negative log-likelihood −Σ_n log p(y_n | x_n) (``reduction="mean"``: divided by n)."""
        if reduction not in ("sum", "mean"):
            raise ValueError(f"reduction must be 'sum' or 'mean'; got {reduction!r}")
        ld = self.log_density(x, y)
        return -(ld.sum() if reduction == "sum" else ld.mean())

    def aux_loss(self, x, weight: float = 1.0, route: RouterOutput | None = None):
        """Switch load-balancing loss (:func:`load_balancing_loss`) on the layer's dispatch.

        For the dense routers (softmax, temperature, activation) every expert is computed, so
        the dispatch is uniform and the loss is the constant α.
        """
        if route is None:
            route = self.route(x)
        return load_balancing_loss(route.probs, route.mask, weight)

    def forward(self, x):
        """Layer output Σ_i w_i(x)(a_iᵀx + b_i), (n,)."""
        x = self._as_x(x)
        w = self.route(x).log_weights.exp()
        return (w * self.expert_means(x)).sum(dim=-1)

    def extra_repr(self) -> str:
        opts = [f"n_experts={self.n_experts}", f"dim={self.dim}", f"router={self.router!r}"]
        if self.top_k is not None:
            opts.append(f"top_k={self.top_k}")
        if self.gate_spec is not None and self.gate_spec.top_k is not None:
            opts.append(f"select_by={self.select_by!r}")
        if self.activation is not None:
            opts.append(f"activation={self.activation!r}")
        return ", ".join(opts)


# ---------------------------------------------------------------------------------------- export / import

_NEURAL_FROM_SPEC = {
    "noisy_topk": "spec gate='topk' with select_by='logit' (top_k = K)",
    "switch": "spec gate='topk', top_k=1, select_by='logit'",
    "gshard_top2": "spec gate='topk', top_k=2, select_by='logit'",
    "dense_to_sparse": "spec gate='temperature' with tau='fixed' (τ = the current temperature)",
}


def to_torch(spec: MoESpec, params: MoEParams, router: str | None = None, **options) -> GaussianMoE:
    """A float64 :class:`GaussianMoE` with exactly the parameters ``params`` of ``spec``.

    Parameters
    ----------
    spec : MoESpec
    params : MoEParams (unbatched)
    router : str, optional
        Default: the statistical router of ``spec.gate``. A neural router may be requested when
        it shares the parameters of the spec (see ``_NEURAL_FROM_SPEC``): ``noisy_topk``,
        ``switch``, ``gshard_top2`` from a top-K spec selecting by logit; ``dense_to_sparse``
        from a temperature spec (τ becomes its current temperature; a warning says when the
        layer's schedule would start training from another τ).
    **options
        Further :class:`GaussianMoE` options (e.g. ``schedule``, ``threshold``).

    Examples
    --------
    >>> spec = MoESpec(2, 1)
    >>> p = MoEParams.create([-8., 0.], [[25.], [0.]], [[-20.], [20.]], [15., -5.], [.09, .16])
    >>> from_torch(to_torch(spec, p))[1].var.tolist()
    [0.09, 0.16]
    """
    if not isinstance(spec, MoESpec):
        raise TypeError(f"spec must be a MoESpec; got {type(spec).__name__}")
    if not isinstance(params, MoEParams):
        raise TypeError(f"params must be a MoEParams; got {type(params).__name__}")
    check_params(spec, params)
    router = spec.gate if router is None else router
    if not (_is_statistical(router) or router in NEURAL_ROUTERS):
        raise ValueError(f"router must be one of {ROUTERS}; got {router!r}")
    kw = dict(options)
    if _is_statistical(router):
        if router != spec.gate:
            raise ValueError(f"router={router!r} does not match spec.gate={spec.gate!r}")
        kw.update(top_k=spec.top_k, select_by=spec.select_by, activation=spec.activation,
                  tau=float(params.tau), learn_tau=spec.estimates_tau)
    else:
        # the neural routers that share their parameters with this gate (the gate says)
        if router not in spec.gate_family.neural_routers(spec):
            raise ValueError(f"router={router!r} shares its parameters with a {_NEURAL_FROM_SPEC[router]}; "
                             f"got {spec}")
        if router == "noisy_topk":
            kw["top_k"] = spec.top_k
    noise_weight = kw.pop("noise_weight", None)
    layer = GaussianMoE(spec.n_experts, spec.dim, router, dtype=torch.float64, **kw)
    layer.set_params(params, noise_weight=noise_weight)
    start = layer.schedule.tau(0) if router == "dense_to_sparse" else None
    if start is not None and start != float(params.tau):
        warnings.warn(f"the dense-to-sparse schedule starts at tau = {start}: training "
                      f"(train_layer, set_step) replaces the exported tau = {float(params.tau)}; "
                      f"pass schedule=DenseToSparseSchedule(tau_start={float(params.tau)}) to "
                      f"start from it", UserWarning, stacklevel=2)
    return layer


def _params_of(module: GaussianMoE) -> MoEParams:
    get = lambda t: np.array(t.detach().cpu().numpy(), dtype=np.float64)  # noqa: E731
    return MoEParams(get(module.gate_bias), get(module.gate_weight), get(module.expert_weight),
                     get(module.expert_bias), get(module.var), get(module.tau).reshape(()),
                     {name: get(p) for name, p in module.gate_extra.items()})


def statistical_equivalent(module: GaussianMoE):
    """The statistical gate nearest to the module's router.

    Returns ``(spec, params, exact, note)``: ``exact`` is True when the module's conditional
    density (in eval mode, i.e. without routing noise) equals that of ``(spec, params)``.

    Parameters
    ----------
    module : GaussianMoE
        A layer with k experts in dimension d.

    Returns
    -------
    spec : MoESpec
    params : MoEParams
        ``beta0`` (k,), ``beta1`` (k, d), ``a`` (k, d), ``b`` (k,), ``var`` (k,), ``tau`` ().
    exact : bool
    note : str
        How the router maps onto the statistical gate.

    Examples
    --------
    >>> spec, params, exact, note = statistical_equivalent(GaussianMoE(2, 1, "gshard_top2"))
    >>> spec.gate, spec.top_k, spec.select_by, exact, params.beta1.shape
    ('topk', 2, 'logit', True, (2, 1))
    >>> statistical_equivalent(GaussianMoE(2, 1, "switch"))[2]
    False
    """
    if not isinstance(module, GaussianMoE):
        raise TypeError(f"module must be a GaussianMoE; got {type(module).__name__}")
    k, d, r = module.n_experts, module.dim, module.router
    params = _params_of(module)
    if module.gate_spec is not None:
        return module.gate_spec, params, True, "statistical router: exact"
    hard = r == "switch" or (r == "dense_to_sparse" and bool(module.hard))
    if r == "noisy_topk":
        spec = MoESpec(k, d, gate="topk", top_k=module.top_k, select_by="logit")
        note = "eval mode (no noise) equals topk with select_by='logit'; training noise is not a gate"
        return spec, params, True, note
    if r == "gshard_top2":
        return MoESpec(k, d, gate="topk", top_k=2, select_by="logit"), params, True, \
            "top-2 renormalised softmax = topk K=2 select_by='logit'"
    if hard:
        spec = MoESpec(k, d, gate="topk", top_k=1, select_by="logit")
        exact = r == "dense_to_sparse" and module.hard_weight == "one"
        note = ("top-1 routing = topk K=1 select_by='logit'; " +
                ("weight 1 as in the statistical gate" if exact else
                 "but the weight p_max < 1 makes the layer density sub-normalised"))
        if r == "dense_to_sparse":  # logits h/τ: fold τ into the gate
            params = params._replace(beta0=params.beta0 / params.tau, beta1=params.beta1 / params.tau,
                                     tau=np.asarray(1.0))
        return spec, params, exact, note
    # dense_to_sparse, soft phase
    spec = MoESpec(k, d, gate="temperature")
    exact = module.threshold == 0
    note = ("softmax((h)/τ) = temperature gate at the current τ (without Gumbel noise)" +
            ("" if exact else f"; weights below threshold={module.threshold:g} are dropped"))
    return spec, params, exact, note


def from_torch(module: GaussianMoE, approximate: bool = False):
    """``(spec, params)`` of a :class:`GaussianMoE` (inverse of :func:`to_torch`, bit-exact).

    For a neural router without an exact statistical twin (``switch``; ``dense_to_sparse``
    with a threshold or p_max weight), pass ``approximate=True`` to get its nearest statistical
    gate (see :func:`statistical_equivalent`); otherwise a ValueError explains the mismatch.
    ``noisy_topk`` and ``gshard_top2`` map exactly (in eval mode).

    Parameters
    ----------
    module : GaussianMoE
        A layer with k experts in dimension d.
    approximate : bool
        Accept the nearest statistical gate when there is no exact one.

    Returns
    -------
    spec : MoESpec
    params : MoEParams
        ``beta0`` (k,), ``beta1`` (k, d), ``a`` (k, d), ``b`` (k,), ``var`` (k,), ``tau`` ().

    Examples
    --------
    >>> p = MoEParams.create([-8., 0.], [[25.], [0.]], [[-20.], [20.]], [15., -5.], [.09, .16])
    >>> spec, q = from_torch(to_torch(MoESpec(2, 1), p))
    >>> spec.gate, q.beta1.tolist()
    ('softmax', [[25.0], [0.0]])
    >>> from_torch(GaussianMoE(2, 1, "switch"), approximate=True)[0].top_k
    1
    """
    spec, params, exact, note = statistical_equivalent(module)
    if not exact and not approximate:
        raise ValueError(f"router {module.router!r} has no exact statistical gate ({note}); pass "
                         f"approximate=True for the nearest one, {spec}")
    return spec, params
