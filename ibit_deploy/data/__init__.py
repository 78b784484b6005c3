"""Data: image sources behind one spec string, seeded stratified splits, and the preprocessing every stage shares.

The names below load on first use (PEP 562): ``import ibit_deploy.data.eval_split``, ``.fit``, ``.sources`` and
``.preprocess`` need no torch, so the device side (no torch) reads bundles and preprocesses images with them.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    **dict.fromkeys(("DEFAULT_SPEC", "DataInfo", "ImageDataset", "build_dataset", "data_info", "eval_arrays",
                     "load_source", "parse_spec", "split_arrays", "stratified_split", "stratified_subset"),
                    "ibit_deploy.data.datasets"),
    **dict.fromkeys(("AugmentConfig", "eval_transform", "train_transform"), "ibit_deploy.data.transforms"),
    "preprocess_images": "ibit_deploy.data.preprocess",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ibit_deploy.data' has no attribute {name!r}")


__all__ = sorted(_LAZY)
