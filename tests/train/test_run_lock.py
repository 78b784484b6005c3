"""A training run directory has one writer: a second ``ibit-train`` into the same --out, started while the first
runs, fails at once naming the holder (two real processes); with --wait it waits for the holder instead, then
applies the usual --out checks."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ibit_deploy.devicekit.locking import read_holder

# a run that lasts until the test stops it: one step per epoch, no validation until the (far) last epoch
LONG_RUN = ["--model", "ibit_test_patch4_28", "--data", "synthetic:64", "--batch-size", "8", "--epochs", "100000",
            "--max-steps-per-epoch", "1", "--val-every", "100000", "--warmup-epochs", "0", "--num-workers", "0",
            "--quiet"]


def _default_sigint() -> None:
    """Run in the child before it starts: SIGINT back to its default action.

    A non-interactive shell starts background jobs with SIGINT ignored and children inherit that, so a suite run
    from one (``pytest &``, CI runners) would send a SIGINT the child never receives. Only tests that interrupt a
    child need this; they must pass however the suite was launched.
    """
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def interruptible(argv: list[str], **kwargs) -> subprocess.Popen:
    """``subprocess.Popen(argv, **kwargs)`` with SIGINT at its default in the child, so the test can interrupt it."""
    return subprocess.Popen(argv, preexec_fn=_default_sigint, **kwargs)


def _train(out: Path, *extra: str, stderr=subprocess.PIPE) -> subprocess.Popen:
    return interruptible([sys.executable, "-m", "ibit_deploy.cli.train", *LONG_RUN, "--out", str(out), *extra],
                         stdout=subprocess.DEVNULL, stderr=stderr, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})


def test_children_the_test_interrupts_get_sigint_even_when_the_suite_ignores_it():
    """What a background shell does to the suite: SIGINT ignored, inherited by every child started without care."""
    probe = [sys.executable, "-c", "import signal; print(signal.getsignal(signal.SIGINT) is signal.default_int_handler)"]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        careless = subprocess.run(probe, capture_output=True, text=True, check=True).stdout.strip()
        child = interruptible(probe, stdout=subprocess.PIPE, text=True)
        careful = child.communicate(timeout=60)[0].strip()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert careless == "False"  # Python leaves an inherited SIG_IGN alone: the SIGINT would never arrive
    assert careful == "True"


def _wait_for(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _epochs(out: Path) -> list[int]:
    path = out / "metrics.jsonl"
    lines = path.read_text().splitlines() if path.exists() else []
    return [json.loads(line)["epoch"] for line in lines if line.strip()]


@pytest.mark.slow
def test_a_second_training_into_a_running_out_fails_at_once_or_waits(tmp_path):
    out = tmp_path / "run"
    first = _train(out)
    log = tmp_path / "waiting.log"
    waiting = None
    try:
        _wait_for(lambda: (read_holder(out) or {}).get("pid") == first.pid, "the first run to take the lock")
        _wait_for(lambda: len(_epochs(out)) >= 1 or first.poll() is not None, "the first run's first epoch")
        assert first.poll() is None, first.stderr.read()

        with open(log, "w") as stderr:  # both start now: their start-up (importing torch) is the slow part
            second = _train(out)
            waiting = _train(out, "--wait", stderr=stderr)
            _, err = second.communicate(timeout=120)
            assert second.returncode == 1, err
            assert f"is being written by pid {first.pid}" in err and "train" in err and "--wait" in err
            assert "Traceback" not in err
            _wait_for(lambda: "waiting for it to finish" in log.read_text(), "the --wait run to report that it waits")
            time.sleep(1.0)
            assert waiting.poll() is None  # still waiting while the first one trains
            assert (read_holder(out) or {}).get("pid") == first.pid
            first.send_signal(signal.SIGINT)  # the first run stops; its lock goes with it
            assert first.wait(timeout=60) == 130
            # the waiter now holds the directory and applies the usual check: a fresh run refuses another run's files
            assert waiting.wait(timeout=120) == 2, log.read_text()
        assert "already holds a training run" in log.read_text()
    finally:
        for proc in (first, waiting):
            if proc is not None and proc.poll() is None:
                proc.kill()
                proc.wait(timeout=30)
    epochs = _epochs(out)
    assert epochs == list(range(1, len(epochs) + 1))  # one run's epochs, none interleaved or repeated
    assert read_holder(out) is None
