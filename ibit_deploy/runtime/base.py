"""The runner lifecycle every backend shares: ``with Runner(...) as r: logits = r.infer(images)``.

A runner takes a float32 NCHW batch (already preprocessed as the manifest's ``input`` says) and returns float32
logits (batch, classes). Inputs are validated once here, in the base class, against the input spec, so every backend
reports a wrong shape or dtype the same way. Heavy imports (onnxruntime, tensorrt, cuda) happen in ``open``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


class BackendUnavailable(RuntimeError):
    """This backend cannot run on this machine (missing package, no GPU, ...); the message says why."""


@dataclass(frozen=True)
class InputSpec:
    """What a runner accepts: channels, height, width, and the batch range (max_batch None = unbounded)."""

    name: str
    channels: int
    height: int
    width: int
    min_batch: int = 1
    max_batch: int | None = None

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> InputSpec:
        inp = manifest["input"]
        _, c, h, w = inp["shape"]
        batch = inp.get("batch_range") or [1, None]
        return cls(name=inp.get("name", "images"), channels=int(c), height=int(h), width=int(w),
                   min_batch=int(batch[0]), max_batch=None if batch[1] is None else int(batch[1]))

    def check(self, images: np.ndarray) -> np.ndarray:
        """Return ``images`` as contiguous float32 after checking rank, shape and batch size."""
        if not isinstance(images, np.ndarray):
            raise TypeError(f"input {self.name!r}: expected a numpy array, got {type(images).__name__}")
        if images.ndim != 4 or tuple(images.shape[1:]) != (self.channels, self.height, self.width):
            raise ValueError(f"input {self.name!r}: expected shape (batch, {self.channels}, {self.height}, "
                             f"{self.width}) NCHW, got {tuple(images.shape)}")
        batch = images.shape[0]
        if batch < self.min_batch or (self.max_batch is not None and batch > self.max_batch):
            raise ValueError(f"input {self.name!r}: batch {batch} is outside the artifact's range "
                             f"[{self.min_batch}, {self.max_batch if self.max_batch is not None else 'inf'}]")
        if images.dtype != np.float32:
            images = images.astype(np.float32)
        return np.ascontiguousarray(images)


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

    def _close(self) -> None:
        pass
