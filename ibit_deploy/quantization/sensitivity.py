"""``auto_exclude``: find the INT8 layers that cost accuracy and keep just enough of them in float.

1. Quantize with the config; if the gate passes, nothing more is kept in float.
2. Sensitivity: quantize one candidate node at a time (all others float) and measure how far its logits move from
   the fp32 reference (mean |diff|; top-1 drop is recorded too but is too coarse for one layer on a small set).
3. Greedy: keep the most sensitive nodes in float, one at a time, until the gate passes or ``max_float`` is reached.

Calibration runs once (a shared range cache), so every step only re-quantizes and re-evaluates.
"""

from __future__ import annotations

import math
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from ..devicekit.profile import InputSpec
from .config import Int8Config
from .gate import AccuracyGate, compare_logits, run_logits
from .int8 import quantize_int8

SUMMARY_KEYS = ("top1", "top1_drop", "agreement", "mean_abs_diff", "max_abs_diff", "nonfinite")


def _summary(metrics: dict[str, Any]) -> dict[str, Any]:
    return {k: metrics[k] for k in SUMMARY_KEYS}


def auto_exclude(reference_onnx: str | os.PathLike, calibration: np.ndarray, images: np.ndarray, labels: np.ndarray,
                 input_spec: InputSpec, config: Int8Config | None = None, gate: AccuracyGate | None = None, *,
                 max_float: int | None = None, threads: int = 0, progress=None) -> dict[str, Any]:
    """Choose the nodes to keep in float so that the INT8 model passes ``gate`` on ``images``/``labels``.

    ``images`` must be held-out images (never the calibration set). Returns::

        {"float_nodes": [chosen names, most sensitive first], "passed": bool, "metrics": final gate metrics,
         "sensitivity": [{"node", "layer", "mean_abs_diff", "top1_drop", ...}, sorted most sensitive first],
         "steps": [{"float_nodes": k, "added", "top1_drop", ...}], "layers": {node: layer name}}
    """
    config = config or Int8Config()
    gate = gate or AccuracyGate()
    step = progress or (lambda message: None)
    labels = np.asarray(labels)
    reference = run_logits(reference_onnx, images, input_spec, threads=threads)
    with tempfile.TemporaryDirectory(prefix="ibit-auto-") as work:
        cache = Path(work) / "ranges.json"
        candidate = Path(work) / "candidate.onnx"

        def measure(extra_float: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
            report = quantize_int8(reference_onnx, candidate, calibration, config, extra_float=extra_float,
                                   calibration_cache=cache)
            logits = run_logits(candidate, images, input_spec, threads=threads)
            return compare_logits(reference, logits, labels), report

        step("baseline")
        metrics, report = measure([])
        layers = report["layers"]
        nodes = list(report["quantized_nodes"])
        steps = [{"float_nodes": 0, "added": None, **_summary(metrics)}]
        if gate.check(metrics)["passed"]:
            return {"float_nodes": [], "passed": True, "metrics": metrics, "sensitivity": [], "steps": steps,
                    "layers": layers}

        sensitivity = []
        for i, node in enumerate(nodes):
            step(f"sensitivity {i + 1}/{len(nodes)}: {layers.get(node, node)}")
            alone, _ = measure([n for n in nodes if n != node])
            score = alone["mean_abs_diff"] if alone["mean_abs_diff"] is not None else math.inf
            sensitivity.append({"node": node, "layer": layers.get(node, node), "score": score,
                                **_summary(alone)})
        sensitivity.sort(key=lambda s: (s["score"], s["top1_drop"]), reverse=True)

        limit = len(nodes) - 1 if max_float is None else min(max_float, len(nodes) - 1)
        chosen: list[str] = []
        passed = False
        for entry in sensitivity[:limit]:
            chosen.append(entry["node"])
            step(f"greedy: {len(chosen)} in float (+{entry['layer']})")
            metrics, _ = measure(chosen)
            steps.append({"float_nodes": len(chosen), "added": entry["node"], "layer": entry["layer"],
                          **_summary(metrics)})
            if gate.check(metrics)["passed"]:
                passed = True
                break
    for entry in sensitivity:
        if not math.isfinite(entry["score"]):
            entry["score"] = None  # JSON has no inf
    return {"float_nodes": chosen, "passed": passed, "metrics": metrics, "sensitivity": sensitivity,
            "steps": steps, "layers": layers}
