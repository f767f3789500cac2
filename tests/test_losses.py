"""Tests of moetheory.losses: Voronoi cells, D_1/D_2 and per-parameter errors.

Tolerances: quantities that are exact in exact arithmetic (0 at the truth, hand-computed values,
invariances that only reorder sums) are checked to 1e-12 (absolute or relative), i.e. a few
hundred float64 ulps for O(1) values. The infimum is a derivative-free search, so comparisons with
other searches allow 1e-9 (far below any statistically meaningful loss difference).
"""
from __future__ import annotations

import jax
import numpy as np
import pytest

from moetheory import MoEParams
from moetheory.losses import (RBAR, CellErrors, best_translation, cell_errors, d1_loss, d2_loss,
                              gate_translation, matched_errors, summarize_cells, voronoi_cells,
                              voronoi_loss)


def _truth2():
    # two well-separated true atoms (beta1, a, b, var), d = 1, weights e^0 = 1
    return MoEParams.create([0.0, 0.0], [[2.0], [-2.0]], [[1.0], [-1.0]], [0.0, 5.0], [1.0, 2.0])


def _random_truth(rng, k, d):
    return MoEParams.create(rng.normal(size=k), rng.normal(scale=2.0, size=(k, d)),
                            rng.normal(scale=2.0, size=(k, d)), rng.normal(scale=2.0, size=k),
                            rng.uniform(0.5, 2.0, size=k))


def _perturb(rng, truth, scale, split=None):
    """Fitted model near the truth; ``split`` lists true atoms to duplicate (over-fitting)."""
    idx = list(range(truth.n_experts)) + list(split or [])
    k = len(idx)
    counts = np.bincount(idx, minlength=truth.n_experts)
    beta0 = truth.beta0[idx] - np.log(counts[idx]) + scale * rng.normal(size=k)
    return MoEParams.create(beta0, truth.beta1[idx] + scale * rng.normal(size=(k, truth.dim)),
                            truth.a[idx] + scale * rng.normal(size=(k, truth.dim)),
                            truth.b[idx] + scale * rng.normal(size=k),
                            truth.var[idx] * np.exp(scale * rng.normal(size=k)))


def _stack(params):
    return MoEParams(*(np.stack(x) for x in zip(*params)))


def _shift_gate(p, t0, t1):
    return p._replace(beta0=p.beta0 + t0, beta1=p.beta1 + np.asarray(t1))


# ------------------------------------------------------------------ zero at the truth


def test_d1_zero_at_truth():
    truth = _truth2()
    assert float(d1_loss(truth, truth)) == pytest.approx(0.0, abs=1e-12)
    assert float(voronoi_loss(truth, truth, translation="none")) == 0.0


def test_d2_zero_at_exact_split():
    truth = _truth2()
    # atom 0 split into two copies with weights 0.3 + 0.7 = e^0
    fit = MoEParams.create(np.log([0.3, 0.7, 1.0]), truth.beta1[[0, 0, 1]], truth.a[[0, 0, 1]],
                           truth.b[[0, 0, 1]], truth.var[[0, 0, 1]])
    for translation in ("infimum", "none"):
        assert float(d2_loss(fit, truth, translation=translation)) == pytest.approx(0.0, abs=1e-12)
    cells = voronoi_cells(fit, truth)
    assert cells.assign.tolist() == [0, 0, 1] and cells.size.tolist() == [2, 1]


def test_cells_ties_go_to_lowest_index():
    truth = MoEParams.create([0.0, 0.0], [[1.0], [-1.0]], [[0.0], [0.0]], [0.0, 0.0], [1.0, 1.0])
    fit = MoEParams.create([0.0, 0.0], [[0.0], [-0.9]], [[0.0], [0.0]], [0.0, 0.0], [1.0, 1.0])
    cells = voronoi_cells(fit, truth)  # fitted atom 0 is equidistant from both true atoms
    assert cells.assign.tolist() == [0, 1] and cells.size.tolist() == [1, 1]
    # cells are computed after translating the fitted β_1 by −t1
    assert voronoi_cells(fit, truth, t1=[-1.0]).assign.tolist() == [0, 0]


# ------------------------------------------------------------------ hand-computed values


def _hand_fit():
    # fitted atoms (beta1, a, b, var) and weights e^{beta0}:
    #   f0 = (2.1, 1.2, -0.1, 1.0) w=0.5   f1 = (1.9, 1.0, 0.2, 1.3) w=0.25  -> cell of true 0
    #   f2 = (-2.0, -1.5, 5.0, 2.0) w=1                                      -> cell of true 1
    return MoEParams.create(np.log([0.5, 0.25, 1.0]), [[2.1], [1.9], [-2.0]],
                            [[1.2], [1.0], [-1.5]], [-0.1, 0.2, 5.0], [1.0, 1.3, 2.0])


def test_d2_hand_computed_uses_rbar_exponents():
    # Cell of true atom 0 has m = 2 atoms, r̄(2) = 4: terms |Δβ1|^4 + |Δb|^4 + |Δa|^2 + |Δν|^2
    #   f0: 0.1^4 + 0.1^4 + 0.2^2 + 0^2   = 0.0402 ; × 0.5  = 0.0201
    #   f1: 0.1^4 + 0.2^4 + 0^2   + 0.3^2 = 0.0917 ; × 0.25 = 0.022925
    #   weight mismatch |0.5 + 0.25 − 1| = 0.25
    # Cell of true atom 1 (m = 1, linear): 1 × (0 + 0.5 + 0 + 0) = 0.5 ; mismatch |1 − 1| = 0
    # D_2 = 0.0201 + 0.022925 + 0.25 + 0.5 = 0.793025
    fit, truth = _hand_fit(), _truth2()
    assert float(d2_loss(fit, truth, translation="none")) == pytest.approx(0.793025, rel=1e-12)
    # D_1 (all linear): 0.5 × (0.1 + 0.2 + 0.1 + 0) + 0.25 × (0.1 + 0 + 0.2 + 0.3) + 0.25 + 0.5 = 1.1
    assert float(d1_loss(fit, truth, translation="none")) == pytest.approx(1.1, rel=1e-12)
    # kind="auto" picks D_2 because k=3 > k*=2
    assert float(voronoi_loss(fit, truth, translation="none")) == pytest.approx(0.793025, rel=1e-12)
    # rbar overrides the table: r̄(2) = 2 gives exponents 2 and 1:
    #   f0: 0.01 + 0.01 + 0.2 + 0 = 0.22 ; × 0.5 = 0.11
    #   f1: 0.01 + 0.04 + 0 + 0.3 = 0.35 ; × 0.25 = 0.0875 ; total 0.11 + 0.0875 + 0.25 + 0.5
    assert float(d2_loss(fit, truth, translation="none", rbar={2: 2})) == pytest.approx(0.9475, rel=1e-12)


def test_d2_three_atom_cell_uses_rbar6():
    truth = _truth2()
    # three atoms in the cell of true atom 0, weights 0.5 each; only Δa = 0.5 on the first:
    #   0.5 × 0.5^{6/2} = 0.0625 ; mismatch |1.5 − 1| = 0.5 ; cell 1 exact -> D_2 = 0.5625
    fit = MoEParams.create(np.log([0.5, 0.5, 0.5, 1.0]), [[2.0], [2.0], [2.0], [-2.0]],
                           [[1.5], [1.0], [1.0], [-1.0]], [0.0, 0.0, 0.0, 5.0], [1.0, 1.0, 1.0, 2.0])
    assert float(d2_loss(fit, truth, translation="none")) == pytest.approx(0.5625, rel=1e-12)


def test_cell_errors_hand_computed():
    errs = cell_errors(_hand_fit(), _truth2(), translation="none")
    assert isinstance(errs, CellErrors)
    assert errs.size.tolist() == [2, 1]
    np.testing.assert_allclose(errs.weight, [0.25, 0.0], atol=1e-12)
    np.testing.assert_allclose(errs.beta1, [0.1, 0.0], atol=1e-12)
    np.testing.assert_allclose(errs.a, [0.2, 0.5], atol=1e-12)
    np.testing.assert_allclose(errs.b, [0.2, 0.0], atol=1e-12)
    np.testing.assert_allclose(errs.var, [0.3, 0.0], atol=1e-12)
    summary = summarize_cells(errs)
    assert summary[1]["count"] == 1 and summary[2]["count"] == 1 and summary[3]["count"] == 0
    assert summary[2]["var"] == pytest.approx(0.3, abs=1e-12)
    assert np.isnan(summary[3]["a"])


def test_empty_cell():
    truth = _truth2()
    fit = MoEParams.create([0.0, 0.0], [[2.0], [2.1]], [[1.0], [1.1]], [0.0, 0.0], [1.0, 1.0])
    errs = cell_errors(fit, truth, kind="d2", translation="none")
    assert errs.size.tolist() == [2, 0]
    assert errs.weight[1] == pytest.approx(1.0) and np.isnan(float(errs.a[1]))


# ------------------------------------------------------------------ invariances


@pytest.mark.parametrize("kind,split", [("d1", None), ("d2", [0]), ("d2", [1, 1])])
def test_permutation_invariance(kind, split):
    rng = np.random.default_rng(1)
    truth = _truth2()
    fit = _perturb(rng, truth, 0.2, split)
    order = rng.permutation(fit.n_experts)
    rbar = {4: 8.0} if fit.n_experts == 4 else None
    for translation in ("infimum", "none"):
        v = float(voronoi_loss(fit, truth, kind, translation, rbar))
        vp = float(voronoi_loss(fit.permute(order), truth, kind, translation, rbar))
        assert vp == pytest.approx(v, rel=1e-12)


@pytest.mark.parametrize("kind,split", [("d1", None), ("d2", [0])])
def test_translation_invariance_only_with_infimum(kind, split):
    rng = np.random.default_rng(2)
    truth = _truth2()
    fit = _perturb(rng, truth, 0.1, split)
    moved = _shift_gate(fit, 1.3, [0.7])
    v, vm = (float(voronoi_loss(p, truth, kind)) for p in (fit, moved))
    # the search starts are translation-equivariant; the compass refinement is not exactly,
    # hence 1e-9 rather than rounding level
    assert vm == pytest.approx(v, rel=1e-9, abs=1e-12)
    n, nm = (float(voronoi_loss(p, truth, kind, "none")) for p in (fit, moved))
    assert abs(nm - n) > 0.1
    # pinned mode ignores the translation too (both models are pinned)
    assert float(voronoi_loss(moved, truth, kind, "pinned")) == pytest.approx(
        float(voronoi_loss(fit, truth, kind, "pinned")), rel=1e-12)


def test_translated_truth_gives_zero():
    truth = _truth2()
    moved = _shift_gate(truth, -0.8, [2.5])
    assert float(d1_loss(moved, truth)) == pytest.approx(0.0, abs=1e-12)
    res = best_translation(moved, truth)
    np.testing.assert_allclose(res.t1, [2.5], atol=1e-12)
    assert float(res.t0) == pytest.approx(-0.8, abs=1e-12)


def test_pinned_split_reference_gives_spurious_loss():
    # official-code normalisation: the reference (last) true expert split over two fitted
    # experts -> pinning both models to their last expert gives an O(1) loss; the infimum is 0.
    truth = _truth2().pinned()
    fit = MoEParams.create(np.log([1.0, 0.4, 0.6]), truth.beta1[[0, 1, 1]], truth.a[[0, 1, 1]],
                           truth.b[[0, 1, 1]], truth.var[[0, 1, 1]])
    assert float(d2_loss(fit, truth)) == pytest.approx(0.0, abs=1e-12)
    assert float(d2_loss(fit, truth, translation="pinned")) > 0.5


# ------------------------------------------------------------------ the infimum


@pytest.mark.parametrize("kind", ["d1", "d2"])
def test_infimum_never_worse_than_none(kind):
    # 8 random (truth, fitted) pairs, d = 2, k* = 2, k = 4, gates randomly translated; batched
    # (both arguments carry the batch axis). rbar supplies r̄(4): poor fits could otherwise
    # (rightly) raise, see test_unknown_rbar_*.
    rng = np.random.default_rng(10)
    truths = [_random_truth(rng, 2, 2) for _ in range(8)]
    fits = [_shift_gate(_perturb(rng, t, 0.5, [0, 1]), rng.normal(), rng.normal(size=2))
            for t in truths]
    truth, fit = _stack(truths), _stack(fits)
    inf = np.asarray(voronoi_loss(fit, truth, kind, rbar={4: 8.0}))
    none = np.asarray(voronoi_loss(fit, truth, kind, "none", rbar={4: 8.0}))
    assert np.all(inf <= none * (1 + 1e-12)) and np.all(inf < none)  # translated: strictly


@pytest.mark.parametrize("seed", range(3))
def test_infimum_matches_dense_grid(seed):
    # d = 1: the exact-in-t0 objective on a dense t1 grid (via translation="bias" on shifted
    # fitted models) can only be >= the true infimum; the search must reach the grid minimum.
    rng = np.random.default_rng(20 + seed)
    truth = _truth2()
    fit = _perturb(rng, truth, 0.6, [0, 1])
    grid = np.linspace(-6, 6, 2001)
    batch = fit._replace(beta0=np.broadcast_to(fit.beta0, (grid.size, 4)),
                         beta1=fit.beta1[None] - grid[:, None, None],
                         a=np.broadcast_to(fit.a, (grid.size, 4, 1)),
                         b=np.broadcast_to(fit.b, (grid.size, 4)),
                         var=np.broadcast_to(fit.var, (grid.size, 4)))
    grid_min = float(np.min(voronoi_loss(batch, truth, "d2", "bias", rbar={4: 8.0})))
    assert float(voronoi_loss(fit, truth, "d2", rbar={4: 8.0})) <= grid_min + 1e-9


def test_t0_is_exact():
    # at t1 = 0 the closed-form minimum over t0 is below a dense t0 grid
    rng = np.random.default_rng(4)
    truth = _truth2()
    fit = _perturb(rng, truth, 0.4, [0])
    t0 = np.linspace(-3, 3, 6001)
    vals = [float(voronoi_loss(_shift_gate(fit, -t, [0.0]), truth, "d2", "none")) for t in t0[::50]]
    exact = float(voronoi_loss(fit, truth, "d2", "bias"))
    assert exact <= min(vals) + 1e-12


# ------------------------------------------------------------------ r̄ and validation


def test_unknown_rbar_raises_unless_supplied():
    truth = _truth2()
    rng = np.random.default_rng(5)
    fit = MoEParams.create(np.log(np.full(4, 0.25)), 2.0 + 0.1 * rng.normal(size=(4, 1)),
                           1.0 + 0.1 * rng.normal(size=(4, 1)), 0.1 * rng.normal(size=4),
                           np.ones(4))
    assert voronoi_cells(fit, truth).size.tolist() == [4, 0]
    for translation in ("infimum", "none"):
        with pytest.raises(ValueError, match="m=4"):
            d2_loss(fit, truth, translation=translation, rbar_unknown="error")
    v = float(d2_loss(fit, truth, rbar={4: 8}))
    assert np.isfinite(v)
    assert float(d2_loss(fit, truth, rbar=lambda m: 2.0 * m)) == pytest.approx(v, rel=1e-12)
    # D_1 needs no exponent
    assert np.isfinite(float(d1_loss(fit, truth, translation="none")))
    assert dict(RBAR) == {2: 4.0, 3: 6.0}


def test_unknown_rbar_not_needed_does_not_raise():
    # k = 4, k* = 2 with cells (2, 2): r̄(4) is never needed
    rng = np.random.default_rng(6)
    fit = _perturb(rng, _truth2(), 0.05, [0, 1])
    assert np.isfinite(float(d2_loss(fit, _truth2())))


def test_validation_errors():
    truth = _truth2()
    fit2d = _random_truth(np.random.default_rng(7), 2, 2)
    with pytest.raises(ValueError, match="dimension d"):
        voronoi_loss(fit2d, truth)
    with pytest.raises(ValueError, match="translation"):
        voronoi_loss(truth, truth, translation="min")
    with pytest.raises(ValueError, match="kind"):
        voronoi_loss(truth, truth, kind="d3")
    with pytest.raises(ValueError, match="coords"):
        voronoi_loss(truth, truth, coords="scaled")
    with pytest.raises(ValueError, match="fitted.a"):
        voronoi_loss(truth._replace(a=np.zeros((3, 1))), truth)
    with pytest.raises(TypeError, match="fitted"):
        voronoi_loss({"beta0": 1}, truth)
    with pytest.raises(ValueError, match="rbar"):
        d2_loss(_hand_fit(), truth, rbar={2: -1.0})
    with pytest.raises(ValueError, match="k == k"):
        matched_errors(_hand_fit(), truth)
    with pytest.raises(ValueError, match=r"fitted.var must be > 0"):
        d1_loss(truth._replace(var=-truth.var), truth)
    with pytest.raises(ValueError, match=r"truth.tau must be > 0"):
        d1_loss(truth, truth._replace(tau=np.asarray(0.0)))
    with pytest.raises(ValueError, match=r"truth.tau must have shape \(\); got \(2,\)"):
        d1_loss(truth, truth._replace(tau=np.ones(2)))


# ------------------------------------------------------------------ temperature gates


def test_temperature_coords():
    truth = _truth2()._replace(tau=np.asarray(0.5))
    rng = np.random.default_rng(8)
    fit = _perturb(rng, _truth2(), 0.1)._replace(tau=np.asarray(0.5))
    # (β, τ) -> c(β, τ) leaves the model unchanged: identified loss unchanged, raw loss not
    c = 1.7
    scaled = fit._replace(beta0=c * fit.beta0, beta1=c * fit.beta1, tau=np.asarray(c * 0.5))
    ident = float(d1_loss(fit, truth, "none", coords="identified"))
    assert float(d1_loss(scaled, truth, "none", coords="identified")) == pytest.approx(ident, rel=1e-12)
    raw_scaled = float(d1_loss(scaled, truth, coords="raw", translation="none"))
    raw = float(d1_loss(fit, truth, coords="raw", translation="none"))
    assert raw_scaled != pytest.approx(raw, rel=1e-3)
    # raw adds |Δτ| once
    fit_tau = fit._replace(tau=np.asarray(0.7))
    assert float(d1_loss(fit_tau, truth._replace(tau=np.asarray(0.7)), translation="none")) + 0.2 == \
        pytest.approx(float(d1_loss(fit_tau, truth, translation="none")), rel=1e-12)


# ------------------------------------------------------------------ vmap / batches


def test_batch_and_vmap_equal_loop():
    rng = np.random.default_rng(9)
    truth = _truth2()
    fits = [_perturb(rng, truth, 0.3, [0, 1]) for _ in range(5)]
    batch = _stack(fits)
    rbar = {4: 8.0}
    loop = np.array([float(d2_loss(f, truth, rbar=rbar)) for f in fits])
    np.testing.assert_allclose(np.asarray(d2_loss(batch, truth, rbar=rbar)), loop, rtol=1e-12)
    vm = jax.vmap(lambda f: voronoi_loss(f, truth, "d2", rbar=rbar))(batch)
    np.testing.assert_allclose(np.asarray(vm), loop, rtol=1e-12)
    jt = jax.jit(lambda f: voronoi_loss(f, truth, "d2", rbar=rbar))(fits[0])
    assert float(jt) == pytest.approx(loop[0], rel=1e-12)
    errs = cell_errors(batch, truth, rbar=rbar)
    assert errs.size.shape == (5, 2) and errs.t1.shape == (5, 1)
    res = best_translation(batch, truth, rbar=rbar)
    np.testing.assert_allclose(errs.t1, res.t1, rtol=1e-12)
    np.testing.assert_array_equal(errs.size, res.size)
    assert sum(v["count"] for v in summarize_cells(errs, sizes=(0, 1, 2, 3, 4)).values()) == 10


def test_failed_replicate_is_nan_only_for_itself():
    rng = np.random.default_rng(12)
    truth = _truth2()
    fits = [_perturb(rng, truth, 0.2, [0]) for _ in range(3)]
    bad = fits[1]._replace(beta1=np.full_like(fits[1].beta1, np.nan))
    out = np.asarray(d2_loss(_stack([fits[0], bad, fits[2]]), truth))
    assert np.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], [float(d2_loss(f, truth)) for f in fits[::2]], rtol=1e-12)


def test_unknown_rbar_under_vmap_is_nan():
    truth = _truth2()
    fit = MoEParams.create(np.log(np.full(4, 0.25)), [[2.0], [2.1], [1.9], [2.05]],
                           np.ones((4, 1)), np.zeros(4), np.ones(4))
    batch = _stack([fit, fit])
    with pytest.raises(ValueError, match="m=4"):
        d2_loss(batch, truth, translation="none", rbar_unknown="error")
    out = jax.vmap(lambda f: d2_loss(f, truth, translation="none", rbar_unknown="error"))(batch)
    assert np.all(np.isnan(np.asarray(out)))


# ------------------------------------------------------------------ matched errors


@pytest.mark.parametrize("method", ["exhaustive", "hungarian"])
def test_matched_errors_recovers_permutation(method):
    rng = np.random.default_rng(11)
    truth = _random_truth(rng, 4, 2)
    order = np.array([2, 0, 3, 1])
    fit = _shift_gate(_perturb(rng, truth, 0.01), 0.9, [1.0, -2.0]).permute(order)
    res = matched_errors(fit, truth, method=method)
    # fitted expert perm[j] is the one built from true expert j
    np.testing.assert_array_equal(np.asarray(res.perm), np.argsort(order))
    for name in ("beta0", "beta1", "a", "b", "var"):
        assert np.all(np.asarray(getattr(res, name)) < 0.1)
    # exact: a translated, permuted truth has zero error
    exact = matched_errors(_shift_gate(truth, 0.9, [1.0, -2.0]).permute(order), truth, method=method)
    for name in ("beta0", "beta1", "a", "b", "var", "tau"):
        np.testing.assert_allclose(np.asarray(getattr(exact, name)), 0.0, atol=1e-12)


def test_matched_errors_bias_translation_frees_beta0_only():
    # activation gate: a common shift of β_0 is a symmetry, one of β_1 is not
    assert gate_translation("activation") == "bias"
    assert gate_translation("softmax") == gate_translation("temperature") == "infimum"
    truth = MoEParams.create([0.5, 0.0], [[2.0], [0.0]], [[-1.0], [1.0]], [0.5, -0.5],
                             [0.05, 0.05])
    wrong2 = truth._replace(beta1=np.array([[2.0], [0.5]]))  # only expert 2's β_1 is off
    res = matched_errors(wrong2, truth, translation="bias")
    np.testing.assert_allclose(res.beta1, [0.0, 0.5], atol=1e-12)
    np.testing.assert_allclose(res.beta0, [0.0, 0.0], atol=1e-12)
    # pinning β_1 too (the softmax convention) moves the error onto the reference's partner
    np.testing.assert_allclose(matched_errors(wrong2, truth).beta1, [0.5, 0.0], atol=1e-12)
    # a common β_0 shift is invisible under "bias"; a common β_1 shift is not
    same = matched_errors(_shift_gate(truth, 3.0, [0.0]), truth, translation="bias")
    np.testing.assert_allclose(same.beta0, 0.0, atol=1e-12)
    moved = matched_errors(_shift_gate(truth, 0.0, [3.0]), truth, translation="bias")
    np.testing.assert_allclose(moved.beta1, [3.0, 3.0], atol=1e-12)
    raw = matched_errors(_shift_gate(truth, 3.0, [0.0]), truth, translation="none")
    np.testing.assert_allclose(raw.beta0, [3.0, 3.0], atol=1e-12)
    with pytest.raises(ValueError, match="translation"):
        matched_errors(truth, truth, translation="min")


def test_matched_errors_values_and_batch():
    truth = _truth2()
    # swap experts, add Δa = 0.3 to the expert matching true 0, shift the whole gate by 2
    fit = MoEParams.create([2.0, 2.5], [[0.0], [4.0]], [[-1.0], [1.3]], [5.0, 0.0], [2.0, 1.0])
    res = matched_errors(fit, truth)
    assert res.perm.tolist() == [1, 0]
    # pinned to the expert matched to true 1 (fitted 0): Δβ0 = (2.5 − 2) − (0 − 0) = 0.5
    np.testing.assert_allclose(res.beta0, [0.5, 0.0], atol=1e-12)
    np.testing.assert_allclose(res.beta1, [0.0, 0.0], atol=1e-12)
    np.testing.assert_allclose(res.a, [0.3, 0.0], atol=1e-12)
    batch = MoEParams(*(np.stack([x, x]) for x in fit))
    rb = matched_errors(batch, truth)
    assert rb.perm.shape == (2, 2)
    np.testing.assert_allclose(rb.a[1], res.a, atol=1e-15)


# ------------------------------------------------------------------ r̄ bound and exponent rules


def test_unknown_rbar_bound_is_the_default_and_reported():
    truth = _truth2()
    # four atoms in the cell of true atom 0 (weights 0.25), one with Δa = 0.5; true atom 1 empty:
    #   0.25 × 0.5^{7/2} (r̄(4) scored with the bound 7, a-exponent 7/2) + |1 − 1| + |0 − 1|
    fit = MoEParams.create(np.log(np.full(4, 0.25)), [[2.0]] * 4, [[1.5], [1.0], [1.0], [1.0]],
                           np.zeros(4), np.ones(4))
    expected = 0.25 * 0.5 ** 3.5 + 1.0
    assert float(d2_loss(fit, truth, translation="none")) == pytest.approx(expected, rel=1e-12)
    res = best_translation(fit, truth, translation="none")
    assert int(res.rbar_bound_m) == 4 and int(res.unknown_m) == 0
    # a supplied r̄(4) is used instead (and nothing is bounded)
    res8 = best_translation(fit, truth, translation="none", rbar={4: 8.0})
    assert float(res8.value) == pytest.approx(0.25 * 0.5 ** 4 + 1.0, rel=1e-12)
    assert int(res8.rbar_bound_m) == 0
    # under vmap the bound gives numbers, never NaN
    out = jax.vmap(lambda f: d2_loss(f, truth, translation="none"))(_stack([fit, fit]))
    np.testing.assert_allclose(np.asarray(out), expected, rtol=1e-12)
    with pytest.raises(ValueError, match="rbar_unknown"):
        d2_loss(fit, truth, rbar_unknown="guess")


def test_activation_exponent_rule_hand_computed():
    # exponents 2, 2 for β_1, a and r̄, r̄/2 for b, ν (m = 2: 4 and 2):
    #   f0: 0.1^2 + 0.2^2 + 0.1^4 + 0^2 = 0.0501 ; × 0.5  = 0.02505
    #   f1: 0.1^2 + 0^2 + 0.2^4 + 0.3^2 = 0.1016 ; × 0.25 = 0.0254
    #   + mismatch 0.25 + single cell 0.5  -> 0.80045
    fit, truth = _hand_fit(), _truth2()
    v = float(d2_loss(fit, truth, translation="none", exponents="activation"))
    assert v == pytest.approx(0.80045, rel=1e-12)
    with pytest.raises(ValueError, match="exponents"):
        d2_loss(fit, truth, exponents="tanh")


def test_gate_exponents_follow_the_gate():
    from moetheory.losses.voronoi import gate_exponents
    from moetheory.spec import MoESpec

    assert gate_exponents(MoESpec(2, 1, gate="temperature")) == "softmax"
    assert gate_exponents(MoESpec(2, 1, gate="topk", top_k=1)) == "softmax"
    assert gate_exponents(MoESpec(2, 1, gate="activation", activation="identity")) == "softmax"
    for act in ("tanh", "sigmoid", "gelu", "softplus", "square"):
        assert gate_exponents(MoESpec(2, 1, gate="activation", activation=act)) == "activation"
