"""Calibration images: a stratified, seeded selection of real images, preprocessed exactly as the manifest says.

The selection is made *within* the training split of the dataset's own train/val split (``split_seed`` and
``val_fraction`` are the manifest's ``data.seed`` / ``data.val_fraction``), so calibration never sees the held-out
images the accuracy gate measures on; ``seed`` only chooses which training images.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# Fewest images each method is allowed to calibrate on. Histogram methods (entropy, percentile) estimate tails of
# the activation distribution; with a handful of images those tails are noise.
MIN_SAMPLES = {"minmax": 8, "entropy": 32, "percentile": 32}


def input_geometry(input_block: dict[str, Any]) -> tuple[tuple[int, int], tuple[float, ...], tuple[float, ...]]:
    """(image_size, mean, std) from a manifest ``input`` block, checked."""
    missing = [k for k in ("image_size", "mean", "std") if k not in input_block]
    if missing:
        raise ValueError(f"input block lacks {missing}; expected the manifest's 'input' with image_size, mean, std")
    size = input_block["image_size"]
    height, width = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    mean, std = tuple(float(v) for v in input_block["mean"]), tuple(float(v) for v in input_block["std"])
    if len(mean) != len(std) or not mean or min(std) <= 0:
        raise ValueError(f"input block: mean {mean} and std {std} must have one positive std per channel")
    return (height, width), mean, std


def build_calibration_set(spec: str, input_block: dict[str, Any], count: int, seed: int = 0, split: str = "train",
                          val_fraction: float = 0.2, *, split_seed: int = 0,
                          return_labels: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """``count`` images of ``split`` (stratified over classes, chosen by ``seed``) as float32 NCHW.

    Args:
        spec: dataset spec (``mnist5k``, ``cifar10:DIR``, ...).
        input_block: the manifest's ``input`` block (image_size, mean, std): preprocessing is exactly that.
        count: number of images (the whole split when it has fewer).
        seed: seed of the selection.
        split: ``train`` (default) or ``test``; ``val`` is refused by callers that gate on val.
        val_fraction, split_seed: the dataset's train/val split, as the manifest's ``data`` block records it.
        return_labels: also return the int64 labels (for the class histogram the calibration file records).
    """
    from ..data import preprocess_images, split_arrays, stratified_subset

    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise ValueError(f"calibration count must be a positive integer, got {count!r}")
    size, mean, std = input_geometry(input_block)
    images, labels, _ = split_arrays(spec, split, val_fraction, split_seed)
    if count < len(labels):
        keep = stratified_subset(np.arange(len(labels)), labels, count / len(labels), seed)
        rng = np.random.default_rng(seed)
        # Rounding per class can miss the count either way: trim or top up with a seeded few, so the set has
        # exactly ``count`` images and every class stays present.
        if len(keep) > count:
            keep = rng.permutation(keep)[:count]
        elif len(keep) < count:
            rest = np.setdiff1d(np.arange(len(labels)), keep)
            keep = np.concatenate([keep, rng.permutation(rest)[: count - len(keep)]])
        keep = np.sort(keep)
        images, labels = images[keep], labels[keep]
    data = preprocess_images(images, size, mean, std)
    return (data, labels) if return_labels else data


def validate_calibration(images: Any, chw: Sequence[int] | None = None, method: str | None = None,
                         source: str = "calibration data") -> np.ndarray:
    """Check calibration images and return them as contiguous float32.

    Raises ValueError naming ``source`` for: not an array, empty, wrong rank, wrong (C, H, W) against ``chw``,
    NaN/inf, or fewer images than ``method`` needs (:data:`MIN_SAMPLES`).
    """
    if not isinstance(images, np.ndarray):
        raise TypeError(f"{source}: expected a numpy array, got {type(images).__name__}")
    if images.ndim != 4:
        raise ValueError(f"{source}: expected a 4-D float array (N, C, H, W), got shape {images.shape}")
    if images.shape[0] == 0:
        raise ValueError(f"{source}: no images (shape {images.shape}); calibration needs real images")
    if not np.issubdtype(images.dtype, np.floating):
        raise ValueError(f"{source}: expected preprocessed float images, got dtype {images.dtype} (raw uint8 pixels "
                         f"must go through the manifest's preprocessing first)")
    if chw is not None and tuple(images.shape[1:]) != tuple(int(v) for v in chw):
        raise ValueError(f"{source}: images are {tuple(images.shape[1:])} (C, H, W) but the model expects "
                         f"{tuple(int(v) for v in chw)}")
    bad = ~np.isfinite(images)
    if bad.any():
        first = int(np.argwhere(bad.reshape(len(images), -1).any(axis=1))[0][0])
        raise ValueError(f"{source}: {int(bad.sum())} NaN/inf values (first in image {first}); refusing to "
                         f"calibrate on them")
    if method is not None:
        if method not in MIN_SAMPLES:
            raise ValueError(f"unknown calibration method {method!r}; expected one of {sorted(MIN_SAMPLES)}")
        if len(images) < MIN_SAMPLES[method]:
            raise ValueError(f"{source}: {len(images)} images are too few for {method} calibration (needs at least "
                             f"{MIN_SAMPLES[method]}; hundreds are recommended)")
    return np.ascontiguousarray(images, dtype=np.float32)
