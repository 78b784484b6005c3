"""The ONNX fold on small hand-built graphs: exact without padding, refused where it would not be exact."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ibit_deploy.package.graph_edit import append_softmax, fix_batch, fold_input_affine


def conv_model(pads: list[int], extra_op: str | None = None, channels: int = 1) -> onnx.ModelProto:
    rng = np.random.default_rng(0)
    w = numpy_helper.from_array(rng.normal(size=(4, channels, 2, 2)).astype(np.float32), "w")
    b = numpy_helper.from_array(rng.normal(size=4).astype(np.float32), "b")
    nodes = [helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[2, 2], strides=[2, 2], pads=pads),
             helper.make_node("Shape", ["x"], ["s"], start=0, end=1)]
    outputs = [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
               helper.make_tensor_value_info("s", TensorProto.INT64, None)]
    if extra_op:
        nodes.append(helper.make_node(extra_op, ["x", "x"], ["z"]))
        outputs.append(helper.make_tensor_value_info("z", TensorProto.FLOAT, None))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", channels, 4, 4])],
                              outputs, [w, b])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def run(model: onnx.ModelProto, x: np.ndarray) -> np.ndarray:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(["y"], {"x": x})[0]


def test_fold_equals_affine_then_conv_with_a_channel_change():
    a = np.array([[0.3, 0.5, 0.2]]) * 4.0  # grey model fed RGB: x = A t + beta
    beta = np.array([-1.5])
    t = np.random.default_rng(1).normal(size=(3, 3, 4, 4)).astype(np.float32)
    x = (np.einsum("kc,nchw->nkhw", a, t) + beta[None, :, None, None]).astype(np.float32)
    folded = fold_input_affine(conv_model([0, 0, 0, 0]), "x", a, beta)
    assert folded.graph.input[0].type.tensor_type.shape.dim[1].dim_value == 3
    np.testing.assert_allclose(run(folded, t), run(conv_model([0, 0, 0, 0]), x), atol=1e-5)


def test_padding_or_other_consumers_are_refused():
    a, beta = np.eye(1) * 2.0, np.array([1.0])
    with pytest.raises(ValueError, match="padding"):
        fold_input_affine(conv_model([1, 1, 1, 1]), "x", a, beta)
    with pytest.raises(ValueError, match="also feeds .*Add"):
        fold_input_affine(conv_model([0, 0, 0, 0], extra_op="Add"), "x", a, beta)


def test_softmax_and_fixed_batch():
    model = fix_batch(append_softmax(conv_model([0, 0, 0, 0]), "y", "p"), 1)
    assert [o.name for o in model.graph.output] == ["s", "p"]
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    with pytest.raises(ValueError, match="no output 'q'"):
        append_softmax(conv_model([0, 0, 0, 0]), "q", "p")
