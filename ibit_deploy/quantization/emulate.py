"""Bit-faithful fp16 evaluation with the ONNX reference evaluator (numpy), for what ONNX Runtime CPU hides.

ONNX Runtime's CPU provider has no fp16 kernels for many ops (Pow, ReduceSum, Sqrt, Div, ...): it runs such chains in
fp32 and removes the Casts between them, so an fp16 overflow that TensorRT would hit (e.g. IBiT's Frobenius sum of
squares) never shows on the CPU. The reference evaluator computes every op in the dtype the graph says, so a
tensor typed fp16 overflows to inf exactly where a strongly typed TensorRT engine would. It is slow (pure numpy),
so it runs on a handful of images.
"""

from __future__ import annotations

import os
import warnings

import numpy as np

PROBE_MIN_COSINE = 0.999  # per-image cosine of fp16 vs fp32 logits; an overflowed norm gives far less


def emulate_logits(onnx_path: str | os.PathLike, images: np.ndarray, batch: int = 8) -> np.ndarray:
    """Logits of ``onnx_path`` on ``images`` computed op by op in the graph's own dtypes (numpy)."""
    from onnx.reference import ReferenceEvaluator

    session = ReferenceEvaluator(str(onnx_path))
    name = session.input_names[0]
    outputs = []
    with warnings.catch_warnings(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        warnings.simplefilter("ignore", RuntimeWarning)  # the overflow is what we measure, not an accident
        for i in range(0, len(images), batch):
            outputs.append(np.asarray(session.run(None, {name: images[i : i + batch]})[0], dtype=np.float32))
    return np.concatenate(outputs)
