"""Make the reference maximum of tests/test_certified.py (run once; its output is committed).

Data: the softmax paper's truth (k* = 2), x = linspace(0, 1, n), n = 20,000, y drawn by
``moetheory.model.sample`` with key 2023 — stored as ``y.npy`` so the test does not depend on
the random-number generator. The fitted model has k = 3 experts, started from one ``paper``
start (key 7).

The reference maximum is found independently of the estimator pipeline's polish and
certificate: a very long EM run (the fused Numba loop, bound to the NumPy oracle by
tests/test_kernels.py; 300,000 iterations at a zero tolerance), finished by plain Newton steps
with the Hessian from ``jax.hessian`` of ``moetheory.model.log_likelihood`` (natural
coordinates, full steps, no line search, no trust region) until the gradient stops shrinking.

    python tests/data/overfit/make_reference.py      # writes y.npy and reference.json (~2 min)
"""
import json
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from moetheory._jax import ensure_x64

ensure_x64()

from moetheory.em.backend import numba_fit  # noqa: E402
from moetheory.em.starts import draw_starts  # noqa: E402
from moetheory.mle import pack, unpack  # noqa: E402
from moetheory.model import log_likelihood, sample  # noqa: E402
from moetheory.params import MoEParams  # noqa: E402
from moetheory.spec import MoESpec  # noqa: E402

HERE = Path(__file__).resolve().parent
N = 20_000
TRUTH = MoEParams.create(beta0=[-8.0, 0.0], beta1=[[25.0], [0.0]], a=[[-20.0], [20.0]],
                         b=[15.0, -5.0], var=[0.09, 0.16])


def main():
    x = np.linspace(0.0, 1.0, N)[:, None]
    y = np.asarray(sample(jax.random.key(2023), MoESpec(2, 1), TRUTH, x))
    np.save(HERE / "y.npy", y, allow_pickle=False)
    spec = MoESpec(3, 1)
    start = jax.tree.map(lambda v: np.asarray(v[0]), draw_starts(
        jax.random.key(7), spec, x, y, ("paper",), truth=TRUTH, n_obs=N))
    long = numba_fit(x, y, np.ones(N), start, tol_rel=0.0, tol_abs=0.0, max_iter=300_000,
                     var_floor=1e-10)
    p = jax.tree.map(jnp.asarray, long["params"])
    xj, yj = jnp.asarray(x), jnp.asarray(y)
    f = jax.jit(lambda th: log_likelihood(spec, unpack(spec, th, p), xj, yj))
    g, h = jax.jit(jax.grad(f)), jax.jit(jax.hessian(f))
    th = pack(spec, p)
    norms = [float(jnp.max(jnp.abs(g(th))))]
    for _ in range(20):
        th_new = th - jnp.linalg.solve(h(th), g(th))
        norm = float(jnp.max(jnp.abs(g(th_new))))
        if not norm < norms[-1]:
            break
        th, norms = th_new, norms + [norm]
    best = unpack(spec, th, p)
    ref = {"n": N, "truth_key": 2023, "start_key": 7, "em_iterations": long["n_iter"],
           "loglik_after_em": long["loglik"], "loglik": float(f(th)),
           "newton_gradient_max": norms, "params": {k: np.asarray(v).tolist()
                                                     for k, v in best._asdict().items()}}
    (HERE / "reference.json").write_text(json.dumps(ref, indent=1) + "\n")
    print(json.dumps({k: v for k, v in ref.items() if k != "params"}, indent=1))


if __name__ == "__main__":
    main()
