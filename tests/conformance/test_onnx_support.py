"""Every ONNX artifact the project writes (fp32 / fp16 / int8; IBiT in each attention mode, DeiT/ViT, ConViT)
passes the TensorRT 10.3 ONNX parser table; planted unsupported forms fail it, naming the node."""

from __future__ import annotations

import json

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from ibit_deploy.conformance.onnx_support import TRT10_ONNX_OPS, check_onnx
from ibit_deploy.models import ATTENTION_MODES, create_model

SMALL = {"img_size": 28, "patch_size": 4, "in_chans": 1, "num_classes": 10, "depth": 1, "embed_dim": 32,
         "num_heads": 2}
MODELS = {**{f"ibit_{mode}": ("ibit_test_patch4_28", {"attn_mode": mode, "depth": 1}) for mode in ATTENTION_MODES},
          "deit": ("deit_tiny_patch16_224", SMALL), "convit": ("convit_tiny", {**SMALL, "local_up_to_layer": 1})}


def _artifacts(key: str, directory) -> dict[str, str]:
    """fp32 / fp16 / int8 ONNX of MODELS[key], made by the project's own export and quantization functions."""
    from ibit_deploy.export.onnx_export import export_onnx
    from ibit_deploy.fold import fold_masks
    from ibit_deploy.quantization.config import Int8Config
    from ibit_deploy.quantization.fp16 import convert_fp16
    from ibit_deploy.quantization.int8 import quantize_int8

    torch.manual_seed(0)
    name, kwargs = MODELS[key]
    model = create_model(name, **kwargs)
    model = fold_masks(model) if key.startswith("ibit") else model.eval()
    paths = {p: str(directory / f"{key}.{p}.onnx") for p in ("fp32", "fp16", "int8")}
    export_onnx(model, paths["fp32"], (1, 28, 28))
    convert_fp16(paths["fp32"], paths["fp16"])
    calibration = np.random.default_rng(0).standard_normal((16, 1, 28, 28)).astype(np.float32)
    quantize_int8(paths["fp32"], paths["int8"], calibration, Int8Config())
    return paths


@pytest.mark.slow
@pytest.mark.parametrize("key", sorted(MODELS))
def test_project_artifacts_pass(key, tmp_path):
    for precision, path in _artifacts(key, tmp_path).items():
        result = check_onnx(path)
        assert result["passed"], (key, precision, result["problems"][:5])
        if precision == "int8":
            assert result["ops"].get("DequantizeLinear", 0) > 0  # the Q/DQ rules were exercised


# --------------------------------------------------------------------------------------------- planted failures

def _model(nodes, inits, inputs=None, opset=18, extra_opsets=()):
    inputs = inputs or [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])]
    graph = helper.make_graph(nodes, "g", inputs, [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(v, k) for k, v in inits.items()])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset), *extra_opsets])


def _problems(model):
    return [(p["op"], p["problem"]) for p in check_onnx(model)["problems"]]


def _qdq_matmul(zero=np.int8(0), weight_axis=1):
    w = np.arange(12, dtype=np.int8).reshape(4, 3)
    w_scale = np.full((3,) if weight_axis == 1 else (4,), 0.1, np.float32)
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["xq"]),
             helper.make_node("DequantizeLinear", ["xq", "s", "z"], ["xd"]),
             helper.make_node("DequantizeLinear", ["w", "ws", "wz"], ["wd"], axis=weight_axis),
             helper.make_node("MatMul", ["xd", "wd"], ["y"])]
    return _model(nodes, {"s": np.float32(0.05), "z": np.asarray(zero), "w": w, "ws": w_scale,
                          "wz": np.zeros(w_scale.shape, np.int8)})


def test_symmetric_qdq_passes_and_forms_trt_rejects_fail():
    assert _problems(_qdq_matmul()) == []
    assert any("not all zeros" in p for _, p in _problems(_qdq_matmul(zero=np.int8(3))))
    assert any("UINT8" in p for _, p in _problems(_qdq_matmul(zero=np.uint8(0))))
    assert any("output-channel axis is 1" in p for _, p in _problems(_qdq_matmul(weight_axis=0)))


def test_planted_unsupported_op_fails_with_its_node_name():
    nodes = [helper.make_node("Relu", ["x"], ["r"], name="ok"),
             helper.make_node("NonZero", ["r"], ["y"], name="planted_nonzero")]
    problems = check_onnx(_model(nodes, {}))["problems"]
    assert [(p["node"], p["op"]) for p in problems] == [("planted_nonzero", "NonZero")]
    assert "operators.md" in problems[0]["source"]
    unknown = _model([helper.make_node("Frobnicate", ["x"], ["y"], name="n")], {})
    assert _problems(unknown) == [("Frobnicate", "op not in the TensorRT 10.3 ONNX support table")]
    custom = _model([helper.make_node("FusedGemm", ["x", "x"], ["y"], domain="com.microsoft")], {},
                    extra_opsets=[helper.make_opsetid("com.microsoft", 1)])
    assert any("custom domain" in p for _, p in _problems(custom))


def test_reduce_axes_must_be_an_initializer():
    as_init = _model([helper.make_node("ReduceL2", ["x", "axes"], ["y"], keepdims=1)], {"axes": np.array([1])})
    assert _problems(as_init) == []
    computed = _model([helper.make_node("Shape", ["x"], ["s"]), helper.make_node("Gather", ["s", "i"], ["axes"]),
                       helper.make_node("ReduceL2", ["x", "axes"], ["y"], keepdims=1)], {"i": np.array([1])})
    assert any("axes" in p and "initializer" in p for op, p in _problems(computed) if op == "ReduceL2")


def test_opset_and_types_out_of_range_fail():
    assert any("opset 21" in p for _, p in _problems(_model([helper.make_node("Relu", ["x"], ["y"])], {}, opset=21)))
    strings = _model([helper.make_node("Identity", ["x"], ["y"])], {},
                     inputs=[helper.make_tensor_value_info("x", TensorProto.STRING, [2])])
    assert any("STRING" in p for _, p in _problems(strings))


def test_onnxruntime_dynamic_quantization_is_rejected(tmp_path):
    """quantize_dynamic output (DynamicQuantizeLinear / MatMulInteger) is not parsed by TensorRT (METHODS.md 7)."""
    from onnxruntime.quantization import quantize_dynamic

    w = np.random.default_rng(0).standard_normal((4, 64)).astype(np.float32)
    src, out = tmp_path / "m.onnx", tmp_path / "m.dyn.onnx"
    onnx.save(_model([helper.make_node("MatMul", ["x", "w"], ["y"])], {"w": w}), src)
    quantize_dynamic(str(src), str(out))
    ops = {op for op, _ in _problems(onnx.load(out))}
    assert {"DynamicQuantizeLinear", "MatMulInteger"} & ops


def test_every_row_cites_a_source():
    assert all(row.source for row in TRT10_ONNX_OPS.values())


def test_check_bundle_reads_the_manifest(tmp_path):
    from ibit_deploy.conformance.onnx_support import check_bundle

    onnx.save(_model([helper.make_node("Relu", ["x"], ["y"])], {}), tmp_path / "model.onnx")
    onnx.save(_model([helper.make_node("NonZero", ["x"], ["y"])], {}), tmp_path / "model.bad.onnx")
    (tmp_path / "manifest.json").write_text(json.dumps({"artifacts": [
        {"path": "model.onnx", "kind": "onnx"}, {"path": "model.bad.onnx", "kind": "onnx"},
        {"path": "build_engine.sh", "kind": "script"}]}))
    results = check_bundle(tmp_path)
    assert results["model.onnx"]["passed"] and not results["model.bad.onnx"]["passed"]
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        check_bundle(tmp_path / "nowhere")
