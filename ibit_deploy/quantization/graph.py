"""Reading an exported ViT graph: layer names, node patterns, and the structural pieces precision passes care about.

Everything here is found from the graph's structure (op types and edges), not from node names, which the exporter
numbers arbitrarily. Names only serve the user's patterns.
"""

from __future__ import annotations

import ast
import fnmatch
import re
from collections.abc import Iterable

import onnx

SCOPES_KEY = "pkg.torch.onnx.name_scopes"  # written by torch.onnx.export(dynamo=True) on every node


def ensure_node_names(model: onnx.ModelProto) -> int:
    """Give every unnamed node a unique name (quantizers and patterns address nodes by name); returns how many."""
    seen = {n.name for n in model.graph.node if n.name}
    named = 0
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in seen:
                name += "_"
            node.name = name
            seen.add(name)
            named += 1
    return named


_MODULE_OPS = ("linear", "conv2d", "conv1d", "layer_norm")  # ops that are the whole of their module


def _scopes(node: onnx.NodeProto) -> list[str] | None:
    for prop in node.metadata_props:
        if prop.key == SCOPES_KEY:
            try:
                value = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            return [str(s) for s in value] if isinstance(value, list) and len(value) >= 2 else None
    return None


def layer_names(model: onnx.ModelProto) -> dict[str, str]:
    """Node name -> layer name: the PyTorch module path the exporter recorded.

    A Linear/Conv/LayerNorm's nodes get the module path (``blocks.0.attn.qkv``, ``head``); other ops get
    ``<module>/<op>.<k>``, k counting that op within the module in graph order, so the same role has the same name
    in every block (``blocks.0.attn/matmul.0`` is Q K^T and ``blocks.0.attn/matmul.1`` is S V in every block).
    Nodes without recorded scopes keep their node name.
    """
    names: dict[str, str] = {}
    counts: dict[tuple[str, str], int] = {}
    for node in model.graph.node:
        scopes = _scopes(node)
        if scopes is None:
            names[node.name] = node.name
            continue
        *modules, op = scopes
        module = modules[-1] if modules else ""
        base = re.sub(r"_\d+$", "", op)
        if base in _MODULE_OPS and module:
            names[node.name] = module
            continue
        key = (module, f"{base}:{node.op_type}")
        k = counts.get(key, 0)
        counts[key] = k + 1
        names[node.name] = f"{module}/{base}.{k}" if module else f"{base}.{k}"
    return names


def compile_pattern(pattern: str) -> re.Pattern[str]:
    """``re:<regex>`` -> that regex (full match); otherwise an fnmatch glob."""
    if pattern.startswith("re:"):
        try:
            return re.compile(pattern[3:])
        except re.error as exc:
            raise ValueError(f"bad regular expression in node pattern {pattern!r}: {exc}") from exc
    return re.compile(fnmatch.translate(pattern))


def matching_nodes(model: onnx.ModelProto, patterns: Iterable[str], what: str = "node",
                   strict: bool = True) -> set[str]:
    """Names of nodes whose node name or layer name matches any pattern.

    With ``strict``, a pattern that matches nothing raises ValueError (almost always a typo) with examples of real
    names to choose from.
    """
    layers = layer_names(model)
    hits: set[str] = set()
    for pattern in patterns:
        regex = compile_pattern(pattern)
        found = {n for n, layer in layers.items() if regex.fullmatch(n) or regex.fullmatch(layer)}
        if strict and not found:
            examples = sorted({layers[n.name] for n in model.graph.node if n.op_type in ("MatMul", "Gemm")})[:8]
            raise ValueError(f"{what} pattern {pattern!r} matches no node of the graph; layer names look like "
                             f"{examples}, node names like {model.graph.node[0].name!r}")
        hits |= found
    return hits


class GraphIndex:
    """Producers, consumers and initializers of a graph, for structural matching."""

    def __init__(self, model: onnx.ModelProto) -> None:
        graph = model.graph
        self.initializers = {t.name: t for t in graph.initializer}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in graph.node:
            for out in node.output:
                self.producer[out] = node
            for inp in node.input:
                self.consumers.setdefault(inp, []).append(node)
        self.outputs = [o.name for o in graph.output]

    def const_value(self, name: str):
        """The numpy value of an initializer (or Constant node output), or None."""
        from onnx import numpy_helper

        if name in self.initializers:
            return numpy_helper.to_array(self.initializers[name])
        node = self.producer.get(name)
        if node is not None and node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    return numpy_helper.to_array(attr.t)
        return None

    def is_const(self, name: str) -> bool:
        """True for initializers and Constant outputs (checked without decoding the tensor)."""
        node = self.producer.get(name)
        return name in self.initializers or (node is not None and node.op_type == "Constant")

    def source(self, name: str) -> str:
        """Follow Cast/Identity back to the tensor they copy (a converted graph has Casts at island borders)."""
        node = self.producer.get(name)
        while node is not None and node.op_type in ("Cast", "Identity"):
            name = node.input[0]
            node = self.producer.get(name)
        return name


def _reduces_last_two_axes(idx: GraphIndex, node: onnx.NodeProto) -> bool:
    """True when a Reduce* node reduces exactly the last two axes of a 4-D (B, heads, T, T) map, keeping dims."""
    axes = None
    if len(node.input) > 1 and node.input[1]:  # opset >= 13 (ReduceSum) / 18 (the rest): axes is an input
        value = idx.const_value(node.input[1])
        axes = None if value is None else [int(a) for a in value.reshape(-1)]
    for attr in node.attribute:
        if attr.name == "axes":
            axes = list(attr.ints)
        if attr.name == "keepdims" and attr.i == 0:
            return False
    return axes is not None and sorted(axes) in ([-2, -1], [2, 3])


def frobenius_norm_nodes(model: onnx.ModelProto) -> list[list[str]]:
    """IBiT's ``S / (||S||_F + eps)`` subgraphs, one node-name list per attention, in graph order.

    Matched forms of the denominator (each optionally followed by Add/Max/Clip for the epsilon):
    ``Sqrt(ReduceSum(Pow(S, 2)))``, ``Sqrt(ReduceSum(Mul(S, S)))``, ``Sqrt(ReduceSumSquare(S))`` and ``ReduceL2(S)``;
    the reduction must be over the map's last two axes with dims kept, and the Div's numerator must be the same ``S``
    (through Casts). A division by any other norm (a row norm, another tensor's norm) is not matched.
    """
    idx = GraphIndex(model)
    found = []
    for div in model.graph.node:
        if div.op_type != "Div" or len(div.input) != 2:
            continue
        numerator = idx.source(div.input[0])
        chain = [div]
        node = idx.producer.get(div.input[1])
        if node is not None and node.op_type in ("Add", "Max", "Clip") and \
                any(idx.is_const(i) for i in node.input[1:] if i):
            chain.append(node)
            node = idx.producer.get(node.input[0])
        if node is None:
            continue
        if node.op_type == "ReduceL2" and idx.source(node.input[0]) == numerator and \
                _reduces_last_two_axes(idx, node):
            found.append([n.name for n in reversed([*chain, node])])
            continue
        if node.op_type != "Sqrt":
            continue
        chain.append(node)
        reduce = idx.producer.get(node.input[0])
        if reduce is None or not _reduces_last_two_axes(idx, reduce):
            continue
        if reduce.op_type == "ReduceSumSquare" and idx.source(reduce.input[0]) == numerator:
            found.append([n.name for n in reversed([*chain, reduce])])
            continue
        if reduce.op_type != "ReduceSum":
            continue
        square = idx.producer.get(reduce.input[0])
        if square is None:
            continue
        if square.op_type == "Pow":
            exponent = idx.const_value(square.input[1])
            ok = exponent is not None and exponent.size == 1 and float(exponent.reshape(-1)[0]) == 2.0
        elif square.op_type == "Mul":
            ok = idx.source(square.input[0]) == idx.source(square.input[1])
        else:
            ok = False
        if ok and idx.source(square.input[0]) == numerator:
            found.append([n.name for n in reversed([*chain, reduce, square])])
    return found


def residual_adds(model: onnx.ModelProto) -> list[str]:
    """Adds of two activations (no constant operand): the residual stream and the position-embedding add."""
    idx = GraphIndex(model)
    return [n.name for n in model.graph.node
            if n.op_type == "Add" and len(n.input) == 2 and not any(idx.is_const(i) for i in n.input)]


def head_nodes(model: onnx.ModelProto) -> list[str]:
    """The classifier: the last MatMul/Gemm on the path to each graph output (through Add/Reshape/Gather/...)."""
    idx = GraphIndex(model)
    heads = []
    for out in idx.outputs:
        seen: set[str] = set()
        stack = [out]
        while stack:
            node = idx.producer.get(stack.pop())
            if node is None or node.name in seen:
                continue
            seen.add(node.name)
            if node.op_type in ("MatMul", "Gemm"):
                heads.append(node.name)
                continue  # stop at the first linear layer on this path
            stack.extend(i for i in node.input if i and not idx.is_const(i))
    return sorted(set(heads))

