"""FP16: fp32 islands (LayerNorm, IBiT's Frobenius normalisation) and fp32 I/O; the island is what keeps the
Frobenius sum of squares from overflowing, shown on a model whose attention scores are large."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto

from ibit_deploy.quantization import (
    Fp16Config,
    convert_fp16,
    emulate_logits,
    evaluate_against_reference,
    frobenius_norm_nodes,
)
from ibit_deploy.runtime import InputSpec


@pytest.fixture(scope="module")
def fp16_default(trained_bundle, tmp_path_factory):
    bundle, _ = trained_bundle
    out = tmp_path_factory.mktemp("fp16") / "model.fp16.onnx"
    return out, convert_fp16(bundle / "model.onnx", out, Fp16Config())


def _types(path) -> dict[str, int]:
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)), strict_mode=True)
    graph = model.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output, *graph.value_info]}
    types.update({t.name: t.data_type for t in graph.initializer})
    return types


def test_frobenius_subgraph_is_found_structurally(trained_bundle):
    model = onnx.load(str(trained_bundle[0] / "model.onnx"))
    groups = frobenius_norm_nodes(model)
    ops = {n.name: n.op_type for n in model.graph.node}
    assert len(groups) == 2  # one per block
    for group in groups:
        assert [ops[n] for n in group] == ["ReduceL2", "Add", "Div"]  # Add: the restored eps


def test_islands_stay_fp32_and_io_stays_fp32(fp16_default):
    path, report = fp16_default
    model = onnx.load(str(path))
    types = _types(path)
    assert types[model.graph.input[0].name] == TensorProto.FLOAT
    assert types[model.graph.output[0].name] == TensorProto.FLOAT
    island_ops = {"LayerNormalization", "ReduceL2", "Add", "Div"}  # Add: the Frobenius eps
    islands = [n for n in model.graph.node if n.name in set(report["fp32_nodes"])]
    assert {n.op_type for n in islands} == island_ops
    assert len(islands) == 5 + 2 * 3  # 5 LayerNorms, 2 Frobenius chains of 3 ops
    for node in islands:
        floats = [t for t in [*node.input, *node.output] if t and types.get(t) in (TensorProto.FLOAT, TensorProto.FLOAT16)]
        assert all(types[t] == TensorProto.FLOAT for t in floats), node.name
    for node in model.graph.node:
        if node.op_type == "MatMul":
            assert all(types[t] == TensorProto.FLOAT16 for t in node.input), node.name
    assert report["casts_inserted"] > 0 and report["underflow_params"] == 0


def test_fp16_agrees_with_fp32_on_real_images(fp16_default, trained_bundle, val_set):
    bundle, manifest = trained_bundle
    images, labels = val_set
    metrics = evaluate_against_reference(bundle / "model.onnx", fp16_default[0], images, labels,
                                         InputSpec.from_manifest(manifest), threads=1)
    assert metrics["agreement"] >= 0.99 and metrics["top1_drop"] <= 0.005
    assert metrics["max_abs_diff"] < 0.05 and metrics["cosine_min"] > 0.9999


def test_without_the_island_large_scores_overflow_fp16(trained_checkpoint, val_set, tmp_path):
    """Scaling W_q and b_q by 30 multiplies every score by 30; the Frobenius normalisation divides it out again, so
    the fp32 model is unchanged, but the sum of 50^2 squares now exceeds fp16's 65504 (METHODS.md section 1)."""
    from ibit_deploy.checkpoint import load_checkpoint, save_checkpoint
    from ibit_deploy.export.pipeline import export_checkpoint

    model, config = load_checkpoint(trained_checkpoint)
    with torch.no_grad():
        for block in model.blocks:
            dim = block.attn.qkv.in_features
            block.attn.qkv.weight[:dim] *= 30.0
            block.attn.qkv.bias[:dim] *= 30.0
    config.pop("format_version", None)
    save_checkpoint(tmp_path / "ckpt", model, config)
    export_checkpoint(tmp_path / "ckpt", tmp_path / "bundle")
    fp32 = tmp_path / "bundle" / "model.onnx"
    convert_fp16(fp32, tmp_path / "island.onnx", Fp16Config())
    convert_fp16(fp32, tmp_path / "no_island.onnx", Fp16Config(frobenius_fp32=False))

    images = val_set[0][:8]
    reference = emulate_logits(fp32, images)
    with_island = emulate_logits(tmp_path / "island.onnx", images)
    without = emulate_logits(tmp_path / "no_island.onnx", images)
    assert np.abs(with_island - reference).max() < 0.05
    assert (with_island.argmax(1) == reference.argmax(1)).all()
    broken = ~np.isfinite(without).all() or np.abs(without - reference).max() > 1.0
    assert broken, f"expected an fp16 overflow without the island, max diff {np.abs(without - reference).max()}"


def test_keep_fp32_patterns_and_fp16_io(trained_bundle, tmp_path):
    bundle, _ = trained_bundle
    report = convert_fp16(bundle / "model.onnx", tmp_path / "m.onnx",
                          Fp16Config(keep_io_types=False, keep_fp32=["head"]))
    model = onnx.load(str(tmp_path / "m.onnx"))
    types = _types(tmp_path / "m.onnx")
    assert types[model.graph.input[0].name] == TensorProto.FLOAT16
    assert types[model.graph.output[0].name] == TensorProto.FLOAT16
    head = [n for n in model.graph.node if n.op_type == "Gemm"]
    assert report["islands"]["patterns"] == [head[0].name]
    assert types[head[0].input[1]] == TensorProto.FLOAT
    with pytest.raises(ValueError, match="matches no node"):
        convert_fp16(bundle / "model.onnx", tmp_path / "x.onnx", Fp16Config(keep_fp32=["haed"]))
