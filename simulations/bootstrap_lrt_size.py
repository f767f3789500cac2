"""Size of the parametric-bootstrap likelihood-ratio test (moetheory.bootstrap_lrt) under H0.

Data sets are simulated from a k-expert model (H0 true); each is tested for k against k + 1
experts with ``n_boot`` bootstrap replicates and ``fit``'s defaults; the rejection rate at level
α estimates the test's size. With B replicates and p = (1 + #{LR* ≥ LR}) / (B + 1), a level α
with α (B + 1) an integer is exact when the refits reach their maxima (Monte Carlo test:
the observed and simulated statistics are exchangeable under H0). Beside it, the χ² test
with the difference in free parameters as degrees of freedom, the reference that fails for
mixtures.

Scenarios (d = 1, x ~ U(-1, 1)):

* ``k1``: one expert, y = 0.5 + 1.5 x + 0.4 ε, n = 200; test 1 vs 2 experts (χ² df 5).
* ``k2``: two experts under a softmax gate (tests/conftest.py's TRUTHS[(2, 1)]), n = 300;
  test 2 vs 3 experts (χ² df 5).

Run ``python -m simulations.bootstrap_lrt_size [--reps R1 R2] [--n-boot B]`` (default 100 data
sets under k = 1, 50 under k = 2, B = 19: about 1.5 hours on the shared 2-core machine); writes
``docs/bootstrap_lrt_size.md`` and ``.json``.
"""
from __future__ import annotations

import argparse
import json
import platform
import time
import warnings
from pathlib import Path

import numpy as np
from scipy import stats

import moetheory as mt

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs"
ALPHAS = (0.05, 0.10)


def _truth_k2():
    # The same truth as tests/conftest.py's TRUTHS[(2, 1)].
    return dict(beta0=np.array([0.3, 0.0]), beta1=np.array([3.0, 0.0]), a=np.array([2.0, -1.5]),
                b=np.array([1.0, -1.0]), sd=np.sqrt([0.09, 0.25]))


def simulate(scenario: str, rng: np.random.Generator):
    """One data set (x, y) under the scenario's null hypothesis."""
    if scenario == "k1":
        x = rng.uniform(-1, 1, 200)
        return x, 0.5 + 1.5 * x + 0.4 * rng.standard_normal(200)
    t = _truth_k2()
    x = rng.uniform(-1, 1, 300)
    h = t["beta0"] + np.outer(x, t["beta1"])
    g = np.exp(h - h.max(axis=1, keepdims=True))
    g /= g.sum(axis=1, keepdims=True)
    z = (rng.uniform(size=(300, 1)) > np.cumsum(g, axis=1)).sum(axis=1)
    return x, t["a"][z] * x + t["b"][z] + t["sd"][z] * rng.standard_normal(300)


def run(scenario: str, reps: int, n_boot: int, seed: int) -> dict:
    k = 1 if scenario == "k1" else 2
    rng = np.random.default_rng(seed)
    p_boot, p_chi2, stat, warned = [], [], [], 0
    t0 = time.perf_counter()
    for rep in range(reps):
        x, y = simulate(scenario, rng)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            r = mt.bootstrap_lrt(x, y, k=k, n_boot=n_boot, seed=seed + rep)
        warned += bool(caught)
        df = r.alternative.df_model - r.null.df_model
        p_boot.append(r.p_value)
        p_chi2.append(float(stats.chi2.sf(max(r.statistic, 0.0), df)))
        stat.append(r.statistic)
        print(f"{scenario} rep {rep + 1}/{reps}: LR {r.statistic:.3f}  p_boot {r.p_value:.3f}  "
              f"p_chi2 {p_chi2[-1]:.3f}", flush=True)
    p_boot, p_chi2 = np.asarray(p_boot), np.asarray(p_chi2)
    rows = []
    for a in ALPHAS:
        for name, p in (("bootstrap", p_boot), ("chi2", p_chi2)):
            rate = float(np.mean(p <= a + 1e-12))
            rows.append({"test": name, "alpha": a, "rejection_rate": rate,
                         "mc_se": float(np.sqrt(a * (1 - a) / reps))})
    return {"scenario": scenario, "k_null": k, "n": 200 if scenario == "k1" else 300,
            "reps": reps, "n_boot": n_boot, "seed": seed, "chi2_df": int(df),
            "rows": rows, "reps_with_warnings": int(warned),
            "statistics": [float(s) for s in stat], "p_boot": p_boot.tolist(),
            "seconds": time.perf_counter() - t0}


def write(results: list[dict], command: str) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    meta = {"command": command, "moetheory": mt.__version__, "python": platform.python_version(),
            "machine": platform.machine(), "date": time.strftime("%Y-%m-%d")}
    (OUT / "bootstrap_lrt_size.json").write_text(json.dumps({"meta": meta, "results": results}, indent=1))
    lines = ["# Size of the bootstrap likelihood-ratio test", "",
             f"Made by `{command}` ({meta['date']}, moetheory {meta['moetheory']}); raw numbers in "
             "`bootstrap_lrt_size.json` beside this page. Generated: edit the script, not this page.",
             "",
             "Data sets simulated under H0 (k experts), each tested for k against k + 1 experts by "
             "`moetheory.bootstrap_lrt` with `fit`'s defaults, and by the χ² test with the "
             "difference in free parameters as degrees of freedom. The Monte Carlo standard error "
             "of a rejection rate is √(α(1 − α)/reps).", "",
             "| H0 | n | reps | B | test | α | rejection rate | MC s.e. | within 2 s.e. |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        for row in r["rows"]:
            ok = abs(row["rejection_rate"] - row["alpha"]) <= 2 * row["mc_se"]
            test = "bootstrap" if row["test"] == "bootstrap" else f"χ²({r['chi2_df']})"
            lines.append(f"| k = {r['k_null']} | {r['n']} | {r['reps']} | {r['n_boot']} | {test} | "
                         f"{row['alpha']:.2f} | {row['rejection_rate']:.3f} | {row['mc_se']:.3f} | "
                         f"{'yes' if ok else 'no'} |")
    lines += ["", "Time: " + ", ".join(f"k = {r['k_null']}: {r['seconds'] / 60:.1f} min" for r in results)
              + " (2-core development machine, shared). Data sets whose bootstrap refits warned: "
              + ", ".join(f"k = {r['k_null']}: {r['reps_with_warnings']} of {r['reps']}" for r in results)
              + ".", ""]
    (OUT / "bootstrap_lrt_size.md").write_text("\n".join(lines))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, nargs="+", default=[100, 50],
                        help="data sets per scenario (one number, or one per scenario)")
    parser.add_argument("--n-boot", type=int, default=19, help="bootstrap replicates per test")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scenarios", nargs="+", default=["k1", "k2"], choices=["k1", "k2"])
    args = parser.parse_args(argv)
    reps = args.reps * len(args.scenarios) if len(args.reps) == 1 else args.reps
    if len(reps) != len(args.scenarios):
        parser.error(f"--reps takes one number or one per scenario ({len(args.scenarios)})")
    command = ("python -m simulations.bootstrap_lrt_size --reps {} --n-boot {} --seed {} --scenarios {}"
               .format(" ".join(map(str, reps)), args.n_boot, args.seed, " ".join(args.scenarios)))
    results = [run(s, r, args.n_boot, args.seed) for s, r in zip(args.scenarios, reps)]
    write(results, command)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
