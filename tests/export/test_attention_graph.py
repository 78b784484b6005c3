"""attention_cores / check_no_dense_bias: the attention form of an exported graph, found from its structure."""

from __future__ import annotations

import onnx
import pytest
import torch

import ibit_deploy.models as models
from ibit_deploy.export.attention_graph import attention_cores, check_no_dense_bias
from ibit_deploy.export.onnx_export import export_onnx
from ibit_deploy.fold import fold_masks, to_flashbias


@pytest.fixture(scope="module")
def bias_model():
    torch.manual_seed(0)
    return models.create_model("ibit_test_patch4_28", attn_mode="bias", depth=2).eval()


def _export(model, path, opset=18) -> onnx.ModelProto:
    export_onnx(model, path, (1, 28, 28), opset=opset)
    return onnx.load(str(path))


def test_dense_bias_graph_has_a_tt_add_and_fails_the_check(bias_model, tmp_path):
    graph = _export(fold_masks(bias_model), tmp_path / "dense.onnx")
    cores = attention_cores(graph)
    assert len(cores) == 2 and all(c["form"] == "matmul" and c["between"] == ["Add"] for c in cores)
    tokens, heads = 50, 2
    for core in cores:
        assert [dims[-2:] for dims in core["constants"].values()] == [[tokens, tokens]]
        assert core["constant_bytes"] == heads * tokens * tokens * 4 and core["bias_constants"]
    with pytest.raises(ValueError, match=r"\['Add'\] between the score MatMul and the Softmax"):
        check_no_dense_bias(graph, "dense.onnx")


def test_flashbias_graph_is_matmul_softmax_matmul_with_factor_constants(bias_model, tmp_path):
    model, layers = to_flashbias(bias_model, "rank=6")
    graph = _export(model, tmp_path / "fb.onnx")
    cores = check_no_dense_bias(graph, "fb.onnx")
    assert len(cores) == 2
    nodes = {n.name: n for n in graph.graph.node}
    for core, layer in zip(cores, layers, strict=True):
        assert core["between"] == [] and core["bias_constants"] == [] and core["apply"] is not None
        assert nodes[core["scores"]].op_type == "MatMul" and nodes[core["apply"]].op_type == "MatMul"
        width = layer["width"]
        assert sorted(map(tuple, core["constants"].values())) == [(2, 50, width)] * 2
        assert core["constant_bytes"] == 2 * 2 * 50 * width * 4
    # no initializer of the file is a (T, T) map
    assert not [t.name for t in graph.graph.initializer if len(t.dims) >= 2 and t.dims[-1] == t.dims[-2] == 50]


@pytest.mark.slow
def test_opset_23_gives_one_attention_op_per_layer(bias_model, tmp_path):
    fb = _export(to_flashbias(bias_model, "rank=6")[0], tmp_path / "fb23.onnx", opset=23)
    cores = check_no_dense_bias(fb, "fb23.onnx")
    assert [c["form"] for c in cores] == ["attention-op"] * 2 and not any(c["attn_mask"] for c in cores)
    assert not [n for n in fb.graph.node if n.op_type == "Softmax"]
    dense = _export(fold_masks(bias_model), tmp_path / "dense23.onnx", opset=23)
    with pytest.raises(ValueError, match="an attn_mask input"):
        check_no_dense_bias(dense, "dense23.onnx")


def test_mask_mode_graph_has_no_softmax_core(tmp_path):
    mask = models.create_model("ibit_test_patch4_28", attn_mode="mask", depth=1).eval()
    graph = _export(fold_masks(mask), tmp_path / "mask.onnx")
    assert attention_cores(graph) == []
    with pytest.raises(ValueError, match="no attention core"):
        check_no_dense_bias(graph, "mask.onnx")
