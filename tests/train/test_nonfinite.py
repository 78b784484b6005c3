"""A NaN loss stops training with a clear message, keeps the last good checkpoint, and ibit-train exits non-zero."""

from __future__ import annotations

import json

import pytest
import torch

from ibit_deploy.cli.train import main
from ibit_deploy.train import NonFiniteLossError, train
from ibit_deploy.train.records import read_metrics
from ibit_deploy.train.trainer import _Run

from .conftest import tiny_config


@pytest.fixture
def nan_from_step_3(monkeypatch):
    """Make the loss NaN from the third optimizer step on (epoch 2 of a 2-steps-per-epoch run)."""
    forward = _Run._forward

    def poisoned(self, *args):
        loss, logits = forward(self, *args)
        return (loss * float("nan") if self.step >= 2 else loss), logits

    monkeypatch.setattr(_Run, "_forward", poisoned)


def test_nan_keeps_last_good_checkpoint(tmp_path, nan_from_step_3):
    out = tmp_path / "run"
    with pytest.raises(NonFiniteLossError, match=r"loss is nan .* at epoch 2, step 3.*checkpoint of epoch 1"):
        train(tiny_config(out, epochs=3))
    assert [r["epoch"] for r in read_metrics(out)] == [1]
    config = json.loads((out / "config.json").read_text())
    assert config["metrics"]["epochs_completed"] == 1
    from safetensors.torch import load_file

    assert all(torch.isfinite(t).all() for t in load_file(out / "model.safetensors").values())


def test_cli_exits_non_zero_on_nan(tmp_path, nan_from_step_3, capsys):
    code = main(["--model", "ibit_test_patch4_28", "--data", "synthetic:64", "--epochs", "2", "--batch-size", "8",
                 "--max-steps-per-epoch", "2", "--num-workers", "0", "--out", str(tmp_path / "cli")])
    assert code == 1
    assert "non-finite" in capsys.readouterr().err


def test_absurd_learning_rate_is_caught(tmp_path):
    with pytest.raises(NonFiniteLossError, match="no epoch finished"):
        train(tiny_config(tmp_path / "lr", lr=1e20, min_lr=0.0, warmup_epochs=0, max_steps_per_epoch=4, epochs=1,
                          label_smoothing=0.0))
