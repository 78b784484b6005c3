"""Run by the DDP test under torchrun: train from a JSON TrainConfig and dump this rank's result to OUT/rank<r>.json."""

import json
import os
import sys
from pathlib import Path

import torch

from ibit_deploy.train import TrainConfig, train

if __name__ == "__main__":
    torch.set_num_threads(1)
    config = TrainConfig.from_json(Path(sys.argv[1]).read_text())
    result = train(config)
    Path(config.out, f"rank{os.environ['RANK']}.json").write_text(json.dumps(result))
