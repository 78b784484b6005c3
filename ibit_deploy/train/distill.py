"""LIB-KD: the stored teacher-logits format and the DeiT-style loss that distils them into a student.

The workflow that trains teachers and computes their logits lives in :mod:`.teachers` (it runs the trainer, which
imports this module for the loss). Workflow (METHODS.md section 6)::

    train teachers      train(TrainConfig(model="resnet_small", ...)), train(TrainConfig(model="rednet_small", ...))
    store their logits  compute_teacher_logits([dir_resnet, dir_rednet], "teachers.npz", weights=[0.5, 0.5])
    train the student   train(TrainConfig(model="ibit_...", distill=DistillConfig(logits="teachers.npz", ...)))

Stored logits are computed over the teachers' training split in eval mode on un-augmented images, once (that is
what LIB-KD does: no teacher forward pass during student training). The student sees augmented images, so its
distillation target is the teachers' view of the clean image; with mixup/cutmix the targets are mixed with the same
lambda and pairing as the images. The ``.npz`` (read with ``allow_pickle=False``) is keyed by sample index within the
split and carries the split's fingerprint; loading refuses logits made for another dataset, split or subset.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..devicekit.fileio import atomic_path
from ..outputs import TEACHER_LOGITS, npz_marker, source_id

LOGITS_FORMAT = 1
_REQUIRED = ("format_version", "logits", "indices", "fingerprint", "teachers", "weights", "spec")


@dataclass
class TeacherLogits:
    """Per-teacher logits over one split: ``logits[k, i]`` is teacher ``k``'s output for sample index ``i``."""

    logits: torch.Tensor  # (teachers, N, classes) float32
    teachers: list[str]
    weights: list[float]
    fingerprint: str
    spec: str

    def combined(self, weights: list[float] | None = None) -> torch.Tensor:
        """The weighted sum of the teachers' logits, weights normalised to sum 1: (N, classes)."""
        w = torch.tensor(weights if weights is not None else self.weights, dtype=torch.float32)
        if len(w) != self.logits.shape[0]:
            raise ValueError(f"{len(w)} teacher weights given for {self.logits.shape[0]} teachers {self.teachers}")
        w = w / w.sum()
        return torch.einsum("k,knc->nc", w, self.logits)


def teachers_source(teacher_dirs: list[str | os.PathLike]) -> str:
    """What teacher logits are made from, as the write policy records it: the teachers' paths, in order."""
    return ",".join(str(source_id(d)) for d in teacher_dirs)


def save_teacher_logits(path: str | os.PathLike, logits: np.ndarray, fingerprint: str, teachers: list[str],
                        weights: list[float], spec: str, source: str | None = None) -> Path:
    """Write a teacher-logits ``.npz`` atomically. ``logits``: (teachers, N, classes), row i = sample index i.

    The file carries the write policy's kind marker with ``source`` (:func:`teachers_source` of the teachers).
    """
    logits = np.asarray(logits, dtype=np.float32)
    if logits.ndim != 3 or logits.shape[0] != len(teachers) or len(weights) != len(teachers):
        raise ValueError(f"expected logits (teachers, N, classes) with one name and weight per teacher, got "
                         f"{logits.shape}, {len(teachers)} names, {len(weights)} weights")
    if not np.isfinite(logits).all():
        raise ValueError("teacher logits contain NaN or inf; the teachers did not train properly")
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:  # a file handle: np.savez would append .npz to a path
        np.savez(fh, format_version=np.int64(LOGITS_FORMAT), logits=logits,
                 indices=np.arange(logits.shape[1], dtype=np.int64), fingerprint=np.array(fingerprint),
                 teachers=np.array(teachers), weights=np.asarray(weights, np.float64), spec=np.array(spec),
                 **npz_marker(TEACHER_LOGITS, source))
    return path


def load_teacher_logits(path: str | os.PathLike, expected_fingerprint: str | None = None,
                        num_samples: int | None = None, num_classes: int | None = None) -> TeacherLogits:
    """Read a teacher-logits file, refusing one made for another dataset/split (fingerprint) or class count."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"teacher logits file not found: {path} (write it with teachers.compute_teacher_logits / "
                                f"python -m ibit_deploy.cli.distill)")
    try:
        with np.load(path, allow_pickle=False) as npz:
            data = {k: npz[k] for k in npz.files}
    except Exception as exc:  # zip, pickle-refusal and format errors all mean "not our file"
        raise ValueError(f"{path} is not a teacher-logits .npz: {exc}") from exc
    missing = [k for k in _REQUIRED if k not in data]
    if missing:
        raise ValueError(f"{path}: missing arrays {missing}; expected {list(_REQUIRED)}")
    if int(data["format_version"]) != LOGITS_FORMAT:
        raise ValueError(f"{path}: format_version {int(data['format_version'])}, expected {LOGITS_FORMAT}")
    logits, indices = data["logits"], data["indices"]
    stored = str(data["fingerprint"])
    if expected_fingerprint is not None and stored != expected_fingerprint:
        raise ValueError(f"{path}: teacher logits were computed for dataset {str(data['spec'])!r} with split fingerprint "
                         f"{stored}, but the training split has fingerprint {expected_fingerprint}; the sample "
                         f"indices would not line up. Recompute the logits on the same data spec, val_fraction, seed "
                         f"and subset as the student.")
    if logits.ndim != 3 or not np.array_equal(indices, np.arange(logits.shape[1])):
        raise ValueError(f"{path}: expected logits (teachers, N, classes) keyed by indices 0..N-1, got {logits.shape}")
    if num_samples is not None and logits.shape[1] != num_samples:
        raise ValueError(f"{path}: logits for {logits.shape[1]} samples, the training split has {num_samples}")
    if num_classes is not None and logits.shape[2] != num_classes:
        raise ValueError(f"{path}: logits have {logits.shape[2]} classes, the dataset has {num_classes}")
    return TeacherLogits(torch.from_numpy(logits.astype(np.float32)), [str(t) for t in data["teachers"]],
                         [float(w) for w in data["weights"]], stored, str(data["spec"]))


class DistillationLoss(nn.Module):
    """(1 - alpha) * base(cls head, y) + alpha * distill(dist head, teachers).

    soft:  KL(softmax(t / T) || softmax(s / T)) * T^2, averaged over the batch
    hard:  CE(s, argmax t)

    ``lam`` (from mixup/cutmix in timm's batch mode) mixes the teacher targets the way the images were mixed:
    ``lam * target + (1 - lam) * target.flip(0)``; mixing happens on probabilities (soft) or one-hot labels (hard).
    """

    def __init__(self, base: nn.Module, alpha: float = 0.5, tau: float = 1.0, kind: str = "soft") -> None:
        super().__init__()
        if kind not in ("soft", "hard"):
            raise ValueError(f"distillation kind must be 'soft' or 'hard', got {kind!r}")
        self.base, self.alpha, self.tau, self.kind = base, alpha, tau, kind

    def forward(self, outputs: tuple[torch.Tensor, torch.Tensor], target: torch.Tensor, teacher: torch.Tensor,
                lam: float | None = None) -> torch.Tensor:
        if not isinstance(outputs, (tuple, list)) or len(outputs) != 2:
            raise ValueError("distillation needs (cls_logits, dist_logits): build the student with distilled=True and "
                             "set model.distilled_training = True")
        cls_out, dist_out = outputs
        teacher = teacher.float()
        if self.kind == "soft":
            probs = F.softmax(teacher / self.tau, dim=-1)
        else:
            probs = F.one_hot(teacher.argmax(-1), teacher.shape[-1]).float()
        if lam is not None:
            probs = lam * probs + (1.0 - lam) * probs.flip(0)
        log_student = F.log_softmax(dist_out.float() / (self.tau if self.kind == "soft" else 1.0), dim=-1)
        if self.kind == "soft":
            distill = F.kl_div(log_student, probs, reduction="batchmean") * (self.tau * self.tau)
        else:
            distill = torch.sum(-probs * log_student, dim=-1).mean()
        return (1.0 - self.alpha) * self.base(cls_out, target) + self.alpha * distill
