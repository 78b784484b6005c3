"""What ``ibit-deploy package`` asks for, and which precisions each target accepts (one place for both)."""

from __future__ import annotations

from dataclasses import dataclass

from ..devicekit.numbers import BATCH, Range
from ..outputs import PACKAGE_MANIFEST  # noqa: F401  (re-exported: the package API names it)

TARGETS = ("deepstream", "triton", "jetson-inference")
# deepstream: network-mode 0/2/1; triton: a plan or ONNX of any precision; jetson-inference builds its own engine from
# a float ONNX (imageNet has no INT8 calibration path for ONNX models)
TARGET_PRECISIONS = {"deepstream": ("fp32", "fp16", "int8"), "triton": ("fp32", "fp16", "int8"),
                     "jetson-inference": ("fp32", "fp16")}
TRITON_PLATFORMS = ("auto", "tensorrt_plan", "onnxruntime_onnx")
# the numeric options (PackageOptions field -> range), checked when ibit-deploy package parses them and by PackageOptions
RANGES = {"batch_size": BATCH, "classifier_threshold": Range(0, 1), "max_queue_delay_us": Range(0, integer=True)}


@dataclass
class PackageOptions:
    """Options of every target; each target reads the ones that concern it.

    Attributes:
        precision: fp32 / fp16 / int8 artifact of the bundle to package (see TARGET_PRECISIONS).
        name: model name (Triton's repository directory, DeepStream's file names); default: the bundle's model.
        batch_size: nvinfer ``batch-size`` (frames per inference: the number of sources of a primary classifier).
        classifier_threshold: nvinfer ``classifier-threshold`` on the softmax probability of the top class.
        triton_platform: "auto" (the engine when the bundle has one of this precision, else ONNX), or forced.
        max_queue_delay_us: Triton ``dynamic_batching.max_queue_delay_microseconds``.
        overwrite: replace an existing output directory.
        allow_failed: package an artifact that FAILED its gate at export (asked for by name: ``--allow-failed``;
            the package records it and the command says so).
    """

    precision: str = "fp32"
    name: str | None = None
    batch_size: int = 1
    classifier_threshold: float = 0.0
    triton_platform: str = "auto"
    max_queue_delay_us: int = 100
    overwrite: bool = False
    allow_failed: bool = False

    def __post_init__(self) -> None:
        for name, rule in RANGES.items():
            rule.check_value(getattr(self, name), name)


def precision_for(target: str, exported: list[str]) -> str:
    """The precision to package right after an export of ``exported``: the last one the target takes."""
    usable = [p for p in exported if p in TARGET_PRECISIONS[target]]
    return usable[-1] if usable else "fp32"  # fp32 ONNX is always in a bundle
