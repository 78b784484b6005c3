"""Datasets from a spec string, with a deterministic, seeded, stratified train/val split and subset option.

    spec := "mnist5k" | "cifar10:DIR" | "imagefolder:DIR" | "synthetic" | "synthetic:N"

Every item is ``(image, label, index)``: ``index`` is the sample's position within its split, the key under which
LIB-KD stores teacher logits.
"""

from __future__ import annotations

import functools
import hashlib
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from . import sources
from .preprocess import preprocess_images
from .transforms import AugmentConfig, eval_transform, train_transform

SPLITS = ("train", "val", "test")
DEFAULT_SPEC = "mnist5k"


def parse_spec(spec: str) -> tuple[str, str | None]:
    """Split ``spec`` into (kind, argument), checking the kind and that a folder is given where one is needed."""
    kind, _, arg = spec.partition(":")
    kind = kind.strip().lower()
    if kind == "mnist5k" and not arg:
        return kind, None
    if kind == "synthetic":
        if arg and not arg.isdigit():
            raise ValueError(f"dataset spec {spec!r}: synthetic takes an image count, e.g. synthetic:512")
        return kind, arg or None
    if kind in ("cifar10", "imagefolder"):
        if not arg:
            raise ValueError(f"dataset spec {spec!r}: {kind} needs a folder, e.g. {kind}:/data/{kind}")
        return kind, arg
    raise ValueError(f"unknown dataset spec {spec!r}; expected one of: mnist5k, cifar10:DIR, imagefolder:DIR, "
                     f"synthetic[:N]")


@functools.lru_cache(maxsize=4)
def load_source(spec: str) -> sources.RawImages:
    """Load the raw images behind ``spec`` (cached: several splits of one source share one load)."""
    kind, arg = parse_spec(spec)
    if kind == "mnist5k":
        return sources.load_mnist5k()
    if kind == "synthetic":
        return sources.load_synthetic(int(arg) if arg else 512)
    if kind == "cifar10":
        return sources.load_cifar10(arg)
    return sources.load_imagefolder(arg)


def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): each class contributes ``round(count * val_fraction)`` samples to val, chosen by ``seed``."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    rng = np.random.default_rng(seed)
    train, val = [], []
    for k in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == k))
        n_val = int(round(len(idx) * val_fraction))
        if val_fraction > 0 and len(idx) > 1:
            n_val = min(max(n_val, 1), len(idx) - 1)
        val.append(idx[:n_val])
        train.append(idx[n_val:])
    return np.sort(np.concatenate(train)), np.sort(np.concatenate(val))


def stratified_subset(indices: np.ndarray, labels: np.ndarray, fraction: float, seed: int) -> np.ndarray:
    """A stratified ``fraction`` of ``indices`` (at least one sample per class present)."""
    if not 0.0 < fraction <= 1.0:
        raise ValueError(f"subset fraction must be in (0, 1], got {fraction}")
    if fraction == 1.0:
        return indices
    rng = np.random.default_rng(seed + 7919)  # independent of the split's stream
    keep = []
    for k in np.unique(labels[indices]):
        idx = rng.permutation(indices[labels[indices] == k])
        keep.append(idx[: max(1, int(round(len(idx) * fraction)))])
    return np.sort(np.concatenate(keep))


@dataclass(frozen=True)
class DataInfo:
    """What a checkpoint and a manifest record about the data."""

    spec: str
    classes: tuple[str, ...]
    channels: int
    image_size: tuple[int, int]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    val_fraction: float
    seed: int
    subset: float

    def to_dict(self) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}


class ImageDataset(Dataset):
    """uint8 images of one split with a transform; items are ``(image, label, index)``."""

    def __init__(self, images: np.ndarray, labels: np.ndarray, transform, split: str, fingerprint: str) -> None:
        self.images = images
        self.labels = labels
        self.transform = transform
        self.split = split
        self.fingerprint = fingerprint

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        return self.transform(self.images[index]), int(self.labels[index]), index


def split_arrays(spec: str, split: str, val_fraction: float = 0.2, seed: int = 0,
                 subset: float = 1.0) -> tuple[np.ndarray, np.ndarray, str]:
    """uint8 images, labels and a fingerprint of one split of ``spec``.

    The fingerprint hashes the source, the split parameters, the chosen indices and the pixels, so anything keyed
    by sample index (stored teacher logits) can refuse to be used with another dataset or split.
    """
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    raw = load_source(spec)
    if split == "test":
        if raw.test_images is None:
            raise ValueError(f"dataset {spec!r} has no separate test split; use 'val'")
        images, labels = raw.test_images, raw.test_labels
        idx = np.arange(len(labels))
    else:
        train_idx, val_idx = stratified_split(raw.labels, val_fraction, seed)
        if split == "train":
            idx = stratified_subset(train_idx, raw.labels, subset, seed)
        else:
            idx = val_idx
        images, labels = raw.images[idx], raw.labels[idx]
    if len(labels) == 0:
        raise ValueError(f"dataset {spec!r} split {split!r} is empty (val_fraction={val_fraction}, subset={subset})")
    digest = hashlib.sha256()
    digest.update(f"{raw.name}|{split}|{val_fraction}|{seed}|{subset}".encode())
    digest.update(np.asarray(idx, np.int64).tobytes())
    digest.update(np.ascontiguousarray(labels).tobytes())
    digest.update(hashlib.sha256(np.ascontiguousarray(images).tobytes()).digest())
    return images, labels, digest.hexdigest()


def data_info(spec: str, image_size: tuple[int, int] | None = None, val_fraction: float = 0.2, seed: int = 0,
              subset: float = 1.0) -> DataInfo:
    """The recorded description of ``spec``: classes, channels, normalisation and the split parameters."""
    raw = load_source(spec)
    native = tuple(raw.images.shape[1:3])
    return DataInfo(spec, tuple(raw.classes), int(raw.images.shape[-1]), tuple(image_size or native),
                    tuple(raw.mean), tuple(raw.std), val_fraction, seed, subset)


def build_dataset(spec: str, split: str, image_size: tuple[int, int] | None = None, *, val_fraction: float = 0.2,
                  seed: int = 0, subset: float = 1.0, augment: AugmentConfig | None = None) -> tuple[ImageDataset, DataInfo]:
    """One split of ``spec`` as a torch Dataset (train augmentation when ``augment`` is given), plus its DataInfo."""
    info = data_info(spec, image_size, val_fraction, seed, subset)
    images, labels, fingerprint = split_arrays(spec, split, val_fraction, seed, subset if split == "train" else 1.0)
    if augment is not None:
        tf = train_transform(info.image_size, info.mean, info.std, augment)
    else:
        tf = eval_transform(info.image_size, info.mean, info.std)
    return ImageDataset(images, labels, tf, split, fingerprint), info


def eval_arrays(spec: str, split: str, image_size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...],
                *, limit: int | None = None, val_fraction: float = 0.2, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Preprocessed float32 NCHW images and int64 labels of a split, for calibration, accuracy gates and the harness.

    ``limit`` keeps a stratified, seeded selection of that many samples.
    """
    images, labels, _ = split_arrays(spec, split, val_fraction, seed)
    if limit is not None and limit < len(labels):
        if limit < 1:
            raise ValueError(f"limit must be >= 1, got {limit}")
        keep = stratified_subset(np.arange(len(labels)), labels, limit / len(labels), seed)[:limit]
        images, labels = images[keep], labels[keep]
    return preprocess_images(images, tuple(image_size), tuple(mean), tuple(std)), labels
