"""Typed access to a bundle: the one place the manifest's ``input``, ``artifacts``, ``classes`` and evaluation set
are read into objects every stage uses (runtime, export, quantization, bench).

    b = open_bundle("bundle/")            # manifest checked (sha256 of every file), version 1 migrated
    b.input.max_batch, b.input.profile()  # InputSpec, EngineProfile
    b.find("onnx", "fp16").path           # Artifact
    b.eval_set                             # EvalSet(spec, val_fraction, seed)

The manifest stays a JSON dict on disk (``b.manifest``) and writers still extend it; these objects are read-only
views built from it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .manifest import load_manifest
from .trt.kit import EngineProfile

# The held-out split every stage re-derives when the manifest does not record one (ibit-train's defaults).
DEFAULT_VAL_FRACTION = 0.2
DEFAULT_SPLIT_SEED = 0


@dataclass(frozen=True)
class InputSpec:
    """What a runner accepts: channels, height, width, the batch range (max_batch None = unbounded) and the
    preprocessing the manifest records (mean, std, channel order)."""

    name: str
    channels: int
    height: int
    width: int
    min_batch: int = 1
    max_batch: int | None = None
    opt_batch: int | None = None
    mean: tuple[float, ...] = ()
    std: tuple[float, ...] = ()
    channel_order: str = ""

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any]) -> InputSpec:
        """The spec of a manifest's ``input`` block; ValueError naming the field that is malformed."""
        inp = manifest.get("input")
        if not isinstance(inp, dict):
            raise ValueError(f"manifest has no 'input' block, got {inp!r}")
        shape = inp.get("shape") or []
        if len(shape) != 4:
            raise ValueError(f"manifest input.shape should be [batch, C, H, W], got {shape!r}")
        _, c, h, w = shape
        batch = inp.get("batch_range") or [1, None]
        if len(batch) != 2:
            raise ValueError(f"manifest input.batch_range should be [min, max], got {batch!r}")
        opt = inp.get("opt_batch")
        return cls(name=inp.get("name", "images"), channels=int(c), height=int(h), width=int(w),
                   min_batch=int(batch[0]), max_batch=None if batch[1] is None else int(batch[1]),
                   opt_batch=None if opt is None else int(opt),
                   mean=tuple(float(v) for v in inp.get("mean", ())), std=tuple(float(v) for v in inp.get("std", ())),
                   channel_order=str(inp.get("channel_order", "")))

    @property
    def chw(self) -> tuple[int, int, int]:
        return self.channels, self.height, self.width

    @property
    def image_size(self) -> tuple[int, int]:
        return self.height, self.width

    def profile(self) -> EngineProfile:
        """The TensorRT optimization profile of this input (needs a finite max batch)."""
        if self.max_batch is None:
            raise ValueError(f"input {self.name!r}: batch_range needs a finite max for a TensorRT optimization profile")
        return EngineProfile(self.name, self.chw, self.min_batch, self.opt_batch or self.min_batch, self.max_batch)

    def check(self, images: np.ndarray) -> np.ndarray:
        """Return ``images`` as contiguous float32 after checking rank, shape and batch size."""
        if not isinstance(images, np.ndarray):
            raise TypeError(f"input {self.name!r}: expected a numpy array, got {type(images).__name__}")
        if images.ndim != 4 or tuple(images.shape[1:]) != self.chw:
            raise ValueError(f"input {self.name!r}: expected shape (batch, {self.channels}, {self.height}, "
                             f"{self.width}) NCHW, got {tuple(images.shape)}")
        batch = images.shape[0]
        if batch < self.min_batch or (self.max_batch is not None and batch > self.max_batch):
            raise ValueError(f"input {self.name!r}: batch {batch} is outside the artifact's range "
                             f"[{self.min_batch}, {self.max_batch if self.max_batch is not None else 'inf'}]")
        if images.dtype != np.float32:
            images = images.astype(np.float32)
        return np.ascontiguousarray(images)


@dataclass(frozen=True)
class EvalSet:
    """The held-out images a bundle is judged on: dataset spec and the split that keeps them out of training."""

    spec: str | None
    val_fraction: float = DEFAULT_VAL_FRACTION
    seed: int = DEFAULT_SPLIT_SEED

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], spec: str | None = None) -> EvalSet:
        """The manifest's ``data`` block; another ``spec`` than the recorded one gets the default split."""
        data = manifest.get("data") or {}
        recorded = data.get("spec")
        if spec is not None and spec != recorded:
            return cls(spec)
        return cls(recorded, float(data.get("val_fraction", DEFAULT_VAL_FRACTION)),
                   int(data.get("seed", DEFAULT_SPLIT_SEED)))

    def arrays(self, split: str, spec: InputSpec, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Preprocessed float32 NCHW images and labels of ``split``, as ``spec`` (size, mean, std) says."""
        from .data import eval_arrays

        if not self.spec:
            raise ValueError("the manifest records no dataset (manifest['data']['spec'])")
        return eval_arrays(self.spec, split, spec.image_size, spec.mean, spec.std, limit=limit,
                           val_fraction=self.val_fraction, seed=self.seed)

    def describe(self, count: int) -> str:
        return f"{count} val images of {self.spec} (val_fraction {self.val_fraction}, seed {self.seed})"


@dataclass(frozen=True)
class Artifact:
    """One file of the bundle as the manifest lists it; ``entry`` is the full manifest record."""

    path: str
    sha256: str
    kind: str
    precision: str
    entry: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_entry(cls, entry: dict[str, Any]) -> Artifact:
        return cls(entry["path"], entry["sha256"], str(entry.get("kind", "")), str(entry.get("precision", "fp32")),
                   entry)


@dataclass(frozen=True)
class Bundle:
    """A loaded bundle: its directory, the manifest dict, and typed views of it."""

    path: Path
    manifest: dict[str, Any] = field(repr=False)
    input: InputSpec
    artifacts: tuple[Artifact, ...]
    classes: tuple[str, ...]
    eval_set: EvalSet

    @classmethod
    def from_manifest(cls, path: str | os.PathLike, manifest: dict[str, Any]) -> Bundle:
        return cls(Path(path), manifest, InputSpec.from_manifest(manifest),
                   tuple(Artifact.from_entry(a) for a in manifest.get("artifacts", [])),
                   tuple(str(c) for c in manifest.get("classes", [])), EvalSet.from_manifest(manifest))

    def find(self, kind: str | None = None, precision: str | None = None, path: str | None = None) -> Artifact | None:
        """The first artifact matching every given field, or None."""
        return next((a for a in self.artifacts if (kind is None or a.kind == kind)
                     and (precision is None or a.precision == precision) and (path is None or a.path == path)), None)

    def file(self, artifact: Artifact | str) -> Path:
        return self.path / (artifact.path if isinstance(artifact, Artifact) else artifact)


def open_bundle(path: str | os.PathLike, verify: bool = True) -> Bundle:
    """Read ``path``'s manifest (checking every file's sha256 with ``verify``; v1 migrated) into a :class:`Bundle`."""
    return Bundle.from_manifest(path, load_manifest(path, verify=verify))
