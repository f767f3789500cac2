"""Peak memory and time of the attention experiment, and NumPy vs JAX feature kernels.

Usage::

    python benchmarks/attention_memory.py memory --preset full --seeds 1
    python benchmarks/attention_memory.py speed

``memory`` runs replicates of a preset in a child process and reports the child's
maximum resident set size (``getrusage(RUSAGE_CHILDREN).ru_maxrss``), its wall and CPU
time.  Replicates run one after another and free their kernels, so the peak of a
single replicate (which contains the largest ``n`` of the grid) is the peak of the whole
preset.  ``speed`` times the RFA feature block in NumPy and in jitted JAX (float64,
enabled only inside the benchmark via ``jax.enable_x64``) side by side, as a ratio.

Recorded results (2 shared CPU cores, heavily loaded by other jobs, so wall times are
pessimistic; CPU times are the better guide) are listed in ``RECORDED`` below.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

RECORDED = """
2026-11-28, 2 CPU cores shared with other jobs (load average 13-16), OpenBLAS, float64.

memory --preset full --seeds 1   (one replicate = every n up to 8000, all 3 models,
                                  M = 1000 heads -> 9000 features each, n_test = 2000)
    peak RSS 2.16 GiB (limit 8 GiB); CPU 633 s; wall 2714 s (wall and CPU inflated by
    the load: OpenBLAS threads spin while waiting for a core). The full preset runs 5
    such replicates sequentially, each freeing its kernels, so its peak is the same.
    Re-measured with OPENBLAS_NUM_THREADS=1 via /usr/bin/time -v on
    `python -m simulations.attention --preset full --seeds 1`: max RSS 2.16 GiB,
    user CPU 264 s, wall 515 s (load ~8) -> full preset (5 replicates) ~ 22 CPU-minutes.

quick preset (python -m simulations.attention --preset quick), /usr/bin/time -v
    OPENBLAS_NUM_THREADS=1: user CPU 9.4 s, wall 29 s (load ~10), max RSS 0.41 GiB
    default threads:        user CPU 158 s, wall 332 s (load ~10), max RSS 0.41 GiB
    (same numbers to 1e-13; the gap is OpenBLAS spin-waiting on an oversubscribed box)

speed (RFA feature block, n = 4000, 200 heads, d = N = 8)
    NumPy 1.03 s, jitted JAX (x64) 0.93 s: JAX / NumPy = 0.90, max |diff| = 0
"""

_CHILD = """
import sys, time, json, dataclasses
from moetheory.attention.experiment import PRESETS, run_cell
cfg = dataclasses.replace(PRESETS[sys.argv[1]], n_seeds=int(sys.argv[2]))
t0 = time.perf_counter()
for r in range(cfg.n_seeds):
    cell = run_cell(cfg, r)
print(json.dumps({"wall_s": time.perf_counter() - t0, "n_max": max(cfg.n_grid),
                  "n_test": cfg.n_test, "n_heads": cfg.n_heads,
                  "n_features": cell["n_features"]}))
"""


def memory(preset: str, seeds: int) -> dict:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _CHILD, preset, str(seeds)],
                          capture_output=True, text=True, check=True)
    wall = time.perf_counter() - t0
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    info.update(preset=preset, seeds=seeds, peak_rss_gib=ru.ru_maxrss / 2 ** 20,  # KiB on Linux
                cpu_s=ru.ru_utime + ru.ru_stime, process_wall_s=wall)
    return info


def speed(n: int = 4000, heads: int = 200, N: int = 8, d: int = 8, repeat: int = 3) -> dict:
    import numpy as np
    import jax
    import jax.numpy as jnp
    from moetheory.attention.features import RFAFeatures
    from moetheory.attention.inputs import augment, sample_inputs

    rng = np.random.default_rng(0)
    X = sample_inputs(rng, n, N, d)
    fmap = RFAFeatures.sample(rng, d, heads)

    def best(f):
        ts = []
        for _ in range(repeat):
            t = time.perf_counter()
            f()
            ts.append(time.perf_counter() - t)
        return min(ts)

    t_np = best(lambda: fmap.block(X))
    with jax.enable_x64(True):
        @jax.jit
        def block_jax(Xt, W):
            q, keys = Xt[:, 0], Xt[:, 1:]
            S = jnp.einsum("nd,bde,nie->nbi", q, W, keys)
            A = jnp.maximum(S, 0.0) / keys.shape[1]
            return jnp.einsum("nbi,nie->nbe", A, keys).reshape(Xt.shape[0], -1)
        Xt = jnp.asarray(augment(X))
        W = jnp.asarray(fmap.weights)
        ref = np.asarray(block_jax(Xt, W))
        t_jax = best(lambda: block_jax(Xt, W).block_until_ready())
    err = float(np.max(np.abs(ref - fmap.block(X))))
    return {"n": n, "heads": heads, "numpy_s": t_np, "jax_s": t_jax,
            "jax_over_numpy": t_jax / t_np, "max_abs_diff": err}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("what", choices=["memory", "speed"])
    ap.add_argument("--preset", default="full")
    ap.add_argument("--seeds", type=int, default=1)
    args = ap.parse_args(argv)
    res = memory(args.preset, args.seeds) if args.what == "memory" else speed()
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
