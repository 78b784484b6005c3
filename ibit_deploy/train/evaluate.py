"""Evaluate a trained checkpoint: top-1/top-5, per-class accuracy, confusion matrix (JSON + PNG).

Preprocessing is the checkpoint's own (``config.json`` input: image size, mean, std), so a model is measured the way
it was trained and the way an exported bundle will be fed, whichever dataset spec is evaluated.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ..data import ImageDataset, eval_transform, split_arrays
from ..data.eval_split import EvalSet
from ..data.fit import ModelInput, check_data_fits
from ..devicekit.fileio import atomic_path, atomic_write_json
from ..outputs import CONFUSION_PLOT, EVAL_REPORT, check_output, json_marker, png_marker, source_id
from .build import load_trained
from .distributed import resolve_device
from .records import marked


@torch.no_grad()
def evaluate_model(model: nn.Module, loader: DataLoader, num_classes: int,
                   device: torch.device | str = "cpu") -> dict[str, Any]:
    """Cross-entropy, top-1 and top-5 as fractions, and the (true x predicted) confusion matrix.

    With fewer than 5 classes, "top5" counts the top min(5, classes) predictions (so it is 1.0).
    """
    model.eval().to(device)
    k = min(5, num_classes)
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.int64)
    loss_sum, top_k, n = 0.0, 0, 0
    for images, labels, _ in loader:
        logits = model(images.to(device)).float().cpu()
        loss_sum += nn.functional.cross_entropy(logits, labels, reduction="sum").item()
        top = logits.topk(k, dim=-1).indices
        top_k += int((top == labels[:, None]).any(-1).sum())
        confusion += torch.bincount(labels * num_classes + top[:, 0], minlength=num_classes**2).view(num_classes, -1)
        n += labels.shape[0]
    if n == 0:
        raise ValueError("evaluate_model: the loader yielded no samples")
    correct = confusion.diag()
    per_class = (correct / confusion.sum(1).clamp(min=1)).tolist()
    return {"n": n, "loss": loss_sum / n, "top1": correct.sum().item() / n, "top5": top_k / n,
            "per_class": per_class, "per_class_count": confusion.sum(1).tolist(), "confusion": confusion.tolist()}


def evaluate_checkpoint(checkpoint: str | os.PathLike, data: str | None = None, split: str = "val",
                        out_dir: str | os.PathLike | None = None, batch_size: int = 256,
                        device: str = "auto", overwrite: bool = False) -> dict[str, Any]:
    """Evaluate the checkpoint directory ``checkpoint`` on ``split`` of ``data`` (default: its training data spec).

    The val split is re-derived with the checkpoint's val_fraction and seed, so "val" is exactly the held-out part
    of training. With ``out_dir``, writes ``eval_<split>.json`` and ``confusion_<split>.png`` there; the write
    policy (:mod:`ibit_deploy.outputs`) is asked first, so they replace only an evaluation of this checkpoint
    (or, with ``overwrite``, an evaluation of another one).
    """
    source = source_id(checkpoint)
    if out_dir is not None:
        report_path, plot_path = Path(out_dir) / f"eval_{split}.json", Path(out_dir) / f"confusion_{split}.png"
        check_output(report_path, EVAL_REPORT, source, overwrite=overwrite)
        check_output(plot_path, CONFUSION_PLOT, source, overwrite=overwrite)
    model, config = load_trained(checkpoint)
    saved_data, inputs = config.get("data", {}), config.get("input")
    if not isinstance(inputs, dict):
        raise ValueError(f"{Path(checkpoint) / 'config.json'}: no 'input' section (image_size, mean, std); was it "
                         f"written by ibit-train?")
    spec = data or saved_data.get("spec")
    if not spec:
        raise ValueError("no dataset given and the checkpoint records none; pass data='mnist5k' / --data SPEC")
    classes = list(config.get("classes") or [])
    source_classes = list(check_data_fits(spec, ModelInput.from_config(config, f"checkpoint {checkpoint}")).classes)
    recorded = EvalSet.from_manifest(config)  # the checkpoint's split (same "data" block as a manifest's)
    images, labels, fingerprint = split_arrays(spec, split, recorded.val_fraction, recorded.seed)
    transform = eval_transform(tuple(inputs["image_size"]), tuple(inputs["mean"]), tuple(inputs["std"]))
    loader = DataLoader(ImageDataset(images, labels, transform, split, fingerprint), batch_size=batch_size)
    result = evaluate_model(model, loader, len(source_classes), resolve_device(device))
    names = classes or source_classes
    result = marked({"checkpoint": str(checkpoint), "data": spec, "split": split, "fingerprint": fingerprint,
                     "classes": names, **result,
                     "per_class": {name: acc for name, acc in zip(names, result["per_class"], strict=True)}})
    if out_dir is not None:
        atomic_write_json(report_path, {**json_marker(EVAL_REPORT, source), **result})
        plot_confusion(np.asarray(result["confusion"]), names, plot_path,
                       title=f"{Path(checkpoint).name}: {spec} {split}, top-1 {result['top1']:.2%}",
                       metadata=png_marker(CONFUSION_PLOT, source))
        result["files"] = [str(report_path), str(plot_path)]
    return result


def plot_confusion(confusion: np.ndarray, classes: list[str], path: str | os.PathLike, title: str = "",
                   metadata: dict[str, str] | None = None) -> Path:
    """Row-normalised confusion matrix (true rows, predicted columns) with counts, as a PNG written atomically;
    ``metadata``: PNG text chunks (the write policy's kind marker)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(classes)
    rates = confusion / np.maximum(confusion.sum(1, keepdims=True), 1)
    size = min(4 + 0.5 * n, 16)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(rates, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:  # beyond that the numbers are unreadable anyway
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if rates[i, j] > 0.5 else "black")
    ticks = range(n) if n <= 50 else []
    ax.set_xticks(list(ticks), [classes[i] for i in ticks], rotation=90 if n > 10 else 0)
    ax.set_yticks(list(ticks), [classes[i] for i in ticks])
    ax.set(xlabel="predicted", ylabel="true", title=title)
    fig.tight_layout()
    path = Path(path)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata=metadata)
    plt.close(fig)
    return path
