"""What a checkpoint's config.json must agree on with the model its weights build, and with itself, checked before
anything exports it.

``load_checkpoint`` already checks weight names, shapes and finiteness (and ``read_checkpoint_config`` the format
version); this adds the fields the bundle copies from the config: class names (one per output, no name twice, the
same in ``classes`` and ``data.classes``), the input channels, the image size a fixed-size model takes, and the
normalisation (one finite value per channel, every std > 0, in the ``input`` and the ``data`` block). A mismatch
there would export without error and fail later, far from its cause (an IndexError in the predictor, an assertion
inside the model, a manifest that contradicts itself).
"""

from __future__ import annotations

import math
import os
from collections import Counter
from typing import Any

from torch import nn

from .checkpoint import CONFIG_FILE


def model_input_channels(model: nn.Module) -> int | None:
    """Input channels of ``model``: its patch embedding's, else its first convolution's; None if neither exists."""
    proj = getattr(getattr(model, "patch_embed", None), "proj", None)
    if isinstance(proj, nn.Conv2d):
        return proj.in_channels
    first = next((m for m in model.modules() if isinstance(m, nn.Conv2d)), None)
    return first.in_channels if first is not None else None


def model_input_size(model: nn.Module) -> tuple[int, int] | None:
    """The (height, width) a fixed-size model takes (a ViT's patch grid and position embeddings), or None if any."""
    size = getattr(getattr(model, "patch_embed", None), "img_size", None)
    if size is None or getattr(model, "dynamic_img_size", False):
        return None
    return (int(size), int(size)) if isinstance(size, int) else (int(size[0]), int(size[1]))


def model_output_width(model: nn.Module) -> int:
    """Number of logits ``model`` produces (timm's ``num_classes``, else the classifier's out_features)."""
    width = getattr(model, "num_classes", None)
    if isinstance(width, int) and width > 0:
        return width
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    if isinstance(head, nn.Linear):
        return head.out_features
    raise ValueError(f"cannot tell how many classes {type(model).__name__} predicts")


def _numbers(value: Any, field: str, where: str) -> list[float]:
    if not isinstance(value, (list, tuple)) or not value or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
        raise ValueError(f"{where}: {field} must be a non-empty list of numbers, got {value!r}")
    values = [float(v) for v in value]
    if not all(math.isfinite(v) for v in values):
        raise ValueError(f"{where}: {field} must be finite, got {value!r}")
    return values


def _class_names(value: Any, field: str, where: str) -> list[str] | None:
    if value is None:
        return None
    if not isinstance(value, list) or not all(isinstance(c, str) for c in value):
        raise ValueError(f"{where}: {field} must be a list of class-name strings, got {value!r}")
    twice = sorted(name for name, count in Counter(value).items() if count > 1)
    if twice:
        raise ValueError(f"{where}: {field} names {twice} more than once; each output needs its own class name")
    return value


def _size(value: Any, field: str, where: str) -> tuple[int, int]:
    pair = [value, value] if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(pair, (list, tuple)) or len(pair) != 2
            or not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in pair)):
        raise ValueError(f"{where}: {field} must be [height, width] in pixels, got {value!r}")
    return int(pair[0]), int(pair[1])


def check_checkpoint_contract(model: nn.Module, config: dict[str, Any], checkpoint: str | os.PathLike) -> None:
    """Raise ValueError naming the file and field if ``config`` disagrees with ``model`` (the weights it was loaded
    with) or with itself.

    Checked: one class name per output, no name twice, and ``data.classes`` (when recorded) the same list as
    ``classes``; ``input.in_chans`` (and ``data.channels``) equal the model's input channels; ``input.image_size``
    (and ``data.image_size``) equal the size a fixed-size model takes; ``mean``/``std`` of the ``input`` and the
    ``data`` block have one finite value per channel and every std is > 0. (Weight dtypes are checked when they are
    loaded: :func:`ibit_deploy.checkpoint.load_state_dict_checked`.)
    """
    where = f"{os.fspath(checkpoint)}/{CONFIG_FILE}"
    width = model_output_width(model)
    inp = config.get("input") or {}
    data = config.get("data") or {}
    classes = _class_names(config.get("classes"), "classes", where)
    if classes is not None and len(classes) != width:
        raise ValueError(f"{where}: {len(classes)} class names for a model with {width} outputs; the config and "
                         f"the weights must describe the same classifier (one name per output)")
    data_classes = _class_names(data.get("classes"), "data.classes", where)
    if classes is not None and data_classes is not None and data_classes != classes:
        detail = (f"{len(data_classes)} names beside {len(classes)} in classes" if len(data_classes) != len(classes)
                  else "the same number of names as classes, but not the same names in the same order")
        raise ValueError(f"{where}: data.classes has {detail}; the config contradicts itself")
    channels = model_input_channels(model)
    for field, value in (("input.in_chans", inp.get("in_chans")), ("data.channels", data.get("channels"))):
        if value is not None and channels is not None and value != channels:
            raise ValueError(f"{where}: {field} is {value!r}, but the model's weights take {channels}-channel images")
    size = model_input_size(model)
    for field, value in (("input.image_size", inp.get("image_size")), ("data.image_size", data.get("image_size"))):
        if value is None:
            continue
        found = _size(value, field, where)
        if size is not None and found != size:
            raise ValueError(f"{where}: {field} is {found[0]}x{found[1]}, but the model takes {size[0]}x{size[1]} "
                             f"images (its patch grid and position embeddings are fixed at that size)")
    chans = channels if channels is not None else inp.get("in_chans")
    for block, name in ((inp, "input"), (data, "data")):
        for field in ("mean", "std"):
            value = block.get(field)
            if value is None:
                continue
            values = _numbers(value, f"{name}.{field}", where)
            if chans is not None and len(values) != chans:
                raise ValueError(f"{where}: {name}.{field} has {len(values)} values, the model takes {chans}-channel "
                                 f"images (one value per channel)")
            if field == "std" and min(values) <= 0:
                raise ValueError(f"{where}: {name}.std must be > 0 for every channel (it divides the pixels), got "
                                 f"{value!r}")
