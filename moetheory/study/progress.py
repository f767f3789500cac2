"""Per-cell progress with ETA (tqdm on stderr), silenceable.

The bar counts observations × replicates × starts, so the ETA weighs large cells correctly; the
postfix shows the last finished cell, its wall time and its failure count.
"""
from __future__ import annotations

import sys


class CellProgress:
    """Context manager: ``with CellProgress(study, todo, enabled) as bar: ... bar.done(...)``.

    ``done(label, n, arrays, wall_s)`` advances the bar after a cell; ``arrays["failed"]`` (shape
    (replicates,), bool) gives the failure count shown. ``skip((label, n))`` advances it past a
    cell that another process computed.

    Parameters
    ----------
    study : StudySpec
    todo : list of (fit label, n)
        The cells to be computed; the bar's total is Σ n × replicates × starts over them.
    enabled : bool
        False (or an empty ``todo``) makes every call a no-op.
    desc : str, optional
        Bar label (default: the study name).

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.spec import FitSpec, StudySpec
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> study = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth,
    ...                   fits=(FitSpec("k2", MoESpec(2, 1), sizes=(100, 200)),), replicates=2)
    >>> import numpy as np
    >>> with CellProgress(study, study.cells(), enabled=False) as bar:
    ...     bar.done("k2", 100, {"failed": np.zeros(2, bool)}, wall_s=0.5)
    >>> bar.bar is None
    True
    """

    def __init__(self, study, todo, enabled=True, desc=None):
        self.enabled = bool(enabled) and len(todo) > 0
        self.study = study
        self.bar = None
        self.desc = desc or f"{study.name}"
        self.todo = list(todo)

    def _cost(self, label, n):
        return int(n) * self.study.replicates_of(label) * self.study.fit(label).n_starts

    def __enter__(self):
        if self.enabled:
            from tqdm.auto import tqdm

            total = sum(self._cost(lab, n) for lab, n in self.todo)
            self.bar = tqdm(total=total, desc=f"{self.desc} ({len(self.todo)} cells)",
                            unit="obs", unit_scale=True, file=sys.stderr, dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n_fmt}/{total_fmt} obs·rep "
                                       "[{elapsed}<{remaining}] {postfix}")
        return self

    def done(self, label, n, arrays, wall_s):
        if self.bar is None:
            return
        failed = int(arrays["failed"].sum()) if "failed" in arrays else 0
        self.bar.set_postfix_str(f"{label} n={n} {wall_s:.1f}s failed={failed}", refresh=False)
        self.bar.update(self._cost(label, n))

    def skip(self, cell):
        """Advance past a cell ``(label, n)`` that another process computed."""
        if self.bar is None:
            return
        label, n = cell
        self.bar.set_postfix_str(f"{label} n={n} done by another process", refresh=False)
        self.bar.update(self._cost(label, n))

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()
        return False
