"""``fold_masks``: replace every IBiT attention's low-rank factors by one (heads, T, T) constant buffer."""

from __future__ import annotations

import copy

import torch
from torch import nn

from ..models.attention import IBiTAttention


def fold_masks(model: nn.Module, inplace: bool = False) -> nn.Module:
    """Return ``model`` with each IBiT mask (or bias) folded into a static buffer computed once from its factors.

    The folded model computes the same function (the factors' product and the roll-index gather are done once here
    instead of at every forward); it has no mask parameters left, so an exported graph carries one initializer per
    layer. Models without IBiT attention (the timm baselines) come back unchanged. The result is in eval mode.
    """
    folded = model if inplace else copy.deepcopy(model)
    for module in folded.modules():
        if isinstance(module, IBiTAttention):
            module.fold()
    return folded.eval()


@torch.no_grad()
def max_fold_error(reference: nn.Module, folded: nn.Module, images: torch.Tensor) -> float:
    """Largest absolute difference between the outputs of ``reference`` and ``folded`` on ``images`` (eval mode)."""
    was_training = reference.training
    reference.eval()
    try:
        return float((reference(images) - folded.eval()(images)).abs().max())
    finally:
        reference.train(was_training)
