"""Claim files: processes that run the same study on one cache compute each cell once.

Before computing a cell a process creates ``<cell file>.claim`` (``O_CREAT | O_EXCL``, under the
panel's lock) holding its pid, host, process start time and a random token, and removes it after
the cell is written. Another process that finds the claim skips the cell, computes the others,
and then waits for it: it is done when the cell appears in the cache, and the waiter takes it
over when the claim turns *stale*:

* the claim's host is this host and its process is gone (or its pid now belongs to a process
  started at another time), or
* the claim is older than ``$MOETHEORY_CLAIM_TTL`` seconds (default 6 hours; the only test for a
  claim made on another host), or it is unreadable and older than a minute.

A process killed while computing therefore blocks no one for long, and at worst (a cell slower
than the TTL on another host) a cell is computed twice, with identical numbers.
"""
from __future__ import annotations

import contextlib
import json
import os
import platform
import secrets
import time
from pathlib import Path

_TTL_ENV = "MOETHEORY_CLAIM_TTL"
DEFAULT_TTL_S = 6 * 3600.0
_UNREADABLE_GRACE_S = 60.0


def _start_time(pid: int):
    """Start time of process ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            stat = fh.read()
    except OSError:
        return None
    # the command name (field 2) may hold spaces and ')': field 22 counts from the last ')'
    fields = stat[stat.rfind(b")") + 2:].split()
    return int(fields[19]) if len(fields) > 19 else None


def _alive(pid: int, started) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        pass
    if started is not None:
        now = _start_time(pid)
        if now is not None and now != started:  # the pid was reused by a newer process
            return False
    return True


def ttl_seconds() -> float:
    """Age after which any claim is stale: ``$MOETHEORY_CLAIM_TTL`` seconds, default 6 h.

    Examples
    --------
    >>> import os
    >>> from unittest import mock
    >>> with mock.patch.dict(os.environ, {"MOETHEORY_CLAIM_TTL": "60"}):
    ...     ttl_seconds()
    60.0
    """
    raw = os.environ.get(_TTL_ENV)
    if not raw:
        return DEFAULT_TTL_S
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"${_TTL_ENV} must be a number of seconds; got {raw!r}") from None
    if not value > 0:
        raise ValueError(f"${_TTL_ENV} must be > 0 seconds; got {raw!r}")
    return value


def is_stale(info, age_s: float) -> bool:
    """Whether a claim with content ``info`` (dict, or None if unreadable) and age ``age_s``
    seconds may be taken over (see the module docstring).

    Examples
    --------
    >>> import os
    >>> mine = {"pid": os.getpid(), "host": platform.node()}
    >>> is_stale(mine, 10.0), is_stale(mine, 1e9), is_stale(None, 10.0)
    (False, True, False)
    """
    if age_s > ttl_seconds():
        return True
    if not isinstance(info, dict) or not isinstance(info.get("pid"), int):
        return age_s > _UNREADABLE_GRACE_S
    if info.get("host") != platform.node():
        return False
    return not _alive(info["pid"], info.get("started"))


class Claim:
    """The claim file of one cell.

    Parameters
    ----------
    path : path
        The claim file (``<cell file>.claim``).
    lock : callable
        Returns the panel's lock (a context manager) that serialises claims and their takeover.

    Examples
    --------
    >>> import contextlib, tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> a, b = Claim(d / "n=100.npz.claim", contextlib.nullcontext), Claim(d / "n=100.npz.claim", contextlib.nullcontext)
    >>> a.acquire(), b.acquire()      # a live claim of this process is respected
    (True, False)
    >>> a.release(); b.acquire()
    True
    """

    def __init__(self, path, lock):
        self.path = Path(path)
        self._lock = lock
        self.token = None

    def holder(self):
        """(content dict or None, age in seconds), or None when there is no claim."""
        try:
            st = self.path.stat()
            text = self.path.read_text()
        except FileNotFoundError:
            return None
        try:
            info = json.loads(text)
        except ValueError:
            info = None
        return info, time.time() - st.st_mtime

    def acquire(self) -> bool:
        """Claim the cell; False if a live claim of another computation holds it."""
        with self._lock():
            held = self.holder()
            if held is not None:
                if not is_stale(*held):
                    return False
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
            token = secrets.token_hex(8)
            info = {"pid": os.getpid(), "host": platform.node(), "started": _start_time(os.getpid()),
                    "utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "token": token}
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            with os.fdopen(fd, "w") as fh:
                json.dump(info, fh)
            self.token = token
            return True

    def clear_if_stale(self) -> bool:
        """Remove the claim if it is stale (its process died, or it expired); True if removed."""
        with self._lock():
            held = self.holder()
            if held is None or not is_stale(*held):
                return False
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
            return True

    def release(self) -> None:
        """Remove the claim if it is still this one's (a taken-over claim is left alone)."""
        if self.token is None:
            return
        with self._lock():
            held = self.holder()
            if held is not None and isinstance(held[0], dict) and held[0].get("token") == self.token:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.path)
        self.token = None


def shared(items, *, done, claim, poll_s: float = 0.25, on_other=None):
    """Yield the items this process is to compute, each while holding its claim.

    Parameters
    ----------
    items : iterable
        The work (e.g. the cells (label, n) missing at the start).
    done : callable, item -> bool
        Whether the item's result is in the cache (valid).
    claim : callable, item -> Claim
    poll_s : float
        Pause between passes over items claimed by other processes.
    on_other : callable, item -> None, optional
        Called for each item another process completed.

    Items claimed elsewhere are skipped on the first pass and waited for afterwards (taken over if
    their claim goes stale). Close the generator (``contextlib.closing``) so that an exception in
    the caller's loop releases the claim at once.

    Examples
    --------
    >>> import contextlib, tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> finished = set()
    >>> with contextlib.closing(shared([1, 2], done=finished.__contains__,
    ...         claim=lambda i: Claim(d / f"{i}.claim", contextlib.nullcontext))) as work:
    ...     for item in work:
    ...         finished.add(item)
    >>> sorted(finished), list(d.iterdir())   # every claim released
    ([1, 2], [])
    """
    pending = list(items)
    while pending:
        waiting = []
        for item in pending:
            if done(item):
                if on_other is not None:
                    on_other(item)
                continue
            c = claim(item)
            if not c.acquire():
                waiting.append(item)
                continue
            try:
                if done(item):  # its previous holder finished between the check and the claim
                    if on_other is not None:
                        on_other(item)
                    continue
                yield item
            finally:
                c.release()
        if waiting:
            time.sleep(poll_s)
        pending = waiting
