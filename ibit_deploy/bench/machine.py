"""Describe the machine a benchmark ran on: CPU, cores, threads, GPU, library versions (numbers mean nothing without)."""

from __future__ import annotations

import os
import platform
from typing import Any


def cpu_model() -> str:
    """The CPU's marketing name from /proc/cpuinfo (Linux), else what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as fh:
            for line in fh:
                key, _, value = line.partition(":")
                # x86 says "model name"; many ARM kernels (Jetson) only say "Hardware" or nothing useful.
                if key.strip() in ("model name", "Hardware", "Processor") and value.strip():
                    return value.strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def machine_description(threads: int = 0) -> dict[str, Any]:
    """CPU model, logical cores (all and usable by this process), requested threads, GPU and library versions."""
    import numpy

    try:
        usable = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        usable = os.cpu_count()
    info: dict[str, Any] = {
        "hostname": platform.node(), "os": platform.platform(), "arch": platform.machine(),
        "python": platform.python_version(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
        "cpu_usable": usable, "threads": threads or None, "torch_threads": None, "torch_cpu_capability": None,
        "gpu": None, "versions": {"numpy": numpy.__version__, "torch": None},
    }
    try:
        import torch
    except ImportError:  # a device install: no PyTorch backends, nothing of torch to record
        torch = None
    if torch is not None:
        # the kernels torch dispatches to (AVX2, AVX512, ...): different ones round differently
        info.update(torch_threads=torch.get_num_threads(), torch_cpu_capability=torch.backends.cpu.get_cpu_capability())
        info["versions"]["torch"] = torch.__version__
        if torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
            info["versions"]["cuda"] = torch.version.cuda
    try:
        import onnxruntime

        info["versions"]["onnxruntime"] = onnxruntime.__version__
        info["ort_providers"] = onnxruntime.get_available_providers()
    except ImportError:
        pass
    try:
        import tensorrt

        info["versions"]["tensorrt"] = tensorrt.__version__
    except Exception:  # ImportError, or the PyPI stub failing at import: either way there is no TensorRT
        info["versions"]["tensorrt"] = None
    from ..version import __version__

    info["versions"]["ibit_deploy"] = __version__
    return info
