"""benchmarks/gpu_acceptance.py: stage bookkeeping, the table writer and the skip paths (no GPU needed)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_acceptance.py"


@pytest.fixture(scope="module")
def ga():
    spec = importlib.util.spec_from_file_location("gpu_acceptance", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_failing_stage_is_recorded_and_the_run_goes_on(ga, tmp_path):
    acc = ga.Acceptance(tmp_path, timeout=30)
    acc.stage("broken", lambda: 1 / 0)
    acc.stage("skipped", lambda: ("skip", "no CUDA: torch.cuda.is_available() is False"))
    code, tail = acc.run("missing tool", [tmp_path / "no-such-binary"])
    acc.stage("ok", lambda: ("pass", "fine"))
    assert [r["status"] for r in acc.rows] == ["fail", "skip", "pass"]
    assert acc.rows[0]["reason"].startswith("ZeroDivisionError") and code == 127
    with pytest.raises(ValueError, match="status must be one of"):
        acc.record("x", "maybe")
    report = ga.write_report(acc)
    assert report["passed"] is False
    text = (tmp_path / "acceptance.md").read_text()
    assert "| skipped | SKIP |" in text and "1 pass, 1 fail, 1 skip" in text
    assert json.loads((tmp_path / "acceptance.json").read_text())["rows"][1]["reason"].startswith("no CUDA")


def test_commands_are_logged_with_exit_codes(ga, tmp_path):
    acc = ga.Acceptance(tmp_path, timeout=30)
    code, tail = acc.run("echo", [sys.executable, "-c", "print('hello'); raise SystemExit(3)"])
    assert code == 3 and tail == "hello"
    assert (tmp_path / "logs" / "echo.log").read_text().endswith("hello\n")
    assert acc.facts["commands"][0]["exit"] == 3


def test_environment_probe_gives_reasons_for_what_is_missing(ga):
    env = ga.probe_environment()
    assert set(env) >= {"gpus", "cuda", "torch", "ort_providers", "tensorrt", "torch_tensorrt", "trtexec", "cmake"}
    if not env["cuda"]:
        assert "torch.cuda.is_available() is False" in env["cuda_reason"]
    if not env["gpus"]:
        assert env["gpu_reason"]


def test_bad_epochs_is_a_usage_error(ga, tmp_path):
    with pytest.raises(SystemExit) as exc:
        ga.main(["--out", str(tmp_path), "--epochs", "0"])
    assert exc.value.code == 2
