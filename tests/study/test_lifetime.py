"""Workers end with the study that started them: ``kill -9`` of the parent leaves no worker running (issue 22).

Every child here starts with SIGINT reset to the default: a non-interactive shell starts background jobs with SIGINT
ignored, and children inherit that, so a suite launched from one would otherwise test another signal disposition.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ibit_deploy.study import layout, lifetime

REPO = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")

# the parent: starts a worker the way the scheduler does, prints its pid, then waits to be killed
PARENT = """
import sys, time
from ibit_deploy.study import lifetime
proc = lifetime.spawn([sys.executable, "-c", sys.argv[1], sys.argv[2]])
print("worker", proc.pid, flush=True)
time.sleep(600)
"""
# the worker: ties itself to its parent the way ibit_deploy.study.worker does, says how, then sleeps for long
WORKER = """
import sys, time
from ibit_deploy.study import lifetime
print("tied", lifetime.tie_to_parent(use_prctl=sys.argv[1] == "prctl", interval=0.1), flush=True)
time.sleep(600)
"""


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def _running(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie waiting for its new parent to reap it has ended)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _gone_within(pid: int, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while _running(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.mark.parametrize("how", ["prctl", "watchdog"])
def test_kill_9_of_the_parent_ends_its_sleeping_worker(how):
    parent = subprocess.Popen([sys.executable, "-c", PARENT, WORKER, how], stdout=subprocess.PIPE, text=True,
                              env=_env(), preexec_fn=_default_sigint)
    worker = None
    try:
        lines = dict(parent.stdout.readline().split() for _ in range(2))
        worker = int(lines["worker"])
        assert lines["tied"] == how and _running(worker)
        parent.send_signal(signal.SIGKILL)
        parent.wait(timeout=30)
        assert _gone_within(worker, 10), f"worker {worker} outlived its parent ({how})"
    finally:
        if worker is not None and _running(worker):
            os.kill(worker, signal.SIGKILL)
        if parent.poll() is None:
            parent.kill()
        parent.stdout.close()


def test_a_worker_started_by_hand_is_left_alone(monkeypatch):
    monkeypatch.delenv(lifetime.PARENT_ENV, raising=False)
    assert lifetime.tie_to_parent() is None


def _worker_pid(run_dir: Path) -> int | None:
    """The pid of the worker training ``run_dir`` once it has saved an epoch (so a kill leaves something to resume)."""
    from ibit_deploy.devicekit.locking import read_holder

    holder = read_holder(run_dir) or {}
    metrics = run_dir / layout.CHECKPOINT_DIR / "metrics.jsonl"
    return holder.get("pid") if holder.get("pid") and metrics.exists() and metrics.read_text().strip() else None


@pytest.mark.slow
def test_kill_9_of_a_running_study_leaves_no_worker_training_and_the_study_resumes(tmp_path):
    """The end-to-end case of the issue: ``ibit-deploy compare`` killed while its worker trains; the same command
    then resumes the run from its last epoch."""
    from ibit_deploy.cli.main import main

    out = tmp_path / "study"
    # synthetic:256 -> 12 batches of 16 per epoch: 240 steps are 20 epochs
    argv = ["compare", "--data", "synthetic:256", "--candidates", "vit", "--seeds", "0", "--fractions", "1.0",
            "--embed-dim", "32", "--depth", "2", "--num-heads", "2", "--batch-size", "16", "--steps", "240",
            "--latency-seconds", "0.1", "--out", str(out), "--no-report"]
    study = subprocess.Popen([sys.executable, "-m", "ibit_deploy.cli.main", *argv], env=_env(),
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=_default_sigint)
    run_dir = layout.run_dir(out, "s0/f100/vit")
    worker = None
    try:
        deadline = time.monotonic() + 240
        while (worker := _worker_pid(run_dir)) is None:
            assert study.poll() is None and time.monotonic() < deadline, "the worker never trained an epoch"
            time.sleep(0.02)
        assert _running(worker) and worker != study.pid
        study.send_signal(signal.SIGKILL)
        study.wait(timeout=30)
        assert _gone_within(worker, 10), "the worker outlived the killed study"
        assert not (run_dir / layout.RESULT_FILE).exists(), "the kill came too late to test"
        assert json.loads((run_dir / layout.RUN_FILE).read_text())["run"]["id"] == "s0/f100/vit"
    finally:
        if worker is not None and _running(worker):
            os.kill(worker, signal.SIGKILL)
        if study.poll() is None:
            study.kill()
    assert main(argv) == 0  # the same command again
    result = json.loads((run_dir / layout.RESULT_FILE).read_text())
    assert result["resumed"] is True and [c["epoch"] for c in result["curve"]] == list(range(1, 21))
