"""The study progress display: the compile phase named as such, and the ETA's cost model."""
from __future__ import annotations

import numpy as np
import pytest

from moetheory.em.config import EMConfig
from moetheory.params import MoEParams
from moetheory.spec import MoESpec
from moetheory.study.progress import OVERFIT_COST, OVERHEAD_OBS, CellProgress
from moetheory.study.spec import DesignSpec, FitSpec, StudySpec

TRUTH = MoEParams.create(beta0=[0.3, 0.0], beta1=[[3.0], [0.0]], a=[[2.0], [-1.5]],
                         b=[1.0, -1.0], var=[0.09, 0.25])


def _study(**kw):
    return StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=TRUTH,
                     fits=(FitSpec("k2", MoESpec(2, 1), sizes=(200, 300)),
                           FitSpec("k3", MoESpec(3, 1), sizes=(200, 300, 400), n_starts=2),
                           FitSpec("k3-fast", MoESpec(3, 1), sizes=(200, 300), n_starts=2,
                                   estimator=EMConfig(init="paper", max_iter=20))),
                     design=DesignSpec("uniform", low=-1.0, high=1.0),
                     estimator=EMConfig(init="paper", max_iter=200), replicates=2, seed=7, **kw)


def test_eta_follows_each_models_measured_rate():
    # Cells whose times follow the cost model exactly, at a different rate per fitted model
    # and a compile-laden first cell per model: once a model has a second finished cell, the
    # ETA is exact for its cells; an unseen model borrows the rate of its estimator.
    study = _study()
    todo = study.cells()
    rate = {"k2": 1e-6, "k3": 3e-6, "k3-fast": 0.5e-6}
    bar = CellProgress(study, todo, enabled=False)
    assert bar.eta() is None
    walls = []
    for i, (label, n) in enumerate(todo):
        first = i == 0 or todo[i - 1][0] != label
        walls.append(bar.cost(label, n) * rate[label] + (5.0 if first else 0.0))
    cost = [bar.cost(label, n) for label, n in todo]
    assert [lab for lab, _ in todo] == ["k2", "k2", "k3", "k3", "k3", "k3-fast", "k3-fast"]
    etas = []
    for i, (label, n) in enumerate(todo):
        bar.done(label, n, {"failed": np.zeros(2, bool)}, wall_s=walls[i])
        etas.append(bar.eta())
    # after k2's first cell alone no ETA: its time is mostly the model's compilation
    assert etas[0] is None
    # after k2's two cells: every cell left at k2's steady rate (k3 shares k2's estimator;
    # k3-fast's estimator has no finished cell), the compile-laden first cell left out
    assert etas[1] == pytest.approx(1e-6 * sum(cost[2:]), rel=1e-12)
    # after k3's second cell: k3's last cell at k3's own rate, exactly; k3-fast at the steady
    # rate of all finished cells
    steady = (walls[1] + walls[3]) / (cost[1] + cost[3])
    assert etas[3] == pytest.approx(walls[4] + steady * sum(cost[5:]), rel=1e-12)
    assert etas[-1] == 0.0
    # k2's cost: replicates × starts × (n·k + N0)
    assert bar.cost("k2", 300) == 2 * 1 * (300 * 2 + OVERHEAD_OBS)


def test_an_unseen_overfitted_model_is_predicted_slower_under_a_tight_stopping_rule():
    # Before its first cell ends, an over-fitted model borrows the exact-fitted model's rate,
    # times OVERFIT_COST per extra expert when EM runs to the tight (mean) tolerance; the
    # official protocol's relative rule stops over-fitted EM early: no factor.
    official = EMConfig(init="paper", tol=1e-6, stop_rule="relative", max_iter=2000, polish="none")
    study = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=TRUTH,
                      fits=(FitSpec("k2", MoESpec(2, 1), sizes=(200, 300)),
                            FitSpec("k4", MoESpec(4, 1), sizes=(300,)),
                            FitSpec("k4-official", MoESpec(4, 1), sizes=(300,), estimator=official)),
                      design=DesignSpec("uniform", low=-1.0, high=1.0),
                      estimator=EMConfig(init="paper"), replicates=2, seed=7)
    bar = CellProgress(study, study.cells(), enabled=False)
    plain = 2 * 1 * (300 * 4 + OVERHEAD_OBS)
    assert bar.cost("k4", 300) == plain * OVERFIT_COST ** 2
    assert bar.cost("k4-official", 300) == plain
    assert bar.cost("k2", 300) == 2 * 1 * (300 * 2 + OVERHEAD_OBS)
    for n in (200, 300):
        bar.done("k2", n, {"failed": np.zeros(2, bool)}, wall_s=1e-6 * bar.cost("k2", n))
    assert bar.eta() == pytest.approx(1e-6 * plain * (OVERFIT_COST ** 2 + 1), rel=1e-12)


def test_study_progress_names_the_compile_phase(tmp_path, capsys):
    from moetheory.study.runner import run_study

    study = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=TRUTH,
                      fits=(FitSpec("k2", MoESpec(2, 1), sizes=(200,)),),
                      design=DesignSpec("uniform", low=-1.0, high=1.0),
                      estimator=EMConfig(init="paper", max_iter=50), replicates=2, seed=7,
                      losses=("voronoi",))
    run_study(study, tmp_path, progress=True)
    err = capsys.readouterr().err
    assert "tiny: compiling the Numba kernels" in err
    assert "compiled the Numba kernels in" in err and "ETA 0:00" in err
