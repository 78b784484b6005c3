"""Plain-data quantization configs that round-trip to JSON (and so into the bundle manifest).

``Int8Config`` describes explicit, symmetric INT8 Q/DQ (what TensorRT parses); ``Fp16Config`` describes an FP16
graph with FP32 islands. Both are dataclasses: ``to_dict`` gives JSON, ``from_dict`` rejects unknown keys so a typo in
a recipe or a manifest fails loudly instead of silently falling back to a default.

Node patterns (``include``, ``exclude``, ``keep_fp32``) are fnmatch globs, or regular expressions when written
``re:<regex>``. A pattern is matched against a node's ONNX name and its layer name (the PyTorch module path the
exporter recorded, e.g. ``blocks.3.mlp.fc1`` or ``blocks.3.attn/matmul``; see :func:`.graph.layer_name`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

from ..calibration.recipe import PERCENTILE
from ..configs import checked_fields

CALIBRATION_METHODS = ("minmax", "entropy", "percentile")
DEFAULT_OP_TYPES = ("MatMul", "Gemm")
# Op types ONNX Runtime's QDQ quantizer can place Q/DQ around that make sense for this project's graphs.
QUANTIZABLE_OP_TYPES = ("MatMul", "Gemm", "Conv", "Add", "Mul")


def _from_dict(cls: type, data: dict[str, Any], what: str) -> Any:
    """Build dataclass ``cls`` from ``data``, rejecting keys it does not know (with the list of known ones)."""
    kwargs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in checked_fields(cls, data, what).items()}
    return cls(**kwargs)


def _check_patterns(value: Any, name: str) -> list[str]:
    if isinstance(value, str) or not all(isinstance(p, str) and p for p in value):
        raise ValueError(f"{name} must be a list of non-empty pattern strings, got {value!r}")
    return list(value)


@dataclass
class Int8Config:
    """Symmetric INT8 Q/DQ quantization (zero points 0, the only form TensorRT accepts).

    Rules apply in order and later ones win: (1) ``op_types`` decides which nodes are candidates; (2) with
    ``default_float`` the built-in float set (patch-embedding Conv, classifier head, residual Adds, LayerNorm and the
    attention normalisation; METHODS.md section 7) is kept in float; (3) ``include`` patterns put matching nodes back
    into INT8 (e.g. ``["head"]`` to quantize the classifier); (4) ``exclude`` patterns keep matching nodes in float.

    Attributes:
        method: activation calibration, ``minmax`` | ``entropy`` | ``percentile``.
        percentile: the percentile of |activation| kept for ``percentile`` (e.g. 99.99).
        per_channel: per-output-channel weight scales (activations are always per-tensor).
        symmetric_activations / symmetric_weights: zero point 0; both must stay True for TensorRT.
        quantize_outputs: also put Q/DQ on the outputs of quantized nodes (off: inputs only, the TensorRT pattern).
        op_types: ONNX op types to quantize.
        default_float: keep the built-in float set in float.
        include / exclude: node patterns, see the module docstring.
        calibration_count: number of calibration images.
        seed: seed of the stratified calibration selection.
    """

    # minmax by default: in IBiT the Frobenius-normalised attention map has a few large entries that carry the
    # output, and percentile/entropy clipping cuts exactly those (measured in benchmarks/RESULTS.md).
    method: str = "minmax"
    percentile: float = 99.99
    per_channel: bool = True
    symmetric_activations: bool = True
    symmetric_weights: bool = True
    quantize_outputs: bool = False
    op_types: list[str] = field(default_factory=lambda: list(DEFAULT_OP_TYPES))
    default_float: bool = True
    include: list[str] = field(default_factory=list)
    exclude: list[str] = field(default_factory=list)
    calibration_count: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(f"int8 calibration method must be one of {CALIBRATION_METHODS}, got {self.method!r}")
        PERCENTILE.check_value(self.percentile, "percentile")
        if not (self.symmetric_activations and self.symmetric_weights):
            raise ValueError("TensorRT accepts only symmetric Q/DQ (zero point 0): symmetric_activations and "
                             "symmetric_weights must both be true")
        self.op_types = _check_patterns(self.op_types, "op_types")
        bad = sorted(set(self.op_types) - set(QUANTIZABLE_OP_TYPES))
        if bad or not self.op_types:
            raise ValueError(f"op_types {bad or self.op_types} not supported; choose from {QUANTIZABLE_OP_TYPES}")
        self.include = _check_patterns(self.include, "include")
        self.exclude = _check_patterns(self.exclude, "exclude")
        if isinstance(self.calibration_count, bool) or not isinstance(self.calibration_count, int) \
                or self.calibration_count < 1:
            raise ValueError(f"calibration_count must be a positive integer, got {self.calibration_count!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"seed must be an integer, got {self.seed!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (every field)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Int8Config:
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        return _from_dict(cls, data, "int8 quantization config")


@dataclass
class Fp16Config:
    """FP16 weights and activations with FP32 islands where FP16 is known to break.

    Attributes:
        keep_io_types: keep the graph's inputs and outputs float32 (Casts at the borders), so callers and the
            manifest's ``input.dtype`` are unchanged.
        keep_op_types: op types computed in fp32 (LayerNormalization; Softmax of the bias variant).
        frobenius_fp32: compute IBiT's Frobenius normalisation (ReduceL2, or sum of squares -> sqrt; + eps; divide)
            in fp32; its sum over (N+1)^2 squares overflows fp16 (METHODS.md section 1). Found structurally in the
            graph.
        keep_fp32: extra node patterns to keep in fp32 (see the module docstring).
    """

    keep_io_types: bool = True
    keep_op_types: list[str] = field(default_factory=lambda: ["LayerNormalization", "Softmax"])
    frobenius_fp32: bool = True
    keep_fp32: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.keep_op_types = _check_patterns(self.keep_op_types, "keep_op_types")
        self.keep_fp32 = _check_patterns(self.keep_fp32, "keep_fp32")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (every field)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Fp16Config:
        """Inverse of :meth:`to_dict`; unknown keys raise ValueError."""
        return _from_dict(cls, data, "fp16 conversion config")
