"""check_checkpoint_contract on models of every family: IBiT, a timm baseline, a convolutional teacher."""

from __future__ import annotations

import pytest

from ibit_deploy.checkpoint_contract import check_checkpoint_contract, model_input_channels, model_output_width
from ibit_deploy.models import create_model, matching_baseline_kwargs
from ibit_deploy.train.build import build_model

CONFIG = {"classes": [str(i) for i in range(10)], "input": {"in_chans": 1, "mean": [0.5], "std": [0.25]},
          "data": {"channels": 1}}


@pytest.mark.parametrize("build", [
    lambda: create_model("ibit_test_patch4_28"),
    lambda: create_model("vit_tiny_patch16_224", **matching_baseline_kwargs("ibit_test_patch4_28")),
    lambda: build_model("resnet_small", {"in_chans": 1, "num_classes": 10}),
], ids=["ibit", "vit", "resnet_small"])
def test_consistent_configs_pass_and_each_field_is_checked(build):
    model = build()
    assert model_input_channels(model) == 1 and model_output_width(model) == 10
    check_checkpoint_contract(model, CONFIG, "ck")
    with pytest.raises(ValueError, match=r"ck/config.json: data.channels is 3"):
        check_checkpoint_contract(model, {**CONFIG, "data": {"channels": 3}}, "ck")
    with pytest.raises(ValueError, match=r"input.std must be > 0"):
        check_checkpoint_contract(model, {**CONFIG, "input": {"in_chans": 1, "mean": [0.5], "std": [-1.0]}}, "ck")
    with pytest.raises(ValueError, match=r"input.mean must be finite"):
        check_checkpoint_contract(model, {**CONFIG, "input": {"mean": [float("nan")], "std": [1.0]}}, "ck")
    with pytest.raises(ValueError, match=r"classes must be a list of class-name strings"):
        check_checkpoint_contract(model, {**CONFIG, "classes": list(range(10))}, "ck")
