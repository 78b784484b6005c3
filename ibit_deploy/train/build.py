"""Build a trainable model by name (IBiT variants, timm baselines, LIB-KD teachers) and load any trained checkpoint.

``ibit_deploy.checkpoint.load_checkpoint`` rebuilds models through ``create_model`` (IBiT and timm baselines);
teachers live in :mod:`ibit_deploy.models.teachers`, so training and evaluation dispatch here to cover both.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from torch import nn

from ..checkpoint import CONFIG_FILE, WEIGHTS_FILE, load_state_dict_checked, read_checkpoint_config
from ..data import DataInfo
from ..models import create_model, is_ibit
from ..models.teachers import create_teacher, is_teacher


def model_kwargs_for(name: str, user_kwargs: dict[str, Any], info: DataInfo, distilled: bool) -> dict[str, Any]:
    """Constructor kwargs for ``name``: input size, channels and class count from the data, then the user's overrides.

    The user may not contradict the data (a 3-channel model cannot read 1-channel images); ``distilled`` adds the
    distillation token to IBiT students.
    """
    classes, chans = len(info.classes), info.channels
    if is_teacher(name):
        kwargs = {"in_chans": chans, "num_classes": classes, **user_kwargs}
    else:
        kwargs = {"img_size": info.image_size[0] if info.image_size[0] == info.image_size[1] else list(info.image_size),
                  "in_chans": chans, "num_classes": classes, **user_kwargs}
    if kwargs["num_classes"] != classes:
        raise ValueError(f"model_kwargs.num_classes={kwargs['num_classes']} but dataset {info.spec!r} has {classes} "
                         f"classes")
    if kwargs["in_chans"] != chans:
        raise ValueError(f"model_kwargs.in_chans={kwargs['in_chans']} but dataset {info.spec!r} has {chans} channels")
    if distilled:
        if is_ibit(name):
            kwargs["distilled"] = True
        elif is_teacher(name):
            raise ValueError(f"{name} is a teacher: it has no distillation head; distill into an IBiT or "
                             f"deit_*_distilled_* student")
    return kwargs


def build_model(name: str, kwargs: dict[str, Any]) -> nn.Module:
    """Build ``name`` (IBiT variant, timm deit/vit/convit baseline, or teacher) with ``kwargs``; sets ``build_spec``.

    A constructor that rejects the kwargs (``depth: -1`` fails deep inside torch with a RuntimeError) raises
    ValueError naming the model and the kwargs: they are the user's input.
    """
    try:
        if is_teacher(name):
            return create_teacher(name, **kwargs)
        return create_model(name, **kwargs)
    except (TypeError, ValueError, RuntimeError, AssertionError, ZeroDivisionError) as exc:
        raise ValueError(f"cannot build model {name!r} with kwargs {kwargs}: {type(exc).__name__}: {exc}") from exc


def load_trained(directory: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model of a checkpoint directory written by ``ibit-train`` (teachers too). Returns (model.eval(), config)."""
    directory = Path(directory)
    config = read_checkpoint_config(directory)
    spec = config["model"]
    try:
        model = build_model(spec["name"], dict(spec.get("kwargs", {})))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{directory / CONFIG_FILE}: cannot build model {spec}: {exc}") from exc
    load_state_dict_checked(directory / WEIGHTS_FILE, model)
    return model.eval(), config


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a DistributedDataParallel (or compiled) wrapper."""
    while hasattr(model, "module") and isinstance(model.module, nn.Module):
        model = model.module
    return model
