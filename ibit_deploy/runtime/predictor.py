"""``Predictor``: images in, class names and probabilities out, preprocessed exactly as the bundle's manifest says.

    with Predictor("bundle/") as p:
        result = p.predict([Image.open("digit.png")])
        print(result.labels[0], result.probabilities[0].max())

Accepts PIL images, or uint8 arrays: one image (H, W) or (H, W, C), a batch (N, H, W, C), or a list of images of
any sizes. Images are resized, scaled and normalised by :func:`ibit_deploy.data.preprocess_images`, the transform
training and evaluation used, with the image size, mean and std recorded in the manifest.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np

from ..devicekit.bundle import open_bundle
from .base import Runner
from .load import load


@dataclass
class Predictions:
    """Outputs for N images: top-1 ``labels`` and ``indices``, softmax ``probabilities`` (N, C), raw ``logits``."""

    labels: list[str]
    indices: np.ndarray
    probabilities: np.ndarray
    logits: np.ndarray
    classes: list[str]

    def top_k(self, k: int = 5) -> list[list[tuple[str, float]]]:
        """The ``k`` most probable (class name, probability) pairs of every image, most probable first."""
        order = np.argsort(-self.probabilities, axis=1, kind="stable")[:, :k]
        return [[(self.classes[j], float(self.probabilities[i, j])) for j in row] for i, row in enumerate(order)]


class Predictor:
    """A bundle ready to classify images; ``backend``/``precision``/``allow_failed`` as in
    :func:`ibit_deploy.runtime.load.load` (an artifact that failed its gate is used only when asked for)."""

    def __init__(self, bundle: str | os.PathLike, backend: str = "auto", precision: str = "fp32", *,
                 threads: int = 0, verify: bool = True, allow_failed: bool = False) -> None:
        self.bundle = open_bundle(bundle, verify=verify)
        self.manifest = self.bundle.manifest
        spec = self.bundle.input
        self.image_size, self.mean, self.std = spec.image_size, spec.mean, spec.std
        self.channels = len(self.mean)
        self.classes = list(self.bundle.classes)
        self.runner: Runner = load(bundle, backend, precision, threads=threads, verify=False,
                                   allow_failed=allow_failed)

    def preprocess(self, images: Any) -> np.ndarray:
        """float32 NCHW batch for the runner, from PIL images or uint8 arrays (see the module docstring)."""
        from ..data import preprocess_images

        arrays = [self._as_hwc(image, i) for i, image in enumerate(_as_list(images))]
        if not arrays:
            raise ValueError("no images given")
        if len({a.shape for a in arrays}) == 1:
            return preprocess_images(np.stack(arrays), self.image_size, self.mean, self.std)
        # Different sizes: each is resized on its own, as the eval transform does image by image.
        return np.concatenate([preprocess_images(a[None], self.image_size, self.mean, self.std) for a in arrays])

    def predict_logits(self, images: Any) -> np.ndarray:
        """Logits (N, C) float32, in chunks the artifact accepts (a short batch padded to its minimum)."""
        return self.runner.infer_all(self.preprocess(images))

    def predict(self, images: Any) -> Predictions:
        """Class names and probabilities for ``images``."""
        return self.postprocess(self.predict_logits(images))

    def decode(self, source: str | os.PathLike | BinaryIO, name: str | None = None) -> np.ndarray:
        """One encoded image (a path or a binary file object: PNG, JPEG, ...) as uint8 (H, W, C) with the bundle's
        channels: the dataset reader's decoding and checks (:func:`ibit_deploy.data.sources.read_image`), then the
        colour conversion :meth:`preprocess` applies to a PIL image."""
        from ..data.sources import read_image

        return self._as_hwc(read_image(source, name), 0)

    def postprocess(self, logits: np.ndarray) -> Predictions:
        """Softmax probabilities, top-1 indices and class names from logits (N, C)."""
        shifted = logits.astype(np.float64) - logits.max(axis=1, keepdims=True)
        probs = np.exp(shifted)
        probs /= probs.sum(axis=1, keepdims=True)
        indices = logits.argmax(axis=1)
        classes = self.classes or [str(i) for i in range(logits.shape[1])]
        return Predictions([classes[i] for i in indices], indices, probs.astype(np.float32), logits, classes)

    def close(self) -> None:
        self.runner.close()

    def __enter__(self) -> Predictor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _as_hwc(self, image: Any, index: int) -> np.ndarray:
        """One image as uint8 (H, W, C) with the bundle's channel count."""
        if hasattr(image, "convert") and hasattr(image, "mode"):  # a PIL image: let Pillow convert the colours
            image = np.asarray(image.convert("L" if self.channels == 1 else "RGB"))
        if not isinstance(image, np.ndarray):
            raise TypeError(f"image {index}: expected a PIL image or a uint8 numpy array, got {type(image).__name__}")
        if image.dtype != np.uint8:
            raise TypeError(f"image {index}: expected uint8 pixels (0-255), got {image.dtype}; pass preprocessed "
                            f"float32 NCHW batches to runner.infer() instead")
        if image.ndim == 2:
            image = image[:, :, None]
        if image.ndim != 3 or image.shape[2] != self.channels:
            raise ValueError(f"image {index}: expected (H, W) or (H, W, {self.channels}) uint8 for this bundle "
                             f"({self.bundle.input.channel_order} input), got shape {image.shape}")
        return image


def _as_list(images: Any) -> list[Any]:
    if isinstance(images, np.ndarray):
        return list(images) if images.ndim == 4 else [images]
    if isinstance(images, (list, tuple)):
        return list(images)
    return [images]
