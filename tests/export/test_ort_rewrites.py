"""Our own rewrites of the ONNX Runtime twin (export/ort_rewrites.py): each one's graph, and its exactness on ORT."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from ibit_deploy.export.ort_fusions import op_counts
from ibit_deploy.export.ort_rewrites import REDUCE_L2, apply_rewrites, reduce_l2_as_sum_of_squares

SHAPE = (2, 3, 5, 5)


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
