"""Runtime: one runner lifecycle for every backend (PyTorch, ONNX Runtime, TensorRT), and loading of bundles."""

from .base import BackendUnavailable, InputSpec, Runner
from .ort_runner import OrtRunner

__all__ = ["BackendUnavailable", "InputSpec", "OrtRunner", "Runner"]
