"""The reference outputs a bundle carries: the trained model's logits on the bundle's check images.

The export writes ``reference.npz`` (:data:`~.layout.REFERENCE_FILE`, listed in the manifest as kind
:data:`~.layout.REFERENCE_KIND` with its sha256): the check images exactly as a runner takes them (float32 NCHW,
preprocessed), their labels (-1 where the images are not real ones) and the logits of the reference model
(``torch-ref``: the checkpoint as trained, masks unfolded) on them. Where the source checkpoint or torch is absent
(a Jetson, any device install), ibit-bench and the runtime check ONNX Runtime and TensorRT against these numbers
instead of running PyTorch. numpy only.
"""

from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .fileio import atomic_write_bytes
from .layout import REFERENCE_FILE, REFERENCE_KIND

FORMAT_VERSION = 1
MAX_BYTES = 16 << 20  # the check images of a big input stop at about this many bytes (float32)
MAX_COUNT = 256
MIN_COUNT = 16  # at least this many whatever their size: fewer tells too little
NO_LABEL = -1


def reference_count(chw: tuple[int, int, int]) -> int:
    """How many check images a bundle carries for inputs of shape ``chw``: up to 256, about 16 MiB of them."""
    per_image = 4 * int(np.prod(chw))
    return int(max(MIN_COUNT, min(MAX_COUNT, MAX_BYTES // per_image)))


@dataclass(frozen=True)
class ReferenceSet:
    """Check images (float32 NCHW), labels (int64, ``-1`` when not real images) and the reference logits."""

    images: np.ndarray
    labels: np.ndarray
    logits: np.ndarray
    description: str  # what the images are, as the manifest records it

    @property
    def real(self) -> bool:
        """Whether the images are real, labelled ones (else random inputs: agreement only, no accuracy)."""
        return bool(len(self.labels)) and bool((self.labels != NO_LABEL).all())


def write_reference(path: str | os.PathLike, images: np.ndarray, labels: np.ndarray | None,
                    logits: np.ndarray) -> None:
    """Write a reference file atomically; ``labels`` None for random (not real) images."""
    images = np.ascontiguousarray(images, np.float32)
    logits = np.ascontiguousarray(logits, np.float32)
    if images.ndim != 4 or logits.ndim != 2 or len(images) != len(logits) or not len(images):
        raise ValueError(f"reference: expected N>0 images (N, C, H, W) and logits (N, classes), got {images.shape} "
                         f"and {logits.shape}")
    labels = np.full(len(images), NO_LABEL, np.int64) if labels is None else np.asarray(labels, np.int64)
    buffer = io.BytesIO()
    np.savez_compressed(buffer, kind=np.array(REFERENCE_KIND), format_version=np.int64(FORMAT_VERSION),
                        images=images, labels=labels, logits=logits)
    atomic_write_bytes(path, buffer.getvalue())


def reference_entry(manifest: dict[str, Any]) -> dict[str, Any] | None:
    """The manifest's reference artifact, or None (bundles exported before it existed have none)."""
    return next((a for a in manifest.get("artifacts", []) if a.get("kind") == REFERENCE_KIND), None)


def read_reference(bundle: str | os.PathLike, manifest: dict[str, Any]) -> ReferenceSet | None:
    """The bundle's reference set, checked against the manifest's input and output; None when it has none.

    ValueError naming the file when it is not a reference file of this bundle's shapes. The caller verifies its
    sha256 (``load_manifest(verify=True)``) like any artifact's.
    """
    entry = reference_entry(manifest)
    if entry is None:
        return None
    path = Path(bundle) / str(entry.get("path") or REFERENCE_FILE)
    try:
        with np.load(path, allow_pickle=False) as npz:
            if "kind" not in npz.files or str(npz["kind"]) != REFERENCE_KIND:
                raise ValueError("no 'kind' marker 'reference'")
            images, labels, logits = (np.asarray(npz[k]) for k in ("images", "labels", "logits"))
    except (OSError, KeyError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable reference file ({exc})") from exc
    shape = list((manifest.get("input") or {}).get("shape") or [])[1:]
    classes = len(manifest.get("classes") or []) or logits.shape[-1]
    if images.dtype != np.float32 or images.ndim != 4 or (shape and list(images.shape[1:]) != shape) \
            or logits.shape != (len(images), classes) or labels.shape != (len(images),):
        raise ValueError(f"{path}: images {images.dtype} {images.shape}, logits {logits.shape}, labels "
                         f"{labels.shape} do not match the bundle's input (N, {', '.join(map(str, shape))}) and "
                         f"{classes} classes")
    return ReferenceSet(images, labels.astype(np.int64), logits.astype(np.float32),
                        str(entry.get("inputs") or f"{len(images)} check images"))
