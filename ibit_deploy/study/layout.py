"""Where a study keeps things, and the per-run lock. One place for every file name::

    OUT/study.json                  the recipe and the planned run ids (written once; a resume must match it)
    OUT/runs/s0/f025/ibit/run.json  the run's spec and digest
                       .../checkpoint/    the training run (resumable: train_state.pt)
                       .../bundle/        the export (ibit-export's path, fp32 ONNX)
                       .../teachers.npz   LIB-KD students only: the stored teacher logits
                       .../teachers.json  ... and what making them cost (kept for a resumed student's result)
                       .../worker.log     the worker's stdout and stderr
                       .../result.json    written last, atomically: the run is finished iff it exists
    OUT/report/                     compare.json, compare.md, plots
    OUT/latency_standins/ibit/      a candidate's architecture, briefly trained and exported, for the report's
                                    side-by-side latency when none of its trained bundles is left (checkpoint/, bundle/)
    OUT/latency_side_by_side.json   the last side-by-side latency pass (--retime), which later reports use

The study folder and each run folder are locked with ``ibit_deploy.devicekit.locking.directory_lock`` (lock files beside them).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path

from ..devicekit.locking import LockBusy, describe_holder, directory_lock, read_holder

STUDY_FILE = "study.json"
RUNS_DIR = "runs"
RUN_FILE = "run.json"
RESULT_FILE = "result.json"
CHECKPOINT_DIR = "checkpoint"
BUNDLE_DIR = "bundle"
LOGITS_FILE = "teachers.npz"
LOGITS_RECORD = "teachers.json"
LOG_FILE = "worker.log"
REPORT_DIR = "report"
STANDIN_DIR = "latency_standins"
SIDE_BY_SIDE_FILE = "latency_side_by_side.json"

OWN_NAMES = (STUDY_FILE, RUNS_DIR, REPORT_DIR, STANDIN_DIR, SIDE_BY_SIDE_FILE)  # what a study folder holds


def foreign_entries(names: list[str]) -> list[str]:
    """The names of ``names`` (a study folder's entries) that no study made: not one of :data:`OWN_NAMES`, nor a
    hidden file of one (``.<name>.lock``, ``.<name>.<pid>.<random>.tmp`` of an atomic write, a staged folder)."""
    return [n for n in names if n not in OWN_NAMES and not any(n.startswith(f".{own}.") for own in OWN_NAMES)]


def check_out(out: str | os.PathLike) -> None:
    """``--out`` must be new, empty or a study folder (to resume it): never a file, a bundle, a checkpoint or a
    user's folder, into which a study would write its runs (the write policy, ibit_deploy/outputs.py); ValueError
    (exit 2) naming it and what is there otherwise. A folder holding only a study's own names is one whose first
    ``prepare`` was killed before ``study.json`` (written last)."""
    out = Path(out)
    if not out.exists() and not out.is_symlink():
        return
    if not out.is_dir():
        raise NotADirectoryError(f"--out {out} is not a folder; give a new or empty folder for the study, or a study "
                                 f"folder to resume it")
    foreign = sorted(foreign_entries(os.listdir(out)))
    if foreign and not (out / STUDY_FILE).is_file():
        shown = ", ".join(foreign[:5]) + (", ..." if len(foreign) > 5 else "")
        raise ValueError(f"--out {out} is not empty ({shown}) and holds no study ({STUDY_FILE}); a study writes its "
                         f"runs into --out, so give a new or empty folder, or a study folder to resume it")


def run_dir(out: str | os.PathLike, run_id: str) -> Path:
    return Path(out) / RUNS_DIR / run_id


def valid_run_id(run_id: str) -> bool:
    """Whether ``run_id`` (read from a study file) names a folder under ``OUT/runs``: relative, no ``..``."""
    parts = run_id.split("/")
    return bool(run_id) and not run_id.startswith("/") and all(p not in ("", ".", "..") and "\\" not in p
                                                               for p in parts)


@contextlib.contextmanager
def locked(directory: str | os.PathLike, purpose: str, then: str) -> Iterator[Path]:
    """Hold ``directory``'s lock (never waiting); when another process holds it, LockBusy says who and what to do
    next, ``then``, in words that name only what ``ibit-deploy compare`` offers (it has no ``--wait``)."""
    stack = contextlib.ExitStack()
    try:
        path = stack.enter_context(directory_lock(directory, purpose, wait=False))
    except LockBusy:
        raise LockBusy(f"{directory} is in use by {describe_holder(read_holder(directory))}; wait for it to finish, "
                       f"then {then}") from None
    with stack:
        yield path
