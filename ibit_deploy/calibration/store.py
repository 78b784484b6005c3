"""``calib.npz``: calibration images plus the metadata needed to rebuild the same set elsewhere (e.g. on a Jetson).

One file, read with ``allow_pickle=False``: ``images`` (float32 N, C, H, W), ``labels`` (int64 N) and ``meta``, a JSON
string: format, dataset spec, split and seeds, count, shape, the preprocessing (image_size, mean, std, layout) and the
sha256 of the image array, checked on load so a file altered or truncated in transit is refused.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from ..devicekit.fileio import atomic_write_bytes, parse_json_text
from ..outputs import CALIBRATION, npz_marker
from .dataset import validate_calibration

CALIBRATION_FORMAT = 1


def array_sha256(images: np.ndarray) -> str:
    """sha256 over the dtype, shape and bytes of an array (C order)."""
    digest = hashlib.sha256()
    digest.update(f"{images.dtype.str}|{images.shape}".encode())
    digest.update(np.ascontiguousarray(images).tobytes())
    return digest.hexdigest()


def save_calibration(path: str | os.PathLike, images: np.ndarray, meta: dict[str, Any],
                     labels: np.ndarray | None = None, source: str | None = None) -> dict[str, Any]:
    """Write ``images`` (validated: float32 NCHW, finite, non-empty) and ``meta`` to ``path`` atomically.

    The file carries the write policy's kind marker (:func:`ibit_deploy.outputs.npz_marker`) with ``source``, what
    the set was made for (a bundle's path or a dataset spec). Returns the metadata as stored (``meta`` plus format, count, shape, dtype and images_sha256).
    """
    images = validate_calibration(images, source=f"calibration images for {path}")
    stored = {**meta, "format": CALIBRATION_FORMAT, "count": int(len(images)), "shape": list(images.shape),
              "dtype": "float32", "layout": "NCHW", "images_sha256": array_sha256(images)}
    arrays: dict[str, np.ndarray] = {"images": images, "meta": np.array(json.dumps(stored, sort_keys=True)),
                                     **npz_marker(CALIBRATION, source)}
    if labels is not None:
        labels = np.asarray(labels, dtype=np.int64)
        if labels.shape != (len(images),):
            raise ValueError(f"labels must have shape ({len(images)},), got {labels.shape}")
        arrays["labels"] = labels
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    atomic_write_bytes(path, buffer.getvalue())
    return stored


def load_calibration(path: str | os.PathLike, chw: tuple[int, int, int] | None = None,
                     method: str | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Read ``path`` (no pickle) and verify it: images match their recorded sha256, are finite, match ``chw`` and are
    enough for ``method``. Returns (images float32 NCHW, meta)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"calibration file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {name: npz[name] for name in npz.files if name in ("images", "meta")}
            files = sorted(npz.files)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, AttributeError) as exc:
        # np.load falls back to unpickling for non-.npz bytes and refuses (allow_pickle=False): a ValueError
        raise ValueError(f"{path} is not a calibration .npz written by save_calibration: {exc}") from exc
    if set(arrays) != {"images", "meta"}:
        raise ValueError(f"{path}: expected arrays 'images' and 'meta', found {files}")
    images = arrays["images"]
    meta = parse_json_text(str(arrays["meta"]), f"{path} ('meta')", "calibration metadata")
    if not isinstance(meta, dict) or meta.get("format") != CALIBRATION_FORMAT:
        raise ValueError(f"{path}: unsupported calibration format {meta.get('format') if isinstance(meta, dict) else meta!r}"
                         f" (expected {CALIBRATION_FORMAT})")
    if images.dtype != np.float32:
        raise ValueError(f"{path}: images must be float32, found {images.dtype}")
    digest = array_sha256(images)
    if digest != meta.get("images_sha256"):
        raise ValueError(f"{path}: images do not match the sha256 recorded in the file ({digest[:12]}... vs "
                         f"{str(meta.get('images_sha256'))[:12]}...); the file was altered or truncated")
    images = validate_calibration(images, chw, method, source=str(path))
    return images, meta
