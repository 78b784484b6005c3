"""Fixtures for the training tests: tiny runs on synthetic data, one thread (faster than two on a shared 2-core box)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from ibit_deploy.train import TrainConfig


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_config(out: Path, **overrides) -> TrainConfig:
    """The smallest meaningful run: ibit_test_patch4_28 on 64 synthetic images, a few steps per epoch."""
    fields = {"model": "ibit_test_patch4_28", "data": "synthetic:64", "epochs": 2, "batch_size": 8, "num_workers": 0,
              "max_steps_per_epoch": 2, "warmup_epochs": 0.5, "progress": False, "out": str(out)}
    return TrainConfig(**{**fields, **overrides})


@pytest.fixture(scope="session")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """A finished 2-epoch run with EMA (shared by the trainer and evaluation tests). Returns (out dir, result)."""
    from ibit_deploy.train import train

    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("run") / "ibit"
    return out, train(tiny_config(out, ema_decay=0.9))
