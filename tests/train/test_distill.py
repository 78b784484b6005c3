"""LIB-KD: the stored teacher logits (format, fingerprint refusal), the loss math, and a tiny end-to-end run."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ibit_deploy.data import split_arrays
from ibit_deploy.train import (
    DistillationLoss,
    DistillConfig,
    compute_teacher_logits,
    load_teacher_logits,
    train,
    train_teachers,
)
from ibit_deploy.train.distill import save_teacher_logits

from .conftest import tiny_config


def _store(path, n=6, classes=3, fingerprint="f" * 64):
    logits = np.random.default_rng(0).normal(size=(2, n, classes)).astype(np.float32)
    save_teacher_logits(path, logits, fingerprint, ["resnet_small", "rednet_small"], [3.0, 1.0], "synthetic:64")
    return logits


def test_store_and_load_round_trip(tmp_path):
    logits = _store(tmp_path / "t.npz")
    stored = load_teacher_logits(tmp_path / "t.npz", "f" * 64, num_samples=6, num_classes=3)
    assert stored.teachers == ["resnet_small", "rednet_small"] and stored.weights == [3.0, 1.0]
    assert torch.equal(stored.logits, torch.from_numpy(logits))
    expected = 0.75 * logits[0] + 0.25 * logits[1]  # weights normalised to sum 1
    assert np.allclose(stored.combined().numpy(), expected, atol=1e-6)
    assert np.allclose(stored.combined([0, 1]).numpy(), logits[1])
    with np.load(tmp_path / "t.npz", allow_pickle=False) as npz:  # plain arrays only
        assert set(npz.files) >= {"logits", "indices", "fingerprint", "teachers", "weights"}


def test_logits_from_another_split_are_refused_naming_both_fingerprints(tmp_path):
    _store(tmp_path / "t.npz", fingerprint="a" * 64)
    with pytest.raises(ValueError) as err:
        load_teacher_logits(tmp_path / "t.npz", "b" * 64)
    assert "a" * 64 in str(err.value) and "b" * 64 in str(err.value) and "t.npz" in str(err.value)
    with pytest.raises(ValueError, match="logits for 6 samples, the training split has 7"):
        load_teacher_logits(tmp_path / "t.npz", num_samples=7)
    with pytest.raises(ValueError, match="3 classes, the dataset has 10"):
        load_teacher_logits(tmp_path / "t.npz", num_classes=10)


def test_bad_logits_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_teacher_logits(tmp_path / "missing.npz")
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="junk.npz is not a teacher-logits"):
        load_teacher_logits(tmp_path / "junk.npz")
    np.savez(tmp_path / "objects.npz", logits=np.array([{"a": 1}], dtype=object))  # would need pickle to read
    with pytest.raises(ValueError, match="objects.npz"):
        load_teacher_logits(tmp_path / "objects.npz")
    with pytest.raises(ValueError, match="NaN or inf"):
        save_teacher_logits(tmp_path / "nan.npz", np.full((1, 2, 3), np.nan), "f", ["t"], [1.0], "s")


def test_soft_loss_is_kl_times_tau_squared():
    torch.manual_seed(0)
    cls, dist, teacher = torch.randn(4, 5), torch.randn(4, 5), torch.randn(4, 5)
    y = torch.tensor([0, 1, 2, 3])
    loss = DistillationLoss(nn.CrossEntropyLoss(), alpha=0.3, tau=2.0, kind="soft")((cls, dist), y, teacher)
    p = F.softmax(teacher / 2, -1)
    kl = (p * (p.log() - F.log_softmax(dist / 2, -1))).sum(-1).mean() * 4
    assert loss.item() == pytest.approx((0.7 * F.cross_entropy(cls, y) + 0.3 * kl).item(), rel=1e-5)
    # A student that matches the teacher exactly pays nothing for distillation.
    same = DistillationLoss(nn.CrossEntropyLoss(), alpha=1.0, tau=3.0)((cls, teacher), y, teacher)
    assert same.item() == pytest.approx(0.0, abs=1e-6)


def test_hard_loss_is_ce_against_teacher_argmax_and_alpha_zero_is_plain_ce():
    torch.manual_seed(1)
    cls, dist, teacher = torch.randn(6, 4), torch.randn(6, 4), torch.randn(6, 4)
    y = torch.randint(0, 4, (6,))
    loss = DistillationLoss(nn.CrossEntropyLoss(), alpha=0.5, kind="hard")((cls, dist), y, teacher)
    expected = 0.5 * F.cross_entropy(cls, y) + 0.5 * F.cross_entropy(dist, teacher.argmax(-1))
    assert loss.item() == pytest.approx(expected.item(), rel=1e-5)
    plain = DistillationLoss(nn.CrossEntropyLoss(), alpha=0.0)((cls, dist), y, teacher)
    assert plain.item() == pytest.approx(F.cross_entropy(cls, y).item(), rel=1e-6)


def test_mixed_batches_mix_teacher_targets_like_the_images():
    torch.manual_seed(2)
    dist, teacher = torch.randn(4, 3), torch.randn(4, 3)
    lam = 0.7
    loss = DistillationLoss(nn.CrossEntropyLoss(), alpha=1.0, kind="hard")((dist, dist), torch.zeros(4).long(),
                                                                          teacher, lam)
    onehot = F.one_hot(teacher.argmax(-1), 3).float()
    target = lam * onehot + (1 - lam) * onehot.flip(0)
    assert loss.item() == pytest.approx((-(target * F.log_softmax(dist, -1)).sum(-1).mean()).item(), rel=1e-5)


def test_student_needs_two_heads():
    with pytest.raises(ValueError, match="distilled=True"):
        DistillationLoss(nn.CrossEntropyLoss())(torch.randn(2, 3), torch.zeros(2).long(), torch.randn(2, 3))


def test_teachers_to_logits_to_student(tmp_path):
    base = tiny_config(tmp_path / "unused", epochs=1)
    dirs = train_teachers(["resnet_small", "rednet_small"], base, tmp_path,
                          {"resnet_small": {"stem_stride": 2}, "rednet_small": {"kernel_size": 3}})
    assert json.loads((dirs[1] / "config.json").read_text())["model"]["kwargs"]["kernel_size"] == 3
    path = compute_teacher_logits(dirs, tmp_path / "teachers.npz", weights=[0.6, 0.4])
    _, labels, fingerprint = split_arrays("synthetic:64", "train", 0.2, 0)
    stored = load_teacher_logits(path, fingerprint, num_samples=len(labels), num_classes=4)
    assert stored.teachers == ["resnet_small", "rednet_small"] and stored.weights == [0.6, 0.4]

    student = dataclasses.replace(base, out=str(tmp_path / "student"), mixup=0.8,
                                  distill=DistillConfig(logits=str(path), alpha=0.5, kind="soft", tau=2.0))
    result = train(student)
    config = json.loads((tmp_path / "student" / "config.json").read_text())
    assert config["model"]["kwargs"]["distilled"] is True
    assert config["distill"]["teachers"] == ["resnet_small", "rednet_small"]
    assert np.isfinite(result["val_loss"])

    other_split = dataclasses.replace(student, out=str(tmp_path / "student2"), subset=0.5)
    with pytest.raises(ValueError, match="fingerprint"):
        train(other_split)
