"""Quantization: FP16 with FP32 islands and symmetric INT8 Q/DQ (TensorRT and ONNX Runtime), gated on accuracy.

One verb per precision over a plain-data config: ``convert_fp16(onnx_in, onnx_out, Fp16Config)`` and
``quantize_int8(onnx_in, onnx_out, calibration_images, Int8Config)``; ``evaluate_against_reference`` and
``AccuracyGate`` measure the result on held-out images; ``auto_exclude`` finds the layers to keep in float;
``quantize_artifact`` is the export pipeline's stage that does all of it inside a bundle.
"""

from .artifact import QuantizeOptions, quantize_artifact
from .config import CALIBRATION_METHODS, Fp16Config, Int8Config
from .emulate import emulate_logits
from .fp16 import convert_fp16, fp32_island_nodes
from .gate import AccuracyGate, compare_logits, evaluate_against_reference, run_logits
from .graph import frobenius_norm_nodes, head_nodes, layer_names, residual_adds
from .int8 import check_symmetric_qdq, int8_plan, quantize_int8, quantized_nodes
from .sensitivity import auto_exclude

__all__ = [
    "CALIBRATION_METHODS", "AccuracyGate", "Fp16Config", "Int8Config", "QuantizeOptions", "auto_exclude",
    "check_symmetric_qdq", "compare_logits", "convert_fp16", "emulate_logits", "evaluate_against_reference",
    "fp32_island_nodes", "frobenius_norm_nodes", "head_nodes", "int8_plan", "layer_names", "quantize_artifact",
    "quantize_int8", "quantized_nodes", "residual_adds", "run_logits",
]
