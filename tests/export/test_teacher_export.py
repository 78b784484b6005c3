"""A CNN teacher (no patch_embed, built by create_teacher) exports through the same path as IBiT: the CNN reference of
``ibit-deploy compare`` is timed like every other candidate."""

from __future__ import annotations

import pytest

from ibit_deploy.checkpoint import checkpoint_config, load_checkpoint, save_checkpoint
from ibit_deploy.data import data_info
from ibit_deploy.export.pipeline import ExportOptions, export_checkpoint
from ibit_deploy.models.teachers import create_teacher


@pytest.mark.slow  # ~10 s idle, ~50 s on the shared 2-core machine
def test_resnet_teacher_checkpoint_loads_and_exports(tmp_path):
    model = create_teacher("resnet_small", in_chans=1, num_classes=10, stem_stride=2)
    save_checkpoint(tmp_path / "ckpt", model, checkpoint_config(model, data_info("mnist5k")))
    loaded, _ = load_checkpoint(tmp_path / "ckpt")
    assert type(loaded).__name__ == type(model).__name__
    manifest = export_checkpoint(tmp_path / "ckpt", tmp_path / "bundle", ExportOptions(to="onnx", precision="fp32"))
    assert manifest["input"]["shape"][1:] == [1, 28, 28]
    assert manifest["model"]["attn_mode"] == "timm" and not manifest["model"]["folded"]
    assert manifest["artifacts"][0]["parity"]["max_abs_diff"] < 1e-3
