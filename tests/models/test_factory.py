"""create_model: IBiT variants and timm baselines with the same overrides, and clear errors."""

from __future__ import annotations

import pytest
import torch

import ibit_deploy
import ibit_deploy.models as models


@pytest.mark.parametrize("baseline", ["vit_tiny_patch16_224", "deit_tiny_patch16_224", "convit_tiny"])
def test_equal_size_baselines(baseline):
    kwargs = models.matching_baseline_kwargs("ibit_test_patch4_28")
    model = models.create_model(baseline, **kwargs)
    ibit = models.create_model("ibit_test_patch4_28")
    assert model.embed_dim == ibit.embed_dim and len(model.blocks) == len(ibit.blocks)
    assert model(torch.randn(2, 1, 28, 28)).shape == (2, 10)
    assert models.data_config(model)["input_size"] == (1, 28, 28)
    assert model.build_spec == {"name": baseline, "kwargs": kwargs}


def test_overrides_apply_to_ibit():
    model = models.create_model("ibit_tiny_patch4_32", depth=3, embed_dim=64, num_heads=4, num_classes=7, in_chans=1)
    assert len(model.blocks) == 3 and model.embed_dim == 64 and model.num_classes == 7
    cfg = models.data_config(model)
    assert cfg["input_size"] == (1, 32, 32) and cfg["num_classes"] == 7
    # CIFAR statistics averaged down to the one channel asked for
    assert cfg["mean"][0] == pytest.approx(0.4734, abs=1e-3) and cfg["std"][0] == pytest.approx(0.2507, abs=1e-3)


def test_package_level_lazy_names():
    assert ibit_deploy.create_model is models.create_model
    assert "ibit_tiny_patch16_224" in ibit_deploy.available_models()


def test_unknown_name_lists_available():
    with pytest.raises(ValueError, match="unknown model 'resnet50'.*ibit_tiny_patch16_224"):
        models.create_model("resnet50")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"img_size": 30}, "not divisible by patch_size"),
        ({"mask_rank": 0}, "mask rank must be in"),
        ({"attn_mode": "gated"}, "attention mode must be one of"),
        ({"init": "xavier"}, "init must be one of"),
        ({"dynamic_img_size": True}, "dynamic_img_size"),
    ],
)
def test_bad_input(kwargs, match):
    with pytest.raises(ValueError, match=match):
        models.create_model("ibit_test_patch4_28", **kwargs)


def test_pretrained_weights_are_refused_plainly():
    with pytest.raises(ValueError, match="no pretrained weights"):
        models.create_model("ibit_test_patch4_28", pretrained=True)
