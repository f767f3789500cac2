"""Region-aware top-K loss, gate-function error and the identifiability check.

Exact values (0 at the truth, hand-computed weights) are checked to 1e-12; Hellinger distances of
density-equivalent models are quadrature-level (about 2e-12), checked against 1e-10.
"""
from __future__ import annotations

import numpy as np
import pytest

from moetheory import MoEParams
from moetheory.gates import active_mask
from moetheory.identifiability import evaluate_candidate, search_equivalent
from moetheory.losses import d2_loss, voronoi_loss
from moetheory.losses.gate_error import gate_error
from moetheory.losses.regions import region_loss, region_table
from moetheory.spec import MoESpec
from moetheory.study.density import design_nodes
from moetheory.study.spec import DesignSpec
from simulations import topk

TS1 = MoESpec(3, 1, gate="topk", top_k=2)
NODES1 = design_nodes(DesignSpec("uniform"), 1, m=32)


def _split_middle(k_active):
    # k = 4: the truth's atoms exactly, the middle expert split into two halves of its weight
    t = topk.TRUTH_D1
    idx = [0, 1, 1, 2]
    beta0 = np.asarray(t.beta0)[idx] - np.log([1, 2, 2, 1])
    p = MoEParams.create(beta0, t.beta1[idx], t.a[idx], t.b[idx], t.var[idx])
    return MoESpec(4, 1, gate="topk", top_k=k_active), p


def test_new_design_regions_move_with_the_parameters():
    nodes = design_nodes(topk.DESIGN, 2)
    truth, spec = topk.TRUTH, topk.TRUTH_SPEC
    regions = dict(region_table(spec, truth, nodes))
    # three wedges, one per pair of experts (no expert is always active); 121 grid nodes
    assert sorted(regions) == [(0, 1), (0, 2), (1, 2)]
    assert all(abs(m - 1 / 3) < 0.05 for m in regions.values())
    rot = np.deg2rad(15.0)
    R = np.array([[np.cos(rot), -np.sin(rot)], [np.sin(rot), np.cos(rot)]])
    moved = truth._replace(beta1=np.asarray(truth.beta1) @ R.T)
    changed = np.any(np.asarray(active_mask(spec, truth, nodes))
                     != np.asarray(active_mask(spec, moved, nodes)), axis=1)
    assert changed.mean() > 0.05  # a 15° rotation moves the wedges over a sizeable part of x
    # the d = 1 design: any change of β_1 that keeps their order leaves every active set as it is
    t1 = topk.TRUTH_D1
    for b1 in ([-5.0, 0.3, 5.0], [-1.0, 0.5, 3.0], [-40.0, 0.0, 0.1]):
        other = t1._replace(beta1=np.asarray(b1)[:, None])
        assert np.array_equal(np.asarray(active_mask(TS1, t1, NODES1)),
                              np.asarray(active_mask(TS1, other, NODES1)))


def test_region_loss_zero_at_truth_both_designs():
    assert float(region_loss(TS1, topk.TRUTH_D1, TS1, topk.TRUTH_D1, NODES1)) == 0.0
    nodes = design_nodes(topk.DESIGN, 2, m=64)
    v = float(region_loss(topk.TRUTH_SPEC, topk.TRUTH, topk.TRUTH_SPEC, topk.TRUTH, nodes))
    assert v == pytest.approx(0.0, abs=1e-12)


def test_region_loss_positive_where_softmax_d2_is_blind():
    # K = 2 cannot activate both halves of the split middle expert beside an outer expert:
    # D_2 is 0 (atoms exact, weights sum) but on each half line only one half (weight e^{0.5}/2)
    # is active: the best weight mismatch on each region is e^{0.5}/2.
    fs, fit = _split_middle(2)
    assert float(d2_loss(fit, topk.TRUTH_D1)) == pytest.approx(0.0, abs=1e-12)
    v = float(region_loss(fs, fit, TS1, topk.TRUTH_D1, NODES1))
    assert v == pytest.approx(np.exp(0.5) / 2, rel=1e-12)
    # with K = 3 every half is active where it is needed: the density is the truth's, loss 0
    fs3, _ = _split_middle(3)
    assert float(region_loss(fs3, fit, TS1, topk.TRUTH_D1, NODES1)) == pytest.approx(0.0, abs=1e-12)


def test_region_loss_invariant_to_relabelling_and_batched():
    fs, fit = _split_middle(2)
    rng = np.random.default_rng(3)
    fit = fit._replace(beta1=fit.beta1 + 0.2 * rng.normal(size=fit.beta1.shape),
                       b=fit.b + 0.05 * rng.normal(size=4))
    v = float(region_loss(fs, fit, TS1, topk.TRUTH_D1, NODES1))
    assert v > 0
    for order in ([3, 2, 1, 0], [1, 3, 0, 2]):
        vp = float(region_loss(fs, fit.permute(order), TS1, topk.TRUTH_D1, NODES1))
        assert vp == pytest.approx(v, rel=1e-12)
    batch = MoEParams(*(np.stack([x, x]) for x in fit))
    np.testing.assert_allclose(np.asarray(region_loss(fs, batch, TS1, topk.TRUTH_D1, NODES1)),
                               v, rtol=1e-12)


def test_region_loss_is_the_voronoi_loss_when_every_expert_is_active():
    spec = MoESpec(3, 1)
    rng = np.random.default_rng(4)
    truth = topk.TRUTH_D1
    fit = truth._replace(beta1=truth.beta1 + 0.1 * rng.normal(size=(3, 1)),
                         a=truth.a + 0.1 * rng.normal(size=(3, 1)))
    assert float(region_loss(spec, fit, spec, truth, NODES1)) == pytest.approx(
        float(voronoi_loss(fit, truth)), rel=1e-12)


def test_region_loss_validation():
    fs, fit = _split_middle(2)
    with pytest.raises(ValueError, match="nodes must have shape"):
        region_loss(fs, fit, TS1, topk.TRUTH_D1, np.zeros((5, 2)))
    with pytest.raises(ValueError, match="fit_spec describes k=3"):
        region_loss(TS1, fit, TS1, topk.TRUTH_D1, NODES1)
    with pytest.raises(TypeError, match="truth_spec must be a MoESpec"):
        region_loss(fs, fit, "topk", topk.TRUTH_D1, NODES1)


def test_d1_design_flaw_density_equivalent_with_ceiling_d2():
    # k = 4, K = 2, β_1 = (−5, −1, 1, 5), middle expert duplicated: on x > 0 the active pair is
    # the truth's pair shifted by t_1 = +1, on x < 0 by t_1 = −1: the same density everywhere.
    fs = MoESpec(4, 1, gate="topk", top_k=2)
    dup = MoEParams.create([0.0, 0.5, 0.5, 0.0], [[-5.0], [-1.0], [1.0], [5.0]],
                           [[-2.0], [1.0], [1.0], [2.0]], [1.0, 0.0, 0.0, -1.0], [0.1] * 4)
    r = evaluate_candidate(TS1, topk.TRUTH_D1, fs, dup, nodes=NODES1)
    assert r.hellinger < 1e-10
    ceiling = float(np.sum(np.exp(topk.TRUTH_D1.beta0)))  # 1 + e^0.5 + 1 = 3.6487
    assert r.loss == pytest.approx(ceiling, rel=1e-12)
    assert r.region_loss == pytest.approx(0.0, abs=1e-12)


def test_search_equivalent_finds_the_d1_flaw():
    # seed 6's single start duplicates the middle expert with both copies' slopes in the right
    # order on each half line (the search's other starts reach the same family, 9 of 12 for seed 0)
    fs = MoESpec(4, 1, gate="topk", top_k=2)
    found = search_equivalent(TS1, topk.TRUTH_D1, fs, nodes=NODES1, n_starts=1, seed=6)
    assert found and found[0].hellinger < 1e-6
    # D_2 of a density-equivalent model: O(1) (the ceiling is 3.65), the region loss ~ 0
    assert found[0].loss > 1.0
    assert found[0].region_loss < 1e-6


def test_gate_error_zero_at_truth_and_positive_off_it():
    spec = MoESpec(2, 1, gate="activation", activation="tanh", tau="estimated")
    truth = MoEParams.create([0.5, 0.0], [[3.0], [-1.5]], [[-1.0], [1.0]], [0.5, -0.5],
                             [0.05, 0.05], tau=0.5)
    nodes = np.linspace(-1, 1, 33)[:, None]
    assert float(gate_error(spec, truth, spec, truth, nodes)) == 0.0
    off = truth._replace(beta0=np.array([0.5 + np.log(3.0) * 0.5, 0.0]))
    # a constant logit shift of log 3 for expert 0: its odds triple at every x
    g = np.asarray(1 / (1 + np.exp(-(np.tanh(3 * nodes[:, 0]) + 0.5 - np.tanh(-1.5 * nodes[:, 0])) / 0.5)))
    g3 = 3 * g / (3 * g + 1 - g)
    expected = np.sqrt(np.mean(2 * (g3 - g) ** 2))
    assert float(gate_error(spec, off, spec, truth, nodes)) == pytest.approx(expected, rel=1e-12)


def test_activation_designs_identify_the_gate():
    # Smallest eigenvalue of the Fisher information (20,000 draws, scaled to unit diagonal). Over
    # seeds 0-3 it was in [-0.005, 0.001] for the d = 1 tanh design (singular to Monte Carlo
    # precision: the gate is weakly identified) and in [0.129, 0.145] for the d = 2 design.
    from simulations.temperature import FAMILIES
    from moetheory.identifiability import information_sd

    res = {}
    for fam in ("tanh", "tanh2d"):
        opts, truth, design = FAMILIES[fam]
        res[fam] = information_sd(MoESpec(2, truth.dim, **opts), truth, design, n_mc=20000)
    assert abs(res["tanh"].min_eig) < 0.01 and np.isnan(res["tanh"].sd["tau"])
    assert res["tanh2d"].min_eig > 0.1
    assert 1.0 < res["tanh2d"].sd["tau"] < 3.0  # documented: 1.8
