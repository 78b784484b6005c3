"""A benchmark that would time nothing is refused up front, and one that timed nothing is neither complete nor 0."""

from __future__ import annotations

import json
from pathlib import Path

import onnxruntime as ort
import pytest

from ibit_deploy.cli.bench import main

FAST = ["--limit", "20", "--warmup", "1", "--iters", "2", "--threads", "1", "--quiet"]


def test_batches_beyond_the_bundle_range_are_bad_input(tiny_bundle: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    assert main([str(tiny_bundle), "--backends", "ort-cpu", "--batches", "100000", "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert "batch sizes 100000 all lie outside the bundle's batch range [1, 64]" in err
    assert not out.exists()


@pytest.mark.skipif("CUDAExecutionProvider" in ort.get_available_providers(), reason="ort-cuda runs here")
def test_every_backend_skipped_is_not_complete(bundle_copy: Path, tmp_path: Path, capsys):
    out = tmp_path / "out"
    assert main([str(bundle_copy), "--backends", "ort-cuda", "--batches", "1", "--out", str(out), *FAST]) == 3
    assert "nothing was measured: every backend was skipped" in capsys.readouterr().err
    report = json.loads((out / "report.json").read_text())
    assert report["status"] == "incomplete" and report["complete"] is False
