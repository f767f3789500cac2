"""A gate defined in user code (this file, not the package) gets EM, standard errors, losses,
studies and the PDE check through the package's generic machinery (issue 19)."""
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import moetheory as mt
from moetheory import mle
from moetheory.em.run import run_em
from moetheory.gates import Gate, register_gate
from moetheory.model import log_likelihood, sample
from moetheory.params import MoEParams
from moetheory.spec import MoESpec


@dataclass(frozen=True)
class DistanceGate(Gate):
    """g_i(x) ∝ exp(β_0i) / (1 + ‖x − β_1i‖²): a score by the distance to each expert's centre
    (a Cauchy kernel: a Gaussian kernel exp(−‖x − c‖²/2) would be a softmax in disguise, its
    −‖x‖²/2 cancelling, with a common shift of the centres unidentified)."""

    name = "test-distance"

    def log_weights(self, spec, params, z, mask=None):
        d2 = ((z[:, None, :] - params.beta1[None, :, :]) ** 2).sum(-1)
        return jax.nn.log_softmax(params.beta0 - jnp.log1p(d2), axis=-1)

    def pins(self, spec):
        return (True, False)

    def translation(self, spec):
        return "bias"

    def sympy_weight(self, sp, x, beta1, beta0, tau, extra):
        return sp.exp(beta0) / (1 + sum((xi - c) ** 2 for xi, c in zip(x, beta1)))


TRUTH = MoEParams.create(beta0=[0.3, 0.0], beta1=[[-1.0], [1.0]], a=[[2.0], [-1.0]],
                         b=[0.5, -0.5], var=[0.05, 0.05])


def _data(n, seed):
    spec = MoESpec(2, 1, gate=DistanceGate())
    kx, ky = jax.random.split(jax.random.key(seed))
    x = np.asarray(jax.random.uniform(kx, (n, 1), minval=-2.0, maxval=2.0))
    return spec, x, np.asarray(sample(ky, spec, TRUTH, x))


def test_spec_holds_the_gate_object():
    spec = MoESpec(2, 1, gate=DistanceGate())
    assert spec.gate_family == DistanceGate() and spec.gate_name == "test-distance"
    assert spec == MoESpec(2, 1, gate=DistanceGate()) and hash(spec) == hash(MoESpec(2, 1, gate=DistanceGate()))
    assert spec.to_dict()["gate"] == "test-distance"
    # free layout from the gate: both centres free, the last bias pinned
    assert [lab for _, _, lab in mle.free_layout(spec)][:3] == ["gate1:x1", "gate1:const", "gate2:x1"]


def test_em_is_monotone_for_the_user_gate():
    spec, x, y = _data(500, 1)
    start = jax.tree.map(jnp.asarray, TRUTH._replace(beta1=TRUTH.beta1 + 0.3, a=TRUTH.a - 0.2))
    res = run_em(spec, start, jnp.asarray(x), jnp.asarray(y), tol_rel=1e-12, max_iter=100)
    tr = np.asarray(res.trace)
    tr = tr[np.isfinite(tr)]
    # rounding of a sum of n terms is the only admissible decrease (relative 1e-12)
    assert np.all(np.diff(tr) >= -1e-12 * np.abs(tr[:-1]))
    assert tr[-1] > tr[0]


@pytest.fixture(scope="module")
def fitted():
    spec, x, y = _data(1500, 0)
    return spec, x, y, mt.fit(x, y, n_experts=2, gate=DistanceGate(), n_init=4, seed=0)


def test_fit_with_standard_errors(fitted):
    spec, x, y, res = fitted
    assert res.converged and res.certificate.reason == "certified"
    assert abs(res.loglik - float(log_likelihood(spec, res.params, x, y))) <= 1e-9 * abs(res.loglik)
    se = res.bse()
    assert np.all(np.isfinite(se)) and np.all(se > 0)
    # the truth within 4 standard errors of the estimate, labels aligned by the expert slopes
    order = np.argsort(-res.params.a[:, 0])
    est = np.asarray(mle.pack(spec, res.params.permute(order)))
    layout = mle.free_layout(spec)
    pos = {(f, idx): t for t, (f, idx, _) in enumerate(layout)}

    def src(f, idx):
        if f == "beta0":  # pinned at the last expert: beta0_i - beta0_last, relabelled
            return None
        return pos[(f, (int(order[idx[0]]),) + idx[1:])]

    truth = np.asarray(mle.pack(spec, TRUTH))
    for t, (f, idx, lab) in enumerate(layout):
        s = src(f, idx)
        if s is not None:
            assert abs(est[t] - truth[t]) <= 4 * se[s], (lab, est[t], truth[t], se[s])
    assert "test-distance" in res.summary()


def test_losses_remove_the_gate_shift(fitted):
    from moetheory.losses import voronoi_loss

    spec, _, _, res = fitted
    translation = mt.gates.gate_translation(spec)
    assert translation == "bias"
    shifted = TRUTH._replace(beta0=TRUTH.beta0 + 5.0)  # the same model
    assert float(voronoi_loss(shifted, TRUTH, translation=translation)) == pytest.approx(0.0, abs=1e-12)
    order = np.argsort(-res.params.a[:, 0])
    assert float(voronoi_loss(res.params.permute(order), TRUTH, translation=translation)) < 0.5


def test_study_cell_runs_the_user_gate(tmp_path):
    from moetheory.em.config import EMConfig
    from moetheory.study.runner import compute_cell
    from moetheory.study.spec import DesignSpec, FitSpec, StudySpec

    spec = MoESpec(2, 1, gate=DistanceGate())
    study = StudySpec(name="user-gate", truth_spec=spec, truth=TRUTH,
                      fits=(FitSpec("k2", spec, sizes=(1600,)),), design=DesignSpec("uniform", -2.0, 2.0),
                      estimator=EMConfig(init="paper"), replicates=2, losses=("voronoi", "hellinger"))
    assert study.fit("k2").translation == "bias"
    arrays = compute_cell(study, "k2", 1600, em_backend="jax")
    assert arrays["certified"].all() and np.all(np.isfinite(arrays["loss_voronoi"]))
    # a coarse sanity bound, not a rate: half the distance between the true centres (2); the
    # Cauchy gate is weakly informative, D_1 at n = 400 reached 1.007 in one of 2 replicates
    assert np.all(arrays["loss_voronoi"] < 1.0)


def test_registered_user_gate_is_named_in_declarations():
    from moetheory.gates import GATES
    from moetheory.study.spec import FitSpec, StudySpec

    register_gate(DistanceGate(), overwrite=True)
    try:
        spec = MoESpec(2, 1, gate="test-distance")
        assert spec.gate_family == DistanceGate()
        study = StudySpec(name="user-gate-toml", truth_spec=spec, truth=TRUTH,
                          fits=(FitSpec("k2", spec, sizes=(100,)),))
        assert StudySpec.from_toml(study.to_toml()) == study
        with pytest.raises(ValueError, match="already registered"):
            register_gate(DistanceGate())
    finally:
        GATES.pop("test-distance")
        from moetheory.gates.registry import gate_of

        gate_of.cache_clear()
    with pytest.raises(ValueError, match="gate must be one of"):
        MoESpec(2, 1, gate="test-distance")


def test_pde_table_takes_the_user_gate():
    from moetheory.symbolic import PDE_RELATIONS, d2_exponent_rules, pde_table

    table = pde_table([DistanceGate()])
    row = table["test-distance"]
    assert row[PDE_RELATIONS[0]]["status"] == "breaks"  # the distance score: ratio depends on x
    assert row[PDE_RELATIONS[1]]["status"] == "holds"   # the Gaussian expert's PDE
    assert row[PDE_RELATIONS[3]]["status"] == "holds"   # the common beta0 shift
    assert d2_exponent_rules("test-distance", table) == (("fixed", 2), ("fixed", 2), ("rbar", 1), ("rbar", 2))
