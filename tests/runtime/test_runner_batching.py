"""``Runner.infer_all``: the one batching rule Predictor, the harness and the quantization gate share."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from ibit_deploy.devicekit.bundle import open_bundle
from ibit_deploy.runtime import OrtRunner, Predictor

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "bundle_v1"


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return np.random.default_rng(0).standard_normal((11, 1, 28, 28)).astype(np.float32)


def test_chunks_pad_and_drop_the_padding(images):
    b = open_bundle(FIXTURE)
    spec = dataclasses.replace(b.input, min_batch=4, max_batch=8)
    with OrtRunner(b.file("model.onnx"), spec, threads=1) as runner:
        calls = []
        infer = runner.infer
        runner.infer = lambda x: calls.append(len(x)) or infer(x)  # record the batch sizes actually run
        got = runner.infer_all(images)
        one = runner.infer_all(images[:1])
        runner.infer = infer
        with pytest.raises(ValueError, match="batch 1 is outside"):
            runner.infer(images[:1])
    assert calls == [8, 4, 4]  # 11 = 8 + 3 padded to the minimum 4; then 1 padded to 4
    with OrtRunner(b.file("model.onnx"), dataclasses.replace(spec, min_batch=1), threads=1) as runner:
        expected = np.concatenate([runner.infer(images[i:i + 1]) for i in range(len(images))])
    assert got.shape == (11, 10) and np.allclose(got, expected, atol=1e-5)
    assert np.allclose(one, expected[:1], atol=1e-5)


def test_predictor_pads_a_short_batch_to_the_minimum(tmp_path):
    """Before, Predictor sent one image to an artifact whose minimum batch is 2 and failed; the harness padded."""
    import json
    import shutil

    bundle = tmp_path / "b"
    shutil.copytree(FIXTURE, bundle)
    raw = json.loads((bundle / "manifest.json").read_text())
    raw["input"]["batch_range"] = [2, 8]
    (bundle / "manifest.json").write_text(json.dumps(raw))
    with Predictor(bundle, backend="ort-cpu", threads=1) as predictor:
        assert predictor.predict([np.zeros((28, 28), np.uint8)]).logits.shape == (1, 10)
