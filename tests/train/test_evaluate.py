"""ibit-eval / evaluate_checkpoint: accuracy, per-class results, the confusion PNG, and clear errors on bad input."""

from __future__ import annotations

import json
import shutil

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from ibit_deploy.cli.evaluate import main
from ibit_deploy.train import evaluate_checkpoint, evaluate_model


class _Fixed(torch.nn.Module):
    """Returns the logits it is given as 'images'."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


def test_metrics_math():
    logits = torch.tensor([[9, 1, 0], [0, 9, 1], [9, 0, 1], [1, 0, 9.0]])  # predictions 0, 1, 0, 2
    labels = torch.tensor([0, 1, 2, 2])
    loader = DataLoader(TensorDataset(logits, labels, torch.arange(4)), batch_size=3)
    result = evaluate_model(_Fixed(), loader, 3)
    assert result["top1"] == 0.75 and result["top5"] == 1.0  # fractions, like every record
    assert result["per_class"] == [1.0, 1.0, 0.5]
    assert result["confusion"] == [[1, 0, 0], [0, 1, 0], [1, 0, 1]]


def test_cli_writes_json_and_confusion_png(trained_run, tmp_path, capsys):
    out, result = trained_run
    assert main([str(out), "--out", str(tmp_path)]) == 0
    printed = json.loads(capsys.readouterr().out)
    saved = json.loads((tmp_path / "eval_val.json").read_text())
    assert printed["top1"] == saved["top1"] == pytest.approx(result["val_acc1"])
    assert set(saved["per_class"]) == {"class0", "class1", "class2", "class3"}
    assert saved["accuracy_unit"] == "fraction" and 0 <= saved["top1"] <= 1
    assert sum(map(sum, saved["confusion"])) == saved["n"]
    assert (tmp_path / "confusion_val.png").read_bytes()[:4] == b"\x89PNG"


def test_missing_checkpoint_dir(tmp_path, capsys):
    assert main([str(tmp_path / "nope")]) == 2
    assert "checkpoint directory not found" in capsys.readouterr().err


def test_corrupt_weights_are_named(trained_run, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(trained_run[0], bad)
    (bad / "model.safetensors").write_bytes(b"\x00" * 64)
    assert main([str(bad)]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors" in err and "not a readable safetensors" in err


def test_bad_data_path_is_named(trained_run, tmp_path, capsys):
    assert main([str(trained_run[0]), "--data", f"imagefolder:{tmp_path}/missing", "--out", str(tmp_path)]) == 2
    assert f"{tmp_path}/missing" in capsys.readouterr().err


def test_class_count_mismatch(trained_run, tmp_path):
    with pytest.raises(ValueError, match=r"has 10 classes \(0, 1, .*\) but checkpoint .* predicts 4"):
        evaluate_checkpoint(trained_run[0], "mnist5k")
