"""Shared fixtures: a tiny checkpoint on disk, built once per session; torch kept to the cores CI has."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

torch.set_num_threads(min(2, torch.get_num_threads()))


def make_checkpoint(directory: Path, name: str = "ibit_test_patch4_28", spec: str = "mnist5k", **model_kwargs) -> Path:
    """Save an (untrained) model as a checkpoint directory with the config fields ibit-train writes."""
    from ibit_deploy.checkpoint import checkpoint_config, save_checkpoint
    from ibit_deploy.data import data_info
    from ibit_deploy.models import create_model

    model = create_model(name, **model_kwargs)
    save_checkpoint(directory, model, checkpoint_config(model, data_info(spec)))
    return directory


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ibit_test_patch4_28 checkpoint on mnist5k."""
    return make_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny")


@pytest.fixture(scope="session")
def checkpoint_factory():
    """The function that writes checkpoints, for tests that need another model than the tiny one."""
    return make_checkpoint
