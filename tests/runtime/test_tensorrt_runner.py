"""TrtRunner: clear BackendUnavailable without TensorRT or a GPU; on a GPU machine, engine outputs match ORT."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from ibit_deploy.devicekit.manifest import artifact_entry, write_manifest
from ibit_deploy.runtime import tensorrt_runner
from ibit_deploy.runtime.base import BackendUnavailable, InputSpec
from ibit_deploy.runtime.tensorrt_runner import TrtRunner, cuda_check

SPEC = InputSpec(name="images", channels=3, height=16, width=16, min_batch=1, max_batch=8)


def test_without_tensorrt_open_raises_backend_unavailable(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # `import tensorrt` fails, as on this CPU-only machine
    runner = TrtRunner(tmp_path / "engine.plan", SPEC)
    with pytest.raises(BackendUnavailable, match=r"`import tensorrt` failed .*JetPack"):
        runner.open()
    assert not runner.is_open


def test_without_gpu_open_raises_backend_unavailable(tmp_path):
    no_driver = types.SimpleNamespace(cudaGetDeviceCount=lambda: (35, None))  # cudaErrorInsufficientDriver
    modules = lambda: (types.ModuleType("tensorrt"), no_driver)  # noqa: E731
    with pytest.raises(BackendUnavailable, match="no CUDA GPU is visible"), \
            TrtRunner(tmp_path / "e.plan", SPEC, import_backend=modules):
        pass


def test_without_cuda_python_open_raises_backend_unavailable(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", types.ModuleType("tensorrt"))

    def missing():
        raise ImportError("No module named 'cuda'")

    with pytest.raises(BackendUnavailable, match="cuda-python is not installed"):
        TrtRunner(tmp_path / "e.plan", SPEC, import_backend=lambda: tensorrt_runner.import_trt_backend(missing)).open()


def test_infer_before_open_is_an_error(tmp_path):
    with pytest.raises(RuntimeError, match="not open"):
        TrtRunner(tmp_path / "e.plan", SPEC).infer(np.zeros((1, 3, 16, 16), np.float32))


def test_cuda_check_unpacks_and_names_the_call():
    ok = types.SimpleNamespace(value=0)
    assert cuda_check((ok, 1234), "cudaMalloc") == 1234
    assert cuda_check((ok,), "cudaFree") is None
    failed = types.SimpleNamespace(value=2, name="cudaErrorMemoryAllocation")
    with pytest.raises(RuntimeError, match=r"cudaMalloc \(x\) failed: CUDA error 2 \(cudaErrorMemoryAllocation\)"):
        cuda_check((failed, None), "cudaMalloc (x)")


def test_from_bundle_uses_the_manifest(tmp_path):
    (tmp_path / "fp16.plan").write_bytes(b"engine")
    manifest = {"input": {"name": "images", "shape": ["batch", 1, 28, 28], "batch_range": [1, 32]},
                "artifacts": [artifact_entry(tmp_path, "fp16.plan", "engine", "fp16")]}
    write_manifest(tmp_path, manifest)
    runner = TrtRunner.from_bundle(tmp_path)
    assert runner.engine_path == tmp_path / "fp16.plan"
    assert (runner.spec.channels, runner.spec.height, runner.spec.max_batch) == (1, 28, 32)
    assert runner.describe() == {"backend": "tensorrt", "engine": str(tmp_path / "fp16.plan"), "device_index": 0}


# --------------------------------------------------------------------------------------------- on a GPU

def _tiny_onnx(path: Path) -> np.ndarray:
    """Export a small conv net with input ``images`` (dynamic batch) to ``path``; return a probe batch."""
    import torch

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.GELU(), torch.nn.AdaptiveAvgPool2d(1),
                                torch.nn.Flatten(), torch.nn.Linear(8, 10)).eval()
    probe = torch.randn(4, 3, 16, 16)
    torch.onnx.export(model, (probe,), str(path), input_names=["images"], output_names=["logits"],
                      dynamic_axes={"images": {0: "batch"}, "logits": {0: "batch"}}, opset_version=17, dynamo=False)
    return probe.numpy()


@pytest.mark.gpu
@pytest.mark.tensorrt
def test_engine_matches_onnxruntime_on_gpu(tmp_path):
    pytest.importorskip("tensorrt", reason="needs the TensorRT Python package (JetPack or NVIDIA's wheel)")
    pytest.importorskip("cuda", reason="needs cuda-python for device buffers")
    from ibit_deploy.devicekit.profile import EngineProfile
    from ibit_deploy.devicekit.session import cuda_device_count
    from ibit_deploy.trt.build import build_engine

    if not cuda_device_count():
        pytest.skip("needs a CUDA GPU")
    import onnxruntime as ort

    probe = _tiny_onnx(tmp_path / "model.onnx")
    info = build_engine(tmp_path / "model.onnx", tmp_path / "engine.plan", EngineProfile("images", (3, 16, 16), 1, 4, 8),
                        timing_cache=tmp_path / "timing.cache")
    assert info["strongly_typed"] and (tmp_path / "timing.cache").is_file()
    reference = ort.InferenceSession(str(tmp_path / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"images": probe})[0]
    with TrtRunner(tmp_path / "engine.plan", SPEC) as runner:
        np.testing.assert_allclose(runner.infer(probe), reference, atol=1e-2, rtol=1e-2)  # TF32 may be on
        times = runner.time_stages(probe, iterations=5, warmup=2)
        assert set(times) == {"h2d_ms", "compute_ms", "d2h_ms"} and all(len(v) == 5 for v in times.values())
        assert all(t >= 0 for v in times.values() for t in v)
        with pytest.raises(ValueError, match="outside the artifact's range"):
            runner.infer(np.zeros((9, 3, 16, 16), np.float32))
