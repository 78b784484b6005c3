"""What a run leaves for people to read: ``metrics.jsonl`` (one JSON object per epoch) and ``curves.png``."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..devicekit.fileio import atomic_path, atomic_write_text

METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"


def append_metrics(directory: str | os.PathLike, record: dict[str, Any]) -> None:
    """Append one epoch's record as a JSON line (flushed and fsynced: the line is either whole or absent)."""
    path = Path(directory) / METRICS_FILE
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(record) + "\n")
        fh.flush()
        os.fsync(fh.fileno())


def rewrite_metrics(directory: str | os.PathLike, history: list[dict[str, Any]]) -> None:
    """Replace ``metrics.jsonl`` by ``history`` (on resume: drops lines of an epoch that never finished saving)."""
    text = "".join(json.dumps(r) + "\n" for r in history)
    atomic_write_text(Path(directory) / METRICS_FILE, text)


def read_metrics(directory: str | os.PathLike) -> list[dict[str, Any]]:
    """Every record of ``metrics.jsonl``."""
    path = Path(directory) / METRICS_FILE
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def plot_curves(directory: str | os.PathLike, history: list[dict[str, Any]]) -> Path:
    """Draw train/val loss and accuracy per epoch into ``curves.png`` (atomically replaced)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    epochs = [r["epoch"] for r in history]

    def series(key: str) -> list[float]:
        return [r.get(key, math.nan) if r.get(key) is not None else math.nan for r in history]

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, series("train_loss"), "o-", label="train")
    ax_loss.plot(epochs, series("val_loss"), "o-", label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.plot(epochs, series("train_acc1"), "o-", label="train top-1")
    ax_acc.plot(epochs, series("val_acc1"), "o-", label="val top-1")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (%)", title="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = Path(directory) / CURVES_FILE
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
