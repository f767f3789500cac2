"""The built-in gates give the numbers they gave before gates became objects (issue 19).

``tests/data/gates_binding/reference.json`` was written on main d9dd2ea (its moetheory/ is that
of main 9d8afe2), before the refactor, by ``tests/data/gates_binding/make_reference.py`` (run it
from the repository root of such a checkout to remake it). Each test recomputes one part with the same functions and compares:

* strings, integers, booleans, hashes, TOML texts and summary() texts: exactly;
* floating-point numbers: |a − b| ≤ 1e-12·max(|a|, |b|) + 1e-14 — the computations are
  deterministic on one machine, so any difference is a change of code path; the absolute floor
  covers quantities at rounding level (a Newton decrement of 1e-25 nats).

Cases: softmax (k = 2 and over-fitted k = 3), top-K (score and logit rules, K = 1), temperature
(τ fixed and estimated), activation (tanh with τ known, sigmoid with τ estimated).
"""
import json
import math
import sys
from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parent / "data" / "gates_binding"
sys.path.insert(0, str(DATA))
import make_reference as M  # noqa: E402

REF = json.loads((DATA / "reference.json").read_text())["cases"]
RTOL, ATOL = 1e-12, 1e-14


def compare(ref, new, path=""):
    """Recursively compare a reference and a recomputed JSON tree; returns a list of problems."""
    problems = []
    if isinstance(ref, dict):
        if not isinstance(new, dict) or set(ref) != set(new):
            return [f"{path}: keys {sorted(ref)} vs {sorted(new) if isinstance(new, dict) else new!r}"]
        for k in ref:
            problems += compare(ref[k], new[k], f"{path}/{k}")
    elif isinstance(ref, list):
        if not isinstance(new, list) or len(ref) != len(new):
            return [f"{path}: length {len(ref)} vs {len(new) if isinstance(new, list) else new!r}"]
        for i, (u, v) in enumerate(zip(ref, new)):
            problems += compare(u, v, f"{path}[{i}]")
    elif isinstance(ref, float) and not isinstance(ref, bool) and isinstance(new, (int, float)):
        a, b = float(ref), float(new)
        if math.isnan(a) or math.isnan(b):
            if not (math.isnan(a) and math.isnan(b)):
                problems.append(f"{path}: {a!r} vs {b!r}")
        elif math.isinf(a) or math.isinf(b):
            if a != b:
                problems.append(f"{path}: {a!r} vs {b!r}")
        elif abs(a - b) > RTOL * max(abs(a), abs(b)) + ATOL:
            problems.append(f"{path}: {a!r} vs {b!r}")
    elif ref != new:
        problems.append(f"{path}: {ref!r} vs {new!r}")
    return problems


def _json(tree):
    return json.loads(json.dumps(tree, allow_nan=True))


def test_the_comparison_can_fail():
    assert compare({"a": [1.0, "x"]}, {"a": [1.0 + 1e-9, "x"]})
    assert compare({"a": "summary"}, {"a": "summary "})
    assert not compare({"a": [1.0, float("nan")]}, {"a": [1.0 + 1e-15, float("nan")]})


@pytest.mark.parametrize("case", list(M.CASES))
def test_study_hashes_and_declarations_unchanged(case):
    """Existing caches stay valid: the same panel hash, study hash and TOML text."""
    study = M.study_of(case)
    ref = REF[case]["cell"]
    assert study.panel_hash("fit") == ref["panel_hash"]
    assert study.hash() == ref["study_hash"]
    assert study.to_toml() == ref["toml"]


@pytest.mark.parametrize("case", list(M.CASES))
def test_fixed_point_quantities_unchanged(case):
    """Log-likelihood, gate probabilities, information, free layout, 6 EM iterations (the gate
    step), Voronoi losses under every translation, cell and matched errors, at fixed parameters."""
    assert compare(REF[case]["fixed"], _json(M.fixed_point(case)), case) == []


@pytest.mark.parametrize("case", list(M.CASES))
def test_torch_round_trip_unchanged(case):
    pytest.importorskip("torch")
    assert compare(REF[case]["torch"], _json(M.torch_record(case)), case) == []


@pytest.mark.slow
@pytest.mark.parametrize("case", list(M.CASES))
def test_fits_standard_errors_and_summaries_unchanged(case):
    """moetheory.fit from a near-truth start and from data-driven starts (both EM backends for the
    softmax gate): parameters, log-likelihood, iterations, certificate, standard errors (oim, opg,
    sandwich), AIC/BIC and the summary() text."""
    assert compare(REF[case]["fits"], _json(M.fits(case)), case) == []


@pytest.mark.slow
@pytest.mark.parametrize("case", list(M.CASES))
def test_study_cells_unchanged(case):
    """One study cell (2 replicates, every loss of LOSSES): every column of the cell."""
    assert compare(REF[case]["cell"], _json(M.cell(case)), case) == []
