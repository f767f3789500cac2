"""The study cache: one atomically written ``.npz`` per completed cell plus a JSON manifest.

Layout under the cache root (``$MOETHEORY_CACHE`` or ``./.moetheory-cache``)::

    <root>/<study name>/<fit label>-<panel hash[:16]>/
        n=0000001000.npz      one completed cell (all replicates), numeric/bool/str arrays only
        manifest.json         provenance: the study spec, spec and panel hashes, and per cell
                              the package versions, git revision, device, x64 and wall time
                              of the run that computed it

* A cell's directory is named by the hash of everything that determines its numbers
  (:meth:`StudySpec.panel_hash`), and each npz also stores that hash and is checked on load, so
  a changed spec never reuses a stale cell.
* Writes are atomic: a temporary file in the same directory, then ``os.replace``. An interrupted
  run leaves complete cells and at worst a stray ``.*.tmp`` file, which nothing reads (it is
  not removed automatically: another process may be writing it). A re-run skips every
  completed cell.
* The manifest is an index: a cell missing from it is re-entered (``recovered``) on the next
  run, and an unreadable manifest is set aside as ``manifest.json.corrupt-<time>`` (with a
  warning) and rebuilt from the cells.
* No pickle anywhere: ``np.savez`` of non-object arrays, read with ``allow_pickle=False``; JSON.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from moetheory.study.spec import StudySpec

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


def _atomic_write_bytes(path: Path, write) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise


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
    {'k2': {'done': [100], 'missing': [200]}}
    """

    def __init__(self, root=None):
        self.root = Path(root) if root is not None else default_cache_dir()

    # ------------------------------------------------------------------ paths
    def panel_dir(self, study: StudySpec, label: str) -> Path:
        return self.root / study.name / f"{label}-{study.panel_hash(label)[:16]}"

    def cell_path(self, study: StudySpec, label: str, n: int) -> Path:
        return self.panel_dir(study, label) / f"n={int(n):010d}.npz"

    def manifest_path(self, study: StudySpec, label: str) -> Path:
        return self.panel_dir(study, label) / "manifest.json"

    # ------------------------------------------------------------------ cells
    def has_cell(self, study: StudySpec, label: str, n: int) -> bool:
        path = self.cell_path(study, label, n)
        if not path.exists():
            return False
        try:
            with np.load(path, allow_pickle=False) as z:
                ok = str(z[_HASH_KEY]) == study.panel_hash(label)
                reps = z["replicate"]
                return ok and reps.shape[0] == study.replicates_of(label)
        except Exception:  # unreadable/corrupt: recompute
            return False

    def write_cell(self, study: StudySpec, label: str, n: int, arrays: dict, wall_s=None) -> Path:
        for key, v in arrays.items():
            if np.asarray(v).dtype.kind == "O":
                raise TypeError(f"cell array {key!r} has object dtype; the cache stores no pickles")
        payload = {k: np.asarray(v) for k, v in arrays.items()}
        payload[_HASH_KEY] = np.array(study.panel_hash(label))
        path = self.cell_path(study, label, n)
        _atomic_write_bytes(path, lambda fh: np.savez(fh, **payload))
        self._record(study, label, n, arrays, wall_s)
        return path

    def read_cell(self, study: StudySpec, label: str, n: int) -> dict:
        path = self.cell_path(study, label, n)
        with np.load(path, allow_pickle=False) as z:
            if str(z[_HASH_KEY]) != study.panel_hash(label):
                raise ValueError(f"cell {path} was written by a different study spec")
            return {k: z[k] for k in z.files if k != _HASH_KEY}

    # ------------------------------------------------------------------ manifest
    def read_manifest(self, study: StudySpec, label: str, repair: bool = False) -> dict:
        """The panel's manifest ({} if there is none yet, or it is unreadable: with ``repair``,
        as the writers call it, the unreadable file is first set aside; a plain read changes
        nothing on disk)."""
        path = self.manifest_path(study, label)
        if not path.exists():
            return {}
        try:
            man = json.loads(path.read_text())
            if isinstance(man, dict) and isinstance(man.get("cells"), dict):
                return man
            problem = "not a manifest"
        except (ValueError, UnicodeDecodeError) as err:
            problem = str(err)
        if not repair:
            warnings.warn(f"unreadable study manifest {path} ({problem}); the next run sets it "
                          "aside and rebuilds it from the cached cells", RuntimeWarning,
                          stacklevel=2)
            return {}
        aside = path.with_name(f"{path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}")
        os.replace(path, aside)
        warnings.warn(f"unreadable study manifest {path} ({problem}): moved to {aside.name}; "
                      "it is rebuilt from the cached cells (their provenance is marked "
                      "'recovered')", RuntimeWarning, stacklevel=2)
        return {}

    def _record(self, study, label, n, arrays, wall_s, recovered=False):
        man = self.read_manifest(study, label, repair=True)
        if not man:
            man = {"study": study.name, "fit": label, "panel_hash": study.panel_hash(label),
                   "panel_spec": study.panel_dict(label), "cells": {}}
        man["study_spec"] = study.to_dict()
        man["spec_hash"] = study.hash()
        man.pop("provenance", None)  # (older manifests: one run's provenance for all cells)
        failed = int(np.asarray(arrays.get("failed", np.zeros(0, bool))).sum())
        man["cells"][str(int(n))] = {
            "file": self.cell_path(study, label, n).name, "wall_s": wall_s,
            "provenance": None if recovered else provenance(),
            "completed_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "replicates": int(np.asarray(arrays["replicate"]).shape[0]), "n_failed": failed,
            "n_pad": int(np.asarray(arrays["n_pad"])[0]) if "n_pad" in arrays else None,
        }
        if recovered:
            man["cells"][str(int(n))]["recovered"] = True  # provenance of that cell not recorded
        text = json.dumps(man, indent=1, sort_keys=True, allow_nan=True)
        _atomic_write_bytes(self.manifest_path(study, label), lambda fh: fh.write(text.encode()))

    def reconcile(self, study: StudySpec) -> list:
        """Record in the manifest every completed cell it lacks (a run killed between writing a
        cell and its manifest entry); returns the (label, n) pairs added (wall time unknown)."""
        added = []
        for f in study.fits:
            man = self.read_manifest(study, f.label, repair=True)
            known = set(man.get("cells", {}))
            for n in f.sizes:
                if str(n) not in known and self.has_cell(study, f.label, n):
                    arrays = self.read_cell(study, f.label, n)
                    self._record(study, f.label, n, arrays, None, recovered=True)
                    added.append((f.label, n))
        return added

    # ------------------------------------------------------------------ status / results
    def status(self, study: StudySpec) -> dict:
        """``{fit label: {"done": [...], "missing": [...]}}``."""
        out = {}
        for f in study.fits:
            done = [n for n in f.sizes if self.has_cell(study, f.label, n)]
            out[f.label] = {"done": done, "missing": [n for n in f.sizes if n not in set(done)]}
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
                if not self.has_cell(study, f.label, n):
                    if not allow_missing:
                        raise FileNotFoundError(f"cell {f.label} n={n} of study {study.name!r} "
                                                f"is not in the cache {self.root}")
                    continue
                frames.append(_frame(self.read_cell(study, f.label, n), study.name, f.label))
        if not frames:
            return pd.DataFrame(columns=["study", "fit", "n", "replicate", "failed", "converged"])
        return pd.concat(frames, ignore_index=True)


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
