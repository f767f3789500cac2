"""Per-cell progress with a compile phase and an ETA (tqdm on stderr), silenceable.

The bar counts cells. Two things made the raw tqdm ETA useless (an ETA of hours for a
two-minute job): the first cell carried the minute of Numba compilation after an install, and
the cells' cost is not proportional to their observations (per-replicate work — starts, polish,
certificate — dominates small cells). So

* the kernels are compiled first, in a phase the bar names as such (:meth:`CellProgress.compile`),
  and its clock starts after it;
* the ETA (:meth:`CellProgress.eta`) sums the predicted times of the cells left, each its cost
  ``replicates × starts × (n·k + N0)`` (:data:`OVERHEAD_OBS` = N0) times the seconds per unit of
  cost of the finished cells most like it: those of its own fitted model, else those of its
  estimator, else all. A model's first cell also pays its JAX compilations, so it counts only
  while the model has no other finished cell;
* an over-fitted model (k > k*) fitted to a tight tolerance (``stop_rule="mean"``, the certified
  MLE) runs EM for thousands of iterations along its flat directions, so until its own first
  cell ends it would borrow a rate several times too small: its cost carries a factor
  :data:`OVERFIT_COST` per extra expert. Measured on the full softmax preset (cell wall time
  over cost, median over each model's cells, 2 cores): k = 2 (exact) 1.54 µs, k = 3 5.14 µs
  (3.3×), k = 4 11.2 µs (7.3×); the official protocol's relative stopping rule, which stops
  over-fitted EM early, 0.83 and 1.11 µs (no factor). On the quick preset the same ratios are
  about 2.5× and 4.5× (per-cell overhead weighs more at its sizes); the factor, 2.5, keeps both
  presets within 2×;
* no ETA is shown until a cell other than its model's first has finished: until then every
  rate carries JAX compilations (the first cell of the quick softmax preset predicted 14× the
  time left).

``benchmarks/first_fit.py`` measures the ETA against the time that was actually left.
"""
from __future__ import annotations

import sys
import time

#: per-replicate work of one start in observation-equivalents (the N0 of the cost model)
OVERHEAD_OBS = 20_000
#: cost factor per extra expert of an over-fitted model fitted with ``stop_rule="mean"``
#: (module docstring: 3.3× and 7.3× for one and two measured on the full preset, 2.5× and 4.5×
#: on the quick one)
OVERFIT_COST = 2.5


def _clock(seconds) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class CellProgress:
    """Context manager: ``with CellProgress(study, todo, enabled) as bar: ... bar.done(...)``.

    ``compile(fn, what)`` runs the compile phase ``fn()`` with the bar labelled by it;
    ``done(label, n, arrays, wall_s)`` advances the bar after a cell; ``arrays["failed"]`` (shape
    (replicates,), bool) gives the failure count shown. ``skip((label, n))`` advances it past a
    cell that another process computed. ``history`` holds, after each computed cell,
    ``(seconds since the compile phase ended, ETA in seconds or None)``, also when disabled.

    Parameters
    ----------
    study : StudySpec
    todo : list of (fit label, n)
        The cells to be computed.
    enabled : bool
        False (or an empty ``todo``) shows nothing.
    desc : str, optional
        Bar label (default: the study name).

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.spec import FitSpec, StudySpec
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> study = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth,
    ...                   fits=(FitSpec("k2", MoESpec(2, 1), sizes=(100, 200, 400)),),
    ...                   replicates=2)
    >>> import numpy as np
    >>> bar = CellProgress(study, study.cells(), enabled=False)
    >>> bar.done("k2", 100, {"failed": np.zeros(2, bool)}, wall_s=0.5)
    >>> bar.eta() is None                  # the model's first cell: mostly its compilation
    True
    >>> bar.done("k2", 200, {"failed": np.zeros(2, bool)}, wall_s=0.3)
    >>> round(bar.eta(), 3)     # 0.3 s × cost(400) / cost(200), cost(n) = 2 reps × (n·2 + N0)
    0.306
    """

    def __init__(self, study, todo, enabled=True, desc=None):
        self.enabled = bool(enabled) and len(todo) > 0
        self.study = study
        self.bar = None
        self.desc = desc or f"{study.name}"
        self.todo = list(todo)
        self.left = list(self.todo)
        self.finished = []  # (label, estimator, cost, wall_s, first of its label)
        self.history = []
        self.t0 = time.perf_counter()

    def cost(self, label, n) -> float:
        """The cost model: replicates × starts × (n·k + :data:`OVERHEAD_OBS`), times
        :data:`OVERFIT_COST` per extra expert under a tight stopping rule."""
        fit = self.study.fit(label)
        extra = max(0, fit.spec.n_experts - self.study.truth_spec.n_experts)
        slow = OVERFIT_COST ** extra if self.study.estimator_of(label).stop_rule == "mean" else 1.0
        return (self.study.replicates_of(label) * fit.n_starts
                * (int(n) * fit.spec.n_experts + OVERHEAD_OBS) * slow)

    def _estimator(self, label):
        return repr(self.study.estimator_of(label))

    def eta(self):
        """Predicted seconds for the cells left (0 when none is left; None until a cell that
        is not its model's first has finished)."""
        if not self.finished:
            return None
        if self.left and all(f[4] for f in self.finished):
            return None  # only first cells so far: their times are mostly compilation
        total = 0.0
        for label, n in self.left:
            est = self._estimator(label)
            for like in (lambda f: f[0] == label and not f[4], lambda f: f[1] == est and not f[4],
                         lambda f: not f[4], lambda f: f[0] == label, lambda f: f[1] == est,
                         lambda f: True):
                pool = [f for f in self.finished if like(f)]
                if pool:
                    break
            total += self.cost(label, n) * sum(f[3] for f in pool) / sum(f[2] for f in pool)
        return total

    def __enter__(self):
        if self.enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=len(self.todo), desc=f"{self.desc}", unit="cell",
                            file=sys.stderr, dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} cells [{elapsed}] "
                                       "{postfix}")
        return self

    def compile(self, fn, what="the Numba kernels"):
        """Run ``fn()`` as the compile phase, shown as such; the bar's clock starts after it."""
        if self.bar is not None:
            self.bar.set_description_str(f"{self.desc}: compiling {what} (about a minute after "
                                         "an install, then cached)")
            self.bar.refresh()
        t = time.perf_counter()
        out = fn()
        took = time.perf_counter() - t
        self.t0 = time.perf_counter()
        if self.bar is not None:
            self.bar.set_description_str(self.desc)
            self.bar.set_postfix_str(f"compiled {what} in {took:.1f}s", refresh=False)
            self.bar.reset()
        return out

    def _advance(self, label, n, text):
        if (label, n) in self.left:
            self.left.remove((label, n))
        eta = self.eta()
        self.history.append((time.perf_counter() - self.t0, eta))
        if self.bar is not None:
            head = "ETA ?" if eta is None else f"ETA {_clock(eta)}"
            self.bar.set_postfix_str(f"{head} | {text}", refresh=False)
            self.bar.update(1)

    def done(self, label, n, arrays, wall_s):
        first = not any(f[0] == label for f in self.finished)
        self.finished.append((label, self._estimator(label), self.cost(label, n), float(wall_s),
                              first))
        failed = int(arrays["failed"].sum()) if "failed" in arrays else 0
        self._advance(label, n, f"{label} n={n} {wall_s:.1f}s failed={failed}")

    def skip(self, cell):
        """Advance past a cell ``(label, n)`` that another process computed."""
        label, n = cell
        self._advance(label, n, f"{label} n={n} done by another process")
        self.history.pop()

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False
