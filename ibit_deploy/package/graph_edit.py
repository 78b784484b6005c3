"""ONNX edits a target needs: fold an input affine map into the first convolution, end in a softmax, fix the batch.

The fold is exact only for a convolution without padding (every output sums weights times real pixels, never a
zero pad that the shift would have moved), which is what a ViT patch embedding is; anything else is refused.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import onnx
from onnx import helper, numpy_helper

from ..devicekit.fileio import atomic_path

FOLD_SUFFIX = "_ibit_prep_fold"


def _initializer(graph: onnx.GraphProto, name: str) -> onnx.TensorProto | None:
    return next((t for t in graph.initializer if t.name == name), None)


def _consumers(graph: onnx.GraphProto, name: str) -> list[onnx.NodeProto]:
    return [n for n in graph.node if name in n.input]


def _shape_reads_only_batch(node: onnx.NodeProto) -> bool:
    """A Shape node that slices away the channel axis (start >= 2, or end <= 1) is unaffected by a channel change."""
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    start, end = attrs.get("start", 0), attrs.get("end")
    return (end is not None and 0 <= end <= 1) or start >= 2


def fold_input_affine(model: onnx.ModelProto, input_name: str, a: np.ndarray, beta: np.ndarray) -> onnx.ModelProto:
    """Make ``model`` take ``t`` where it took ``x = a @ t + beta`` (per channel), folding into the first Conv.

    ``a`` is (C_model, C_target); the graph input gets C_target channels. Raises ValueError when the input feeds
    anything but one padding-free, ungrouped Conv with constant weights (and batch-only Shape reads).
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())  # leave the caller's copy alone
    graph = model.graph
    users = _consumers(graph, input_name)
    convs = [n for n in users if n.op_type == "Conv" and n.input[0] == input_name]
    others = [n for n in users if n not in convs]
    if len(convs) != 1:
        raise ValueError(f"input {input_name!r} must feed exactly one Conv to fold the preprocessing into; it feeds "
                         f"{[n.op_type for n in users]}")
    channels_change = a.shape[0] != a.shape[1]
    bad = [n for n in others if n.op_type != "Shape" or (channels_change and not _shape_reads_only_batch(n))]
    if bad:
        raise ValueError(f"input {input_name!r} also feeds {[f'{n.op_type} {n.name}' for n in bad]}; the fold "
                         f"would change what they see")
    conv = convs[0]
    attrs = {x.name: helper.get_attribute_value(x) for x in conv.attribute}
    if any(attrs.get("pads", [0])) or attrs.get("auto_pad", b"NOTSET") not in (b"NOTSET", b"VALID") \
            or attrs.get("group", 1) != 1:
        raise ValueError(f"Conv {conv.name!r} has padding or groups (pads={attrs.get('pads')}, auto_pad="
                         f"{attrs.get('auto_pad')}, group={attrs.get('group', 1)}): folding the normalisation into "
                         f"it would not be exact")
    weight = _initializer(graph, conv.input[1])
    if weight is None:
        raise ValueError(f"Conv {conv.name!r} weight {conv.input[1]!r} is not a constant initializer (a quantized "
                         f"or computed weight cannot take the fold)")
    w = numpy_helper.to_array(weight)
    bias_init = _initializer(graph, conv.input[2]) if len(conv.input) > 2 and conv.input[2] else None
    if len(conv.input) > 2 and conv.input[2] and bias_init is None:
        raise ValueError(f"Conv {conv.name!r} bias {conv.input[2]!r} is not a constant initializer")
    b = numpy_helper.to_array(bias_init).astype(np.float64) if bias_init is not None else np.zeros(w.shape[0])
    w64 = w.astype(np.float64)
    new_w = np.einsum("okhw,kc->ochw", w64, a)  # W'[o, c] = sum_k W[o, k] A[k, c]
    new_b = b + np.einsum("okhw,k->o", w64, beta)  # the shift passes through every (unpadded) tap
    w_name, b_name = conv.input[1] + FOLD_SUFFIX, (conv.input[2] if bias_init is not None else "conv") + FOLD_SUFFIX + "_b"
    graph.initializer.extend([numpy_helper.from_array(new_w.astype(w.dtype), w_name),
                              numpy_helper.from_array(new_b.astype(w.dtype), b_name)])
    conv.input[1] = w_name
    if len(conv.input) > 2:
        conv.input[2] = b_name
    else:
        conv.input.append(b_name)
    _drop_unused_initializers(graph)
    graph_input = next(i for i in graph.input if i.name == input_name)
    graph_input.type.tensor_type.shape.dim[1].dim_value = int(a.shape[1])
    return model


def _drop_unused_initializers(graph: onnx.GraphProto) -> None:
    used = {name for node in graph.node for name in node.input} | {o.name for o in graph.output}
    keep = [t for t in graph.initializer if t.name in used]
    del graph.initializer[:]
    graph.initializer.extend(keep)


def append_softmax(model: onnx.ModelProto, output_name: str, new_name: str) -> onnx.ModelProto:
    """End the graph in ``Softmax(axis=-1)`` of ``output_name``; the graph's only output becomes ``new_name``."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    old = next((o for o in graph.output if o.name == output_name), None)
    if old is None:
        raise ValueError(f"the graph has no output {output_name!r} (outputs: {[o.name for o in graph.output]})")
    graph.node.append(helper.make_node("Softmax", [output_name], [new_name], axis=-1, name=f"{new_name}_softmax"))
    new = onnx.ValueInfoProto()
    new.CopyFrom(old)
    new.name = new_name
    graph.output.remove(old)
    graph.output.append(new)
    return model


def fix_batch(model: onnx.ModelProto, batch: int) -> onnx.ModelProto:
    """Give every graph input and output a fixed batch dimension (for runtimes that build without a profile)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    for value in [*model.graph.input, *model.graph.output]:
        if not value.type.tensor_type.shape.dim:  # unranked or scalar: nothing to fix
            continue
        dim = value.type.tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = batch
    del model.graph.value_info[:]  # inferred shapes with the symbolic batch; the checker infers them again
    return model


def save_checked(model: onnx.ModelProto, path: str | os.PathLike) -> Path:
    """Save atomically after the full ONNX checker (shape inference included) accepts the model."""
    path = Path(path)
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
    return path


def io_types(path: str | os.PathLike) -> dict[str, tuple[int, list[int | str]]]:
    """{tensor name: (ONNX element type, dims)} of the graph's inputs and outputs (symbolic dims as strings)."""
    graph = onnx.load(str(path), load_external_data=False).graph
    out: dict[str, tuple[int, list[int | str]]] = {}
    for value in [*graph.input, *graph.output]:
        tt = value.type.tensor_type
        out[value.name] = (tt.elem_type, [d.dim_param or d.dim_value for d in tt.shape.dim])
    return out


def graph_outputs(path: str | os.PathLike) -> list[str]:
    """Names of the graph's outputs, in order."""
    return [value.name for value in onnx.load(str(path), load_external_data=False).graph.output]
