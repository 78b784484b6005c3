"""EngineSession, the one engine-execution core: the kit's run_engine and the runtime's TrtRunner both go through it.

TensorRT and cuda-python do not run here (no GPU), so a small recording stand-in for each is passed through the
existing seams: ``run_engine(trt, ...)`` takes the tensorrt module and imports cuda-python's runtime module by name
(``sys.modules``); ``TrtRunner(import_backend=...)`` takes both. The stand-in cudart really allocates host memory
and copies with ctypes, and the stand-in engine computes its output from the input buffer it was bound to, so the
test follows the data through the set_tensor_address bindings, not just the call names.
"""

from __future__ import annotations

import ctypes
import sys
import types

import numpy as np
import pytest

from ibit_deploy.devicekit.session import EngineBuildError, EngineSession, run_engine
from ibit_deploy.runtime.base import InputSpec
from ibit_deploy.runtime.tensorrt_runner import TrtRunner

CHW, CLASSES, PROFILE = (3, 4, 4), 5, (1, 2, 4)
PLAN = b"fake engine"


def _fakes(log: list) -> tuple[types.SimpleNamespace, types.ModuleType]:
    """(tensorrt, cudart) stand-ins appending every call to ``log``; the engine's output is per-image input sums."""
    memory: dict[int, ctypes.Array] = {}

    class Context:
        def __init__(self) -> None:
            self.batch, self.addresses = PROFILE[2], {}

        def set_input_shape(self, name, shape):
            log.append(("set_input_shape", name, tuple(shape)))
            self.batch = shape[0]
            return True

        def get_tensor_shape(self, name):
            return (self.batch, *CHW) if name == "images" else (self.batch, CLASSES)

        def set_tensor_address(self, name, ptr):
            log.append(("set_tensor_address", name))
            self.addresses[name] = ptr
            return True

        def execute_async_v3(self, stream):
            log.append(("execute_async_v3",))
            n = self.batch * int(np.prod(CHW))
            images = np.frombuffer((ctypes.c_float * n).from_address(self.addresses["images"]), np.float32)
            logits = np.repeat(images.reshape(self.batch, -1).sum(1, keepdims=True), CLASSES, 1).astype(np.float32)
            ctypes.memmove(self.addresses["logits"], logits.ctypes.data, logits.nbytes)
            return True

        def __del__(self):
            log.append(("del", "context"))

    class Engine:
        num_io_tensors = 2

        def get_tensor_name(self, i):
            return ["images", "logits"][i]

        def get_tensor_mode(self, name):
            return "in" if name == "images" else "out"

        def get_tensor_dtype(self, name):
            return "float"

        def get_tensor_profile_shape(self, name, index):
            return [(b, *CHW) for b in PROFILE]

        def create_execution_context(self):
            return Context()

        def __del__(self):
            log.append(("del", "engine"))

    class Runtime:
        def __init__(self, logger) -> None:
            pass

        def deserialize_cuda_engine(self, data):
            log.append(("deserialize",))
            return Engine() if data == PLAN else None

        def __del__(self):
            log.append(("del", "runtime"))

    class ILogger:
        def __init__(self) -> None:
            pass

    trt = types.SimpleNamespace(__version__="10.3.0", ILogger=ILogger, Runtime=Runtime, nptype=lambda d: np.float32,
                                TensorIOMode=types.SimpleNamespace(INPUT="in", OUTPUT="out"))

    def malloc(nbytes):
        buf = ctypes.create_string_buffer(nbytes)
        memory[ctypes.addressof(buf)] = buf
        log.append(("cudaMalloc", nbytes))
        return 0, ctypes.addressof(buf)

    def call(name, result=None):
        def fn(*args):
            log.append((name,))
            return (0,) if result is None else (0, result)
        return fn

    cudart = types.ModuleType("cuda.bindings.runtime")
    cudart.cudaMalloc = malloc
    cudart.cudaMemcpyAsync = lambda dst, src, nbytes, kind, stream: (ctypes.memmove(dst, src, nbytes), 0)[1:]
    cudart.cudaMemcpyKind = types.SimpleNamespace(cudaMemcpyHostToDevice=1, cudaMemcpyDeviceToHost=2)
    for name in ("cudaSetDevice", "cudaFree", "cudaStreamDestroy", "cudaStreamSynchronize", "cudaEventDestroy",
                 "cudaEventRecord"):
        setattr(cudart, name, call(name))
    cudart.cudaStreamCreate = call("cudaStreamCreate", 7)
    cudart.cudaEventCreate = call("cudaEventCreate", 9)
    cudart.cudaEventElapsedTime = call("cudaEventElapsedTime", 0.25)
    cudart.cudaGetDeviceCount = call("cudaGetDeviceCount", 1)
    return trt, cudart


@pytest.fixture
def fakes(monkeypatch):
    """The stand-ins, cudart installed where ``import_cudart`` looks (``from cuda.bindings import runtime``)."""
    log: list = []
    trt, cudart = _fakes(log)
    cuda, bindings = types.ModuleType("cuda"), types.ModuleType("cuda.bindings")
    bindings.runtime, cuda.bindings = cudart, bindings
    for name, mod in {"cuda": cuda, "cuda.bindings": bindings, "cuda.bindings.runtime": cudart}.items():
        monkeypatch.setitem(sys.modules, name, mod)
    return log, trt, cudart


def _expected(batch: np.ndarray) -> np.ndarray:
    return np.repeat(batch.reshape(len(batch), -1).sum(1, keepdims=True), CLASSES, 1)


def test_run_engine_and_trt_runner_go_through_the_same_session(fakes, tmp_path):
    log, trt, cudart = fakes
    batch = np.random.default_rng(0).standard_normal((2, *CHW)).astype(np.float32)

    [kit_out] = run_engine(trt, PLAN, [batch])
    kit_calls = list(log)
    log.clear()
    (tmp_path / "engine.plan").write_bytes(PLAN)
    with TrtRunner(tmp_path / "engine.plan", InputSpec("images", *CHW, min_batch=1, max_batch=8),
                   import_backend=lambda: (trt, cudart)) as runner:
        runner_out = runner.infer(batch)
        assert (runner.spec.min_batch, runner.spec.max_batch) == (1, 4)  # narrowed to the engine profile
    runner_calls = [c for c in log if c != ("cudaGetDeviceCount",)]  # the runner's own GPU check comes first

    np.testing.assert_allclose(kit_out, _expected(batch), rtol=1e-5)
    np.testing.assert_allclose(runner_out, _expected(batch), rtol=1e-5)
    assert kit_calls == runner_calls  # one engine-execution core, call for call
    # Buffers once, at the profile's max batch (4), bound once; freed; context before engine before runtime.
    assert [c for c in kit_calls if c[0] == "cudaMalloc"] == [("cudaMalloc", 4 * 4 * 48), ("cudaMalloc", 4 * 4 * 5)]
    assert kit_calls.count(("set_tensor_address", "images")) == 1 and kit_calls.count(("cudaFree",)) == 2
    assert [c[1] for c in kit_calls if c[0] == "del"] == ["context", "engine", "runtime"]


def test_several_batches_reuse_the_buffers(fakes):
    log, trt, _ = fakes
    batches = [np.full((n, *CHW), float(n), np.float32) for n in PROFILE]
    outputs = run_engine(trt, PLAN, batches)
    for batch, out in zip(batches, outputs, strict=True):
        np.testing.assert_allclose(out, _expected(batch))
    assert sum(c[0] == "cudaMalloc" for c in log) == 2 and log.count(("execute_async_v3",)) == 3


def test_stage_times_come_from_events_created_on_demand(fakes, tmp_path):
    log, trt, cudart = fakes
    (tmp_path / "engine.plan").write_bytes(PLAN)
    with TrtRunner(tmp_path / "engine.plan", InputSpec("images", *CHW), import_backend=lambda: (trt, cudart)) as r:
        r.infer(np.zeros((1, *CHW), np.float32))
        assert ("cudaEventCreate",) not in log
        times = r.time_stages(np.zeros((1, *CHW), np.float32), iterations=3, warmup=1)
    assert times == {"h2d_ms": [0.25] * 3, "compute_ms": [0.25] * 3, "d2h_ms": [0.25] * 3}
    assert log.count(("cudaEventCreate",)) == 4 and log.count(("cudaEventDestroy",)) == 4


def test_errors_keep_each_path_s_message_and_free_everything(fakes, tmp_path):
    log, trt, cudart = fakes
    with pytest.raises(EngineBuildError, match="could not deserialize the engine it just built"):
        run_engine(trt, b"corrupt", [np.zeros((1, *CHW), np.float32)])
    (tmp_path / "old.plan").write_bytes(b"corrupt")
    with pytest.raises(RuntimeError, match=r"old.plan: TensorRT 10.3.0 could not deserialize this engine.*"
                                           r"rebuild it here with the bundle's build_engine.sh"):
        TrtRunner(tmp_path / "old.plan", InputSpec("images", *CHW), import_backend=lambda: (trt, cudart)).open()
    with pytest.raises(ValueError, match=r"engine inputs are \['images'\], expected exactly \['pixels'\]"):
        run_engine(trt, PLAN, [np.zeros((1, *CHW), np.float32)], input_name="pixels")
    with pytest.raises(ValueError, match=r"outside the engine profile \(batch 1 to 4"):
        run_engine(trt, PLAN, [np.zeros((5, *CHW), np.float32)])
    assert sum(c[0] == "cudaMalloc" for c in log) == log.count(("cudaFree",))  # nothing leaked on any failure


def test_enqueue_before_open_is_an_error(fakes):
    _, trt, cudart = fakes
    with pytest.raises(RuntimeError, match="not open"):
        EngineSession(trt, cudart, PLAN, "images").enqueue(np.zeros((1, *CHW), np.float32))
