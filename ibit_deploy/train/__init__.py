"""Training: ``train(TrainConfig)`` (single process or torchrun), evaluation, LIB-KD distillation, and
``train_steps`` (a fixed-step in-memory loop for smoke models)."""

from .build import build_model, load_trained
from .config import DistillConfig, TrainConfig
from .distill import DistillationLoss, TeacherLogits, load_teacher_logits
from .evaluate import evaluate_checkpoint, evaluate_model
from .quick import train_steps
from .teachers import compute_teacher_logits, train_teachers
from .trainer import NonFiniteLossError, train

__all__ = [
    "DistillConfig", "DistillationLoss", "NonFiniteLossError", "TeacherLogits", "TrainConfig", "build_model",
    "compute_teacher_logits", "evaluate_checkpoint", "evaluate_model", "load_teacher_logits", "load_trained", "train",
    "train_steps", "train_teachers",
]
