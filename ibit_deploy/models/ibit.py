"""IBiT: the DeiT architecture (timm's VisionTransformer) with every attention swapped for :class:`IBiTAttention`.

Keeping timm's class means pre-norm blocks, learned position embeddings, the final norm, the ``token`` pool and
timm's weight init are exactly DeiT's, so timm's deit/vit/convit models are like-for-like baselines.
"""

from __future__ import annotations

from typing import Any

from timm.models.deit import VisionTransformerDistilled
from timm.models.vision_transformer import VisionTransformer
from torch import nn

from .attention import IBiTAttention
from .impulse import impulse_init_

INITS = ("default", "impulse")


def _to_pair(value: int | tuple[int, int]) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else (int(value[0]), int(value[1]))


def check_image_size(img_size: int | tuple[int, int], patch_size: int | tuple[int, int]) -> None:
    """Raise a ValueError unless the image splits into whole patches."""
    (ih, iw), (ph, pw) = _to_pair(img_size), _to_pair(patch_size)
    if ih % ph or iw % pw or ih < ph or iw < pw:
        raise ValueError(f"img_size {ih}x{iw} is not divisible by patch_size {ph}x{pw}; choose a multiple of the patch size")


class _IBiTMixin:
    """Swaps timm attention for IBiT attention once the base class has fixed the token layout."""

    def _install_ibit(self, mask_rank: int, attn_mode: str, init: str, qkv_bias: bool, attn_drop: float,
                      proj_drop: float) -> None:
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        grid = tuple(self.patch_embed.grid_size)
        for block in self.blocks:
            old = block.attn
            block.attn = IBiTAttention(
                self.embed_dim,
                old.num_heads,
                grid_size=grid,
                num_prefix=self.num_prefix_tokens,
                rank=mask_rank,
                mode=attn_mode,
                qkv_bias=qkv_bias,
                attn_drop=attn_drop,
                proj_drop=proj_drop,
            )
            # Same init as timm's Attention linears (VisionTransformer.init_weights uses trunc_normal 0.02).
            block.attn.qkv.load_state_dict(old.qkv.state_dict())
            block.attn.proj.load_state_dict(old.proj.state_dict())
        self.mask_rank = mask_rank
        self.attn_mode = attn_mode
        if init == "impulse":
            impulse_init_(self)

    def ibit_attentions(self) -> list[IBiTAttention]:
        """The IBiT attention module of every block, in order."""
        return [m for m in self.modules() if isinstance(m, IBiTAttention)]


def _split_kwargs(kwargs: dict[str, Any]) -> dict[str, Any]:
    if kwargs.get("dynamic_img_size"):
        raise ValueError("IBiT masks are tied to a fixed patch grid; dynamic_img_size is not supported")
    check_image_size(kwargs.get("img_size", 224), kwargs.get("patch_size", 16))
    return {
        "qkv_bias": kwargs.get("qkv_bias", True),
        "attn_drop": kwargs.get("attn_drop_rate", 0.0),
        "proj_drop": kwargs.get("proj_drop_rate", 0.0),
    }


class IBiT(_IBiTMixin, VisionTransformer):
    """Vision Transformer with learned low-rank attention masks (IBiT).

    Args:
        mask_rank: rank of every head's mask (1 .. tokens).
        attn_mode: ``"mask"`` (multiplicative, Frobenius-normalised, no softmax) or ``"bias"`` (additive + softmax).
        init: ``"default"`` (timm's) or ``"impulse"`` (structured impulse initialization of Q/K).
        **kwargs: timm ``VisionTransformer`` arguments (img_size, patch_size, in_chans, num_classes, embed_dim, ...).
    """

    def __init__(self, mask_rank: int = 9, attn_mode: str = "mask", init: str = "default", **kwargs: Any) -> None:
        extra = _split_kwargs(kwargs)
        super().__init__(**kwargs)
        self._install_ibit(mask_rank, attn_mode, init, **extra)


class DistilledIBiT(_IBiTMixin, VisionTransformerDistilled):
    """IBiT with a distillation token and head (DeiT-style); evaluation averages the class and distillation heads."""

    def __init__(self, mask_rank: int = 9, attn_mode: str = "mask", init: str = "default", **kwargs: Any) -> None:
        extra = _split_kwargs(kwargs)
        super().__init__(**kwargs)
        self._install_ibit(mask_rank, attn_mode, init, **extra)


def ibit_attentions(model: nn.Module) -> list[IBiTAttention]:
    """Every IBiT attention module inside ``model`` (empty for baselines)."""
    return [m for m in model.modules() if isinstance(m, IBiTAttention)]
