"""The simulated data sets of the flexmix reference: ``<name>.csv`` and ``<name>.truth.json``.

    python tests/data/flexmix/make_data.py            # rewrite the files beside this script
    python tests/data/flexmix/make_data.py --check    # regenerate in memory and compare, byte for byte

Each set draws n = 2000 observations from a softmax-gated Gaussian mixture of linear experts
(NumPy only, ``numpy.random.default_rng(7)``, PCG64): x ~ Uniform(-1, 1)^d, then the expert
z of each row from its gate probabilities softmax(gate · [1, x] / tau) by one uniform draw per
row (inverse CDF), then y = intercept_z + x · slopes_z + sigma_z · N(0, 1). The R script
``make_reference.R`` fits the CSV files with flexmix.
"""
from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import numpy as np
from scipy.special import logsumexp, softmax

HERE = Path(__file__).resolve().parent
N = 2000
SEED = 7

#: gate[j] = [intercept, slopes...] of component j's logit (component 0 the reference, zeros);
#: expert[j] = [intercept, slopes...]; sigma: standard deviations
TRUTHS = {
    "k2d1": {"gate": [[0.0, 0.0], [0.0, 4.0]], "expert": [[1.0, 2.0], [-1.0, -1.5]],
             "sigma": [0.3, 0.5]},
    "k3d1": {"gate": [[0.0, 0.0], [0.5, 4.0], [0.5, -4.0]],
             "expert": [[0.0, 1.0], [2.0, -2.0], [-2.0, 0.5]], "sigma": [0.3, 0.4, 0.5]},
    "k2d2": {"gate": [[0.0, 0.0, 0.0], [0.0, 3.0, -2.0]],
             "expert": [[1.0, 2.0, 0.5], [-1.0, -1.5, 1.0]], "sigma": [0.3, 0.5]},
}
TAU = 1.0
LAYOUT = ("gate[j] = [intercept, slopes...] of component j's logit, gate[0] = 0 (reference); "
          "expert[j] = [intercept, slopes...]; logits are divided by tau before softmax")


def simulate(truth: dict, n: int = N, seed: int = SEED):
    """(x (n, d), z (n,), y (n,)) drawn from ``truth``."""
    gate, expert, sigma = (np.asarray(truth[key], dtype=float) for key in ("gate", "expert", "sigma"))
    d = gate.shape[1] - 1
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1.0, 1.0, (n, d))
    prob = softmax((gate[:, 0] + x @ gate[:, 1:].T) / TAU, axis=1)
    z = (rng.uniform(size=n)[:, None] > np.cumsum(prob, axis=1)).sum(axis=1)
    noise = rng.standard_normal(n)
    # intercept, then the slopes' terms from the last covariate to the first, then the noise:
    # this summation order reproduces the stored files bit for bit
    mean = expert[z, 0].copy()
    for j in reversed(range(d)):
        mean = mean + x[:, j] * expert[z, 1 + j]
    return x, z, mean + sigma[z] * noise


def loglik(truth: dict, x: np.ndarray, y: np.ndarray) -> float:
    """The log-likelihood of (x, y) at ``truth``."""
    gate, expert, sigma = (np.asarray(truth[key], dtype=float) for key in ("gate", "expert", "sigma"))
    logits = (gate[:, 0] + x @ gate[:, 1:].T) / TAU
    log_gate = logits - logsumexp(logits, axis=1, keepdims=True)
    resid = y[:, None] - (expert[:, 0] + x @ expert[:, 1:].T)
    log_dens = -0.5 * np.log(2 * np.pi * sigma**2) - 0.5 * resid**2 / sigma**2
    return float(logsumexp(log_gate + log_dens, axis=1).sum())


def files(name: str) -> dict[str, str]:
    """The text of ``<name>.csv`` and ``<name>.truth.json``."""
    truth = TRUTHS[name]
    x, z, y = simulate(truth)
    n, d = x.shape
    k = len(truth["sigma"])
    csv = io.StringIO()
    csv.write(",".join([*(f"x{j + 1}" for j in range(d)), "y"]) + "\n")
    for row in np.column_stack([x, y]):
        csv.write(",".join(f"{v:.17g}" for v in row) + "\n")
    meta = {"k": k, "d": d, "n": n, "seed": SEED, "preset": name, "tau": TAU, "topk": k,
            "xdist": "uniform", **truth, "loglik_true": loglik(truth, x, y),
            "component_freq": np.bincount(z, minlength=k).tolist(), "layout": LAYOUT}
    return {f"{name}.csv": csv.getvalue(), f"{name}.truth.json": json.dumps(meta, indent=1) + "\n"}


def main(argv=None) -> int:
    check = "--check" in (sys.argv[1:] if argv is None else argv)
    differ = []
    for name in TRUTHS:
        for fname, text in files(name).items():
            path = HERE / fname
            if check:
                if not path.is_file() or path.read_text(encoding="utf-8") != text:
                    differ.append(fname)
            else:
                path.write_text(text, encoding="utf-8")
    if differ:
        print(f"differ from the generator: {differ}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
