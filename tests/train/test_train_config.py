"""TrainConfig: JSON round trip, strict loading, validation, and how ibit-train builds it from flags."""

from __future__ import annotations

import json

import pytest

from ibit_deploy.cli.train import build_parser, config_from_args
from ibit_deploy.train import DistillConfig, TrainConfig


def test_round_trip_with_distillation(tmp_path):
    config = TrainConfig(model="ibit_test_patch4_28", model_kwargs={"depth": 3}, epochs=7, clip_grad=1.0, amp=False,
                         distill=DistillConfig(logits="t.npz", alpha=0.3, tau=2.0, kind="hard", teacher_weights=[1, 2]))
    again = TrainConfig.from_json(config.to_json())
    assert again == config
    assert isinstance(again.distill, DistillConfig)
    path = tmp_path / "train.json"
    path.write_text(config.to_json())
    assert TrainConfig.load(path) == config


def test_load_takes_the_train_section_of_a_checkpoint_config(tmp_path):
    config = TrainConfig(epochs=3)
    (tmp_path / "config.json").write_text(json.dumps({"model": {"name": "x"}, "train": config.to_dict()}))
    assert TrainConfig.load(tmp_path / "config.json") == config


def test_unknown_fields_are_refused():
    with pytest.raises(ValueError, match=r"unknown TrainConfig field\(s\) \['epoch'\]"):
        TrainConfig.from_dict({"epoch": 3})
    with pytest.raises(ValueError, match=r"unknown DistillConfig field\(s\) \['temperature'\]"):
        TrainConfig.from_dict({"distill": {"logits": "a.npz", "temperature": 2}})
    with pytest.raises(ValueError, match="config is not a valid training config"):
        TrainConfig.from_json("{epochs: 3}")


@pytest.mark.parametrize(("field", "value", "message"), [
    ("epochs", 0, "epochs must be an integer >= 1"),
    ("lr", -1.0, "lr must be a finite number > 0"),
    ("ema_decay", 1.0, r"ema_decay must be a finite number in \[0, 1\)"),
    ("subset", 0.0, r"subset must be a finite number in \(0, 1\]"),
    ("device", "tpu", "device must be one of"),
    # values a config file can hold that the flags refuse when parsed: the same rule
    ("lr", float("inf"), "lr must be a finite number > 0"),
    ("weight_decay", float("nan"), "weight_decay must be a finite number >= 0"),
    ("mixup", float("inf"), "mixup must be a finite number >= 0"),
    ("epochs", "30", "epochs must be an integer"),
    ("epochs", True, "epochs must be an integer"),
    ("randaugment_magnitude", 31, r"randaugment_magnitude must be an integer in \[0, 30\]"),
    ("seed", 2**40, r"seed must be an integer in \[0, 4294967295\]"),
    ("model_kwargs", [1], "model_kwargs must be a dict"),
    ("hflip", "yes", "hflip must be a bool"),
])
def test_validation_names_the_field(field, value, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**{field: value}).validate()


def test_distill_validation():
    with pytest.raises(ValueError, match="distill.kind"):
        TrainConfig(distill=DistillConfig(logits="a.npz", kind="medium")).validate()
    with pytest.raises(ValueError, match="distill.alpha"):
        TrainConfig(distill={"logits": "a.npz", "alpha": 2.0}).validate()


def test_cli_flags_override_the_config_file(tmp_path):
    path = tmp_path / "base.json"
    path.write_text(TrainConfig(model="ibit_test_patch4_28", model_kwargs={"depth": 1}, epochs=9, lr=0.01).to_json())
    args = build_parser().parse_args(["--config", str(path), "--epochs", "2", "--quiet",
                                      "--distill-logits", "t.npz", "--distill-type", "hard"])
    config = config_from_args(args)
    assert (config.epochs, config.lr, config.model_kwargs, config.progress) == (2, 0.01, {"depth": 1}, False)
    assert config.distill == DistillConfig(logits="t.npz", kind="hard")
    # A different --model drops the file's kwargs: they belonged to the other model.
    config = config_from_args(build_parser().parse_args(["--config", str(path), "--model", "ibit_tiny_patch4_28"]))
    assert config.model_kwargs == {}


def test_cli_distill_options_need_logits():
    with pytest.raises(ValueError, match="--distill-logits"):
        config_from_args(build_parser().parse_args(["--distill-alpha", "0.2"]))
