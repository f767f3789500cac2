"""Registry of the studies: studies and their figures register themselves.

A study registers itself through the ``moetheory.studies`` entry-point group and its figure
through ``moetheory.figures`` (``pyproject.toml``; any installed package may add its own), so
the library never imports the declaration modules (``simulations/``) or the figure scripts
(``paper_figures/``): it finds them by name at run time.

=============  ========================  ============================  =========================
name           declaration               figure                        what
=============  ========================  ============================  =========================
softmax        simulations.softmax       paper_figures.softmax         softmax gate, k = 2, 3, 4
topk           simulations.topk          paper_figures.topk            top-K sparse gate
temperature    simulations.temperature   paper_figures.temperature     temperature vs activation
sigmoid        simulations.sigmoid       paper_figures.sigmoid         sigmoid vs softmax gating
gaussian-gated simulations.gaussian_...  paper_figures.gaussian_gated  Gaussian-gated MoE
attention      simulations.attention     paper_figures.attention       random-feature attention
neural         simulations.neural        paper_figures.neural          PyTorch layers vs EM
=============  ========================  ============================  =========================

A declaration module's entry point names its :class:`Entry` (``REGISTRATION``): for a study of
:class:`StudySpec` objects, ``studies = {preset: (StudySpec, ...)}``; for a study with its own
runner (attention, neural), ``run(preset, out_dir=..., progress=...)`` and ``status(preset,
out_dir)``. A figure's entry point names ``plot(cache_dir, out_dir, preset) -> list[Path]``
(own-runner studies: ``plot(results_dir, out_dir, name=...)``); figures read the cache only.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable

from moetheory.study.spec import StudySpec

#: every preset name a registered study may declare (``quick`` and ``full`` always; the softmax
#: study adds ``official``, the paper's protocol on the paper's grids)
PRESETS = ("quick", "full", "official")

#: where ``reproduce`` draws figures unless told otherwise (never the tracked docs/figures)
DEFAULT_FIGURES = "results/figures"

#: the entry-point groups studies and figures register in
STUDY_GROUP = "moetheory.studies"
FIGURE_GROUP = "moetheory.figures"


@dataclass(frozen=True)
class Entry:
    """A study's registration (its declaration module exports one as ``REGISTRATION``).

    Attributes
    ----------
    name : str, the study's name (``moetheory study run NAME``)
    description : str, one line for ``moetheory study list``
    studies : dict preset -> tuple of StudySpec, or None for a study with its own runner
    run : callable ``run(preset, out_dir=..., progress=...)`` (own-runner studies only)
    status : callable ``status(preset, out_dir) -> {"done", "missing", "damaged"}`` (ditto)
    presets : tuple of str, the presets of an own-runner study

    Examples
    --------
    >>> e = entry("softmax")
    >>> e.external, sorted(e.studies)
    (False, ['full', 'official', 'quick'])
    """

    name: str
    description: str
    studies: dict | None = None
    run: Callable | None = field(default=None, compare=False)
    status: Callable | None = field(default=None, compare=False)
    presets: tuple = ("quick", "full")

    @property
    def external(self) -> bool:
        """True for a study with its own runner (no StudySpec)."""
        return self.studies is None


def _entry_points(group: str) -> dict:
    from importlib.metadata import entry_points

    return {ep.name: ep for ep in entry_points(group=group)}


def names() -> list:
    """The registered study names (nothing is imported).

    Examples
    --------
    >>> {"softmax", "topk", "temperature", "attention"} <= set(names())
    True
    """
    return sorted(_entry_points(STUDY_GROUP))


@lru_cache(maxsize=None)
def entry(name: str) -> Entry:
    """The registration of study ``name``, loaded from its entry point (ValueError listing the
    known names otherwise, or naming what is missing when it cannot be loaded).

    Examples
    --------
    >>> entry("attention").external
    True
    >>> entry("nope")
    Traceback (most recent call last):
    ...
    ValueError: unknown study 'nope'; choose one of ['attention', 'gaussian-gated', 'neural', 'sigmoid', 'softmax', 'temperature', 'topk']
    """
    eps = _entry_points(STUDY_GROUP)
    if name not in eps:
        raise ValueError(f"unknown study {name!r}; choose one of {sorted(eps)}")
    try:
        reg = eps[name].load()
    except ImportError as err:
        raise ValueError(f"study {name!r} is registered by {eps[name].value!r}, which cannot be "
                         f"imported: {err}") from None
    if not isinstance(reg, Entry) or reg.name != name:
        raise ValueError(f"entry point {name!r} -> {eps[name].value!r} is not the Entry of {name!r}")
    return reg


def available() -> list:
    """Names whose registration can be loaded.

    Examples
    --------
    >>> "softmax" in available()
    True
    """
    out = []
    for name in names():
        try:
            entry(name)
        except ValueError:
            continue
        out.append(name)
    return out


def figure(name: str) -> Callable:
    """The figure function of study ``name`` (its ``moetheory.figures`` entry point).

    Examples
    --------
    >>> figure("softmax").__name__
    'plot'
    """
    eps = _entry_points(FIGURE_GROUP)
    if name not in eps:
        raise ValueError(f"study {name!r} registers no figure; figures: {sorted(eps)}")
    try:
        return eps[name].load()
    except ImportError as err:
        raise ValueError(f"the figure of {name!r} ({eps[name].value!r}) cannot be imported: {err}") from None


def check_preset(preset: str) -> str:
    """Return ``preset`` if it is a known preset, else raise ValueError listing the choices.

    Examples
    --------
    >>> check_preset("full")
    'full'
    >>> check_preset("huge")
    Traceback (most recent call last):
    ...
    ValueError: unknown preset 'huge'; choose one of ['quick', 'full', 'official']
    """
    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {list(PRESETS)}")
    return preset


def studies(name: str, preset: str = "quick") -> tuple:
    """The StudySpecs of study ``name`` under ``preset`` (empty for external studies).

    Examples
    --------
    >>> [s.name for s in studies("softmax", "quick")]
    ['softmax-quick']
    >>> studies("attention")
    ()
    """
    e = entry(name)
    check_preset(preset)
    if e.external:
        return ()
    if preset not in e.studies:
        raise ValueError(f"study {name!r} has no preset {preset!r}; choose one of {list(e.studies)}")
    specs = e.studies[preset]
    return (specs,) if isinstance(specs, StudySpec) else tuple(specs)


def presets(name: str) -> tuple:
    """The presets study ``name`` declares.

    Examples
    --------
    >>> presets("softmax")
    ('quick', 'full', 'official')
    """
    e = entry(name)
    return tuple(e.presets) if e.external else tuple(e.studies)


def _external_dir(name, cache_dir, preset) -> Path:
    from moetheory.study.cache import StudyCache

    return StudyCache(cache_dir).root / f"{name}-{preset}"


def run(name: str, preset: str = "quick", cache_dir=None, *, progress=True, scheduler=None,
        workers=None, fits=None) -> None:
    """Compute whatever is missing of study ``name`` (cached cells are skipped).

    ``fits``: optional fitted-model labels to restrict the run to (e.g. ``["k2"]``).

    Examples
    --------
    >>> run("softmax", "quick", "/tmp/mt-cache", fits=["k2"], progress=False)  # doctest: +SKIP
    >>> status("softmax", "quick", "/tmp/mt-cache")["softmax-quick"]["k2"]["missing"]  # doctest: +SKIP
    []
    """
    from moetheory.study.runner import run_study

    e = entry(name)
    check_preset(preset)
    if e.external:
        if scheduler is not None or workers is not None or fits:
            raise ValueError(f"study {name!r} has its own runner: no Dask, no --fit selection")
        e.run(preset, out_dir=str(_external_dir(name, cache_dir, preset)), progress=progress)
        return
    specs = studies(name, preset)
    if fits:
        labels = sorted({f.label for spec in specs for f in spec.fits})
        unknown = [f for f in fits if f not in labels]
        if unknown:
            raise ValueError(f"unknown fitted model(s) {unknown} for study {name!r}; choose from {labels}")
    for spec in specs:
        sel = None if not fits else [f.label for f in spec.fits if f.label in fits]
        if sel == []:
            continue
        run_study(spec, cache_dir, progress=progress, scheduler=scheduler, workers=workers,
                  fits=sel)


def status(name: str, preset: str = "quick", cache_dir=None) -> dict:
    """``{study spec name: {fit: {"done": [...], "missing": [...], "damaged": [...]}}}``.

    External studies give ``{"<name>-<preset>": {"cells": {"done": ..., "missing": ...,
    "damaged": ...}}}`` (their cells: replicates or training runs).

    Examples
    --------
    >>> import tempfile
    >>> st = status("softmax", "quick", tempfile.mkdtemp())
    >>> st["softmax-quick"]["k2"]["done"], len(st["softmax-quick"]["k2"]["missing"])
    ([], 8)
    >>> status("attention", "quick", tempfile.mkdtemp())["attention-quick"]["cells"]["missing"]
    [0, 1, 2]
    """
    from moetheory.study.cache import StudyCache

    e = entry(name)
    check_preset(preset)
    if e.external:
        return {f"{name}-{preset}": {"cells": e.status(preset, _external_dir(name, cache_dir, preset))}}
    cache = StudyCache(cache_dir)
    return {spec.name: cache.status(spec) for spec in studies(name, preset)}


def draw(name: str, preset: str = "quick", cache_dir=None, out_dir=DEFAULT_FIGURES) -> list:
    """Draw the figure(s) of study ``name`` from the cache (never computes).

    Returns the list of written figure paths.

    Examples
    --------
    >>> draw("softmax", "quick", "/tmp/mt-cache", out_dir="/tmp/figures")  # doctest: +SKIP
    [PosixPath('/tmp/figures/...')]
    """
    e = entry(name)
    check_preset(preset)
    plot = figure(name)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    if e.external:
        return list(plot(str(_external_dir(name, cache_dir, preset)), str(out_dir),
                         name=f"{name}_{preset}"))
    return list(plot(cache_dir, out_dir, preset))


def simulation_main(name: str, argv=None) -> int:
    """``python -m simulations.<name> --preset quick`` (shared by the declaration modules).

    Runs what is missing of study ``name`` (see :func:`run`), prints its rates and returns the
    exit code 0 (130 after Ctrl-C, with one line: :func:`moetheory.study.cli.interruptible`).

    Examples
    --------
    >>> simulation_main("softmax", ["--preset", "quick", "--quiet"])  # doctest: +SKIP
    0
    """
    import argparse

    ap = argparse.ArgumentParser(prog=f"python -m simulations.{name}", description=entry(name).description)
    ap.add_argument("--preset", choices=PRESETS, default="quick")
    ap.add_argument("--cache", default=None, help="cache directory (default $MOETHEORY_CACHE or ./.moetheory-cache)")
    ap.add_argument("--workers", type=int, default=None, help="run on a local Dask cluster of N workers")
    ap.add_argument("--scheduler", default=None, help="run on the Dask scheduler at ADDRESS")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    ap.add_argument("--pinned", action="store_true",
                    help="also print the official code's pinned-gate Voronoi loss rates")
    args = ap.parse_args(argv)
    from moetheory.study.cli import interruptible

    def go():
        run(name, args.preset, args.cache, progress=not args.quiet, scheduler=args.scheduler,
            workers=args.workers)
        print_rates(name, args.preset, args.cache, pinned=args.pinned)
        return 0

    return interruptible(go)


def rate_table(name: str, preset: str = "quick", cache_dir=None) -> list:
    """Fitted slopes of every fitted model's losses (rows of dicts; cache only).

    Fits with fewer than 3 cached sizes are left out (see :func:`study_rate_table`).

    Examples
    --------
    >>> import tempfile
    >>> rate_table("softmax", "quick", tempfile.mkdtemp())   # empty cache: no rows
    []
    """
    return study_rate_table(studies(name, preset), cache_dir)


def study_rate_table(specs, cache_dir=None) -> list:
    """Fitted slopes of every loss of every fitted model of ``specs`` (cache only).

    Each row has ``study``, ``fit``, ``loss``, ``slope``, ``ci``, ``window``, ``points``,
    ``failed``, ``preferred_law`` (the AIC comparison of free-exponent laws, which has almost no
    power), ``law_test`` (the verdict of :func:`moetheory.rates.law_test`, fixed exponents; "n/a"
    when the grid does not allow it) and ``expected``; the slope is
    :func:`moetheory.rates.fit_rate` on the (sizes (m,), losses (m, R)) of
    :func:`moetheory.study.summary.loss_matrix` (m ≥ 3).

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.cache import StudyCache
    >>> from moetheory.study.spec import FitSpec, StudySpec
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> spec = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth, replicates=2,
    ...                  fits=(FitSpec("k2", MoESpec(2, 1), sizes=(100, 400, 1600)),))
    >>> cache = StudyCache(tempfile.mkdtemp())
    >>> for n in (100, 400, 1600):   # fake cells: loss = 2 n^-1/2, arrays of shape (replicates,)
    ...     _ = cache.write_cell(spec, "k2", n, {
    ...         "n": np.full(2, n), "replicate": np.arange(2), "failed": np.zeros(2, bool),
    ...         "converged": np.ones(2, bool), "loss_voronoi": np.full(2, 2 / n ** 0.5)})
    >>> [row] = study_rate_table(spec, cache.root)
    >>> row["fit"], row["loss"], round(row["slope"], 6), row["points"]
    ('k2', 'loss_voronoi', -0.5, 3)
    """
    import numpy as np

    from moetheory.rates import fit_rate, law_test
    from moetheory.study.cache import load_results
    from moetheory.study.summary import loss_matrix

    if isinstance(specs, StudySpec):
        specs = (specs,)
    rows = []
    for spec in specs:
        df = load_results(spec, cache_dir)
        for f in spec.fits:
            for loss in [c for c in (f"loss_{x}" for x in spec.losses)]:
                if df.empty or loss not in df.columns:
                    continue
                sizes, mat = loss_matrix(df, f.label, loss)
                ok = np.isfinite(mat).any(axis=1)
                if ok.sum() < 3:
                    continue
                r = fit_rate(sizes[ok], mat[ok])
                try:
                    verdict = law_test(sizes[ok], mat[ok]).verdict
                except ValueError:  # n <= e, or one replicate per size
                    verdict = "n/a"
                rows.append({"study": spec.name, "fit": f.label, "loss": loss, "slope": r.slope,
                             "ci": r.ci, "window": r.window, "points": r.n_points,
                             "failed": r.n_failed, "preferred_law": r.preferred_law,
                             "law_test": verdict, "expected": f.expected_rate})
    return rows


def print_rates(name, preset="quick", cache_dir=None, file=None, pinned=False) -> None:
    """Print the table of fitted convergence rates of study ``name`` (cache only).

    See :func:`print_study_rates` for the table; ``pinned`` adds the rows of the official code's
    convention (``loss_voronoi_pinned``).

    Examples
    --------
    >>> print_rates("softmax", "quick", "/tmp/mt-cache")  # doctest: +SKIP
    Convergence rates of softmax-quick: mean loss ~ C n^slope (least squares on log-log axes)
    ...
    """
    _print_rows(rate_table(name, preset, cache_dir), studies(name, preset), file, pinned)


def print_study_rates(specs, cache_dir=None, file=None, pinned=False) -> None:
    """Print a titled table of the fitted rates of ``specs``: one row per fitted model and loss.

    Columns: the fit's label and title, the loss, the fitted slope with its 95% CI, the
    theoretical slope, the window of sample sizes, the number of sizes, the replicates excluded
    from the means (failed fits and undefined loss values) and the law AIC prefers; a last line
    explains them. Rows of ``loss_voronoi_pinned`` (the official code's convention, which compares
    gates without removing their unidentifiable shift and explodes for over-fitted models) are
    shown only with ``pinned=True``.

    Parameters
    ----------
    specs : StudySpec or sequence of StudySpec
    cache_dir : path, optional
        Cache root (default :func:`moetheory.study.cache.default_cache_dir`).
    file : writable text file, optional
        Default ``sys.stdout``.
    pinned : bool
        Also print the official-convention (pinned) rows.

    Examples
    --------
    >>> import tempfile
    >>> import numpy as np
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.cache import StudyCache
    >>> from moetheory.study.spec import FitSpec, StudySpec
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> spec = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth, replicates=2,
    ...                  fits=(FitSpec("k2", MoESpec(2, 1), sizes=(100, 400, 1600),
    ...                                expected_rate=-0.5, title="exact-fitted k = 2"),))
    >>> cache = StudyCache(tempfile.mkdtemp())
    >>> for n in (100, 400, 1600):   # fake cells: loss = 2 n^-1/2, arrays of shape (replicates,)
    ...     _ = cache.write_cell(spec, "k2", n, {
    ...         "n": np.full(2, n), "replicate": np.arange(2), "failed": np.zeros(2, bool),
    ...         "converged": np.ones(2, bool), "loss_voronoi": np.full(2, 2 / n ** 0.5)})
    >>> print_study_rates(spec, cache.root)  # doctest: +NORMALIZE_WHITESPACE
    Convergence rates of tiny: mean loss ~ C n^slope (least squares on log-log axes)
    fit  model               loss  slope   95% CI            theory  n range     sizes  excluded  law test
    k2   exact-fitted k = 2  D_1   -0.500  [-0.500, -0.500]  -0.500  100 - 1600  3      0         n^-1/2
    excluded: replicates left out of a size's mean loss (the fit failed: non-finite or variance
    collapse; or its estimate is not certified as a maximum); law test: the fixed-exponent law
    that moetheory.rates.law_test accepts (or undecided).
    """
    _print_rows(study_rate_table(specs, cache_dir), specs, file, pinned)


#: loss column -> how tables name it ({D}: D_1 for an exact fit, D_2 for an over-fitted one)
LOSS_NAMES = {"loss_voronoi_pinned": "{D} pinned", "loss_voronoi_identified": "{D} identified",
              "loss_voronoi_region": "region-aware loss", "loss_gate": "gate-function error",
              "loss_voronoi": "{D}", "loss_hellinger": "Hellinger"}


def _print_rows(rows, specs, file=None, pinned=False) -> None:
    file = file or sys.stdout
    if isinstance(specs, StudySpec):
        specs = (specs,)
    by_name = {spec.name: spec for spec in specs}
    hidden = [r for r in rows if r["loss"] == "loss_voronoi_pinned" and not pinned]
    rows = [r for r in rows if r not in hidden]
    if not rows:
        return
    table = []
    for r in rows:
        spec = by_name.get(r["study"])
        fit = spec.fit(r["fit"]) if spec is not None else None
        exact = fit is not None and fit.spec.n_experts == spec.truth_spec.n_experts
        loss = LOSS_NAMES.get(r["loss"], r["loss"]).format(D="D_1" if exact else "D_2")
        theory = r["expected"] if r["loss"] != "loss_voronoi_pinned" else None
        lo, hi = r["ci"]
        table.append((r["fit"], (fit.title if fit is not None else "") or "", loss,
                      f"{r['slope']:+.3f}", f"[{lo:+.3f}, {hi:+.3f}]",
                      "-" if theory is None else f"{theory:+.3f}",
                      f"{r['window'][0]:g} - {r['window'][1]:g}", str(r["points"]),
                      str(r["failed"]), str(r.get("law_test", "n/a"))))
    head = ("fit", "model", "loss", "slope", "95% CI", "theory", "n range", "sizes", "excluded",
            "law test")
    widths = [max(len(h), *(len(t[i]) for t in table)) for i, h in enumerate(head)]
    names = ", ".join(dict.fromkeys(r["study"] for r in rows))
    print(f"Convergence rates of {names}: mean loss ~ C n^slope (least squares on log-log axes)",
          file=file)
    for line in (head, *table):
        print("  ".join(v.ljust(w) for v, w in zip(line, widths)).rstrip(), file=file)
    print("excluded: replicates left out of a size's mean loss (the fit failed: non-finite or "
          "variance collapse; or its estimate is not certified as a maximum); law test: the "
          "fixed-exponent law that moetheory.rates.law_test accepts (or undecided)"
          + (f"; --pinned adds the official code's pinned-gate D ({len(hidden)} rows)"
             if hidden else "") + ".", file=file)
