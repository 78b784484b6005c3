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


TRAIN_STEPS = 400


def train_tiny(directory: Path, steps: int = TRAIN_STEPS, seed: int = 0) -> Path:
    """Train ibit_test_patch4_28 on mnist5k's training split and save it as a checkpoint directory.

    An untrained model scores ~10%, so agreement and accuracy checks would be meaningless on it; 400 AdamW steps on
    one thread take ~20 s here and reach 55-85% top-1 by seed (~65% at seed 0).
    """
    from ibit_deploy.checkpoint import checkpoint_config, save_checkpoint
    from ibit_deploy.data import build_dataset
    from ibit_deploy.models import create_model
    from ibit_deploy.train.quick import train_steps

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # two shared cores: one thread is several times faster than two fighting
    try:
        torch.manual_seed(seed)
        model = create_model("ibit_test_patch4_28")
        dataset, info = build_dataset("mnist5k", "train")
        images = torch.stack([dataset[i][0] for i in range(len(dataset))])
        labels = torch.as_tensor(dataset.labels)
        train_steps(model, images, labels, steps, lr=3e-3, seed=seed)
    finally:
        torch.set_num_threads(threads)
    save_checkpoint(directory, model, checkpoint_config(model, info))
    return directory


@pytest.fixture(scope="session")
def trained_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny IBiT trained for a few seconds on mnist5k (shared by the quantization, package and example tests)."""
    return train_tiny(tmp_path_factory.mktemp("quant") / "trained")


@pytest.fixture(scope="session")
def trained_bundle(trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """(bundle dir, manifest) of the trained model exported at fp32. Tests must not modify it (copy it first)."""
    from ibit_deploy.export.pipeline import export_checkpoint

    out = tmp_path_factory.mktemp("quant") / "bundle_fp32"
    return out, export_checkpoint(trained_checkpoint, out)
