"""Top-K selection by score on shifted covariates (issue 17, item 8): the gate's fixed selection
offset, the standardised spec that carries it, and fit()'s equivariance under a shift of x."""
import warnings

import numpy as np
import pytest

import moetheory as mt
from moetheory.gates import log_gate_weights
from moetheory.gates.topk import TopKGate
from moetheory.kernels.reference import active_set
from moetheory.params import MoEParams
from moetheory.spec import MoESpec
from moetheory.standardize import Standardizer, standard_spec, to_fitted_coordinates

SPEC = MoESpec(3, 2, gate="topk", top_k=2)
# On x ~ U([-1, 1]^2) every pair of experts swaps rank (all three active sets occur).
PARAMS = MoEParams.create(beta0=[0.3, -0.2, 0.0], beta1=[[1.5, -0.5], [-1.0, 1.2], [0.0, 0.0]],
                          a=[[1.0, 0.5], [-1.0, 0.0], [0.3, -2.0]], b=[0.5, -0.5, 0.0],
                          var=[0.2, 0.1, 0.3])


def _sample(offset, n=400, seed=3):
    rng = np.random.default_rng(seed)
    u = rng.uniform(-1, 1, (n, 2))
    return offset + u, rng.standard_normal(n)


def test_standard_spec_is_the_same_model_on_centred_covariates():
    """At an offset m = (1000, −2000) the gate of (spec, θ) equals the gate of (standard_spec,
    θ̃) at x̃ = (x − m̂)/s: the same active sets (all three occur) and log weights, for the score
    rule (which needs the offset: without it other experts are selected) and the logit rule
    (which does not). Tolerance: the logits are sums of terms |β_1||x| ≈ 2e3 evaluated in two
    coordinate systems, rounded at 2e3 · 2.2e-16 ≈ 5e-13 each; 1e-10 leaves room for the sum."""
    m = np.array([1000.0, -2000.0])
    # Slopes β_1i = α_i v + ε_i w (v ⟂ m, w = m/|m|, ε = 1e-4): the rank boundaries
    # (β_1i − β_1j)ᵀx = 0 pass through the sample (at vᵀx = −0.15, 0, 0.22), so every
    # active set occurs and a wrong ranking is seen.
    v, w = np.array([2.0, 1.0]) / np.sqrt(5), m / np.linalg.norm(m)
    params = PARAMS._replace(beta1=np.array([1.5 * v + 1e-4 * w, -1.0 * v + 1e-4 * w, [0.0, 0.0]]))
    x, _ = _sample(m)
    st = Standardizer(np.mean(x, axis=0), np.std(x, axis=0))
    for spec in (SPEC, SPEC.with_(select_by="logit")):
        sspec = standard_spec(spec, st)
        p_std = to_fitted_coordinates(params, st, spec)
        sets = active_set(spec, params, x)
        assert len({tuple(r) for r in sets}) == 3
        np.testing.assert_array_equal(active_set(sspec, p_std, st.apply(x)), sets)
        np.testing.assert_allclose(np.asarray(log_gate_weights(sspec, p_std, st.apply(x))),
                                   np.asarray(log_gate_weights(spec, params, x)), rtol=0, atol=1e-10)
    assert standard_spec(SPEC.with_(select_by="logit"), st) == SPEC.with_(select_by="logit")
    assert standard_spec(SPEC, st).gate.select_offset == tuple(st.center / st.scale)
    # the offset is needed: the same parameters without it select other experts
    assert np.any(active_set(SPEC, to_fitted_coordinates(params, st, SPEC), st.apply(x))
                  != active_set(SPEC, params, x))


def test_offset_gate_jax_numpy_and_torch_select_the_same_experts():
    """The offset enters the one selection rule of the gate: the JAX mask, the NumPy oracle and
    the torch router agree, and equal the gate without offset at x + c."""
    c = (-0.2, 0.4)
    gate = TopKGate(top_k=2, select_offset=c)
    spec = MoESpec(3, 2, gate=gate)
    assert spec.gate_family is gate and spec.top_k is None  # held as an object
    x, _ = _sample(0.0, n=200)
    want = active_set(SPEC, PARAMS, x + np.array(c))
    assert len({tuple(r) for r in want}) == 3
    assert np.any(want != active_set(SPEC, PARAMS, x))  # c changes some sets
    np.testing.assert_array_equal(active_set(spec, PARAMS, x), want)
    np.testing.assert_array_equal(np.asarray(gate.active_mask(spec, PARAMS, x)), want)
    torch = pytest.importorskip("torch")
    from moetheory.bridge.torch import from_torch, to_torch

    layer = to_torch(spec, PARAMS)
    out = layer.route(torch.as_tensor(x))
    np.testing.assert_array_equal(out[2].numpy(), want)
    np.testing.assert_allclose(out[0].detach().numpy(),
                               np.asarray(gate.log_weights(spec, PARAMS, x)), rtol=1e-12, atol=1e-13)
    spec2, _ = from_torch(layer)
    assert spec2.gate_family == gate


def test_offset_gate_rejects_bad_offsets():
    with pytest.raises(ValueError, match="select_offset applies to select_by='score'"):
        TopKGate(top_k=2, select_by="logit", select_offset=(1.0,))
    with pytest.raises(ValueError, match="select_offset must be finite"):
        TopKGate(top_k=2, select_offset=(np.inf,))
    spec = MoESpec(3, 2, gate=TopKGate(top_k=2, select_offset=(1.0,)))
    with pytest.raises(ValueError, match="select_offset has 1 entries but the gate has d=2"):
        active_set(spec, PARAMS, np.zeros((1, 2)))
    # the default gate is still named by the spec's fields
    assert MoESpec(3, 2, gate=TopKGate(top_k=2)) == SPEC


def _fit(x, y, **gate):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mt.fit(x, y, 3, seed=0, **gate)


@pytest.mark.parametrize("select_by", ["score", pytest.param("logit", marks=pytest.mark.slow)])
def test_fit_at_a_large_offset_equals_the_same_fit_on_centred_data(select_by):
    """Equivariance under a shift of x. The logit rule is shift-invariant, so the same model on
    the centred data x − m is the top-K gate itself; the score rule ranks β_1ᵀx, so there it is
    the gate with the selection offset c = m (on x − m without it the score rule is another
    model: it ranks with boundaries inside the data, and here reaches ℓ ≈ −147.4 instead of
    −155.0). fit() centres x for both rules, so both fits run on the same standardised data up
    to the rounding of x at 1e5 (spacing 1.5e-11, about 3e-11 in x̃) and reach the same maximum.
    Tolerance 1e-8 nats per observation: measured differences are 4e-10 at 1e5 (1e-12 at 1e3,
    scaling with that rounding); a fit of another model or at another maximum differs by more
    than 1e-2 (1.5 nats without the offset)."""
    rng = np.random.default_rng(11)
    u = rng.uniform(-1, 1, 600)
    y = np.where(u > 0, 2 * u, -u) + 0.3 * rng.standard_normal(600)
    x = (1e5 + u)[:, None]
    m = float(x.mean())
    res = _fit(x, y, gate="topk", top_k=2, select_by=select_by)
    same = (dict(gate=TopKGate(top_k=2, select_offset=(m,))) if select_by == "score" else
            dict(gate="topk", top_k=2, select_by="logit"))
    resc = _fit(x - m, y, **same)
    np.testing.assert_allclose(res.log_density(x, y), resc.log_density(x - m, y), rtol=0, atol=1e-8)
    assert abs(res.loglik - resc.loglik) <= 600 * 1e-8
