"""The study cache: one atomically written ``.npz`` per completed cell plus a JSON manifest.

Layout under the cache root (``$MOETHEORY_CACHE`` or ``./.moetheory-cache``)::

    <root>/<study name>/<fit label>-<panel hash[:16]>/
        n=0000001000.npz      one completed cell (all replicates), numeric/bool/str arrays only
        manifest.json         the study spec, spec and panel hashes, and per cell its sha256,
                              the package versions, git revision, device, x64, pid and wall
                              time of the run that computed it
        .lock                 the panel's lock file (held for milliseconds by writers)
        n=...npz.claim        while a process computes that cell (pid, host, start time)
    <root>/attention-<preset>/, <root>/neural-<preset>/
        the attention and neural studies: JSON cells in the same kind of panel
        (moetheory.attention.experiment, simulations/neural.py)

The panels are :class:`~moetheory.study.store.CellStore` objects, so every study shares one hash
scheme, one atomic writer, the per-cell checksums and the claims:

* A cell's directory is named by the hash of everything that determines its numbers
  (:meth:`StudySpec.panel_hash`), and each npz also stores that hash and is checked on load, so
  a changed spec never reuses a stale cell.
* Writes are atomic (temporary file, then ``os.replace``); a re-run skips every completed cell.
* A cell that fails its sha256 or does not decode is *damaged*: ``study status`` lists it, and
  the next run names it in a warning, moves it aside (``<file>.damaged-<time>``) and recomputes it.
  A cell without a recorded checksum (caches written before checksums, or a cell whose manifest
  entry was lost to a kill) is used when every array decodes, and the next run records its
  checksum (and, for a cell the manifest lacks, marks it ``recovered``).
* An unreadable manifest is set aside as ``manifest.json.corrupt-<time>`` (with a warning) and
  rebuilt from the cells.
* Processes running the same study on one cache share the work through claim files
  (:mod:`moetheory.study.claims`): each cell is computed once.
* No pickle anywhere: ``np.savez`` of non-object arrays, read with ``allow_pickle=False``; JSON.
  Nothing in a results cache is executed. JAX's compilation cache (native code) lives elsewhere:
  :func:`default_compile_cache_dir`.
"""
from __future__ import annotations

import io
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np

from moetheory.study.spec import StudySpec
from moetheory.study.store import CellStore

_HASH_KEY = "__panel_hash__"


def default_cache_dir() -> Path:
    """The cache root: ``$MOETHEORY_CACHE`` if set, else ``./.moetheory-cache``.

    Examples
    --------
    >>> import os
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"MOETHEORY_CACHE": "/tmp/mt-cache"}):
    ...     print(default_cache_dir())
    /tmp/mt-cache
    """
    return Path(os.environ.get("MOETHEORY_CACHE") or ".moetheory-cache")


def default_compile_cache_dir() -> Path | None:
    """JAX's persistent compilation cache: ``$MOETHEORY_COMPILE_CACHE``, else
    ``$XDG_CACHE_HOME/moetheory/jax-compile`` (``~/.cache/...``); None when the variable is ``off``.

    It holds native code that later runs execute, so it is per user and never inside a results
    cache that others may write to.

    Examples
    --------
    >>> import os
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"XDG_CACHE_HOME": "/home/me/.cache",
    ...                                   "MOETHEORY_COMPILE_CACHE": ""}):   # "" = unset
    ...     print(default_compile_cache_dir())
    /home/me/.cache/moetheory/jax-compile
    >>> with mock.patch.dict(os.environ, {"MOETHEORY_COMPILE_CACHE": "off"}):
    ...     print(default_compile_cache_dir())
    None
    """
    path = os.environ.get("MOETHEORY_COMPILE_CACHE")
    if path == "off":
        return None
    if path:
        return Path(path).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "moetheory" / "jax-compile"


def _git_revision():
    here = Path(__file__).resolve().parents[2]
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
        rev = out.stdout.strip() if out.returncode == 0 else None
        if rev:
            dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--", "moetheory"],
                                   capture_output=True, text=True, timeout=5).stdout.strip()
            return rev + ("-dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    return None


_PROVENANCE = None


def provenance() -> dict:
    """Package versions, git revision, device and x64 flag of this process (computed once).

    Examples
    --------
    >>> info = provenance()
    >>> sorted(info)
    ['device', 'git_revision', 'host', 'platform', 'versions', 'x64']
    >>> "jax" in info["versions"]
    True
    """
    global _PROVENANCE
    if _PROVENANCE is None:
        import jax

        from moetheory import __version__

        versions = {"moetheory": __version__, "python": platform.python_version()}
        for mod in ("jax", "jaxlib", "numpy", "scipy", "numba"):
            try:
                versions[mod] = __import__(mod).__version__
            except Exception:  # pragma: no cover
                versions[mod] = None
        dev = jax.devices()[0]
        _PROVENANCE = {"versions": versions, "git_revision": _git_revision(),
                       "platform": platform.platform(), "host": platform.node(),
                       "device": f"{dev.platform}:{getattr(dev, 'device_kind', '')}",
                       "x64": bool(jax.config.jax_enable_x64)}
    return dict(_PROVENANCE)


class StudyCache:
    """Read/write access to the cells of studies under one cache root.

    A cell is a dict of arrays with a leading replicate axis, shape (R, ...) (R = the fit's
    replicates); it must contain ``replicate`` of shape (R,).

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.spec import FitSpec, StudySpec
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> study = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth,
    ...                   fits=(FitSpec("k2", MoESpec(2, 1), sizes=(100, 200)),), replicates=2)
    >>> import tempfile
    >>> import numpy as np
    >>> cache = StudyCache(tempfile.mkdtemp())
    >>> arrays = {"n": np.full(2, 100), "replicate": np.arange(2), "failed": np.zeros(2, bool),
    ...           "loss_voronoi": np.array([0.25, 0.5])}   # each shape (replicates,)
    >>> _ = cache.write_cell(study, "k2", 100, arrays)
    >>> cache.has_cell(study, "k2", 100), cache.has_cell(study, "k2", 200)
    (True, False)
    >>> cache.read_cell(study, "k2", 100)["loss_voronoi"].tolist()
    [0.25, 0.5]
    >>> cache.status(study)
    {'k2': {'done': [100], 'missing': [200], 'damaged': []}}
    """

    def __init__(self, root=None):
        self.root = Path(root) if root is not None else default_cache_dir()
        self._stores = {}

    # ------------------------------------------------------------------ paths
    def panel_dir(self, study: StudySpec, label: str) -> Path:
        return self.root / study.name / f"{label}-{study.panel_hash(label)[:16]}"

    def cell_path(self, study: StudySpec, label: str, n: int) -> Path:
        return self.panel_dir(study, label) / _cell_name(n)

    def manifest_path(self, study: StudySpec, label: str) -> Path:
        return self.panel_dir(study, label) / "manifest.json"

    def store(self, study: StudySpec, label: str) -> CellStore:
        """The :class:`~moetheory.study.store.CellStore` of the panel (fit ``label`` of ``study``)."""
        panel_hash = study.panel_hash(label)
        key = (study.hash(), label)
        store = self._stores.get(key)
        if store is None:
            reps = study.replicates_of(label)
            header = {"study": study.name, "fit": label, "panel_hash": panel_hash,
                      "panel_spec": study.panel_dict(label), "study_spec": study.to_dict(),
                      "spec_hash": study.hash()}
            store = self._stores[key] = CellStore(
                self.panel_dir(study, label), header,
                decode=lambda data: _decode_cell(data, panel_hash, reps),
                filename=lambda key: _cell_name(int(key)))
        return store

    # ------------------------------------------------------------------ cells
    def cell_state(self, study: StudySpec, label: str, n: int) -> str:
        """``"done"`` (verified), ``"missing"`` or ``"damaged"`` (see :mod:`moetheory.study.store`)."""
        return self.store(study, label).state(str(int(n)))

    def has_cell(self, study: StudySpec, label: str, n: int) -> bool:
        return self.cell_state(study, label, n) == "done"

    def earlier_store(self, study: StudySpec, label: str, metrics_version: int) -> CellStore:
        """The (read-only use) store of fit ``label``'s cells written under an earlier metrics
        version: same study, same fits, other loss code (:func:`moetheory.study.runner.rescore_study`)."""
        panel_hash = study.panel_hash(label, metrics_version)
        reps = study.replicates_of(label)
        return CellStore(self.root / study.name / f"{label}-{panel_hash[:16]}", {},
                         decode=lambda data: _decode_cell(data, panel_hash, reps),
                         filename=lambda key: _cell_name(int(key)))

    def write_cell(self, study: StudySpec, label: str, n: int, arrays: dict, wall_s=None,
                   note: dict | None = None) -> Path:
        for key, v in arrays.items():
            if np.asarray(v).dtype.kind == "O":
                raise TypeError(f"cell array {key!r} has object dtype; the cache stores no pickles")
        payload = {k: np.asarray(v) for k, v in arrays.items()}
        payload[_HASH_KEY] = np.array(study.panel_hash(label))
        buf = io.BytesIO()
        np.savez(buf, **payload)
        entry = _entry(arrays, wall_s)
        entry["provenance"] = provenance()
        entry.update(note or {})
        return self.store(study, label).write(str(int(n)), buf.getvalue(), entry)

    def read_cell(self, study: StudySpec, label: str, n: int) -> dict:
        """The cell's arrays (shape (replicates, ...)); :class:`~moetheory.study.store.DamagedCellError`
        naming the file if it fails its checksum or does not decode."""
        return self.store(study, label).read(str(int(n)))

    def claim(self, study: StudySpec, label: str, n: int):
        """The :class:`~moetheory.study.claims.Claim` of a cell (see :meth:`share`)."""
        return self.store(study, label).claim(str(int(n)))

    def share(self, study: StudySpec, todo, on_other=None):
        """The cells of ``todo`` this process is to compute, each yielded while it holds the
        cell's claim: cells being computed by another process on this cache are left to it
        (:func:`moetheory.study.claims.shared`). Use it under ``contextlib.closing``."""
        from moetheory.study.claims import shared

        return shared(todo, done=lambda cell: self.has_cell(study, *cell),
                      claim=lambda cell: self.claim(study, *cell), on_other=on_other)

    # ------------------------------------------------------------------ manifest
    def read_manifest(self, study: StudySpec, label: str, repair: bool = False) -> dict:
        """The panel's manifest ({} if there is none yet, or it is unreadable: with ``repair``,
        as the writers call it, the unreadable file is first set aside; a plain read changes
        nothing on disk)."""
        return self.store(study, label).manifest(repair)

    def reconcile(self, study: StudySpec, damaged: list | None = None) -> list:
        """Check every cell of ``study`` on disk: damaged cells are set aside with a warning naming
        them (and appended to ``damaged`` as (label, n)); cells the manifest lacks (a run killed
        between writing a cell and its manifest entry) are entered as ``recovered``, and readable
        cells without a checksum (older caches) get theirs. Returns the (label, n) pairs entered."""
        added = []
        for f in study.fits:
            new, bad = self.store(study, f.label).reconcile(
                [str(n) for n in f.sizes], lambda arrays: {**_entry(arrays, None), "provenance": None})
            added += [(f.label, int(n)) for n in new]
            if damaged is not None:
                damaged += [(f.label, int(n)) for n in bad]
        return added

    # ------------------------------------------------------------------ status / results
    def status(self, study: StudySpec) -> dict:
        """``{fit label: {"done": [...], "missing": [...], "damaged": [...]}}`` (damaged: on disk
        but failing its checksum or unreadable; the next run sets it aside and recomputes it)."""
        out = {}
        for f in study.fits:
            states = {n: self.cell_state(study, f.label, n) for n in f.sizes}
            out[f.label] = {s: [n for n in f.sizes if states[n] == s]
                            for s in ("done", "missing", "damaged")}
        return out

    def load_results(self, study: StudySpec, fits=None, allow_missing: bool = True):
        """Tidy pandas DataFrame: one row per fit × n × replicate.

        Scalar per-replicate quantities are columns; per-expert arrays become ``name_j``
        columns (e.g. ``cell_beta1_0``, ``fit_beta1_2_0``). Missing cells are skipped (or raise
        with ``allow_missing=False``).
        """
        import pandas as pd

        frames = []
        for f in study.fits:
            if fits is not None and f.label not in fits:
                continue
            for n in f.sizes:
                state, arrays = self.store(study, f.label).check(str(n))
                if state == "damaged" and not allow_missing:
                    self.read_cell(study, f.label, n)  # raises, naming the file
                if state != "done":
                    if not allow_missing:
                        raise FileNotFoundError(f"cell {f.label} n={n} of study {study.name!r} "
                                                f"is not in the cache {self.root}")
                    continue
                frames.append(_frame(arrays, study.name, f.label))
        if not frames:
            return pd.DataFrame(columns=["study", "fit", "n", "replicate", "failed", "converged"])
        return pd.concat(frames, ignore_index=True)


def _cell_name(n) -> str:
    return f"n={int(n):010d}.npz"


def _decode_cell(data: bytes, panel_hash: str, replicates: int) -> dict:
    """Every array of an npz cell (reading each checks its CRC-32), after the panel hash and the
    replicate count."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    if str(arrays.pop(_HASH_KEY, None)) != panel_hash:
        raise ValueError("written by a different study spec (panel hash)")
    if arrays["replicate"].shape[0] != replicates:
        raise ValueError(f"holds {arrays['replicate'].shape[0]} replicates, not {replicates}")
    return arrays


def _entry(arrays, wall_s) -> dict:
    """The manifest entry of a cell, less its file, checksum and provenance."""
    failed = int(np.asarray(arrays.get("failed", np.zeros(0, bool))).sum())
    return {"wall_s": wall_s, "completed_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "replicates": int(np.asarray(arrays["replicate"]).shape[0]), "n_failed": failed,
            "n_pad": int(np.asarray(arrays["n_pad"])[0]) if "n_pad" in arrays else None,
            "pid": os.getpid()}


def _frame(arrays: dict, study_name: str, label: str):
    import pandas as pd

    R = arrays["replicate"].shape[0]
    cols = {"study": [study_name] * R, "fit": [label] * R}
    for key in ("n", "replicate"):
        cols[key] = arrays[key]
    for key in sorted(arrays):
        if key in cols:
            continue
        v = arrays[key]
        if v.ndim == 1:
            cols[key] = v
        else:
            flat = v.reshape(R, -1)
            for idx in np.ndindex(*v.shape[1:]):
                j = np.ravel_multi_index(idx, v.shape[1:])
                cols[f"{key}_{'_'.join(map(str, idx))}"] = flat[:, j]
    return pd.DataFrame(cols)


def load_results(study: StudySpec, cache_dir=None, **kw):
    """Results of ``study`` from the cache as a DataFrame (see :meth:`StudyCache.load_results`).

    Parameters
    ----------
    study : StudySpec
    cache_dir : path, optional
        Cache root (default :func:`default_cache_dir`).
    **kw
        ``fits`` and ``allow_missing``, as in :meth:`StudyCache.load_results`.

    Returns
    -------
    pandas.DataFrame
        One row per fit × n × replicate (shape (rows, columns)); missing cells are skipped.

    Examples
    --------
    >>> from moetheory.params import MoEParams
    >>> from moetheory.spec import MoESpec
    >>> from moetheory.study.spec import FitSpec, StudySpec
    >>> truth = MoEParams.create([0., 0.], [[1.], [-1.]], [[1.], [-1.]], [0., 1.], [1., 1.])
    >>> study = StudySpec(name="tiny", truth_spec=MoESpec(2, 1), truth=truth,
    ...                   fits=(FitSpec("k2", MoESpec(2, 1), sizes=(100, 200)),), replicates=2)
    >>> import tempfile
    >>> import numpy as np
    >>> cache = StudyCache(tempfile.mkdtemp())
    >>> arrays = {"n": np.full(2, 100), "replicate": np.arange(2), "failed": np.zeros(2, bool),
    ...           "loss_voronoi": np.array([0.25, 0.5])}   # each shape (replicates,)
    >>> _ = cache.write_cell(study, "k2", 100, arrays)
    >>> df = load_results(study, cache.root)
    >>> df[["fit", "n", "replicate", "loss_voronoi"]].values.tolist()
    [['k2', 100, 0, 0.25], ['k2', 100, 1, 0.5]]
    """
    return StudyCache(cache_dir).load_results(study, **kw)
