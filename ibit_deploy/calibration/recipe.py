"""Calibration recipes (``calibration/*.json``) and ``calibrate``, the library function behind ``ibit-calibrate``.

A recipe pins everything that decides which images calibrate a model: dataset spec, split, count, seeds, and the
calibration method they are meant for. Checked into the repository, it lets a Jetson rebuild the same ``calib.npz``.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..configs import checked_fields
from ..devicekit.fileio import read_json
from ..devicekit.numbers import SEED, Range
from .dataset import MIN_SAMPLES, build_calibration_set, input_geometry, validate_calibration
from .store import save_calibration

# The smallest calibration count any method takes (a flag's range when parsed; the method's own minimum follows).
COUNT = Range(min(MIN_SAMPLES.values()), integer=True)
# The percentile of |activation| kept by percentile calibration (below the median would clip most activations).
PERCENTILE = Range(50, 100, low_open=True)


def check_count(count: object, method: str, name: str) -> None:
    """Raise ValueError unless ``count`` is an integer of at least ``MIN_SAMPLES[method]`` images.

    ``name`` is what the user typed the count as (``--calib-count``, ``--count``, ``recipe count``), so the message
    names it.
    """
    least = MIN_SAMPLES.get(method, 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < least:
        raise ValueError(f"{name} must be an integer >= {least} for {method} calibration, got {count!r}")


def count_note(meta: dict[str, Any], name: str) -> str | None:
    """One line when a calibration set holds fewer images than ``name`` (the flag) asked for; None otherwise.

    ``meta`` is what :func:`calibrate` returns (or a manifest's calibration entry): ``requested_count``, ``count``,
    ``spec`` and ``split``.
    """
    requested, used = meta.get("requested_count"), meta.get("count")
    if requested is None or used is None or used >= requested:
        return None
    return (f"{name} {requested}: calibrated on {used} images, all that the {meta.get('split', 'train')} split of "
            f"{meta.get('spec')} holds")


@dataclass
class CalibrationRecipe:
    """Which images calibrate a model, and for which method.

    ``input`` (image_size, mean, std) is optional: a bundle's manifest is the authority on preprocessing, and without
    either the dataset's own size and normalisation are used.
    """

    spec: str = "mnist5k"
    split: str = "train"
    count: int = 256
    seed: int = 0
    val_fraction: float = 0.2
    split_seed: int = 0
    method: str = "minmax"
    percentile: float = 99.99
    input: dict[str, Any] | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.method, str) or self.method not in MIN_SAMPLES:
            raise ValueError(f"recipe method must be one of {sorted(MIN_SAMPLES)}, got {self.method!r}")
        if not isinstance(self.split, str) or self.split not in ("train", "test"):
            raise ValueError(f"recipe split must be 'train' or 'test' (val is held out for the accuracy gate), got "
                             f"{self.split!r}")
        check_count(self.count, self.method, "recipe count")
        PERCENTILE.check_value(self.percentile, "recipe percentile")
        for name in ("seed", "split_seed"):
            SEED.check_value(getattr(self, name), f"recipe {name}")
        Range(0, 1, high_open=True).check_value(self.val_fraction, "recipe val_fraction")
        if not isinstance(self.spec, str):
            raise ValueError(f"recipe spec must be a dataset spec (text), got {self.spec!r}")
        if self.input is not None and not isinstance(self.input, dict):
            raise ValueError(f"recipe input must be a JSON object (image_size, mean, std) or null, got {self.input!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "calibration recipe") -> CalibrationRecipe:
        return cls(**checked_fields(cls, data, source))


def load_recipe(path: str | os.PathLike) -> CalibrationRecipe:
    """Read a recipe JSON file (unknown keys are an error naming the file)."""
    return CalibrationRecipe.from_dict(read_json(path, "calibration recipe"), source=str(path))


def default_input_block(spec: str) -> dict[str, Any]:
    """The dataset's native image size and normalisation, for calibrating without a bundle."""
    from ..data import data_info

    info = data_info(spec)
    return {"image_size": list(info.image_size), "mean": list(info.mean), "std": list(info.std)}


def calibrate(out: str | os.PathLike, recipe: CalibrationRecipe,
              input_block: dict[str, Any] | None = None, source: str | None = None) -> dict[str, Any]:
    """Build the calibration set ``recipe`` describes and write it to ``out`` (.npz); returns the stored metadata.

    ``source`` (a bundle's path or the dataset spec) is recorded as what the set was made for (the write policy).

    ``input_block`` (a manifest's ``input``) wins over ``recipe.input``, which wins over the dataset's defaults.
    """
    block = input_block or recipe.input or default_input_block(recipe.spec)
    size, mean, std = input_geometry(block)
    images, labels = build_calibration_set(recipe.spec, block, recipe.count, recipe.seed, recipe.split,
                                           recipe.val_fraction, split_seed=recipe.split_seed, return_labels=True)
    validate_calibration(images, method=recipe.method, source=f"calibration set for {out}")
    meta = {
        "spec": recipe.spec, "split": recipe.split, "seed": recipe.seed, "val_fraction": recipe.val_fraction,
        "split_seed": recipe.split_seed, "requested_count": recipe.count, "method": recipe.method,
        "percentile": recipe.percentile,
        "preprocessing": {"image_size": list(size), "mean": list(mean), "std": list(std), "layout": "NCHW",
                          "value_range": "uint8 pixels / 255, then (x - mean) / std"},
        "class_counts": {str(int(k)): int((labels == k).sum()) for k in np.unique(labels)},
    }
    return save_calibration(Path(out), images, meta, labels=labels, source=source)

