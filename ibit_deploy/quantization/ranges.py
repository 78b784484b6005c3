"""Activation ranges: run the fp32 model on calibration images and reduce what it sees to one range per tensor.

Calibration is done here, once, and stored as ONNX Runtime's JSON range cache; ``quantize_static`` then reads the
cache instead of calibrating again. That separates the calibrator from the quantizer (so the sensitivity search
quantizes a model many times on one calibration) and lets us pass histogram settings ``quantize_static`` does not
forward: ORT's entropy calibrator defaults to 128 histogram bins for 128 quantized bins, which leaves it a single
candidate threshold, i.e. plain min/max. TensorRT's entropy calibration uses 2048 bins; we use
:data:`ENTROPY_BINS`.
"""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from .config import Int8Config

ENTROPY_BINS = 1024  # KL search over (bins - 128) / 2 thresholds in Python per tensor: 2048 is slow on small CPUs
ENTROPY_QUANTIZED_BINS = 128
PERCENTILE_BINS = 2048
METHODS = {"minmax": "MinMax", "entropy": "Entropy", "percentile": "Percentile"}


def even_batch(count: int, limit: int = 32) -> int:
    """The largest batch <= ``limit`` that divides ``count``: ORT's histogram collectors stack the batches of a tensor
    into one array and fail on a shorter last batch."""
    return next(b for b in range(min(limit, count), 0, -1) if count % b == 0)


class ArrayReader:
    """ONNX Runtime CalibrationDataReader over an in-memory array, in equal batches (see :func:`even_batch`)."""

    def __init__(self, input_name: str, images: np.ndarray, batch: int = 32) -> None:
        batch = even_batch(len(images), batch)
        self.input_name = input_name
        self.batches = [images[i : i + batch] for i in range(0, len(images), batch)]
        self.position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.position >= len(self.batches):
            return None
        self.position += 1
        return {self.input_name: self.batches[self.position - 1]}

    def rewind(self) -> None:
        self.position = 0

    def __len__(self) -> int:
        return len(self.batches)


def calibration_method(config: Int8Config):
    """The onnxruntime CalibrationMethod for ``config.method``."""
    from onnxruntime.quantization import CalibrationMethod

    return getattr(CalibrationMethod, METHODS[config.method])


def calibrate_ranges(onnx_in: str | os.PathLike, images: np.ndarray, config: Int8Config,
                     cache_path: str | os.PathLike, input_name: str = "images") -> dict[str, Any]:
    """Calibrate the inputs/outputs of ``config.op_types`` nodes of ``onnx_in`` on ``images``; write the range cache.

    Every range is checked finite before the cache is written (a NaN scale would otherwise end up in the model).
    Returns ``{"tensors": count, "method": ..., "max_abs": largest |range| seen}``.
    """
    from onnxruntime.quantization.calibrate import TensorData, create_calibrator, save_tensors_data

    options: dict[str, Any] = {"symmetric": True}
    if config.method == "entropy":
        options.update(num_bins=ENTROPY_BINS, num_quantized_bins=ENTROPY_QUANTIZED_BINS)
    elif config.method == "percentile":
        options.update(num_bins=PERCENTILE_BINS, percentile=float(config.percentile))
    with tempfile.TemporaryDirectory(prefix="ibit-calib-") as work, contextlib.redirect_stdout(io.StringIO()):
        calibrator = create_calibrator(Path(onnx_in), list(config.op_types),
                                       augmented_model_path=str(Path(work) / "augmented.onnx"),
                                       calibrate_method=calibration_method(config), extra_options=options)
        calibrator.collect_data(ArrayReader(input_name, images))
        ranges = calibrator.compute_data()
        del calibrator
    bad, largest = [], 0.0
    for name, data in ranges.data.items():
        if not isinstance(data, TensorData):
            continue
        values = np.concatenate([np.ravel(np.asarray(v, dtype=np.float64)) for v in data.range_value])
        if not np.isfinite(values).all():
            bad.append(name)
        elif values.size:
            largest = max(largest, float(np.abs(values).max()))
    if bad:
        raise ValueError(f"calibration produced non-finite ranges for {len(bad)} tensor(s) ({bad[:5]}): the fp32 model "
                         f"itself overflows on the calibration images, or they contain extreme values")
    save_tensors_data(ranges, cache_path)
    return {"tensors": len(ranges.data), "method": config.method, "max_abs": largest}
