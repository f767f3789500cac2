"""The real-data reference fits of tests/data/realdata (R flexmix, polished to the exact maximum)
in moetheory's terms: loading, label alignment, and the reference's parameters and exact-Hessian
covariance mapped onto moetheory's free parameters.

Shared by tests/test_realdata.py and benchmarks/realdata.py. flexmix's layout (the reference's):
component 1's gate is pinned at zero and parameters run gate (components 2..k: intercept,
slope), then per expert (intercept, slope, variance); moetheory pins the **last** expert's gate
and orders each expert (slope, intercept, variance) (:func:`moetheory.mle.free_layout`).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

DATA_DIR = Path(__file__).resolve().parent / "data" / "realdata"
SETS = ("tonedata", "co2data", "npreg", "ais", "mcycle", "faithful", "boston")


@dataclass(frozen=True)
class Case:
    """One data set and k: data (x (n, 1), y (n,)) and the reference's best optimum."""

    name: str
    k: int
    x: np.ndarray
    y: np.ndarray
    x_name: str
    y_name: str
    ref: dict  # the fit's entry of NAME.reference.json

    @property
    def best_loglik(self) -> float:
        return float(self.ref["best_loglik"])

    @property
    def has_cov(self) -> bool:
        """Whether the exact Hessian at the reference is negative definite (covariance known)."""
        return self.ref["best"]["cov"] is not None


def load_set(name: str) -> dict:
    with open(DATA_DIR / f"{name}.reference.json") as fh:
        return json.load(fh)


def load_data(name: str):
    import pandas as pd

    df = pd.read_csv(DATA_DIR / f"{name}.csv")
    return df.iloc[:, [0]].to_numpy(dtype=float), df.iloc[:, 1].to_numpy(dtype=float), list(df.columns)


def cases(names=SETS, ks=None) -> list[Case]:
    out = []
    for name in names:
        ref = load_set(name)
        x, y, cols = load_data(name)
        assert cols == [ref["x"], ref["y"]], (name, cols)
        for fit in ref["fits"]:
            if ks is None or fit["k"] in ks:
                out.append(Case(name, fit["k"], x, y, ref["x"], ref["y"], fit))
    return out


def local_maxima(case: Case, count: int = 3) -> list[dict]:
    """The ``count`` highest regular local maxima of the reference with a covariance (negative
    definite Hessian), each as a dict like ``case.ref["best"]`` (``gate_coef``, ``expert_coef``,
    ``var``, ``cov``) plus ``loglik``."""
    k, out = case.k, []
    for opt in case.ref["optima"]:
        if opt["spike"] or opt.get("cov_var") is None:
            continue
        theta = np.asarray(opt["theta"], dtype=float)
        gate = np.vstack([np.zeros((1, 2)), theta[: 2 * (k - 1)].reshape(k - 1, 2)])
        ex = theta[2 * (k - 1):].reshape(k, 3)
        out.append({"gate_coef": gate.tolist(), "expert_coef": ex[:, :2].tolist(),
                    "var": np.exp(2 * ex[:, 2]).tolist(), "cov": opt["cov_var"], "loglik": opt["loglik"]})
        if len(out) == count:
            break
    return out


def reference_params(case: Case, order=None, est=None):
    """The reference's best estimate (or ``est``, an entry of :func:`local_maxima`) as moetheory
    ``MoEParams``, experts in ``order`` (moetheory's expert i is the reference's component
    ``order[i]``; default: the reference's order)."""
    from moetheory.params import MoEParams

    b = case.ref["best"] if est is None else est
    k = case.k
    order = np.arange(k) if order is None else np.asarray(order)
    gate = np.asarray(b["gate_coef"], dtype=float)[order]  # (k, 2): intercept, slope
    gate = gate - gate[-1]  # moetheory pins its last expert
    coef = np.asarray(b["expert_coef"], dtype=float)[order]
    var = np.asarray(b["var"], dtype=float)[order]
    return MoEParams.create(beta0=gate[:, 0], beta1=gate[:, 1:], a=coef[:, 1:], b=coef[:, 0], var=var)


def align(case: Case, params) -> np.ndarray:
    """Label alignment: ``order`` with moetheory's expert i ↔ the reference's component
    ``order[i]``, matching (intercept, slope, log variance) scaled by the data's spread."""
    b = case.ref["best"]
    sx, sy = float(np.std(case.x)), float(np.std(case.y))
    theirs = np.column_stack([np.asarray(b["expert_coef"])[:, 0] / sy,
                              np.asarray(b["expert_coef"])[:, 1] * sx / sy, np.log(b["var"])])
    ours = np.column_stack([np.asarray(params.b) / sy, np.asarray(params.a)[:, 0] * sx / sy,
                            np.log(np.asarray(params.var))])
    cost = ((ours[:, None, :] - theirs[None, :, :]) ** 2).sum(-1)
    rows, cols = linear_sum_assignment(cost)
    return cols[np.argsort(rows)]


def reference_cov(case: Case, order, est=None) -> np.ndarray:
    """The exact-Hessian covariance of the reference's best estimate (or ``est``) in moetheory's
    free parameters (:func:`moetheory.mle.free_layout` order) for the alignment ``order``, (p, p)."""
    from moetheory.mle import free_layout
    from moetheory.spec import MoESpec

    k = case.k
    cov_ref = np.asarray((case.ref["best"] if est is None else est)["cov"], dtype=float)
    p = cov_ref.shape[0]
    n_gate = 2 * (k - 1)

    def ref_index(kind, comp):  # index in the reference vector; None for component 1's gate
        if kind in ("gate_const", "gate_slope"):
            return None if comp == 0 else 2 * (comp - 1) + (0 if kind == "gate_const" else 1)
        return n_gate + 3 * comp + {"const": 0, "slope": 1, "var": 2}[kind]

    A = np.zeros((p, p))
    for row, (field, idx, _) in enumerate(free_layout(MoESpec(k, 1))):
        i = idx[0]
        if field in ("beta0", "beta1"):
            kind = "gate_const" if field == "beta0" else "gate_slope"
            for comp, sign in ((order[i], 1.0), (order[-1], -1.0)):  # β_i = γ_{o_i} − γ_{o_last}
                j = ref_index(kind, comp)
                if j is not None:
                    A[row, j] += sign
        else:
            kind = {"a": "slope", "b": "const", "var": "var"}[field]
            A[row, ref_index(kind, order[i])] = 1.0
    return A @ cov_ref @ A.T


def optimum_params(case: Case, opt: dict):
    """An entry of ``case.ref["optima"]`` as moetheory ``MoEParams`` (the reference's order)."""
    k = case.k
    theta = np.asarray(opt["theta"], dtype=float)
    gate = np.vstack([np.zeros((1, 2)), theta[: 2 * (k - 1)].reshape(k - 1, 2)])
    ex = theta[2 * (k - 1):].reshape(k, 3)
    est = {"gate_coef": gate.tolist(), "expert_coef": ex[:, :2].tolist(),
           "var": np.exp(2 * ex[:, 2]).tolist()}
    return reference_params(case, est=est)


def best_regular(case: Case):
    """(ℓ, cause of the best known maximum) where ℓ is the highest maximum of the reference that
    moetheory's default spurious-solution rule counts as regular
    (:func:`moetheory.em.spurious.assess`, default ``min_size``, no variance floor), or None
    when the reference has none; the cause is "regular" when the best known maximum is."""
    from moetheory.em.certify import certify
    from moetheory.em.config import EMConfig
    from moetheory.em.spurious import assess
    from moetheory.spec import MoESpec

    spec = MoESpec(case.k, 1)
    found, first = None, None
    for opt in sorted((o for o in case.ref["optima"] if o["loglik"] is not None),
                      key=lambda o: -o["loglik"]):
        p = optimum_params(case, opt)
        a = assess(spec, p, case.x, case.y, np.ones(case.y.size), var_floor=0.0,
                   certificate=certify(spec, p, case.x, case.y), min_size=EMConfig().min_size)
        first = a.cause if first is None else first
        if a.regular:
            found = float(opt["loglik"])
            break
    return found, first
