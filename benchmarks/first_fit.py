"""The first hour of a new user: first fit + summary() in a fresh install, a new model size
afterwards, and the main job's wall time and progress ETA on a fresh clone.

Every measurement runs in a new Python process whose compile caches are empty folders (Numba's
``NUMBA_CACHE_DIR``, the package's JAX cache ``MOETHEORY_COMPILE_CACHE``, ``XDG_CACHE_HOME``),
with the package installed into a new virtual environment from a clone of the current commit
(``--python`` reuses an interpreter instead). Contenders, run side by side in one session:

* ``auto``: the default backend choice (small data: the NumPy path, nothing to compile);
* ``numba``: ``MOETHEORY_EM_BACKEND=numba``, the compiled kernel every fit used before the NumPy
  path existed (what a first fit on large data still costs);
* ``numba, warm``: the same in a second process sharing the first one's caches.

    python benchmarks/first_fit.py                 # fits only (~4 min with the install)
    python benchmarks/first_fit.py --main-job      # + `moetheory reproduce softmax --preset quick`
    python benchmarks/first_fit.py --python .venv/bin/python   # no new venv

Writes ``results/first_fit.md`` and ``results/first_fit.json``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import machine, md_table, write_results  # noqa: E402

REPO = Path(__file__).resolve().parents[1]

#: the child process: a user's first session (times in seconds, since the process started)
FITS = r"""
import json, sys, time
t_start = time.perf_counter()
import numpy as np
import moetheory as mt
from moetheory.em.backend import choose_backend
from moetheory.spec import MoESpec
out = {"import": time.perf_counter() - t_start}

def regimes(n, d, seed):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, (n, d))
    z = rng.uniform(size=n) < 1 / (1 + np.exp(-4 * x[:, 0]))
    y = np.where(z, 2 * x[:, 0] + 1, -x[:, 0] - 1) + 0.3 * rng.standard_normal(n)
    return x, y

def timed(name, n, d, k, seed):
    x, y = regimes(n, d, seed)
    t = time.perf_counter()
    res = mt.fit(x, y, k, seed=0)
    t_fit = time.perf_counter() - t
    res.summary()
    out[name] = {"n": n, "d": d, "k": k, "fit": t_fit, "fit_summary": time.perf_counter() - t,
                 "backend": choose_backend(MoESpec(k, d), n_obs=n), "certified": bool(res.converged)}

timed("first", 150, 1, 2, 0)                 # the issue's interactive fit: 150 rows
timed("new_k", 150, 1, 3, 0)                 # a new model size on the same data
timed("new_shape", 400, 2, 2, 1)             # a new n and d
timed("n3000_k3", 3000, 1, 3, 2)             # n·k = 9000: the largest NumPy-path size class
out["total"] = time.perf_counter() - t_start
print("RESULT " + json.dumps(out))
"""

#: the main job, run through the CLI's main() so that the progress ETA history can be kept
MAIN_JOB = r"""
import json, os, sys, time
t_start = time.perf_counter()
from moetheory.study import progress
hist = []
_exit = progress.CellProgress.__exit__
def __exit__(self, *exc):
    hist.append({"history": self.history, "cells": len(self.finished)})
    return _exit(self, *exc)
progress.CellProgress.__exit__ = __exit__
from moetheory.cli import main
rc = main(["reproduce", "softmax", "--preset", "quick", "--out", sys.argv[1]])
print("RESULT " + json.dumps({"rc": rc, "wall": time.perf_counter() - t_start, "bars": hist}))
"""


def cold_env(root: Path, extra=None) -> dict:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MOETHEORY_EM_BACKEND", "MOETHEORY_THREADS", "PYTHONPATH")}
    env.update(NUMBA_CACHE_DIR=str(root / "numba"), MOETHEORY_COMPILE_CACHE=str(root / "jax"),
               XDG_CACHE_HOME=str(root / "xdg"), MPLCONFIGDIR=str(root / "mpl"),
               MOETHEORY_CACHE=str(root / "study"))
    env.update(extra or {})
    return env


def run_child(python, code, env, cwd, args=()):
    t = time.perf_counter()
    proc = subprocess.run([python, "-c", code, *args], env=env, cwd=cwd, capture_output=True,
                          text=True)
    wall = time.perf_counter() - t
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not line:
        raise RuntimeError(f"child failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    out = json.loads(line[-1][len("RESULT "):])
    out["process_wall"] = wall
    return out, proc


def fresh_install(tmp: Path):
    clone = tmp / "clone"
    subprocess.run(["git", "clone", "-q", str(REPO), str(clone)], check=True)
    t = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(tmp / "venv")], check=True)
    subprocess.run([str(tmp / "venv/bin/pip"), "install", "-q", "-e", str(clone)], check=True,
                   capture_output=True)
    return str(tmp / "venv/bin/python"), clone, time.perf_counter() - t


def eta_table(bars):
    """(seconds since the compile phase, ETA, time actually left, ratio) after each cell."""
    rows = []
    for bar in bars:
        hist = bar["history"]
        if not hist:
            continue
        end = hist[-1][0]
        for i, (t, eta) in enumerate(hist[:-1]):
            left = end - t
            rows.append((i + 1, t, eta, left, None if eta is None else eta / left))
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--python", help="an interpreter with moetheory installed (no new venv)")
    ap.add_argument("--main-job", action="store_true", help="also time the main job")
    args = ap.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="mt-firstfit-"))
    install_s = None
    if args.python:
        python, src = args.python, REPO
    else:
        python, src, install_s = fresh_install(tmp)
    print(f"python {python}; source {src}; install {install_s}", file=sys.stderr)
    runs = {}
    work = tmp / "work"
    work.mkdir()
    for name, root, extra in (("auto", "c_auto", None),
                              ("numba", "c_numba", {"MOETHEORY_EM_BACKEND": "numba"}),
                              ("numba, warm", "c_numba", {"MOETHEORY_EM_BACKEND": "numba"})):
        runs[name], _ = run_child(python, FITS, cold_env(tmp / root, extra), work)
        print(name, json.dumps(runs[name]), file=sys.stderr)
    data = {"machine": machine(), "install_s": install_s, "fits": runs}
    rows = []
    for step in ("first", "new_k", "new_shape", "n3000_k3"):
        a = runs["auto"][step]
        rows.append([f"{step} (n={a['n']}, d={a['d']}, k={a['k']})", a["backend"]]
                    + [f"{runs[c][step]['fit_summary']:.2f}" for c in runs]
                    + [f"{runs['numba'][step]['fit_summary'] / a['fit_summary']:.1f}×"])
    rows.append(["import moetheory", ""] + [f"{runs[c]['import']:.2f}" for c in runs] + [""])
    rows.append(["whole process (python -c ...)", ""]
                + [f"{runs[c]['process_wall']:.2f}" for c in runs]
                + [f"{runs['numba']['process_wall'] / runs['auto']['process_wall']:.1f}×"])
    md = ["# First fit after install (`benchmarks/first_fit.py`)", "",
          "Seconds of fit + summary() per step, each column one new process in the order shown;"
          " empty compile caches except `numba, warm` (the caches of the `numba` run). "
          f"Install into a new venv: {install_s and f'{install_s:.0f} s'}.", "",
          md_table(["step (in one session)", "auto backend", "auto", "numba", "numba, warm",
                    "numba / auto"], rows)]
    if args.main_job:
        out = tmp / "figures"
        job, proc = run_child(python, MAIN_JOB, cold_env(tmp / "c_main"), work, [str(out)])
        data["main_job"] = job
        etas = eta_table(job["bars"])
        data["eta"] = etas
        md += ["", f"## Main job: `moetheory reproduce softmax --preset quick` on a fresh clone",
               "", f"Wall time (new process, empty caches, figures to a temp folder): "
               f"**{job['process_wall']:.0f} s** (exit {job['rc']}).", "",
               "ETA shown after each cell against the time that was actually left "
               "(seconds since the compile phase ended):", "",
               md_table(["cells done", "t", "ETA", "actually left", "ETA / left"],
                        [[i, f"{t:.1f}", "—" if e is None else f"{e:.1f}", f"{left:.1f}",
                          "—" if r is None else f"{r:.2f}"] for i, t, e, left, r in etas])]
        ratios = [r for *_, r in etas if r is not None]
        if ratios:
            md += ["", f"ETA / actual over all cells: {min(ratios):.2f} – {max(ratios):.2f}."]
        compile_line = [ln for ln in proc.stderr.replace("\r", "\n").splitlines()
                        if "compiled" in ln or "compiling" in ln]
        data["compile_lines"] = compile_line[:3]
        if compile_line:
            md += ["", "Progress line of the compile phase, and the first after it:", "",
                   "    " + compile_line[0].strip()[:160]]
            if len(compile_line) > 1:
                md += ["    " + compile_line[-1].strip()[:160]]
    md += ["", data["machine"]["cpu_model"] + f", {data['machine']['cpu_count']} CPUs, load "
           + ", ".join(f"{v:.1f}" for v in data["machine"]["loadavg_1_5_15"])
           + f", {data['machine']['date_utc']} UTC."]
    md_path, _ = write_results("first_fit", "\n".join(md), data)
    print("\n".join(md))
    print(f"wrote {md_path}", file=sys.stderr)


if __name__ == "__main__":
    main()
