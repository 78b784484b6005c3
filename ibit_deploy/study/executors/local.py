"""The local executor: one worker process per run on this machine, ``--workers`` at a time, ``--threads`` each.

Each worker is started through :mod:`..lifetime`, so it ends with this process however this process ends.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

from .. import layout, lifetime
from ..guard import EXIT_STUDY_GONE
from ..plan import RunSpec
from ..worker import EXIT_BUSY
from .base import BUSY, DONE, FAILED, Needs, Outcome


class LocalExecutor:
    name = "local"

    def __init__(self, out: Path, needs: Needs, workers: int, log: Callable[[str], None]) -> None:
        self.out, self.needs, self.workers, self.log = out, needs, workers, log
        self.procs: dict[str, subprocess.Popen] = {}

    def describe(self) -> str:
        return f"{self.workers} worker process(es) of {self.needs.cpus} thread(s) on this machine"

    def capacity(self) -> int | None:
        return self.workers

    def parallelism(self) -> int:
        return self.workers

    def submit(self, spec: RunSpec) -> None:
        directory = layout.run_dir(self.out, spec.id)
        threads = str(self.needs.cpus)
        env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads}
        with open(directory / layout.LOG_FILE, "ab") as log_file:  # the worker ends with this process
            self.procs[spec.id] = lifetime.spawn(
                [sys.executable, "-m", "ibit_deploy.study.worker", str(self.out), spec.id],
                env=env, stdout=log_file, stderr=subprocess.STDOUT)

    def finished(self) -> dict[str, Outcome]:
        ended = {}
        for run_id, proc in list(self.procs.items()):
            rc = proc.poll()
            if rc is None:
                continue
            del self.procs[run_id]
            ended[run_id] = self._outcome(run_id, rc)
        return ended

    def _outcome(self, run_id: str, rc: int) -> Outcome:
        log = layout.run_dir(self.out, run_id) / layout.LOG_FILE
        if rc == 0:
            return Outcome(DONE)
        if rc == EXIT_BUSY:  # an orphaned worker of an earlier session still holds it: wait, never share it
            return Outcome(BUSY)
        if rc == EXIT_STUDY_GONE:
            return Outcome(FAILED, f"the study folder went away under the worker (or its lock was taken over); see {log}")
        return Outcome(FAILED, f"worker exited with {rc}; see {log}")

    def stop(self) -> None:
        lifetime.stop_all(list(self.procs.values()))
        self.procs.clear()

    def close(self) -> None:
        if self.procs:
            self.stop()
