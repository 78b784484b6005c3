"""train(): the files a run leaves, what config.json records, the optimizer split and the schedule."""

from __future__ import annotations

import json
import math

import pytest
import torch

from ibit_deploy.checkpoint import load_checkpoint
from ibit_deploy.models import create_model
from ibit_deploy.train import train
from ibit_deploy.train.build import load_trained
from ibit_deploy.train.optim import build_optimizer, cosine_lr, no_decay_names
from ibit_deploy.train.records import read_metrics
from ibit_deploy.train.state import load_train_state
from ibit_deploy.train.trainer import state_digest

from .conftest import tiny_config


def test_run_writes_checkpoint_metrics_and_curves(trained_run):
    out, result = trained_run
    for name in ("model.safetensors", "config.json", "metrics.jsonl", "curves.png", "train_state.pt"):
        assert (out / name).is_file(), name
    assert (out / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2]
    assert result["epochs_completed"] == 2 and result["step"] == 4
    for key in ("train_loss", "val_loss", "val_acc1", "val_acc5", "best_val_acc1"):
        assert math.isfinite(result[key]), key
    assert not list(out.glob("*.tmp")) and not list(out.glob(".*.tmp"))


def test_config_json_rebuilds_model_and_preprocessing(trained_run):
    out, result = trained_run
    config = json.loads((out / "config.json").read_text())
    assert config["model"] == {"name": "ibit_test_patch4_28", "kwargs": {"img_size": 28, "in_chans": 1, "num_classes": 4}}
    assert config["input"] == {"image_size": [28, 28], "in_chans": 1, "mean": [0.5], "std": [0.5]}
    assert config["classes"] == ["class0", "class1", "class2", "class3"]
    assert config["data"]["spec"] == "synthetic:64"
    assert config["train"]["ema_decay"] == 0.9 and config["weights"] == "ema"
    assert config["metrics"]["epochs_completed"] == 2 and "torch" in config["versions"]
    model, _ = load_checkpoint(out)  # the package-wide loader rebuilds it with nothing else
    assert state_digest(model) == result["weights_sha256"]
    assert model(torch.zeros(2, 1, 28, 28)).shape == (2, 4)
    assert state_digest(load_trained(out)[0]) == result["weights_sha256"]


def test_resume_state_loads_with_weights_only(trained_run):
    out, _ = trained_run
    state = load_train_state(out)  # torch.load(weights_only=True) inside
    assert state["epoch"] == 2 and state["step"] == 4
    assert set(state) >= {"model", "optimizer", "ema", "rng", "history", "config"}
    assert len(state["rng"]) == 1 and {"torch", "numpy", "python"} <= set(state["rng"][0])


def test_finished_run_refuses_a_fresh_start_and_resumes_to_the_same_result(trained_run):
    out, result = trained_run
    with pytest.raises(FileExistsError, match="already holds a training run"):
        train(tiny_config(out, ema_decay=0.9))
    again = train(tiny_config(out, ema_decay=0.9), resume=True)  # nothing left to do
    assert again["weights_sha256"] == result["weights_sha256"]
    with pytest.raises(ValueError, match="configuration changed .*lr"):
        train(tiny_config(out, ema_decay=0.9, lr=0.5), resume=True)


def test_weight_decay_applies_to_masks_but_not_norms_biases_tokens():
    model = create_model("ibit_test_patch4_28", distilled=True)
    skip = no_decay_names(model)
    assert {"pos_embed", "cls_token", "dist_token", "blocks.0.norm1.weight", "blocks.0.attn.qkv.bias"} <= skip
    assert not {"blocks.0.attn.mask_a", "blocks.0.attn.mask_b", "blocks.0.attn.qkv.weight"} & skip
    optimizer = build_optimizer(model, 1e-3, 0.05)
    decayed = {id(p) for p in optimizer.param_groups[0]["params"]}
    assert optimizer.param_groups[0]["weight_decay"] == 0.05 and optimizer.param_groups[1]["weight_decay"] == 0.0
    assert id(model.blocks[0].attn.mask_a) in decayed and id(model.pos_embed) not in decayed


def test_cosine_schedule_with_linear_warmup():
    lrs = [cosine_lr(s, 100, 10, 1e-3, 1e-5) for s in range(100)]
    assert lrs[0] == pytest.approx(1e-4) and lrs[9] == pytest.approx(1e-3)
    assert all(a >= b for a, b in zip(lrs[9:], lrs[10:], strict=False))
    assert lrs[-1] == pytest.approx(1e-5, rel=0.05)
    assert cosine_lr(100, 100, 10, 1e-3, 1e-5) == pytest.approx(1e-5)


def test_amp_on_cpu_is_refused(tmp_path):
    with pytest.raises(ValueError, match="amp=True needs a CUDA device"):
        train(tiny_config(tmp_path / "amp", amp=True, device="cpu"))


def test_val_every_validates_every_nth_and_the_last_epoch(tmp_path):
    out = tmp_path / "sparse"
    result = train(tiny_config(out, epochs=3, max_steps_per_epoch=1, val_every=2))
    records = read_metrics(out)
    assert [r["val_acc1"] is not None for r in records] == [False, True, True]
    assert result["best_epoch"] in (2, 3)
