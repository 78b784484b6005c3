"""``TrtRunner``: run a serialized TensorRT engine (``engine.plan``) on a CUDA GPU.

Device memory, copies, the stream and CUDA events come from cuda-python's runtime bindings (``cuda.bindings.runtime``,
or ``cuda.cudart`` before 12.6), the package NVIDIA's own TensorRT samples use and the ``tensorrt`` extra installs.
Not torch CUDA tensors: JetPack's TensorRT does not need a CUDA build of torch, which a Jetson often lacks. (The
cuda-python helpers are :mod:`ibit_deploy.trt`'s, the ground-floor TensorRT package; the runtime never imports the
export package.)

Buffers are allocated once, at the engine profile's largest batch, and bound with ``set_tensor_address`` when the
runner opens; each call sets the input shape, copies in, ``execute_async_v3``, copies out, synchronizes.
Host arrays are ordinary (pageable) numpy arrays: :meth:`TrtRunner.time_stages` times the copies apart from the
compute, so the harness can report GPU compute time alone, as trtexec does.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..bundle import open_bundle
from ..errors import BackendUnavailable
from ..trt.build import import_tensorrt
from ..trt.kit import DEFAULT_ENGINE, cuda_check, import_cudart
from .base import InputSpec, Runner


class TrtRunner(Runner):
    """A TensorRT engine behind the common runner lifecycle: ``with TrtRunner(path, spec) as r: r.infer(x)``."""

    backend = "tensorrt"

    def __init__(self, engine_path: str | os.PathLike, spec: InputSpec, *, device: int = 0,
                 import_backend: Callable[[], tuple[Any, Any]] | None = None) -> None:
        """``import_backend`` returns the (tensorrt, cuda-python runtime) modules to use (default: import them, or
        BackendUnavailable saying which is missing): the seam tests use to stand in for TensorRT and the driver."""
        super().__init__(spec)
        self.engine_path = Path(engine_path)
        self.device = device
        self._import_backend = import_backend or import_trt_backend
        self._trt: Any = None
        self._cudart: Any = None
        self._buffers: dict[str, int] = {}

    @classmethod
    def from_bundle(cls, bundle: str | os.PathLike, engine: str | None = None, *, device: int = 0) -> TrtRunner:
        """The runner for a bundle's engine (its manifest entry of kind "engine", else ``engine.plan``)."""
        b = open_bundle(bundle, verify=False)
        art = b.find("engine", path=engine)
        return cls(b.file(art.path if art else engine or DEFAULT_ENGINE), b.input, device=device)

    # ------------------------------------------------------------------------------------------------- lifecycle

    def _open(self) -> None:
        trt, cudart = self._import_backend()
        self._trt, self._cudart = trt, cudart
        err, count = cudart.cudaGetDeviceCount()
        if int(getattr(err, "value", err)) != 0 or not count:
            raise BackendUnavailable("TensorRT runner: no CUDA GPU is visible (cudaGetDeviceCount reports none or the "
                                     "NVIDIA driver is missing)")
        if self.device >= count:
            raise BackendUnavailable(f"TensorRT runner: CUDA device {self.device} requested, {count} visible")
        if not self.engine_path.is_file():
            raise FileNotFoundError(f"TensorRT engine not found: {self.engine_path} (build it on this machine with "
                                    f"the bundle's build_engine.sh)")
        cuda_check(cudart.cudaSetDevice(self.device), "cudaSetDevice")
        try:
            self._load_and_allocate(trt, cudart)
        except BaseException:
            self._close()  # free whatever was allocated before the failure
            raise

    def _load_and_allocate(self, trt: Any, cudart: Any) -> None:
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self._engine = self._runtime.deserialize_cuda_engine(self.engine_path.read_bytes())
        if self._engine is None:
            raise RuntimeError(f"{self.engine_path}: TensorRT {trt.__version__} could not deserialize this engine. "
                               f"Engines only load on the GPU architecture and TensorRT version that built them: "
                               f"rebuild it here with the bundle's build_engine.sh")
        self._context = self._engine.create_execution_context()
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        inputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self._outputs = [n for n in names if self._engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if inputs != [self.spec.name]:
            raise ValueError(f"{self.engine_path}: engine inputs are {inputs}, expected exactly [{self.spec.name!r}]")
        self._input_dtype = np.dtype(trt.nptype(self._engine.get_tensor_dtype(self.spec.name)))
        self._restrict_spec_to_profile()

        # Allocate for the largest batch once; set_tensor_address binds every I/O tensor for the runner's lifetime.
        self._context.set_input_shape(self.spec.name, self._full_shape(self._profile_max))
        sizes = {self.spec.name: self._input_dtype.itemsize * int(np.prod(self._full_shape(self._profile_max)))}
        for name in self._outputs:
            shape = tuple(self._context.get_tensor_shape(name))
            sizes[name] = np.dtype(trt.nptype(self._engine.get_tensor_dtype(name))).itemsize * int(np.prod(shape))
        for name, nbytes in sizes.items():
            self._buffers[name] = cuda_check(cudart.cudaMalloc(max(nbytes, 1)), f"cudaMalloc ({name}, {nbytes} B)")
            self._context.set_tensor_address(name, int(self._buffers[name]))
        self._stream = cuda_check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self._events = [cuda_check(cudart.cudaEventCreate(), "cudaEventCreate") for _ in range(4)]

    def _restrict_spec_to_profile(self) -> None:
        """Narrow the spec's batch range to the engine's optimization profile, so the base class rejects the rest."""
        lo, _, hi = (int(shape[0]) for shape in self._engine.get_tensor_profile_shape(self.spec.name, 0))
        self._profile_max = hi
        spec_max = self.spec.max_batch if self.spec.max_batch is not None else hi
        new_lo, new_hi = max(lo, self.spec.min_batch), min(hi, spec_max)
        if new_lo > new_hi:
            raise ValueError(f"{self.engine_path}: engine profile batch range [{lo}, {hi}] does not overlap the "
                             f"input spec's [{self.spec.min_batch}, {self.spec.max_batch}]")
        self.spec = dataclasses.replace(self.spec, min_batch=new_lo, max_batch=new_hi)

    def _full_shape(self, batch: int) -> tuple[int, int, int, int]:
        return batch, self.spec.channels, self.spec.height, self.spec.width

    def _close(self) -> None:
        cudart = self._cudart
        if cudart is None:
            return
        for event in getattr(self, "_events", []):
            cudart.cudaEventDestroy(event)
        if getattr(self, "_stream", None) is not None:
            cudart.cudaStreamDestroy(self._stream)
        for ptr in self._buffers.values():
            cudart.cudaFree(ptr)
        self._buffers, self._events, self._stream = {}, [], None
        self._context = self._engine = self._runtime = None  # context before engine before runtime

    # ------------------------------------------------------------------------------------------------- inference

    def _enqueue(self, images: np.ndarray, events: bool = False) -> dict[str, np.ndarray]:
        """Queue copy-in, execute, copy-out on the stream (recording events between stages); return host outputs."""
        cudart, trt = self._cudart, self._trt
        host_in = np.ascontiguousarray(images, dtype=self._input_dtype)
        self._context.set_input_shape(self.spec.name, host_in.shape)
        host_out = {n: np.empty(tuple(self._context.get_tensor_shape(n)),
                                dtype=trt.nptype(self._engine.get_tensor_dtype(n))) for n in self._outputs}
        record = (lambda i: cuda_check(cudart.cudaEventRecord(self._events[i], self._stream), "cudaEventRecord")) \
            if events else (lambda i: None)
        record(0)
        cuda_check(cudart.cudaMemcpyAsync(self._buffers[self.spec.name], host_in.ctypes.data, host_in.nbytes,
                                          cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream),
                   "cudaMemcpyAsync (input, host to device)")
        record(1)
        if not self._context.execute_async_v3(int(self._stream)):
            raise RuntimeError(f"{self.engine_path}: execute_async_v3 failed for input shape {host_in.shape}")
        record(2)
        for name, arr in host_out.items():
            cuda_check(cudart.cudaMemcpyAsync(arr.ctypes.data, self._buffers[name], arr.nbytes,
                                              cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream),
                       f"cudaMemcpyAsync ({name}, device to host)")
        record(3)
        cuda_check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return host_out

    def _infer(self, images: np.ndarray) -> np.ndarray:
        outputs = self._enqueue(images)
        logits = outputs.get("logits", outputs[self._outputs[0]])
        return logits.astype(np.float32, copy=False)

    def time_stages(self, images: np.ndarray, iterations: int = 50, warmup: int = 10) -> dict[str, list[float]]:
        """Per-iteration milliseconds from CUDA events: ``h2d_ms``, ``compute_ms`` (execute_async_v3 alone), ``d2h_ms``.

        ``warmup`` untimed runs come first. Events bracket each stage on the stream, so host-side Python overhead
        between calls does not count; the sum of the three is the device-side latency of one call.
        """
        if not self.is_open:
            raise RuntimeError("tensorrt runner is not open; use `with runner:` or call open() first")
        if iterations < 1 or warmup < 0:
            raise ValueError(f"iterations must be >= 1 and warmup >= 0, got {iterations} and {warmup}")
        images = self.spec.check(images)
        for _ in range(warmup):
            self._enqueue(images)
        stages = {"h2d_ms": (0, 1), "compute_ms": (1, 2), "d2h_ms": (2, 3)}  # event indices recorded by _enqueue
        times: dict[str, list[float]] = {key: [] for key in stages}
        for _ in range(iterations):
            self._enqueue(images, events=True)
            for key, (a, b) in stages.items():
                elapsed = self._cudart.cudaEventElapsedTime(self._events[a], self._events[b])
                times[key].append(float(cuda_check(elapsed, "cudaEventElapsedTime")))
        return times

    def describe(self) -> dict[str, Any]:
        info: dict[str, Any] = {"backend": self.backend, "engine": str(self.engine_path), "device_index": self.device}
        if self._trt is not None:
            info.update(tensorrt=str(self._trt.__version__), device=_device_name(self._cudart, self.device),
                        batch_range=[self.spec.min_batch, self.spec.max_batch])
        return info


def import_trt_backend(cudart_import: Callable[[], Any] = import_cudart) -> tuple[Any, Any]:
    """(tensorrt, cuda-python runtime) or BackendUnavailable saying which is missing and how to get it."""
    tensorrt = import_tensorrt()
    try:
        cudart = cudart_import()
    except ImportError as exc:
        raise BackendUnavailable(f"TensorRT runner: cuda-python is not installed ({exc}); it provides the device "
                                 f"buffers and CUDA events: pip install cuda-python") from exc
    return tensorrt, cudart


def _device_name(cudart: Any, device: int) -> str | None:
    try:
        name = cuda_check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties").name
    except Exception:  # a description only
        return None
    return (name.split(b"\0", 1)[0].decode() if isinstance(name, bytes) else str(name)).strip()
