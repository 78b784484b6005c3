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
from ..devicekit.fileio import parse_json_text, read_json
from ..devicekit.numbers import BATCH, COUNT, SEED, Range

DISTILL_KINDS = ("soft", "hard")
DEVICES = ("auto", "cpu", "cuda")

FRACTION = Range(0, 1)
# Every numeric field's range: checked by TrainConfig.validate (config files, saved runs) and by ibit-train's flags
# when they are parsed. None is allowed where the field's default is None.
RANGES: dict[str, Range] = {
    "image_size": Range(1, 8192, integer=True),  # 8192^2 is the image reader's 64-megapixel limit
    "val_fraction": Range(0, 1, high_open=True),
    "subset": Range(0, 1, low_open=True),
    "seed": SEED,
    "epochs": COUNT,
    "batch_size": BATCH,
    "lr": Range(0, low_open=True),
    "weight_decay": Range(0),
    "warmup_epochs": Range(0),
    "min_lr": Range(0),  # and <= lr
    "label_smoothing": Range(0, 1, high_open=True),
    "clip_grad": Range(0, low_open=True),
    "ema_decay": Range(0, 1, high_open=True),  # 0 turns EMA off
    "randaugment_magnitude": Range(0, 30, integer=True),  # RandAugment's 31 magnitude bins
    "random_erasing": FRACTION,
    "mixup": Range(0),  # Beta(a, a); 0 off
    "cutmix": Range(0),
    "num_workers": Range(0, 256, integer=True),  # data-loader processes; more is a fork storm, not a speed-up
    "max_steps_per_epoch": COUNT,
    "val_every": COUNT,
}
DISTILL_RANGES: dict[str, Range] = {"alpha": FRACTION, "tau": Range(0, low_open=True)}
TEACHER_WEIGHT = Range(0)  # each; the weights need a positive sum

OPTIONAL = ("image_size", "clip_grad", "max_steps_per_epoch")  # None: native size, no clipping, no cap
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
        for name, rule in DISTILL_RANGES.items():
            rule.check_value(getattr(self, name), f"distill.{name}")
        if self.kind not in DISTILL_KINDS:
            raise ValueError(f"distill.kind must be one of {DISTILL_KINDS}, got {self.kind!r}")
        if self.teacher_weights is not None:
            check_teacher_weights(self.teacher_weights, "distill.teacher_weights")


def check_teacher_weights(weights: Any, name: str) -> list[float]:
    """The teachers' weights: a non-empty list of finite numbers >= 0 with a positive sum; else ValueError naming
    ``name``."""
    if not isinstance(weights, list) or not weights:
        raise ValueError(f"{name} must be a non-empty list of numbers, got {weights!r}")
    values = [float(TEACHER_WEIGHT.check_value(w, f"each of {name}")) for w in weights]
    if sum(values) <= 0:
        raise ValueError(f"{name} must have a positive sum, got {weights}")
    return values


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
        for name, rule in RANGES.items():
            value = getattr(self, name)
            if value is not None or name not in OPTIONAL:
                rule.check_value(value, f"TrainConfig.{name}")
        if self.min_lr > self.lr:
            raise ValueError(f"TrainConfig.min_lr must be <= lr ({self.lr}), got {self.min_lr}")
        kinds = {"model": str, "data": str, "out": str, "model_kwargs": dict, "hflip": bool, "progress": bool}
        for name, kind in kinds.items():
            if not isinstance(getattr(self, name), kind):
                raise ValueError(f"TrainConfig.{name} must be a {kind.__name__}, got {getattr(self, name)!r}")
        if self.amp is not None and not isinstance(self.amp, bool):
            raise ValueError(f"TrainConfig.amp must be true, false or null, got {self.amp!r}")
        if self.device not in DEVICES:
            raise ValueError(f"TrainConfig.device must be one of {DEVICES}, got {self.device!r}")
        if self.distill is not None and not isinstance(self.distill, DistillConfig):
            raise ValueError(f"TrainConfig.distill must be a JSON object or null, got {self.distill!r}")
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
        return cls.from_dict(parse_json_text(text, source, "training config"), source)

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
