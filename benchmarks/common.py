"""Shared helpers of the benchmarks: data, starts, side-by-side timing, machine record, output.

Every benchmark measures its contenders *in one run, interleaved* (contender A, B, C, then A,
B, C again, ...) and reports medians of the repeats and ratios of medians, so that load from
other processes on the machine hits all contenders alike. Wall-clock time is the measure; the
process CPU time is recorded beside it (it shows when a contender used more than one core).
"""
from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"
REFERENCE = HERE.parent / "tests" / "data" / "flexmix"  # the flexmix reference sets (README there)

if str(HERE.parent) not in sys.path:  # run as `python benchmarks/x.py` from a checkout
    sys.path.insert(0, str(HERE.parent))

def ensure_jax():
    from moetheory._jax import ensure_x64

    ensure_x64()


_EXP_SUM = []


def numba_exp_sum():
    """Σ_i exp(a_i) over a float64 array with the fused kernel's branch-free, vectorised exp
    and a reassociated sum (vector lanes, a fixed order: the kernel's own reductions), jitted
    once. The fastest exp-and-sum pass on the CPUs measured here (faster than XLA's)."""
    if not _EXP_SUM:
        import numba

        from moetheory.kernels.numba_em import _exp

        @numba.njit(cache=True, fastmath={"reassoc", "contract", "nsz"}, error_model="numpy",
                    nogil=True)
        def exp_sum(a):
            s = 0.0
            for i in range(a.shape[0]):
                s += _exp(a[i])
            return s

        _EXP_SUM.append(exp_sum)
    return _EXP_SUM[0]


def truth_params(k: int):
    """The flexmix reference truth with k experts, d = 1, as pinned MoEParams (variances)."""
    from moetheory.params import MoEParams

    path = REFERENCE / f"k{k}d1.truth.json"
    t = json.loads(path.read_text())
    src = str(path.relative_to(HERE.parent))
    g = np.asarray(t["gate"], float)
    e = np.asarray(t["expert"], float)
    s = np.asarray(t["sigma"], float)
    p = MoEParams.create(beta0=g[:, 0], beta1=g[:, 1:], a=e[:, 1:], b=e[:, 0], var=s ** 2)
    return p.pinned(), src


def simulate(truth, n: int, seed: int):
    """x ~ U(-1, 1)^d, y from the softmax-gated MoE (NumPy only)."""
    rng = np.random.default_rng(seed)
    d = truth.beta1.shape[1]
    x = rng.uniform(-1.0, 1.0, (n, d))
    h = x @ truth.beta1.T + truth.beta0
    g = np.exp(h - h.max(axis=1, keepdims=True))
    g /= g.sum(axis=1, keepdims=True)
    z = (rng.uniform(size=(n, 1)) > np.cumsum(g, axis=1)).sum(axis=1)
    y = (x * truth.a[z]).sum(axis=1) + truth.b[z] + np.sqrt(truth.var[z]) * rng.standard_normal(n)
    return x, y


def start_params(truth, seed: int = 0, scale: float = 0.3):
    """A fixed start away from the truth (what every contender starts from)."""
    rng = np.random.default_rng(seed + 1000)
    k, d = truth.beta1.shape
    p = truth._replace(beta0=truth.beta0 + scale * rng.standard_normal(k),
                       beta1=truth.beta1 + scale * rng.standard_normal((k, d)),
                       a=truth.a + scale * rng.standard_normal((k, d)),
                       b=truth.b + scale * rng.standard_normal(k),
                       var=truth.var * np.exp(scale * rng.standard_normal(k)))
    return p.pinned()


def clock():
    return time.perf_counter(), time.process_time()


def interleaved(contenders: dict, repeats, warmup=True, on_result=None, pause_s=0.0):
    """Run ``{name: fn}`` round-robin ``repeats`` times (an int, or a dict per contender: slow
    contenders drop out of the rotation after their count); return {name: {wall, cpu, ...}}.

    ``fn()`` may return a value; the last one is kept under ``"value"``. A contender that times
    itself (flexmix inside R) returns a dict with ``"time_s"`` (and ``"cpu_s"``), used instead. A warm-up call of each
    (compilation, caches) is made first and timed separately as ``"first_s"`` — for every
    contender, or for the names in ``warmup`` when it is a collection. ``pause_s`` seconds of
    sleep before each timed call let the previous contender's worker threads go idle (XLA's
    thread pool spins for a while after a computation and would otherwise take cycles from the
    next contender's threads).
    """
    out = {name: {"wall": [], "cpu": [], "value": None, "first_s": None} for name in contenders}
    warm = set(contenders) if warmup is True else set(warmup or ())
    if warm:
        for name, fn in contenders.items():
            if name not in warm:
                continue
            w0, _ = clock()
            out[name]["value"] = fn()
            out[name]["first_s"] = time.perf_counter() - w0
    reps = repeats if isinstance(repeats, dict) else {name: repeats for name in contenders}
    for rnd in range(max(reps.values(), default=0)):
        for name, fn in contenders.items():
            if rnd >= reps.get(name, 0):
                continue
            if pause_s:
                time.sleep(pause_s)
            w0, c0 = clock()
            val = fn()
            w1, c1 = clock()
            if isinstance(val, dict) and "time_s" in val:  # timed by the contender (e.g. in R)
                out[name]["wall"].append(val["time_s"])
                out[name]["cpu"].append(val.get("cpu_s", np.nan))
            else:
                out[name]["wall"].append(w1 - w0)
                out[name]["cpu"].append(c1 - c0)
            out[name]["value"] = val
            if on_result is not None:
                on_result(name, w1 - w0)
    for name in out:
        out[name]["median_s"] = float(np.median(out[name]["wall"])) if out[name]["wall"] else None
        out[name]["cpu_median_s"] = float(np.median(out[name]["cpu"])) if out[name]["cpu"] else None
    return out


def machine() -> dict:
    """What the numbers were measured on (recorded with every result)."""
    info = {"date_utc": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S"),
            "python": platform.python_version(), "platform": platform.platform(),
            "cpu_count": os.cpu_count(), "cpu_model": platform.processor() or "?",
            "loadavg_1_5_15": list(os.getloadavg())}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                info["cpu_model"] = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    for mod in ("numpy", "scipy", "jax", "jaxlib", "numba"):
        try:
            info[mod] = __import__(mod).__version__
        except Exception:  # pragma: no cover - optional
            info[mod] = None
    try:
        import jax

        info["jax_backend"] = jax.default_backend()
        info["jax_devices"] = [str(d) for d in jax.devices()]
    except Exception:  # pragma: no cover
        pass
    info["R"] = r_version()
    return info


def r_version():
    if shutil.which("Rscript") is None:
        return None
    try:
        out = subprocess.run(["Rscript", "-e", 'cat(R.version.string, "|", tryCatch('
                              'as.character(packageVersion("flexmix")), error=function(e) "none"))'],
                             capture_output=True, text=True, timeout=60)
        return out.stdout.strip() or None
    except Exception:
        return None


def fmt(v, digits=3):
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    v = float(v)
    if not np.isfinite(v):
        return str(v)
    if v == 0:
        return "0"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.{digits}g}"


def md_table(header, rows) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        # a "|" inside a cell (a formula, a shell pipe) would end the cell
        lines.append("| " + " | ".join(str(c).replace("|", "\\|") for c in r) + " |")
    return "\n".join(lines)


def machine_md(m: dict) -> str:
    return (f"Machine: {m.get('cpu_model')} ({m.get('cpu_count')} logical CPUs), "
            f"load average at start {', '.join(f'{x:.1f}' for x in m.get('loadavg_1_5_15', []))} "
            f"(other developers share the cores: absolute times are noisy, ratios of interleaved "
            f"medians are the result); Python {m.get('python')}, JAX {m.get('jax')} "
            f"({m.get('jax_backend')}), Numba {m.get('numba')}, NumPy {m.get('numpy')}; "
            f"R/flexmix: {m.get('R') or 'not installed'}; {m.get('date_utc')} UTC.")


def _clean(o):
    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items() if k != "value"}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, (np.floating, float)):
        return None if not np.isfinite(o) else float(o)
    if isinstance(o, (np.integer,)):
        return int(o)
    if isinstance(o, (np.bool_,)):
        return bool(o)
    if isinstance(o, np.ndarray):
        return _clean(o.tolist())
    return o


def write_results(name: str, markdown: str, data: dict) -> tuple[Path, Path]:
    """Write ``results/<name>.md`` and ``results/<name>.json`` atomically."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    md_path, js_path = RESULTS / f"{name}.md", RESULTS / f"{name}.json"
    for path, text in ((md_path, markdown.rstrip() + "\n"),
                       (js_path, json.dumps(_clean(data), indent=1, sort_keys=False) + "\n")):
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(text)
        tmp.replace(path)
    return md_path, js_path


def log(msg: str, quiet: bool = False):
    if not quiet:
        print(msg, file=sys.stderr, flush=True)
