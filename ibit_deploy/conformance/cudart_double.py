"""An UNCHECKED stand-in for cuda-python's runtime module, so TensorRT code paths that also allocate device memory
(the runner, the device script's output check) run to their TensorRT calls in the conformance subprocess.

cuda-python is not part of the conformance check: nothing here is compared with cuda-python's real API; each call
just returns cuda-python's ``(error, *values)`` tuple shape with error 0.
"""

from __future__ import annotations

import itertools
import sys
import types
from typing import Any


class _Success:
    value = 0
    name = "cudaSuccess"


class _Handle:
    """A stream or event handle; ``int()`` gives an address, as cuda-python's handle types do."""

    _ids = itertools.count(0x1000, 0x100)

    def __init__(self) -> None:
        self._id = next(self._ids)

    def __int__(self) -> int:
        return self._id


def _module() -> types.ModuleType:
    ok = _Success()
    pointers = itertools.count(0x7F0000000000, 0x100000)
    mod = types.ModuleType("cuda.bindings.runtime", "unchecked cuda-python stand-in (conformance only)")
    calls: dict[str, Any] = {
        "cudaGetDeviceCount": lambda: (ok, 1),
        "cudaSetDevice": lambda device: (ok,),
        "cudaMalloc": lambda nbytes: (ok, next(pointers)),
        "cudaFree": lambda ptr: (ok,),
        "cudaStreamCreate": lambda: (ok, _Handle()),
        "cudaStreamDestroy": lambda stream: (ok,),
        "cudaStreamSynchronize": lambda stream: (ok,),
        "cudaEventCreate": lambda: (ok, _Handle()),
        "cudaEventDestroy": lambda event: (ok,),
        "cudaEventRecord": lambda event, stream: (ok,),
        "cudaEventElapsedTime": lambda start, end: (ok, 0.125),
        "cudaMemcpyAsync": lambda dst, src, nbytes, kind, stream: (ok,),
        "cudaGetDeviceProperties": lambda device: (ok, types.SimpleNamespace(name=b"conformance stand-in\0")),
    }
    for name, fn in calls.items():
        setattr(mod, name, fn)
    mod.cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    return mod


def install() -> None:
    """Make ``from cuda.bindings import runtime`` return the stand-in (inside the conformance subprocess only)."""
    runtime = _module()
    cuda, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    bindings.runtime = runtime
    cuda.bindings = bindings
    sys.modules.update({"cuda": cuda, "cuda.bindings": bindings, "cuda.bindings.runtime": runtime})
