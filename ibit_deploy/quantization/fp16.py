"""FP16 conversion with FP32 islands: every float tensor becomes fp16 except inside the islands, with Casts at borders.

Written as a small pass of our own (rather than a converter with its own block lists) so the islands are exactly the
ones the config names, found structurally: LayerNormalization, the Softmax of the bias variant, and IBiT's
Frobenius normalisation, whose sum of (N+1)^2 squares overflows fp16 (METHODS.md section 1). The result is a
precision-typed ONNX that a strongly typed TensorRT build (TensorRT 11) and ONNX Runtime both run as written.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..devicekit.fileio import atomic_path
from .config import Fp16Config
from .graph import ensure_node_names, frobenius_norm_nodes, matching_nodes

FP16_MAX = float(np.finfo(np.float16).max)
FP16_TINY = float(np.finfo(np.float16).smallest_subnormal)
# Inputs that stay float32 whatever the node's precision (ONNX types them tensor(float) only).
FLOAT32_ONLY_INPUTS = {"Resize": {2}, "Upsample": {1}}
FLOAT, HALF = TensorProto.FLOAT, TensorProto.FLOAT16


def fp32_island_nodes(model: onnx.ModelProto, config: Fp16Config) -> dict[str, list[str]]:
    """The nodes kept in fp32, grouped by why: ``{"op_types": [...], "frobenius": [...], "patterns": [...]}``."""
    ensure_node_names(model)
    islands = {"op_types": [n.name for n in model.graph.node if n.op_type in set(config.keep_op_types)],
               "frobenius": [], "patterns": []}
    if config.frobenius_fp32:
        islands["frobenius"] = [name for group in frobenius_norm_nodes(model) for name in group]
    if config.keep_fp32:
        islands["patterns"] = sorted(matching_nodes(model, config.keep_fp32, "keep_fp32"))
    return islands


def _dtypes(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every tensor, from strict shape inference (a graph we cannot type, we do not convert)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=True)
    except (onnx.shape_inference.InferenceError, onnx.checker.ValidationError) as exc:
        raise ValueError(f"cannot infer the tensor types of the graph, so it cannot be converted to fp16: {exc}") from exc
    graph = inferred.graph
    types = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.output, *graph.value_info]}
    types.update({t.name: t.data_type for t in graph.initializer})
    for node in graph.node:  # Constant outputs are not always in value_info
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = attr.t.data_type
    return types


def _constants_to_initializers(model: onnx.ModelProto) -> None:
    """Float Constant nodes become initializers, so one on-demand conversion handles every constant."""
    keep = []
    for node in model.graph.node:
        value = next((a.t for a in node.attribute if a.name == "value"), None) if node.op_type == "Constant" else None
        if value is not None and value.data_type == FLOAT:
            tensor = onnx.TensorProto()
            tensor.CopyFrom(value)
            tensor.name = node.output[0]
            model.graph.initializer.append(tensor)
        else:
            keep.append(node)
    del model.graph.node[:]
    model.graph.node.extend(keep)


def _to_half(tensor: onnx.TensorProto, name: str) -> tuple[onnx.TensorProto, int]:
    """fp16 copy of a float initializer; returns it and how many non-zero values underflow to zero."""
    array = numpy_helper.to_array(tensor)
    big = float(np.abs(array).max()) if array.size else 0.0
    if not np.isfinite(array).all() or big > FP16_MAX:
        raise ValueError(f"initializer {tensor.name!r} has values up to {big:.4g}, beyond fp16's range "
                         f"({FP16_MAX}); keep its consumer in fp32 with Fp16Config.keep_fp32")
    underflow = int(np.count_nonzero((array != 0) & (np.abs(array) < FP16_TINY / 2)))
    return numpy_helper.from_array(array.astype(np.float16), name), underflow


def convert_fp16(onnx_in: str | os.PathLike, onnx_out: str | os.PathLike, config: Fp16Config | None = None) -> dict[str, Any]:
    """Write an fp16 copy of ``onnx_in`` to ``onnx_out`` (atomically) with the config's fp32 islands.

    Returns a report: the fp32 island nodes (by reason), Casts inserted, initializers converted, parameters that
    underflow to zero in fp16, and whether graph I/O stayed float32.
    """
    config = config or Fp16Config()
    onnx_in, onnx_out = Path(onnx_in), Path(onnx_out)
    if not onnx_in.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx_in}")
    model = onnx.load(str(onnx_in))
    graph = model.graph
    if any(a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS) for n in graph.node for a in n.attribute):
        raise ValueError(f"{onnx_in}: graphs with subgraphs (If/Loop/Scan) are not supported by the fp16 pass")
    _constants_to_initializers(model)
    ensure_node_names(model)
    types = _dtypes(model)
    islands = fp32_island_nodes(model, config)
    fp32_nodes = {name for names in islands.values() for name in names}

    initializers = {t.name: t for t in graph.initializer}
    graph_inputs = {i.name for i in graph.input}
    graph_outputs = {o.name for o in graph.output}
    # versions[tensor][precision] = the name carrying that tensor in that precision
    versions: dict[str, dict[int, str]] = {}
    io_type = FLOAT if config.keep_io_types else HALF
    for name in graph_inputs:
        if types.get(name) == FLOAT:
            versions[name] = {io_type: name}
    new_inits: list[onnx.TensorProto] = []
    casts: list[onnx.NodeProto] = []
    underflow = 0
    converted = 0
    inserted = 0

    def version(name: str, want: int) -> str:
        """The name of ``name`` in precision ``want``, converting an initializer or adding a Cast on demand."""
        nonlocal underflow, converted, inserted
        have = versions.setdefault(name, {})
        if want in have:
            return have[want]
        if name in initializers:
            if want == FLOAT:
                have[FLOAT] = name
                return name
            half, lost = _to_half(initializers[name], f"{name}__fp16")
            new_inits.append(half)
            underflow += lost
            converted += 1
            have[HALF] = half.name
            return half.name
        source = next(iter(have.values()))  # the tensor exists in the other precision: cast it
        cast_name = f"{name}__to_{'fp16' if want == HALF else 'fp32'}"
        casts.append(helper.make_node("Cast", [source], [cast_name], name=f"Cast_{cast_name}", to=want))
        inserted += 1
        have[want] = cast_name
        return cast_name

    new_nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        precision = FLOAT if node.name in fp32_nodes else HALF
        for i, name in enumerate(node.input):
            if not name or types.get(name) != FLOAT:
                continue
            want = FLOAT if i in FLOAT32_ONLY_INPUTS.get(node.op_type, ()) else precision
            node.input[i] = version(name, want)
        if node.op_type == "Cast" and precision == HALF:
            for attr in node.attribute:
                if attr.name == "to" and attr.i == FLOAT:
                    attr.i = HALF
        for j, name in enumerate(node.output):
            if types.get(name) != FLOAT:
                continue
            if name in graph_outputs and precision != io_type:
                # the graph output itself is produced in io_type by a Cast at the end
                node.output[j] = f"{name}__{'fp16' if precision == HALF else 'fp32'}"
                versions[name] = {precision: node.output[j]}
            else:
                versions[name] = {precision: name}
        new_nodes.extend(casts)
        casts.clear()
        new_nodes.append(node)
    for out in graph.output:
        if types.get(out.name) != FLOAT:
            continue
        if versions.get(out.name, {}).get(io_type) != out.name:
            source = versions[out.name][HALF if io_type == FLOAT else FLOAT]
            new_nodes.append(helper.make_node("Cast", [source], [out.name], name=f"Cast_{out.name}_out", to=io_type))
            inserted += 1
        out.type.tensor_type.elem_type = io_type
    if not config.keep_io_types:
        for inp in graph.input:
            if types.get(inp.name) == FLOAT:
                inp.type.tensor_type.elem_type = HALF

    used = {i for n in new_nodes for i in n.input}
    kept_inits = [t for t in graph.initializer if t.name in used]
    del graph.node[:]
    graph.node.extend(new_nodes)
    del graph.initializer[:]
    graph.initializer.extend(kept_inits + [t for t in new_inits if t.name in used])
    del graph.value_info[:]  # stale types; re-inferred below
    meta = model.metadata_props.add()
    meta.key, meta.value = "ibit_deploy.precision", "fp16"

    with atomic_path(onnx_out) as tmp:
        onnx.save_model(model, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)  # strict type check: every border has its Cast
    return {
        "fp32_nodes": sorted(fp32_nodes),
        "islands": {k: sorted(v) for k, v in islands.items()},
        "casts_inserted": inserted,
        "initializers_fp16": converted,
        "underflow_params": underflow,
        "keep_io_types": config.keep_io_types,
    }
