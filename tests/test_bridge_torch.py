"""The PyTorch bridge: exact gates, bit-exact round trips, likelihood and gradient agreement with
moetheory/JAX, neural gate options, the load-balancing loss, importers, training, bad input.

Skipped on a core-only install (no torch); CI installs torch==2.13.0, so it runs there.
"""
import importlib
import math
import subprocess
import sys
import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from moetheory.gates import ACTIVATIONS, active_mask
from moetheory.model import log_density, log_likelihood
from moetheory.params import MoEParams
from moetheory.spec import MoESpec


def test_import_moetheory_does_not_import_torch():
    code = ("import sys, moetheory, moetheory.bridge; "
            "assert 'torch' not in sys.modules, 'torch was imported'; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "ok" in out.stdout


def test_missing_torch_names_the_extra(monkeypatch):
    import moetheory.bridge as bridge

    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    for mod in ("moetheory.bridge.torch", "moetheory.bridge.importers", "moetheory.bridge.train"):
        monkeypatch.delitem(sys.modules, mod, raising=False)
    with pytest.raises(ImportError, match=r'moetheory\[torch\]') as info:
        importlib.import_module("moetheory.bridge.torch")
    assert "torch==2.13.0" in str(info.value)
    with pytest.raises(ImportError, match=r"moetheory\[torch\]"):
        bridge.to_torch  # noqa: B018 (lazy attribute)
    with pytest.raises(ImportError, match=r"moetheory\[torch\]"):
        bridge.require_torch()


torch = pytest.importorskip("torch")

from moetheory.bridge.importers import import_layer, import_moe  # noqa: E402
from moetheory.bridge.torch import (DenseToSparseSchedule, GaussianMoE, from_torch,  # noqa: E402
                                    load_balancing_loss, statistical_equivalent, to_torch)

TRUTH = MoEParams.create([-8.0, 0.0], [[25.0], [0.0]], [[-20.0], [20.0]], [15.0, -5.0], [0.09, 0.16])


def _params(k, d, seed, tau=1.0):
    rng = np.random.default_rng(seed)
    return MoEParams.create(rng.normal(size=k), rng.normal(size=(k, d)) * 2, rng.normal(size=(k, d)),
                            rng.normal(size=k), rng.uniform(0.1, 0.9, size=k), tau=tau)


SPECS = [
    MoESpec(2, 1),
    MoESpec(3, 2),
    MoESpec(3, 1, gate="topk", top_k=1),
    MoESpec(3, 2, gate="topk", top_k=2),
    MoESpec(4, 2, gate="topk", top_k=2, select_by="logit"),
    MoESpec(3, 1, gate="temperature"),
    MoESpec(3, 2, gate="temperature", tau="estimated"),
    *[MoESpec(3, 2, gate="activation", activation=a, tau="estimated") for a in sorted(ACTIVATIONS)
      if a in ("sigmoid", "tanh", "gelu", "softplus", "identity", "square")],
]
IDS = [f"{s.gate}-{s.top_k}-{s.select_by}-{s.activation}-{s.tau}-k{s.n_experts}d{s.dim}" for s in SPECS]


_loglik = jax.jit(log_likelihood, static_argnums=0)
_logdens = jax.jit(log_density, static_argnums=0)
_mask = jax.jit(active_mask, static_argnums=0)


def _data(d, n=150, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, d))
    x[:5] = 0.0  # ties of the top-K selection score (all zero): lower index wins
    return x, rng.normal(size=n) * 2


def _bits_equal(p, q):
    return all(np.asarray(a).dtype == np.asarray(b).dtype == np.float64
               and np.asarray(a).shape == np.asarray(b).shape
               and np.array_equal(np.asarray(a).view(np.int64), np.asarray(b).view(np.int64))
               for a, b in zip(p, q))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_round_trip_bit_exact(spec):
    p = _params(spec.n_experts, spec.dim, 1, tau=0.37 if spec.has_tau else 1.0)
    layer = to_torch(spec, p)
    assert all(t.dtype == torch.float64 for t in layer.parameters())
    spec2, p2 = from_torch(layer)
    assert spec2 == spec
    assert _bits_equal(p2, p)
    # through a state_dict into a fresh layer as well
    fresh = to_torch(spec, _params(spec.n_experts, spec.dim, 2, tau=1.0))
    fresh.load_state_dict(layer.state_dict())
    assert _bits_equal(from_torch(fresh)[1], p)


@pytest.mark.parametrize("router,spec", [
    ("noisy_topk", MoESpec(3, 2, gate="topk", top_k=2, select_by="logit")),
    ("switch", MoESpec(3, 2, gate="topk", top_k=1, select_by="logit")),
    ("gshard_top2", MoESpec(3, 2, gate="topk", top_k=2, select_by="logit")),
    ("dense_to_sparse", MoESpec(3, 2, gate="temperature")),
])
def test_round_trip_bit_exact_neural_routers(router, spec):
    p = _params(3, 2, 3, tau=0.8 if spec.has_tau else 1.0)
    if router == "dense_to_sparse":  # the default schedule starts at τ = 2, not 0.8
        with pytest.warns(UserWarning, match=r"tau_start=0\.8"):
            layer = to_torch(spec, p, router=router)
        sched = DenseToSparseSchedule(tau_start=0.8)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            matching = to_torch(spec, p, router=router, schedule=sched)
        assert float(matching.set_step(0).tau) == 0.8
    else:
        layer = to_torch(spec, p, router=router)
    assert layer.router == router
    spec2, p2 = from_torch(layer, approximate=True)
    assert spec2 == spec
    assert _bits_equal(p2, p)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_log_likelihood_equals_moetheory(spec):
    p = _params(spec.n_experts, spec.dim, 4, tau=0.6 if spec.has_tau else 1.0)
    x, y = _data(spec.dim)
    layer = to_torch(spec, p)
    jp = jax.tree.map(jnp.asarray, p)
    ll = float(_loglik(spec, jp, jnp.asarray(x), jnp.asarray(y)))
    with torch.no_grad():
        nll = float(layer.nll(x, y))
        ld = layer.log_density(x, y).numpy()
        mask = layer.route(x).mask.numpy()
    assert abs(ll + nll) <= 1e-10  # absolute, float64
    np.testing.assert_allclose(ld, np.asarray(_logdens(spec, jp, jnp.asarray(x), jnp.asarray(y))),
                               rtol=0, atol=1e-12)
    np.testing.assert_array_equal(mask, np.asarray(_mask(spec, jp, jnp.asarray(x))))


def test_topk_tie_rule_lower_index():
    spec = MoESpec(3, 1, gate="topk", top_k=1)
    p = MoEParams.create([0.0, 5.0, 0.0], [[1.0], [1.0], [1.0]], [[0.0]] * 3, [0.0, 1.0, 2.0], [1.0] * 3)
    layer = to_torch(spec, p)
    with torch.no_grad():
        w = layer.gate_weights(np.array([[0.3], [-2.0]])).numpy()
    np.testing.assert_array_equal(w, [[1.0, 0.0, 0.0], [1.0, 0.0, 0.0]])  # all scores tie


@pytest.mark.parametrize("spec", [SPECS[1], SPECS[3], SPECS[6],
                                  MoESpec(3, 2, gate="activation", activation="tanh", tau="estimated")],
                         ids=["softmax", "topk", "temperature", "activation-tanh"])
def test_gradients_match_jax(spec):
    p = _params(spec.n_experts, spec.dim, 5, tau=0.7 if spec.has_tau else 1.0)
    x, y = _data(spec.dim, seed=3)
    layer = to_torch(spec, p)
    (-layer.nll(x, y)).backward()
    g = jax.jit(jax.grad(lambda q: log_likelihood(spec, q, jnp.asarray(x), jnp.asarray(y))))(
        jax.tree.map(jnp.asarray, p))
    pairs = [(layer.gate_weight.grad, g.beta1), (layer.gate_bias.grad, g.beta0),
             (layer.expert_weight.grad, g.a), (layer.expert_bias.grad, g.b),
             (layer.log_var.grad, np.asarray(g.var) * p.var)]  # chain rule: d/dlog ν = ν d/dν
    if spec.estimates_tau:
        pairs.append((layer.log_tau.grad, np.asarray(g.tau) * p.tau))
    else:
        assert layer.log_tau.grad is None
    for got, want in pairs:
        want = np.asarray(want)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-8, atol=1e-8 * max(1.0, np.abs(want).max()))


# ------------------------------------------------------------------------------- neural gates


def _layer(router, k=3, d=2, seed=6, **kw):
    layer = GaussianMoE(k, d, router, **kw)
    p = _params(k, d, seed)
    layer.set_params(p)
    return layer, p


@pytest.mark.parametrize("router,kw", [("softmax", {}), ("topk", {"top_k": 2}), ("temperature", {"learn_tau": True}),
                                       ("activation", {"activation": "sigmoid"}),
                                       ("noisy_topk", {"top_k": 2}), ("switch", {}), ("gshard_top2", {}),
                                       ("dense_to_sparse", {})])
def test_every_router_trains(router, kw):
    layer, _ = _layer(router, **kw)
    layer.generator = torch.Generator().manual_seed(0)
    layer.train()
    x, y = _data(2, n=64)
    loss = layer.nll(x, y, reduction="mean") + layer.aux_loss(x, 0.01)
    loss.backward()
    assert torch.isfinite(loss)
    grads = [q.grad for q in layer.parameters() if q.requires_grad]
    assert all(gr is not None and torch.all(torch.isfinite(gr)) for gr in grads)
    assert layer(x).shape == (64,)


def test_noisy_topk_and_gshard_equal_topk_by_logit_in_eval():
    x, y = _data(2)
    ref_spec = MoESpec(3, 2, gate="topk", top_k=2, select_by="logit")
    p = _params(3, 2, 7)
    ref = to_torch(ref_spec, p)
    for router in ("noisy_topk", "gshard_top2"):
        layer = to_torch(ref_spec, p, router=router)
        layer.eval()
        with torch.no_grad():
            torch.testing.assert_close(layer.log_density(x, y), ref.log_density(x, y), rtol=0, atol=0)
        assert statistical_equivalent(layer)[2]
    noisy = to_torch(ref_spec, p, router="noisy_topk", noise_weight=np.ones((3, 2)))
    noisy.train()
    noisy.generator = torch.Generator().manual_seed(1)
    with torch.no_grad():
        assert not torch.equal(noisy.log_density(x, y), ref.log_density(x, y))  # noise in training


def test_switch_weight_is_pmax():
    layer, p = _layer("switch")
    x, _ = _data(2)
    with torch.no_grad():
        w = layer.gate_weights(x).numpy()
    h = x @ p.beta1.T + p.beta0
    probs = np.exp(h - h.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    want = np.where(h == h.max(1, keepdims=True), probs, 0.0)
    np.testing.assert_allclose(w, want, rtol=1e-13, atol=0)
    assert np.all(w.sum(1) < 1.0 + 1e-15)
    with pytest.raises(ValueError, match="approximate=True"):
        from_torch(layer)


def test_dense_to_sparse_phases():
    sched = DenseToSparseSchedule(tau_start=2.0, tau_end=0.5, anneal_steps=10)
    assert [sched.tau(s) for s in (0, 5, 10, 20)] == [2.0, 1.25, 0.5, 0.5]
    assert not sched.is_hard(9) and sched.is_hard(10)
    x, y = _data(2)
    p = _params(3, 2, 8)
    layer = GaussianMoE(3, 2, "dense_to_sparse", schedule=sched, threshold=0.0).set_params(p)
    layer.eval()
    layer.set_step(5)
    assert float(layer.tau) == 1.25
    temp = to_torch(MoESpec(3, 2, gate="temperature"), p._replace(tau=np.asarray(1.25)))
    with torch.no_grad():
        torch.testing.assert_close(layer.log_density(x, y), temp.log_density(x, y), rtol=1e-14, atol=1e-14)
    # threshold drops small weights (EvoMoE: 1e-3)
    thr = GaussianMoE(3, 2, "dense_to_sparse", schedule=sched, threshold=0.2).set_params(p).eval()
    with torch.no_grad():
        w = thr.gate_weights(x)
    assert torch.all((w == 0) | (w >= 0.2))
    # hard phase: top-1 on h/τ_end; weight 1 -> exactly topk K=1 by logit with β/τ_end
    hard = GaussianMoE(3, 2, "dense_to_sparse", schedule=sched, hard_weight="one").set_params(p).eval()
    hard.set_step(10)
    spec, q, exact, _ = statistical_equivalent(hard)
    assert exact and spec == MoESpec(3, 2, gate="topk", top_k=1, select_by="logit")
    np.testing.assert_allclose(q.beta1, p.beta1 / 0.5)
    ref = to_torch(spec, q)
    with torch.no_grad():
        torch.testing.assert_close(hard.log_density(x, y), ref.log_density(x, y), rtol=1e-14, atol=1e-14)


def test_load_balancing_loss_hand_example():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.1, 0.6, 0.3], [0.5, 0.4, 0.1], [0.2, 0.2, 0.6]],
                         dtype=torch.float64)
    mask = probs == probs.max(dim=1, keepdim=True).values  # top-1: experts 0, 1, 0, 2
    # f = (2/4, 1/4, 1/4); P = (0.375, 0.35, 0.275); 3 * (0.1875 + 0.0875 + 0.06875) = 1.03125
    assert float(load_balancing_loss(probs, mask)) == pytest.approx(1.03125, abs=1e-15)
    assert float(load_balancing_loss(probs, mask, weight=0.01)) == pytest.approx(0.0103125, abs=1e-15)
    uniform = torch.full((4, 2), 0.5, dtype=torch.float64)
    assert float(load_balancing_loss(uniform, torch.tensor([[1, 0], [0, 1]] * 2, dtype=torch.bool))) == 1.0
    # the layer's aux loss uses its own dispatch and dense probabilities
    layer, _ = _layer("switch")
    x, _ = _data(2)
    with torch.no_grad():
        r = layer.route(x)
    f = r.mask.double().mean(0)
    want = 3 * float((f * r.probs.mean(0)).sum())
    assert float(layer.aux_loss(x).detach()) == pytest.approx(want, rel=1e-14)


# ------------------------------------------------------------------------------- importers


def _reference_log_density(router, w_exp, b_exp, var, x, y, temperature=1.0):
    """The conditional density of a plain neural MoE, written out by hand."""
    x = torch.as_tensor(x)
    y = torch.as_tensor(y)
    logw = torch.log_softmax(router(x) / temperature, dim=-1)
    mean = x @ w_exp.T + b_exp
    logn = -0.5 * (math.log(2 * math.pi) + torch.log(var) + (y[:, None] - mean) ** 2 / var)
    return torch.logsumexp(logw + logn, dim=-1)


def test_import_bias_free_router_same_density():
    torch.manual_seed(0)
    k, d = 3, 2
    router = torch.nn.Linear(d, k, bias=False).double()
    w_exp = torch.randn(k, d, 1, dtype=torch.float64)  # einsum-style stacked experts
    b_exp = torch.randn(k, dtype=torch.float64)
    var = torch.tensor([0.2, 0.5, 0.3], dtype=torch.float64)
    x, y = _data(d)
    with torch.no_grad():
        want = _reference_log_density(router, w_exp[..., 0], b_exp, var, x, y, temperature=0.7)
    spec, p = import_moe(router, w_exp, expert_bias=b_exp, var=var, temperature=0.7)
    assert spec == MoESpec(k, d)
    assert np.all(p.beta1[-1] == 0) and p.beta0[-1] == 0  # pinned like moetheory
    got = np.asarray(_logdens(spec, jax.tree.map(jnp.asarray, p), jnp.asarray(x), jnp.asarray(y)))
    np.testing.assert_allclose(got, want.numpy(), rtol=0, atol=1e-12)
    layer = import_layer(router, w_exp, expert_bias=b_exp, log_var=torch.log(var), temperature=0.7)
    with torch.no_grad():
        np.testing.assert_allclose(layer.log_density(x, y).numpy(), want.numpy(), rtol=0, atol=1e-12)


def test_import_layouts_agree():
    torch.manual_seed(1)
    k, d = 3, 2
    w = torch.randn(k, d, dtype=torch.float64)
    wr = torch.randn(k, d, dtype=torch.float64)
    b = torch.randn(k, dtype=torch.float64)
    ref = import_moe(wr, w, expert_bias=b, std=0.5)
    packed = torch.nn.Linear(d, k).double()
    linears = [torch.nn.Linear(d, 1).double() for _ in range(k)]
    with torch.no_grad():
        packed.weight.copy_(w)
        packed.bias.copy_(b)
        for i, lin in enumerate(linears):
            lin.weight.copy_(w[i:i + 1])
            lin.bias.copy_(b[i:i + 1])
    variants = [import_moe(wr.T.numpy(), w.numpy()[:, None, :], expert_bias=b.numpy()[:, None], var=0.25,
                           router_layout="in_out"),
                import_moe(wr, packed, var=[0.25] * k),
                import_moe(wr, torch.nn.ModuleList(linears), var=0.25)]
    for spec, p in variants:
        assert spec == ref[0]
        for a_, b_ in zip(p, ref[1]):
            np.testing.assert_allclose(a_, b_, rtol=1e-15, atol=1e-15)
    # activation gate: only the bias is pinned (σ breaks the β_1 translation)
    spec, p = import_moe(wr, w, var=0.25, gate="activation", activation="tanh", temperature=0.5)
    assert p.beta0[-1] == 0 and np.all(p.beta1 == wr.numpy()) and float(p.tau) == 0.5


def test_import_bad_shapes():
    router = torch.nn.Linear(2, 3, bias=False)
    with pytest.raises(ValueError, match=r"experts must have shape .*\(3, 2\).*got \(4, 2\)"):
        import_moe(router, torch.zeros(4, 2), var=1.0)
    with pytest.raises(ValueError, match=r"experts must have shape .*got \(3, 2, 2\)"):
        import_moe(router, torch.zeros(3, 2, 2), var=1.0)
    with pytest.raises(ValueError, match=r"expert_bias must have shape \(k,\) = \(3,\).*got \(2,\)"):
        import_moe(router, torch.zeros(3, 2), expert_bias=torch.zeros(2), var=1.0)
    with pytest.raises(ValueError, match=r"router_bias must have shape \(k,\) = \(3,\)"):
        import_moe(router, torch.zeros(3, 2), router_bias=np.zeros(5), var=1.0)
    with pytest.raises(ValueError, match=r"router must be a 2-d weight.*got shape \(3,\)"):
        import_moe(np.zeros(3), torch.zeros(3, 2), var=1.0)
    with pytest.raises(ValueError, match=r"var must be a scalar or have shape \(k,\) = \(3,\); got \(2,\)"):
        import_moe(router, torch.zeros(3, 2), var=[1.0, 1.0])
    with pytest.raises(ValueError, match="exactly one of var="):
        import_moe(router, torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"experts has 2 nn.Linear modules but the router has k=3"):
        import_moe(router, [torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)], var=1.0)


def test_bad_input_to_layer():
    with pytest.raises(ValueError, match="router must be one of"):
        GaussianMoE(2, 1, "mystery")
    with pytest.raises(ValueError, match="top_k"):
        GaussianMoE(3, 1, "switch", top_k=2)
    with pytest.raises(ValueError, match="top_k"):
        GaussianMoE(3, 1, "topk")
    with pytest.raises(ValueError, match="threshold"):
        GaussianMoE(4, 1, "dense_to_sparse", threshold=0.3)
    layer = to_torch(MoESpec(2, 1), TRUTH)
    with pytest.raises(ValueError, match=r"x must have shape \(n, 1\).*got \(5, 3\)"):
        layer.nll(np.zeros((5, 3)), np.zeros(5))
    with pytest.raises(ValueError, match=r"y must have shape \(5,\)"):
        layer.nll(np.zeros((5, 1)), np.zeros(4))
    with pytest.raises(ValueError, match=r"params.beta0 must have shape \(3,\)"):
        to_torch(MoESpec(3, 1), TRUTH)
    with pytest.raises(ValueError, match="router='switch' shares its parameters"):
        to_torch(MoESpec(2, 1), TRUTH, router="switch")


# ------------------------------------------------------------------------------- training


def test_train_layer_records_and_learns():
    from moetheory.bridge.train import random_init, simulate, train_layer

    x, y = simulate(TRUTH, 300, seed=3)
    start = TRUTH._replace(beta1=TRUTH.beta1 * 0.8, a=TRUTH.a * 0.8, var=TRUTH.var * 2)
    layer = to_torch(MoESpec(2, 1), start)
    res = train_layer(layer, x, y, steps=200, lr=0.05, truth=TRUTH, record_at=[0, 100, 200])
    assert [r["step"] for r in res.records] == [0, 100, 200]
    first, last = res.records[0], res.records[-1]
    assert last["nll"] < first["nll"] and last["loss"] < first["loss"]
    assert set(last["errors"]) == {"beta0", "beta1", "a", "b", "var"}
    assert len(last["utilisation"]) == 2 and 0 <= last["dead_fraction"] <= 1
    assert not res.failed
    # mini-batch, the dense-to-sparse schedule and the aux loss run too
    d2s = random_init(GaussianMoE(2, 1, "dense_to_sparse", schedule=DenseToSparseSchedule(anneal_steps=20)),
                      x, y, seed=0)
    res = train_layer(d2s, x, y, steps=30, lr=0.05, batch_size=64, aux_weight=0.01, truth=TRUTH,
                      record_at=[0, 10, 30])
    assert [r["tau"] for r in res.records][:2] == [2.0, 2.0 - 1.5 * 10 / 20]
    assert res.records[-1]["hard"] is True
    with pytest.raises(ValueError, match="y contains NaN"):
        train_layer(layer, x, np.full_like(y, np.nan), steps=1)
    with pytest.raises(ValueError, match=r"x must have 1 column"):
        train_layer(layer, np.zeros((10, 2)), np.zeros(10), steps=1)


def test_evaluate_uses_the_gates_own_translation():
    # activation gate: a common β_1 shift changes the model, so the loss must see it (a
    # softmax-style infimum over β_1 shifts would report 0 for this wrong model)
    from moetheory.bridge.train import evaluate, simulate
    from moetheory.losses import voronoi_loss

    spec = MoESpec(2, 1, gate="activation", activation="tanh")
    truth = MoEParams.create([0.5, 0.0], [[2.0], [0.0]], [[-1.0], [1.0]], [0.5, -0.5],
                             [0.05, 0.05], tau=0.5)
    shifted = truth._replace(beta1=truth.beta1 + 3.0)
    x, y = simulate(truth, 200, spec=spec, seed=0)
    rec = evaluate(to_torch(spec, shifted), x, y, truth)
    expected = voronoi_loss(shifted, truth, translation="bias", coords="identified")
    assert float(voronoi_loss(shifted, truth, coords="identified")) < 1e-12  # the wrong choice
    np.testing.assert_allclose(rec["loss"], float(expected), rtol=1e-12)
    assert rec["loss"] > 1.0
    # β_1 errors of 3 in raw units, 3 / τ = 6 in identified coordinates, on both experts
    np.testing.assert_allclose(rec["errors"]["beta1"], 6.0, rtol=1e-12)


@pytest.mark.slow
def test_neural_study_smoke(tmp_path, monkeypatch):
    """The study runs end to end on a tiny configuration, resumes from its cache, and plots."""
    from pathlib import Path

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1]))
    from paper_figures.neural import plot_neural
    from simulations.neural import run_neural_experiment

    tiny = dict(steps=10, n_curve=80, curve_reps=1, n_record=3, n_grid=[80], reps=1, em_max_iter=20,
                gates=["softmax", "dense-to-sparse"])
    res = run_neural_experiment("quick", tmp_path / "neural", progress=False, **tiny)
    assert set(res["curves"]) == {"softmax", "dense-to-sparse"}
    assert res["curves"]["softmax"]["steps"] == [0, 5, 10]
    for m in ("em", "adam_paper", "adam_random"):
        assert np.isfinite(res["vs_n"][m]["loss_mean"][0])
    again = run_neural_experiment("quick", tmp_path / "neural", progress=False, **tiny)
    assert again["vs_n"] == res["vs_n"]  # read back from the cache, same numbers
    paths = plot_neural(tmp_path / "neural", tmp_path / "fig")
    assert all(p.exists() and p.stat().st_size > 0 for p in paths)
    with pytest.raises(ValueError, match="preset must be one of"):
        run_neural_experiment("huge", tmp_path / "x")
