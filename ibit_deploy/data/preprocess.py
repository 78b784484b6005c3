"""Eval preprocessing of raw pixels, as a bundle's manifest records it: resize to the model's image size (bilinear,
antialiased) when it differs, scale to [0, 1], normalise with the dataset's mean/std, NCHW float32.

numpy only where no resize is needed: the scale and the normalisation are torchvision's arithmetic (``ToDtype``
with ``scale=True`` multiplies by ``1/255`` in float32, ``Normalize`` subtracts and divides in float32), so the
device side (no torch) gets the training's exact values. A resize is torchvision's antialiased bilinear
(:func:`ibit_deploy.data.transforms.eval_transform`) and needs torch; without it, images of another size are refused
with the sizes to use.
"""

from __future__ import annotations

import numpy as np


def preprocess_images(images: np.ndarray, image_size: tuple[int, int], mean: tuple[float, ...],
                      std: tuple[float, ...]) -> np.ndarray:
    """Eval-preprocess a uint8 (N, H, W, C) array into float32 (N, C, H, W), exactly as the eval transform does."""
    if images.ndim != 4 or images.dtype != np.uint8:
        raise ValueError(f"expected uint8 images (N, H, W, C), got {images.dtype} {images.shape}")
    if images.shape[-1] != len(mean):
        raise ValueError(f"images have {images.shape[-1]} channels but mean/std have {len(mean)}")
    size = tuple(int(s) for s in image_size)
    if len(images) == 0:
        return np.zeros((0, images.shape[-1], *size), np.float32)
    if tuple(images.shape[1:3]) == size:  # torchvision's Resize returns such an image unchanged
        return normalize_pixels(images, mean, std)
    try:
        import torch

        from .transforms import eval_transform
    except ImportError as exc:
        raise ValueError(f"images of {images.shape[1]}x{images.shape[2]} pixels need resizing to the model's "
                         f"{size[0]}x{size[1]}, which needs torch and torchvision (the antialiased bilinear resize "
                         f"training used), not importable here ({exc}); give {size[0]}x{size[1]} images") from exc
    tf = eval_transform(size, mean, std)
    return torch.stack([tf(im) for im in images]).numpy().astype(np.float32)


def normalize_pixels(images: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """uint8 (N, H, W, C) -> float32 (N, C, H, W): ``x / 255``, then ``(x - mean) / std`` per channel, in float32."""
    scaled = images.transpose(0, 3, 1, 2).astype(np.float32) * np.float32(1.0 / 255)
    shape = (1, len(mean), 1, 1)
    return ((scaled - np.asarray(mean, np.float32).reshape(shape)) / np.asarray(std, np.float32).reshape(shape))
