"""The images every export check runs on (fold error, ONNX parity, the FlashBias gate, engine verification).

Real validation images of the checkpoint's dataset when they can be read here. Otherwise the checks fall back to
random normal inputs (they still check the graph) and never silently: the description the manifest records says
"NOT real images" and why, and a warning says it on stderr.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.eval_split import EvalSet
from ..devicekit.profile import InputSpec

RANDOM_INPUTS = "random normal inputs, NOT real images"  # the words a fallback record carries (tests look for them)


@dataclass(frozen=True)
class ProbeImages:
    """Preprocessed NCHW images; ``labels`` is None when they are random (``description`` then says why)."""

    images: torch.Tensor
    labels: np.ndarray | None
    description: str

    @property
    def real(self) -> bool:
        return self.labels is not None


def probe_images(manifest: dict[str, Any], count: int = 16, spec: str | None = None) -> ProbeImages:
    """Up to ``count`` validation images (and labels) of the manifest's dataset, or ``spec``'s; random if unreadable.

    ``manifest`` may be a full bundle manifest or any dict with ``input`` and ``data`` blocks (a checkpoint config
    plus the input block the export derived). Without real images (no dataset recorded, or not readable here) the
    inputs are random and the returned description, which the manifest records as the check's ``inputs``, says so
    and why; a warning says it too: the checks never silently degrade.
    """
    inp = InputSpec.from_manifest(manifest)
    eval_set = EvalSet.from_manifest(manifest, spec)
    why = "the checkpoint records no dataset"
    if eval_set.spec:
        try:
            images, labels = eval_set.arrays("val", inp, limit=count)
            return ProbeImages(torch.from_numpy(images), labels, f"{len(labels)} validation images of {eval_set.spec} "
                               f"(val_fraction {eval_set.val_fraction}, seed {eval_set.seed})")
        except (OSError, ValueError) as exc:  # the data is not on this machine: random inputs still check the graph
            why = f"validation images of {eval_set.spec} could not be read: {exc}"
    description = f"{count} {RANDOM_INPUTS} ({why})"
    warnings.warn(f"export checks use {description}", stacklevel=2)
    images = torch.randn((count, *inp.chw), generator=torch.Generator().manual_seed(0))
    return ProbeImages(images, None, description)


def parity_images(manifest: dict[str, Any], count: int = 16) -> tuple[torch.Tensor, str]:
    """:func:`probe_images` without labels: the images and their description (the parity record's ``inputs``)."""
    probe = probe_images(manifest, count)
    return probe.images, probe.description
