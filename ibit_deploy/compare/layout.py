"""Where a study keeps things, and the per-run lock. One place for every file name::

    OUT/study.json                  the recipe and the planned run ids (written once; a resume must match it)
    OUT/runs/s0/f025/ibit/run.json  the run's spec and digest
                       .../checkpoint/    the training run (resumable: train_state.pt)
                       .../bundle/        the export (ibit-export's path, fp32 ONNX)
                       .../teachers.npz   LIB-KD students only: the stored teacher logits
                       .../worker.log     the worker's stdout and stderr
                       .../result.json    written last, atomically: the run is finished iff it exists
    OUT/report/                     compare.json, compare.md, plots
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

STUDY_FILE = "study.json"
RUNS_DIR = "runs"
RUN_FILE = "run.json"
RESULT_FILE = "result.json"
CHECKPOINT_DIR = "checkpoint"
BUNDLE_DIR = "bundle"
LOGITS_FILE = "teachers.npz"
LOG_FILE = "worker.log"
LOCK_FILE = ".lock"
STUDY_LOCK = ".study.lock"
REPORT_DIR = "report"


def run_dir(out: str | os.PathLike, run_id: str) -> Path:
    return Path(out) / RUNS_DIR / run_id


class Busy(RuntimeError):
    """Another process holds the lock (a study on the same folder, or a worker still training this run)."""


@contextlib.contextmanager
def exclusive(path: Path, what: str) -> Iterator[None]:
    """Hold an advisory exclusive lock on ``path`` (created if missing) or raise :class:`Busy` at once.

    The kernel drops the lock when the holder dies, so a killed study or worker never leaves a stale lock.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EACCES):
                holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
                raise Busy(f"{what} is in use by process {holder} ({path})") from exc
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
