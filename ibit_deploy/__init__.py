"""ibit-deploy: train data-efficient Vision Transformers (IBiT) and ship them to NVIDIA edge and desktop GPUs.

``import ibit_deploy`` registers the IBiT variants with timm, as a timm plugin should: afterwards
``timm.create_model("ibit_tiny_patch16_224")`` and ``timm.list_models("ibit_*")`` work. It stays light: it imports
neither timm nor torch (the registration happens when timm is first imported, :mod:`.timm_plugin`), so the device
side runs without them and a command's Ctrl-C handling is in place before any heavy import (in a console script
of ours, :mod:`.cli.launch` holds a Ctrl-C from the first line below for the launcher to answer). Optional dependencies
(torch, timm, tensorrt, cuda, onnxruntime) are imported where they are used; the names below load on first use.
"""

from __future__ import annotations

import importlib

from .cli import launch as _launch  # noqa: F401  (first: in our console scripts, Ctrl-C is held from here on)
from .timm_plugin import register_with_timm
from .version import __version__

register_with_timm()

_LAZY = {
    "create_model": "ibit_deploy.models",
    "available_models": "ibit_deploy.models",
    "fold_masks": "ibit_deploy.fold",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ibit_deploy' has no attribute {name!r}")


__all__ = ["__version__", *_LAZY]
