"""The runner lifecycle every backend shares: ``with Runner(...) as r: logits = r.infer(images)``.

A runner takes a float32 NCHW batch (already preprocessed as the manifest's ``input`` says) and returns float32
logits (batch, classes). Inputs are validated once here, in the base class, against the input spec, so every backend
reports a wrong shape or dtype the same way. Heavy imports (onnxruntime, tensorrt, cuda) happen in ``open``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..devicekit.profile import InputSpec
from ..errors import BackendUnavailable

__all__ = ["BackendUnavailable", "InputSpec", "Runner", "StagedInference"]


DEFAULT_CHUNK = 64  # images per call when neither the caller nor the artifact bounds the batch
HOST_MEMORY = "not applicable: the backend runs on host memory, there is no host-device copy"


@dataclass(frozen=True)
class StagedInference:
    """One inference split into its stages (milliseconds): ``h2d_ms``, ``inference_ms``, ``d2h_ms``.

    ``h2d_ms``/``d2h_ms`` are None where the backend has no separate copy (``copy_note`` says why: a CPU backend
    has none to make); they are never reported as zero. The three stages add up to the call's wall time.
    """

    logits: np.ndarray
    inference_ms: float
    h2d_ms: float | None = None
    d2h_ms: float | None = None
    copy_note: str | None = HOST_MEMORY


class Runner:
    """Base class: subclasses implement ``_open``, ``_infer`` and optionally ``_close`` and ``describe``."""

    backend = "base"

    def __init__(self, spec: InputSpec) -> None:
        self.spec = spec
        self.is_open = False

    def open(self) -> Runner:
        if not self.is_open:
            self._open()
            self.is_open = True
        return self

    def infer(self, images: np.ndarray) -> np.ndarray:
        """Logits (batch, classes) float32 for a preprocessed float32 NCHW batch."""
        if not self.is_open:
            raise RuntimeError(f"{self.backend} runner is not open; use `with runner:` or call open() first")
        return self._infer(self.spec.check(images))

    def infer_staged(self, images: np.ndarray) -> StagedInference:
        """:meth:`infer`, timed by stage (host-to-device copy, inference, device-to-host copy)."""
        if not self.is_open:
            raise RuntimeError(f"{self.backend} runner is not open; use `with runner:` or call open() first")
        return self._infer_staged(self.spec.check(images))

    def infer_all(self, images: np.ndarray, batch: int | None = None) -> np.ndarray:
        """Logits for any number of images: chunks of ``batch`` (default: the largest the spec allows, else 64)
        clipped to the spec's batch range; a chunk shorter than the minimum batch is padded with its last image and
        the padding's outputs are dropped. Predictor, the harness and the quantization gate all batch through here.
        """
        spec = self.spec
        size = batch or spec.max_batch or DEFAULT_CHUNK
        size = max(spec.min_batch, min(size, spec.max_batch or size))
        if len(images) == 0:
            raise ValueError(f"input {spec.name!r}: no images given")
        out = []
        for i in range(0, len(images), size):
            chunk = images[i:i + size]
            short = max(0, spec.min_batch - len(chunk))
            if short:
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], short, axis=0)])
            out.append(self.infer(chunk)[:len(chunk) - short])
        return np.concatenate(out)

    def close(self) -> None:
        if self.is_open:
            self._close()
            self.is_open = False

    def describe(self) -> dict[str, Any]:
        """Backend details recorded in reports (providers, versions, threads, device)."""
        return {"backend": self.backend}

    def __enter__(self) -> Runner:
        return self.open()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _open(self) -> None:
        raise NotImplementedError

    def _infer(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _infer_staged(self, images: np.ndarray) -> StagedInference:
        """This default (a backend on host memory) times the whole call as inference and records the copies as not
        applicable; GPU backends override it to time their copies apart."""
        start = time.perf_counter_ns()
        logits = self._infer(images)
        return StagedInference(logits, (time.perf_counter_ns() - start) / 1e6)

    def _close(self) -> None:
        pass
