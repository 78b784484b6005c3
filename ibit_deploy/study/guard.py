"""A run stops writing when its study is gone: the study folder removed, or the run's lock taken over.

A run holds its folder's lock (:func:`.layout.locked`) while it trains. The lock file lives inside the study folder
(beside the run folder), so the lock proves the run's claim only while that file is the one it locked: when the study
folder is deleted (and maybe made again), or another process removed the lock file and took a new one, the run no
longer owns what it writes. Without a check it would go on training for hours, writing checkpoints into a folder that
is no longer its study (its own ``mkdir``s even recreate a deleted one).

:class:`Claim` is that check: the identity (device, inode) of the lock file taken, the holder record naming this
process, and the files that must still be there (the run's spec, with its digest). :func:`watch` runs it every
:data:`INTERVAL_S` seconds on a daemon thread and ends the process at once (:data:`EXIT_STUDY_GONE`) when the claim
is lost: a worker process of the local executor exits; a Ray worker process dies, and the retried task then finds
the spec gone and fails with that message. The study's driver runs the same check on the study folder each time it
polls its runs (:mod:`.scheduler`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

from ..devicekit.fileio import read_json
from ..devicekit.locking import lock_path, read_holder

INTERVAL_S = 2.0
EXIT_STUDY_GONE = 76  # the worker's exit code when its study folder went away or its lock was taken over


class StudyGone(RuntimeError):
    """The study folder (or the run's lock) this process worked for is no longer there; it stopped."""

    exit_code = 1
    label = "FAILED"


class Claim:
    """What a process holding ``directory``'s lock owns, checked by :meth:`lost` (a reason, or None while held)."""

    def __init__(self, directory: str | os.PathLike, spec: Path | None = None, digest: str | None = None) -> None:
        """``spec``: a file that must stay there (a run's spec, the study file); ``digest``: the one it must hold, or
        None: then the very file (the study file, which nothing rewrites while its study runs)."""
        self.directory = Path(directory)
        self.lock = lock_path(directory)
        self.spec, self.digest = spec, digest
        self.identity = _identity(self.lock)
        self.spec_identity = _identity(spec) if spec is not None and digest is None else None
        self.holder = (os.getpid(), socket.gethostname())

    def lost(self) -> str | None:
        """Why this process no longer owns ``directory`` (its study folder was removed or replaced, the lock was taken
        over, the spec changed), or None."""
        try:
            identity = _identity(self.lock)
        except FileNotFoundError:
            return f"its lock file {self.lock} is gone (the study folder was removed)"
        if identity != self.identity:
            return f"its lock file {self.lock} was replaced (the study folder was removed and made again)"
        record = read_holder(self.directory)
        if record is not None and (record.get("pid"), record.get("host")) != self.holder:
            return f"its lock {self.lock} was taken over by pid {record.get('pid')} on {record.get('host')}"
        if self.spec is not None:
            if not self.spec.is_file():
                return f"{self.spec} is gone (the study folder was removed)"
            if self.spec_identity is not None:
                try:
                    same = _identity(self.spec) == self.spec_identity
                except FileNotFoundError:
                    same = False
                return None if same else f"{self.spec} was replaced (the study folder was removed and made again)"
            try:
                digest = read_json(self.spec, "run spec").get("digest")
            except (ValueError, OSError, AttributeError):
                digest = None
            if digest != self.digest:
                return f"{self.spec} now holds another run (digest {str(digest)[:12]}...)"
        return None


def _identity(path: Path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def _watch(claim: Claim, stop: threading.Event, interval: float) -> None:
    while not stop.wait(interval):
        reason = claim.lost()
        if reason is not None and not stop.is_set():
            print(f"worker: stopping, {reason}: this run no longer belongs to a study", file=sys.stderr, flush=True)
            os._exit(EXIT_STUDY_GONE)


@contextlib.contextmanager
def watch(claim: Claim, interval: float = INTERVAL_S) -> Iterator[Claim]:
    """Check ``claim`` every ``interval`` seconds while the ``with`` block runs; end the process when it is lost.

    The thread stops with the block, so a process that runs several runs in turn (a Ray worker) is left alone
    afterwards."""
    stop = threading.Event()
    thread = threading.Thread(target=_watch, args=(claim, stop, interval), name="study-guard", daemon=True)
    thread.start()
    try:
        yield claim
    finally:
        stop.set()
        thread.join()
