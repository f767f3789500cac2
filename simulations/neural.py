"""Study: the softmax truth trained as PyTorch MoE layers by Adam, beside EM (DESIGN.md §5 item 5).

Truth (DESIGN.md §5 item 1): d = 1, x on the grid [0, 1]; k* = 2 with (β_0, β_1) = (−8, 25),
(0, 0); (b, a) = (15, −20), (−5, 20); variances 0.09, 0.16. Fitted k = 2 (Voronoi loss D_1,
``translation="infimum"``, identified coordinates β/τ).

Two parts:

* ``curves`` — loss vs training step at one n for each gate: softmax (full batch and
  mini-batch), noisy top-1 (Shazeer), Switch top-1 (with the load-balancing loss, α = 10^-2 as
  in the Switch paper, and α = 1), GShard top-2 (equals softmax when k = 2), EvoMoE dense-to-sparse (τ linear 2.0 → 0.5 over
  70% of the steps, then hard top-1). All start from the same data-driven random init
  (:func:`moetheory.bridge.train.random_init`).
* ``vs_n`` — loss vs n after training: EM (``run_em`` from the softmax paper's near-truth
  ``paper`` start) beside Adam on the softmax layer from the *same* start and Adam from the
  random init, on the same data.

Run::

    python -m simulations.neural --preset quick --out results/neural_quick

Each finished cell is written to ``OUT/cells-<hash>/<cell>.json`` by the study cache's store
(:class:`moetheory.study.store.CellStore`: atomic writes, the cell's sha256 in
``manifest.json``, JSON only, no pickle); ``<hash>`` is that of the preset's configuration (the
hash of every study), so a cache written by a different configuration is never reused, an
interrupted run resumes, a damaged cell is named and recomputed, and concurrent runs on one
folder compute each cell once (claim files). The summary goes to ``OUT/results.json``; plot it
with ``python -m paper_figures.neural --results OUT``.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
import zlib
from contextlib import closing
from pathlib import Path

import numpy as np

from moetheory.study.registry import Entry

__all__ = ["PRESETS", "STUDY", "TRUTH", "REGISTRATION", "run_neural_experiment", "cache_status",
           "main"]

#: The softmax truth of DESIGN.md §5 item 1 (variances, not standard deviations).
TRUTH = {"beta0": [-8.0, 0.0], "beta1": [[25.0], [0.0]], "a": [[-20.0], [20.0]], "b": [15.0, -5.0],
         "var": [0.09, 0.16]}

#: Gates of the ``curves`` part: label -> (router, layer options, train options).
GATES = {
    "softmax": ("softmax", {}, {}),
    "softmax (mini-batch)": ("softmax", {}, {"batch_size": 64}),
    "noisy top-1": ("noisy_topk", {"top_k": 1}, {}),
    "switch top-1": ("switch", {}, {"aux_weight": 1e-2}),
    "switch top-1 (α=1)": ("switch", {}, {"aux_weight": 1.0}),
    "gshard top-2": ("gshard_top2", {}, {}),
    "dense-to-sparse": ("dense_to_sparse", {}, {}),
}

PRESETS = {
    "quick": {"seed": 0, "k": 2, "design": "grid", "lr": 0.1, "steps": 1000, "n_curve": 1000,
              "curve_reps": 2, "n_record": 21, "n_grid": [300, 1000, 3000], "reps": 3,
              "em_tol": 1e-8, "em_max_iter": 2000, "anneal_frac": 0.7, "gates": list(GATES)},
    "full": {"seed": 0, "k": 2, "design": "grid", "lr": 0.1, "steps": 4000, "n_curve": 10000,
             "curve_reps": 10, "n_record": 41, "n_grid": [300, 1000, 3000, 10000, 30000, 100000],
             "reps": 20, "em_tol": 1e-8, "em_max_iter": 2000, "anneal_frac": 0.7,
             "gates": list(GATES)},
}
STUDY = PRESETS


# ------------------------------------------------------------------------------------------ helpers


def _config_hash(cfg: dict) -> str:
    from moetheory.study.store import content_hash

    return content_hash({"study": "neural", "version": 1, "truth": TRUTH, "config": cfg})[:16]


def _slug(label: str) -> str:
    """A file-name-safe ASCII slug of a gate label (e.g. "switch top-1 (α=1)" -> "switch_top-1_alpha1")."""
    out = label.replace("α", "alpha")
    return "".join(ch if ch.isascii() and (ch.isalnum() or ch in "-_.") else ("_" if ch == " " else "")
                   for ch in out)


def _seed(*parts) -> int:
    """A data seed from (study seed, n, replicate, ...): adding sizes never moves existing cells."""
    return zlib.crc32("-".join(str(p) for p in parts).encode()) & 0x7FFFFFFF


def _truth():
    from moetheory.params import MoEParams

    return MoEParams.create(**TRUTH)


def _data(cfg, n, rep):
    from moetheory.bridge.train import simulate

    return simulate(_truth(), n, design=cfg["design"], low=0.0, high=1.0,
                    seed=_seed(cfg["seed"], "data", n, rep))


def _record_steps(cfg):
    return sorted({int(round(s)) for s in np.linspace(0, cfg["steps"], cfg["n_record"])})


def _summary(params, truth):
    """Final loss and per-parameter errors of a fitted MoEParams."""
    from moetheory.losses import matched_errors, voronoi_loss

    if not all(np.all(np.isfinite(np.asarray(v))) for v in params):
        return {"loss": float("nan"), "errors": {}, "failed": True}
    e = matched_errors(params, truth, coords="identified")
    return {"loss": float(voronoi_loss(params, truth, coords="identified")), "failed": False,
            "errors": {f: float(np.max(np.asarray(getattr(e, f)))) for f in ("beta0", "beta1", "a", "b", "var")}}


# ------------------------------------------------------------------------------------------ cells


def _curve_cell(cfg, gate, rep):
    from moetheory.bridge.torch import DenseToSparseSchedule, GaussianMoE
    from moetheory.bridge.train import random_init, train_layer

    router, layer_opts, train_opts = GATES[gate]
    n = cfg["n_curve"]
    x, y = _data(cfg, n, rep)
    opts = dict(layer_opts)
    if router == "dense_to_sparse":
        opts["schedule"] = DenseToSparseSchedule(anneal_steps=max(1, int(cfg["anneal_frac"] * cfg["steps"])))
    layer = GaussianMoE(cfg["k"], 1, router, **opts)
    random_init(layer, x, y, seed=_seed(cfg["seed"], "init", n, rep))
    res = train_layer(layer, x, y, steps=cfg["steps"], lr=cfg["lr"], truth=_truth(),
                      record_at=_record_steps(cfg), seed=_seed(cfg["seed"], "train", n, rep), **train_opts)
    keep = ("step", "loss", "nll", "errors", "utilisation", "dispatch", "entropy", "dead_fraction",
            "tau", "hard", "exact_gate")
    return {"kind": "curve", "gate": gate, "router": router, "rep": rep, "n": n, "failed": res.failed,
            "wall_s": res.wall_s, "records": [{k: r.get(k) for k in keep} for r in res.records],
            "final_params": res.params.to_dict()}


def _vs_n_cell(cfg, n, rep):
    import jax
    import torch

    from moetheory._jax import ensure_x64
    from moetheory.bridge.torch import GaussianMoE, to_torch
    from moetheory.bridge.train import random_init, routing_stats, train_layer
    from moetheory.em.config import EMConfig
    from moetheory.em.pipeline import run_pipeline
    from moetheory.em.starts import draw_starts
    from moetheory.spec import MoESpec

    ensure_x64()
    truth = _truth()
    spec = MoESpec(cfg["k"], 1)
    x, y = _data(cfg, n, rep)
    # the certified MLE of the estimator pipeline from one paper start; Adam starts there too
    key = jax.random.key(_seed(cfg["seed"], "start", n, rep))
    est = EMConfig(init="paper", tol=cfg["em_tol"], max_iter=cfg["em_max_iter"])
    start = jax.tree.map(lambda v: np.asarray(v[0], dtype=np.float64), draw_starts(
        key, spec, x, y, ("paper",), truth=truth, n_obs=n))
    out = {"kind": "vs_n", "n": n, "rep": rep}
    t0 = time.perf_counter()
    em = run_pipeline(key, spec, x, y, est, truth=truth, n_obs=n)
    out["em"] = {**_summary(em.params, truth), "n_iter": int(em.n_iter),
                 "converged": bool(em.certificate.certified), "loglik": float(em.loglik),
                 "wall_s": time.perf_counter() - t0}
    for name, layer in (("adam_paper", to_torch(spec, start)),
                        ("adam_random", random_init(GaussianMoE(cfg["k"], 1), x, y,
                                                    seed=_seed(cfg["seed"], "init", n, rep)))):
        res = train_layer(layer, x, y, steps=cfg["steps"], lr=cfg["lr"], record_at=[cfg["steps"]],
                          seed=_seed(cfg["seed"], "train", n, rep))
        with torch.no_grad():
            ll = -float(layer.nll(x, y))
        out[name] = {**_summary(res.params, truth), "loglik": ll, "wall_s": res.wall_s,
                     "train_failed": res.failed, **routing_stats(layer, x)}
    return out


# ------------------------------------------------------------------------------------------ runner


def _aggregate(cfg, cells):
    steps = _record_steps(cfg)
    curves = {}
    for gate in cfg["gates"]:
        runs = [c for c in cells if c["kind"] == "curve" and c["gate"] == gate]
        runs.sort(key=lambda c: c["rep"])
        loss = np.full((len(runs), len(steps)), np.nan)
        nll = np.full_like(loss, np.nan)
        dead = np.full_like(loss, np.nan)
        for i, c in enumerate(runs):
            for r in c["records"]:
                if r["step"] in steps:
                    j = steps.index(r["step"])
                    for mat, key in ((loss, "loss"), (nll, "nll"), (dead, "dead_fraction")):
                        if r.get(key) is not None:
                            mat[i, j] = r[key]
        last = [c["records"][-1] for c in runs if c["records"]]
        curves[gate] = {
            "router": GATES[gate][0], "steps": steps, "loss": loss.tolist(),
            "loss_mean": np.nanmean(loss, 0).tolist() if runs else [],
            "nll": nll.tolist(), "nll_mean": np.nanmean(nll, 0).tolist() if runs else [],
            "dead_fraction_mean": np.nanmean(dead, 0).tolist() if runs else [],
            "final": {"loss": [r.get("loss") for r in last], "nll": [r.get("nll") for r in last],
                      "dead_fraction": [r.get("dead_fraction") for r in last],
                      "entropy": [r.get("entropy") for r in last],
                      "utilisation": [r.get("utilisation") for r in last]},
            "tau": [r.get("tau") for r in runs[0]["records"]] if runs else [],
            "hard": [r.get("hard") for r in runs[0]["records"]] if runs else [],
        }
    methods = ("em", "adam_paper", "adam_random")
    vs_n = {"n": cfg["n_grid"]}
    for m in methods:
        mat = np.full((len(cfg["n_grid"]), cfg["reps"]), np.nan)
        errs = {}
        for c in cells:
            if c["kind"] != "vs_n":
                continue
            i = cfg["n_grid"].index(c["n"])
            mat[i, c["rep"]] = c[m]["loss"]
            for f, v in c[m]["errors"].items():
                errs.setdefault(f, np.full_like(mat, np.nan))[i, c["rep"]] = v
        vs_n[m] = {"loss": mat.tolist(), "loss_mean": np.nanmean(mat, 1).tolist(),
                   "errors_mean": {f: np.nanmean(v, 1).tolist() for f, v in errs.items()},
                   "failures": int(np.sum(~np.isfinite(mat)))}
    return curves, vs_n


def run_neural_experiment(preset: str = "quick", out_dir="results/neural", progress: bool = True,
                          **overrides) -> dict:
    """Run (or resume) the ``neural`` study and write ``out_dir/results.json``.

    Parameters
    ----------
    preset : {"quick", "full"}
    out_dir : path
    progress : bool, print one line per cell with an ETA (to stderr)
    **overrides : replace preset entries (e.g. ``reps=2``); they change the cache hash

    Returns
    -------
    dict, the content of ``results.json``
    """
    from moetheory.study.claims import shared
    from moetheory.study.store import json_bytes

    cfg = _config(preset, overrides)
    store = _store(preset, cfg, out_dir)
    keys = _cell_keys(cfg)
    store.reconcile(keys, recovered_entry=lambda cell: {})  # damaged cells: named, set aside
    todo = [k for k in keys if store.state(k) != "done"]
    t_start, done_now = time.perf_counter(), 0
    with closing(shared(todo, done=lambda k: store.state(k) == "done", claim=store.claim)) as work:
        for slug in work:  # each cell once, however many processes run the study
            t0 = time.perf_counter()
            kind, a, rep = keys[slug]
            cell = _curve_cell(cfg, a, rep) if kind == "curve" else _vs_n_cell(cfg, a, rep)
            cell["cell_wall_s"] = time.perf_counter() - t0
            cell["hash"] = store.header["hash"]
            store.write(slug, json_bytes(cell), {
                "wall_s": cell["cell_wall_s"], "pid": os.getpid(), "host": platform.node(),
                "completed_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())})
            done_now += 1
            if progress:
                el = time.perf_counter() - t_start
                print(f"[neural {preset}] cell {slug}: {cell['cell_wall_s']:.1f}s, "
                      f"{len(todo) - done_now} to go, ETA {el / done_now * (len(todo) - done_now):.0f}s",
                      file=sys.stderr, flush=True)
    cells = [store.read(k) for k in keys]
    chash = store.header["hash"]
    curves, vs_n = _aggregate(cfg, cells)
    import torch

    import moetheory
    result = {"study": "neural", "preset": preset, "hash": chash, "config": cfg, "truth": TRUTH,
              "curves": curves, "vs_n": vs_n,
              "wall_time_s": time.perf_counter() - t_start,
              "cell_wall_s_total": float(sum(c.get("cell_wall_s", 0.0) for c in cells)),
              "versions": {"moetheory": moetheory.__version__, "torch": torch.__version__}}
    from moetheory.study.store import write_json_atomic

    write_json_atomic(Path(out_dir) / "results.json", result)
    return result


def _config(preset, overrides) -> dict:
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}; got {preset!r}")
    cfg = dict(PRESETS[preset])
    for key, value in overrides.items():
        if key not in cfg:
            raise ValueError(f"unknown override {key!r}; valid: {sorted(cfg)}")
        cfg[key] = value
    unknown = [g for g in cfg["gates"] if g not in GATES]
    if unknown:
        raise ValueError(f"unknown gates {unknown}; valid: {list(GATES)}")
    return cfg


def _cell_keys(cfg) -> dict:
    """``{cell key (its file stem): (kind, gate or n, replicate)}`` in run order."""
    keys = {f"curve-{_slug(g)}-r{r}": ("curve", g, r)
            for g in cfg["gates"] for r in range(cfg["curve_reps"])}
    keys.update({f"vs_n-n{n}-r{r}": ("vs_n", n, r) for n in cfg["n_grid"] for r in range(cfg["reps"])})
    return keys


def _store(preset, cfg, out_dir):
    """The cell store of configuration ``cfg`` under ``out_dir`` (one JSON file per cell)."""
    from moetheory.study.store import CellStore

    chash = _config_hash(cfg)

    def decode(data: bytes) -> dict:
        cell = json.loads(data)
        if cell.get("hash") != chash:
            raise ValueError("written by another configuration (config hash)")
        return cell

    return CellStore(Path(out_dir) / f"cells-{chash}",
                     {"study": "neural", "preset": preset, "config": cfg, "truth": TRUTH,
                      "hash": chash},
                     decode=decode, filename=lambda key: f"{key}.json")


def cache_status(preset: str = "quick", out_dir="results/neural", **overrides) -> dict:
    """Which cells are cached: ``{"done", "missing", "damaged"}`` lists of cell keys.

    Examples
    --------
    >>> import tempfile
    >>> st = cache_status("quick", tempfile.mkdtemp())
    >>> len(st["missing"]), st["done"], st["damaged"]
    (23, [], [])
    """
    cfg = _config(preset, overrides)
    store = _store(preset, cfg, out_dir)
    states = {k: store.state(k) for k in _cell_keys(cfg)}
    return {s: [k for k, v in states.items() if v == s] for s in ("done", "missing", "damaged")}


#: this study's registration (the ``moetheory.studies`` entry point ``neural``)
REGISTRATION = Entry("neural", "PyTorch MoE layers trained by Adam vs the certified MLE (needs "
                     "the torch extra)", run=run_neural_experiment, status=cache_status,
                     presets=tuple(sorted(PRESETS)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m simulations.neural",
                                 description="Neural (PyTorch, Adam) MoE training vs EM on the softmax truth.")
    ap.add_argument("--preset", choices=sorted(PRESETS), default="quick")
    ap.add_argument("--out", default="results/neural", help="output folder")
    ap.add_argument("--quiet", action="store_true", help="no progress output")
    args = ap.parse_args(argv)
    from moetheory.study.cli import interruptible

    def go():
        res = run_neural_experiment(args.preset, args.out, progress=not args.quiet)
        summary = {
            "final_loss_by_gate": {g: float(np.nanmean([v for v in c["final"]["loss"] if v is not None]))
                                   for g, c in res["curves"].items()},
            "loss_vs_n": {m: dict(zip(res["vs_n"]["n"], res["vs_n"][m]["loss_mean"]))
                          for m in ("em", "adam_paper", "adam_random")},
            "wall_time_s": round(res["wall_time_s"], 1),
        }
        print(json.dumps(summary, indent=1))
        return 0

    return interruptible(go)


if __name__ == "__main__":
    raise SystemExit(main())
