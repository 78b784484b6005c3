"""Reading the attention cores of an exported graph: which form each layer's attention took, and its constants.

A core is found from its Softmax (or an ONNX ``Attention`` op, opset 23): the MatMul that makes the scores, anything
between that MatMul and the Softmax, and the MatMul that applies the weights. The constants of a core are the float
initializers of rank >= 2 that reach the scores without passing another MatMul (the dense bias; FlashBias's factors),
so their bytes are what the bias costs in the file. TensorRT's MHA fusion wants nothing between the two MatMuls but
the Softmax (METHODS.md section 3); :func:`check_no_dense_bias` holds a FlashBias graph to that.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import onnx

LINEAR_OPS = ("MatMul", "Gemm")
# ops that may sit between the score MatMul and the Softmax without being a bias (casts of an fp16 island)
PASS_THROUGH = ("Cast", "Identity")
QDQ = ("QuantizeLinear", "DequantizeLinear")


def _constant_inputs(idx, start: list[str]) -> list[str]:
    """Float initializers of rank >= 2 upstream of ``start`` tensors, not looking past MatMul/Gemm outputs."""
    found: list[str] = []
    seen: set[str] = set()
    stack = list(start)
    while stack:
        name = stack.pop()
        if not name or name in seen:
            continue
        seen.add(name)
        if name in idx.initializers:
            tensor = idx.initializers[name]
            if len(tensor.dims) >= 2 and tensor.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16):
                found.append(name)
            continue
        node = idx.producer.get(name)
        if node is None or node.op_type in LINEAR_OPS:
            continue
        stack.extend(node.input)
    return sorted(found)


def _consumers_through(idx, name: str, op_type: str) -> list[onnx.NodeProto]:
    """Consumers of ``name`` with ``op_type``, looking through Casts and Q/DQ pairs (fp16 islands, INT8)."""
    found, frontier = [], [name]
    while frontier:
        for consumer in idx.consumers.get(frontier.pop(), []):
            if consumer.op_type == op_type:
                found.append(consumer)
            elif consumer.op_type in (*PASS_THROUGH, *QDQ):
                frontier.append(consumer.output[0])
    return found


def _nbytes(tensor: onnx.TensorProto) -> int:
    itemsize = np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    return int(np.prod(tensor.dims, dtype=np.int64)) * itemsize


def attention_cores(model: onnx.ModelProto) -> list[dict[str, Any]]:
    """One record per attention core, in graph order.

    Each record: ``form`` (``"matmul"`` for MatMul -> Softmax -> MatMul, ``"attention-op"`` for ONNX ``Attention``),
    ``between`` (op types between the score MatMul and the Softmax, Casts aside), ``bias_constants`` (constants
    feeding those ops: a dense (heads, T, T) bias), ``constants`` (every constant of the core, names and shapes),
    ``constant_bytes``, and for the Attention op whether it has an ``attn_mask``.
    """
    from ..quantization.graph import GraphIndex, ensure_node_names  # lazy, as in pipeline.py: import cost

    ensure_node_names(model)
    idx = GraphIndex(model)
    cores: list[dict[str, Any]] = []
    for node in model.graph.node:
        if node.op_type == "Attention":
            q, k = node.input[0], node.input[1]
            mask = node.input[3] if len(node.input) > 3 else ""
            constants = _constant_inputs(idx, [q, k, mask])
            cores.append({"form": "attention-op", "node": node.name, "between": [], "attn_mask": bool(mask),
                          "bias_constants": _constant_inputs(idx, [mask]) if mask else [],
                          **_describe(idx, constants)})
            continue
        if node.op_type != "Softmax":
            continue
        between: list[onnx.NodeProto] = []
        side: list[str] = []  # the other operands of the nodes between: where a bias comes in
        current = idx.producer.get(idx.source(node.input[0]))
        while current is not None and current.op_type not in LINEAR_OPS:
            between.append(current)  # e.g. Add(scores, bias) / Mul(scores, scale)
            data = [i for i in current.input if i and not idx.is_const(i)]
            chain = next((i for i in data if (p := idx.producer.get(idx.source(i))) is not None and
                          p.op_type in LINEAR_OPS), data[0] if data else None)
            side += [i for i in current.input if i and i != chain]
            if chain is None:
                break
            current = idx.producer.get(idx.source(chain))
        if current is None or current.op_type != "MatMul":
            continue  # not an attention softmax (or one we do not recognise)
        applies = _consumers_through(idx, node.output[0], "MatMul")
        bias_constants = _constant_inputs(idx, side)
        constants = sorted(set(_constant_inputs(idx, list(current.input))) | set(bias_constants))
        cores.append({"form": "matmul", "node": node.name, "scores": current.name,
                      "apply": applies[0].name if applies else None,
                      "between": [n.op_type for n in reversed(between)], "bias_constants": bias_constants,
                      **_describe(idx, constants)})
    return cores


def _describe(idx, constants: list[str]) -> dict[str, Any]:
    return {"constants": {c: list(idx.initializers[c].dims) for c in constants},
            "constant_bytes": sum(_nbytes(idx.initializers[c]) for c in constants)}


def check_no_dense_bias(model: onnx.ModelProto, source: str = "model") -> list[dict[str, Any]]:
    """The attention cores of a FlashBias graph, after checking each is a plain attention call.

    Raises ValueError when a core has anything but the Softmax between its MatMuls (a bias Add), an ``attn_mask``,
    or a constant with two equal trailing dims (a (T, T) map), or when no core is found.
    """
    cores = attention_cores(model)
    if not cores:
        raise ValueError(f"{source}: no attention core (MatMul -> Softmax -> MatMul or Attention) found")
    for i, core in enumerate(cores):
        problems = []
        if core["between"]:
            problems.append(f"{core['between']} between the score MatMul and the Softmax")
        if core.get("attn_mask"):
            problems.append("an attn_mask input")
        square = [c for c, dims in core["constants"].items() if len(dims) >= 2 and dims[-1] == dims[-2] > 1]
        if square:
            problems.append(f"(T, T) constants {square}")
        if problems:
            raise ValueError(f"{source}: attention core {i} ({core['node']}) is not a plain attention call: "
                             + "; ".join(problems))
    return cores
