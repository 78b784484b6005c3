"""``build_engine``: ONNX -> serialized TensorRT engine with the TensorRT Python API, for TensorRT 10.x and 11.x.

The version rules (strong typing, legacy precision flags, trtexec flags) and the build itself live in
``templates/build_engine.py``, the standalone script every bundle carries to build its engine on the device; this
module adds the package's conventions around it: lazy imports, :class:`BackendUnavailable`, atomic writes.

One path serves both versions: a strongly typed network built from the precision-typed ONNX (``model.fp16.onnx``,
``model.int8.onnx`` with symmetric Q/DQ). ``legacy_precision`` ("fp16"/"int8") instead builds a weakly typed
network with ``BuilderFlag.FP16``/``INT8``; that exists on TensorRT 10.x only (11.x removed the flags, the INT8
calibrators and precision constraints), and asking for it on 11.x raises ValueError.
"""

from __future__ import annotations

import os
from pathlib import Path
from types import ModuleType
from typing import Any

from ..fileio import atomic_write_bytes, sha256_file
from ..runtime.base import BackendUnavailable
from .templates.build_engine import (
    DEFAULT_ONNX,
    DEFAULT_WORKSPACE_MIB,
    PRECISIONS,
    CudaUnavailable,
    EngineBuildError,
    build_serialized_engine,
    check_batch_range,
    cuda_device_count,
    parse_trt_version,
    trt_build_settings,
    trtexec_benchmark_command,
    trtexec_command,
)

__all__ = ["DEFAULT_ONNX", "PRECISIONS", "EngineBuildError", "build_engine", "import_tensorrt",
           "parse_trt_version", "require_cuda_device", "trt_build_settings", "trtexec_benchmark_command",
           "trtexec_command"]


def import_tensorrt() -> ModuleType:
    """The ``tensorrt`` module, or BackendUnavailable saying how to get it."""
    try:
        import tensorrt
    except Exception as exc:  # ImportError, or the PyPI stub failing to download the real wheel
        raise BackendUnavailable(
            f"TensorRT is not available: `import tensorrt` failed ({type(exc).__name__}: {exc}). On a Jetson it "
            f"comes with JetPack (python3-libnvinfer); on a desktop install NVIDIA's tensorrt wheel. The engine can "
            f"also be built on the device with the bundle's build_engine.sh (trtexec).") from exc
    return tensorrt


def require_cuda_device() -> None:
    """Raise BackendUnavailable when cuda-python reports no CUDA GPU (unknown without cuda-python: carry on)."""
    if cuda_device_count() == 0:
        raise BackendUnavailable("no CUDA GPU is visible (cudaGetDeviceCount reports none or the NVIDIA driver is "
                                 "missing): TensorRT engines are built on the GPU that will run them")


def build_engine(onnx_path: str | os.PathLike, engine_path: str | os.PathLike, *, min_batch: int, opt_batch: int,
                 max_batch: int, input_name: str = "images", input_chw: tuple[int, int, int] | None = None,
                 workspace_mib: int = DEFAULT_WORKSPACE_MIB, timing_cache: str | os.PathLike | None = None,
                 strongly_typed: bool = True, legacy_precision: str | None = None) -> dict[str, Any]:
    """Build ``engine_path`` from ``onnx_path`` for batches ``min_batch..max_batch`` (tuned for ``opt_batch``).

    ``input_chw`` defaults to the ONNX input's static (C, H, W). ``timing_cache``, if given, is loaded when it
    exists and written back atomically. Returns the build description (TensorRT version, typing, flags, shapes,
    timing, warnings) plus ``engine``, ``engine_sha256`` and ``engine_bytes``.

    Raises BackendUnavailable without TensorRT or a CUDA GPU, FileNotFoundError for a missing ONNX file,
    ValueError for bad arguments (including legacy precision on TensorRT >= 11), EngineBuildError when TensorRT's
    parser or builder fails (with its messages).
    """
    check_batch_range(min_batch, opt_batch, max_batch)
    if legacy_precision is not None and legacy_precision not in ("fp16", "int8"):
        raise ValueError(f"legacy_precision must be 'fp16', 'int8' or None, got {legacy_precision!r}")
    if legacy_precision is not None:
        strongly_typed = False  # builder precision flags act on weakly typed networks only
    onnx_path, engine_path = Path(onnx_path), Path(engine_path)
    if not onnx_path.is_file():
        raise FileNotFoundError(f"ONNX file not found: {onnx_path}")

    trt = import_tensorrt()
    require_cuda_device()
    try:
        engine, info = build_serialized_engine(
            trt, onnx_path, min_batch=min_batch, opt_batch=opt_batch, max_batch=max_batch, input_name=input_name,
            input_chw=input_chw, workspace_mib=workspace_mib, timing_cache=timing_cache,
            strongly_typed=strongly_typed, legacy_precision=legacy_precision, write_bytes=atomic_write_bytes)
    except CudaUnavailable as exc:
        raise BackendUnavailable(str(exc)) from exc
    atomic_write_bytes(engine_path, engine)
    info.update(engine=str(engine_path), engine_sha256=sha256_file(engine_path), engine_bytes=len(engine))
    return info
