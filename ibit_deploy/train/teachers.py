"""LIB-KD's teacher workflow: train the teachers, then run them once over the training split and store their logits
(in the format :mod:`.distill` defines and the trainer reads). Above the trainer: it calls ``train``.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import numpy as np
import torch

from .config import check_teacher_weights
from .distill import save_teacher_logits, teachers_source
from .trainer import train


@torch.no_grad()
def compute_teacher_logits(teacher_dirs: list[str | os.PathLike], out: str | os.PathLike,
                           weights: list[float] | None = None, batch_size: int = 256, device: str = "auto") -> Path:
    """Run each trained teacher over its training split (eval mode, no augmentation) and store the logits.

    All teachers must have been trained on the same split (same fingerprint). ``weights`` (default: equal) is stored
    with the logits and used by students unless their config overrides it.
    """
    from torch.utils.data import DataLoader

    from ..data import build_dataset
    from .build import load_trained
    from .distributed import resolve_device

    if not teacher_dirs:
        raise ValueError("compute_teacher_logits: give at least one teacher checkpoint directory")
    weights = check_teacher_weights(list(weights) if weights is not None else [1.0] * len(teacher_dirs), "weights")
    if len(weights) != len(teacher_dirs):
        raise ValueError(f"{len(weights)} weights for {len(teacher_dirs)} teachers")
    dev = resolve_device(device)
    names, all_logits, fingerprint, spec = [], [], None, None
    for directory in teacher_dirs:
        model, config = load_trained(directory)
        data = config["data"]
        dataset, _ = build_dataset(data["spec"], "train", tuple(config["input"]["image_size"]),
                                   val_fraction=data["val_fraction"], seed=data["seed"], subset=data["subset"])
        if fingerprint is not None and dataset.fingerprint != fingerprint:
            raise ValueError(f"teacher {directory} was trained on split fingerprint {dataset.fingerprint} but "
                             f"{teacher_dirs[0]} on {fingerprint}; all teachers must share one training split")
        fingerprint, spec = dataset.fingerprint, data["spec"]
        model.to(dev)
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False)
        outputs = [model(images.to(dev)).float().cpu() for images, _, _ in loader]
        all_logits.append(torch.cat(outputs).numpy())
        names.append(config["model"]["name"])
    return save_teacher_logits(out, np.stack(all_logits), fingerprint, names, weights, spec,
                               source=teachers_source(teacher_dirs))


def train_teachers(names: list[str], base, out_root: str | os.PathLike,
                   model_kwargs: dict[str, dict] | None = None) -> list[Path]:
    """Train each teacher ``name`` with ``base`` (a TrainConfig) into ``out_root/name``; returns the directories.

    ``model_kwargs`` maps a teacher name to its constructor overrides (e.g. ``{"rednet_small": {"kernel_size": 5}}``).
    """
    dirs = []
    for name in names:
        out = Path(out_root) / name
        kwargs = dict((model_kwargs or {}).get(name, {}))
        train(dataclasses.replace(base, model=name, model_kwargs=kwargs, out=str(out), distill=None))
        dirs.append(out)
    return dirs
