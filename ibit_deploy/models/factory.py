"""One constructor for IBiT variants and their timm baselines, with the same size overrides for both."""

from __future__ import annotations

import fnmatch
from typing import Any

import timm
from torch import nn

from . import registry
from .impulse import impulse_init_

BASELINE_PATTERNS = ("deit_*", "vit_*", "convit_*")
ARCH_KEYS = ("img_size", "patch_size", "in_chans", "num_classes", "embed_dim", "depth", "num_heads")


def available_models() -> list[str]:
    """Every name :func:`create_model` accepts: the IBiT variants, then timm's deit/vit/convit models."""
    names = list(registry.VARIANTS)
    for pattern in BASELINE_PATTERNS:
        names += timm.list_models(pattern)
    return names


def is_ibit(name: str) -> bool:
    return name in registry.VARIANTS


def create_model(name: str, **kwargs: Any) -> nn.Module:
    """Build model ``name`` with keyword overrides (img_size, in_chans, num_classes, depth, embed_dim, num_heads, ...).

    IBiT variants also take ``mask_rank``, ``attn_mode``, ``init`` and ``distilled``; baselines take ``init="impulse"``
    (ViT/DeiT only) and any timm constructor argument. The name and the arguments are kept on the model as
    ``model.build_spec`` so a checkpoint can rebuild it.
    """
    if is_ibit(name):
        model = registry.build_ibit(name, **kwargs)
    elif any(fnmatch.fnmatch(name, p) for p in BASELINE_PATTERNS) and name in timm.list_models(name):
        model = _create_baseline(name, dict(kwargs))
    else:
        ibit = ", ".join(registry.VARIANTS)
        raise ValueError(
            f"unknown model {name!r}; IBiT variants: {ibit}; baselines: any timm model matching "
            f"{', '.join(BASELINE_PATTERNS)} (e.g. deit_tiny_patch16_224, vit_tiny_patch16_224, convit_tiny)"
        )
    model.build_spec = {"name": name, "kwargs": dict(kwargs)}
    return model


def _create_baseline(name: str, kwargs: dict[str, Any]) -> nn.Module:
    init = kwargs.pop("init", "default")
    if init not in ("default", "impulse"):
        raise ValueError(f"init must be 'default' or 'impulse', got {init!r}")
    if init == "impulse" and name.startswith("convit"):
        raise ValueError("init='impulse' applies to ViT/DeiT baselines; ConViT has its own local init")
    if name.startswith("convit") and "embed_dim" in kwargs:
        kwargs = _convit_width(name, kwargs)
    registry_cfg = timm.get_pretrained_cfg(name)
    model = timm.create_model(name, pretrained=False, **kwargs)
    if init == "impulse":
        impulse_init_(model)
    cfg = dict(getattr(model, "pretrained_cfg", None) or (registry_cfg.to_dict() if registry_cfg else {}))
    chans = model.patch_embed.proj.in_channels
    size = model.patch_embed.img_size
    cfg["input_size"] = (chans, int(size[0]), int(size[1]))
    cfg["num_classes"] = model.num_classes
    mean, std = tuple(cfg.get("mean", (0.5,) * 3)), tuple(cfg.get("std", (0.5,) * 3))
    if len(mean) != chans:
        mean, std = (sum(mean) / len(mean),) * chans, (sum(std) / len(std),) * chans
    cfg["mean"], cfg["std"] = mean, std
    model.pretrained_cfg = cfg
    return model


def _convit_width(name: str, kwargs: dict[str, Any]) -> dict[str, Any]:
    """timm's ConViT multiplies ``embed_dim`` by ``num_heads``; here ``embed_dim`` is the token width, as elsewhere."""
    if "num_heads" not in kwargs:
        raise ValueError(f"{name}: give num_heads together with embed_dim (ConViT's width is per head in timm)")
    width, heads = int(kwargs["embed_dim"]), int(kwargs["num_heads"])
    if width % heads:
        raise ValueError(f"{name}: embed_dim {width} must be divisible by num_heads {heads}")
    return {**kwargs, "embed_dim": width // heads}


def matching_baseline_kwargs(ibit_name: str, **overrides: Any) -> dict[str, Any]:
    """Architecture kwargs that make a timm baseline the same size and input as IBiT variant ``ibit_name``."""
    arch, data, patch = registry.VARIANTS[ibit_name]
    chans, height, _ = data["input_size"]
    out = {"img_size": height, "patch_size": patch, "in_chans": chans, "num_classes": data["num_classes"]}
    out.update({k: v for k, v in arch.items() if k != "mask_rank"})
    out.update({k: v for k, v in overrides.items() if k in ARCH_KEYS})
    return out


def data_config(model: nn.Module) -> dict[str, Any]:
    """input_size / mean / std / num_classes of a model built by :func:`create_model`."""
    cfg = getattr(model, "pretrained_cfg", None) or {}
    return {
        "input_size": tuple(cfg["input_size"]),
        "mean": tuple(cfg["mean"]),
        "std": tuple(cfg["std"]),
        "num_classes": int(cfg.get("num_classes", getattr(model, "num_classes", 0))),
    }
