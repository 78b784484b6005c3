"""Build export/cpp's ort_runner with CMake and check its logits against onnxruntime's Python API.

Needs cmake, a C++ compiler and the ONNX Runtime C++ headers (a system libonnxruntime-dev, ``ORT_INCLUDE_DIR``, or
the cache export/cpp/fetch_ort_headers.sh fills); the library is the onnxruntime wheel's. Skipped otherwise.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

CPP_DIR = Path(__file__).resolve().parents[2] / "export" / "cpp"


def _ort_headers() -> str | None:
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "ibit-deploy" / "onnxruntime" / "include"
    for candidate in (os.environ.get("ORT_INCLUDE_DIR"), cache, "/usr/include/onnxruntime"):
        if candidate and (Path(candidate) / "onnxruntime_cxx_api.h").is_file():
            return str(candidate)
    return None


@pytest.fixture(scope="module")
def ort_runner(tmp_path_factory) -> Path:
    if not shutil.which("cmake"):
        pytest.skip("cmake is not installed")
    if not (shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")):
        pytest.skip("no C++ compiler")
    headers = _ort_headers()
    if headers is None:
        pytest.skip("ONNX Runtime C++ headers not found: run export/cpp/fetch_ort_headers.sh or set ORT_INCLUDE_DIR")
    build = tmp_path_factory.mktemp("cpp_build")
    configure = subprocess.run(["cmake", "-S", str(CPP_DIR), "-B", str(build), "-DIBIT_WITH_TENSORRT=OFF",
                                f"-DORT_INCLUDE_DIR={headers}", f"-DORT_PYTHON={sys.executable}"],
                               capture_output=True, text=True, timeout=300)
    assert configure.returncode == 0, configure.stdout + configure.stderr
    compiled = subprocess.run(["cmake", "--build", str(build), "-j2"], capture_output=True, text=True, timeout=600)
    assert compiled.returncode == 0, compiled.stdout + compiled.stderr
    return build / "ort_runner"


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> tuple[Path, np.ndarray]:
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.GELU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 10)).eval()
    images = torch.randn(5, 3, 16, 16)
    path = tmp_path_factory.mktemp("model") / "model.onnx"
    torch.onnx.export(model, (images,), str(path), input_names=["images"], output_names=["logits"],
                      dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    return path, images.numpy()


def _reference(model: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    return session.run(None, {"images": images})[0]


@pytest.mark.slow
def test_ort_runner_matches_onnxruntime_python(ort_runner, tiny_model, tmp_path):
    model, images = tiny_model
    np.save(tmp_path / "images.npy", images)
    result = subprocess.run([str(ort_runner), "--model", str(model), "--input", str(tmp_path / "images.npy"),
                             "--out", str(tmp_path / "logits.npy"), "--iters", "5", "--json",
                             str(tmp_path / "report.json")], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "input: images 5x3x16x16" in result.stdout and "sample 4:" in result.stdout
    np.testing.assert_allclose(np.load(tmp_path / "logits.npy"), _reference(model, images), atol=1e-4, rtol=0)
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["iterations"] == 5 and len(report["times_ms"]) == 5
    assert report["latency_ms"]["p50"] <= report["latency_ms"]["p99"]


@pytest.mark.slow
def test_ort_runner_reads_raw_float32(ort_runner, tiny_model, tmp_path):
    model, images = tiny_model
    images[:2].tofile(tmp_path / "images.f32")
    result = subprocess.run([str(ort_runner), "--model", str(model), "--input", str(tmp_path / "images.f32"),
                             "--out", str(tmp_path / "logits.f32"), "--topk", "0"],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    logits = np.fromfile(tmp_path / "logits.f32", dtype=np.float32).reshape(2, 10)
    np.testing.assert_allclose(logits, _reference(model, images[:2]), atol=1e-4, rtol=0)


@pytest.mark.slow
def test_ort_runner_reports_bad_arguments(ort_runner, tiny_model, tmp_path):
    model, _ = tiny_model
    result = subprocess.run([str(ort_runner), "--model", str(model), "--iters", "many"], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 2 and "--iters must be an integer >= 0, got 'many'" in result.stderr
    (tmp_path / "wrong.npy").write_bytes(b"not numpy")
    result = subprocess.run([str(ort_runner), "--model", str(model), "--input", str(tmp_path / "wrong.npy")],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 1 and "not a .npy file" in result.stderr
