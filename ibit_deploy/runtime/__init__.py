"""Runtime: one runner lifecycle for every backend (PyTorch, ONNX Runtime, TensorRT), and loading of bundles.

    from ibit_deploy.runtime import load, Predictor
    with load("bundle/", backend="auto") as runner:       # TensorRT engine > ORT CUDA > ORT CPU
        logits = runner.infer(images)                     # float32 NCHW, preprocessed as manifest["input"] says
    Predictor("bundle/").predict(pil_images).top_k(3)     # raw images in, class names out
"""

from .base import BackendUnavailable, InputSpec, Runner
from .load import load, make_runners
from .ort_runner import OrtRunner
from .predictor import Predictor
from .torch_runner import TorchRunner

__all__ = ["BackendUnavailable", "InputSpec", "OrtRunner", "Predictor", "Runner", "TorchRunner", "load",
           "make_runners"]
