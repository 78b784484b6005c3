"""Labels files: one class per line (Triton, jetson-inference) or one line per output layer split by ``;`` (nvinfer)."""

from __future__ import annotations

from pathlib import Path

from ..devicekit.fileio import atomic_write_text
from .source import PackageError


def write_labels(path: Path, classes: list[str], separator: str, target: str, manifest: Path) -> Path:
    """Write ``classes`` joined by ``separator`` (``"\\n"``: one per line) after checking none contains it."""
    if not classes:
        raise PackageError(f"{manifest} lists no classes; {target} needs a labels file")
    for i, name in enumerate(classes):
        forbidden = [ch for ch in dict.fromkeys([separator, "\n", "\r"]) if ch in name]
        if forbidden or not name.strip():
            what = "is empty" if not name.strip() else f"contains {', '.join(map(repr, forbidden))}"
            raise PackageError(f"{manifest}: class {i} {name!r} {what}, which {target}'s labels file cannot hold "
                               f"(its separator is {separator!r}); rename the class in the checkpoint's config.json "
                               f"'classes' and export again")
    atomic_write_text(path, separator.join(classes) + "\n")
    return path
