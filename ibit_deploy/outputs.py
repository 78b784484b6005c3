"""Output targets: a command writes its file only where it destroys nothing another command owns.

A checkpoint's weights and config and a bundle's manifest and artifacts are owned by ibit-train and ibit-export; a
calibration set, a mask plot or teacher logits written over one of them would silently break the checkpoint or the
bundle (its hash check). Each writer also accepts overwriting only a file of its own kind.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from .checkpoint import CONFIG_FILE, WEIGHTS_FILE
from .devicekit.layout import MANIFEST_FILE

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"  # .npz files are zip archives
OWNED_BY_TRAINING = ("train_state.pt", "metrics.jsonl")  # beside WEIGHTS_FILE and CONFIG_FILE in a run directory


def _starts_with(path: Path, magic: bytes) -> bool:
    try:
        with open(path, "rb") as fh:
            return fh.read(len(magic)) == magic
    except OSError:
        return False


def is_png(path: Path) -> bool:
    """Whether ``path`` holds a PNG image."""
    return _starts_with(path, PNG_MAGIC)


def is_npz(path: Path) -> bool:
    """Whether ``path`` holds a NumPy .npz archive (a zip file)."""
    return _starts_with(path, ZIP_MAGIC)


def _bundle_artifacts(bundle: Path) -> set[Path]:
    """Resolved paths the manifest in ``bundle`` lists (plus the manifest itself); unreadable manifests list only it."""
    from .devicekit.fileio import read_json

    owned = {(bundle / MANIFEST_FILE).resolve()}
    try:
        manifest = read_json(bundle / MANIFEST_FILE, "bundle manifest")
    except (OSError, ValueError):
        return owned
    for art in manifest.get("artifacts", []) if isinstance(manifest, dict) else []:
        if isinstance(art, dict) and isinstance(art.get("path"), str):
            owned.add((bundle / art["path"]).resolve())
    return owned


def owner_of(path: str | os.PathLike) -> str | None:
    """What owns ``path`` if it is part of a bundle or a checkpoint, in words; None if it belongs to neither."""
    path = Path(path).resolve()
    for folder in path.parents:
        if (folder / MANIFEST_FILE).is_file() and path in _bundle_artifacts(folder):
            what = "the manifest" if path.name == MANIFEST_FILE and path.parent == folder else "an artifact"
            return f"{what} of the bundle {folder}"
    parent = path.parent
    if (parent / WEIGHTS_FILE).is_file() and (parent / CONFIG_FILE).is_file() and \
            path.name in (WEIGHTS_FILE, CONFIG_FILE, *OWNED_BY_TRAINING):
        return f"part of the checkpoint {parent} (written by ibit-train)"
    return None


def check_output_file(path: str | os.PathLike, kind: str, is_own_kind: Callable[[Path], bool]) -> Path:
    """Raise before writing a ``kind`` file at ``path`` if that would overwrite something the writer does not own.

    Refused: a directory, a checkpoint's or a bundle's file (whatever its content), and an existing file for which
    ``is_own_kind`` is False. Returns ``path``.
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file name for the {kind}")
    owner = owner_of(path)
    if owner is not None:
        raise FileExistsError(f"refusing to write a {kind} over {path}: it is {owner}; choose another output path")
    if path.exists() and not is_own_kind(path):
        raise FileExistsError(f"refusing to overwrite {path}: it exists and is not a {kind}; remove it or choose "
                              f"another output path")
    return path
