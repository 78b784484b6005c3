"""Running a serialized TensorRT engine from Python: CUDA helpers (cuda-python), the TensorRT logger, and
:class:`EngineSession`, the single engine-execution core of the device kit, ibit-export's check and ``runtime``'s
``TrtRunner``. ``tensorrt`` and ``cuda-python`` are never imported here: callers pass the modules in.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any


class EngineBuildError(RuntimeError):
    """TensorRT could not parse the ONNX or build, load or run the engine; the message carries TensorRT's errors."""

    exit_code = 1  # a check failed (read by ibit_deploy.errors, which the kit cannot import)
    label = "FAILED"


class CudaUnavailable(RuntimeError):
    """No usable CUDA GPU or driver: nothing can be built or run here."""

    exit_code = 3  # a requirement is unmet here
    label = "requirement unmet"


def import_cudart() -> Any:
    """cuda-python's runtime module: ``cuda.bindings.runtime`` (12.6+) or the older ``cuda.cudart``."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        from cuda import cudart  # cuda-python < 12.6 (JetPack 6 era)
    return cudart


def cuda_check(result: Any, what: str) -> Any:
    """Unpack a cuda-python ``(error, *values)`` tuple, raising RuntimeError named after the call on failure."""
    err, *values = result if isinstance(result, tuple) else (result,)
    code = int(getattr(err, "value", err))
    if code != 0:
        raise RuntimeError(f"{what} failed: CUDA error {code} ({getattr(err, 'name', err)})")
    return values[0] if len(values) == 1 else (tuple(values) or None)


def cuda_device_count() -> int | None:
    """Number of CUDA GPUs, 0 when the driver sees none, None when cuda-python is not installed (unknown)."""
    try:
        cudart = import_cudart()
    except ImportError:
        return None
    err, count = cudart.cudaGetDeviceCount()
    return int(count) if int(getattr(err, "value", err)) == 0 else 0


def cuda_device_name(device: int = 0) -> str | None:
    try:
        cudart = import_cudart()
        props = cuda_check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        name = props.name
        return (name.split(b"\0", 1)[0].decode() if isinstance(name, bytes) else str(name)).strip()
    except Exception:  # a description only: never fail a build over it
        return None


def make_logger(trt: Any) -> Any:
    """A TensorRT logger that prints warnings and errors and keeps them for the report and error messages."""

    class _Logger(trt.ILogger):
        def __init__(self) -> None:
            trt.ILogger.__init__(self)
            self.messages: list[tuple[int, str]] = []

        def log(self, severity: Any, msg: str) -> None:
            level = int(severity)  # 0 internal error, 1 error, 2 warning, 3 info, 4 verbose
            if level <= 2:
                self.messages.append((level, msg))
                print(f"[TensorRT] {'ERROR' if level <= 1 else 'WARNING'}: {msg}", file=sys.stderr)

    return _Logger()


def trt_errors(logger: Any) -> str:
    """The last TensorRT errors ``logger`` kept, as a suffix for an error message (empty when none)."""
    errors = [msg for level, msg in logger.messages if level <= 1]
    return ("; TensorRT said: " + " | ".join(errors[-5:])) if errors else ""


def deserialize_engine(trt: Any, engine_bytes: bytes, logger: Any) -> tuple[Any, Any]:
    """(runtime, engine or None) for ``engine_bytes``: the one deserialization outside :class:`EngineSession`, for
    the refit (:mod:`.refit`), which changes an engine's weights without running it. The runtime must outlive the
    engine. Raises CudaUnavailable when no runtime can be created here."""
    runtime = create_with_gpu(trt.Runtime, logger, "runtime")
    return runtime, runtime.deserialize_cuda_engine(engine_bytes)


def create_with_gpu(factory: Any, logger: Any, what: str) -> Any:
    """``factory(logger)`` (``trt.Builder``, ``trt.Runtime``), or CudaUnavailable naming the TensorRT ``what`` when
    the bindings raise or return None: what they do without a usable CUDA driver or GPU."""
    try:
        made = factory(logger)
    except Exception as exc:  # the bindings raise when the CUDA driver or GPU is missing
        raise CudaUnavailable(f"could not create a TensorRT {what} (no usable CUDA GPU or driver?): {exc}") from exc
    if made is None:
        raise CudaUnavailable(f"could not create a TensorRT {what} (no usable CUDA GPU or driver?)" + trt_errors(logger))
    return made


# Stage timing: events recorded on the stream around each stage of an enqueue, as (start, end) indices.
STAGE_EVENTS = {"h2d_ms": (0, 1), "compute_ms": (1, 2), "d2h_ms": (2, 3)}


class EngineSession:
    """One deserialized engine ready to run: the single engine-execution core of the kit and ``TrtRunner``.

    ``with EngineSession(trt, cudart, engine_bytes, "images") as s: s.enqueue(batch)``. Opening deserializes the
    engine, creates the execution context, finds the I/O tensors (exactly one input, ``input_name``), reads the
    optimization profile's batch range, allocates one device buffer per tensor at the profile's largest batch and binds
    it with ``set_tensor_address`` for the session's lifetime, and creates the stream. Each :meth:`enqueue` sets the
    input shape, copies in, ``execute_async_v3``, copies out, synchronizes. Closing frees the events, stream and
    buffers, then drops the context before the engine before the runtime. ``source`` names the engine file in error
    messages; None means bytes this process just built. ``host_code_allowed`` / ``lean_runtime``: how a
    version-compatible engine is opened (:func:`.engine_compat.runtime_options` decides): trust the lean runtime the
    plan carries, or load the building TensorRT's lean runtime library and deserialize with it.
    """

    def __init__(self, trt: Any, cudart: Any, engine_bytes: bytes, input_name: str, *, device: int = 0,
                 source: str | None = None, host_code_allowed: bool = False, lean_runtime: str | None = None) -> None:
        self.trt, self.cudart = trt, cudart
        self.input_name, self.device, self.source = input_name, device, source
        self.host_code_allowed, self.lean_runtime = host_code_allowed, lean_runtime
        self._full_runtime: Any = None  # the runtime a lean runtime was loaded through, kept alive while it is used
        self._engine_bytes = engine_bytes
        self.outputs: list[str] = []
        self.batch_range: tuple[int, int, int] | None = None  # profile (min, opt, max) batch, once open
        self._buffers: dict[str, Any] = {}
        self._capacity: dict[str, int] = {}
        self._events: list[Any] = []
        self._stream: Any = None
        self._context = self._engine = self._runtime = None

    def __enter__(self) -> EngineSession:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def is_open(self) -> bool:
        return self._context is not None

    def _where(self) -> str:
        return f"{self.source}: " if self.source else ""

    def open(self) -> EngineSession:
        """Deserialize, create the context, allocate and bind the buffers, create the stream (all freed on failure)."""
        try:
            self._open()
        except BaseException:
            self.close()
            raise
        return self

    def _open(self) -> None:
        import numpy as np

        trt, cudart = self.trt, self.cudart
        cuda_check(cudart.cudaSetDevice(self.device), "cudaSetDevice")
        self._logger = make_logger(trt)
        self._runtime = trt.Runtime(self._logger)
        if self.lean_runtime is not None:
            lean = self._runtime.load_runtime(str(self.lean_runtime))
            if lean is None:
                raise EngineBuildError(f"{self._where()}TensorRT {trt.__version__} could not load the lean runtime "
                                       f"library {self.lean_runtime}" + trt_errors(self._logger))
            self._full_runtime, self._runtime = self._runtime, lean
        if self.host_code_allowed:  # the plan carries its lean runtime: TensorRT runs its code only when told to
            self._runtime.engine_host_code_allowed = True
        self._engine = self._runtime.deserialize_cuda_engine(self._engine_bytes)
        if self._engine is None:
            if self.source is None:
                raise EngineBuildError("TensorRT could not deserialize the engine it just built" + trt_errors(self._logger))
            raise EngineBuildError(f"{self.source}: TensorRT {trt.__version__} could not deserialize this engine. "
                                   f"Engines only load on the GPU architecture and TensorRT version that built them: "
                                   f"rebuild it here with the bundle's build_engine.sh" + trt_errors(self._logger))
        engine = self._engine
        self._context = engine.create_execution_context()
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        if inputs != [self.input_name]:
            raise ValueError(f"{self.source or 'engine'}: engine inputs are {inputs}, "
                             f"expected exactly [{self.input_name!r}]")
        self.input_dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(self.input_name)))
        lo, opt, hi = (tuple(int(d) for d in shape) for shape in engine.get_tensor_profile_shape(self.input_name, 0))
        self.batch_range = (lo[0], opt[0], hi[0])
        # Allocate for the largest batch once; set_tensor_address binds every I/O tensor for the session's lifetime.
        self._context.set_input_shape(self.input_name, hi)
        sizes = {self.input_name: self.input_dtype.itemsize * int(np.prod(hi))}
        for name in self.outputs:
            shape = tuple(self._context.get_tensor_shape(name))
            sizes[name] = np.dtype(trt.nptype(engine.get_tensor_dtype(name))).itemsize * int(np.prod(shape))
        for name, nbytes in sizes.items():
            self._buffers[name] = cuda_check(cudart.cudaMalloc(max(nbytes, 1)), f"cudaMalloc ({name}, {nbytes} B)")
            self._capacity[name] = nbytes
            self._context.set_tensor_address(name, int(self._buffers[name]))
        self._stream = cuda_check(cudart.cudaStreamCreate(), "cudaStreamCreate")

    def enqueue(self, host_batch: Any, events: bool = False) -> dict[str, Any]:
        """Run one NCHW batch within the profile: copy in, execute, copy out, synchronize; return the host outputs
        by tensor name. ``events=True`` records CUDA events between the stages for :meth:`stage_times`."""
        import numpy as np

        if not self.is_open:
            raise RuntimeError("engine session is not open; use `with EngineSession(...)` or call open() first")
        cudart, trt, engine = self.cudart, self.trt, self._engine
        host_in = np.ascontiguousarray(host_batch, dtype=self.input_dtype)
        lo, _, hi = self.batch_range
        if host_in.ndim < 1 or not lo <= host_in.shape[0] <= hi or host_in.nbytes > self._capacity[self.input_name]:
            raise ValueError(f"{self._where()}input shape {host_in.shape} is outside the engine profile "
                             f"(batch {lo} to {hi}, at most {self._capacity[self.input_name]} bytes)")
        self._context.set_input_shape(self.input_name, host_in.shape)
        host_out = {n: np.empty(tuple(self._context.get_tensor_shape(n)), dtype=trt.nptype(engine.get_tensor_dtype(n)))
                    for n in self.outputs}
        if events and not self._events:  # created on first use: plain runs never need them
            self._events = [cuda_check(cudart.cudaEventCreate(), "cudaEventCreate") for _ in range(4)]
        record = (lambda i: cuda_check(cudart.cudaEventRecord(self._events[i], self._stream), "cudaEventRecord")) \
            if events else (lambda i: None)
        record(0)
        cuda_check(cudart.cudaMemcpyAsync(self._buffers[self.input_name], host_in.ctypes.data, host_in.nbytes,
                                          cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, self._stream),
                   "cudaMemcpyAsync (input, host to device)")
        record(1)
        if not self._context.execute_async_v3(int(self._stream)):
            raise EngineBuildError(f"{self._where()}execute_async_v3 failed for input shape {host_in.shape}"
                                   + trt_errors(self._logger))
        record(2)
        for name, arr in host_out.items():
            cuda_check(cudart.cudaMemcpyAsync(arr.ctypes.data, self._buffers[name], arr.nbytes,
                                              cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, self._stream),
                       f"cudaMemcpyAsync ({name}, device to host)")
        record(3)
        cuda_check(cudart.cudaStreamSynchronize(self._stream), "cudaStreamSynchronize")
        return host_out

    def stage_times(self) -> dict[str, float]:
        """Milliseconds of each stage (``h2d_ms``, ``compute_ms``, ``d2h_ms``) of the last ``enqueue(events=True)``."""
        if not self._events:
            raise RuntimeError("no stage events recorded; call enqueue(batch, events=True) first")
        return {key: float(cuda_check(self.cudart.cudaEventElapsedTime(self._events[a], self._events[b]),
                                      "cudaEventElapsedTime")) for key, (a, b) in STAGE_EVENTS.items()}

    def close(self) -> None:
        """Free events, stream and buffers, then drop context before engine before runtime. Safe to call twice."""
        cudart = self.cudart
        for event in self._events:
            cudart.cudaEventDestroy(event)
        if self._stream is not None:
            cudart.cudaStreamDestroy(self._stream)
        for ptr in self._buffers.values():
            cudart.cudaFree(ptr)
        self._events, self._stream, self._buffers, self._capacity = [], None, {}, {}
        self._context = None  # context before engine before runtime
        self._engine = None
        self._runtime = None
        self._full_runtime = None


def run_engine(trt: Any, engine_bytes: bytes, batches: Sequence[Any], input_name: str = "images",
               **options: Any) -> list[Any]:
    """Run each float32 NCHW batch through the engine (one :class:`EngineSession`, opened with ``options``:
    ``host_code_allowed``, ``lean_runtime``); return the first output per batch."""
    import numpy as np

    with EngineSession(trt, import_cudart(), engine_bytes, input_name, **options) as session:
        return [session.enqueue(batch)[session.outputs[0]].astype(np.float32) for batch in batches]
