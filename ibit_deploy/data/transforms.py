"""Preprocessing: one eval transform shared by training, calibration and the harness, and the train augmentations
(batches of raw pixels go through :func:`ibit_deploy.data.preprocess.preprocess_images`).

Eval preprocessing is exactly what a bundle's manifest records: resize to the model's image size (bilinear,
antialiased) when it differs, scale to [0, 1], normalise with the dataset's mean/std, NCHW float32.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.transforms import v2


@dataclass
class AugmentConfig:
    """Train-time augmentation. Mixup/cutmix act on batches and live in the trainer (timm's Mixup)."""

    randaugment_magnitude: int = 9  # 0 disables RandAugment
    randaugment_ops: int = 2
    random_erasing: float = 0.25
    crop_padding: int = -1  # -1: image_size // 8
    hflip: bool = False  # off by default: digits and text are not mirror-symmetric
    mixup: float = 0.0
    cutmix: float = 0.0


def _to_tensor_uint8(image: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1)  # HWC -> CHW, uint8


def eval_transform(image_size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...]) -> v2.Compose:
    """uint8 HWC array -> normalised float32 CHW tensor at ``image_size``."""
    return v2.Compose([
        _to_tensor_uint8,
        v2.Resize(list(image_size), antialias=True),
        v2.ToDtype(torch.float32, scale=True),
        v2.Normalize(list(mean), list(std)),
    ])


def train_transform(image_size: tuple[int, int], mean: tuple[float, ...], std: tuple[float, ...],
                    config: AugmentConfig | None = None) -> v2.Compose:
    """Random crop with padding, optional flip, RandAugment and random erasing (the DeiT recipe, sized for small data)."""
    config = config or AugmentConfig()
    pad = config.crop_padding if config.crop_padding >= 0 else max(1, min(image_size) // 8)
    steps: list = [_to_tensor_uint8, v2.Resize(list(image_size), antialias=True)]
    if pad:
        steps.append(v2.RandomCrop(list(image_size), padding=pad))
    if config.hflip:
        steps.append(v2.RandomHorizontalFlip())
    if config.randaugment_magnitude > 0:
        steps.append(v2.RandAugment(num_ops=config.randaugment_ops, magnitude=config.randaugment_magnitude))
    steps += [v2.ToDtype(torch.float32, scale=True), v2.Normalize(list(mean), list(std))]
    if config.random_erasing > 0:
        steps.append(v2.RandomErasing(p=config.random_erasing, value=0))
    return v2.Compose(steps)
