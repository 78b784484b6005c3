"""On a GPU with TensorRT: the packaged ONNX (folded first layer, softmax, fixed batch) builds and matches ORT.

This is what nvinfer and imagenet do first with a package (parse the ONNX, build an engine). Skipped without
TensorRT, cuda-python and a CUDA GPU (untested on the CPU-only development machine).
"""

from __future__ import annotations

import numpy as np
import onnxruntime as ort
import pytest

from ibit_deploy.devicekit.profile import InputSpec
from ibit_deploy.package import package_bundle

from .test_package_exactness import jetson_tensor, nvinfer_tensor

# skip before the trained-bundle fixture is built (training takes a minute on CPU)
pytest.importorskip("tensorrt", reason="needs the TensorRT Python package (JetPack or NVIDIA's wheel)")
pytest.importorskip("cuda", reason="needs cuda-python for device buffers")


@pytest.mark.gpu
@pytest.mark.tensorrt
@pytest.mark.parametrize("target", ["deepstream", "jetson-inference"])
def test_packaged_onnx_builds_and_matches_ort(trained_bundle, digits, tmp_path, target):
    from ibit_deploy.devicekit.profile import EngineProfile
    from ibit_deploy.devicekit.session import cuda_device_count
    from ibit_deploy.runtime.tensorrt_runner import TrtRunner
    from ibit_deploy.trt.build import build_engine

    if not cuda_device_count():
        pytest.skip("needs a CUDA GPU")
    out = tmp_path / target
    package_bundle(trained_bundle[0], target, out)
    if target == "deepstream":
        tensor, batch = nvinfer_tensor(out / "config_infer_primary_classifier.txt", digits[:8]), 8
    else:
        tensor, batch = jetson_tensor(np.repeat(digits[:1], 3, axis=-1)), 1
    build_engine(out / "model.onnx", out / "engine.plan",
                 EngineProfile("images", tuple(int(d) for d in tensor.shape[1:]), 1, batch, batch))
    reference = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"]).run(
        None, {"images": tensor})[0]
    spec = InputSpec("images", *tensor.shape[1:], min_batch=1, max_batch=batch)
    with TrtRunner(out / "engine.plan", spec) as runner:
        np.testing.assert_allclose(runner.infer(tensor), reference, atol=1e-3)
