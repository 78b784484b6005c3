"""The bundle's reference outputs (``reference.npz``, :mod:`ibit_deploy.devicekit.reference`): the trained model's
logits on the bundle's check images, so a device without torch or the checkpoint still checks against them."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ..devicekit.layout import REFERENCE_FILE, REFERENCE_KIND
from ..devicekit.manifest import artifact_entry
from ..devicekit.reference import reference_count, write_reference
from .probe import probe_images


def reference_artifact(out: Path, model: torch.nn.Module, inp: dict[str, Any], data: dict[str, Any],
                       batch: int = 64) -> dict[str, Any]:
    """Write ``out/reference.npz`` (validation images of the checkpoint's dataset, random ones where they cannot be
    read: the probe's rule) with ``model``'s logits, the trained model unfolded; returns its manifest entry."""
    probe = probe_images({"input": inp, "data": data}, count=reference_count(tuple(inp["shape"][1:])))
    model.eval()
    with torch.no_grad():
        logits = torch.cat([model(chunk) for chunk in probe.images.split(batch)]).float().numpy()
    write_reference(out / REFERENCE_FILE, probe.images.numpy(), probe.labels, logits)
    return artifact_entry(out, REFERENCE_FILE, REFERENCE_KIND, "fp32", count=len(logits), model="torch-ref",
                          inputs=probe.description)
