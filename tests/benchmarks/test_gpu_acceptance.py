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


@pytest.mark.slow
def test_lifecycle_stages_skip_with_reasons_and_run_what_needs_no_gpu(ga, tmp_path):
    """Without TensorRT and CUDA: engine-compat, refit and end-to-end CUDA skip saying why; the attention-op stage
    trains a bias-mode model for a few CPU steps and exports model.attn.onnx, gated on ONNX Runtime, for real."""
    import gpu_acceptance_lifecycle as lifecycle

    acc = ga.Acceptance(tmp_path, timeout=600)
    env = {"tensorrt": None, "cuda": False, "cuda_reason": "torch.cuda.is_available() is False"}
    lifecycle.add_lifecycle_stages(acc, env, tmp_path, tmp_path / "no-checkpoint", tmp_path / "no-bundle",
                                   bin_dir=ga.BIN, epochs=1, quick=True)
    rows = {r["stage"].split(" ")[0]: r for r in acc.rows}
    assert [rows[k]["status"] for k in ("engine-compat", "refit", "end-to-end")] == ["skip"] * 3
    assert "tensorrt Python package is not installed" in rows["refit"]["reason"]
    assert rows["attention-op"]["status"] == "pass", rows["attention-op"]["reason"]
    assert "engine not built" in rows["attention-op"]["reason"]
    manifest = json.loads((tmp_path / "bundle-attention-op" / "manifest.json").read_text())
    assert any(a["path"] == "model.attn.onnx" and a["gate"]["passed"] for a in manifest["artifacts"])


def test_digit_pngs_are_real_mnist_images(ga, tmp_path):
    import gpu_acceptance_lifecycle as lifecycle
    from PIL import Image

    folder = lifecycle.write_digit_pngs(tmp_path / "digits", count=3)
    files = sorted(folder.glob("*.png"))
    assert len(files) == 3 and Image.open(files[0]).size == (28, 28) and Image.open(files[0]).mode == "L"
