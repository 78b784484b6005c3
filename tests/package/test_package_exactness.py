"""Raw pixels -> each target's documented preprocessing -> packaged model == the bundle's logits (fp32, <= 1e-4).

The target formulas are written here from the targets' documentation, independently of ibit_deploy.package:
nvinfer ``y = net-scale-factor * (x - offsets[c])`` with the values read back from the written config;
jetson-inference ``(RGB / 255 - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)``; Triton: none (the client sends the
bundle's tensor). The reference is the bundle itself through ibit_deploy.runtime with the manifest's preprocessing.
"""

from __future__ import annotations

import configparser
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest

from ibit_deploy.data import preprocess_images
from ibit_deploy.devicekit.manifest import load_manifest
from ibit_deploy.package import package_bundle
from ibit_deploy.runtime import load

ATOL = 1e-4
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)  # jetson-inference c/imageNet.cpp


def bundle_logits(bundle: Path, pixels: np.ndarray) -> np.ndarray:
    """The original bundle's fp32 logits for uint8 NHWC pixels, preprocessed as its manifest says."""
    inp = load_manifest(bundle)["input"]
    x = preprocess_images(pixels, tuple(inp["image_size"]), tuple(inp["mean"]), tuple(inp["std"]))
    with load(bundle, backend="ort-cpu", threads=1) as runner:
        return runner.infer(x)


def packaged_outputs(path: Path, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(logits before the softmax, probabilities) of a packaged ONNX, one image at a time if its batch is fixed."""
    model = onnx.load(str(path))
    softmax = next(n for n in model.graph.node if n.op_type == "Softmax" and n.output[0] == "probabilities")
    model.graph.output.append(onnx.helper.make_tensor_value_info(softmax.input[0], onnx.TensorProto.FLOAT, None))
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    batch = session.get_inputs()[0].shape[0]
    step = batch if isinstance(batch, int) else len(tensor)
    outs = [session.run(["probabilities", softmax.input[0]], {session.get_inputs()[0].name: tensor[i:i + step]})
            for i in range(0, len(tensor), step)]
    return np.concatenate([o[1] for o in outs]), np.concatenate([o[0] for o in outs])


def nvinfer_tensor(config: Path, pixels: np.ndarray) -> np.ndarray:
    """nvinfer's documented formula with the config's own keys: y = net-scale-factor * (x - offsets[c])."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.read(config)
    props = parser["property"]
    scale = np.float32(props["net-scale-factor"])
    offsets = np.array([float(v) for v in props["offsets"].split(";")], np.float32)[None, :, None, None]
    x = pixels.astype(np.float32).transpose(0, 3, 1, 2)
    return scale * (x - offsets)


def jetson_tensor(rgb: np.ndarray) -> np.ndarray:
    mean = np.array(IMAGENET_MEAN, np.float32)[None, :, None, None]
    std = np.array(IMAGENET_STD, np.float32)[None, :, None, None]
    return (rgb.astype(np.float32).transpose(0, 3, 1, 2) / np.float32(255.0) - mean) / std


def softmax(x: np.ndarray) -> np.ndarray:
    e = np.exp(x - x.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def test_deepstream_grey_needs_no_fold_and_matches(trained_bundle, digits, tmp_path):
    bundle = trained_bundle[0]
    manifest = package_bundle(bundle, "deepstream", tmp_path / "ds")
    assert manifest["model"]["fold"] is None  # one channel: net-scale-factor and offsets express (x/255-m)/s
    logits, probs = packaged_outputs(tmp_path / "ds" / "model.onnx",
                                     nvinfer_tensor(tmp_path / "ds" / "config_infer_primary_classifier.txt", digits))
    ref = bundle_logits(bundle, digits)
    assert np.abs(logits - ref).max() <= ATOL
    assert np.abs(probs - softmax(ref)).max() <= ATOL
    assert (ref.argmax(1) == probs.argmax(1)).all()


def test_deepstream_rgb_folds_per_channel_std_exactly(rgb_bundle, colour_digits, tmp_path):
    manifest = package_bundle(rgb_bundle, "deepstream", tmp_path / "ds")
    fold = manifest["model"]["fold"]
    assert fold is not None and manifest["preprocessing"]["net-scale-factor"] == pytest.approx(1 / 255)
    config = tmp_path / "ds" / "config_infer_primary_classifier.txt"
    logits, _ = packaged_outputs(tmp_path / "ds" / "model.onnx", nvinfer_tensor(config, colour_digits))
    ref = bundle_logits(rgb_bundle, colour_digits)
    assert np.abs(logits - ref).max() <= ATOL
    # without the fold the same tensor is far off: the test can fail
    with load(rgb_bundle, backend="ort-cpu", threads=1) as runner:
        unfolded = runner.infer(nvinfer_tensor(config, colour_digits))
    assert np.abs(unfolded - ref).max() > 100 * ATOL


def test_jetson_inference_grey_bundle_from_rgb_frames(trained_bundle, digits, tmp_path):
    bundle = trained_bundle[0]
    manifest = package_bundle(bundle, "jetson-inference", tmp_path / "ji")
    assert manifest["model"]["fold"] is not None and manifest["model"]["fixed_batch"] == 1
    rgb = np.repeat(digits, 3, axis=-1)  # a grey digit as the RGB frame a camera or JPEG decoder delivers
    logits, probs = packaged_outputs(tmp_path / "ji" / "model.onnx", jetson_tensor(rgb))
    ref = bundle_logits(bundle, digits)
    assert np.abs(logits - ref).max() <= ATOL
    assert np.abs(probs - softmax(ref)).max() <= ATOL


def test_jetson_inference_rgb_bundle(rgb_bundle, colour_digits, tmp_path):
    package_bundle(rgb_bundle, "jetson-inference", tmp_path / "ji")
    logits, _ = packaged_outputs(tmp_path / "ji" / "model.onnx", jetson_tensor(colour_digits))
    assert np.abs(logits - bundle_logits(rgb_bundle, colour_digits)).max() <= ATOL


def test_triton_model_is_the_bundles_with_client_preprocessing(trained_bundle, digits, tmp_path):
    bundle = trained_bundle[0]
    manifest = package_bundle(bundle, "triton", tmp_path / "repo")
    prep = manifest["preprocessing"]
    x = digits.astype(np.float32).transpose(0, 3, 1, 2) * np.float32(prep["scale"][0]) + np.float32(prep["shift"][0])
    model = tmp_path / "repo" / manifest["triton"]["model_name"] / "1" / "model.onnx"
    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    got = session.run(None, {"images": x})[0]
    assert np.abs(got - bundle_logits(bundle, digits)).max() <= ATOL
