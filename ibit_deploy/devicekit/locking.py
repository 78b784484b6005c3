"""``directory_lock``: one writer at a time for a directory (a bundle, a training run), across processes.

    with directory_lock("bundle/", "ibit-export", wait=False):   # LockBusy at once if another process holds it
        ...write files, then manifest.json...

The lock is a file *beside* the directory (``<parent>/.<name>.lock``), not inside it, so it survives the directory
being replaced by a rename (a staging directory swapped in) and never appears among the directory's files. It is an
exclusive ``fcntl.flock`` on that file: the kernel drops it when the holder exits, however it exits. The file records
the holder (pid, command line, host, start time) for the messages other writers see; a record left by a holder that
died is reported as stale and taken over.

Re-entrant within a process: a stage that locks (quantize, the engine build) may run inside one that already holds
the lock (export); the inner call just counts.

Part of the device kit (standard library only): the kit locks the bundle through it on the device too. POSIX only (``fcntl``); on a network file system flock may be local.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from .fileio import parse_json_text

POLL_SECONDS = 0.2

_held: dict[str, list[Any]] = {}  # lock path -> [open file, depth], for re-entrant use within this process
_held_guard = threading.Lock()


class LockBusy(RuntimeError):
    """Another process holds the directory's lock (``wait=False``, or the wait timed out); the message names it."""

    # How a command ends when this escapes it (ibit_deploy.errors reads the attribute; the kit cannot import it):
    # the check that the output is free failed.
    exit_code = 1
    label = "FAILED"


def lock_path(directory: str | os.PathLike) -> Path:
    """The lock file of ``directory``: ``.<name>.lock`` in its parent (absolute, symlinks resolved)."""
    target = Path(directory).resolve()
    return target.parent / f".{target.name}.lock"


def read_holder(directory: str | os.PathLike) -> dict[str, Any] | None:
    """The holder record of ``directory``'s lock file, or None (no file, empty, or unreadable)."""
    try:
        text = lock_path(directory).read_text(encoding="utf-8")
        record = parse_json_text(text, "lock file", "lock record") if text.strip() else None
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None


def describe_holder(record: dict[str, Any] | None) -> str:
    """``pid 123 on host (ibit-export ...) since 2026-12-03T08:00:00Z``, or a neutral phrase without a record."""
    if not record:
        return "another process (no holder recorded yet)"
    return (f"pid {record.get('pid')} on {record.get('host')} ({record.get('command') or '?'}) since "
            f"{record.get('started')}")


def _pid_alive(pid: Any) -> bool:
    try:
        os.kill(int(pid), 0)
    except (ProcessLookupError, ValueError, TypeError):
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


@contextlib.contextmanager
def directory_lock(directory: str | os.PathLike, purpose: str = "", *, wait: bool = True,
                   timeout: float | None = None,
                   message: Callable[[str], None] | None = None) -> Iterator[Path]:
    """Hold ``directory``'s exclusive lock for the ``with`` block; yields the lock file's path.

    ``wait=False`` raises :class:`LockBusy` at once when another process holds it; ``wait=True`` prints (through
    ``message``, default stderr) who holds it and waits, up to ``timeout`` seconds (None: no limit). ``purpose``
    (e.g. ``"ibit-export"``) is recorded with the holder. The directory itself need not exist yet.
    """
    say = message or (lambda text: print(text, file=sys.stderr, flush=True))
    path = lock_path(directory)
    key = str(path)
    with _held_guard:
        if key in _held:
            _held[key][1] += 1
            reentrant = True
        else:
            reentrant = False
    if reentrant:
        try:
            yield path
        finally:
            with _held_guard:
                _held[key][1] -= 1
        return

    path.parent.mkdir(parents=True, exist_ok=True)
    fh = open(path, "a+", encoding="utf-8")  # noqa: SIM115 (held open for the lock's lifetime)
    try:
        _acquire(fh, directory, wait, timeout, say)
        previous = read_holder(directory)
        if previous and previous.get("host") == socket.gethostname() and not _pid_alive(previous.get("pid")):
            say(f"{directory}: taking over a stale lock left by {describe_holder(previous)} (that process is gone)")
        record = {"pid": os.getpid(), "host": socket.gethostname(), "purpose": purpose,
                  "command": " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]) if sys.argv else purpose,
                  "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        fh.seek(0)
        fh.truncate()
        fh.write(json.dumps(record))
        fh.flush()
        with _held_guard:
            _held[key] = [fh, 1]
        try:
            yield path
        finally:
            with _held_guard:
                del _held[key]
            fh.seek(0)
            fh.truncate()  # an empty file: no holder (the file stays, so the next writer locks the same inode)
            fh.flush()
    finally:
        fh.close()  # closing drops the flock


def _acquire(fh: Any, directory: str | os.PathLike, wait: bool, timeout: float | None,
             say: Callable[[str], None]) -> None:
    try:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        return
    except BlockingIOError:
        pass
    holder = describe_holder(read_holder(directory))
    if not wait:
        raise LockBusy(f"{directory} is being written by {holder}; wait for it to finish (or pass --wait), then "
                       f"try again")
    say(f"{directory} is being written by {holder}; waiting for it to finish"
        + (f" (at most {timeout:g} s)" if timeout is not None else "") + " ...")
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if deadline is not None and time.monotonic() >= deadline:
                raise LockBusy(f"{directory} is still being written by {describe_holder(read_holder(directory))} "
                               f"after waiting {timeout:g} s") from None
            time.sleep(POLL_SECONDS)
