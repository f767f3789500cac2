"""Polish flexmix's optima of the real data sets to the exact maximum of the log-likelihood.

    python tests/data/realdata/polish.py          # after make_reference.R; from the repository root

For every data set NAME and k, reads NAME.csv and NAME.flexmix.json (written by
make_reference.R) and writes NAME.reference.json and summary.csv. The log-likelihood, its
gradient and Hessian are written out here (JAX autodiff), independent of moetheory's model code:
scipy's ``trust-exact`` Newton method, then plain Newton steps, maximise it from each distinct
optimum flexmix's starts reached (flexmix's σ is the weighted root mean squared residual times
√(n / (n − 2)), so its log-likelihood is slightly below the maximum; the start here uses σ
without that factor), and also from the estimates of ``moetheory.fit`` with its defaults and
seeds 0..9: on tonedata they find maxima that none of flexmix's 50 starts reached. moetheory
only proposes those starting points; each optimum is verified here (gradient ≈ 0, Hessian's
largest eigenvalue < 0) and records which method found it (``found_by``). The "best known"
maximum is the highest regular one (no σ_i collapsed to 0).

Parameterisation (flexmix's): the gate logit of component j is γ_j0 + γ_j1·x with component 1
the reference (γ_1 = 0); expert i has mean b_i + a_i·x and log standard deviation s_i. θ =
(γ_20, γ_21, ..., γ_k0, γ_k1, b_1, a_1, s_1, ..., b_k, a_k, s_k).

Each polished optimum records: the exact log-likelihood at flexmix's estimate and at the
polished one, the gradient's largest entry, the Hessian's largest eigenvalue (negative at a
strict local maximum) and the covariance −H⁻¹ of (gate, expert coefficients, variances ν_i =
σ_i²) by the delta method from log σ (the exact-Hessian standard errors).
"""
from __future__ import annotations

import csv
import datetime
import json
import platform
import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import scipy
from scipy.optimize import minimize

jax.config.update("jax_enable_x64", True)

HERE = Path(__file__).resolve().parent
SETS = ("tonedata", "co2data", "npreg", "ais", "mcycle", "faithful", "boston")
#: Polished maxima closer than this (nats) with the same parameters up to a relabelling are one
#: optimum: trust-exact stops with a gradient below 1e-9, where ℓ is exact to ~1e-12 nats.
SAME_MAX = 1e-6
#: A polished optimum whose smallest σ_i fell below this fraction of sd(y) is a degenerate spike
#: (the likelihood is unbounded there), recorded but never the reference.
SPIKE_SIGMA = 1e-6
#: flexmix's default ``minprior``: experts with a smaller prior share are removed by default.
MIN_PRIOR = 0.05
#: Seeds of the moetheory.fit runs whose maxima are polished too (benchmarks/realdata.py's).
MOETHEORY_SEEDS = range(10)


def log_joint_fn(x, y, k):
    """θ ↦ log(g_i(x_n) φ(y_n; b_i + a_i x_n, σ_i²)), (n, k), in flexmix's parameterisation."""
    X = jnp.stack([jnp.ones_like(x), x], axis=1)  # (n, 2)

    def log_joint(theta):
        gate = jnp.concatenate([jnp.zeros((1, 2)), theta[: 2 * (k - 1)].reshape(k - 1, 2)])
        ex = theta[2 * (k - 1):].reshape(k, 3)
        eta = X @ gate.T  # (n, k)
        log_gate = eta - jax.scipy.special.logsumexp(eta, axis=1, keepdims=True)
        mu = X @ ex[:, :2].T
        s = ex[:, 2]
        log_phi = -0.5 * jnp.log(2 * jnp.pi) - s - 0.5 * ((y[:, None] - mu) / jnp.exp(s)) ** 2
        return log_gate + log_phi

    return log_joint


def loglik_fn(x, y, k):
    """θ ↦ ℓ(θ) = Σ_n log Σ_i g_i(x_n) φ(y_n; b_i + a_i x_n, σ_i²)."""
    log_joint = log_joint_fn(x, y, k)
    return lambda theta: jax.scipy.special.logsumexp(log_joint(theta), axis=1).sum()


def expert_sizes(x, y, k, theta):
    """Effective sizes Σ_n r_ni of the experts at θ, (k,)."""
    return np.asarray(jax.nn.softmax(log_joint_fn(x, y, k)(jnp.asarray(theta)), axis=1).sum(axis=0))


def theta_from_flexmix(opt, k, n):
    # (k = 1: flexmix reports a lone 0 for the gate, which has no free parameter)
    gate = np.asarray(opt["gate_coef"], dtype=float).reshape(k, 2) if k > 1 else np.zeros((1, 2))
    coef = np.asarray(opt["expert_coef"], dtype=float).reshape(k, 2)
    sigma = np.asarray(opt["sigma"], dtype=float).reshape(k) * np.sqrt((n - 2) / n)
    return np.concatenate([gate[1:].ravel(), np.column_stack([coef, np.log(sigma)]).ravel()])


def unpack(theta, k):
    gate = np.vstack([np.zeros((1, 2)), np.asarray(theta[: 2 * (k - 1)]).reshape(k - 1, 2)])
    ex = np.asarray(theta[2 * (k - 1):]).reshape(k, 3)
    return gate, ex[:, :2], np.exp(ex[:, 2])


def canonical(theta, k):
    """Parameters up to a relabelling: experts sorted by (intercept, slope), gate relative to
    the first of them."""
    gate, coef, sigma = unpack(theta, k)
    order = np.lexsort((coef[:, 1], coef[:, 0]))
    gate = gate[order] - gate[order[0]]
    return np.concatenate([gate.ravel(), coef[order].ravel(), sigma[order]])


def objective(ll):
    """(f, ∇f, ∇²f) of f = −ℓ, compiled once per data set and k."""
    neg = lambda t: -ll(t)  # noqa: E731
    return jax.jit(neg), jax.jit(jax.grad(neg)), jax.jit(jax.hessian(neg))


def polish(ll, fgh, theta0, k, sd_y):
    f, g, h = fgh
    res = minimize(lambda t: float(f(t)), theta0, jac=lambda t: np.asarray(g(t)),
                   hess=lambda t: np.asarray(h(t)), method="trust-exact",
                   options={"gtol": 1e-9, "maxiter": 1000})
    theta = res.x
    # trust-exact may stop at its trust-region precision limit with a gradient ~1e-6: finish
    # with plain Newton steps while the Hessian is definite and ℓ does not fall.
    for _ in range(10):
        hf = np.asarray(h(theta))
        if (not np.all(np.isfinite(hf)) or np.max(np.abs(g(theta))) < 1e-11
                or np.linalg.eigvalsh(hf).min() <= 0):
            break
        trial = theta - np.linalg.solve(hf, np.asarray(g(theta)))
        if not float(f(trial)) <= float(f(theta)) + 1e-12 * max(1.0, abs(float(f(theta)))):
            break
        theta = trial
    hess = -np.asarray(h(theta))  # Hessian of ℓ
    eig = np.linalg.eigvalsh(hess) if np.all(np.isfinite(hess)) else np.array([np.nan])
    _, coef, sigma = unpack(theta, k)
    spike = bool(sigma.min() < SPIKE_SIGMA * sd_y) or not np.isfinite(float(ll(theta)))
    out = {"loglik": float(ll(theta)), "theta": theta.tolist(), "success": bool(res.success),
           "message": str(res.message), "n_iter": int(res.nit),
           "max_abs_grad": float(np.max(np.abs(g(theta)))), "max_hess_eig": float(eig.max()),
           "min_hess_eig": float(eig.min()), "spike": spike}
    # A covariance only where the Hessian is negative definite beyond rounding (condition
    # number below 1e12 in these coordinates): elsewhere (a gate tending to a step) there is none.
    if not spike and eig.max() < -1e-12 * abs(eig.min()):
        cov_t = np.linalg.inv(-hess)  # covariance of θ (log σ)
        # Delta method to (gate, b, a, ν = σ²): ∂ν/∂s = 2σ².
        jac = np.eye(theta.size)
        for i in range(k):
            j = 2 * (k - 1) + 3 * i + 2
            jac[j, j] = 2.0 * sigma[i] ** 2
        out["cov_var"] = (jac @ cov_t @ jac.T).tolist()
        out["se_theta"] = np.sqrt(np.diag(cov_t)).tolist()
    return out


def theta_from_moetheory(params):
    """flexmix's θ from moetheory ``MoEParams`` (d = 1; moetheory pins its last expert's gate,
    flexmix its first)."""
    beta0, beta1 = np.asarray(params.beta0), np.asarray(params.beta1)[:, 0]
    gate = np.column_stack([beta0 - beta0[0], beta1 - beta1[0]])[1:]
    ex = np.column_stack([np.asarray(params.b), np.asarray(params.a)[:, 0], 0.5 * np.log(np.asarray(params.var))])
    return np.concatenate([gate.ravel(), ex.ravel()])


def moetheory_candidates(x, y, k, seeds):
    """Maxima that ``moetheory.fit`` (defaults, these seeds) finds: more starting points for the
    polish. moetheory only proposes them; this script verifies each (gradient, Hessian) with
    its own log-likelihood."""
    import warnings

    import moetheory as mt

    out = []
    for seed in seeds:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a candidate's warnings do not matter: it is verified here
            res = mt.fit(np.asarray(x), np.asarray(y), n_experts=k, seed=seed)
        out.append((seed, res.loglik, theta_from_moetheory(res.params)))
    return out


def names(k, x, y):
    gate = [f"gate{j}:{lab}" for j in range(2, k + 1) for lab in ("const", x)]
    ex = [f"expert{i}:{lab}" for i in range(1, k + 1) for lab in ("const", x, "var")]
    return gate + ex


def do_set(name):
    with open(HERE / f"{name}.flexmix.json") as fh:
        fx = json.load(fh)
    with open(HERE / f"{name}.csv") as fh:
        rows = list(csv.reader(fh))
    header, data = rows[0], np.asarray(rows[1:], dtype=float)
    assert header == [fx["x"], fx["y"]], (header, fx["x"], fx["y"])
    x, y = jnp.asarray(data[:, 0]), jnp.asarray(data[:, 1])
    n, sd_y = data.shape[0], float(np.std(data[:, 1]))
    fits = []
    for fit in fx["fits"]:
        k = fit["k"]
        ll = loglik_fn(x, y, k)
        fgh = objective(ll)
        optima = []
        starts = [("flexmix", opt, theta_from_flexmix(opt, k, n)) for opt in fit["optima"]]
        if k > 1:
            starts += [("moetheory", {"seed": seed, "loglik": l}, theta)
                       for seed, l, theta in moetheory_candidates(x, y, k, MOETHEORY_SEEDS)]
        for source, opt, theta0 in starts:
            p = polish(ll, fgh, theta0, k, sd_y)
            p["canonical"] = canonical(np.asarray(p["theta"]), k).tolist()
            p["sizes"] = expert_sizes(x, y, k, p["theta"]).tolist()
            if source == "flexmix":
                p.update(found_by="flexmix", flexmix_loglik=opt["loglik"], n_starts=opt["n_starts"],
                         first_seed=opt["first_seed"],
                         exact_loglik_at_flexmix=float(ll(jnp.asarray(theta0))))
            else:
                p.update(found_by=f"moetheory.fit(seed={opt['seed']})", n_starts=0)
            same = [q for q in optima if abs(q["loglik"] - p["loglik"]) < SAME_MAX
                    and np.allclose(q["canonical"], p["canonical"], rtol=1e-4, atol=1e-6)]
            if same:
                same[0]["n_starts"] += p["n_starts"]
                if source == "flexmix":
                    same[0].setdefault("merged_flexmix_logliks", []).append(opt["loglik"])
                else:
                    same[0].setdefault("also_found_by", []).append(p["found_by"])
            else:
                optima.append(p)
        regular = [p for p in optima if not p["spike"]]
        regular.sort(key=lambda p: -p["loglik"])
        best = regular[0]
        from_flexmix = [p for p in regular if p["n_starts"] > 0]
        # flexmix's default rule (minprior = 0.05) would have removed experts smaller than 5%.
        large = [p for p in regular if min(p["sizes"]) >= MIN_PRIOR * n]
        gate, coef, sigma = unpack(np.asarray(best["theta"]), k)
        fits.append({
            "k": k, "df": 3 * k + 2 * (k - 1), "n_starts": fit["n_starts"],
            "flexmix_best_loglik": fit["best_loglik"],
            "flexmix_best_polished_loglik": from_flexmix[0]["loglik"],
            "best_loglik": best["loglik"],
            "best_found_by": best["found_by"],
            "n_starts_at_best": best["n_starts"],
            "best_min_size": min(best["sizes"]),
            "best_large_loglik": large[0]["loglik"] if large else None,
            "best": {"gate_coef": gate.tolist(), "expert_coef": coef.tolist(),
                     "sigma": sigma.tolist(), "var": (sigma ** 2).tolist(),
                     "names": names(k, fx["x"], fx["y"]),
                     "cov": best.get("cov_var"),
                     "max_abs_grad": best["max_abs_grad"], "max_hess_eig": best["max_hess_eig"],
                     "exact_loglik_at_flexmix": best.get("exact_loglik_at_flexmix")},
            "refit": fit["refit"],
            "flexmix_time_total_s": fit["time_total_s"],
            "optima": sorted(optima, key=lambda p: -p["loglik"]),
        })
    out = {"name": name, "source": fx["source"], "n": n, "x": fx["x"], "y": fx["y"],
           "flexmix": {key: fx[key] for key in ("versions", "command", "call", "starts")},
           "polish": {"command": "python tests/data/realdata/polish.py",
                      "method": "scipy.optimize.minimize(method='trust-exact', gtol=1e-9), then "
                                "Newton steps, on the exact log-likelihood (JAX gradient and "
                                "Hessian), from each distinct flexmix optimum (σ without flexmix's "
                                "n/(n-2) factor) and from moetheory.fit's estimates (defaults, "
                                "seeds 0-9; found_by says which found each optimum)",
                      "moetheory": __import__("moetheory").__version__,
                      "python": platform.python_version(), "numpy": np.__version__,
                      "scipy": scipy.__version__, "jax": jax.__version__,
                      "date": datetime.date.today().isoformat()},
           "layout": "best.gate_coef[j] = [intercept, slope] of component j's logit (component 1 "
                     "= reference, zeros); best.expert_coef[i] = [intercept, slope]; best.var = "
                     "σ² (exact MLE); best.cov: covariance (−H⁻¹, delta method for the "
                     "variances) of best.names: gate of components 2..k, then per expert "
                     "(intercept, slope, variance)",
           "fits": fits}
    with open(HERE / f"{name}.reference.json", "w") as fh:
        json.dump(_finite(out), fh, indent=1, allow_nan=False)
    return out


def _finite(o):
    """NaN and ±inf as null (strict JSON): a diverged polish of a spike has ℓ = inf."""
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    if isinstance(o, float) and not np.isfinite(o):
        return None
    return o


def main(argv):
    """Polish the named data sets (default: all), then write summary.csv from every
    NAME.reference.json present."""
    for name in argv or SETS:
        do_set(name)
    table = []
    for name in SETS:
        path = HERE / f"{name}.reference.json"
        if not path.exists():
            continue
        with open(path) as fh:
            out = json.load(fh)
        for f in out["fits"]:
            table.append({"data": name, "n": out["n"], "k": f["k"], "df": f["df"],
                          "flexmix_best_loglik": f["flexmix_best_loglik"],
                          "flexmix_best_polished_loglik": f["flexmix_best_polished_loglik"],
                          "best_loglik": f["best_loglik"], "best_found_by": f["best_found_by"],
                          "n_starts": f["n_starts"], "n_starts_at_best": f["n_starts_at_best"],
                          "n_optima": len(f["optima"]), "best_min_size": f["best_min_size"],
                          "best_large_loglik": f["best_large_loglik"],
                          "spike_above_best": any(p["spike"] and (p["loglik"] is None or p["loglik"] > f["best_loglik"])
                                                  for p in f["optima"]),
                          "max_abs_grad": f["best"]["max_abs_grad"],
                          "max_hess_eig": f["best"]["max_hess_eig"]})
            print(table[-1])
    with open(HERE / "summary.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(table[0]))
        w.writeheader()
        w.writerows(table)


if __name__ == "__main__":
    main(sys.argv[1:])
