"""INT8: only symmetric Q/DQ, MatMuls quantized, LayerNorm / Conv / head / residual Adds left float, accuracy kept."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from ibit_deploy.quantization import (
    Int8Config,
    check_symmetric_qdq,
    evaluate_against_reference,
    head_nodes,
    quantize_int8,
    residual_adds,
)
from ibit_deploy.runtime import InputSpec


@pytest.fixture(scope="module")
def int8_default(trained_bundle, calibration_images, tmp_path_factory):
    bundle, _ = trained_bundle
    out = tmp_path_factory.mktemp("int8") / "model.int8.onnx"
    report = quantize_int8(bundle / "model.onnx", out, calibration_images, Int8Config())
    return out, report


def _dq_fed(model: onnx.ModelProto) -> set[str]:
    producers = {o: n for n in model.graph.node for o in n.output}
    return {n.name for n in model.graph.node
            if any(i in producers and producers[i].op_type == "DequantizeLinear" for i in n.input)}


def test_only_symmetric_qdq_with_sane_scales(int8_default):
    path, report = int8_default
    model = onnx.load(str(path))
    inits = {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}
    qdq = [n for n in model.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert qdq
    for node in qdq:
        scale = inits[node.input[1]]
        assert np.isfinite(scale).all() and (scale > 0).all(), node.name
        if len(node.input) > 2 and node.input[2]:
            zero = inits[node.input[2]]
            assert zero.dtype == np.int8 and not zero.any(), node.name  # TensorRT: zero point 0
    assert report["qdq"]["zero_point_dtypes"] == ["int8"]


def test_matmuls_quantized_and_sensitive_ops_left_float(int8_default, trained_bundle):
    path, report = int8_default
    reference = onnx.load(str(trained_bundle[0] / "model.onnx"))
    fed = _dq_fed(onnx.load(str(path)))
    heads = set(head_nodes(reference))
    matmuls = {n.name for n in reference.graph.node if n.op_type in ("MatMul", "Gemm")} - heads
    assert len(matmuls) == 12  # 2 blocks x (qkv, Q K^T, S V, proj, fc1, fc2)
    assert matmuls <= fed and set(report["quantized_nodes"]) == matmuls
    floats = {n.name for n in reference.graph.node if n.op_type in ("LayerNormalization", "Conv")}
    floats |= heads | set(residual_adds(reference))
    floats |= {n.name for n in reference.graph.node if n.op_type in ("ReduceL2", "Div")}
    assert len(heads) == 1 and len(residual_adds(reference)) == 4
    assert not floats & fed
    assert report["float_reasons"][next(iter(heads))] == "default: classifier head"


def test_weights_are_per_channel_on_the_output_axis(int8_default):
    model = onnx.load(str(int8_default[0]))
    inits = {t.name for t in model.graph.initializer}
    weight_dq = [n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits]
    assert weight_dq
    for node in weight_dq:
        axis = next((a.i for a in node.attribute if a.name == "axis"), None)
        assert axis == 1, node.name  # MatMul B is (in, out): one scale per output channel


def test_int8_keeps_accuracy_on_real_images(int8_default, trained_bundle, val_set):
    bundle, manifest = trained_bundle
    images, labels = val_set
    metrics = evaluate_against_reference(bundle / "model.onnx", int8_default[0], images, labels,
                                         InputSpec.from_manifest(manifest), threads=1)
    assert metrics["top1_ref"] > 0.5  # the fixture really is trained (chance is 10%; 400 steps give 55-85% by seed)
    assert metrics["top1_drop"] <= 0.01 and metrics["agreement"] >= 0.97 and metrics["nonfinite"] == 0


def test_patterns_move_layers_between_int8_and_float(trained_bundle, calibration_images, tmp_path):
    bundle, _ = trained_bundle
    config = Int8Config(exclude=["blocks.*.mlp.*"], include=["head"])
    report = quantize_int8(bundle / "model.onnx", tmp_path / "q.onnx", calibration_images, config)
    layers = report["layers"]
    quantized = {layers[n] for n in report["quantized_nodes"]}
    assert "head" in quantized
    assert not {q for q in quantized if ".mlp." in q}
    assert {layers[n] for n, why in report["float_reasons"].items() if why == "exclude pattern"} == \
        {"blocks.0.mlp.fc1", "blocks.0.mlp.fc2", "blocks.1.mlp.fc1", "blocks.1.mlp.fc2"}
    with pytest.raises(ValueError, match="matches no node"):
        quantize_int8(bundle / "model.onnx", tmp_path / "x.onnx", calibration_images, Int8Config(exclude=["blokcs.*"]))


def test_bad_calibration_never_reaches_a_file(trained_bundle, tmp_path):
    bundle, _ = trained_bundle
    out = tmp_path / "q.onnx"
    images = np.zeros((64, 1, 28, 28), np.float32)
    images[3] = np.nan
    with pytest.raises(ValueError, match="NaN/inf"):
        quantize_int8(bundle / "model.onnx", out, images, Int8Config())
    with pytest.raises(ValueError, match="too few for minmax"):
        quantize_int8(bundle / "model.onnx", out, images[:2], Int8Config())
    with pytest.raises(ValueError, match=r"expects \(1, 28, 28\)"):
        quantize_int8(bundle / "model.onnx", out, np.zeros((64, 1, 32, 32), np.float32), Int8Config())
    assert not out.exists()


def test_asymmetric_or_nan_qdq_is_refused(int8_default):
    model = onnx.load(str(int8_default[0]))
    check_symmetric_qdq(model)
    node = next(n for n in model.graph.node if n.op_type == "QuantizeLinear")
    zero = next(t for t in model.graph.initializer if t.name == node.input[2])
    zero.CopyFrom(numpy_helper.from_array(np.array(3, np.int8), zero.name))
    with pytest.raises(ValueError, match="zero point 0"):
        check_symmetric_qdq(model)
    model = onnx.load(str(int8_default[0]))
    scale = next(t for t in model.graph.initializer if t.name == node.input[1])
    scale.CopyFrom(numpy_helper.from_array(np.array(np.nan, np.float32), scale.name))
    with pytest.raises(ValueError, match="non-finite or non-positive"):
        check_symmetric_qdq(model)
