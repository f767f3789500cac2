"""Train a :class:`~moetheory.bridge.torch.GaussianMoE` by Adam on data from a declared truth.

:func:`train_layer` minimises the mean negative log-likelihood (plus an optional Switch
load-balancing term) by Adam, full-batch or mini-batch, and records at chosen steps

* ``loss``: the Voronoi loss (:func:`moetheory.losses.voronoi_loss` with the gate's own
  translation, :func:`moetheory.losses.gate_translation`, and identified coordinates β/τ) of the learned model's statistical equivalent
  (:func:`~moetheory.bridge.torch.statistical_equivalent`: the clean router for noisy top-K,
  the current τ for dense-to-sparse) against the truth;
* per-parameter errors (:func:`moetheory.losses.matched_errors` when k = k*, else the
  within-cell maxima of :func:`moetheory.losses.cell_errors`);
* routing statistics (:func:`routing_stats`): expert utilisation (mean gate weight), dispatch
  fractions, routing entropy and the dead-expert fraction;
* the mean NLL on the whole sample (eval mode: no routing noise).
"""
from __future__ import annotations

import math
import time
from typing import NamedTuple

import numpy as np

from moetheory.bridge import require_torch
from moetheory.params import MoEParams

torch = require_torch()

from moetheory.bridge.torch import GaussianMoE, statistical_equivalent  # noqa: E402


class TrainResult(NamedTuple):
    """Output of :func:`train_layer`.

    records   list of dicts, one per recorded step (JSON-ready: floats and lists)
    params    MoEParams of the final statistical equivalent
    spec      its MoESpec
    failed    True when the loss became non-finite (training stopped there)
    wall_s    training time in seconds

    ``params`` has ``beta0`` (k,), ``beta1`` (k, d), ``a`` (k, d), ``b`` (k,), ``var`` (k,),
    ``tau`` ().

    Examples
    --------
    >>> x = np.linspace(0.0, 1.0, 50)[:, None]                  # (n, d) = (50, 1)
    >>> y = np.where(x[:, 0] < 0.5, -1.0, 1.0)                  # (n,)
    >>> res = train_layer(GaussianMoE(2, 1), x, y, steps=5)
    >>> [r["step"] for r in res.records], res.failed, res.spec.gate, res.params.beta1.shape
    ([0, 5], False, 'softmax', (2, 1))
    """

    records: list
    params: MoEParams
    spec: object
    failed: bool
    wall_s: float


def simulate(truth: MoEParams, n: int, *, spec=None, design: str = "grid", low: float = 0.0,
             high: float = 1.0, seed: int = 0):
    """Draw (x, y) from a moetheory truth: x from a design (default: grid on [0, 1]), y ~ p(y|x).

    Returns NumPy float64 arrays x (n, d), y (n,). Same seed → same data.

    Parameters
    ----------
    truth : MoEParams
        True parameters: ``beta0`` (k,), ``beta1`` (k, d), ``a`` (k, d), ``b`` (k,),
        ``var`` (k,).
    n : int
        Sample size.
    spec : MoESpec, optional
        Gate of the truth (default: softmax with k experts in dimension d).
    design : str
        Covariate design of :func:`moetheory.designs.make_design` (default ``"grid"``).
    low, high : float
        Covariate range.
    seed : int

    Returns
    -------
    x : ndarray, shape (n, d)
    y : ndarray, shape (n,)

    Examples
    --------
    >>> truth = MoEParams.create([-8., 0.], [[25.], [0.]], [[-20.], [20.]], [15., -5.], [.09, .16])
    >>> x, y = simulate(truth, 100, seed=0)
    >>> x.shape, y.shape, x[:2, 0].tolist()
    ((100, 1), (100,), [0.0, 0.010101010101010102])
    >>> bool((simulate(truth, 100, seed=0)[1] == y).all())
    True
    """
    import jax

    from moetheory._jax import ensure_x64
    from moetheory.designs import make_design
    from moetheory.model import sample
    from moetheory.spec import MoESpec

    ensure_x64()
    spec = MoESpec(truth.n_experts, truth.dim) if spec is None else spec
    kx, ky = jax.random.split(jax.random.key(seed))
    x = make_design(kx, design, int(n), truth.dim, low=low, high=high)
    y = sample(ky, spec, truth, x)
    return np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)


@torch.no_grad()
def random_init(layer: GaussianMoE, x, y, seed: int = 0, gate_scale: float = 0.1) -> GaussianMoE:
    """A data-driven random start, as a practitioner would use (no knowledge of the truth).

    Router weights ~ N(0, gate_scale²), router bias 0; expert intercepts at the quantiles
    (i + ½)/k of y, expert slopes ~ N(0, (0.1·sd(y)/sd(x))²); variances Var(y).

    Parameters
    ----------
    layer : GaussianMoE
        Layer with k experts in dimension d; overwritten in place.
    x : array, shape (n, d) or (n,)
    y : array, shape (n,)
    seed : int
        Seeds the random router weights and expert slopes.
    gate_scale : float
        Standard deviation of the router weights.

    Returns
    -------
    GaussianMoE
        ``layer`` itself.

    Examples
    --------
    >>> truth = MoEParams.create([-8., 0.], [[25.], [0.]], [[-20.], [20.]], [15., -5.], [.09, .16])
    >>> x, y = simulate(truth, 100, seed=0)
    >>> layer = random_init(GaussianMoE(2, 1), x, y, seed=0)
    >>> layer.gate_bias.tolist(), bool(np.allclose(layer.var.tolist(), np.var(y)))
    ([0.0, 0.0], True)
    >>> bool(np.allclose(layer.expert_bias.tolist(), np.quantile(y, [0.25, 0.75])))
    True
    """
    g = torch.Generator().manual_seed(int(seed))
    x = np.asarray(x, dtype=np.float64).reshape(len(y), -1)
    y = np.asarray(y, dtype=np.float64)
    k, d = layer.n_experts, layer.dim
    dt = layer.gate_weight.dtype
    sx = float(np.mean(np.std(x, axis=0))) or 1.0
    sy = float(np.std(y)) or 1.0
    layer.gate_weight.copy_(gate_scale * torch.randn((k, d), generator=g, dtype=dt))
    layer.gate_bias.zero_()
    layer.expert_weight.copy_(0.1 * sy / sx * torch.randn((k, d), generator=g, dtype=dt))
    layer.expert_bias.copy_(torch.as_tensor(np.quantile(y, (np.arange(k) + 0.5) / k), dtype=dt))
    layer.log_var.fill_(math.log(max(float(np.var(y)), 1e-12)))
    if layer.router == "noisy_topk":
        layer.noise_weight.zero_()
    return layer


@torch.no_grad()
def routing_stats(layer: GaussianMoE, x, dead_tol: float = 1e-3) -> dict:
    """Utilisation and routing diagnostics of ``layer`` on x (eval mode, no noise).

    Returns a dict with ``utilisation`` (k,): mean_x w_i(x); ``dispatch`` (k,): fraction of x
    dispatched to i; ``entropy``: mean_x −Σ_i w̄_i log w̄_i of the normalised weights (nats);
    ``dead_fraction``: share of experts with utilisation < ``dead_tol``.

    Parameters
    ----------
    layer : GaussianMoE
        Layer with k experts in dimension d.
    x : array or tensor, shape (n, d) (or (n,) when d = 1)
    dead_tol : float
        Utilisation below which an expert counts as dead.

    Returns
    -------
    dict
        ``utilisation`` and ``dispatch``: lists of length k; ``entropy`` and
        ``dead_fraction``: floats.

    Examples
    --------
    >>> from moetheory.bridge.torch import to_torch
    >>> from moetheory.spec import MoESpec
    >>> truth = MoEParams.create([-8., 0.], [[25.], [0.]], [[-20.], [20.]], [15., -5.], [.09, .16])
    >>> s = routing_stats(to_torch(MoESpec(2, 1), truth), np.array([[0.], [1.]]))
    >>> [round(u, 3) for u in s["utilisation"]], s["dispatch"], s["dead_fraction"]
    ([0.5, 0.5], [1.0, 1.0], 0.0)
    """
    was_training = layer.training
    layer.eval()
    try:
        r = layer.route(x)
    finally:
        layer.train(was_training)
    w = r.log_weights.exp()
    wn = w / w.sum(dim=-1, keepdim=True)
    ent = -(torch.where(wn > 0, wn * torch.log(torch.where(wn > 0, wn, torch.ones_like(wn))),
                        torch.zeros_like(wn))).sum(-1)
    util = w.mean(0)
    return {"utilisation": util.tolist(), "dispatch": r.mask.to(w.dtype).mean(0).tolist(),
            "entropy": float(ent.mean()), "dead_fraction": float((util < dead_tol).to(w.dtype).mean())}


def _errors(params, truth, translation):
    from moetheory.losses import cell_errors, matched_errors

    if params.n_experts == truth.n_experts:
        e = matched_errors(params, truth, coords="identified", translation=translation)
        return {f: float(np.max(np.asarray(getattr(e, f)))) for f in ("beta0", "beta1", "a", "b", "var")}
    e = cell_errors(params, truth, kind="d1", translation=translation, coords="identified")
    out = {}
    for f in ("weight", "beta1", "a", "b", "var"):
        v = np.asarray(getattr(e, f), dtype=np.float64)
        out[f] = float(np.nanmax(v)) if np.any(np.isfinite(v)) else float("nan")
    return out


def evaluate(layer: GaussianMoE, x, y, truth: MoEParams | None = None, *, loss_kind: str = "auto",
             dead_tol: float = 1e-3) -> dict:
    """One record: NLL, Voronoi loss and errors vs ``truth`` (if given), routing statistics.

    Parameters
    ----------
    layer : GaussianMoE
        Layer with k experts in dimension d (evaluated in eval mode, no routing noise).
    x : array or tensor, shape (n, d) (or (n,) when d = 1)
    y : array or tensor, shape (n,)
    truth : MoEParams, optional
        True parameters (``beta0`` (k*,), ``beta1`` (k*, d), ...) for ``loss`` and ``errors``.
    loss_kind : {"auto", "d1", "d2"}
        Voronoi loss passed to :func:`moetheory.losses.voronoi_loss`.
    dead_tol : float
        Utilisation below which an expert counts as dead (:func:`routing_stats`).

    Returns
    -------
    dict
        ``nll``, ``exact_gate``, ``tau``, ``hard``, the :func:`routing_stats` entries and
        ``params`` (the statistical equivalent as a dict); with ``truth`` also ``loss`` and
        ``errors``.

    Examples
    --------
    >>> truth = MoEParams.create([-8., 0.], [[25.], [0.]], [[-20.], [20.]], [15., -5.], [.09, .16])
    >>> x, y = simulate(truth, 100, seed=0)
    >>> rec = evaluate(GaussianMoE(2, 1), x, y)
    >>> sorted(rec)
    ['dead_fraction', 'dispatch', 'entropy', 'exact_gate', 'hard', 'nll', 'params', 'tau', 'utilisation']
    >>> sorted(evaluate(GaussianMoE(2, 1), x, y, truth)["errors"])  # doctest: +SKIP
    ['a', 'b', 'beta0', 'beta1', 'var']
    """
    from moetheory.losses import gate_translation, voronoi_loss

    was_training = layer.training
    layer.eval()
    with torch.no_grad():
        nll = float(layer.nll(x, y, reduction="mean"))
    layer.train(was_training)
    spec, params, exact, _ = statistical_equivalent(layer)
    rec = {"nll": nll, "exact_gate": bool(exact), "tau": float(params.tau),
           "hard": bool(layer.hard) if layer.router == "dense_to_sparse" else None}
    if truth is not None:
        ok = params.all_finite()
        if ok:
            translation = gate_translation(spec)
            rec["loss"] = float(voronoi_loss(params, truth, kind=loss_kind,
                                             translation=translation, coords="identified"))
            rec["errors"] = _errors(params, truth, translation)
        else:
            rec["loss"] = float("nan")
            rec["errors"] = {}
    rec.update(routing_stats(layer, x, dead_tol))
    rec["params"] = params.to_dict()
    return rec


def train_layer(layer: GaussianMoE, x, y, *, steps: int = 2000, lr: float = 0.05,
                batch_size: int | None = None, record_at=None, truth: MoEParams | None = None,
                loss_kind: str = "auto", aux_weight: float = 0.0, lr_schedule: str = "cosine",
                lr_final: float = 0.01, seed: int = 0, dead_tol: float = 1e-3,
                num_threads: int | None = 1) -> TrainResult:
    """Train ``layer`` in place by Adam on the mean negative log-likelihood.

    Parameters
    ----------
    layer : GaussianMoE (its current parameters are the start)
    x : (n, d) or (n,), y : (n,)
    steps : int, number of Adam updates
    lr : float, initial learning rate
    batch_size : int, optional (None: full batch); mini-batches reshuffle every epoch
    record_at : iterable of steps (0 = the start, ``steps`` = the end); default: 0 and ``steps``
    truth : MoEParams, optional; needed for the Voronoi loss and errors
    loss_kind : {"auto", "d1", "d2"} passed to the Voronoi loss
    aux_weight : float, weight α of the Switch load-balancing loss (0: off)
    lr_schedule : {"cosine", "constant"}; cosine decays lr to ``lr_final``·lr
    seed : int, seeds the mini-batch order and the routing noise
    dead_tol : float, utilisation below which an expert counts as dead
    num_threads : int, optional; torch intra-op threads while training (restored afterwards).
        The default 1 is fastest for these small layers (threads only add synchronisation,
        and oversubscribe a busy machine); None leaves torch's setting alone.

    The dense-to-sparse router's schedule is applied at every step (``layer.set_step``).

    Returns
    -------
    TrainResult

    Examples
    --------
    >>> truth = MoEParams.create([-8., 0.], [[25.], [0.]], [[-20.], [20.]], [15., -5.], [.09, .16])
    >>> x, y = simulate(truth, 500, seed=0)
    >>> layer = random_init(GaussianMoE(2, 1), x, y, seed=0)
    >>> res = train_layer(layer, x, y, steps=10, record_at=[0, 5, 10])
    >>> [r["step"] for r in res.records], res.failed
    ([0, 5, 10], False)
    >>> res = train_layer(layer, x, y, steps=2000, truth=truth)  # doctest: +SKIP
    >>> res.records[-1]["loss"] < res.records[0]["loss"]  # doctest: +SKIP
    True
    """
    if not isinstance(layer, GaussianMoE):
        raise TypeError(f"layer must be a GaussianMoE; got {type(layer).__name__}")
    for name, v in (("steps", steps),):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
            raise ValueError(f"{name} must be an integer >= 0; got {v!r}")
    if not (isinstance(lr, (int, float)) and lr > 0):
        raise ValueError(f"lr must be > 0; got {lr!r}")
    if lr_schedule not in ("cosine", "constant"):
        raise ValueError(f"lr_schedule must be 'cosine' or 'constant'; got {lr_schedule!r}")
    from moetheory.validation import check_xy

    x, y = check_xy(x, y, layer.dim)  # clear errors for bad shapes, NaN or inf
    xt = layer._as_x(x)
    yt = layer._as_y(y, xt.shape[0])
    n = xt.shape[0]
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or not 1 <= batch_size):
        raise ValueError(f"batch_size must be None or an integer >= 1; got {batch_size!r}")
    bs = n if batch_size is None else min(int(batch_size), n)
    record_at = sorted({0, int(steps)} if record_at is None else {int(s) for s in record_at if 0 <= s <= steps})
    gen = torch.Generator().manual_seed(int(seed))
    layer.generator = torch.Generator().manual_seed(int(seed) + 1)
    params = [p for p in layer.parameters() if p.requires_grad]
    opt = torch.optim.Adam(params, lr=lr)

    def lr_at(s):
        if lr_schedule == "constant" or steps == 0:
            return lr
        return lr * (lr_final + (1 - lr_final) * 0.5 * (1 + math.cos(math.pi * s / steps)))

    old_threads = torch.get_num_threads()
    if num_threads is not None:
        torch.set_num_threads(int(num_threads))
    try:
        return _train_loop(layer, xt, yt, n, bs, int(steps), record_at, truth, loss_kind, aux_weight,
                           lr_at, opt, gen, dead_tol)
    finally:
        torch.set_num_threads(old_threads)


def _train_loop(layer, xt, yt, n, bs, steps, record_at, truth, loss_kind, aux_weight, lr_at, opt,
                gen, dead_tol):
    records, failed = [], False
    perm, pos = None, n
    t0 = time.perf_counter()
    layer.train()
    for s in range(steps + 1):
        layer.set_step(s)
        if s in record_at:
            rec = evaluate(layer, xt, yt, truth, loss_kind=loss_kind, dead_tol=dead_tol)
            rec.update(step=s, lr=lr_at(s), wall_s=time.perf_counter() - t0)
            records.append(rec)
        if s == steps:
            break
        if bs < n:
            if pos + bs > n:
                perm, pos = torch.randperm(n, generator=gen), 0
            idx = perm[pos:pos + bs]
            pos += bs
            xb, yb = xt[idx], yt[idx]
        else:
            xb, yb = xt, yt
        for group in opt.param_groups:
            group["lr"] = lr_at(s)
        opt.zero_grad(set_to_none=True)
        route = layer.route(xb)
        loss = -layer.log_density(xb, yb, route=route).mean()
        if aux_weight:
            loss = loss + layer.aux_loss(xb, aux_weight, route=route)
        if not torch.isfinite(loss):
            failed = True
            break
        loss.backward()
        opt.step()
    layer.eval()
    spec, final, _, _ = statistical_equivalent(layer)
    return TrainResult(records, final, spec, failed, time.perf_counter() - t0)
