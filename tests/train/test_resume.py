"""A run killed with SIGKILL after epoch 1's checkpoint resumes with no epoch lost or repeated, bit-exactly."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import torch
from safetensors.torch import load_file

from ibit_deploy.cli.train import main
from ibit_deploy.train import train
from ibit_deploy.train.records import read_metrics
from ibit_deploy.train.state import load_train_state

from .conftest import tiny_config

# Mixup, cutmix, RandAugment, random erasing and EMA all on: every RNG stream and every piece of state must survive.
RUN = {"data": "synthetic:256", "epochs": 3, "batch_size": 16, "max_steps_per_epoch": None, "warmup_epochs": 1,
       "ema_decay": 0.9, "mixup": 0.8, "cutmix": 1.0, "seed": 3}


def _flags(config) -> list[str]:
    return ["--model", config.model, "--data", config.data, "--epochs", str(config.epochs), "--batch-size",
            str(config.batch_size), "--warmup-epochs", str(config.warmup_epochs), "--ema-decay", str(config.ema_decay),
            "--mixup", str(config.mixup), "--cutmix", str(config.cutmix), "--seed", str(config.seed),
            "--num-workers", "0", "--quiet", "--out", config.out]


def test_kill_after_epoch_one_then_resume_matches_uninterrupted_run(tmp_path):
    killed = tiny_config(tmp_path / "killed", **RUN)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}  # the same thread count as this process: identical arithmetic
    proc = subprocess.Popen([sys.executable, "-m", "ibit_deploy.cli.train", *_flags(killed)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    metrics = tmp_path / "killed" / "metrics.jsonl"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        if metrics.exists() and metrics.read_text().count("\n") >= 1:  # epoch 1 fully saved (metrics come last)
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read().decode()[-2000:]
    assert load_train_state(tmp_path / "killed")["epoch"] < 3, "the run finished before it could be killed"

    assert main(["--resume", "--out", killed.out]) == 0
    assert [r["epoch"] for r in read_metrics(killed.out)] == [1, 2, 3]

    reference = train(tiny_config(tmp_path / "reference", **RUN))
    resumed, expected = load_file(f"{killed.out}/model.safetensors"), load_file(f"{reference['out']}/model.safetensors")
    assert resumed.keys() == expected.keys()
    assert all(torch.equal(resumed[k], expected[k]) for k in expected)
    assert read_metrics(killed.out)[-1]["val_loss"] == reference["val_loss"]


def test_resume_without_state_is_a_clear_error(tmp_path, capsys):
    assert main(["--resume", "--out", str(tmp_path / "nothing")]) == 2
    assert "nothing" in capsys.readouterr().err
