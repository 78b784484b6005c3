"""INT8 explicit quantization: symmetric Q/DQ around MatMul/Gemm, calibrated on real images, checked before it lands.

ONNX Runtime's ``quantize_static`` in QDQ format does the work; this module decides what stays float (the config's
rules over the structural defaults), feeds it calibration images, and refuses to write a file TensorRT would reject
or that would compute garbage: every QuantizeLinear/DequantizeLinear must have zero point 0 and a finite, positive
scale.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from ..calibration import validate_calibration
from ..devicekit.fileio import atomic_path
from .config import Int8Config
from .graph import GraphIndex, ensure_node_names, head_nodes, layer_names, matching_nodes, residual_adds
from .ranges import calibrate_ranges, calibration_method

QDQ_OPS = ("QuantizeLinear", "DequantizeLinear")


def int8_plan(model: onnx.ModelProto, config: Int8Config) -> dict[str, Any]:
    """Which nodes get INT8 and which stay float, and why.

    Returns ``{"quantize": [names], "float": {name: reason}, "layers": {name: layer name}}`` where ``float`` lists
    every candidate (op type in ``config.op_types``) kept in float plus the structural defaults.
    """
    ensure_node_names(model)
    layers = layer_names(model)
    candidates = [n.name for n in model.graph.node if n.op_type in set(config.op_types)]
    reasons: dict[str, str] = {}
    if config.default_float:
        for name in (n.name for n in model.graph.node if n.op_type == "Conv"):
            reasons[name] = "default: patch embedding (Conv)"
        for name in head_nodes(model):
            reasons[name] = "default: classifier head"
        for name in residual_adds(model):
            reasons[name] = "default: residual add"
    for name in matching_nodes(model, config.include, "include"):
        reasons.pop(name, None)
    for name in matching_nodes(model, config.exclude, "exclude") & set(candidates):
        reasons[name] = "exclude pattern"  # only candidates: a module pattern also matches its GELU, bias Add, ...
    quantize = [n for n in candidates if n not in reasons]
    floats = {n: reasons[n] for n in [*candidates, *reasons] if n in reasons}
    return {"quantize": quantize, "float": floats, "layers": {n: layers[n] for n in [*quantize, *floats]}}


def check_symmetric_qdq(model: onnx.ModelProto, source: str = "model") -> dict[str, Any]:
    """Verify every Q/DQ node has zero point 0 and finite, positive scales; return counts and scale range.

    Raises ValueError naming the offending nodes. Zero points must be constant initializers (or absent, which ONNX
    defines as 0); TensorRT parses nothing else.
    """
    idx = GraphIndex(model)
    problems: list[str] = []
    counts = {op: 0 for op in QDQ_OPS}
    scales: list[float] = []
    zp_types: set[str] = set()
    for node in model.graph.node:
        if node.op_type not in QDQ_OPS:
            continue
        counts[node.op_type] += 1
        scale = idx.const_value(node.input[1])
        if scale is None:
            problems.append(f"{node.name}: scale {node.input[1]!r} is not a constant")
        elif not np.isfinite(scale).all() or (scale <= 0).any():
            problems.append(f"{node.name}: scale {node.input[1]!r} has non-finite or non-positive values "
                            f"(min {np.min(scale):.3g})")
        else:
            scales += [float(scale.min()), float(scale.max())]
        if len(node.input) > 2 and node.input[2]:
            zero = idx.const_value(node.input[2])
            if zero is None:
                problems.append(f"{node.name}: zero point {node.input[2]!r} is not a constant")
            else:
                zp_types.add(str(zero.dtype))
                if np.any(zero != 0):
                    problems.append(f"{node.name}: zero point {node.input[2]!r} is {zero.reshape(-1)[:4]} (TensorRT "
                                    f"needs symmetric quantization, zero point 0)")
    if problems:
        raise ValueError(f"{source}: {len(problems)} Q/DQ node(s) are not symmetric with valid scales: "
                         + "; ".join(problems[:5]) + ("; ..." if len(problems) > 5 else ""))
    return {"quantize_linear": counts["QuantizeLinear"], "dequantize_linear": counts["DequantizeLinear"],
            "scale_min": min(scales) if scales else None, "scale_max": max(scales) if scales else None,
            "zero_point_dtypes": sorted(zp_types)}


def quantized_nodes(model: onnx.ModelProto) -> list[str]:
    """Names of non-Q/DQ nodes with at least one input coming from a DequantizeLinear (i.e. computed in INT8)."""
    idx = GraphIndex(model)
    return [n.name for n in model.graph.node if n.op_type not in QDQ_OPS
            and any(idx.producer.get(i) is not None and idx.producer[i].op_type == "DequantizeLinear"
                    for i in n.input if i)]


def _model_chw(model: onnx.ModelProto) -> tuple[int, ...] | None:
    dims = model.graph.input[0].type.tensor_type.shape.dim
    values = [d.dim_value if d.HasField("dim_value") else None for d in dims[1:]]
    return tuple(values) if len(dims) == 4 and all(values) else None


def quantize_int8(onnx_in: str | os.PathLike, onnx_out: str | os.PathLike, calibration: np.ndarray,
                  config: Int8Config | None = None, *, extra_float: list[str] | tuple[str, ...] = (),
                  calibration_cache: str | os.PathLike | None = None) -> dict[str, Any]:
    """Quantize ``onnx_in`` to symmetric INT8 Q/DQ, calibrated on ``calibration`` (float32 NCHW, preprocessed).

    Args:
        onnx_in, onnx_out: fp32 model in; quantized model out (written atomically, only after it passes the
            symmetric-Q/DQ check and the ONNX checker).
        calibration: the calibration images.
        config: what to quantize and how (default :class:`Int8Config`).
        extra_float: node names kept in float on top of the config (what ``auto_exclude`` chose).
        calibration_cache: JSON file of calibrated ranges (ORT's format); reused when it exists (it must come from
            the same model, images and method), written otherwise, so repeated quantizations of one model with
            different float sets calibrate once.

    Returns a report: quantized and float nodes (with reasons and layer names), Q/DQ statistics, calibration.
    """
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    config = config or Int8Config()
    onnx_in, onnx_out = Path(onnx_in), Path(onnx_out)
    if not onnx_in.is_file():
        raise FileNotFoundError(f"ONNX model not found: {onnx_in}")
    model = onnx.load(str(onnx_in))
    if any(op.op_type in QDQ_OPS for op in model.graph.node):
        raise ValueError(f"{onnx_in} already contains Q/DQ nodes; quantize the fp32 model")
    images = validate_calibration(calibration, _model_chw(model), config.method, source="calibration images")
    renamed = ensure_node_names(model)
    plan = int8_plan(model, config)
    unknown = sorted(set(extra_float) - {n.name for n in model.graph.node})
    if unknown:
        raise ValueError(f"extra_float names nodes that are not in {onnx_in}: {unknown[:5]}")
    floats = dict(plan["float"])
    for name in extra_float:
        floats.setdefault(name, "auto: sensitive layer")
    quantize = [n for n in plan["quantize"] if n not in floats]
    layers = layer_names(model)
    if not quantize:
        raise ValueError(f"nothing left to quantize in {onnx_in}: every {config.op_types} node is kept in float")

    extra_options: dict[str, Any] = {
        "ActivationSymmetric": config.symmetric_activations,
        "WeightSymmetric": config.symmetric_weights,
    }
    if not config.quantize_outputs:
        # Q/DQ on inputs only: the output (before the bias Add) stays in the float precision; this is the pattern
        # TensorRT fuses, and it avoids re-rounding every MatMul result.
        extra_options["OpTypesToExcludeOutputQuantization"] = list(config.op_types)
    with tempfile.TemporaryDirectory(prefix="ibit-int8-") as work:
        source = onnx_in
        if renamed:
            source = Path(work) / "named.onnx"  # some nodes had no name: quantize the named copy
            onnx.save_model(model, str(source))
        cache = Path(calibration_cache) if calibration_cache is not None else Path(work) / "ranges.json"
        ranges = None
        if not cache.is_file():
            ranges = calibrate_ranges(source, images, config, cache, model.graph.input[0].name)
        with atomic_path(onnx_out) as tmp:
            root = logging.getLogger()
            level = root.level
            root.setLevel(max(level, logging.ERROR))  # ORT logs a pre-processing hint on every call
            try:
                quantize_static(
                    str(source), str(tmp), None, quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=list(config.op_types), per_channel=config.per_channel, reduce_range=False,
                    activation_type=QuantType.QInt8, weight_type=QuantType.QInt8, nodes_to_exclude=sorted(floats),
                    calibrate_method=calibration_method(config), extra_options=extra_options,
                    calibration_cache_path=str(cache),
                )
            finally:
                root.setLevel(level)
            out_model = onnx.load(str(tmp))
            qdq = check_symmetric_qdq(out_model, source=str(onnx_out))
            onnx.checker.check_model(out_model)
            done = set(quantized_nodes(out_model))
            meta = out_model.metadata_props.add()
            meta.key, meta.value = "ibit_deploy.precision", "int8"
            onnx.save_model(out_model, str(tmp))
    opset = next(o.version for o in out_model.opset_import if o.domain in ("", "ai.onnx"))
    return {
        "quantized_nodes": [n for n in quantize if n in done],
        "float_nodes": sorted(floats),
        "float_reasons": floats,
        "layers": {n: layers[n] for n in [*quantize, *floats]},
        "qdq": qdq,
        "opset": opset,
        "calibration": {"count": int(len(images)), "method": config.method,
                        "percentile": config.percentile if config.method == "percentile" else None,
                        "ranges": ranges or "reused from cache"},
    }
