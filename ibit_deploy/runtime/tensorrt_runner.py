"""``TrtRunner``: run a serialized TensorRT engine (``engine.plan``) on a CUDA GPU.

Device memory, copies, the stream and CUDA events come from cuda-python's runtime bindings (``cuda.bindings.runtime``,
or ``cuda.cudart`` before 12.6), the package NVIDIA's own TensorRT samples use and the ``tensorrt`` extra installs.
Not torch CUDA tensors: JetPack's TensorRT does not need a CUDA build of torch, which a Jetson often lacks. (The
cuda-python helpers are :mod:`ibit_deploy.trt`'s, the ground-floor TensorRT package; the runtime never imports the
export package.)

The engine work is :class:`ibit_deploy.devicekit.session.EngineSession`, the one engine-execution core the on-device kit uses
too: buffers are allocated once, at the engine profile's largest batch, and bound with ``set_tensor_address`` when the
runner opens; each call sets the input shape, copies in, ``execute_async_v3``, copies out, synchronizes.
Host arrays are ordinary (pageable) numpy arrays: :meth:`TrtRunner.time_stages` times the copies apart from the
compute, so the harness can report GPU compute time alone, as trtexec does.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..devicekit import versions
from ..devicekit.bundle import open_bundle
from ..devicekit.engine_compat import EngineCompat, recorded_version, refusal, runtime_options
from ..devicekit.layout import DEFAULT_ENGINE
from ..devicekit.session import STAGE_EVENTS, EngineSession, cuda_check, import_cudart
from ..errors import BackendUnavailable
from ..trt.build import import_tensorrt
from .base import InputSpec, Runner, StagedInference


class TrtRunner(Runner):
    """A TensorRT engine behind the common runner lifecycle: ``with TrtRunner(path, spec) as r: r.infer(x)``."""

    backend = "tensorrt"

    def __init__(self, engine_path: str | os.PathLike, spec: InputSpec, *, device: int = 0,
                 import_backend: Callable[[], tuple[Any, Any]] | None = None, built_with: str | None = None,
                 compat: EngineCompat | None = None, lean_runtime: str | os.PathLike | None = None) -> None:
        """``import_backend`` returns the (tensorrt, cuda-python runtime) modules to use (default: import them, or
        BackendUnavailable saying which is missing): the seam tests use to stand in for TensorRT and the driver.
        ``built_with`` / ``compat``: the TensorRT version that built the engine and its compatibility, as the
        manifest records them; given, opening refuses an engine the installed TensorRT cannot run, naming both
        versions (:func:`~ibit_deploy.devicekit.engine_compat.refusal`), and opens a version-compatible one as it
        needs (``lean_runtime``: the lean runtime library of an engine built without its own)."""
        super().__init__(spec)
        self.engine_path = Path(engine_path)
        self.device = device
        self.built_with, self.compat = built_with, compat
        self.lean_runtime = None if lean_runtime is None else str(lean_runtime)
        self._import_backend = import_backend or import_trt_backend
        self._trt: Any = None
        self._cudart: Any = None
        self._session: EngineSession | None = None

    @classmethod
    def from_bundle(cls, bundle: str | os.PathLike, engine: str | None = None, *, device: int = 0) -> TrtRunner:
        """The runner for a bundle's engine (its manifest entry of kind "engine", else ``engine.plan``)."""
        b = open_bundle(bundle, verify=False)
        art = b.find("engine", path=engine)
        if art is None:
            return cls(b.file(engine or DEFAULT_ENGINE), b.input, device=device)
        where = f"{b.path}: {art.path}"
        return cls(b.file(art.path), b.input, device=device, built_with=recorded_version(art.entry.get("tensorrt"), where),
                   compat=EngineCompat.from_record(art.entry.get("engine_compat"), where))

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
        if self.compat is not None:  # what the manifest says built it, against the TensorRT installed here
            why = refusal(self.built_with, self.compat, str(trt.__version__),
                          jetson=versions.read_l4t_release() is not None,
                          compute_capability=_compute_capability(cudart, self.device), lean_runtime=self.lean_runtime,
                          engine=str(self.engine_path))
            if why is not None:
                raise BackendUnavailable(f"TensorRT runner: {why}")
        try:
            self._load_and_allocate(trt, cudart)
        except BaseException:
            self._close()  # free whatever was allocated before the failure
            raise

    def _load_and_allocate(self, trt: Any, cudart: Any) -> None:
        # cudaSetDevice, deserialize, context, I/O tensors, buffers at the profile max, stream: the trt package's
        # one engine-execution core, shared with the on-device kit.
        self._session = EngineSession(trt, cudart, self.engine_path.read_bytes(), self.spec.name, device=self.device,
                                      source=str(self.engine_path),
                                      **runtime_options(self.compat or EngineCompat(), self.lean_runtime)).open()
        self._outputs = self._session.outputs
        self._restrict_spec_to_profile()

    def _restrict_spec_to_profile(self) -> None:
        """Narrow the spec's batch range to the engine's optimization profile, so the base class rejects the rest."""
        lo, _, hi = self._session.batch_range
        spec_max = self.spec.max_batch if self.spec.max_batch is not None else hi
        new_lo, new_hi = max(lo, self.spec.min_batch), min(hi, spec_max)
        if new_lo > new_hi:
            raise ValueError(f"{self.engine_path}: engine profile batch range [{lo}, {hi}] does not overlap the "
                             f"input spec's [{self.spec.min_batch}, {self.spec.max_batch}]")
        self.spec = dataclasses.replace(self.spec, min_batch=new_lo, max_batch=new_hi)

    def _close(self) -> None:
        if self._session is not None:
            self._session.close()  # events, stream, buffers; then context before engine before runtime
        self._session = None

    # ------------------------------------------------------------------------------------------------- inference

    def _infer(self, images: np.ndarray) -> np.ndarray:
        outputs = self._session.enqueue(images)
        logits = outputs.get("logits", outputs[self._outputs[0]])
        return logits.astype(np.float32, copy=False)

    def _infer_staged(self, images: np.ndarray) -> StagedInference:
        """One call with CUDA events between its stages: ``h2d_ms`` and ``d2h_ms`` are the copies' event times,
        ``inference_ms`` the rest of the call's wall time (``execute_async_v3`` plus the host's launch and
        synchronisation), so the three add up to the call. **Untested on a GPU** (its engine calls run in the
        conformance suite; the event calls are cuda-python's)."""
        start = time.perf_counter_ns()
        outputs = self._session.enqueue(images, events=True)
        wall = (time.perf_counter_ns() - start) / 1e6
        times = self._session.stage_times()
        logits = outputs.get("logits", outputs[self._outputs[0]]).astype(np.float32, copy=False)
        return StagedInference(logits, max(0.0, wall - times["h2d_ms"] - times["d2h_ms"]), h2d_ms=times["h2d_ms"],
                               d2h_ms=times["d2h_ms"], copy_note=None)

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
            self._session.enqueue(images)
        times: dict[str, list[float]] = {key: [] for key in STAGE_EVENTS}
        for _ in range(iterations):
            self._session.enqueue(images, events=True)
            for key, ms in self._session.stage_times().items():
                times[key].append(ms)
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


def _compute_capability(cudart: Any, device: int) -> tuple[int, int] | None:
    """(major, minor) of GPU ``device``, None when it cannot be read (the check then leaves it to TensorRT)."""
    try:
        props = cuda_check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        return int(props.major), int(props.minor)
    except Exception:  # a stand-in without these fields, an old driver: TensorRT's own check still applies
        return None
