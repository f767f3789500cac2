"""The one cell store under every study: hashes, atomic writes, checksums, a directory lock.

Every study keeps its results as *cells* in *panels*: one directory of cells plus a
``manifest.json`` index. The Monte Carlo studies store one ``.npz`` per (fitted model, n)
(:class:`moetheory.study.cache.StudyCache`); the attention and neural studies one JSON file per
replicate or training run. All of them go through :class:`CellStore`:

* **Identity.** A panel's directory is named by :func:`content_hash` (sha256 of the canonical
  JSON) of everything that determines its numbers, and every cell repeats that hash inside, so a
  changed configuration never reuses a cell.
* **Atomic writes** (:func:`atomic_write_bytes`): a temporary file in the same directory, fsync,
  then ``os.replace``. An interrupted run leaves complete cells and at worst a stray ``.*.tmp``
  file, which nothing reads.
* **Integrity.** The manifest records the sha256 of each cell file as it is written, and every
  read hashes the bytes it decodes. A cell whose bytes differ from the recorded checksum, that
  does not decode, or that carries another configuration's hash is *damaged*: it is named in a
  :class:`DamagedCellWarning`, moved aside as ``<file>.damaged-<UTC time>`` and recomputed. A cell
  with no recorded checksum (a cache written before checksums existed, or a cell whose manifest
  entry was lost to a kill) is accepted when it decodes completely (for an npz, every array is
  read, which checks the zip members' CRC-32); the next run records its checksum
  (``checksum_recorded_later``).
* **Concurrency.** Writes, set-asides and claims (:mod:`moetheory.study.claims`) hold an
  exclusive ``flock`` on ``<panel>/.lock`` for the few milliseconds they take, so processes
  sharing a cache never lose a manifest entry or judge a cell in the middle of its write.
"""
from __future__ import annotations

import contextlib
import copy
import errno
import hashlib
import json
import os
import tempfile
import threading
import time
import warnings
from pathlib import Path

#: cells written by this process (all stores): lets a command say how many an interrupt kept
CELLS_WRITTEN = [0]


class DamagedCellWarning(RuntimeWarning):
    """A cached cell failed its checksum or did not decode; it is set aside and recomputed.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("error", DamagedCellWarning)   # make damage fatal in a pipeline
    ...     issubclass(DamagedCellWarning, RuntimeWarning)
    True
    """


class DamagedCellError(ValueError):
    """Reading a damaged cell (its message names the file and what is wrong).

    Examples
    --------
    >>> import tempfile
    >>> store = CellStore(tempfile.mkdtemp(), {}, decode=json.loads)
    >>> _ = store.write("cell", b"[1.5]", {})
    >>> _ = store.path("cell").write_bytes(b"[2.5]")
    >>> try:
    ...     store.read("cell")
    ... except DamagedCellError as err:
    ...     print(str(err).split(": ")[1])
    its sha256 differs from the checksum recorded in the manifest; rerun the study to recompute it
    """


def canonical_json(obj) -> str:
    """The canonical JSON of ``obj`` (sorted keys, no spaces): the text every hash is taken of.

    Examples
    --------
    >>> canonical_json({"b": 1, "a": [1.5, None]})
    '{"a":[1.5,null],"b":1}'
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=True)


def content_hash(obj) -> str:
    """sha256 (64 hex digits) of :func:`canonical_json` of ``obj``: the one hash of every study.

    Examples
    --------
    >>> h = content_hash({"seed": 0, "sizes": [100, 200]})
    >>> len(h), h == content_hash({"sizes": [100, 200], "seed": 0})
    (64, True)
    """
    return hashlib.sha256(canonical_json(obj).encode()).hexdigest()


def atomic_write_bytes(path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: temp file in the same folder, fsync, ``os.replace``.

    Missing parent folders are created. Readers see the old file or the new one, never a part.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     atomic_write_bytes(Path(tmp) / "sub" / "cell.json", b'{"a": 1}')
    ...     (Path(tmp) / "sub" / "cell.json").read_bytes()
    b'{"a": 1}'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def json_bytes(obj) -> bytes:
    """The bytes a JSON cell or results file is written as (indented, NaN allowed).

    Examples
    --------
    >>> json_bytes({"a": [1, 2]})
    b'{\\n "a": [\\n  1,\\n  2\\n ]\\n}'
    """
    return json.dumps(obj, indent=1, allow_nan=True).encode()


def write_json_atomic(path, obj) -> None:
    """Write ``obj`` as JSON (:func:`json_bytes`) to ``path`` with :func:`atomic_write_bytes`.

    Examples
    --------
    >>> import tempfile
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     write_json_atomic(Path(tmp) / "results.json", {"a": [1, 2]})
    ...     json.loads((Path(tmp) / "results.json").read_text())
    {'a': [1, 2]}
    """
    atomic_write_bytes(path, json_bytes(obj))


# ------------------------------------------------------------------------------ directory lock
_HELD = threading.local()  # directories whose lock this thread holds (the lock is re-entrant)
_NO_FLOCK_WARNED = []


@contextlib.contextmanager
def directory_lock(directory):
    """Hold an exclusive ``flock`` on ``<directory>/.lock`` (re-entrant within a thread).

    The kernel drops the lock when its holder dies, so it can never go stale. On a file system
    without locks (some network mounts) a warning says that concurrent runs are not coordinated.

    Examples
    --------
    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> with directory_lock(d):
    ...     with directory_lock(d):   # re-entrant in the same thread
    ...         (d / ".lock").exists()
    True
    """
    directory = Path(directory)
    key = os.path.abspath(directory)
    held = getattr(_HELD, "dirs", None)
    if held is None:
        held = _HELD.dirs = set()
    if key in held:
        yield
        return
    try:
        import fcntl
    except ImportError:  # pragma: no cover  (not a POSIX system)
        fcntl = None
    directory.mkdir(parents=True, exist_ok=True)
    fd = os.open(directory / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX)
            except OSError as err:  # pragma: no cover  (file system without locks)
                if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise
                if not _NO_FLOCK_WARNED:
                    _NO_FLOCK_WARNED.append(True)
                    warnings.warn(f"the file system of {directory} has no file locks: processes "
                                  "sharing this cache are not coordinated", RuntimeWarning,
                                  stacklevel=3)
        held.add(key)
        try:
            yield
        finally:
            held.discard(key)
    finally:
        os.close(fd)  # releases the flock


# ------------------------------------------------------------------------------ the store
def _utc_stamp() -> str:
    return time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())


class CellStore:
    """One panel: a directory of cell files and its ``manifest.json`` (checksums, provenance).

    Parameters
    ----------
    directory : path
        The panel's directory (created on the first write).
    header : dict
        JSON-ready fields written at the top of the manifest on every write (what the panel is,
        e.g. its configuration and hash).
    decode : callable, bytes -> object
        Decodes a cell file completely and checks that it belongs to this panel (e.g. the hash
        it carries); raises on a bad cell. Its value is what :meth:`read` returns.
    filename : callable, str -> str, optional
        File name of the cell with manifest key ``key`` (default: the key itself).

    Examples
    --------
    >>> import tempfile
    >>> store = CellStore(tempfile.mkdtemp(), {"what": "demo"}, decode=lambda b: json.loads(b),
    ...                   filename=lambda key: f"{key}.json")
    >>> _ = store.write("r0", json_bytes({"loss": 0.25}), {"wall_s": 1.0})
    >>> store.state("r0"), store.read("r0")
    ('done', {'loss': 0.25})
    >>> path = store.path("r0")
    >>> _ = path.write_bytes(path.read_bytes().replace(b"0.25", b"0.35"))  # one digit flipped
    >>> store.state("r0")
    'damaged'
    >>> store.state("r1")
    'missing'
    """

    def __init__(self, directory, header: dict, decode, filename=None):
        self.directory = Path(directory)
        self.header = dict(header)
        self.decode = decode
        self._filename = filename or (lambda key: key)
        self._manifest_cache = (None, {})

    # ------------------------------------------------------------------ paths
    def path(self, key: str) -> Path:
        return self.directory / self._filename(key)

    @property
    def manifest_path(self) -> Path:
        return self.directory / "manifest.json"

    def lock(self):
        """The panel's :func:`directory_lock`."""
        return directory_lock(self.directory)

    # ------------------------------------------------------------------ manifest
    def manifest(self, repair: bool = False) -> dict:
        """The manifest ({} if there is none yet, or it is unreadable: with ``repair``, as the
        writers call it, the unreadable file is first set aside; a plain read changes nothing on
        disk). Returns a copy."""
        return copy.deepcopy(self._manifest(repair))

    def _manifest(self, repair: bool = False, fresh: bool = False) -> dict:
        path = self.manifest_path
        try:
            st = path.stat()
        except FileNotFoundError:
            return {}
        sig = (st.st_mtime_ns, st.st_ctime_ns, st.st_size, st.st_ino)
        if not (repair or fresh) and self._manifest_cache[0] == sig:
            return self._manifest_cache[1]
        try:
            man = json.loads(path.read_text())
            if isinstance(man, dict) and isinstance(man.get("cells"), dict):
                self._manifest_cache = (sig, man)
                return man
            problem = "not a manifest"
        except FileNotFoundError:
            return {}
        except (ValueError, UnicodeDecodeError) as err:
            problem = str(err)
        if not repair:
            warnings.warn(f"unreadable study manifest {path} ({problem}); the next run sets it "
                          "aside and rebuilds it from the cached cells", RuntimeWarning,
                          stacklevel=3)
            return {}
        aside = path.with_name(f"{path.name}.corrupt-{_utc_stamp()}")
        os.replace(path, aside)
        warnings.warn(f"unreadable study manifest {path} ({problem}): moved to {aside.name}; "
                      "it is rebuilt from the cached cells (their provenance is marked "
                      "'recovered')", RuntimeWarning, stacklevel=3)
        return {}

    def _update_manifest(self, change) -> None:
        """Read (repairing), ``change(manifest)`` and write it back; the caller holds the lock."""
        man = self._manifest(repair=True)
        man = copy.deepcopy(man) if man else {"cells": {}}
        man.update(self.header)
        man.setdefault("cells", {})
        change(man)
        atomic_write_bytes(self.manifest_path,
                           json.dumps(man, indent=1, sort_keys=True, allow_nan=True).encode())
        self._manifest_cache = (None, {})

    # ------------------------------------------------------------------ cells
    def _judge(self, data: bytes, entry):
        """('done', value) or ('damaged', reason) for the bytes of a cell and its manifest entry."""
        want = (entry or {}).get("sha256")
        if want is not None and hashlib.sha256(data).hexdigest() != want:
            return "damaged", "its sha256 differs from the checksum recorded in the manifest"
        try:
            return "done", self.decode(data)
        except Exception as err:  # any failure to decode: the cell cannot be trusted
            return "damaged", f"unreadable: {type(err).__name__}: {err}"

    def check(self, key: str):
        """``(state, value_or_reason)``: ``("done", decoded cell)``, ``("missing", None)`` or
        ``("damaged", reason)``. A damaged verdict is confirmed under the lock (a cell being
        rewritten by another process is never judged half-way)."""
        state, info = self._check(key, fresh=False)
        if state == "damaged":
            with self.lock():
                state, info = self._check(key, fresh=True)
        return state, info

    def _check(self, key, fresh):
        try:
            data = self.path(key).read_bytes()
        except FileNotFoundError:
            return "missing", None
        entry = self._manifest(fresh=fresh).get("cells", {}).get(key)
        return self._judge(data, entry)

    def state(self, key: str) -> str:
        """``"done"``, ``"missing"`` or ``"damaged"`` (see :meth:`check`)."""
        return self.check(key)[0]

    def read(self, key: str):
        """The decoded cell; :class:`DamagedCellError` (naming the file) if it is damaged,
        ``FileNotFoundError`` if it is missing."""
        state, info = self.check(key)
        if state == "missing":
            raise FileNotFoundError(f"cell {self.path(key)} is not in the cache")
        if state == "damaged":
            raise DamagedCellError(f"damaged cache cell {self.path(key)}: {info}; rerun the "
                                   "study to recompute it")
        return info

    def write(self, key: str, data: bytes, entry: dict) -> Path:
        """Write the cell ``key`` atomically and record its sha256 and ``entry`` in the manifest."""
        path = self.path(key)
        sha = hashlib.sha256(data).hexdigest()
        with self.lock():
            atomic_write_bytes(path, data)
            self._update_manifest(lambda man: man["cells"].__setitem__(
                key, {**entry, "file": path.name, "sha256": sha}))
        CELLS_WRITTEN[0] += 1
        return path

    def set_aside(self, key: str) -> str | None:
        """Move a damaged cell aside (``<file>.damaged-<time>``) with a :class:`DamagedCellWarning`
        naming it, and drop its manifest entry; returns the reason, or None if the cell is not
        damaged (re-checked under the lock)."""
        with self.lock():
            state, reason = self._check(key, fresh=True)
            if state != "damaged":
                return None
            path = self.path(key)
            aside = path.with_name(f"{path.name}.damaged-{_utc_stamp()}")
            os.replace(path, aside)
            self._update_manifest(lambda man: man["cells"].pop(key, None))
        warnings.warn(f"damaged cache cell {path} ({reason}): moved to {aside.name}; it is "
                      "recomputed", DamagedCellWarning, stacklevel=2)
        return reason

    def reconcile(self, keys, recovered_entry) -> tuple:
        """Check every cell of ``keys`` on disk: set damaged ones aside, record the checksum of
        readable cells that have none (``recovered_entry(value)`` makes the entry of a cell the
        manifest lacks), remove stale claims. Returns ``(added, damaged)``: the keys entered and
        the keys set aside."""
        added, damaged, adopt = [], [], []
        for key in keys:
            claim = self.claim(key)
            if claim.path.exists():  # left by a killed process: clear it
                claim.clear_if_stale()
            state, _ = self._check(key, fresh=False)
            entry = self._manifest().get("cells", {}).get(key)
            if state == "damaged":
                damaged.append(key)
            elif state == "done" and (entry is None or "sha256" not in entry):
                adopt.append(key)
        damaged = [k for k in damaged if self.set_aside(k) is not None]
        if adopt:
            with self.lock():
                for key in adopt:
                    try:
                        data = self.path(key).read_bytes()
                    except FileNotFoundError:
                        continue
                    entry = self._manifest(fresh=True).get("cells", {}).get(key)
                    state, value = self._judge(data, entry)
                    if state != "done" or (entry is not None and "sha256" in entry):
                        continue
                    sha = hashlib.sha256(data).hexdigest()
                    if entry is None:
                        new = {**recovered_entry(value), "recovered": True}
                        added.append(key)
                    else:
                        new = {**entry, "checksum_recorded_later": True}
                    new.update(file=self.path(key).name, sha256=sha)
                    self._update_manifest(lambda man: man["cells"].__setitem__(key, new))
        return added, damaged

    def claim(self, key: str):
        """The :class:`~moetheory.study.claims.Claim` of cell ``key`` (not yet acquired)."""
        from moetheory.study.claims import Claim

        return Claim(self.path(key).with_name(self.path(key).name + ".claim"), self.lock)
