"""benchmarks/ort_cpu_goals.py: the FLOP count it divides by (the timings themselves are the script's, not tests')."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def goals():
    sys.path.insert(0, str(BENCHMARKS))  # the script imports ort_bench from its own folder, as when run
    try:
        import ort_cpu_goals

        yield ort_cpu_goals
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_graph_flops_counts_matmul_gemm_and_conv_at_the_batch_asked(goals, tmp_path: Path):
    init = [onnx.numpy_helper.from_array(np.ones(shape, np.float32), name)
            for name, shape in (("k", (4, 3, 2, 2)), ("w", (4 * 3 * 3, 5)), ("g", (5, 7)), ("gb", (7,)))]
    nodes = [helper.make_node("Conv", ["x", "k"], ["c"]),                # 3x4x4 -> 4x3x3, 2x2 kernel
             helper.make_node("Reshape", ["c", "shape"], ["flat"]),
             helper.make_node("MatMul", ["flat", "w"], ["m"]),
             helper.make_node("Gemm", ["m", "g", "gb"], ["y"]),
             helper.make_node("Relu", ["y"], ["out"])]                   # not matmul work: not counted
    init.append(onnx.numpy_helper.from_array(np.array([-1, 36], np.int64), "shape"))
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3, 4, 4])],
                              [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["batch", 7])], init)
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    for batch in (1, 6):
        assert goals.graph_flops(path, batch) == {"Conv": 2 * batch * 4 * 3 * 3 * (3 * 2 * 2),
                                                  "MatMul": 2 * batch * 5 * 36, "Gemm": 2 * batch * 7 * 5}


def test_graph_flops_names_a_node_whose_shapes_are_unknown(goals, tmp_path: Path):
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"], name="mystery")], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3]),
                               helper.make_tensor_value_info("w", TensorProto.FLOAT, ["n", 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)])
    path = tmp_path / "g.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), path)
    with pytest.raises(ValueError, match="mystery"):
        goals.graph_flops(path, 2)
