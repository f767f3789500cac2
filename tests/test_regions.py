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


def test_topk_hellinger_integrates_the_sliver_between_moved_boundaries():
    """The polar quadrature of a top-K gate (d = 2, score selection) matches a fine grid.

    Rotating the fitted gate slopes by 10° moves every region boundary: the fitted and true
    active sets differ on slivers where H²(x) is O(1). Reference: a 300 × 300 midpoint grid
    (offset so no node lies on a boundary); its error on a sliver boundary of length O(1) is
    O(grid spacing · boundary length) ≈ 1% of H² here, hence the 2% tolerance.
    """
    import jax
    import jax.numpy as jnp

    from moetheory.study.density import (cone_nodes, cone_quadrature, density_nodes,
                                         hellinger_distance, hellinger_sq_at)

    spec, truth = topk.TRUTH_SPEC, topk.TRUTH
    c, s = np.cos(np.deg2rad(10.0)), np.sin(np.deg2rad(10.0))
    fitted = truth._replace(beta1=truth.beta1 @ np.array([[c, s], [-s, c]]))
    assert cone_quadrature(spec, spec, topk.DESIGN)
    xs, w = cone_nodes(spec, fitted, spec, truth, 1.0)
    assert abs(float(w.sum()) - 1.0) < 1e-12 and np.all(np.asarray(w) > 0)
    h_cone = float(hellinger_distance(spec, fitted, spec, truth, xs, weights=w))
    q = 300
    axis = -1.0 + 2.0 * (np.arange(q) + 0.5) / q + 1e-3
    grid = np.stack(np.meshgrid(axis, axis, indexing="ij"), -1).reshape(-1, 2)
    fn = jax.jit(lambda x: hellinger_sq_at(spec, fitted, spec, truth, x))
    h_grid = np.sqrt(np.mean(np.concatenate(
        [np.asarray(fn(jnp.asarray(part))) for part in np.array_split(grid, 30)])))
    assert abs(h_cone - h_grid) < 0.02 * h_grid, (h_cone, h_grid)
    # A 1° rotation: slivers far thinner than the 11 × 11 grid's spacing. The polar quadrature
    # agrees with itself refined (16 × 16 nodes per arc) to 0.1%; the fixed grid is 2× off.
    c, s = np.cos(np.deg2rad(1.0)), np.sin(np.deg2rad(1.0))
    near = truth._replace(beta1=truth.beta1 @ np.array([[c, s], [-s, c]]))
    xs, w = cone_nodes(spec, near, spec, truth, 1.0)
    h_near = float(hellinger_distance(spec, near, spec, truth, xs, weights=w))
    xs, w = cone_nodes(spec, near, spec, truth, 1.0, n_theta=16, n_r=16)
    h_fine = float(hellinger_distance(spec, near, spec, truth, xs, weights=w))
    assert abs(h_near - h_fine) < 1e-3 * h_fine
    h_fixed = float(hellinger_distance(spec, near, spec, truth,
                                       jnp.asarray(design_nodes(topk.DESIGN, 2))))
    assert h_fixed > 1.5 * h_fine
    # zero at the truth; the fixed nodes for a gate without jumps
    xs0, w0 = density_nodes(spec, truth, spec, truth, topk.DESIGN, 2)
    assert float(hellinger_distance(spec, truth, spec, truth, xs0, weights=w0)) < 1e-6
    soft = MoESpec(3, 2)
    assert not cone_quadrature(soft, soft, topk.DESIGN)
    xs1, w1 = density_nodes(soft, truth, soft, truth, topk.DESIGN, 2)
    assert xs1.shape == (121, 2) and np.allclose(np.asarray(w1), 1 / 121)
