"""The checkpoint directory: ``model.safetensors`` (unfolded weights) + ``config.json`` (everything to rebuild).

``config.json`` fields:
    format_version, model {name, kwargs}, data {spec, ...}, input {image_size, in_chans, mean, std},
    classes [names], train {...}, metrics {...}, versions {torch, timm, ibit_deploy}.

Weights are safetensors (never pickle) and are checked name by name and shape by shape against the model the config
describes before they are loaded. torch is imported where a model is built or loaded, so the file names and
``checkpoint_fingerprint`` (what a bundle records as its source) serve the device side, which has no torch.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .devicekit.fileio import atomic_path, atomic_write_json, read_json, sha256_file

WEIGHTS_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
CHECKPOINT_FORMAT = 1

if TYPE_CHECKING:
    from torch import nn


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shape a checkpoint or an artifact."""
    import timm
    import torch

    from .version import __version__

    versions = {"python": platform.python_version(), "torch": torch.__version__, "timm": timm.__version__,
                "ibit_deploy": __version__}
    for name in ("onnx", "onnxruntime"):
        try:
            versions[name] = __import__(name).__version__
        except ImportError:
            pass
    return versions


def checkpoint_config(model: nn.Module, info: Any) -> dict[str, Any]:
    """The config.json fields every later stage reads: model spec, data, input preprocessing, class names.

    ``info`` is the :class:`ibit_deploy.data.DataInfo` the model was trained on.
    """
    return {
        "model": model.build_spec,
        "data": info.to_dict(),
        "input": {"image_size": list(info.image_size), "in_chans": info.channels, "mean": list(info.mean),
                  "std": list(info.std)},
        "classes": list(info.classes),
    }


def save_checkpoint(directory: str | os.PathLike, model: nn.Module, config: dict[str, Any]) -> Path:
    """Write ``model``'s weights and ``config`` into ``directory`` atomically (weights first, config last)."""
    from safetensors.torch import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(directory / WEIGHTS_FILE) as tmp:
        save_file(state, str(tmp))
    config = {"format_version": CHECKPOINT_FORMAT, **config}
    config.setdefault("versions", library_versions())
    if "model" not in config and hasattr(model, "build_spec"):
        config["model"] = model.build_spec
    atomic_write_json(directory / CONFIG_FILE, config)
    return directory


def require_checkpoint_dir(directory: str | os.PathLike) -> Path:
    """``directory`` as a Path when it is a folder holding both checkpoint files; FileNotFoundError naming it and
    what a checkpoint holds otherwise (a bundle or any other folder given where a checkpoint belongs)."""
    directory = Path(directory)
    expected = f"expected a folder with {WEIGHTS_FILE} and {CONFIG_FILE}, as written by ibit-train"
    if not directory.is_dir():
        raise FileNotFoundError(f"checkpoint directory not found: {directory} ({expected})")
    missing = [name for name in (WEIGHTS_FILE, CONFIG_FILE) if not (directory / name).is_file()]
    if missing:
        raise FileNotFoundError(f"{directory} is not a checkpoint: it has no {' and no '.join(missing)} ({expected})")
    return directory


def read_checkpoint_config(directory: str | os.PathLike) -> dict[str, Any]:
    """Read and validate ``config.json`` of a checkpoint directory."""
    directory = require_checkpoint_dir(directory)
    config = read_json(directory / CONFIG_FILE, "checkpoint config")
    model = config.get("model") if isinstance(config, dict) else None
    if not isinstance(model, dict) or not isinstance(model.get("name"), str):
        raise ValueError(f"{directory / CONFIG_FILE}: expected a 'model' object with a 'name' and 'kwargs'")
    version = config.get("format_version", CHECKPOINT_FORMAT)  # absent: written before the field existed
    if isinstance(version, bool) or version != CHECKPOINT_FORMAT:
        raise ValueError(f"{directory / CONFIG_FILE}: format_version {version!r} is not one this version of "
                         f"ibit-deploy reads (it reads {CHECKPOINT_FORMAT}); was it written by a newer ibit-train?")
    return config


def load_state_dict_checked(path: str | os.PathLike, model: nn.Module) -> None:
    """Load safetensors weights from ``path`` into ``model`` after checking every name and shape."""
    import torch
    from safetensors import SafetensorError
    from safetensors.torch import load_file

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        state = load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise ValueError(f"{path} is not a readable safetensors file: {exc}") from exc
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    if missing or unexpected:
        raise ValueError(f"{path} does not match the model in its config: missing {missing[:5]}"
                         f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
                         f"{'...' if len(unexpected) > 5 else ''}")
    for name, tensor in state.items():
        if tuple(tensor.shape) != tuple(expected[name].shape):
            raise ValueError(f"{path}: tensor {name!r} has shape {tuple(tensor.shape)}, the model in its config "
                             f"expects {tuple(expected[name].shape)}")
        if expected[name].is_floating_point() and not tensor.is_floating_point():
            # load_state_dict would cast silently; integer weights are a corrupt or foreign file
            raise ValueError(f"{path}: tensor {name!r} is {tensor.dtype}, expected a floating-point dtype "
                             f"(the model's is {expected[name].dtype})")
        if not torch.isfinite(tensor).all() and tensor.is_floating_point():
            raise ValueError(f"{path}: tensor {name!r} contains NaN or inf")
    model.load_state_dict(state)


def load_checkpoint(directory: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the model described by a checkpoint directory and load its weights. Returns (model in eval, config)."""
    from .models import create_model
    from .models.teachers import create_teacher, is_teacher

    directory = Path(directory)
    config = read_checkpoint_config(directory)
    spec = config["model"]
    build = create_teacher if is_teacher(spec["name"]) else create_model  # teachers export like any classifier
    try:
        model = build(spec["name"], **spec.get("kwargs", {}))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{directory / CONFIG_FILE}: cannot build model {spec}: {exc}") from exc
    load_state_dict_checked(directory / WEIGHTS_FILE, model)
    return model.eval(), config


def checkpoint_fingerprint(directory: str | os.PathLike) -> dict[str, str]:
    """sha256 of a checkpoint's weights and config, recorded as the source of every export."""
    directory = require_checkpoint_dir(directory)
    return {
        "path": str(directory.resolve()),
        "weights_sha256": sha256_file(directory / WEIGHTS_FILE),
        "config_sha256": sha256_file(directory / CONFIG_FILE),
    }
