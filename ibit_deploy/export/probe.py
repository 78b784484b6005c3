"""``parity_images``: the images every export check runs on (fold error, ONNX parity, engine verification)."""

from __future__ import annotations

from typing import Any

import torch

from ..bundle import EvalSet, InputSpec


def parity_images(manifest: dict[str, Any], count: int = 16) -> tuple[torch.Tensor, str]:
    """Real validation images of the manifest's dataset (its ``data`` and ``input`` blocks); random if unavailable.

    ``manifest`` may be a full bundle manifest or any dict with ``input`` and ``data`` blocks (a checkpoint config
    plus the input block the export derived).
    """
    spec = InputSpec.from_manifest(manifest)
    eval_set = EvalSet.from_manifest(manifest)
    if eval_set.spec:
        try:
            images, _ = eval_set.arrays("val", spec, limit=count)
            return torch.from_numpy(images), f"{len(images)} validation images of {eval_set.spec}"
        except (OSError, ValueError):
            pass  # the training data is not on this machine: random inputs still check the graph
    shape = (count, *spec.chw)
    return torch.randn(shape, generator=torch.Generator().manual_seed(0)), f"{count} random normal inputs"
