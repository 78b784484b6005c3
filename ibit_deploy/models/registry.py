"""IBiT variants registered in timm's model registry, each with its data defaults (input size, mean/std, classes).

Importing this module is what makes ``timm.create_model("ibit_tiny_patch16_224")`` and ``timm.list_models("ibit_*")``
work; ``import ibit_deploy`` does it. Each variant is an explicit function below (jump to it by name); ``VARIANTS``
holds their architecture and data defaults.
"""

from __future__ import annotations

from typing import Any

from timm.data import IMAGENET_DEFAULT_MEAN, IMAGENET_DEFAULT_STD
from timm.models import register_model

from .ibit import DistilledIBiT, IBiT

MNIST_MEAN, MNIST_STD = (0.1307,), (0.3081,)
CIFAR10_MEAN, CIFAR10_STD = (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)

# Per-variant architecture and data defaults. The data defaults travel with the model as ``model.pretrained_cfg``.
_IMAGENET = {"input_size": (3, 224, 224), "mean": IMAGENET_DEFAULT_MEAN, "std": IMAGENET_DEFAULT_STD, "num_classes": 1000}
_CIFAR = {"input_size": (3, 32, 32), "mean": CIFAR10_MEAN, "std": CIFAR10_STD, "num_classes": 10}
_MNIST = {"input_size": (1, 28, 28), "mean": MNIST_MEAN, "std": MNIST_STD, "num_classes": 10}

TINY = {"embed_dim": 192, "depth": 12, "num_heads": 3, "mask_rank": 9}
SMALL = {"embed_dim": 384, "depth": 12, "num_heads": 6, "mask_rank": 9}
BASE = {"embed_dim": 768, "depth": 12, "num_heads": 12, "mask_rank": 9}
TEST = {"embed_dim": 32, "depth": 2, "num_heads": 2, "mask_rank": 3}

VARIANTS: dict[str, tuple[dict[str, Any], dict[str, Any], int]] = {
    # name: (architecture, data defaults, patch size)
    "ibit_tiny_patch16_224": (TINY, _IMAGENET, 16),
    "ibit_small_patch16_224": (SMALL, _IMAGENET, 16),
    "ibit_base_patch16_224": (BASE, _IMAGENET, 16),
    "ibit_tiny_patch4_32": (TINY, _CIFAR, 4),
    "ibit_small_patch4_32": (SMALL, _CIFAR, 4),
    "ibit_tiny_patch4_28": (TINY, _MNIST, 4),
    "ibit_small_patch4_28": (SMALL, _MNIST, 4),
    "ibit_test_patch4_28": (TEST, _MNIST, 4),
}

_TIMM_ONLY_KWARGS = ("pretrained_cfg", "pretrained_cfg_overlay", "cache_dir")


def pretrained_cfg_for(name: str, **overrides: Any) -> dict[str, Any]:
    """The data config of variant ``name``, updated for ``img_size`` / ``in_chans`` / ``num_classes`` overrides."""
    _, data, _ = VARIANTS[name]
    chans, height, width = data["input_size"]
    img = overrides.get("img_size")
    if img is not None:
        height, width = (img, img) if isinstance(img, int) else tuple(img)
    chans = overrides.get("in_chans", chans)
    mean, std = data["mean"], data["std"]
    if len(mean) != chans:  # a channel count the defaults were not made for: repeat or average them
        mean = tuple([sum(mean) / len(mean)] * chans)
        std = tuple([sum(std) / len(std)] * chans)
    return {
        "architecture": name,
        "input_size": (chans, height, width),
        "mean": tuple(mean),
        "std": tuple(std),
        "num_classes": overrides.get("num_classes", data["num_classes"]),
        "interpolation": "bicubic",
        "crop_pct": 1.0,
        "classifier": ("head", "head_dist") if overrides.get("distilled") else "head",
        "first_conv": "patch_embed.proj",
    }


def build_ibit(name: str, pretrained: bool = False, **kwargs: Any) -> IBiT:
    """Build variant ``name``; keyword arguments override its defaults. ``distilled=True`` adds a distillation token."""
    if pretrained:
        raise ValueError(f"no pretrained weights are published for {name}; load a checkpoint with ibit_deploy.train")
    for key in _TIMM_ONLY_KWARGS:
        kwargs.pop(key, None)
    arch, data, patch = VARIANTS[name]
    chans, height, _ = data["input_size"]
    args = {"img_size": height, "patch_size": patch, "in_chans": chans, "num_classes": data["num_classes"], **arch}
    args.update(kwargs)
    distilled = bool(args.pop("distilled", False))
    model = (DistilledIBiT if distilled else IBiT)(**args)
    model.pretrained_cfg = pretrained_cfg_for(name, **{**kwargs, "distilled": distilled})
    model.default_cfg = model.pretrained_cfg
    return model


# The registered entry points, one per variant (timm style): ``timm.create_model(name, **overrides)`` calls them.


@register_model
def ibit_tiny_patch16_224(pretrained: bool = False, **kwargs: Any) -> IBiT:
    """IBiT-Tiny (192 wide, 12 blocks, 3 heads, mask rank 9), 16x16 patches, ImageNet 224x224."""
    return build_ibit("ibit_tiny_patch16_224", pretrained=pretrained, **kwargs)


@register_model
def ibit_small_patch16_224(pretrained: bool = False, **kwargs: Any) -> IBiT:
    """IBiT-Small (384 wide, 12 blocks, 6 heads, mask rank 9), 16x16 patches, ImageNet 224x224."""
    return build_ibit("ibit_small_patch16_224", pretrained=pretrained, **kwargs)


@register_model
def ibit_base_patch16_224(pretrained: bool = False, **kwargs: Any) -> IBiT:
    """IBiT-Base (768 wide, 12 blocks, 12 heads, mask rank 9), 16x16 patches, ImageNet 224x224."""
    return build_ibit("ibit_base_patch16_224", pretrained=pretrained, **kwargs)


@register_model
def ibit_tiny_patch4_32(pretrained: bool = False, **kwargs: Any) -> IBiT:
    """IBiT-Tiny, 4x4 patches, CIFAR-10 32x32."""
    return build_ibit("ibit_tiny_patch4_32", pretrained=pretrained, **kwargs)


@register_model
def ibit_small_patch4_32(pretrained: bool = False, **kwargs: Any) -> IBiT:
    """IBiT-Small, 4x4 patches, CIFAR-10 32x32."""
    return build_ibit("ibit_small_patch4_32", pretrained=pretrained, **kwargs)


@register_model
def ibit_tiny_patch4_28(pretrained: bool = False, **kwargs: Any) -> IBiT:
    """IBiT-Tiny, 4x4 patches, MNIST 28x28 (1 channel)."""
    return build_ibit("ibit_tiny_patch4_28", pretrained=pretrained, **kwargs)


@register_model
def ibit_small_patch4_28(pretrained: bool = False, **kwargs: Any) -> IBiT:
    """IBiT-Small, 4x4 patches, MNIST 28x28 (1 channel)."""
    return build_ibit("ibit_small_patch4_28", pretrained=pretrained, **kwargs)


@register_model
def ibit_test_patch4_28(pretrained: bool = False, **kwargs: Any) -> IBiT:
    """A 2-block, 32-wide IBiT for tests and smoke runs, 4x4 patches, MNIST 28x28."""
    return build_ibit("ibit_test_patch4_28", pretrained=pretrained, **kwargs)
