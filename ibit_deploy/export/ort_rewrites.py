"""Graph rewrites of our own for the ONNX Runtime twin: the same arithmetic in ops ORT's CPU kernels run faster.

:func:`fuse_for_ort` applies them after ONNX Runtime's transformer fusions. Each keeps the graph's meaning exactly
(the same sums, in another order at most), uses standard ONNX ops only, and says how often it applied.

- ``ReduceL2 -> Sqrt(ReduceSum(Mul(x, x)))``: IBiT's Frobenius norm. ONNX Runtime (1.32) has a vectorised fast
  path for ReduceSum over trailing axes that its ReduceL2 kernel does not match: on ``ibit_tiny_patch16_224``'s
  (8, 3, 197, 197) score maps, one thread, ReduceL2 took 0.80 ms and Mul + ReduceSum + Sqrt 0.34 ms (PyTorch's
  ``vector_norm``: 0.16 ms), about 6% of the whole model at batch 8. The sum of squares is the one ReduceL2 forms
  (same dtype, same overflow); measured on that map, the rewritten sum is also closer to the exact norm (relative
  error 4e-7 against ReduceL2's 4e-6).
- The q/k/v projection split in three: timm's attention computes ``x @ W_qkv + b`` once, reshapes it to
  ``(B, T, 3, heads, d)``, permutes it to ``(3, B, heads, T, d)`` and takes q, k, v apart with Slice + Squeeze
  (then transposes k). ONNX Runtime's transpose optimizer turns that into a Split and one Transpose per part: two
  copies of the whole qkv tensor. Three MatMuls on the weight's column blocks (``x @ W_q + b_q``, ...) each give
  their part directly, one Transpose (k's straight to ``(B, heads, d, T)``) puts it in head layout: one copy, the
  same products. A gain of a few percent at most on ``ibit_tiny_patch16_224``, inside the shared machine's noise
  (benchmarks/RESULTS.md).
"""

from __future__ import annotations

from typing import Any

REDUCE_L2 = "ReduceL2 as Sqrt(ReduceSum(Mul))"  # the rewrites' names in the records
SPLIT_QKV = "q/k/v projection split"
REWRITES = (REDUCE_L2, SPLIT_QKV)
_MIN_AXES_INPUT_OPSET = 13  # ReduceSum takes its axes as an input from opset 13 on


def apply_rewrites(model: Any) -> dict[str, int]:
    """Apply every rewrite to ``model`` (an ``onnx.ModelProto``, in place); rewrite name -> times applied (> 0)."""
    done = {REDUCE_L2: reduce_l2_as_sum_of_squares(model), SPLIT_QKV: split_qkv_projection(model)}
    return {name: count for name, count in done.items() if count}


def _default_opset(model: Any) -> int:
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def _fresh_names(model: Any):
    """A function giving names no node, tensor or initializer of ``model`` has (nor any it gave before)."""
    graph = model.graph
    taken = {n.name for n in graph.node} | {o for n in graph.node for o in n.output} | \
        {t.name for t in graph.initializer} | {i.name for i in graph.input}

    def fresh(base: str) -> str:
        name, k = base, 0
        while name in taken:
            k += 1
            name = f"{base}_{k}"
        taken.add(name)
        return name

    return fresh


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
    fresh = _fresh_names(model)
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


def _perm(node: Any) -> list[int] | None:
    return next((list(a.ints) for a in node.attribute if a.name == "perm"), None)


def _qkv_parts(permute: Any, producer: dict, consumers: dict, const: Any) -> dict[str, Any] | None:
    """The projection feeding ``permute`` and its three parts when ``permute`` is timm's qkv head split, else None.

    Matched: ``MatMul(x, W) -> Add(b) -> Reshape(s) -> Transpose(perm 2,0,3,1,4)`` with W (D_in, 3D), b (3D,), s a
    constant of 5 entries whose third is 3, each intermediate read by the next node only, and the Transpose read
    by exactly three ``Slice(axis 0, [i, i+1)) -> Squeeze(axis 0)`` pairs, i = 0, 1, 2.
    """
    if permute.op_type != "Transpose" or _perm(permute) != [2, 0, 3, 1, 4]:
        return None
    reshape = producer.get(permute.input[0])
    if reshape is None or reshape.op_type != "Reshape" or len(consumers.get(reshape.output[0], [])) != 1:
        return None
    shape, add = const(reshape.input[1]), producer.get(reshape.input[0])
    if shape is None or shape.shape != (5,) or shape[2] != 3 or add is None or add.op_type != "Add" or \
            len(consumers.get(add.output[0], [])) != 1:
        return None
    biases = [i for i in add.input if const(i) is not None]
    if len(biases) != 1:
        return None
    bias = const(biases[0])
    matmul = producer.get(next(i for i in add.input if i != biases[0]))
    if matmul is None or matmul.op_type != "MatMul" or len(consumers.get(matmul.output[0], [])) != 1:
        return None
    weight = const(matmul.input[1])
    if weight is None or weight.ndim != 2 or weight.shape[1] % 3 or bias.shape != (weight.shape[1],) or \
            (shape[3] > 0 and shape[4] > 0 and shape[3] * shape[4] != weight.shape[1] // 3):
        return None
    parts: dict[int, tuple[Any, Any]] = {}
    for node in consumers.get(permute.output[0], []):
        squeezes = consumers.get(node.output[0], [])
        if node.op_type != "Slice" or len(node.input) < 4 or len(squeezes) != 1 or squeezes[0].op_type != "Squeeze":
            return None
        starts, ends, axes = (const(i) for i in node.input[1:4])
        steps = const(node.input[4]) if len(node.input) > 4 and node.input[4] else None
        squeeze_axes = const(squeezes[0].input[1]) if len(squeezes[0].input) > 1 else None
        if any(v is None or v.shape != (1,) for v in (starts, ends, axes, squeeze_axes)) or \
                (steps is not None and steps.tolist() != [1]) or axes[0] != 0 or squeeze_axes[0] != 0:
            return None
        start = int(starts[0])
        if not 0 <= start < 3 or min(int(ends[0]), 3) != start + 1 or start in parts:
            return None
        parts[start] = (node, squeezes[0])
    if sorted(parts) != [0, 1, 2]:
        return None
    return {"matmul": matmul, "add": add, "reshape": reshape, "permute": permute, "shape": shape, "weight": weight,
            "bias": bias, "bias_first": add.input[0] == biases[0], "parts": [parts[i] for i in range(3)]}


def split_qkv_projection(model: Any) -> int:
    """Split every timm-style q/k/v projection (see :func:`_qkv_parts`) into one MatMul + Add + Reshape + Transpose
    per part, a k part read only by ``Transpose(perm 0,1,3,2)`` transposed straight to that layout; returns how
    many. Each part's MatMul multiplies by the weight's own column block (and adds the bias's), so every output
    element is the same dot product as before. Graph outputs inside the pattern leave it alone.
    """
    from onnx import helper, numpy_helper

    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    outputs = {o.name for o in graph.output}

    def const(name: str) -> Any:
        return numpy_helper.to_array(inits[name]) if name in inits else None

    fresh = _fresh_names(model)
    done = 0
    for permute in list(graph.node):
        if permute.op_type != "Transpose" or _perm(permute) != [2, 0, 3, 1, 4]:
            continue  # (checked again in _qkv_parts; here it spares indexing the graph for every node)
        producer = {o: n for n in graph.node for o in n.output}
        consumers: dict[str, list[Any]] = {}
        for node in graph.node:
            for name in node.input:
                consumers.setdefault(name, []).append(node)
        match = _qkv_parts(permute, producer, consumers, const)
        if match is None:
            continue
        matmul, width = match["matmul"], match["weight"].shape[1] // 3
        shape = match["shape"][[0, 1, 3, 4]]
        allowzero = [a for a in match["reshape"].attribute if a.name == "allowzero"]
        dead = [matmul, match["add"], match["reshape"], permute]
        if any(n.output[0] in outputs for n in dead) or \
                any(o in outputs for pair in match["parts"] for n in pair for o in n.output):
            continue
        shape_name = fresh(f"{matmul.name}_head_shape")
        graph.initializer.append(numpy_helper.from_array(shape, shape_name))
        new = []
        for i, (slice_node, squeeze) in enumerate(match["parts"]):
            target, perm = squeeze.output[0], [0, 2, 1, 3]
            readers = consumers.get(target, [])
            dead += [slice_node, squeeze]
            if len(readers) == 1 and readers[0].op_type == "Transpose" and _perm(readers[0]) == [0, 1, 3, 2] \
                    and target not in outputs:
                target, perm = readers[0].output[0], [0, 2, 3, 1]
                dead.append(readers[0])
            part = "qkv"[i]
            w, b = fresh(f"{matmul.input[1]}_{part}"), fresh(f"{match['add'].name}_{part}_bias")
            graph.initializer.extend([
                numpy_helper.from_array(match["weight"][:, i * width:(i + 1) * width].copy(), w),
                numpy_helper.from_array(match["bias"][i * width:(i + 1) * width].copy(), b)])
            product, biased, heads = (fresh(f"{matmul.output[0]}_{part}{s}") for s in ("", "_biased", "_heads"))
            new += [helper.make_node("MatMul", [matmul.input[0], w], [product], name=fresh(f"{matmul.name}_{part}")),
                    helper.make_node("Add", [b, product] if match["bias_first"] else [product, b], [biased],
                                     name=fresh(f"{match['add'].name}_{part}")),
                    helper.make_node("Reshape", [biased, shape_name], [heads],
                                     name=fresh(f"{match['reshape'].name}_{part}")),
                    helper.make_node("Transpose", [heads], [target], name=fresh(f"{permute.name}_{part}"),
                                     perm=perm)]
            new[-2].attribute.extend(allowzero)
        pos = list(graph.node).index(matmul)
        for node in dead:
            graph.node.remove(node)
        for k, made in enumerate(new):
            graph.node.insert(pos + k, made)
        done += 1
    _drop_unused_initializers(model, inits)
    return done


def _drop_unused_initializers(model: Any, before: dict[str, Any]) -> None:
    """Remove the initializers of ``before`` (name -> tensor) that no node reads (nor a graph output; one that is also
    a graph input stays, or the input would lose its default)."""
    graph = model.graph
    used = {i for n in graph.node for i in n.input} | {o.name for o in graph.output} | {i.name for i in graph.input}
    keep = [t for t in graph.initializer if t.name in used or t.name not in before]
    if len(keep) != len(graph.initializer):
        del graph.initializer[:]
        graph.initializer.extend(keep)
