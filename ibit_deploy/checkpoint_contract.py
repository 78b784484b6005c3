"""What a checkpoint's config.json must agree on with the model its weights build, checked before anything exports it.

``load_checkpoint`` already checks weight names, shapes and finiteness; this adds the fields the bundle copies from
the config: class names (one per output), the input channels, and the normalisation (one positive std per channel).
A mismatch there exports without error today and fails later, far from its cause (an IndexError in the predictor, a
parity check that fell back to random inputs).
"""

from __future__ import annotations

import math
import os
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


def check_checkpoint_contract(model: nn.Module, config: dict[str, Any], checkpoint: str | os.PathLike) -> None:
    """Raise ValueError naming the field if ``config`` disagrees with ``model`` (the weights it was loaded with).

    Checked: one class name per output; ``input.in_chans`` (and ``data.channels``) equal the model's input channels;
    ``input.mean``/``input.std`` have one finite value per channel and every std is > 0. (Weight
    dtypes are checked when they are loaded: :func:`ibit_deploy.checkpoint.load_state_dict_checked`.)
    """
    where = f"{os.fspath(checkpoint)}/{CONFIG_FILE}"
    width = model_output_width(model)
    classes = config.get("classes")
    if classes is not None:
        if not isinstance(classes, list) or not all(isinstance(c, str) for c in classes):
            raise ValueError(f"{where}: classes must be a list of class-name strings, got {classes!r}")
        if len(classes) != width:
            raise ValueError(f"{where}: {len(classes)} class names for a model with {width} outputs; the config and "
                             f"the weights must describe the same classifier (one name per output)")
    channels = model_input_channels(model)
    inp = config.get("input") or {}
    data = config.get("data") or {}
    for field, value in (("input.in_chans", inp.get("in_chans")), ("data.channels", data.get("channels"))):
        if value is not None and channels is not None and value != channels:
            raise ValueError(f"{where}: {field} is {value!r}, but the model's weights take {channels}-channel images")
    chans = channels if channels is not None else inp.get("in_chans")
    for field in ("mean", "std"):
        value = inp.get(field, data.get(field))
        if value is None:
            continue
        values = _numbers(value, f"input.{field}", where)
        if chans is not None and len(values) != chans:
            raise ValueError(f"{where}: input.{field} has {len(values)} values, the model takes {chans}-channel images "
                             f"(one value per channel)")
        if field == "std" and min(values) <= 0:
            raise ValueError(f"{where}: input.std must be > 0 for every channel (it divides the pixels), got {value!r}")
