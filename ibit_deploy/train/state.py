"""The resume state beside a checkpoint: ``train_state.pt``, loadable with ``torch.load(weights_only=True)``.

It holds only tensors and plain Python values (no pickled classes): raw model weights, optimizer state, the global
step and finished epoch, EMA weights, the AMP grad-scaler state, the metrics history, the training config (JSON text)
and the RNG states of torch/CUDA/numpy/python for every rank. Written atomically after each epoch's checkpoint, so a
run killed at any instant resumes from the last finished epoch.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..devicekit.fileio import atomic_path

STATE_FILE = "train_state.pt"
STATE_FORMAT = 1


def capture_rng() -> dict[str, Any]:
    """This process's RNG states as tensors and plain values."""
    mt, keys, pos, has_gauss, cached = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": {"name": str(mt), "keys": torch.from_numpy(np.asarray(keys, dtype=np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "cached_gaussian": float(cached)},
        "python": _to_plain(random.getstate()),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict[str, Any]) -> None:
    """Inverse of :func:`capture_rng`."""
    torch.set_rng_state(state["torch"])
    npst = state["numpy"]
    np.random.set_state((npst["name"], npst["keys"].numpy().astype(np.uint32), npst["pos"], npst["has_gauss"],
                         npst["cached_gaussian"]))
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _to_plain(obj: Any) -> Any:
    if isinstance(obj, tuple):
        return [_to_plain(v) for v in obj]
    return obj


def save_train_state(directory: str | os.PathLike, state: dict[str, Any]) -> Path:
    """Write ``state`` (tensors and plain values only) to ``directory/train_state.pt`` atomically."""
    path = Path(directory) / STATE_FILE
    with atomic_path(path) as tmp:
        torch.save({"format_version": STATE_FORMAT, **state}, tmp)
    return path


def load_train_state(directory: str | os.PathLike) -> dict[str, Any]:
    """Read the resume state with the safe loader; errors name the file."""
    path = Path(directory) / STATE_FILE
    if not path.is_file():
        raise FileNotFoundError(f"cannot resume: no {STATE_FILE} in {Path(directory)} (it is written after every "
                                f"finished epoch; start without --resume)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several types for truncated or foreign files
        raise ValueError(f"{path} is not a readable training state: {exc}") from exc
    if not isinstance(state, dict) or state.get("format_version") != STATE_FORMAT:
        raise ValueError(f"{path}: unsupported training state (format_version "
                         f"{state.get('format_version') if isinstance(state, dict) else '?'}, expected {STATE_FORMAT})")
    return state
