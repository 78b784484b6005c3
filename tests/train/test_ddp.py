"""The trainer under torchrun: 2 CPU processes (gloo, loopback) end with bit-identical weights; rank 0 alone writes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from ibit_deploy.train.build import load_trained
from ibit_deploy.train.records import read_metrics
from ibit_deploy.train.trainer import state_digest

from .conftest import tiny_config

WORKER = Path(__file__).with_name("ddp_worker.py")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.mark.slow
def test_two_processes_end_with_identical_weights(tmp_path):
    out = tmp_path / "ddp"
    config = tiny_config(out, data="synthetic:128", max_steps_per_epoch=3, ema_decay=0.5)
    config_path = tmp_path / "config.json"
    config_path.write_text(config.to_json())
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
           "--master_port", str(_free_port()), str(WORKER), str(config_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    ranks = [json.loads((out / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == [2, 2]
    assert ranks[0]["weights_sha256"] == ranks[1]["weights_sha256"]
    assert ranks[0]["val_loss"] == ranks[1]["val_loss"]  # validation is reduced over both shards
    model, saved = load_trained(out)
    assert state_digest(model) == ranks[0]["weights_sha256"]
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2]  # one line per epoch: only rank 0 writes
    assert saved["metrics"]["step"] == 6
