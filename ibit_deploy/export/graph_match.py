"""Whether two ONNX graphs differ only in their weights: the condition for refitting an engine instead of rebuilding.

An engine built from one graph can take another graph's weights (``OnnxParserRefitter``) only when every weight it
holds has the same name, dtype and shape in the new graph and the computation around them is the same. So two
graphs *match* when they have the same inputs and outputs, the same initializers (name, dtype, shape) and the same
nodes in the same order (op type, domain, input and output names, attributes; a tensor attribute, e.g. a
``Constant`` node's value, compares by dtype and shape only, since it is a weight). Only the structure is read
(``load_external_data=False``): initializer values are never compared.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

MAX_LISTED = 6  # differences named in a message; the rest are counted


def _value_info(values: Any) -> list[tuple[str, int, tuple[Any, ...]]]:
    out = []
    for v in values:
        t = v.type.tensor_type
        dims = tuple(d.dim_param or d.dim_value for d in t.shape.dim)
        out.append((v.name, int(t.elem_type), dims))
    return out


def _attribute(attr: Any) -> tuple[Any, ...]:
    """An attribute's comparable form: tensors (weights) by dtype and shape, subgraphs by name, the rest by value."""
    import onnx

    kind = attr.type
    if kind == onnx.AttributeProto.TENSOR:
        return (attr.name, "tensor", int(attr.t.data_type), tuple(attr.t.dims))
    if kind in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS):
        return (attr.name, "graph")
    return (attr.name, onnx.helper.get_attribute_value(attr))


def graph_signature(path: str | os.PathLike) -> dict[str, Any]:
    """The structure of ONNX file ``path``: inputs, outputs, initializers and nodes (see the module docstring)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    graph = model.graph
    return {
        "inputs": _value_info(graph.input), "outputs": _value_info(graph.output),
        "initializers": {i.name: (int(i.data_type), tuple(i.dims)) for i in graph.initializer},
        "nodes": [(n.op_type, n.domain, tuple(n.input), tuple(n.output),
                   tuple(sorted((_attribute(a) for a in n.attribute), key=lambda a: a[0]))) for n in graph.node],
        "opsets": sorted((o.domain, int(o.version)) for o in model.opset_import),
    }


def _dtype(code: int) -> str:
    import onnx

    try:
        return str(onnx.helper.tensor_dtype_to_np_dtype(code))
    except (KeyError, ValueError, TypeError):
        return f"dtype {code}"


def graph_differences(old: str | os.PathLike, new: str | os.PathLike) -> list[str]:
    """What differs between ONNX files ``old`` and ``new`` beyond weight values (empty: the new one can refit an
    engine built from the old); each line names the initializer, node or input that differs."""
    a, b = graph_signature(old), graph_signature(new)
    diffs: list[str] = []
    for key in ("inputs", "outputs", "opsets"):
        if a[key] != b[key]:
            diffs.append(f"graph {key}: {a[key]} -> {b[key]}")
    ia, ib = a["initializers"], b["initializers"]
    for name in sorted(set(ia) - set(ib)):
        diffs.append(f"initializer {name!r} is gone")
    for name in sorted(set(ib) - set(ia)):
        diffs.append(f"initializer {name!r} is new ({_dtype(ib[name][0])} {list(ib[name][1])})")
    for name in sorted(set(ia) & set(ib)):
        if ia[name] != ib[name]:
            diffs.append(f"initializer {name!r}: {_dtype(ia[name][0])} {list(ia[name][1])} -> "
                         f"{_dtype(ib[name][0])} {list(ib[name][1])}")
    na, nb = a["nodes"], b["nodes"]
    if len(na) != len(nb):
        diffs.append(f"{len(na)} nodes -> {len(nb)} nodes")
    for i, (x, y) in enumerate(zip(na, nb, strict=False)):
        if x != y:
            what = "op" if x[:2] != y[:2] else "inputs/outputs" if x[2:4] != y[2:4] else "attributes"
            diffs.append(f"node {i} ({x[0]} -> {y[0]}, outputs {list(x[3])[:2]}): its {what} differ")
            if len(diffs) > 4 * MAX_LISTED:
                break
    return diffs


def describe(diffs: list[str], old: Path, new: Path) -> str:
    """One message for the user: the first differences of ``new`` against ``old``, and how many there are."""
    listed = "; ".join(diffs[:MAX_LISTED]) + (f"; and {len(diffs) - MAX_LISTED} more" if len(diffs) > MAX_LISTED
                                               else "")
    return f"{new.name} differs from the bundle's {old} beyond its weights: {listed}"
