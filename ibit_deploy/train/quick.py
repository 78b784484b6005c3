"""A fixed-step, in-memory training loop for smoke models: pipeline checks, benchmarks and test fixtures.

It has none of :func:`ibit_deploy.train.train`'s machinery (no checkpoints, resume, augmentation or evaluation):
it exists so a script can get a model that is *trained enough to make accuracy checks meaningful* (an untrained
10-class model scores ~10%, so an accuracy gate on it proves nothing) in seconds, with one call.
"""

from __future__ import annotations

import sys
import time

import torch
from torch import nn


def train_steps(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    steps: int,
    lr: float,
    batch: int = 64,
    seed: int = 0,
    log_every: int = 0,
) -> nn.Module:
    """Train ``model`` for ``steps`` AdamW steps (one-cycle schedule) on batches drawn from in-memory tensors.

    Args:
        model: the model; trained in place and returned in eval mode.
        images: ``(N, C, H, W)`` preprocessed inputs; ``labels``: ``(N,)`` class indices.
        steps: optimizer steps; each draws ``batch`` indices uniformly (with replacement) from a seeded generator.
        lr: peak learning rate of the one-cycle schedule (10% warm-up), weight decay 0.05.
        log_every: print the loss to stderr every this many steps (0: silent).
    """
    if images.shape[0] != labels.shape[0] or images.shape[0] == 0:
        raise ValueError(f"need as many labels as images (> 0), got {images.shape[0]} images, {labels.shape[0]} labels")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    gen = torch.Generator().manual_seed(seed)
    model.train()
    start = time.perf_counter()
    for step in range(steps):
        idx = torch.randint(0, len(images), (batch,), generator=gen)
        loss = nn.functional.cross_entropy(model(images[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if log_every and (step % log_every == 0 or step == steps - 1):
            print(f"  train step {step + 1}/{steps} loss {loss.item():.3f} ({time.perf_counter() - start:.0f} s)",
                  file=sys.stderr)
    return model.eval()
