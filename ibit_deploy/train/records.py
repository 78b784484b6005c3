"""What a run leaves for people to read: ``metrics.jsonl`` (one JSON object per epoch) and ``curves.png``; and the
one rule for the unit of the accuracies in every training record (metrics lines, ``config.json``'s ``metrics``, the
result of ``train``, ``eval_<split>.json``).

Accuracies are fractions in [0, 1], like every other record of the toolkit (manifests, bench reports); a record says
so with ``"accuracy_unit": "fraction"``. Records written before that key existed hold percent (0-100):
:func:`as_fractions` converts them when they are read, so a run trained by an older version resumes, plots and
reports in the same unit as a new one. The unit is read from the marker, never guessed from the magnitude.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

from ..devicekit.fileio import atomic_path, atomic_write_text, read_json_lines

METRICS_FILE = "metrics.jsonl"
CURVES_FILE = "curves.png"

UNIT_KEY = "accuracy_unit"
FRACTION = "fraction"  # the unit of every record written now
LEGACY_UNIT = "percent"  # a record without UNIT_KEY
ACCURACY_KEYS = ("train_acc1", "val_acc1", "val_acc5", "best_val_acc1", "top1", "top5")  # per_class: name -> value


def marked(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` (accuracies already fractions) with the unit marker."""
    return {**record, UNIT_KEY: FRACTION}


def _scaled(record: dict[str, Any], factor: float, unit: str) -> dict[str, Any]:
    out = dict(record)
    for key in ACCURACY_KEYS:
        if isinstance(out.get(key), (int, float)) and not isinstance(out.get(key), bool):
            out[key] = out[key] * factor
    per_class = out.get("per_class")
    if isinstance(per_class, dict):
        out["per_class"] = {k: v * factor if isinstance(v, (int, float)) else v for k, v in per_class.items()}
    elif isinstance(per_class, list):
        out["per_class"] = [v * factor if isinstance(v, (int, float)) else v for v in per_class]
    out[UNIT_KEY] = unit
    return out


def as_fractions(record: dict[str, Any]) -> dict[str, Any]:
    """A training record with its accuracies as fractions: a marked record as it is, an unmarked (older, percent)
    one converted. Raises ValueError for a unit this version does not know."""
    unit = record.get(UNIT_KEY, LEGACY_UNIT)
    if unit == FRACTION:
        return record
    if unit == LEGACY_UNIT:
        return _scaled(record, 0.01, FRACTION)
    raise ValueError(f"training record with unknown {UNIT_KEY} {unit!r} (this version reads {FRACTION!r} and "
                     f"unmarked percent records)")


def in_points(record: dict[str, Any]) -> dict[str, Any]:
    """A training record's accuracies in top-1 points (percent), for a reader that still keeps points."""
    return _scaled(as_fractions(record), 100.0, LEGACY_UNIT)


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
    """Every record of ``metrics.jsonl``, accuracies as fractions (an older run's percent lines converted)."""
    path = Path(directory) / METRICS_FILE
    records = read_json_lines(path, "training record (metrics.jsonl)")
    bad = next((i for i, r in enumerate(records) if not isinstance(r, dict)), None)
    if bad is not None:
        raise ValueError(f"{path} is not a valid training record: record {bad + 1} is not a JSON object")
    return [as_fractions(r) for r in records]


def plot_curves(directory: str | os.PathLike, history: list[dict[str, Any]]) -> Path:
    """Draw train/val loss and accuracy per epoch into ``curves.png`` (atomically replaced)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on training machines
    import matplotlib.pyplot as plt

    history = [as_fractions(r) for r in history]
    epochs = [r["epoch"] for r in history]

    def series(key: str) -> list[float]:
        return [r.get(key, math.nan) if r.get(key) is not None else math.nan for r in history]

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    ax_loss.plot(epochs, series("train_loss"), "o-", label="train")
    ax_loss.plot(epochs, series("val_loss"), "o-", label="val")
    ax_loss.set(xlabel="epoch", ylabel="loss", title="loss")
    ax_acc.plot(epochs, series("train_acc1"), "o-", label="train top-1")
    ax_acc.plot(epochs, series("val_acc1"), "o-", label="val top-1")
    ax_acc.set(xlabel="epoch", ylabel="accuracy (fraction)", title="accuracy", ylim=(0, 1))
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path = Path(directory) / CURVES_FILE
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return path
