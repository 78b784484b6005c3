"""Eval preprocessing without torch: at the model's size it is numpy, bit for bit what the torchvision transform
training used gives; a resize without torch is refused with the sizes to use."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ibit_deploy
from ibit_deploy.data.preprocess import normalize_pixels, preprocess_images
from ibit_deploy.data.transforms import eval_transform

ROOT = Path(ibit_deploy.__file__).resolve().parent.parent


@pytest.mark.parametrize("mean, std", [((0.1307,), (0.3081,)), ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616))])
def test_numpy_path_is_bitwise_the_torchvision_eval_transform(mean, std):
    images = np.random.default_rng(0).integers(0, 256, (6, 20, 20, len(mean)), dtype=np.uint8)
    tf = eval_transform((20, 20), mean, std)
    expected = torch.stack([tf(im) for im in images]).numpy()
    assert np.array_equal(normalize_pixels(images, mean, std), expected)
    assert np.array_equal(preprocess_images(images, (20, 20), mean, std), expected)
    resized = preprocess_images(images, (16, 16), mean, std)  # a resize still goes through torchvision
    assert np.array_equal(resized, torch.stack([eval_transform((16, 16), mean, std)(im) for im in images]).numpy())


def test_without_torch_same_size_works_and_a_resize_is_refused_naming_the_sizes():
    code = ("import sys\n"
            "sys.modules['torch'] = None  # as on a device install: import torch fails\n"
            "import numpy as np\n"
            "from ibit_deploy.data.preprocess import preprocess_images\n"
            "x = np.zeros((2, 28, 28, 1), np.uint8)\n"
            "print(preprocess_images(x, (28, 28), (0.5,), (0.5,)).shape)\n"
            "try:\n"
            "    preprocess_images(x, (32, 32), (0.5,), (0.5,))\n"
            "except ValueError as exc:\n"
            "    print(exc)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    shape, message = done.stdout.strip().splitlines()
    assert shape == "(2, 1, 28, 28)"
    assert "28x28" in message and "32x32" in message and "torch" in message
