"""Mask visualisation: the maps are the dense mask's query row, and the PNG is written."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import ibit_deploy.models as models
from ibit_deploy.cli.masks import main
from ibit_deploy.models.locality import patch_distance
from ibit_deploy.viz import mask_maps, plot_masks


def test_maps_are_query_rows_of_dense_mask():
    model = models.create_model("ibit_test_patch4_28", mask_rank=50)  # full rank: maps equal the Gaussian target
    maps = mask_maps(model, (3, 2))
    assert maps.shape == (2, 2, 7, 7)
    expected = np.exp(-0.5 * patch_distance(7, 7))[3 * 7 + 2].reshape(7, 7)
    assert np.allclose(maps[0, 0], expected, atol=1e-4)
    assert maps[1, 1].argmax() == 3 * 7 + 2


def test_png_written(tmp_path):
    out = plot_masks(models.create_model("ibit_test_patch4_28"), tmp_path / "m.png")
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_query_and_baseline():
    with pytest.raises(ValueError, match="outside the 7x7 patch grid"):
        mask_maps(models.create_model("ibit_test_patch4_28"), (7, 0))
    vit = models.create_model("vit_tiny_patch16_224", **models.matching_baseline_kwargs("ibit_test_patch4_28"))
    with pytest.raises(ValueError, match="no IBiT attention"):
        mask_maps(vit, (0, 0))


def test_cli_on_checkpoint(tiny_checkpoint, tmp_path, capsys):
    assert main([str(tiny_checkpoint), "--query", "1,1", "--out", str(tmp_path / "q.png")]) == 0
    assert (tmp_path / "q.png").is_file()
    assert main([str(tmp_path / "missing"), "--out", str(tmp_path / "x.png")]) == 2
    assert "unknown model" in capsys.readouterr().err
    torch.manual_seed(0)
