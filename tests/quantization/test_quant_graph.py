"""frobenius_norm_nodes and restore_frobenius_eps on hand-built graphs of every denominator form they accept.

The model exports ``ReduceL2`` today; bundles exported before that carry ``Sqrt(ReduceSum(Pow(S, 2)))``, and other
exporters write ``ReduceSumSquare`` or ``Mul(S, S)``. FP16 islands and the eps restore must find all of them, and
nothing else: a division by a row norm or by another tensor's norm is some other model's arithmetic.
"""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from ibit_deploy.export.onnx_export import restore_frobenius_eps
from ibit_deploy.quantization import frobenius_norm_nodes

AXES = numpy_helper.from_array(np.array([-2, -1], np.int64), "axes")
ROW_AXES = numpy_helper.from_array(np.array([-1], np.int64), "row_axes")
TWO = numpy_helper.from_array(np.array(2.0, np.float32), "two")


def _denominator(form: str) -> list[onnx.NodeProto]:
    """Nodes computing ``norm`` = ||S||_F from ``S`` in the given form."""
    if form == "ReduceL2":
        return [helper.make_node("ReduceL2", ["S", "axes"], ["norm"], name="l2", keepdims=1)]
    if form == "ReduceSumSquare":
        reduce = helper.make_node("ReduceSumSquare", ["S", "axes"], ["ss"], name="ss", keepdims=1)
    else:
        square = helper.make_node("Pow", ["S", "two"], ["sq"], name="sq") if form == "Pow" else \
            helper.make_node("Mul", ["S", "S"], ["sq"], name="sq")
        reduce = helper.make_node("ReduceSum", ["sq", "axes"], ["ss"], name="ss", keepdims=1)
        return [square, reduce, helper.make_node("Sqrt", ["ss"], ["norm"], name="sqrt")]
    return [reduce, helper.make_node("Sqrt", ["ss"], ["norm"], name="sqrt")]


def _graph(form: str) -> onnx.ModelProto:
    nodes = [*_denominator(form), helper.make_node("Div", ["S", "norm"], ["A"], name="div")]
    graph = helper.make_graph(
        nodes, "frobenius", [helper.make_tensor_value_info("S", TensorProto.FLOAT, [1, 2, 3, 3])],
        [helper.make_tensor_value_info("A", TensorProto.FLOAT, [1, 2, 3, 3])], initializer=[AXES, ROW_AXES, TWO])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)


FORMS = {"ReduceL2": ["l2", "div"], "ReduceSumSquare": ["ss", "sqrt", "div"], "Pow": ["sq", "ss", "sqrt", "div"],
         "Mul": ["sq", "ss", "sqrt", "div"]}


@pytest.mark.parametrize("form", sorted(FORMS))
def test_frobenius_chain_found_in_every_form(form: str) -> None:
    assert frobenius_norm_nodes(_graph(form)) == [FORMS[form]]


def _unrelated_norm(model: onnx.ModelProto) -> onnx.ModelProto:
    model.graph.input.append(helper.make_tensor_value_info("other", TensorProto.FLOAT, [1, 2, 3, 3]))
    model.graph.node[0].input[0] = "other"  # ||other|| divides S: not IBiT's normalisation
    return model


def _row_norm(model: onnx.ModelProto) -> onnx.ModelProto:
    model.graph.node[0].input[1] = "row_axes"  # S / ||S_i||: a per-row norm, as x / x.norm(dim=-1) exports
    return model


@pytest.mark.parametrize("edit", [_unrelated_norm, _row_norm])
@pytest.mark.parametrize("form", ["ReduceL2", "ReduceSumSquare"])
def test_other_divisions_by_a_norm_are_left_alone(form: str, edit) -> None:
    model = edit(_graph(form))
    assert frobenius_norm_nodes(model) == []
    assert restore_frobenius_eps(model) == 0
    assert not [n for n in model.graph.node if n.op_type == "Add"]


@pytest.mark.parametrize("form", sorted(FORMS))
def test_restore_eps_makes_an_all_zero_map_finite(form: str) -> None:
    model = _graph(form)
    zeros = {"S": np.zeros((1, 2, 3, 3), np.float32)}
    nan = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, zeros)[0]
    assert np.isnan(nan).all()  # 0 / 0 without the eps

    assert restore_frobenius_eps(model) == 1
    onnx.checker.check_model(model, full_check=True)
    assert frobenius_norm_nodes(model)[0][-2:] == [f"{FORMS[form][-2]}_plus_eps", "div"]  # the matcher sees the Add
    out = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"]).run(None, zeros)[0]
    np.testing.assert_array_equal(out, 0.0)
    assert restore_frobenius_eps(model) == 0  # idempotent: an eps already there is not added twice
