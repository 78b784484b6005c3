"""``to_flashbias``: fold a bias-mode IBiT and replace each layer's (heads, T, T) bias by low-rank factors that ride
inside an ordinary attention call (:class:`~ibit_deploy.models.flashbias.FlashBiasAttention`)."""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from ..models.attention import IBiTAttention
from ..models.flashbias import FlashBiasAttention
from .fold import fold_masks
from .lowrank import RankPolicy, decompose_bias

NOT_APPLICABLE_MASK = (
    "FlashBias does not apply to mask-mode IBiT: it rewrites softmax(q k^T s + B) as one attention call, which needs "
    "an additive bias under a softmax (attn_mode 'bias'); the paper's mask multiplies the scores and has no softmax, "
    "so it has no fused-attention form. Export it with --attention dense, or train with attn_mode='bias'"
)
NOT_APPLICABLE_TIMM = (
    "FlashBias does not apply: the model has no IBiT attention (a timm baseline has no learned bias to fold); "
    "export it with --attention dense"
)


def check_flashbias_applicable(model: nn.Module) -> list[IBiTAttention]:
    """The model's IBiT attentions, or a ValueError saying why FlashBias does not apply (mask mode, no IBiT)."""
    attentions = [m for m in model.modules() if isinstance(m, IBiTAttention)]
    if not attentions:
        raise ValueError(NOT_APPLICABLE_TIMM)
    modes = sorted({a.mode for a in attentions})
    if modes != ["bias"]:
        raise ValueError(f"{NOT_APPLICABLE_MASK} (this model's attention mode: {', '.join(modes)})")
    return attentions


@torch.no_grad()
def to_flashbias(model: nn.Module, policy: RankPolicy | str, *, pad_value: bool = True,
                 inplace: bool = False) -> tuple[nn.Module, list[dict[str, Any]]]:
    """Return the folded FlashBias form of a bias-mode IBiT and, per layer, its decomposition.

    Each layer's folded bias is decomposed in token coordinates at the rank ``policy`` chooses (see
    :func:`~ibit_deploy.fold.lowrank.decompose_bias`); the layer report holds the layer name, rank, padded widths,
    energy kept per head and the max |bias error|. ``pad_value`` pads v to the q/k head dim (fused kernels want one
    head size; see :func:`~ibit_deploy.models.flashbias.flashbias_sdpa`). The result is in eval mode.
    """
    policy = RankPolicy.parse(policy) if isinstance(policy, str) else policy
    check_flashbias_applicable(model)
    folded = fold_masks(model if inplace else copy.deepcopy(model), inplace=True)
    layers: list[dict[str, Any]] = []
    for name, module in list(folded.named_modules()):
        if not isinstance(module, IBiTAttention):
            continue
        factors = decompose_bias(module.dense_mask(), policy, module.head_dim)
        replacement = FlashBiasAttention(module, factors.q_bias, factors.k_bias, factors.rank, pad_value=pad_value)
        parent_name, _, child = name.rpartition(".")
        setattr(folded.get_submodule(parent_name) if parent_name else folded, child, replacement)
        layers.append({"layer": name, "tokens": module.num_tokens, "heads": module.num_heads,
                       "head_dim": module.head_dim, "qk_head_dim": replacement.qk_head_dim,
                       "v_head_dim": replacement.qk_head_dim if pad_value else module.head_dim, **factors.summary()})
    return folded.eval(), layers
