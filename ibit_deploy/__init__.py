"""ibit-deploy: train data-efficient Vision Transformers (IBiT) and ship them to NVIDIA edge and desktop GPUs.

``import ibit_deploy`` registers the IBiT variants with timm, as a timm plugin should: afterwards
``timm.create_model("ibit_tiny_patch16_224")`` and ``timm.list_models("ibit_*")`` work. Optional dependencies
(tensorrt, cuda, onnxruntime) are imported where they are used; the names below load on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .models import registry as _registry  # noqa: F401  (registers the ibit_* entry points with timm)
from .version import __version__

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
