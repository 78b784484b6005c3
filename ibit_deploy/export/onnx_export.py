"""Export a (folded) model to ONNX: opset >= 17 (LayerNormalization as one op), dynamic batch, named I/O, checked.

The torch.export-based exporter folds constants as it translates, so each folded IBiT mask arrives in the graph as a
single (heads, T, T) initializer feeding one Mul (or Add, for the bias mode).
"""

from __future__ import annotations

import contextlib
import io
import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..devicekit.fileio import atomic_path
from ..models.attention import FROBENIUS_EPS

INPUT_NAME = "images"
OUTPUT_NAME = "logits"
BATCH_AXIS = "batch"
DEFAULT_OPSET = 18
MIN_OPSET = 17
MAX_EXPORT_BATCH = 4096
FALLBACK_MAX_OPSET = 23  # torch 2.9-2.14's exporter; used when torch does not say


def max_opset() -> int:
    """The highest opset both torch's ONNX exporter and the installed onnx package support."""
    import onnx

    try:
        from torch.onnx import _constants  # private, but the only place torch states its exporter's range
        torch_max = int(getattr(_constants, "ONNX_MAX_OPSET", FALLBACK_MAX_OPSET))
    except ImportError:
        torch_max = FALLBACK_MAX_OPSET
    return min(torch_max, onnx.defs.onnx_opset_version())


def export_onnx(model: nn.Module, path: str | os.PathLike, input_chw: tuple[int, int, int], *,
                opset: int = DEFAULT_OPSET, metadata: Mapping[str, str] | None = None, verbose: bool = False) -> Path:
    """Export ``model`` (eval mode) to ``path`` with input ``images`` [batch, C, H, W] and output ``logits``.

    The file is checked with the full ONNX checker (shape inference included) before it is atomically moved into
    place. ``metadata`` is stored as the model's metadata_props.
    """
    import onnx

    if not MIN_OPSET <= opset <= max_opset():
        raise ValueError(f"opset must be in [{MIN_OPSET}, {max_opset()}] (>= {MIN_OPSET}: LayerNormalization as one op "
                         f"keeps FP16 accurate; <= {max_opset()}: what the exporter here supports), got {opset}")
    path = Path(path)
    model = model.eval()
    example = torch.randn(2, *input_chw)
    batch = torch.export.Dim(BATCH_AXIS, min=1, max=MAX_EXPORT_BATCH)
    with atomic_path(path) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        log = io.StringIO()
        # The exporter narrates every step on stdout; keep it unless asked for.
        with contextlib.redirect_stdout(log) if not verbose else contextlib.nullcontext():
            program = torch.onnx.export(
                model, (example,), dynamo=True, opset_version=opset, input_names=[INPUT_NAME],
                output_names=[OUTPUT_NAME], dynamic_shapes=({0: batch},), optimize=True, verbose=verbose,
            )
        proto = program.model_proto
        restore_frobenius_eps(proto)
        proto.producer_name = "ibit-deploy"
        for key, value in (metadata or {}).items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = str(key), str(value)
        onnx.save_model(proto, str(tmp))
        onnx.checker.check_model(str(tmp), full_check=True)
    return path


def restore_frobenius_eps(proto, eps: float = FROBENIUS_EPS) -> int:
    """Put back the ``+ eps`` of IBiT's ``S / (||S||_F + eps)`` where the exporter's optimizer dropped it.

    onnxscript's optimizer treats ``Add(x, 1e-8)`` as adding zero and removes it, which turns an all-zero score map
    into NaN. Every Frobenius normalisation that :func:`~ibit_deploy.quantization.graph.frobenius_norm_nodes` finds
    (``ReduceL2(S)`` today; ``Sqrt(ReduceSum(Pow(S, 2)))`` and the other forms it accepts) and that has no eps gets
    ``Add(norm, eps)`` between the norm and the Div again. Other divisions by a norm are left alone. Returns how many
    were restored.
    """
    from onnx import helper, numpy_helper

    from ..quantization.graph import ensure_node_names, frobenius_norm_nodes  # lazy: quantization imports export

    graph = proto.graph
    ensure_node_names(proto)
    nodes = {node.name: node for node in graph.node}
    name = "ibit_frobenius_eps"
    restored = 0
    for chain in frobenius_norm_nodes(proto):
        norm, div = nodes[chain[-2]], nodes[chain[-1]]
        if norm.op_type in ("Add", "Max", "Clip"):  # the eps is still there
            continue
        if restored == 0:
            graph.initializer.append(numpy_helper.from_array(np.array(eps, dtype=np.float32), name))
        added = f"{norm.output[0]}_plus_eps"
        graph.node.insert(list(graph.node).index(div), helper.make_node("Add", [norm.output[0], name], [added],
                                                                         name=f"{norm.name}_plus_eps"))
        div.input[1] = added
        restored += 1
    return restored


def onnx_opset(path: str | os.PathLike) -> int:
    """The default-domain opset of an ONNX file."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
