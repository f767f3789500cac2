"""Import router and expert weights laid out as neural MoE libraries store them.

Neural MoE code stores a router as a bias-free ``nn.Linear(d, k)`` (weight (k, d)), sometimes as
a (d, k) kernel (Flax/JAX "in, out" layout), and experts as stacked weights: (k, d), (k, d, 1)
(einsum ``"nd,kdo->nko"`` style), (k, 1, d) (k stacked ``nn.Linear(d, 1)`` weights), one packed
``nn.Linear(d, k)`` whose output i is expert i, or a list of ``nn.Linear(d, 1)``. A Gaussian MoE
also needs expert variances, which regression layers do not store: pass ``var``/``log_var``/``std``.

Normalisation (done before any loss is computed)
------------------------------------------------
* **Scale.** A router temperature T (logits h/T) is folded into the gate for softmax and top-K
  gates: β ← β/T, τ = 1. For the temperature and activation gates, whose (β, τ) scale is the
  gate's own freedom, τ = T is kept as given (the fixed-τ convention of DESIGN.md §2.2; with τ
  estimated this is the stated normalisation: the imported router's temperature is the
  representative).
* **Translation.** Softmax, top-K and temperature gates are invariant to a common shift of
  (β_0, β_1): the last expert's gate is pinned to zero, as moetheory's estimators do
  (:meth:`MoEParams.pinned`). The activation gate is invariant only to a shift of β_0, so only
  the last β_0 is pinned.
"""
from __future__ import annotations

import math

import numpy as np

from moetheory.bridge import require_torch
from moetheory.params import MoEParams
from moetheory.spec import MoESpec

torch = require_torch()
from torch import nn  # noqa: E402


def _array(value, name):
    if isinstance(value, torch.Tensor):
        return value.detach().cpu().to(torch.float64).numpy().copy()
    try:
        arr = np.array(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be a tensor, array or nn.Linear; got {type(value).__name__}") from exc
    return arr


def _router(router, router_bias, layout):
    if layout not in ("out_in", "in_out"):
        raise ValueError(f"router_layout must be 'out_in' ((k, d), nn.Linear) or 'in_out' ((d, k)); got {layout!r}")
    bias = None
    if isinstance(router, nn.Linear):
        w = _array(router.weight, "router.weight")  # (k, d) = (out_features, in_features)
        if router.bias is not None:
            bias = _array(router.bias, "router.bias")
        if layout != "out_in":
            raise ValueError("router is an nn.Linear, whose weight is (out, in) = (k, d): use router_layout='out_in'")
    else:
        w = _array(router, "router")
        if w.ndim != 2:
            raise ValueError(f"router must be a 2-d weight ({'(k, d)' if layout == 'out_in' else '(d, k)'}); "
                             f"got shape {w.shape}")
        if layout == "in_out":
            w = w.T
    if router_bias is not None:
        if bias is not None:
            raise ValueError("router_bias given twice: the router nn.Linear already has a bias")
        bias = _array(router_bias, "router_bias")
    k, d = w.shape
    if bias is None:
        bias = np.zeros(k)
    bias = bias.reshape(-1) if bias.ndim == 2 and 1 in bias.shape else bias
    if bias.shape != (k,):
        raise ValueError(f"router_bias must have shape (k,) = ({k},) to match the router weight {w.shape}; "
                         f"got {bias.shape}")
    return w, bias


def _experts(experts, expert_bias, k, d):
    bias = None
    if isinstance(experts, nn.Linear):
        w = _array(experts.weight, "experts.weight")
        if experts.bias is not None:
            bias = _array(experts.bias, "experts.bias")
    elif isinstance(experts, (list, tuple, nn.ModuleList)) and experts and all(
            isinstance(e, nn.Linear) for e in experts):
        if len(experts) != k:
            raise ValueError(f"experts has {len(experts)} nn.Linear modules but the router has k={k} experts")
        ws, bs = [], []
        for i, e in enumerate(experts):
            wi = _array(e.weight, f"experts[{i}].weight")
            if wi.shape != (1, d):
                raise ValueError(f"experts[{i}] must be nn.Linear({d}, 1) (weight (1, {d})); got weight {wi.shape}")
            ws.append(wi[0])
            bs.append(0.0 if e.bias is None else float(_array(e.bias, f"experts[{i}].bias")[0]))
        w, bias = np.stack(ws), np.array(bs)
    else:
        w = _array(experts, "experts")
    shape = w.shape
    if shape == (k, d, 1) or shape == (k, 1, d):
        w = w.reshape(k, d)
    elif shape != (k, d):
        raise ValueError(f"experts must have shape (k, d) = ({k}, {d}), (k, d, 1) or (k, 1, d) to match the "
                         f"router weight ({k}, {d}); got {shape}")
    if expert_bias is not None:
        if bias is not None:
            raise ValueError("expert_bias given twice: the experts module already has biases")
        bias = _array(expert_bias, "expert_bias")
    if bias is None:
        bias = np.zeros(k)
    if bias.shape in ((k, 1), (1, k)):
        bias = bias.reshape(k)
    if bias.shape != (k,):
        raise ValueError(f"expert_bias must have shape (k,) = ({k},) (or (k, 1)); got {bias.shape}")
    return w, bias


def _variances(var, log_var, std, k):
    given = [n for n, v in (("var", var), ("log_var", log_var), ("std", std)) if v is not None]
    if len(given) != 1:
        raise ValueError("a Gaussian MoE needs the expert noise level: pass exactly one of var= (variances), "
                         f"log_var= or std= (scalar or shape (k,) = ({k},)); got {given or 'none'}")
    name = given[0]
    arr = _array({"var": var, "log_var": log_var, "std": std}[name], name)
    if arr.ndim == 0:
        arr = np.full(k, float(arr))
    if arr.shape in ((k, 1), (1, k)):
        arr = arr.reshape(k)
    if arr.shape != (k,):
        raise ValueError(f"{name} must be a scalar or have shape (k,) = ({k},); got {arr.shape}")
    if name == "log_var":
        arr = np.exp(arr)
    elif name == "std":
        arr = arr * arr
    if not np.all(np.isfinite(arr)) or np.any(arr <= 0):
        raise ValueError(f"{name} must give finite variances > 0; got {arr}")
    return arr


def normalize_gate(spec: MoESpec, params: MoEParams) -> MoEParams:
    """Pin the translation freedom of the gate: the gate's own normalisation
    (:func:`moetheory.gates.pin`; see the module docstring).

    Parameters
    ----------
    spec : MoESpec
        Gives the gate (the activation gate pins only ``beta0``, σ = identity also ``beta1``).
    params : MoEParams
        Gate fields ``beta0`` of shape (..., k) and ``beta1`` of shape (..., k, d).

    Returns
    -------
    MoEParams
        ``params`` with the last expert's ``beta0`` (and, except for the activation gate, its
        ``beta1`` row) shifted to zero; the other fields unchanged.

    Examples
    --------
    >>> p = MoEParams.create([1., 3.], [[2.], [5.]], [[0.], [0.]], [0., 0.], [1., 1.])
    >>> q = normalize_gate(MoESpec(2, 1), p)
    >>> q.beta0.tolist(), q.beta1.tolist()
    ([-2.0, 0.0], [[-3.0], [0.0]])
    >>> q = normalize_gate(MoESpec(2, 1, gate="activation", activation="tanh"), p)
    >>> q.beta0.tolist(), q.beta1.tolist()
    ([-2.0, 0.0], [[2.0], [5.0]])
    """
    return spec.gate_family.pin(spec, params)


def import_moe(router, experts, *, router_bias=None, expert_bias=None, var=None, log_var=None,
               std=None, temperature: float = 1.0, gate: str = "softmax", top_k: int | None = None,
               select_by: str = "logit", activation: str | None = None, tau: str = "fixed",
               router_layout: str = "out_in", normalize: bool = True):
    """Build ``(spec, params)`` from neural router/expert weights.

    Parameters
    ----------
    router : nn.Linear(d, k), or a weight array/tensor (k, d) (``router_layout="out_in"``,
        PyTorch's layout) or (d, k) (``router_layout="in_out"``, e.g. a Flax kernel)
    experts : (k, d), (k, d, 1) or (k, 1, d) weights, a packed nn.Linear(d, k), or a list of k
        nn.Linear(d, 1)
    router_bias, expert_bias : (k,), optional (default: taken from the modules, else zero)
    var, log_var, std : scalar or (k,) — exactly one: the experts' noise level
    temperature : float
        The router's temperature T (logits divided by T).
    gate, top_k, select_by, activation, tau : the statistical gate to import into (see
        :class:`MoESpec`). Neural top-K routers select by the logit, hence ``select_by="logit"``
        is the default here.
    normalize : bool
        Pin the gate translation (the scale is always normalised as documented).

    Returns
    -------
    (MoESpec, MoEParams)

    Examples
    --------
    >>> router = nn.Linear(1, 2, bias=False)
    >>> spec, p = import_moe(router, torch.zeros(2, 1, 1), var=0.1)
    >>> p.beta1[-1].tolist(), spec.gate
    ([0.0], 'softmax')
    """
    w, b0 = _router(router, router_bias, router_layout)
    k, d = w.shape
    a, b = _experts(experts, expert_bias, k, d)
    v = _variances(var, log_var, std, k)
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0; got {temperature!r}")
    from moetheory.gates.registry import SPEC_OPTIONS

    uses_select = "select_by" in SPEC_OPTIONS.get(gate, ()) if isinstance(gate, str) else False
    spec = MoESpec(k, d, gate=gate, top_k=top_k, select_by=select_by if uses_select else "score",
                   activation=activation, tau=tau)
    if spec.has_tau:
        params = MoEParams.create(b0, w, a, b, v, tau=float(temperature))
    else:
        params = MoEParams.create(b0 / temperature, w / temperature, a, b, v)
    if normalize:
        params = normalize_gate(spec, params)
    return spec, params


def import_layer(router, experts, *, layer_router: str | None = None, layer_options: dict | None = None,
                 **kwargs):
    """Like :func:`import_moe`, but return a normalised :class:`~moetheory.bridge.torch.GaussianMoE`.

    ``layer_router`` picks a neural router sharing the parameters (e.g. ``"switch"`` for
    ``gate="topk", top_k=1``); ``layer_options`` go to the layer.

    Parameters
    ----------
    router : nn.Linear(d, k), or a weight array/tensor (k, d) or (d, k)
        As in :func:`import_moe`.
    experts : weights (k, d), (k, d, 1) or (k, 1, d), nn.Linear(d, k), or list of nn.Linear(d, 1)
        As in :func:`import_moe`.
    layer_router : str, optional
        Router of the returned layer (default: the statistical router of ``gate``).
    layer_options : dict, optional
        Further :class:`~moetheory.bridge.torch.GaussianMoE` options.
    **kwargs
        Keyword arguments of :func:`import_moe` (``var``/``log_var``/``std``, ``gate``, ...).

    Returns
    -------
    GaussianMoE
        float64 layer with the normalised parameters.

    Examples
    --------
    >>> layer = import_layer(torch.tensor([[2.], [5.]]), torch.zeros(2, 1), var=1.0)
    >>> layer.router, layer.gate_weight.tolist()
    ('softmax', [[-3.0], [0.0]])
    >>> r = nn.Linear(1, 2, bias=False)
    >>> import_layer(r, torch.zeros(2, 1), var=1.0, gate="topk", top_k=1, layer_router="switch").router
    'switch'
    """
    from moetheory.bridge.torch import to_torch

    spec, params = import_moe(router, experts, **kwargs)
    return to_torch(spec, params, router=layer_router, **(layer_options or {}))
