"""What every executor offers the scheduler, and what a run needs from the machine that carries it out.

An executor starts runs, says which of them ended and how (:class:`Outcome`), and stops what it started. The plan,
the order (LIB-KD teachers before their students), the retry of a run held by another process, progress, time left
and the report stay with the scheduler, so both executors keep one study folder the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from ..plan import RunSpec

DONE, BUSY, FAILED = "done", "busy", "failed"
# runtime.load's backends that run on an NVIDIA GPU: a study timed on one needs a GPU for each run
GPU_BACKENDS = ("ort-cuda", "ort-trt", "tensorrt")


@dataclass(frozen=True)
class Outcome:
    """How a run's attempt ended: DONE (its result.json should be there), BUSY (another process holds the run: retry
    later) or FAILED (``detail`` says why and where to look)."""

    status: str
    detail: str = ""


@dataclass(frozen=True)
class Needs:
    """What one run takes from the machine that carries it out: CPU threads, and a GPU or none."""

    cpus: int
    gpus: int

    def describe(self) -> str:
        return f"{self.cpus} CPU(s)" + (f" + {self.gpus} GPU" if self.gpus else "")


def run_needs(study: dict[str, Any], train: dict[str, Any] | None = None) -> Needs:
    """A run's needs from its spec's ``study`` part (threads, latency backend) and ``train`` part (device): the
    ``--threads`` CPUs, and one GPU when it trains on CUDA or is timed on a GPU backend."""
    device = str((train or {}).get("device") or "cpu")
    gpu = device.startswith("cuda") or study.get("backend") in GPU_BACKENDS
    return Needs(cpus=int(study["threads"]), gpus=1 if gpu else 0)


class Executor(Protocol):
    """The seam between the scheduler and the machines (``local`` and ``ray``)."""

    name: str

    def describe(self) -> str:
        """One line for the study's first progress line: where the runs go and what each takes."""

    def capacity(self) -> int | None:
        """How many runs may be started at once (None: as many as are ready; the executor queues them)."""

    def parallelism(self) -> int:
        """How many runs can train at the same time (for the time left)."""

    def submit(self, spec: RunSpec) -> None:
        """Start run ``spec`` (its spec file is in the study folder)."""

    def finished(self) -> dict[str, Outcome]:
        """The runs that ended since the last call, by run id."""

    def stop(self) -> None:
        """Stop every run still going (each resumes from its last epoch next time); returns when they have ended."""

    def close(self) -> None:
        """Release what the executor holds (a Ray connection); runs still going are stopped first."""
