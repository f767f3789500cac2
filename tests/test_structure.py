"""One place per concept: the estimator pipeline has one stopping rule, one tie rule and one
start drawer (grep-level checks over the package's source)."""
import re
from pathlib import Path

PKG = Path(__file__).resolve().parents[1] / "moetheory"


def _defs(pattern):
    """{file: lines} of the package source matching ``pattern`` (comments and doctests left out)."""
    out = {}
    rx = re.compile(pattern)
    for path in PKG.rglob("*.py"):
        lines = [ln for ln in path.read_text().splitlines()
                 if rx.search(ln) and not ln.lstrip().startswith(("#", ">>>", "..."))]
        if lines:
            out[str(path.relative_to(PKG))] = lines
    return out


def test_one_stopping_rule():
    # the rule is defined by EMConfig.stop_thresholds; the four EM loops (JAX, Numba, its
    # NumPy twin for small data, NumPy oracle) only apply its two numbers,
    # |Δℓ| <= max(tol_rel·|ℓ|, tol_abs)
    assert set(_defs(r"def stop_thresholds")) == {"em/config.py"}
    appliers = _defs(r"<=\s*(jnp\.)?max(imum)?\(tol_rel \*")
    assert set(appliers) == {"em/run.py", "kernels/numba_em.py", "kernels/numpy_em.py",
                             "kernels/reference.py"}, appliers
    assert not _defs(r"LL_FLOOR_PER_OBS|ll_floor"), "a second stopping rule"


def test_one_tie_rule_and_one_start_drawer():
    assert set(_defs(r"def pick_best\b")) == {"em/starts.py"}
    assert set(_defs(r"\bpick_best\(")) <= {"em/starts.py", "em/pipeline.py"}
    assert set(_defs(r"def draw_starts\b")) == {"em/starts.py"}
    # the initialisers are called by the start drawer only (and by each other); em/init_numpy.py
    # holds the NumPy twins of the data-driven ones for the CPU backends
    callers = _defs(r"\b(paper_init|perturb_init|data_partition|params_from_resp)\(")
    assert set(callers) <= {"em/starts.py", "em/init.py", "em/init_numpy.py"}, callers
    # one driver: fit and every study cell call run_pipeline
    assert set(_defs(r"\brun_pipeline\(")) <= {"em/pipeline.py", "api.py", "study/runner.py"}
