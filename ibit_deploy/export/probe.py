"""``parity_images``: the images every export check runs on (fold error, ONNX parity, engine verification)."""

from __future__ import annotations

import warnings
from typing import Any

import torch

from ..bundle import EvalSet, InputSpec


def parity_images(manifest: dict[str, Any], count: int = 16) -> tuple[torch.Tensor, str]:
    """Real validation images of the manifest's dataset (its ``data`` and ``input`` blocks), and what they are.

    ``manifest`` may be a full bundle manifest or any dict with ``input`` and ``data`` blocks (a checkpoint config
    plus the input block the export derived). Without real images (no dataset recorded, or not readable here) the
    inputs are random and the returned description, which the manifest records as the check's ``inputs``, says so
    and why; a warning says it too: the checks never silently degrade.
    """
    spec = InputSpec.from_manifest(manifest)
    eval_set = EvalSet.from_manifest(manifest)
    why = "the checkpoint records no dataset"
    if eval_set.spec:
        try:
            images, _ = eval_set.arrays("val", spec, limit=count)
            return torch.from_numpy(images), f"{len(images)} validation images of {eval_set.spec}"
        except (OSError, ValueError) as exc:  # the data is not on this machine: random inputs still check the graph
            why = f"validation images of {eval_set.spec} could not be read: {exc}"
    kind = f"{count} random normal inputs, NOT real images ({why})"
    warnings.warn(f"parity checks use {kind}", stacklevel=2)
    shape = (count, *spec.chw)
    return torch.randn(shape, generator=torch.Generator().manual_seed(0)), kind
