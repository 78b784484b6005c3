"""ONNX Runtime runner: CPU, CUDA or TensorRT execution provider, chosen by name."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np

from .base import BackendUnavailable, InputSpec, Runner, StagedInference

PROVIDERS = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
# Where each device's session keeps its tensors: None for host memory (no copies to time apart).
COPY_DEVICE = {"cpu": None, "cuda": "cuda", "tensorrt": "cuda"}


def session_options(threads: int = 0, profile_prefix: str | None = None) -> Any:
    """THE ONNX Runtime session options of every ORT session the product and its benchmarks open.

    ``threads`` intra-op threads (0: ORT's default, all cores), one inter-op thread (ORT runs the graph's nodes
    sequentially by default; nothing here runs them in parallel), every graph optimization
    (``ORT_ENABLE_ALL``: the session's own fusions and the CPU's NCHWc layout on top of the file's), and ORT's
    per-node profiler when ``profile_prefix`` names the trace file's prefix (benchmarks only).
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if profile_prefix:
        options.enable_profiling = True
        options.profile_file_prefix = profile_prefix
    return options


class OrtRunner(Runner):
    """Runs an ONNX file with ONNX Runtime.

    Args:
        onnx_path: the model file.
        spec: input spec (from the manifest).
        device: "cpu", "cuda" or "tensorrt" (ORT's TensorRT execution provider).
        threads: intra-op threads (0 = ORT's default, all cores).
        provider_options: per-provider options, e.g. {"TensorrtExecutionProvider": {"trt_fp16_enable": True}}.
    """

    def __init__(self, onnx_path: str | os.PathLike, spec: InputSpec, device: str = "cpu", threads: int = 0,
                 provider_options: dict[str, dict[str, Any]] | None = None) -> None:
        super().__init__(spec)
        if device not in PROVIDERS:
            raise ValueError(f"ORT device must be one of {sorted(PROVIDERS)}, got {device!r}")
        self.onnx_path = Path(onnx_path)
        self.device = device
        self.threads = threads
        self.provider_options = provider_options or {}
        self.backend = {"cpu": "ort-cpu", "cuda": "ort-cuda", "tensorrt": "ort-trt"}[device]  # as ibit-bench names it
        self.session = None

    def _open(self) -> None:
        import onnxruntime as ort

        if not self.onnx_path.is_file():
            raise FileNotFoundError(f"ONNX file not found: {self.onnx_path}")
        wanted = PROVIDERS[self.device]
        if wanted[0] not in ort.get_available_providers():
            raise BackendUnavailable(f"ONNX Runtime {ort.__version__} here has no {wanted[0]} (available: "
                                     f"{ort.get_available_providers()}); install onnxruntime-gpu on a CUDA machine")
        options = session_options(self.threads)
        providers = [(p, self.provider_options.get(p, {})) for p in wanted]
        self.session = ort.InferenceSession(str(self.onnx_path), options, providers=providers)
        # onnxruntime-gpu can silently fall back to CPU (METHODS.md section 7): check what the session really uses.
        active = self.session.get_providers()
        if active[0] != wanted[0]:
            raise BackendUnavailable(f"ONNX Runtime fell back to {active} instead of {wanted[0]} for {self.onnx_path}")
        self.input_name = self.session.get_inputs()[0].name
        if self.input_name != self.spec.name:
            raise ValueError(f"{self.onnx_path}: input is named {self.input_name!r}, the manifest says {self.spec.name!r}")

    def _infer(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: images})[0].astype(np.float32, copy=False)

    def _infer_staged(self, images: np.ndarray) -> StagedInference:
        device = COPY_DEVICE[self.device]
        if device is None:
            return super()._infer_staged(images)
        return infer_with_binding(self.session, self.input_name, images, device)

    def _close(self) -> None:
        self.session = None

    def describe(self) -> dict[str, Any]:
        import onnxruntime as ort

        info = {"backend": self.backend, "onnxruntime": ort.__version__, "threads": self.threads or os.cpu_count(),
                "model": str(self.onnx_path)}
        if self.session is not None:
            info["providers"] = self.session.get_providers()
        return info


def infer_with_binding(session: Any, input_name: str, images: np.ndarray, device_type: str,
                       device_id: int = 0) -> StagedInference:
    """One inference through ONNX Runtime's I/O binding, timed by stage: the input copied to ``device_type`` memory
    (``OrtValue.ortvalue_from_numpy``), ``run_with_iobinding`` with the outputs left there, then copied back
    (``copy_outputs_to_cpu``). Each call returns once its work is done (ORT synchronizes the copies from and to
    pageable host memory, and the run, by default), so wall time splits the stages.

    Tested here with ``device_type="cpu"`` (the same calls on host memory); **untested on a GPU** ("cuda").
    """
    import onnxruntime as ort

    t0 = time.perf_counter_ns()
    on_device = ort.OrtValue.ortvalue_from_numpy(images, device_type, device_id)
    t1 = time.perf_counter_ns()
    binding = session.io_binding()
    binding.bind_ortvalue_input(input_name, on_device)
    output = session.get_outputs()[0].name
    binding.bind_output(output, device_type, device_id)
    session.run_with_iobinding(binding)
    t2 = time.perf_counter_ns()
    logits = binding.copy_outputs_to_cpu()[0].astype(np.float32, copy=False)
    t3 = time.perf_counter_ns()
    return StagedInference(logits, (t2 - t1) / 1e6, h2d_ms=(t1 - t0) / 1e6, d2h_ms=(t3 - t2) / 1e6, copy_note=None)
