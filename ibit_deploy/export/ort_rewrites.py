"""Graph rewrites of our own for the ONNX Runtime twin: the same arithmetic in ops ORT's CPU kernels run faster.

:func:`fuse_for_ort` applies them after ONNX Runtime's transformer fusions. Each keeps the graph's meaning exactly
(the same sums, in another order at most), uses standard ONNX ops only, and says how often it applied.

- ``ReduceL2 -> Sqrt(ReduceSum(Mul(x, x)))``: IBiT's Frobenius norm. ONNX Runtime (1.32) runs ReduceL2 through its
  generic reduction loop, one element at a time, while ReduceSum over trailing axes has a vectorised fast path:
  on ``ibit_tiny_patch16_224``'s (8, 3, 197, 197) score maps, one thread, ReduceL2 took 0.80 ms and Mul + ReduceSum
  + Sqrt 0.34 ms (PyTorch's ``vector_norm``: 0.16 ms), about 6% of the whole model at batch 8. The sum of squares
  is the one ReduceL2 forms internally (same dtype, same overflow), summed pairwise instead of sequentially, so it is
  also closer to the exact norm (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from typing import Any

REDUCE_L2 = "ReduceL2 as Sqrt(ReduceSum(Mul))"  # the rewrite's name in the records
REWRITES = (REDUCE_L2,)
_MIN_AXES_INPUT_OPSET = 13  # ReduceSum takes its axes as an input from opset 13 on


def apply_rewrites(model: Any) -> dict[str, int]:
    """Apply every rewrite to ``model`` (an ``onnx.ModelProto``, in place); rewrite name -> times applied (> 0)."""
    done = {REDUCE_L2: reduce_l2_as_sum_of_squares(model)}
    return {name: count for name, count in done.items() if count}


def _default_opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def reduce_l2_as_sum_of_squares(model: Any) -> int:
    """Replace every default-domain ReduceL2 node by ``Sqrt(ReduceSum(Mul(x, x), axes))``; returns how many.

    ``keepdims`` carries over; a node with ``noop_with_empty_axes`` set is left alone (with empty axes it returns
    ``x``, where the rewrite would give ``|x|``); axes given as an attribute (opset < 18) become an int64
    initializer, as ReduceSum wants them from opset 13 on. Graphs of an older opset are left alone.
    """
    import numpy as np
    from onnx import helper, numpy_helper

    if _default_opset(model) < _MIN_AXES_INPUT_OPSET:
        return 0
    graph = model.graph
    names = {n.name for n in graph.node} | {o for n in graph.node for o in n.output} | \
        {t.name for t in graph.initializer} | {i.name for i in graph.input}

    def fresh(base: str) -> str:
        name, k = base, 0
        while name in names:
            k += 1
            name = f"{base}_{k}"
        names.add(name)
        return name

    done = 0
    for pos in range(len(graph.node) - 1, -1, -1):  # backwards: inserting at pos keeps earlier positions valid
        node = graph.node[pos]
        if node.op_type != "ReduceL2" or node.domain not in ("", "ai.onnx"):
            continue
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        if attrs.get("noop_with_empty_axes"):  # with empty axes ReduceL2 returns x itself, not |x|: leave it
            continue
        axes = node.input[1] if len(node.input) > 1 else ""
        if "axes" in attrs:
            axes = fresh(f"{node.name or 'ReduceL2'}_axes")
            graph.initializer.append(numpy_helper.from_array(np.asarray(attrs["axes"], dtype=np.int64), axes))
        base = node.name or f"ReduceL2_{pos}"
        square, total = fresh(f"{node.output[0]}_square"), fresh(f"{node.output[0]}_sum_of_squares")
        reduce_attrs = {k: attrs[k] for k in ("keepdims",) if k in attrs}
        new = [helper.make_node("Mul", [node.input[0], node.input[0]], [square], name=fresh(f"{base}_square")),
               helper.make_node("ReduceSum", [square, axes] if axes else [square], [total],
                                name=fresh(f"{base}_sum_of_squares"), **reduce_attrs),
               helper.make_node("Sqrt", [total], [node.output[0]], name=fresh(f"{base}_sqrt"))]
        del graph.node[pos]
        for k, made in enumerate(new):
            graph.node.insert(pos + k, made)
        done += 1
    return done
