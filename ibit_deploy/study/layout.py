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

The study folder and each run folder are locked with ``ibit_deploy.locking.directory_lock`` (lock files beside them).
"""

from __future__ import annotations

import os
from pathlib import Path

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


def run_dir(out: str | os.PathLike, run_id: str) -> Path:
    return Path(out) / RUNS_DIR / run_id
