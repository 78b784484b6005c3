"""AdamW with the DeiT weight-decay split, and a per-step cosine schedule with linear warm-up.

The schedule is a pure function of the global step, so resuming needs only the step count: no scheduler object to
save and no chance of it drifting from the optimizer.
"""

from __future__ import annotations

import math

import torch
from torch import nn


def no_decay_names(model: nn.Module) -> set[str]:
    """Parameter names excluded from weight decay: norms, biases (every 0/1-d tensor) and the model's own list
    (timm's ``no_weight_decay()``: pos_embed, cls_token, dist_token).

    IBiT's mask factors ``mask_a``/``mask_b`` are 3-d and not in that list, so they ARE decayed, as in the reference
    (METHODS.md section 1).
    """
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    names = set()
    for name, param in model.named_parameters():
        if param.ndim <= 1 or name in skip or name.split(".")[-1] in skip:
            names.add(name)
    return names


def build_optimizer(model: nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over two groups: decayed weights and non-decayed norms/biases/tokens (group order is fixed)."""
    skip = no_decay_names(model)
    decay = [p for n, p in model.named_parameters() if p.requires_grad and n not in skip]
    no_decay = [p for n, p in model.named_parameters() if p.requires_grad and n in skip]
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=lr)


def cosine_lr(step: int, total_steps: int, warmup_steps: int, base_lr: float, min_lr: float) -> float:
    """Learning rate at optimizer step ``step`` (0-based): linear warm-up to ``base_lr``, then cosine to ``min_lr``."""
    if warmup_steps > 0 and step < warmup_steps:
        return base_lr * (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return min_lr + 0.5 * (base_lr - min_lr) * (1.0 + math.cos(math.pi * progress))


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    for group in optimizer.param_groups:
        group["lr"] = lr
