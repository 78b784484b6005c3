"""The directory lock, with real concurrent processes: one writer at a time, clear messages, stale locks taken over."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ibit_deploy.devicekit.locking import LockBusy, directory_lock, lock_path, read_holder


def test_lock_file_lives_beside_the_directory(tmp_path):
    assert lock_path(tmp_path / "bundle") == tmp_path / ".bundle.lock"
    with directory_lock(tmp_path / "bundle", "me"):
        holder = read_holder(tmp_path / "bundle")
        assert holder["pid"] == os.getpid() and holder["purpose"] == "me" and holder["host"]
        assert not (tmp_path / "bundle").exists()  # the lock does not create or touch the directory
    assert read_holder(tmp_path / "bundle") is None


def test_a_second_process_fails_at_once_naming_the_holder(tmp_path, lock_holder):
    proc = lock_holder(tmp_path / "b", 30)
    try:
        with pytest.raises(LockBusy, match=rf"being written by pid {proc.pid} on .* since"), directory_lock(tmp_path / "b", wait=False):
            pass
        messages: list[str] = []
        with pytest.raises(LockBusy, match="still being written"), directory_lock(tmp_path / "b", wait=True, timeout=0.3, message=messages.append):
            pass
        assert "waiting for it to finish (at most 0.3 s)" in messages[0]
    finally:
        proc.kill()
        proc.wait()


def test_a_waiting_writer_gets_the_lock_when_the_holder_exits(tmp_path, lock_holder):
    proc = lock_holder(tmp_path / "b", 1.0)
    start = time.monotonic()
    messages: list[str] = []
    with directory_lock(tmp_path / "b", wait=True, timeout=30, message=messages.append):
        assert time.monotonic() - start >= 0.9  # only once the holder's second was over
        assert read_holder(tmp_path / "b")["pid"] == os.getpid()
    proc.wait(timeout=30)
    assert len(messages) == 1 and f"pid {proc.pid}" in messages[0]


def test_a_dead_holders_lock_is_taken_over(tmp_path, lock_holder):
    proc = lock_holder(tmp_path / "b", 30)
    proc.kill()  # no clean release: the record stays, the kernel drops the flock
    proc.wait()
    assert read_holder(tmp_path / "b")["pid"] == proc.pid
    messages: list[str] = []
    with directory_lock(tmp_path / "b", wait=False, message=messages.append):
        pass
    assert "taking over a stale lock" in messages[0] and f"pid {proc.pid}" in messages[0]


def test_reentrant_within_a_process(tmp_path):
    with directory_lock(tmp_path / "b"), directory_lock(tmp_path / "b", wait=False):
        assert read_holder(tmp_path / "b")["pid"] == os.getpid()
    assert read_holder(tmp_path / "b") is None


def test_the_lock_survives_the_directory_being_replaced(tmp_path, lock_holder):
    target = tmp_path / "b"
    target.mkdir()
    proc = lock_holder(target, 30)
    try:
        staging = tmp_path / ".b.staging"
        staging.mkdir()
        target.rename(tmp_path / ".b.old")
        staging.rename(target)  # the swap issue 15 will do
        with pytest.raises(LockBusy), directory_lock(target, wait=False):
            pass
    finally:
        proc.kill()
        proc.wait()


UPDATE = textwrap.dedent("""
    import sys
    from ibit_deploy.devicekit.manifest import update_manifest
    for i in range(int(sys.argv[3])):
        update_manifest(sys.argv[1], results=[{"writer": sys.argv[2], "i": i}])
""")


def test_concurrent_manifest_updates_lose_nothing(tmp_path):
    """Two processes appending results (as the harness does) at the same time: every entry ends in the manifest."""
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(Path(__file__).resolve().parent.parent / "fixtures" / "bundle_v1", bundle)
    procs = [subprocess.Popen([sys.executable, "-c", UPDATE, str(bundle), name, "15"], stderr=subprocess.PIPE,
                              text=True) for name in ("a", "b")]
    for proc in procs:
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    results = json.loads((bundle / "manifest.json").read_text())["results"]
    assert sorted((r["writer"], r["i"]) for r in results if "writer" in r) == sorted(
        (w, i) for w in ("a", "b") for i in range(15))
