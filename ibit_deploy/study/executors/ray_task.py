"""One run as a Ray task, on whichever node Ray placed it: the same :func:`..worker.run` a local worker process calls,
on the same study folder, which every node sees at the same path (a shared file system).

Nothing here imports Ray at import time: the driver (:mod:`.ray_cluster`) wraps :func:`run_task` with
``ray.remote``, and Ray imports this module by name on the node. The run trains in the Ray worker process itself, so
a worker or node that dies mid-run is a system failure to Ray, which retries the task (``max_retries``) wherever it
fits; the retry resumes from the run's last finished epoch, which is in the study folder. The run's output (its
progress lines and any traceback) goes to the run's ``worker.log``, as with the local executor.
"""

from __future__ import annotations

import contextlib
import os
import socket
import sys
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ...devicekit.fileio import read_json
from ...devicekit.locking import LockBusy
from .. import layout, worker
from ..guard import StudyGone
from .base import BUSY, DONE


def run_task(out: str, run_id: str, digest: str) -> dict[str, Any]:
    """Carry out run ``run_id`` of the study in ``out`` (absolute, the same path on every node) as a Ray task.

    Returns ``{"status": "done" | "busy", "node": ...}``; raises :class:`..guard.StudyGone` when the run's spec is
    not there with ``digest`` (the study folder is not shared with this node, or it was removed), and whatever the
    run raised (its traceback is in the run's worker.log)."""
    import ray

    node = ray.get_runtime_context().get_node_id()
    spec = layout.run_dir(out, run_id) / layout.RUN_FILE
    found = _digest(spec)
    if found != digest:
        what = "not there" if found is None else f"another run's (digest {found[:12]}...)"
        raise StudyGone(f"{spec} is {what} on Ray node {node} ({socket.gethostname()}): the study folder must be on a "
                        f"file system every node mounts at the same path, and still hold this study")
    with _output_to(spec.parent / layout.LOG_FILE):
        try:
            worker.run(out, run_id, where={"name": "ray", "node": node})
        except LockBusy as exc:  # the driver retries the run later, as the local executor's exit code 75 says
            print(f"worker: {exc}", flush=True)
            return {"status": BUSY, "node": node}
        except BaseException:
            traceback.print_exc()
            raise
    return {"status": DONE, "node": node}


def _digest(spec: Path) -> str | None:
    try:
        record = read_json(spec, "run spec")
    except (OSError, ValueError):
        return None
    return record.get("digest") if isinstance(record, dict) else None


@contextlib.contextmanager
def _output_to(path: Path) -> Iterator[None]:
    """This process's stdout and stderr (Python's and the file descriptors, which native code writes to) appended to
    ``path`` for the ``with`` block, then given back: the Ray worker process runs other tasks afterwards."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with open(path, "a", encoding="utf-8", buffering=1) as log:
        os.dup2(log.fileno(), 1)
        os.dup2(log.fileno(), 2)
        try:
            with contextlib.redirect_stdout(log), contextlib.redirect_stderr(log):
                yield
        finally:
            log.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
