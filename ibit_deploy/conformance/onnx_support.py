"""Is an ONNX file one TensorRT 10.3's ONNX parser accepts? Every op, attribute and input form against a table.

The table (:data:`TRT10_ONNX_OPS`; :data:`PARSER_TABLES` per TensorRT version: 10.14 adds the ONNX ``Attention``
op, :func:`table_for`) lists, per op, the tensor types the parser supports and the restrictions it
enforces, each row citing where that comes from. :func:`check_onnx` walks a model: ops not in the table, or listed
as unsupported, custom domains, opsets out of range, tensor types TensorRT lacks, and every restriction (axes given
as initializers, symmetric INT8 Q/DQ with zero point 0, per-channel scales along the right axis ...) produce
problems naming the node. A model with no problems can still fail to build (shapes, memory, kernels): only
TensorRT on the GPU can say that.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ..devicekit.versions import feature

# Sources. TensorRT's release/10.3 pins onnx-tensorrt 62bdde2, which is not in reach of these machines; 10.1-GA
# (June 2024) is the newest 10.x operator matrix read here. Its rows for the ops below are ASSUMED unchanged in
# 10.3 (not verified here); a 10.3 engine build on the device is the final word.
SRC_OPS = "onnx/onnx-tensorrt docs/operators.md @ branch 10.1-GA (96e7811): support matrix and Restrictions column"
SRC_OPSET = "onnx/onnx-tensorrt docs/operators.md @ 10.1-GA: 'operators in the inclusive range of opset 9 to opset 20'"
SRC_TYPES = ("onnx/onnx-tensorrt docs/operators.md @ 10.1-GA: data types DOUBLE (cast down), FLOAT32, FLOAT16, "
             "BFLOAT16, INT32, INT64, FP8, INT8, INT4, UINT8 (network I/O only), BOOL")
SRC_QDQ = ("onnx/onnx-tensorrt onnxOpImporters.cpp QuantDequantLinearHelper @ 10.1-GA (zero point all zeros, "
           "scale positive constant, scale/zero-point same volume, per-axis scale count = dim[axis], activations "
           "per-tensor); https://docs.nvidia.com/deeplearning/tensorrt/operators/docs/Dequantize.html (scale a "
           "build-time constant, scalar or 1-D; input int8)")
SRC_MATMUL_AXIS = ("per-channel weight scales must lie along the output channels (N of B[K, N]; with Gemm transB=1 "
                   "axis 0): a scale along K cannot be taken out of the int8 dot product. TensorRT Dequantize doc "
                   "(1-D per-channel scale) + ../shared/docs/METHODS.md section 7 (weights per-channel)")

# The ONNX Attention op (opset 23), parsed from TensorRT 10.14 on. The 10.14+ operators.md is not in reach of these
# machines: the row rests on the parser's changelog and TensorRT's own operator page, which the parser maps onto.
SRC_ATTENTION = ("onnx/onnx-tensorrt 'TensorRT 10.14 GA Parser Update' release notes ('Added support for the "
                 "Attention operator'); TensorRT 10.14.1 release notes (IAttention); TensorRT operator page "
                 "https://docs.nvidia.com/deeplearning/tensorrt/latest/_static/operators/Attention.html: query, key, "
                 "value float32/float16/bfloat16; mask bool or the type of query (a float mask is added to the "
                 "BMM1 output), shape [a0, a1, s_q, s_kv] with a0, a1 broadcastable to batch and heads")
SRC_OPSET_1014 = ("ASSUMED: the 10.14+ operators.md is not read here; a parser that imports the opset-23 Attention op "
                  "takes opset-23 models, so 9..23 (TensorRT on the device is the final word)")
FLOAT_TYPES = ("FP32", "FP16", "BF16")
_ONNX_TYPE = {TensorProto.FLOAT: "FP32", TensorProto.FLOAT16: "FP16", TensorProto.BFLOAT16: "BF16",
              TensorProto.INT32: "INT32", TensorProto.INT64: "INT64", TensorProto.INT8: "INT8",
              TensorProto.UINT8: "UINT8", TensorProto.BOOL: "BOOL", TensorProto.DOUBLE: "DOUBLE"}
OPSET_RANGE = (9, 20)


@dataclasses.dataclass(frozen=True)
class OpSupport:
    """One row: whether the parser supports the op, for which input types, with which restrictions (rule names)."""

    supported: bool
    types: tuple[str, ...] = ()
    rules: tuple[str, ...] = ()
    source: str = SRC_OPS


_ALL_INT = ("INT32", "INT64")
_Y = OpSupport


def _row(types: tuple[str, ...], *rules: str) -> OpSupport:
    return OpSupport(True, types, rules)


TRT10_ONNX_OPS: dict[str, OpSupport] = {
    # elementwise and shape ops the exported ViTs use
    **{op: _row(FLOAT_TYPES + _ALL_INT) for op in ("Add", "Sub", "Mul", "Div", "Max", "Min", "Neg", "Abs", "Sum",
                                                    "Equal", "Relu", "Range")},
    **{op: _row(FLOAT_TYPES) for op in ("Erf", "Exp", "Sqrt", "Pow", "Tanh", "Sigmoid", "Softmax", "Reciprocal",
                                        "Clip", "Gemm", "MatMul", "Conv", "Einsum", "GlobalAveragePool",
                                        "LpNormalization")},
    **{op: _row(FLOAT_TYPES + _ALL_INT + ("BOOL",)) for op in ("Concat", "Constant", "Expand", "Flatten", "Gather",
                                                              "Identity", "Reshape", "Shape", "Tile", "Transpose",
                                                              "Trilu", "Where", "Split")},
    "Cast": _row(FLOAT_TYPES + _ALL_INT + ("UINT8", "BOOL")),
    "ConstantOfShape": _row(("FP32", "INT64")),
    "Gelu": _row(FLOAT_TYPES + ("INT8",) + _ALL_INT),
    "LayerNormalization": _row(FLOAT_TYPES, "layernorm_first_output_only"),
    **{op: _row(FLOAT_TYPES + _ALL_INT, "axes_initializer") for op in ("ReduceL2", "ReduceMax", "ReduceMean",
                                                                       "ReduceSum", "ReduceMin", "ReduceProd")},
    "Slice": _row(FLOAT_TYPES + _ALL_INT + ("BOOL",), "axes_initializer"),
    "Squeeze": _row(FLOAT_TYPES + _ALL_INT + ("BOOL",), "axes_initializer"),
    "Unsqueeze": _row(FLOAT_TYPES + _ALL_INT + ("BOOL",), "axes_initializer"),
    "QuantizeLinear": OpSupport(True, FLOAT_TYPES, ("symmetric_qdq",), f"{SRC_OPS}; {SRC_QDQ}"),
    "DequantizeLinear": OpSupport(True, ("INT8",), ("symmetric_qdq",), f"{SRC_OPS}; {SRC_QDQ}"),
    # listed as unsupported (N) in the matrix: the integer-arithmetic and dynamic quantization forms
    **{op: OpSupport(False) for op in ("DynamicQuantizeLinear", "MatMulInteger", "ConvInteger", "QLinearMatMul",
                                       "QLinearConv", "NonZero", "Unique", "StringNormalizer")},
}
# TensorRT 10.14 and later: the 10.3 table plus the Attention op (the rows above are assumed unchanged)
TRT10_14_ONNX_OPS: dict[str, OpSupport] = {
    **TRT10_ONNX_OPS,
    "Attention": OpSupport(True, FLOAT_TYPES, ("attention_mask",), SRC_ATTENTION),
}
# the first TensorRT whose parser takes the Attention op: the feature row of the version matrix
ATTENTION_OP_PARSER = feature("onnx_attention_op").since
# (major, minor) it applies from -> (table, opset range, opset source, label); table_for picks the row
PARSER_TABLES: dict[tuple[int, int], tuple[dict[str, OpSupport], tuple[int, int], str, str]] = {
    (10, 0): (TRT10_ONNX_OPS, OPSET_RANGE, SRC_OPSET, "TensorRT 10.3"),
    ATTENTION_OP_PARSER: (TRT10_14_ONNX_OPS, (9, 23), SRC_OPSET_1014, "TensorRT >= 10.14"),
}
# Ops whose every input is a data tensor (types checked on all inputs; others on input 0 only).
_ALL_DATA_INPUTS = {"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum", "MatMul", "Gemm", "Equal", "Concat", "Pow"}
_AXES_INPUT = {"Slice": 3, "Squeeze": 1, "Unsqueeze": 1, **{op: 1 for op in ("ReduceL2", "ReduceMax", "ReduceMean",
                                                                             "ReduceSum", "ReduceMin", "ReduceProd")}}


@dataclasses.dataclass
class _Graph:
    model: onnx.ModelProto
    initializers: dict[str, np.ndarray]
    constants: dict[str, np.ndarray]  # outputs of Constant nodes
    types: dict[str, int]
    shapes: dict[str, tuple[Any, ...]]
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]]
    producers: dict[str, onnx.NodeProto]
    io_names: set[str]

    def const(self, name: str) -> np.ndarray | None:
        return self.initializers.get(name, self.constants.get(name))


def _index(model: onnx.ModelProto) -> _Graph:
    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception:  # shape inference is a help for type checks, not a requirement
        inferred = model
    g = inferred.graph
    types, shapes = {}, {}
    for vi in [*g.input, *g.output, *g.value_info]:
        t = vi.type.tensor_type
        types[vi.name] = t.elem_type
        shapes[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else d.dim_param for d in t.shape.dim)
    initializers = {i.name: numpy_helper.to_array(i) for i in g.initializer}
    for i in g.initializer:
        types[i.name], shapes[i.name] = i.data_type, tuple(i.dims)
    constants = {}
    for node in g.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    constants[node.output[0]] = numpy_helper.to_array(attr.t)
                    types[node.output[0]], shapes[node.output[0]] = attr.t.data_type, tuple(attr.t.dims)
    consumers: dict[str, list[tuple[onnx.NodeProto, int]]] = {}
    for node in g.node:
        for idx, name in enumerate(node.input):
            consumers.setdefault(name, []).append((node, idx))
    producers = {out: node for node in g.node for out in node.output}
    return _Graph(inferred, initializers, constants, types, shapes, consumers, producers,
                  {v.name for v in [*g.input, *g.output]})


# ------------------------------------------------------------------------------------------------------ rules

def _axes_initializer(g: _Graph, node: onnx.NodeProto) -> list[str]:
    idx = _AXES_INPUT[node.op_type]
    if len(node.input) > idx and node.input[idx] and g.const(node.input[idx]) is None:
        return [f"input {idx} (axes) '{node.input[idx]}' is computed at run time; TensorRT needs it as an initializer"]
    return []


def _attr(node: onnx.NodeProto, name: str, default: Any) -> Any:
    for attr in node.attribute:
        if attr.name == name:
            return onnx.helper.get_attribute_value(attr)
    return default


def _symmetric_qdq(g: _Graph, node: onnx.NodeProto) -> list[str]:
    problems = []
    scale = g.const(node.input[1]) if len(node.input) > 1 else None
    if scale is None:
        return [f"scale '{node.input[1] if len(node.input) > 1 else ''}' is not a constant (must be known at build time)"]
    if scale.ndim > 1:
        problems.append(f"scale has rank {scale.ndim}; TensorRT takes a scalar or a 1-D per-channel scale for INT8")
    if not np.all(scale > 0):
        problems.append("scale coefficients must all be positive")
    if len(node.input) > 2 and node.input[2]:
        zero = g.const(node.input[2])
        ztype = g.types.get(node.input[2])
        if zero is None:
            problems.append("zero point is not a constant")
        else:
            if ztype != TensorProto.INT8:
                problems.append(f"zero point type {_ONNX_TYPE.get(ztype, ztype)}: TensorRT quantizes to INT8 only "
                                f"(UINT8 / asymmetric quantization is not supported)")
            if np.any(zero != 0):
                problems.append("zero point is not all zeros: TensorRT only supports symmetric quantization")
            if zero.size != scale.size:
                problems.append(f"zero point has {zero.size} values, scale {scale.size}: they must match")
    if node.op_type == "DequantizeLinear":
        dtype = g.types.get(node.input[0])
        if dtype is not None and dtype != TensorProto.INT8:
            problems.append(f"dequantized input is {_ONNX_TYPE.get(dtype, dtype)}; TensorRT dequantizes INT8")
    if scale.size > 1:
        shape = g.shapes.get(node.input[0], ())
        axis = _attr(node, "axis", 1)
        axis = axis + len(shape) if axis < 0 and shape else axis
        if g.const(node.input[0]) is None and node.op_type == "QuantizeLinear":
            problems.append("per-channel quantization of an activation: TensorRT quantizes activations per tensor")
        if shape and 0 <= axis < len(shape) and isinstance(shape[axis], int) and shape[axis] != scale.size:
            problems.append(f"{scale.size} scales for axis {axis} of size {shape[axis]}")
        problems += _matmul_weight_axis(g, node, axis, shape)
    return problems


def _matmul_weight_axis(g: _Graph, node: onnx.NodeProto, axis: int, shape: tuple[Any, ...]) -> list[str]:
    """A per-channel DequantizeLinear of a 2-D weight feeding MatMul/Gemm input B must scale the output channels."""
    if node.op_type != "DequantizeLinear" or len(shape) != 2:
        return []
    out = []
    for consumer, idx in g.consumers.get(node.output[0], []):
        if consumer.op_type in ("MatMul", "Gemm") and idx == 1:
            want = 0 if consumer.op_type == "Gemm" and _attr(consumer, "transB", 0) else 1
            if axis != want:
                out.append(f"per-channel weight scale on axis {axis} of {consumer.op_type} input B {shape}; the "
                           f"output-channel axis is {want}")
    return out


def _layernorm_first_output_only(g: _Graph, node: onnx.NodeProto) -> list[str]:
    used = [o for o in node.output[1:] if o and (o in g.consumers or o in g.io_names)]
    return [f"outputs {used} (Mean / InvStdDev) are used; TensorRT supports only the first output Y"] if used else []


def _attention_mask(g: _Graph, node: onnx.NodeProto) -> list[str]:
    """TensorRT's Attention mask: bool or the query's type; rank 4 ([a0, a1, s_q, s_kv]), s_q the query's tokens."""
    if len(node.input) < 4 or not node.input[3]:
        return []
    mask, query = node.input[3], node.input[0]
    problems = []
    mtype, qtype = g.types.get(mask), g.types.get(query)
    if mtype is not None and qtype is not None and mtype not in (TensorProto.BOOL, qtype):
        problems.append(f"attn_mask '{mask}' is {_ONNX_TYPE.get(mtype, mtype)}, the query "
                        f"{_ONNX_TYPE.get(qtype, qtype)}: TensorRT takes a bool mask or one of the query's type")
    shape, qshape = g.shapes.get(mask), g.shapes.get(query)
    if shape and len(shape) != 4:  # () is an unknown shape
        problems.append(f"attn_mask '{mask}' has rank {len(shape)}; TensorRT's Attention takes [a0, a1, s_q, s_kv]")
    elif shape and qshape and len(qshape) == 4 and isinstance(shape[2], int) \
            and isinstance(qshape[2], int) and shape[2] != qshape[2]:
        problems.append(f"attn_mask '{mask}' has {shape[2]} query rows, the query {qshape[2]} tokens")
    return problems


RULES: dict[str, Callable[[_Graph, onnx.NodeProto], list[str]]] = {
    "axes_initializer": _axes_initializer, "symmetric_qdq": _symmetric_qdq,
    "layernorm_first_output_only": _layernorm_first_output_only, "attention_mask": _attention_mask,
}
_RULE_SOURCES = {"symmetric_qdq": f"{SRC_QDQ}; {SRC_MATMUL_AXIS}"}


# ------------------------------------------------------------------------------------------------------ check

def table_for(trt_version: str | tuple[int, int]) -> tuple[dict[str, OpSupport], tuple[int, int], str, str]:
    """The parser table of TensorRT ``trt_version`` (``"10.14.1"`` or ``(10, 14)``): (ops, opset range, opset
    source, label). Versions before the first row get the 10.3 table."""
    if isinstance(trt_version, str):
        parts = trt_version.split(".")
        version = (int(parts[0]), int(parts[1]) if len(parts) > 1 else 0)
    else:
        version = tuple(trt_version)
    since = max((v for v in PARSER_TABLES if v <= version), default=min(PARSER_TABLES))
    return PARSER_TABLES[since]


def check_onnx(model: onnx.ModelProto | str | os.PathLike, table: dict[str, OpSupport] | None = None,
               trt_version: str | tuple[int, int] | None = None) -> dict[str, Any]:
    """Check ``model`` against TensorRT 10.3's ONNX parser (``trt_version``: that version's, :func:`table_for`);
    ``{"ops": {op: count}, "problems": [...], "passed", "parser"}``.

    Each problem names the node, its op, what is wrong and the source of the rule. No problems: ``passed``.
    """
    ops, opset_range, opset_source, parser = table_for(trt_version if trt_version is not None else (10, 3))
    table = ops if table is None else table
    model = onnx.load(str(model)) if not isinstance(model, onnx.ModelProto) else model
    g = _index(model)
    problems: list[dict[str, str]] = []

    def problem(node: str, op: str, message: str, source: str) -> None:
        problems.append({"node": node, "op": op, "problem": message, "source": source})

    for opset in model.opset_import:
        if opset.domain in ("", "ai.onnx"):
            if not opset_range[0] <= opset.version <= opset_range[1]:
                problem("(model)", "opset", f"opset {opset.version} outside {opset_range}", opset_source)
        elif any(n.domain == opset.domain for n in model.graph.node):
            problem("(model)", "opset", f"custom domain {opset.domain!r}: needs a TensorRT plugin", SRC_OPS)
    for name, dtype in g.types.items():
        label = _ONNX_TYPE.get(dtype)
        if label is None and dtype != TensorProto.UNDEFINED:
            problem(name, "(tensor)", f"element type {TensorProto.DataType.Name(dtype)} is not a TensorRT type",
                    SRC_TYPES)
        elif label == "UINT8" and name not in g.io_names:
            problem(name, "(tensor)", "UINT8 inside the network: TensorRT takes UINT8 only as network I/O", SRC_TYPES)

    counts: dict[str, int] = {}
    for node in model.graph.node:
        op = node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}.{node.op_type}"
        counts[op] = counts.get(op, 0) + 1
        row = table.get(op)
        label = node.name or (node.output[0] if node.output else "?")
        if row is None:
            problem(label, op, f"op not in the {parser} ONNX support table", SRC_OPS)
            continue
        if not row.supported:
            problem(label, op, "op is listed as unsupported by TensorRT's ONNX parser", row.source)
            continue
        inputs: Iterable[str] = node.input if op in _ALL_DATA_INPUTS else node.input[:1]
        for name in inputs:
            dtype = g.types.get(name)
            if name and dtype in _ONNX_TYPE and _ONNX_TYPE[dtype] not in row.types:
                problem(label, op, f"input '{name}' is {_ONNX_TYPE[dtype]}; {op} supports {', '.join(row.types)}",
                        row.source)
        for rule in row.rules:
            for message in RULES[rule](g, node):
                problem(label, op, message, _RULE_SOURCES.get(rule, row.source))
    return {"ops": dict(sorted(counts.items())), "problems": problems, "passed": not problems, "parser": parser}


def check_bundle(bundle: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """:func:`check_onnx` for every ONNX artifact a bundle's manifest.json lists, keyed by bundle-relative path; the
    ONNX Attention-op form (``--attention onnx-attention``) against the parser of the versions that take it."""
    from pathlib import Path

    from ..devicekit.fileio import read_json
    from ..devicekit.layout import ATTENTION_OP_KIND

    bundle = Path(bundle)
    manifest_path = bundle / "manifest.json"
    if not manifest_path.is_file():
        raise FileNotFoundError(f"{bundle} has no manifest.json: not an ibit-deploy bundle")
    manifest = read_json(manifest_path, "bundle manifest")  # bounded size and nesting
    artifacts = manifest.get("artifacts") if isinstance(manifest, dict) else None
    parsers = {"onnx": None, ATTENTION_OP_KIND: ATTENTION_OP_PARSER}
    paths = {a["path"]: parsers[a["kind"]] for a in artifacts if isinstance(a, dict) and a.get("kind") in parsers
             and isinstance(a.get("path"), str)} if isinstance(artifacts, list) else {}
    if not paths:
        raise ValueError(f"{manifest_path} lists no ONNX artifact")
    return {path: check_onnx(bundle / path, trt_version=version) for path, version in paths.items()}
