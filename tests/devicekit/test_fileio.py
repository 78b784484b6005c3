"""Atomic writes: temps of killed writes are removed by the next write into the directory; live ones are kept."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

from ibit_deploy.devicekit.fileio import atomic_write_json, is_atomic_temp, read_json, remove_stale_temps


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


def test_hostile_json_is_refused_naming_the_file(tmp_path):
    """Nesting deep enough to exhaust the interpreter's recursion, and a file bigger than any record, are bad input."""
    import pytest

    deep = tmp_path / "deep.json"
    deep.write_text("[" * 200_000 + "]" * 200_000)
    with pytest.raises(ValueError, match=r"deep\.json is not a valid run record: JSON nested deeper than 64"):
        read_json(deep, "run record")
    big = tmp_path / "big.json"
    big.write_text(json.dumps({"pad": "x" * 2048}))
    with pytest.raises(ValueError, match=r"big\.json is not a valid manifest: \d+ bytes, more than the 1024"):
        read_json(big, "manifest", max_bytes=1024)
    with pytest.raises(ValueError, match="deep.json is not a valid JSON file"):  # past a raised bound: still no crash
        read_json(deep, max_depth=10**6)
    text = tmp_path / "strings.json"
    text.write_text(json.dumps({"a": "[[[[{{{{" * 100, "b": [[1]]}))  # brackets inside strings do not count
    assert read_json(text)["b"] == [[1]]


def test_atomic_named_path_keeps_the_name_and_leaves_nothing_on_failure(tmp_path):
    import pytest

    from ibit_deploy.devicekit.fileio import atomic_named_path

    target = tmp_path / "model.ep"
    with atomic_named_path(target) as tmp:
        assert tmp.name == "model.ep" and tmp.parent != tmp_path
        tmp.write_bytes(b"new")
    assert target.read_bytes() == b"new"
    with pytest.raises(RuntimeError), atomic_named_path(target) as tmp:
        tmp.write_bytes(b"half")
        raise RuntimeError("killed")
    assert target.read_bytes() == b"new" and sorted(p.name for p in tmp_path.iterdir()) == ["model.ep"]
