"""Our own rewrites of the ONNX Runtime twin (export/ort_rewrites.py): each one's graph, and its exactness on ORT."""

from __future__ import annotations

import collections
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper, numpy_helper

from ibit_deploy.export.ort_fusions import op_counts
from ibit_deploy.export.ort_rewrites import (
    REDUCE_L2,
    apply_rewrites,
    reduce_l2_as_sum_of_squares,
    split_qkv_projection,
)

SHAPE = (2, 3, 5, 5)


def _perm(node: onnx.NodeProto) -> list[int]:
    return next(list(a.ints) for a in node.attribute if a.name == "perm")


def _norm_graph(opset: int, keepdims: int = 1, noop: int | None = None, axes: list[int] | None = None,
                dtype: int = TensorProto.FLOAT) -> onnx.ModelProto:
    """``x / ReduceL2(x)`` over ``axes`` of a (2, 3, 5, 5) input, axes as an attribute (opset < 18) or an input."""
    attrs = {"keepdims": keepdims} | ({} if noop is None else {"noop_with_empty_axes": noop})
    inits = []
    inputs = ["x"]
    if axes is not None and opset >= 18:
        inits.append(numpy_helper.from_array(np.asarray(axes, np.int64), "axes"))
        inputs.append("axes")
    elif axes is not None:
        attrs["axes"] = axes
    nodes = [helper.make_node("ReduceL2", inputs, ["norm"], name="norm", **attrs)]
    reduced = np.zeros(SHAPE).sum(axis=None if axes is None else tuple(axes), keepdims=bool(keepdims)).shape
    outputs = [helper.make_tensor_value_info("norm", dtype, list(SHAPE if noop and axes is None else reduced))]
    if keepdims:
        nodes.append(helper.make_node("Div", ["x", "norm"], ["y"], name="div"))
        outputs.append(helper.make_tensor_value_info("y", dtype, list(SHAPE)))
    graph = helper.make_graph(nodes, "norm", [helper.make_tensor_value_info("x", dtype, list(SHAPE))], outputs,
                              inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _run(model: onnx.ModelProto, x: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


@pytest.mark.parametrize(("opset", "keepdims", "axes"), [(18, 1, [2, 3]), (18, 0, [-2, -1]), (17, 1, [2, 3]),
                                                         (18, 1, None), (17, 0, [1])])
def test_reduce_l2_becomes_a_sum_of_squares_with_the_same_values(opset: int, keepdims: int, axes: list[int] | None):
    plain = _norm_graph(opset, keepdims, axes=axes)
    rewritten = _norm_graph(opset, keepdims, axes=axes)
    assert reduce_l2_as_sum_of_squares(rewritten) == 1
    onnx.checker.check_model(rewritten, full_check=True)
    assert op_counts(rewritten) == {"Mul": 1, "ReduceSum": 1, "Sqrt": 1, **({"Div": 1} if keepdims else {})}
    # the Sqrt writes the ReduceL2's own output, so every consumer of the norm reads it unchanged
    assert [n.op_type for n in rewritten.graph.node if "norm" in n.output] == ["Sqrt"]
    x = np.random.default_rng(0).standard_normal(SHAPE).astype(np.float32) * 10
    for got, want in zip(_run(rewritten, x), _run(plain, x), strict=True):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    exact = np.sqrt((x.astype(np.float64) ** 2).sum(axis=None if axes is None else tuple(axes),
                                                    keepdims=bool(keepdims)))
    np.testing.assert_allclose(_run(rewritten, x)[0], exact, rtol=1e-6)


def test_a_noop_with_empty_axes_reduce_l2_and_an_old_opset_are_left_alone():
    noop = _norm_graph(18, noop=1, axes=None)  # with no axes this one returns x, not |x|
    assert reduce_l2_as_sum_of_squares(noop) == 0 and op_counts(noop)["ReduceL2"] == 1
    old = _norm_graph(12, axes=[2, 3])  # ReduceSum takes axes as an attribute there
    assert apply_rewrites(old) == {} and op_counts(old)["ReduceL2"] == 1


def test_apply_rewrites_names_what_it_did_and_keeps_names_unique():
    model = _norm_graph(18, axes=[2, 3])
    model.graph.node.append(helper.make_node("ReduceL2", ["y"], ["norm2"], name="norm2"))
    model.graph.output.append(helper.make_tensor_value_info("norm2", TensorProto.FLOAT, [1, 1, 1, 1]))
    assert apply_rewrites(model) == {REDUCE_L2: 2}
    names = [n.name for n in model.graph.node]
    outputs = [o for n in model.graph.node for o in n.output]
    assert len(set(names)) == len(names) and len(set(outputs)) == len(outputs)
    onnx.checker.check_model(model, full_check=True)


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Folded ibit_test_patch4_28 in mask and bias mode as fp32 ONNX, and the mask graph in fp16."""
    from ibit_deploy.export.onnx_export import export_onnx
    from ibit_deploy.fold import fold_masks
    from ibit_deploy.models import create_model
    from ibit_deploy.quantization.config import Fp16Config
    from ibit_deploy.quantization.fp16 import convert_fp16

    folder = tmp_path_factory.mktemp("rewrites")
    out = {}
    for mode in ("mask", "bias"):
        torch.manual_seed(0)
        model = fold_masks(create_model("ibit_test_patch4_28", attn_mode=mode).eval())
        out[mode] = export_onnx(model, folder / f"{mode}.onnx", (1, 28, 28))
    convert_fp16(out["mask"], folder / "mask.fp16.onnx", Fp16Config())
    out["mask fp16"] = folder / "mask.fp16.onnx"
    return out


# mask mode transposes k by Transpose(0, 1, 3, 2), which the split folds in; the bias mode's exported
# scaled_dot_product_attention transposes k through Reshapes of its own, so k stays in head layout there
@pytest.mark.parametrize(("graph", "atol", "k_folded"), [("mask", 1e-5, True), ("bias", 1e-5, False),
                                                         ("mask fp16", 0.0, True)])
def test_the_qkv_projection_splits_into_three_parts_with_the_same_logits(exported: dict[str, Path], graph: str,
                                                                         atol: float, k_folded: bool):
    import onnxruntime as ort

    plain = onnx.load(str(exported[graph]))
    model = onnx.load(str(exported[graph]))
    before = op_counts(model)
    blocks = 2  # ibit_test_patch4_28's depth
    assert split_qkv_projection(model) == blocks
    onnx.checker.check_model(model)
    after = op_counts(model)
    # per block: the one qkv MatMul becomes three; the Slice + Squeeze pairs and k's second Transpose are gone
    assert after["MatMul"] == before["MatMul"] + 2 * blocks
    assert after.get("Slice", 0) == before["Slice"] - 3 * blocks
    assert after.get("Squeeze", 0) == before["Squeeze"] - 3 * blocks
    assert after["Transpose"] == before["Transpose"] - (2 if k_folded else 1) * blocks + 3 * blocks
    # q and v go to head layout by (0, 2, 1, 3), k straight to (B, heads, d, T) by (0, 2, 3, 1)
    perms = [collections.Counter(tuple(_perm(n)) for n in m.graph.node if n.op_type == "Transpose")
             for m in (plain, model)]
    k = blocks if k_folded else 0
    assert perms[1][(0, 2, 1, 3)] == perms[0][(0, 2, 1, 3)] + 3 * blocks - k and perms[1][(0, 2, 3, 1)] == k
    assert perms[1][(2, 0, 3, 1, 4)] == 0 and perms[1][(0, 1, 3, 2)] == perms[0][(0, 1, 3, 2)] - k
    # the weights are the qkv weight's column blocks: same dtype, a third of the columns each, nothing else left
    weights = [t for t in model.graph.initializer if t.name.endswith(("_q", "_k", "_v"))]
    assert len(weights) == 3 * blocks and all(len(t.dims) == 2 for t in weights)
    assert {t.data_type for t in weights} == {t.data_type for t in plain.graph.initializer if len(t.dims) == 2}

    images = np.random.default_rng(0).standard_normal((8, 1, 28, 28)).astype(np.float32)
    run = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, {"images": images})[0]
           for m in (plain, model)]
    np.testing.assert_allclose(run[1], run[0], atol=atol, rtol=0)


def test_the_qkv_split_leaves_other_graphs_alone():
    model = _norm_graph(18, axes=[2, 3])
    assert split_qkv_projection(model) == 0 and op_counts(model) == {"Div": 1, "ReduceL2": 1}
