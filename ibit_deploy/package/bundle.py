"""The one place the packagers read a bundle: :func:`read_bundle` turns its manifest into a :class:`BundleView`.

Every target module works from the view, never from raw manifest keys, so switching to a typed manifest reader
changes this file only.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..manifest import MANIFEST_FILE, load_manifest


class PackageError(ValueError):
    """The bundle or the options cannot make this package; the message names the file or value and the fix."""


@dataclass(frozen=True)
class BundleView:
    """What a packager needs from a bundle: input geometry and normalisation, classes, batch range, artifacts."""

    path: Path
    model_name: str
    input_name: str
    output_name: str
    channels: int
    height: int
    width: int
    mean: tuple[float, ...]
    std: tuple[float, ...]
    classes: list[str]
    batch_range: tuple[int, int]
    opt_batch: int
    input_dtype: str = "float32"
    output_dtype: str = "float32"
    artifacts: list[dict[str, Any]] = field(default_factory=list)

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST_FILE

    def artifact(self, kind: str, precision: str) -> dict[str, Any] | None:
        """The first artifact of ``kind`` ("onnx", "engine") and ``precision``, or None."""
        return next((a for a in self.artifacts if a.get("kind") == kind and a.get("precision", "fp32") == precision),
                    None)

    def require_onnx(self, precision: str) -> Path:
        """The ONNX file of ``precision``, or a PackageError saying how to produce it."""
        art = self.artifact("onnx", precision)
        if art is None:
            have = sorted({a.get("precision", "fp32") for a in self.artifacts if a.get("kind") == "onnx"})
            raise PackageError(f"{self.manifest_path} lists no {precision} ONNX (it has: {', '.join(have) or 'none'});"
                               f" re-export with `ibit-export CHECKPOINT --precision {precision} --out {self.path}`")
        return self.path / art["path"]


def read_bundle(bundle: str | os.PathLike) -> BundleView:
    """Load and verify (sha256 of every artifact) the bundle's manifest, as a :class:`BundleView`."""
    bundle = Path(bundle)
    try:
        manifest = load_manifest(bundle, verify=True)
    except (FileNotFoundError, ValueError) as exc:
        raise PackageError(str(exc)) from exc
    inp, out = manifest["input"], manifest.get("output", {})
    try:
        _, channels, height, width = inp["shape"]
        mean, std = tuple(float(v) for v in inp["mean"]), tuple(float(v) for v in inp["std"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PackageError(f"{bundle / MANIFEST_FILE}: 'input' needs shape [batch, C, H, W], mean and std: {exc}") \
            from exc
    if len(mean) != int(channels) or len(std) != int(channels) or min(std) <= 0:
        raise PackageError(f"{bundle / MANIFEST_FILE}: input mean {mean} / std {std} must have {channels} entries "
                           f"and positive std")
    num_classes = int(out.get("shape", [None, 0])[-1] or 0)
    classes = [str(c) for c in manifest.get("classes") or range(num_classes)]
    batch = inp.get("batch_range") or [1, 1]
    return BundleView(path=bundle, model_name=str(manifest.get("model", {}).get("name", "model")),
                      input_name=str(inp.get("name", "images")), output_name=str(out.get("name", "logits")),
                      channels=int(channels), height=int(height), width=int(width), mean=mean, std=std,
                      classes=classes, batch_range=(int(batch[0]), int(batch[1])),
                      opt_batch=int(inp.get("opt_batch", batch[1])), input_dtype=str(inp.get("dtype", "float32")),
                      output_dtype=str(out.get("dtype", "float32")), artifacts=list(manifest["artifacts"]))
