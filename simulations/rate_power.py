"""Power of the rate-law test: true law × grid → share of correct verdicts (not imported by the library).

Simulates replicate losses from a known law on the study grids and records how often
:func:`moetheory.rates.law_test` (median method, the default) names the true law (the
fixed-exponent laws n^−1/2, √(log n / n) and 1/log n; for (log n)^−2, which is none of them, the
correct verdict is "none") and the true family (parametric vs slow, :func:`family_correct`),
beside the mean-based F test and the historical AIC comparison of
:func:`moetheory.rates.fit_rate` (correct: "power" for the power-type laws, "log" for the slow
ones).

Replicate losses: L(n) · exp(σ Z), Z ~ N(0, 1), σ = 0.7 (the spread of log D_2 over replicates in
the softmax study is of this order) — "lognormal"; and the same with each replicate, with
probability 5%, replaced by a ceiling value 20 · L(1000) (a fit stuck far from the truth) —
"ceiling 5%". Grids: ``quick`` = the topk/temperature quick grid (5 sizes in [1e3, 8192],
8 replicates), ``full`` = their full grid (20 log-spaced sizes in [1e3, 1e5], 40 replicates),
``wide`` = 20 log-spaced sizes in [1e3, 1e6], 40 replicates (what widening the n range buys).

``python -m simulations.rate_power [--n-sim 1000] [--seed 0] [--write-docs]`` prints the table;
``--write-docs`` also replaces the table block in docs/theory/rates.md and writes
simulations/rate_power_results.json. 1000 simulations per cell give a Monte Carlo standard error
of at most 1.6 percentage points per share.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

TRUE_LAWS = ("n^-1/2", "sqrt(log n/n)", "1/log n", "(log n)^-2")
NOISES = ("lognormal", "ceiling 5%")
SIGMA = 0.7
CEILING_P = 0.05
CEILING_FACTOR = 20.0
BLOCK = ("<!-- rate-power-table:start -->", "<!-- rate-power-table:end -->")


def grids() -> dict:
    """name -> (sizes (m,), replicates R).

    Examples
    --------
    >>> sorted(grids())
    ['full', 'quick', 'wide']
    """
    from moetheory.study.spec import integer_sizes, standard_grid

    q_sizes, q_reps, _, _ = standard_grid("quick")
    f_sizes, f_reps, _, _ = standard_grid("full")
    return {"quick": (np.asarray(q_sizes, float), q_reps),
            "full": (np.asarray(f_sizes, float), f_reps),
            "wide": (np.asarray(integer_sizes(np.geomspace(1e3, 1e6, 20)), float), 40)}


def simulate(law: str, sizes, reps: int, noise: str, rng) -> np.ndarray:
    """Replicate losses (m, R) from ``law`` with the module's noise model.

    Examples
    --------
    >>> x = simulate("n^-1/2", [1e3, 1e4], 3, "lognormal", np.random.default_rng(0))
    >>> x.shape
    (2, 3)
    """
    from moetheory.rates import law_curve

    sizes = np.asarray(sizes, float)
    base = law_curve(law, sizes)[:, None]
    out = base * np.exp(SIGMA * rng.standard_normal((sizes.size, reps)))
    if noise == "ceiling 5%":
        hit = rng.random((sizes.size, reps)) < CEILING_P
        out = np.where(hit, CEILING_FACTOR * law_curve(law, [1000.0])[0], out)
    elif noise != "lognormal":
        raise ValueError(f"noise must be one of {NOISES}; got {noise!r}")
    return out


def correct(law: str, verdict: str) -> bool:
    """Is ``verdict`` (of law_test) right when the truth is ``law``?"""
    return verdict == (law if law in ("n^-1/2", "sqrt(log n/n)", "1/log n") else "none")


def family_correct(law: str, family: str) -> bool:
    """Is the family right: "parametric" for n^−1/2 and √(log n/n), "slow" for 1/log n, and for
    (log n)^−2 (in no tested law) "slow" or "none" — anything but a parametric claim?"""
    if law in ("n^-1/2", "sqrt(log n/n)"):
        return family == "parametric"
    if law == "1/log n":
        return family == "slow"
    return family in ("slow", "none")


def aic_correct(law: str, preferred: str) -> bool:
    """Is the AIC comparison of fit_rate right (power-type laws: "power"; slow laws: "log")?"""
    return preferred == ("power" if law in ("n^-1/2", "sqrt(log n/n)") else "log")


def run(n_sim: int = 1000, seed: int = 0, progress: bool = True) -> list:
    """Rows {law, grid, noise, n_sim, correct, family, mean_correct, aic_correct, verdicts}."""
    from moetheory.rates import fit_rate, law_test

    rows = []
    rng = np.random.default_rng(seed)
    for grid, (sizes, reps) in grids().items():
        for noise in NOISES:
            for law in TRUE_LAWS:
                ok = fam = okm = aic = 0
                verdicts: dict = {}
                for _ in range(int(n_sim)):
                    losses = simulate(law, sizes, reps, noise, rng)
                    t = law_test(sizes, losses)
                    ok += correct(law, t.verdict)
                    fam += family_correct(law, t.family)
                    okm += correct(law, law_test(sizes, losses, method="mean").verdict)
                    aic += aic_correct(law, fit_rate(sizes, losses).preferred_law)
                    verdicts[t.verdict] = verdicts.get(t.verdict, 0) + 1
                rows.append({"law": law, "grid": grid, "noise": noise, "n_sim": int(n_sim),
                             "sizes": int(sizes.size), "replicates": int(reps),
                             "n_range": [float(sizes.min()), float(sizes.max())],
                             "correct": ok / n_sim, "family": fam / n_sim,
                             "mean_correct": okm / n_sim, "aic_correct": aic / n_sim,
                             "verdicts": dict(sorted(verdicts.items(), key=lambda kv: -kv[1]))})
                if progress:
                    print(f"{grid:<6} {noise:<11} {law:<14} law {ok / n_sim:6.1%}  family "
                          f"{fam / n_sim:6.1%}  mean-F {okm / n_sim:6.1%}  AIC {aic / n_sim:6.1%}",
                          flush=True)
    return rows


def table(rows) -> str:
    """The markdown table of ``rows`` (docs/theory/rates.md)."""
    lines = ["| true law | grid | noise | law (median test) | family (median test) | "
             "law (mean F test) | AIC (old) | most frequent verdicts (median test) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        top = ", ".join(f"{v} {c / r['n_sim']:.0%}" for v, c in list(r["verdicts"].items())[:3])
        lines.append(f"| {r['law']} | {r['grid']} ({r['sizes']} n in [{r['n_range'][0]:.0f}, "
                     f"{r['n_range'][1]:.0f}], R = {r['replicates']}) | {r['noise']} | "
                     f"{r['correct']:.1%} | {r['family']:.1%} | {r['mean_correct']:.1%} | "
                     f"{r['aic_correct']:.1%} | {top} |")
    return "\n".join(lines)


def write_docs(rows, doc="docs/theory/rates.md", out="simulations/rate_power_results.json",
               command="") -> None:
    """Replace the table block of ``doc`` and write the rows as JSON to ``out``."""
    text = Path(doc).read_text()
    start, end = BLOCK
    if start not in text or end not in text:
        raise ValueError(f"{doc}: no table block ({start} ... {end})")
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    body = f"{start}\n{table(rows)}\n\nMeasured with `{command}`.\n{end}"
    Path(doc).write_text(head + body + tail)
    Path(out).parent.mkdir(parents=True, exist_ok=True)
    Path(out).write_text(json.dumps(rows, indent=1) + "\n")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulations.rate_power", description=__doc__.splitlines()[0])
    ap.add_argument("--n-sim", type=int, default=1000)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write-docs", action="store_true")
    args = ap.parse_args(argv)
    rows = run(args.n_sim, args.seed)
    print(table(rows))
    if args.write_docs:
        write_docs(rows, command=f"python -m simulations.rate_power --n-sim {args.n_sim} "
                                 f"--seed {args.seed} --write-docs")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
