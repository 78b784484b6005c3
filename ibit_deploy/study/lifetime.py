"""A study's worker processes end with the process that started them, however it ends (``kill -9`` included).

A worker trains for up to hours. Had the ``ibit-deploy compare`` parent been killed outright, its workers went on as
orphans: still training, still holding their run folders' locks (the next session then waited on them). Two parts:

- the parent starts each worker with :func:`spawn`: in its own process group (the parent's SIGTERM/SIGKILL of the
  group on Ctrl-C reaches whatever the worker started, and a terminal's Ctrl-C reaches the parent only, which then
  stops its workers itself), with the parent's pid in :data:`PARENT_ENV`;
- the worker calls :func:`tie_to_parent` first thing: on Linux ``prctl(PR_SET_PDEATHSIG, SIGKILL)`` (through ctypes),
  so the kernel kills it when the parent dies; elsewhere, or where prctl is refused, a daemon thread that watches the
  parent pid and ends the process when it changes (the worker was re-parented). Either way it then checks that the
  parent is still the one named in the environment: a parent that died before the tie was made is caught too.

A worker killed this way loses at most its current epoch: training resumes from its last finished epoch
(``ibit_deploy.train``), and a half-written result is never read (``result.json`` is written last, atomically).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from typing import Any

PARENT_ENV = "IBIT_DEPLOY_STUDY_PARENT_PID"
PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
WATCH_INTERVAL_S = 0.5
EXIT_ORPHANED = 128 + signal.SIGKILL  # what the parent-death signal gives; the watchdog exits with the same code


def spawn(argv: Sequence[str], env: dict[str, str] | None = None, **popen: Any) -> subprocess.Popen:
    """Start a worker ``argv`` in its own process group, told who its parent is (:func:`tie_to_parent` reads it)."""
    child_env = {**(os.environ if env is None else env), PARENT_ENV: str(os.getpid())}
    return subprocess.Popen(list(argv), env=child_env, start_new_session=True, **popen)


def stop_all(procs: Sequence[subprocess.Popen], timeout: float = 30.0) -> None:
    """SIGTERM each worker's process group, wait up to ``timeout`` seconds in all, then SIGKILL what is left."""
    for proc in procs:
        _signal_group(proc, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for proc in procs:
        try:
            proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            _signal_group(proc, signal.SIGKILL)
            proc.wait()


def _signal_group(proc: subprocess.Popen, sig: int) -> None:
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, sig)  # the worker leads its own group (spawn)
    except (ProcessLookupError, PermissionError):
        proc.send_signal(sig)


def _prctl_pdeathsig(sig: int) -> bool:
    """``prctl(PR_SET_PDEATHSIG, sig)``; False where there is no prctl (not Linux) or it is refused."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        return libc.prctl(PR_SET_PDEATHSIG, ctypes.c_ulong(sig), 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


def _watch(parent: int, interval: float) -> None:
    while os.getppid() == parent:
        time.sleep(interval)
    os._exit(EXIT_ORPHANED)


def tie_to_parent(parent: int | None = None, *, use_prctl: bool = True,
                  interval: float = WATCH_INTERVAL_S) -> str | None:
    """End this process when its parent ends; returns how ("prctl" or "watchdog"), or None when no parent was named.

    ``parent`` defaults to the pid in :data:`PARENT_ENV` (set by :func:`spawn`); a process started otherwise (a
    worker run by hand) is left alone. ``use_prctl=False`` forces the watchdog (the fallback; tested on Linux too).
    """
    if parent is None:
        named = os.environ.pop(PARENT_ENV, "")  # not inherited by what this process starts: it has another parent
        if not named.isdigit():
            return None
        parent = int(named)
    how = "prctl" if use_prctl and _prctl_pdeathsig(signal.SIGKILL) else "watchdog"
    if how == "watchdog":
        threading.Thread(target=_watch, args=(parent, interval), name="parent-watchdog", daemon=True).start()
    if os.getppid() != parent:  # the parent died before the tie was made: nothing will signal us now
        os._exit(EXIT_ORPHANED)
    return how
