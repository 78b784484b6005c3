"""The training configuration: one dataclass (plus its distillation part) that round-trips to JSON.

The saved copy (in ``config.json`` under ``train`` and in the resume state) is what ``--resume`` continues from, so
every choice that shapes the run lives here and nowhere else.
"""

from __future__ import annotations

import dataclasses
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..configs import checked_fields
from ..devicekit.fileio import read_json

DISTILL_KINDS = ("soft", "hard")
DEVICES = ("auto", "cpu", "cuda")

# Fields a resumed run may change without invalidating the saved optimizer/RNG state.
RESUMABLE_CHANGES = ("epochs", "num_workers", "out", "device", "progress", "val_every")


@dataclass
class DistillConfig:
    """LIB-KD / DeiT-style distillation from precomputed teacher logits (METHODS.md section 6).

    ``logits`` is the ``.npz`` written by :func:`ibit_deploy.train.teachers.compute_teacher_logits`. The distillation
    target is the weighted sum of the stored teachers' logits (weights normalised to sum 1); ``teacher_weights``
    overrides the weights stored in the file.
    """

    logits: str = ""
    alpha: float = 0.5  # loss = (1 - alpha) * CE(cls head, y) + alpha * distill(dist head, teachers)
    tau: float = 1.0  # temperature of the soft (KL) loss
    kind: str = "soft"  # "soft": KL(student/T || teacher/T) * T^2; "hard": CE(student, argmax teacher)
    teacher_weights: list[float] | None = None

    def validate(self) -> None:
        if not self.logits:
            raise ValueError("distill.logits: path to the teacher logits .npz is required")
        if not 0.0 <= self.alpha <= 1.0:
            raise ValueError(f"distill.alpha must be in [0, 1], got {self.alpha}")
        if self.tau <= 0:
            raise ValueError(f"distill.tau must be > 0, got {self.tau}")
        if self.kind not in DISTILL_KINDS:
            raise ValueError(f"distill.kind must be one of {DISTILL_KINDS}, got {self.kind!r}")
        if self.teacher_weights is not None and (not self.teacher_weights or min(self.teacher_weights) < 0
                                                 or sum(self.teacher_weights) <= 0):
            raise ValueError(f"distill.teacher_weights must be non-negative with a positive sum, got "
                             f"{self.teacher_weights}")


@dataclass
class TrainConfig:
    """Everything one training run depends on. Defaults follow the DeiT/IBiT small-data recipe, scaled down."""

    # model
    model: str = "ibit_tiny_patch4_28"
    model_kwargs: dict[str, Any] = field(default_factory=dict)  # img_size/in_chans/num_classes default to the data's
    # data
    data: str = "mnist5k"
    image_size: int | None = None  # None: the dataset's native size
    val_fraction: float = 0.2
    subset: float = 1.0  # stratified fraction of the train split
    seed: int = 0
    # optimisation
    epochs: int = 30
    batch_size: int = 128  # per process; the global batch is batch_size * world size
    lr: float = 1e-3
    weight_decay: float = 0.05
    warmup_epochs: float = 5.0
    min_lr: float = 1e-5
    label_smoothing: float = 0.1
    clip_grad: float | None = None  # max global grad norm; None: off
    ema_decay: float = 0.0  # 0: off; otherwise validation and model.safetensors use the EMA weights
    amp: bool | None = None  # None: on when training on CUDA (bf16 if supported, else fp16 + grad scaling)
    # augmentation (train split only)
    randaugment_magnitude: int = 9  # 0: off
    random_erasing: float = 0.25
    mixup: float = 0.0  # Beta(mixup, mixup); 0: off
    cutmix: float = 0.0  # Beta(cutmix, cutmix); 0: off
    hflip: bool = False
    # runtime
    num_workers: int = 2
    device: str = "auto"
    out: str = "runs/ibit"
    max_steps_per_epoch: int | None = None  # cap for smoke tests and quick benchmarks
    val_every: int = 1  # validate (and redraw curves.png) every N epochs; the last epoch always is
    progress: bool = True  # tqdm bar (only on a TTY and on rank 0 anyway)
    distill: DistillConfig | None = None

    def __post_init__(self) -> None:
        if isinstance(self.distill, dict):
            self.distill = DistillConfig(**self.distill)

    def validate(self) -> TrainConfig:
        """Raise ValueError naming the first invalid field; return self."""
        checks = [
            (self.epochs >= 1, "epochs", "an integer >= 1"),
            (self.batch_size >= 1, "batch_size", "an integer >= 1"),
            (self.lr > 0, "lr", "> 0"),
            (self.weight_decay >= 0, "weight_decay", ">= 0"),
            (self.warmup_epochs >= 0, "warmup_epochs", ">= 0"),
            (0 <= self.min_lr <= self.lr, "min_lr", "in [0, lr]"),
            (0 <= self.label_smoothing < 1, "label_smoothing", "in [0, 1)"),
            (self.clip_grad is None or self.clip_grad > 0, "clip_grad", "None or > 0"),
            (0 <= self.ema_decay < 1, "ema_decay", "in [0, 1) (0 turns EMA off)"),
            (0 <= self.random_erasing <= 1, "random_erasing", "in [0, 1]"),
            (self.mixup >= 0 and self.cutmix >= 0, "mixup/cutmix", ">= 0"),
            (0 < self.subset <= 1, "subset", "in (0, 1]"),
            (0 <= self.val_fraction < 1, "val_fraction", "in [0, 1)"),
            (self.num_workers >= 0, "num_workers", ">= 0"),
            (self.device in DEVICES, "device", f"one of {DEVICES}"),
            (self.image_size is None or self.image_size > 0, "image_size", "None or > 0"),
            (self.max_steps_per_epoch is None or self.max_steps_per_epoch >= 1, "max_steps_per_epoch", "None or >= 1"),
            (self.val_every >= 1, "val_every", "an integer >= 1"),
        ]
        for ok, name, expected in checks:
            if not ok:
                raise ValueError(f"TrainConfig.{name} must be {expected}, got {getattr(self, name.split('/')[0])!r}")
        if self.distill is not None:
            self.distill.validate()
        return self

    # JSON round trip -------------------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "config") -> TrainConfig:
        """Build from a dict, refusing unknown keys (a typo must not silently fall back to a default)."""
        data = checked_fields(cls, data, source)
        if isinstance(data.get("distill"), dict):
            data["distill"] = DistillConfig(**checked_fields(DistillConfig, data["distill"], f"{source} (distill)"))
        return cls(**data)

    @classmethod
    def from_json(cls, text: str, source: str = "config") -> TrainConfig:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ValueError(f"{source} is not valid JSON: {exc}") from exc
        return cls.from_dict(data, source)

    @classmethod
    def load(cls, path: str | os.PathLike) -> TrainConfig:
        """Read a TrainConfig JSON file (or the ``train`` section of a checkpoint's ``config.json``)."""
        data = read_json(path, "training config")
        if isinstance(data, dict) and "train" in data and "model" in data and isinstance(data["train"], dict):
            data = data["train"]  # a checkpoint's config.json: take its training section
        return cls.from_dict(data, str(Path(path)))

    def changes_from(self, other: TrainConfig) -> list[str]:
        """Names of the fields whose values differ between self and ``other``."""
        a, b = self.to_dict(), other.to_dict()
        return [k for k in a if a[k] != b[k]]
