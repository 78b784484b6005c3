"""``Runner.infer_staged``: one inference split into host-to-device copy, inference and device-to-host copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ibit_deploy.devicekit.bundle import open_bundle
from ibit_deploy.runtime import OrtRunner
from ibit_deploy.runtime.base import HOST_MEMORY
from ibit_deploy.runtime.ort_runner import infer_with_binding
from ibit_deploy.runtime.torch_runner import TorchRunner

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "bundle_v1"


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((3, 1, 28, 28)).astype(np.float32)


def test_a_host_memory_backend_has_no_copies_to_time(images):
    b = open_bundle(FIXTURE)
    with OrtRunner(b.file("model.onnx"), b.input, threads=1) as runner:
        staged = runner.infer_staged(images)
        expected = runner.infer(images)
        with pytest.raises(ValueError, match="expected shape"):
            runner.infer_staged(images[:, :, :14])  # checked against the input spec like infer
    np.testing.assert_array_equal(staged.logits, expected)
    assert staged.h2d_ms is None and staged.d2h_ms is None and staged.copy_note == HOST_MEMORY
    assert staged.inference_ms > 0


def test_io_binding_path_gives_the_same_logits_and_three_stages(images):
    """The I/O-binding calls ORT CUDA uses, run here on host memory: same outputs, each stage timed."""
    b = open_bundle(FIXTURE)
    with OrtRunner(b.file("model.onnx"), b.input, threads=1) as runner:
        staged = infer_with_binding(runner.session, runner.input_name, images, "cpu")
        expected = runner.infer(images)
    np.testing.assert_array_equal(staged.logits, expected)
    assert staged.logits.dtype == np.float32 and staged.copy_note is None
    assert min(staged.h2d_ms, staged.inference_ms, staged.d2h_ms) >= 0 and staged.inference_ms > 0


def test_torch_on_cpu_times_one_stage(images):
    b = open_bundle(FIXTURE)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 10))
    spec = b.input
    with TorchRunner(model, spec, "torch-folded", threads=1) as runner:
        staged = runner.infer_staged(images)
        expected = runner.infer(images)
    np.testing.assert_array_equal(staged.logits, expected)
    assert staged.h2d_ms is None and staged.copy_note == HOST_MEMORY
