"""The held-out images a bundle or checkpoint is judged on: dataset spec and the split that keeps them out of
training (ibit-train's defaults when the record has none)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..devicekit.profile import InputSpec

# The held-out split every stage re-derives when the manifest does not record one (ibit-train's defaults).
DEFAULT_VAL_FRACTION = 0.2
DEFAULT_SPLIT_SEED = 0


@dataclass(frozen=True)
class EvalSet:
    """The held-out images a bundle is judged on: dataset spec and the split that keeps them out of training."""

    spec: str | None
    val_fraction: float = DEFAULT_VAL_FRACTION
    seed: int = DEFAULT_SPLIT_SEED

    @classmethod
    def from_manifest(cls, manifest: dict[str, Any], spec: str | None = None) -> EvalSet:
        """The manifest's ``data`` block; another ``spec`` than the recorded one gets the default split."""
        data = manifest.get("data") or {}
        recorded = data.get("spec")
        if spec is not None and spec != recorded:
            return cls(spec)
        return cls(recorded, float(data.get("val_fraction", DEFAULT_VAL_FRACTION)),
                   int(data.get("seed", DEFAULT_SPLIT_SEED)))

    def arrays(self, split: str, spec: InputSpec, limit: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Preprocessed float32 NCHW images and labels of ``split``, as ``spec`` (size, mean, std) says."""
        from .datasets import eval_arrays

        if not self.spec:
            raise ValueError("the manifest records no dataset (manifest['data']['spec'])")
        return eval_arrays(self.spec, split, spec.image_size, spec.mean, spec.std, limit=limit,
                           val_fraction=self.val_fraction, seed=self.seed)

    def describe(self, count: int) -> str:
        return f"{count} val images of {self.spec} (val_fraction {self.val_fraction}, seed {self.seed})"
