"""Shared fixtures: float64 JAX, the flexmix reference data, small simulated datasets."""
import os
import signal
import threading
from pathlib import Path

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402
import pytest  # noqa: E402

from moetheory.params import MoEParams  # noqa: E402

#: The R flexmix reference fits and their data (made by the scripts in that folder; README there).
FLEXMIX_DIR = Path(__file__).resolve().parent / "data" / "flexmix"


@pytest.fixture(scope="session")
def flexmix_dir() -> Path:
    return FLEXMIX_DIR


def simulate_softmax(truth: MoEParams, n: int, seed: int):
    """x ~ U(-1, 1)^d and y from the softmax-gated MoE ``truth`` (NumPy only, independent of
    moetheory.model.sample)."""
    rng = np.random.default_rng(seed)
    d = truth.beta1.shape[1]
    x = rng.uniform(-1.0, 1.0, (n, d))
    h = x @ truth.beta1.T + truth.beta0
    g = np.exp(h - h.max(axis=1, keepdims=True))
    g /= g.sum(axis=1, keepdims=True)
    z = (rng.uniform(size=(n, 1)) > np.cumsum(g, axis=1)).sum(axis=1)
    mean = (x * truth.a[z]).sum(axis=1) + truth.b[z]
    y = mean + np.sqrt(truth.var[z]) * rng.standard_normal(n)
    return x, y


#: Well-separated truths with k = 2, 3 experts and d = 1, 2 covariates.
TRUTHS = {
    (2, 1): MoEParams.create(beta0=[0.3, 0.0], beta1=[[3.0], [0.0]], a=[[2.0], [-1.5]],
                             b=[1.0, -1.0], var=[0.09, 0.25]),
    (3, 1): MoEParams.create(beta0=[0.5, 0.5, 0.0], beta1=[[4.0], [-4.0], [0.0]],
                             a=[[-2.0], [0.5], [1.0]], b=[2.0, -2.0, 0.0], var=[0.1, 0.2, 0.08]),
    (2, 2): MoEParams.create(beta0=[-0.1, 0.0], beta1=[[3.0, -2.0], [0.0, 0.0]],
                             a=[[-1.5, 1.0], [2.0, 0.5]], b=[-1.0, 1.0], var=[0.2, 0.09]),
}


@pytest.fixture(scope="session")
def truths():
    return TRUTHS


@pytest.fixture(scope="session")
def data_k2d1():
    """n = 400 draws from TRUTHS[(2, 1)]: (truth, x, y)."""
    truth = TRUTHS[(2, 1)]
    x, y = simulate_softmax(truth, 400, seed=11)
    return truth, x, y


def pytest_runtest_teardown(item, nextitem):
    # An xdist worker runs ~500 tests in one process and compiles thousands of XLA programs;
    # near vm.max_map_count the next compilation fails and the worker segfaults while
    # unwinding the error (moetheory._jax). Release them when the worker nears the bound.
    from moetheory._jax import release_compiled

    release_compiled()


def pytest_sessionfinish(session):
    # A pytest-xdist worker whose tests are done still tears down (its last garbage collection
    # walks a large JAX/SymPy heap); when that takes more than 5 s, execnet sends the worker a
    # SIGINT, which lands in JAX's gc callback and prints a KeyboardInterrupt traceback at the
    # end of a passing run. Nothing is left to interrupt: ignore it (execnet still ends a worker
    # that hangs, 10 s later).
    if os.environ.get("PYTEST_XDIST_WORKER") and threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)
