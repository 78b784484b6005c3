"""Atomic writes: temps of killed writes are removed by the next write into the directory; live ones are kept."""

from __future__ import annotations

import os
import subprocess
import sys
import time

from ibit_deploy.fileio import atomic_write_json, is_atomic_temp, read_json, remove_stale_temps


def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid  # exited and reaped: no process has it (pids are not reused this fast)


def test_temps_of_killed_writes_are_removed_by_the_next_write(tmp_path):
    stale = tmp_path / f".model.onnx.{_dead_pid()}.abcd1234.tmp"
    stale.write_bytes(b"half an onnx")
    old_style = tmp_path / ".calib.npz.k3j4h5g6.tmp"  # pid-less name of earlier versions, an hour old
    old_style.write_bytes(b"half an npz")
    hour_ago = time.time() - 2 * 3600
    os.utime(old_style, (hour_ago, hour_ago))
    atomic_write_json(tmp_path / "manifest.json", {"a": 1})
    assert not stale.exists() and not old_style.exists()
    assert read_json(tmp_path / "manifest.json") == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["manifest.json"]


def test_temps_of_running_writes_and_other_files_are_kept(tmp_path):
    live = tmp_path / f".model.onnx.{os.getppid()}.abcd1234.tmp"  # our parent is alive
    fresh_old_style = tmp_path / ".calib.npz.k3j4h5g6.tmp"  # pid-less but recent: may still be written
    other = tmp_path / "notes.tmp"
    for path in (live, fresh_old_style, other):
        path.write_bytes(b"x")
    assert remove_stale_temps(tmp_path) == []
    assert live.exists() and fresh_old_style.exists() and other.exists()
    assert is_atomic_temp(live.name) and not is_atomic_temp(other.name)
