"""Bad inputs tried against the API and the CLI, with the message each one gets.

Every case must end in one line naming the argument or file and what was expected: a Python
exception of a documented type for the API, exit status 2 and one line on stderr (no traceback)
for the CLI. The table is written to ``benchmarks/results/bad_inputs.md``.
``python benchmarks/bad_inputs.py``.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from common import md_table  # noqa: E402


def api_cases():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 200)
    y = x + 0.1 * rng.standard_normal(200)
    nan_x = x.copy()
    nan_x[3] = np.nan
    inf_y = y.copy()
    inf_y[5] = np.inf
    return [
        ("x with a NaN", dict(x=nan_x, y=y, n_experts=2)),
        ("y with +inf", dict(x=x, y=inf_y, n_experts=2)),
        ("complex x", dict(x=x + 1j, y=y, n_experts=2)),
        ("string y", dict(x=x, y=np.array(["a"] * 200), n_experts=2)),
        ("x and y of different lengths", dict(x=x[:150], y=y, n_experts=2)),
        ("n_experts = 0", dict(x=x, y=y, n_experts=0)),
        ("n_experts = 2.5", dict(x=x, y=y, n_experts=2.5)),
        ("x scaled by 1e300 (overflows after standardisation)", dict(x=x * 1e300, y=y, n_experts=2)),
        ("constant y", dict(x=x, y=np.ones(200), n_experts=2)),
        ("var_floor = nan", dict(x=x, y=y, n_experts=2, var_floor=float("nan"))),
        ("tol = -1", dict(x=x, y=y, n_experts=2, tol=-1.0)),
        ("gate = 'softmaxx'", dict(x=x, y=y, n_experts=2, gate="softmaxx")),
        ("init = 'nope'", dict(x=x, y=y, n_experts=2, init="nope")),
        ("n_init = 0", dict(x=x, y=y, n_experts=2, n_init=0)),
        ("cov_type = 'hc9'", dict(x=x, y=y, n_experts=2, cov_type="hc9")),
        ("weights of the wrong length", dict(x=x, y=y, n_experts=2, weights=np.ones(199))),
        ("a negative weight", dict(x=x, y=y, n_experts=2, weights=np.r_[np.ones(199), -1.0])),
        ("weights all zero", dict(x=x, y=y, n_experts=2, weights=np.zeros(200))),
        ("gate_covariates naming no column", dict(x=x, y=y, n_experts=2, gate_covariates=["z"])),
        ("gate_covariates with the top-K gate", dict(x=x, y=y, n_experts=2, gate="topk", top_k=1,
                                                     gate_covariates=[])),
        ("equal_var = 'yes'", dict(x=x, y=y, n_experts=2, equal_var="yes")),
        ("experts = 'cauchy'", dict(x=x, y=y, n_experts=2, experts="cauchy")),
        ("t_df = 4 with Gaussian experts", dict(x=x, y=y, n_experts=2, t_df=4)),
        ("t_df = -1", dict(x=x, y=y, n_experts=2, experts="t", t_df=-1)),
    ]


def run_api():
    import moetheory as mt

    rows = []
    for name, kw in api_cases():
        try:
            mt.fit(**kw)
            rows.append((name, "accepted (no error)", "—"))
        except Exception as err:  # noqa: BLE001 - the table records what each case raises
            msg = str(err).splitlines()
            rows.append((name, f"{type(err).__name__}: {msg[0] if msg else ''}", len(msg)))
    return rows


def run_cli():
    tmp = Path(tempfile.mkdtemp())
    good = tmp / "good.csv"
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, 100)
    good.write_text("x,y\n" + "\n".join(f"{a},{a + 0.1 * b}" for a, b in
                                          zip(x, rng.standard_normal(100))))
    text = tmp / "text.csv"
    text.write_text("x,y\n1,2\nfoo,3\n4,5\n")
    empty = tmp / "empty.csv"
    empty.write_text("")
    nan = tmp / "nan.csv"
    nan.write_text("x,y\n1,2\nnan,3\n4,5\n")
    toml = tmp / "bad.toml"
    toml.write_text("name = 'x'\n[[fits]]\nlabel = 'a'\nsizes = [100]\n")
    cases = [
        ("missing CSV", ["fit", str(tmp / "nope.csv"), "--experts", "2"]),
        ("empty CSV", ["fit", str(empty), "--experts", "2"]),
        ("non-numeric cell", ["fit", str(text), "--experts", "2"]),
        ("NaN cell", ["fit", str(nan), "--experts", "2"]),
        ("--experts 0", ["fit", str(good), "--experts", "0"]),
        ("--experts 4-2", ["fit", str(good), "--experts", "4-2"]),
        ("--gate nope", ["fit", str(good), "--experts", "2", "--gate", "nope"]),
        ("--y-col absent", ["fit", str(good), "--experts", "2", "--y-col", "z"]),
        ("--tau -1", ["fit", str(good), "--experts", "2", "--gate", "temperature", "--tau", "-1"]),
        ("--n-init 0", ["fit", str(good), "--experts", "2", "--n-init", "0"]),
        ("--weights absent", ["fit", str(good), "--experts", "2", "--weights", "w"]),
        ("--weights is the response", ["fit", str(good), "--experts", "2", "--weights", "y"]),
        ("--gate-cols absent", ["fit", str(good), "--experts", "2", "--gate-cols", "z"]),
        ("--formula with an unknown variable", ["fit", str(good), "--experts", "2", "--formula",
                                                "y ~ x | z"]),
        ("--formula without ~", ["fit", str(good), "--experts", "2", "--formula", "y x"]),
        ("--formula and --x-cols", ["fit", str(good), "--experts", "2", "--formula", "y ~ x",
                                    "--x-cols", "x"]),
        ("--experts-family nope", ["fit", str(good), "--experts", "2", "--experts-family", "nope"]),
        ("unknown study", ["study", "run", "nope"]),
        ("unknown preset", ["reproduce", "softmax", "--preset", "huge"]),
        ("study file with a fit but no model", ["study", "run", str(toml)]),
        ("cache path is a file", ["study", "status", "softmax", "--cache", str(good)]),
        ("theory pdes for an unknown gate", ["theory", "pdes", "--gate", "nope"]),
    ]
    exe = Path(sys.executable).with_name("moetheory")
    rows = []
    for name, argv in cases:
        p = subprocess.run([str(exe), *argv], capture_output=True, text=True, timeout=300,
                           env={**os.environ, "MOETHEORY_PROGRESS": "0"})
        err = p.stderr.strip().splitlines()
        tb = "Traceback" in p.stderr
        rows.append((f"`moetheory {' '.join(a if tmp.as_posix() not in a else Path(a).name for a in argv)}` ({name})",
                     f"exit {p.returncode}: {err[-1] if err else '(no stderr)'}",
                     "traceback!" if tb else len(err)))
    return rows


def main():
    api = run_api()
    cli = run_cli()
    lines = ["# Bad inputs and their messages", "",
             "`python benchmarks/bad_inputs.py`. API: the exception `moetheory.fit` raises; CLI: "
             "exit status and the last stderr line; 'lines' counts the message's lines "
             "(a traceback would be flagged).", "",
             md_table(["API case", "message", "lines"], api), "",
             md_table(["CLI case", "message", "lines"], cli)]
    out = HERE / "results" / "bad_inputs.md"
    out.parent.mkdir(exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
