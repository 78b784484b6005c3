"""PyTorch runner: the trained (unfolded) reference model or its folded form, behind the common runner lifecycle.

The harness measures every deployed artifact against ``torch-ref``, the model exactly as trained, so this runner
keeps PyTorch out of the way: eval mode, ``torch.inference_mode``, a recorded thread count, and the model's training
mode and the process's thread count restored on close.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .base import BackendUnavailable, InputSpec, Runner, StagedInference

DEVICES = ("cpu", "cuda")


class TorchRunner(Runner):
    """Runs an ``nn.Module`` on a float32 NCHW batch and returns its logits.

    Args:
        model: the module (left in eval mode while the runner is open; its training mode is restored on close).
        spec: input spec (from the manifest).
        name: the backend name shown in reports, e.g. "torch-ref" or "torch-folded".
        device: "cpu" or "cuda" (BackendUnavailable when no CUDA device is visible).
        threads: intra-op threads while open (0 = leave PyTorch's setting alone).
    """

    def __init__(self, model: Any, spec: InputSpec, name: str = "torch", device: str = "cpu", threads: int = 0) -> None:
        super().__init__(spec)
        if device not in DEVICES:
            raise ValueError(f"torch device must be one of {DEVICES}, got {device!r}")
        if threads < 0:
            raise ValueError(f"threads must be >= 0, got {threads}")
        self.model = model
        self.backend = name
        self.device = device
        self.threads = threads
        self._saved_threads: int | None = None
        self._was_training = False

    def _open(self) -> None:
        import torch

        if self.device == "cuda" and not torch.cuda.is_available():
            raise BackendUnavailable(f"{self.backend}: PyTorch {torch.__version__} sees no CUDA device "
                                     f"(torch.cuda.is_available() is False)")
        if self.threads:
            # torch's thread count is process-wide: remember it so closing the runner gives it back.
            self._saved_threads = torch.get_num_threads()
            torch.set_num_threads(self.threads)
        self._was_training = self.model.training
        self.model.eval().to(self.device)

    def _infer(self, images: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            logits = self.model(torch.from_numpy(images).to(self.device))
        # .cpu() waits for the device, so a timer around infer() sees the whole computation.
        return logits.float().cpu().numpy()

    def _infer_staged(self, images: np.ndarray) -> StagedInference:
        """On CUDA: the copy in, the forward pass and the copy out, each ended by ``torch.cuda.synchronize`` so wall
        time splits them (**untested on a GPU**); on the CPU the base class's single stage."""
        if self.device != "cuda":
            return super()._infer_staged(images)
        import torch

        t0 = time.perf_counter_ns()
        on_device = torch.from_numpy(images).to(self.device)
        torch.cuda.synchronize()
        t1 = time.perf_counter_ns()
        with torch.inference_mode():
            out = self.model(on_device).float()
        torch.cuda.synchronize()
        t2 = time.perf_counter_ns()
        logits = out.cpu().numpy()
        t3 = time.perf_counter_ns()
        return StagedInference(logits, (t2 - t1) / 1e6, h2d_ms=(t1 - t0) / 1e6, d2h_ms=(t3 - t2) / 1e6,
                               copy_note=None)

    def _close(self) -> None:
        import torch

        self.model.train(self._was_training)
        if self._saved_threads is not None:
            torch.set_num_threads(self._saved_threads)
            self._saved_threads = None

    def describe(self) -> dict[str, Any]:
        import torch

        info: dict[str, Any] = {"backend": self.backend, "torch": torch.__version__, "device": self.device,
                                "threads": self.threads or torch.get_num_threads()}
        if self.device == "cuda" and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name(0)
        return info
