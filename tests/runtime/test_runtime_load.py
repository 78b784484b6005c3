"""load() and Predictor, the Python embedding API: same logits as ONNX Runtime called directly."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ibit_deploy.data import load_source, preprocess_images
from ibit_deploy.devicekit.manifest import load_manifest
from ibit_deploy.runtime.base import BackendUnavailable, InputSpec
from ibit_deploy.runtime.load import canonical_backend, load, make_runners
from ibit_deploy.runtime.ort_runner import OrtRunner
from ibit_deploy.runtime.predictor import Predictor


@pytest.fixture(scope="module")
def bundle(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint exported once per session (shared with tests/bench, which builds the same path)."""
    from ibit_deploy.export.pipeline import ExportOptions, export_checkpoint

    path = tmp_path_factory.getbasetemp() / "bench-tiny-bundle"
    if not (path / "manifest.json").is_file():
        export_checkpoint(tiny_checkpoint, path, ExportOptions())
    return path


@pytest.fixture(scope="module")
def digits() -> np.ndarray:
    """Eight real MNIST digits, uint8 (8, 28, 28, 1)."""
    return load_source("mnist5k").images[:8]


def _ort_direct(bundle: Path, images: np.ndarray) -> np.ndarray:
    manifest = load_manifest(bundle)
    with OrtRunner(bundle / "model.onnx", InputSpec.from_manifest(manifest)) as runner:
        return runner.infer(images)


def test_load_matches_ort_direct_and_auto_falls_back_to_cpu(bundle: Path, digits: np.ndarray):
    inp = load_manifest(bundle)["input"]
    x = preprocess_images(digits, tuple(inp["image_size"]), tuple(inp["mean"]), tuple(inp["std"]))
    expected = _ort_direct(bundle, x)
    with load(bundle, "ort-cpu", threads=1, ort_graph="plain") as runner:
        np.testing.assert_array_equal(runner.infer(x), expected)
    with load(bundle) as runner:  # no engine, no CUDA here: auto ends at ORT CPU, on the fused model.ort.onnx
        assert runner.backend == "ort-cpu" and runner.onnx_path.name == "model.ort.onnx"
        np.testing.assert_allclose(runner.infer(x), expected, atol=1e-5)  # fused kernels round differently
    with load(bundle, "torch") as runner:  # the folded checkpoint agrees to float precision
        np.testing.assert_allclose(runner.infer(x), expected, atol=1e-4)


def test_unavailable_and_unknown_backends_say_why(bundle: Path):
    with pytest.raises(BackendUnavailable, match="CUDAExecutionProvider"):
        load(bundle, "ort-cuda")
    with pytest.raises(BackendUnavailable, match="no TensorRT engine"):
        load(bundle, "tensorrt")
    with pytest.raises(BackendUnavailable, match="no fp16 onnx artifact"):
        load(bundle, "ort-cpu", precision="fp16")
    with pytest.raises(ValueError, match="unknown backend 'onnx'"):
        load(bundle, "onnx")
    assert canonical_backend("ORT-TensorRT") == "ort-trt"


def test_make_runners_names_rows_and_keeps_reasons(bundle: Path):
    manifest = load_manifest(bundle)
    rows = make_runners(bundle, ["ort-cpu", "tensorrt", "torch-ref"], manifest, precisions=["fp32", "int8"])
    assert [(r.name, isinstance(r.runner, str)) for r in rows] == [
        ("ort-cpu:fp32", False), ("ort-cpu:int8", True), ("tensorrt", True), ("torch-ref", False)]
    assert rows[0].artifact == "model.ort.onnx" and rows[3].artifact == manifest["source"]["path"]


def test_predictor_uint8_and_pil_inputs(bundle: Path, digits: np.ndarray):
    from PIL import Image

    inp = load_manifest(bundle)["input"]
    expected = _ort_direct(bundle, preprocess_images(digits, tuple(inp["image_size"]), tuple(inp["mean"]),
                                                     tuple(inp["std"])))
    with Predictor(bundle, "ort-cpu") as predictor:
        out = predictor.predict(digits)
        np.testing.assert_allclose(out.logits, expected, atol=1e-6)
        assert out.labels == [str(i) for i in expected.argmax(1)]
        np.testing.assert_allclose(out.probabilities.sum(1), 1.0, atol=1e-5)
        pil = [Image.fromarray(d[:, :, 0]).convert("RGB") for d in digits[:2]]  # colour images become "L"
        np.testing.assert_allclose(predictor.predict_logits(pil), expected[:2], atol=1e-6)
        single = predictor.predict(digits[0, :, :, 0])  # one (H, W) image
        assert single.logits.shape == (1, 10) and len(single.top_k(3)[0]) == 3
        big = np.kron(digits[:1], np.ones((1, 2, 2, 1), np.uint8))  # 56x56: resized as the manifest says
        assert predictor.predict([big[0], digits[1]]).logits.shape == (2, 10)
        with pytest.raises(ValueError, match=r"expected \(H, W\) or \(H, W, 1\)"):
            predictor.predict(np.zeros((28, 28, 3), np.uint8))
        with pytest.raises(TypeError, match="uint8"):
            predictor.predict(np.zeros((28, 28), np.float32))


def test_input_size_mismatch_is_a_clear_error(bundle: Path):
    with load(bundle, "ort-cpu") as runner, pytest.raises(ValueError, match=r"expected shape \(batch, 1, 28, 28\)"):
        runner.infer(np.zeros((2, 1, 32, 32), np.float32))
