"""Does a dataset fit a trained model? The one check every command runs before it feeds ``--data`` to a model.

A model trained on 10 classes scores a 3-class folder without complaint (its labels 0..2 are simply a subset), a
1-channel model cannot take RGB images, and a model trained on 28x28 digits measures nothing useful on 224x224
photos resized down. :func:`check_data_fits` refuses all three with a ValueError naming the data, the value found
and what the model expects. Export, evaluation, calibration against a bundle, the benchmark harness and
quantization call it; the model side comes from a checkpoint's ``config.json`` or a bundle's ``manifest.json``
(:class:`ModelInput`), which are checked against the weights when they are written or loaded.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from .sources import RawImages


@dataclass(frozen=True)
class ModelInput:
    """What a trained model takes and predicts, as its checkpoint config or bundle manifest records it.

    Attributes:
        where: the model, for messages (``checkpoint runs/a`` or ``bundle export/a``).
        classes: its class names, one per output, in output order (empty when not recorded).
        channels: input channels.
        image_size: input (height, width).
        trained_on: the dataset spec it was trained on, if recorded.
    """

    where: str
    classes: tuple[str, ...]
    channels: int
    image_size: tuple[int, int]
    trained_on: str | None = None

    @classmethod
    def from_config(cls, config: dict[str, Any], where: str) -> ModelInput:
        """From a checkpoint's ``config.json`` (``input.in_chans``, ``input.image_size``, ``classes``, ``data.spec``)."""
        inp, data = config.get("input") or {}, config.get("data") or {}
        channels = inp.get("in_chans", data.get("channels"))
        size = inp.get("image_size", data.get("image_size"))
        if channels is None or size is None:
            raise ValueError(f"{where}: the config records no input channels or image size (input.in_chans, "
                             f"input.image_size); was it written by ibit-train?")
        return cls(where, tuple(str(c) for c in config.get("classes") or ()), int(channels), _pair(size),
                   data.get("spec"))

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], where: str) -> ModelInput:
        """From a bundle's ``manifest.json`` (``input.shape`` [batch, C, H, W], ``classes``, ``data.spec``)."""
        inp = manifest.get("input") or {}
        shape = inp.get("shape") or []
        if len(shape) != 4:
            raise ValueError(f"{where}: manifest input.shape should be [batch, C, H, W], got {shape!r}")
        return cls(where, tuple(str(c) for c in manifest.get("classes") or ()), int(shape[1]),
                   (int(shape[2]), int(shape[3])), (manifest.get("data") or {}).get("spec"))


def _pair(size: Any) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


def _native_size(spec: str) -> tuple[int, int] | None:
    """Image size of ``spec``'s own images, or None if it cannot be read here."""
    from .datasets import load_source

    try:
        return tuple(load_source(spec).images.shape[1:3])
    except (OSError, ValueError):
        return None


def check_data_fits(spec: str, model: ModelInput) -> RawImages:
    """Load ``spec`` and raise ValueError unless its classes, channels and image size are the model's.

    Classes: the same number, and the same names in the same order (a label index means one class to both).
    Channels: equal. Image size: the data's images are the model's input size, or the size of the images the model
    was trained on (``model.trained_on``; a model trained on resized images takes data resized the same way).
    Returns the loaded images (cached: the caller's own ``load_source`` of ``spec`` costs nothing more).
    """
    from .datasets import load_source

    raw = load_source(spec)
    found = list(raw.classes)
    if model.classes:
        expected = list(model.classes)
        if len(found) != len(expected):
            raise ValueError(f"dataset {spec!r} has {len(found)} classes ({_names(found)}) but {model.where} "
                             f"predicts {len(expected)} ({_names(expected)}); give it data of the classes it was "
                             f"trained on")
        if found != expected:
            i = next(i for i, (a, b) in enumerate(zip(found, expected, strict=True)) if a != b)
            order = " (the same names in another order)" if sorted(found) == sorted(expected) else ""
            raise ValueError(f"dataset {spec!r} names its classes {_names(found)} but {model.where} was trained on "
                             f"{_names(expected)}{order}: label {i} is {found[i]!r} in the data and {expected[i]!r} "
                             f"to the model")
    channels = int(raw.images.shape[-1])
    if channels != model.channels:
        raise ValueError(f"dataset {spec!r} has {channels}-channel images but {model.where} takes {model.channels}-"
                         f"channel images")
    size = tuple(raw.images.shape[1:3])
    if size != model.image_size and spec != model.trained_on:
        trained = _native_size(model.trained_on) if model.trained_on else None
        if size != trained:
            also = f" (and was trained on {_size(trained)} images of {model.trained_on})" if trained else ""
            raise ValueError(f"dataset {spec!r} has {_size(size)} images but {model.where} takes "
                             f"{_size(model.image_size)}{also}; resize the images to the size the model was trained "
                             f"on")
    return raw


def _names(names: list[str], show: int = 10) -> str:
    return ", ".join(names[:show]) + (f", ... ({len(names)} in all)" if len(names) > show else "")
