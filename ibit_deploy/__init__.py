"""ibit-deploy: train data-efficient Vision Transformers (IBiT) and ship them to NVIDIA edge and desktop GPUs.

Heavy or optional dependencies (tensorrt, cuda, onnxruntime, torch) are imported where they are used; ``import
ibit_deploy`` only exposes the names below, each loaded on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "create_model": "ibit_deploy.models",
    "available_models": "ibit_deploy.models",
    "fold_masks": "ibit_deploy.fold",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ibit_deploy' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
