"""Reference numbers of the four built-in gates, made BEFORE gates became objects (issue 19).

Run from the repository root on main before the refactor (made last on 3fb31a7, the start
policy, spurious-solution rule and Numba starts; earlier on d9dd2ea: the top-K certificate
and the NumPy polish chart; the first reference, made on b0aa4c0, predates them):

    .venv/bin/python tests/data/gates_binding/make_reference.py

It writes ``reference.json`` beside this file: for every gate configuration in :data:`CASES`

* fits through :func:`moetheory.fit` (near-truth start, and data-driven starts with an explicit
  EMConfig) — parameters, log-likelihood, iterations, certificate, free-parameter names and
  values, standard errors (oim, opg, sandwich), AIC/BIC and the summary() text;
* the log-likelihood, gate probabilities and observed information at fixed parameters, and an
  EM trace of 6 iterations from a fixed start (the gate M-step);
* losses at fixed parameters: Voronoi D_1/D_2 under every translation, cell and matched errors;
* one small study cell per gate (every loss of ``LOSSES``), with the panel hashes and study
  hashes (caches must stay valid);
* the torch round trip and layer log-density.

``tests/test_gates_binding.py`` recomputes everything and compares: exact where the computation
is deterministic (hashes, names, texts), relative 1e-12 elsewhere.
"""
from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

jax.config.update("jax_enable_x64", True)

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))

import moetheory as mt  # noqa: E402
from moetheory import mle, model  # noqa: E402
from moetheory.em.config import EMConfig  # noqa: E402
from moetheory.em.run import run_em  # noqa: E402
from moetheory.losses import best_translation, cell_errors, matched_errors  # noqa: E402
from moetheory.params import MoEParams  # noqa: E402
from moetheory.spec import MoESpec  # noqa: E402
from moetheory.study.runner import compute_cell  # noqa: E402
from moetheory.study.spec import LOSSES, DesignSpec, FitSpec, StudySpec  # noqa: E402

OUT = Path(__file__).resolve().parent / "reference.json"

SOFTMAX_TRUTH = MoEParams.create([-8.0, 0.0], [[25.0], [0.0]], [[-20.0], [20.0]], [15.0, -5.0],
                                 [0.09, 0.16])
TOPK_TRUTH = MoEParams.create([0.0, 0.5, 0.0], [[-4.0], [0.0], [4.0]], [[-2.0], [1.0], [2.0]],
                              [1.0, 0.0, -1.0], [0.1, 0.1, 0.1])
TEMP_TRUTH = MoEParams.create([0.5, 0.0], [[2.0], [0.0]], [[-1.0], [1.0]], [0.5, -0.5],
                              [0.05, 0.05], tau=0.5)
TOPK2D_TRUTH = MoEParams.create([0.0, 0.5, 0.0], [[-3.0, 1.0], [0.0, 2.0], [3.0, -1.0]],
                                [[-2.0, 0.5], [1.0, -1.0], [2.0, 1.0]], [1.0, 0.0, -1.0],
                                [0.1, 0.1, 0.1])

#: name -> (truth spec, truth, fitted spec, design (name, low, high), fit() gate keywords)
CASES = {
    "softmax": (MoESpec(2, 1), SOFTMAX_TRUTH, MoESpec(2, 1), ("grid", 0.0, 1.0), dict(gate="softmax")),
    "softmax-k3": (MoESpec(2, 1), SOFTMAX_TRUTH, MoESpec(3, 1), ("grid", 0.0, 1.0), dict(gate="softmax")),
    "topk": (MoESpec(3, 1, gate="topk", top_k=2), TOPK_TRUTH, MoESpec(3, 1, gate="topk", top_k=2),
             ("uniform", -1.0, 1.0), dict(gate="topk", top_k=2)),
    "topk-logit-2d": (MoESpec(3, 2, gate="topk", top_k=2, select_by="logit"), TOPK2D_TRUTH,
                      MoESpec(3, 2, gate="topk", top_k=2, select_by="logit"), ("uniform", -1.0, 1.0),
                      dict(gate="topk", top_k=2, select_by="logit")),
    "topk-K1": (MoESpec(3, 1, gate="topk", top_k=1), TOPK_TRUTH, MoESpec(3, 1, gate="topk", top_k=1),
                ("uniform", -1.0, 1.0), dict(gate="topk", top_k=1)),
    "temperature-fixed": (MoESpec(2, 1, gate="temperature"), TEMP_TRUTH, MoESpec(2, 1, gate="temperature"),
                          ("uniform", -1.0, 1.0), dict(gate="temperature", tau=0.5)),
    "temperature-estimated": (MoESpec(2, 1, gate="temperature", tau="estimated"), TEMP_TRUTH,
                              MoESpec(2, 1, gate="temperature", tau="estimated"),
                              ("uniform", -1.0, 1.0), dict(gate="temperature", tau="estimated")),
    "activation-tanh": (MoESpec(2, 1, gate="activation", activation="tanh"), TEMP_TRUTH,
                        MoESpec(2, 1, gate="activation", activation="tanh"), ("uniform", -1.0, 1.0),
                        dict(gate="activation", activation="tanh", tau=0.5)),
    "activation-sigmoid-est": (MoESpec(2, 1, gate="activation", activation="sigmoid", tau="estimated"),
                               TEMP_TRUTH,
                               MoESpec(2, 1, gate="activation", activation="sigmoid", tau="estimated"),
                               ("uniform", -1.0, 1.0),
                               dict(gate="activation", activation="sigmoid", tau="estimated")),
}
N = 300
#: the data-driven estimator of the binding fits (explicit, so a changed default does not move it)
DATA_EST = EMConfig(init="auto", n_init=4, n_keep=2)


def data(case):
    truth_spec, truth, _, (dname, lo, hi), _ = CASES[case]
    key = jax.random.key(7)
    kx, ky = jax.random.split(key)
    from moetheory.designs import make_design

    x = np.asarray(make_design(kx, dname, N, truth_spec.dim, low=lo, high=hi))
    y = np.asarray(model.sample(ky, truth_spec, truth, x))
    return x, y


def tolist(v):
    return np.asarray(v, dtype=np.float64).tolist()


def params_dict(p):
    return {name: tolist(getattr(p, name)) for name in ("beta0", "beta1", "a", "b", "var", "tau")}


def fit_record(res):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        out = {"params": params_dict(res.params), "loglik": res.loglik, "n_iter": res.n_iter,
               "converged": bool(res.converged), "cert_reason": res.certificate.reason,
               "cert_gap": float(res.certificate.gap), "param_names": res.param_names,
               "free_params": tolist(res.free_params), "aic": res.aic, "bic": res.bic,
               "df_model": res.df_model, "unidentified": res.unidentified,
               "identified_params": params_dict(res.identified_params),
               "trace": tolist(res.trace)}
        for ct in ("oim", "opg", "sandwich"):
            out[f"bse_{ct}"] = tolist(res.bse(ct))
        out["summary"] = res.summary()
    return out


def fits(case):
    _, truth, fspec, _, kw = CASES[case]
    x, y = data(case)
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        near = mt.fit(x, y, fspec.n_experts, init="perturb", n_init=1, truth=truth if
                      fspec.n_experts == truth.n_experts else None, seed=3, **kw) \
            if fspec.n_experts == truth.n_experts else None
        dd = mt.fit(x, y, fspec.n_experts, estimator=DATA_EST, seed=5, em_backend="jax", **kw)
    if near is not None:
        out["near"] = fit_record(near)
    out["data"] = fit_record(dd)
    if case == "softmax":
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = mt.fit(x, y, 2, estimator=DATA_EST, seed=5, em_backend="numba", **kw)
        out["data_numba"] = fit_record(nb)
    return out


def fixed_point(case):
    """Quantities at fixed parameters: the truth, perturbed, in the fitted spec's normalisation."""
    _, truth, fspec, _, _ = CASES[case]
    x, y = data(case)
    k = fspec.n_experts
    rng = np.random.default_rng(11)
    idx = np.r_[np.arange(truth.n_experts), np.zeros(k - truth.n_experts, dtype=int)]
    p = MoEParams(*(np.asarray(getattr(truth, f))[idx] if f != "tau" else np.asarray(truth.tau)
                    for f in ("beta0", "beta1", "a", "b", "var", "tau")))
    p = p._replace(beta0=p.beta0 + 0.1 * rng.standard_normal(k),
                   beta1=p.beta1 + 0.1 * rng.standard_normal(p.beta1.shape),
                   a=p.a + 0.1 * rng.standard_normal(p.a.shape), b=p.b + 0.1 * rng.standard_normal(k),
                   var=p.var * (1 + 0.1 * rng.random(k)))
    from moetheory.gates import pin

    q = pin(fspec, jax.tree.map(jnp.asarray, p))
    p = MoEParams(*(np.asarray(getattr(q, f)) for f in ("beta0", "beta1", "a", "b", "var", "tau")))
    out = {"params": params_dict(p),
           "loglik": float(model.log_likelihood(fspec, p, x, y)),
           "gate_probabilities": tolist(model.gate_probabilities(fspec, p, x[:20])),
           "responsibilities": tolist(model.responsibilities(fspec, p, x[:20], y[:20])),
           "predict_mean": tolist(model.predict_mean(fspec, p, x[:20]))}
    info, scores = mle.information(fspec, p, x, y)
    out["information"] = tolist(info)
    out["scores_sum"] = tolist(scores.sum(0))
    out["free_layout"] = [[f, list(idx), lab] for f, idx, lab in mle.free_layout(fspec)]
    em = run_em(fspec, jax.tree.map(jnp.asarray, p), jnp.asarray(x), jnp.asarray(y), max_iter=6,
                tol_rel=0.0, tol_abs=0.0, gate_options=(("max_newton", 1),))
    out["em_params"] = params_dict(jax.tree.map(np.asarray, em.params))
    out["em_trace"] = tolist(em.trace)
    # losses of these parameters against the truth
    losses = {}
    for translation in ("infimum", "bias", "none", "pinned"):
        res = best_translation(p, truth, "auto", translation)
        losses[translation] = {"value": float(res.value), "t0": float(res.t0), "t1": tolist(res.t1),
                               "assign": np.asarray(res.assign).tolist()}
    out["losses"] = losses
    ce = cell_errors(p, truth)
    out["cell_errors"] = {f: tolist(getattr(ce, f)) for f in ce._fields}
    if k == truth.n_experts:
        me = matched_errors(p, truth)
        out["matched_errors"] = {f: tolist(getattr(me, f)) for f in me._fields}
    return out


def study_of(case):
    truth_spec, truth, fspec, (dname, lo, hi), _ = CASES[case]
    return StudySpec(name=f"bind-{case}", truth_spec=truth_spec, truth=truth,
                     fits=(FitSpec("fit", fspec, sizes=(200,), n_starts=1),),
                     design=DesignSpec(dname, low=lo, high=hi), replicates=2,
                     estimator=EMConfig(init="paper"), losses=LOSSES, seed=1)


def cell(case):
    study = study_of(case)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        arrays = compute_cell(study, "fit", 200, em_backend="jax")
    out = {"panel_hash": study.panel_hash("fit"), "study_hash": study.hash(),
           "toml": study.to_toml()}
    out["arrays"] = {k: (v.tolist() if v.dtype.kind in "U" else tolist(v) if v.dtype.kind in "fc"
                         else np.asarray(v).tolist()) for k, v in arrays.items()}
    return out


def torch_record(case):
    try:
        from moetheory.bridge.torch import from_torch, to_torch
    except ImportError:
        return None
    _, truth, fspec, _, _ = CASES[case]
    if fspec.n_experts != truth.n_experts:
        return None
    x, y = data(case)
    layer = to_torch(fspec, truth)
    spec2, p2 = from_torch(layer)
    return {"spec": repr(spec2), "params": params_dict(p2),
            "log_density": tolist(layer.log_density(x[:20], y[:20]).detach().numpy())}


def main():
    ref = {"commit_note": "made on main d9dd2ea before gates became objects (issue 19)", "cases": {}}
    for case in CASES:
        print(case, flush=True)
        ref["cases"][case] = {"fits": fits(case), "fixed": fixed_point(case), "cell": cell(case),
                              "torch": torch_record(case)}
    OUT.write_text(json.dumps(ref, indent=1, sort_keys=True, allow_nan=True))
    print("wrote", OUT)


if __name__ == "__main__":
    main()
