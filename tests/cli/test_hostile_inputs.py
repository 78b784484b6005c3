"""Commands probed as a hostile user would (issue 22): each finding is bad input, exit 2 with a message naming what
is wrong, never a hang, a MemoryError (exit 70) or a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ibit_deploy.cli.main import main

from ..conftest import exit_code

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs here")
@pytest.mark.parametrize("command", [["calibrate", "--spec", "synthetic:64", "--count", "16"],
                                     ["masks", "ibit_test_patch4_28"]])
def test_an_output_on_a_fifo_is_refused_without_reading_it(tmp_path, command):
    """Recognising what a FIFO holds would block forever on the read: it is refused from its type."""
    fifo = tmp_path / "out fifo"
    os.mkfifo(fifo)
    result = subprocess.run([sys.executable, "-m", "ibit_deploy.cli.main", *command, "--out", str(fifo)],
                            capture_output=True, text=True, timeout=120, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 2, result.stderr
    assert f"{fifo}: it is a special file (a FIFO, device or socket)" in result.stderr


def test_an_absurd_synthetic_count_is_bad_input_not_a_memory_error(tiny_checkpoint, capsys):
    assert exit_code(main, ["eval", str(tiny_checkpoint), "--data", "synthetic:99999999999999"]) == 2
    assert "synthetic:99999999999999: at most 100000 images" in capsys.readouterr().err


def test_unicode_and_spaces_in_paths_export_and_bench(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "bündle mit Leerzeichen"
    assert main(["export", str(tiny_checkpoint), "--out", str(out), "--quiet"]) == 0
    assert main(["bench", str(out), "--backends", "ort-cpu", "--batches", "1", "--iters", "1", "--limit", "8",
                 "--quiet", "--out", str(tmp_path / "bench ü")]) == 0

