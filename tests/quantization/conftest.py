"""Session fixtures: a tiny IBiT trained for a few seconds on mnist5k (55-85% top-1 by seed, ~65% at seed 0), and its fp32 bundle.

An untrained model scores ~10%, so agreement and accuracy-drop checks would be meaningless on it; 400 AdamW steps
of ibit_test_patch4_28 on one thread take ~20 s here.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

TRAIN_STEPS = 400
EVAL_COUNT = 500  # validation images for gates in tests (the library default is 1000)


def train_tiny(directory: Path, steps: int = TRAIN_STEPS, seed: int = 0) -> Path:
    """Train ibit_test_patch4_28 on mnist5k's training split and save it as a checkpoint directory."""
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
    return train_tiny(tmp_path_factory.mktemp("quant") / "trained")


@pytest.fixture(scope="session")
def trained_bundle(trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """(bundle dir, manifest) of the trained model exported at fp32."""
    from ibit_deploy.export.pipeline import export_checkpoint

    out = tmp_path_factory.mktemp("quant") / "bundle_fp32"
    return out, export_checkpoint(trained_checkpoint, out)


@pytest.fixture(scope="session")
def val_set(trained_bundle) -> tuple[np.ndarray, np.ndarray]:
    """EVAL_COUNT held-out validation images and labels, preprocessed as the manifest says."""
    from ibit_deploy.data import eval_arrays

    _, manifest = trained_bundle
    inp = manifest["input"]
    return eval_arrays("mnist5k", "val", tuple(inp["image_size"]), tuple(inp["mean"]), tuple(inp["std"]),
                       limit=EVAL_COUNT)


@pytest.fixture(scope="session")
def calibration_images(trained_bundle) -> np.ndarray:
    from ibit_deploy.calibration import build_calibration_set

    _, manifest = trained_bundle
    return build_calibration_set("mnist5k", manifest["input"], 128, seed=0)


@pytest.fixture(scope="session")
def int8_export(trained_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """The trained checkpoint exported end to end with --precision int8 (default options, gate on 500 images)."""
    from ibit_deploy.export.pipeline import ExportOptions, export_checkpoint

    out = tmp_path_factory.mktemp("quant") / "bundle_int8"
    options = ExportOptions(precision="int8", quantize={"eval_count": EVAL_COUNT, "threads": 1})
    return out, export_checkpoint(trained_checkpoint, out, options)
