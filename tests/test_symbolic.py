"""Tests for moetheory.symbolic (PDE checks, dependency search, r̄(m))."""
import subprocess
import sys

import pytest

sp = pytest.importorskip("sympy")
mpmath = pytest.importorskip("mpmath")

from moetheory import symbolic as S  # noqa: E402


def test_sympy_not_imported_at_package_import():
    code = "import sys, moetheory.symbolic, moetheory.rates; print('sympy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# ------------------------------------------------------------------ PDE / Euler checks
def test_softmax_pdes_hold():
    checks = S.pde_checks("softmax")
    assert checks["d2u/dbeta1db == du/da"]
    assert checks["d2u/db2 == 2 du/dnu"]
    assert all(checks.values())


def test_softmax_pdes_hold_d2():
    checks = S.pde_checks("softmax", d=2)
    assert checks["d2u/dbeta1[1]db == du/da[1]"] and checks["d2u/dbeta1[2]db == du/da[2]"]


@pytest.mark.parametrize(
    "gate, holds",
    [
        ("temperature", True),
        ("activation-identity", True),
        ("activation-tanh", False),
        ("activation-sigmoid", False),
    ],
)
def test_euler_relation(gate, holds):
    checks = S.pde_checks(gate)
    assert len(checks) == 2
    assert all(v is holds for v in checks.values()), checks


def test_bad_gate():
    with pytest.raises(ValueError, match="gate"):
        S.pde_checks("relu")


# ------------------------------------------------------------------ dependency search
def test_dependency_search_rediscovers_pdes():
    u, s = S.softmax_expert_density(1)
    beta1, a, b, nu = s["beta1"][0], s["a"][0], s["b"], s["nu"]
    rels = S.find_linear_dependencies(u, [beta1, a, b, nu], 2)
    # the relation space, as coefficient vectors over the derivative names
    names = sorted({n for r in rels for n in r["terms"]})
    span = sp.Matrix([[r["terms"].get(n, 0) for n in names] for r in rels])

    def in_span(vec):
        v = sp.Matrix([[vec.get(n, 0) for n in names]])
        return all(k in names for k in vec) and span.rank() == span.col_join(v).rank()

    assert in_span({"d^2u/dbeta1db": 1, "du/da": -1})
    assert in_span({"d^2u/dbdb": 1, "du/dnu": -2})
    # first-order derivatives alone are independent
    assert S.find_linear_dependencies(u, [beta1, a, b, nu], 1) == []
    assert any("du/da" in r["text"] for r in rels)


def test_dependency_search_euler_temperature_gate():
    x, y, b1, b0 = sp.symbols("x y beta1 beta0", real=True)
    tau = sp.symbols("tau", positive=True)
    g = sp.exp((b1 * x + b0) / tau)
    rels = S.find_linear_dependencies(g, [b1, b0, tau], 1, variables=[x])
    assert len(rels) == 1
    terms = rels[0]["terms"]
    # coefficients proportional to (beta1, beta0, tau): the Euler relation
    ratio = sp.simplify(terms["du/dtau"] / terms["du/dbeta1"])
    assert ratio == tau / b1
    assert sp.simplify(terms["du/dbeta0"] / terms["du/dbeta1"]) == b0 / b1


def test_dependency_search_rejects_non_polynomial():
    x, b1, b0 = sp.symbols("x beta1 beta0", real=True)
    with pytest.raises(ValueError, match="polynomial"):
        S.find_linear_dependencies(sp.exp(sp.tanh(b1 * x) + b0), [b1, b0], 1, variables=[x])


# ------------------------------------------------------------------ r̄(m)
def test_rbar_system_shape():
    eqs, (p, a, b) = S.rbar_system(2, 4)
    assert len(eqs) == 4 and len(p) == 2
    # E_2 = sum_j p_j^2 (a_j^2/2 + b_j)
    assert sp.expand(eqs[1] - sum(p[j] ** 2 * (a[j] ** 2 / 2 + b[j]) for j in range(2))) == 0


def _check_witnesses(res):
    for o in res.orders[:-1]:
        assert o.solvable, o
        # re-verify independently at 50 digits
        resid = S.verify_witness(o.witness, res.m, o.r, dps=50)
        assert resid < mpmath.mpf("1e-20")
        with mpmath.workdps(50):
            z = [mpmath.mpf(v) for v in o.witness]
        m = res.m
        assert min(abs(v) for v in z[:m]) > 1e-6  # all p_j != 0
        assert max(abs(v) for v in z[m:2 * m]) > 1e-6  # some a_j != 0
    last = res.orders[-1]
    assert not last.solvable and last.r == res.value


def test_rbar_2_is_4_certified():
    res = S.rbar(2)
    assert res.value == 4
    assert res.certified  # exact Groebner certificate at r = 4
    _check_witnesses(res)


def test_rbar_3_is_6():  # ~5 s on 2 cores: not marked slow
    res = S.rbar(3)
    assert res.value == 6
    _check_witnesses(res)
    # non-existence at r = 6 is numerical evidence: the residual stays away from zero
    assert res.orders[-1].min_residual > 1e-4


def test_rbar_1():
    assert S.rbar(1).value == 1


def test_groebner_certificate_m2_r4_and_no_false_certificate():
    ok, note = S._groebner_certificate(2, 4)
    assert ok, note
    ok, _ = S._groebner_certificate(2, 3)  # under-determined: not attempted
    assert not ok


def test_bad_m():
    with pytest.raises(ValueError, match="m"):
        S.rbar(0)
    with pytest.raises(ValueError, match="method"):
        S.rbar(2, method="magic")


# ------------------------------------------------------------------ CLI helpers
def test_cli_outputs():
    out = S.cli_rbar(2)
    assert "rbar(2) = 4" in out
    txt = S.cli_pdes("softmax")
    assert "holds" in txt and "FAILS" not in txt
    assert "FAILS" in S.cli_pdes("activation-tanh")


# ------------------------------------------------------------------ PDE table, D_2 exponents
TABLE_GATES = ["softmax", "temperature", "activation-identity", "activation-tanh",
               "activation-sigmoid"]


@pytest.fixture(scope="module")
def table():
    return S.pde_table(TABLE_GATES)


def test_pde_table_which_relations_hold_per_gate(table):
    gates, t = TABLE_GATES, table
    b1a, bnu, euler, tb0, tb1 = S.PDE_RELATIONS
    for g in gates:  # the Gaussian expert's PDE and the bias shift survive every gate
        assert t[g][bnu]["status"] == "holds" and t[g][tb0]["status"] == "holds"
    for g in ("softmax", "temperature", "activation-identity"):
        assert t[g][b1a]["status"] == "holds" and t[g][tb1]["status"] == "holds"
    assert t["softmax"][b1a]["detail"] == "c = 1"
    assert t["temperature"][b1a]["detail"] == "c = 1/tau"
    for g in ("activation-tanh", "activation-sigmoid"):
        assert t[g][b1a]["status"] == "breaks" and t[g][tb1]["status"] == "breaks"
        assert t[g][euler]["status"] == "breaks"
    # the ratio sigma'(beta1 x)/tau = 1/(tau cosh^2(beta1 x)) depends on x
    assert "cosh(beta1*x)" in t["activation-tanh"][b1a]["detail"]
    assert t["softmax"][euler]["status"] == "n/a" and t["temperature"][euler]["status"] == "holds"
    with pytest.raises(ValueError, match="gate"):
        S.pde_table(["relu"])


def test_d2_exponent_rules_match_the_loss_table(table):
    from moetheory.losses.voronoi import D2_EXPONENTS, gate_exponents
    from moetheory.spec import MoESpec

    gates = TABLE_GATES
    specs = {"softmax": MoESpec(2, 1), "temperature": MoESpec(2, 1, gate="temperature")}
    for g in gates:
        spec = specs.get(g) or MoESpec(2, 1, gate="activation", activation=g.split("-", 1)[1])
        assert S.d2_exponent_rules(g, table) == D2_EXPONENTS[gate_exponents(spec)], g


@pytest.mark.slow
def test_cli_pdes_table_for_every_gate():
    txt = S.cli_pdes("all")
    assert all(g in txt for g in S.PDE_TABLE_GATES)
    assert "activation-tanh     breaks         holds" in txt
    assert "(2, 2, rbar, rbar/2)" in txt and "(rbar, rbar/2, rbar, rbar/2)" in txt


def test_cli_theory_pdes_command(capsys):
    from moetheory.cli import main

    assert main(["theory", "pdes", "--gate", "activation-tanh"]) == 0
    out = capsys.readouterr().out
    assert "[FAILS] beta1-a: d2u/dbeta1db = c du/da" in out
    assert "[holds] b-nu: d2u/db2 = 2 du/dnu" in out
