"""The write policy: what a command may write where. Every command and example that writes asks here first.

**What a target is** is read from a marker inside it, never from its container format or its name:

    checkpoint       a folder with the weights and config ibit-train writes
    bundle           a folder with ``manifest.json`` (ibit-export)
    package          a folder with ``package.json`` (ibit-deploy package)
    bench report     a folder whose ``report.json`` says ``"tool": "ibit-bench"``
    .npz files       a ``kind`` array (calibration set, teacher logits); older files by their array names
    PNG files        an ``ibit_deploy.kind`` text chunk (mask plot, confusion plot, ...)
    JSON files       a ``kind`` key (evaluation report, study report); a bundle's or a package's manifest
    CSV files        the header row the writer puts first (predictions)

Anything else is of no kind this toolkit knows (a user's file), and a file inside a checkpoint, a bundle, a package
or a bench report belongs to that folder.

**The rule** (:func:`check_output`): a command writes where nothing is, into an empty folder, or over what it made
itself: the same kind, made for the same source. The same kind made for another source (or one that recorded none)
is replaced only with ``overwrite`` (``--overwrite``). Never, with or without it: a checkpoint, a bundle, a source
the command reads, anything of another kind or of no kind, or anything inside a folder of another command.

**How a folder is replaced**: it is written aside and swapped in whole when complete, under the folder's lock
(:func:`ibit_deploy.devicekit.staging.staged_folder`), so a command that fails, is killed or is interrupted leaves the
previous folder exactly as it was; a new folder gets the mode the umask gives, a replaced one keeps its mode. Files
are written atomically (:mod:`ibit_deploy.devicekit.fileio`).
"""

from __future__ import annotations

import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checkpoint import CONFIG_FILE, WEIGHTS_FILE
from .devicekit.fileio import read_json
from .devicekit.layout import MANIFEST_FILE

# ----------------------------------------------------------------------------------------------------- the kinds
CHECKPOINT = "checkpoint"
BUNDLE = "bundle"
PACKAGE = "package"
BENCH_REPORT = "bench report"
CALIBRATION = "calibration set"
TEACHER_LOGITS = "teacher logits"
MASK_PLOT = "mask plot"
CONFUSION_PLOT = "confusion plot"
EVAL_REPORT = "evaluation report"
PREDICTIONS = "predictions CSV"
LOAD_TEST_REPORT = "load-test report"  # examples/batching_service.py --report
PROTECTED = (CHECKPOINT, BUNDLE)  # never replaced by any command's output, whatever the flags

PACKAGE_MANIFEST = "package.json"  # a package's marker and record
BENCH_REPORT_FILE = "report.json"  # a bench report folder's marker (its "tool" key)
BENCH_TOOL = "ibit-bench"
OWNED_BY_TRAINING = ("train_state.pt", "metrics.jsonl", "curves.png")  # beside WEIGHTS_FILE and CONFIG_FILE

KIND_KEY = "kind"  # the marker's name in a .npz array and a JSON object
SOURCE_KEY = "source"
PNG_KIND_KEY = "ibit_deploy.kind"  # PNG text chunks
PNG_SOURCE_KEY = "ibit_deploy.source"
PREDICTIONS_HEADER = "path,label_1,prob_1"  # the first columns of examples/classify_folder.py's CSV

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
ZIP_MAGIC = b"PK\x03\x04"  # .npz files are zip archives
_READ_LIMIT = 64 << 20  # marker files are read whole only up to this size


@dataclass(frozen=True)
class Found:
    """What is at a path: its ``kind`` (None: no kind this toolkit knows), the ``source`` it was made for (None: not
    recorded), and words for messages."""

    kind: str | None
    source: str | None
    what: str


def source_id(path: str | os.PathLike | None) -> str | None:
    """The identity a source is recorded by: its absolute path with symlinks resolved (None stays None)."""
    return None if path is None else str(Path(path).resolve())


def npz_marker(kind: str, source: str | None) -> dict[str, Any]:
    """The arrays a writer of a ``kind`` .npz adds beside its own (pass to ``np.savez``)."""
    import numpy as np

    return {KIND_KEY: np.array(kind), SOURCE_KEY: np.array(source or "")}


def png_marker(kind: str, source: str | None) -> dict[str, str]:
    """The PNG text chunks a writer of a ``kind`` plot adds (matplotlib's ``savefig(..., metadata=...)``)."""
    return {PNG_KIND_KEY: kind, PNG_SOURCE_KEY: source or ""}


def json_marker(kind: str, source: str | None) -> dict[str, Any]:
    """The keys a writer of a ``kind`` JSON report puts in it."""
    return {KIND_KEY: kind, SOURCE_KEY: source}


# ----------------------------------------------------------------------------------------------- recognition
def _read_json(path: Path) -> Any:
    """The JSON in ``path`` (bounded size and nesting), or None when it is not readable JSON."""
    try:
        return read_json(path, max_bytes=_READ_LIMIT)
    except (OSError, ValueError):
        return None


def _head(path: Path, size: int) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read(size)
    except OSError:
        return b""


def _png_text(path: Path) -> dict[str, str]:
    """The tEXt chunks of a PNG file (empty if it has none or is not one)."""
    try:
        if path.stat().st_size > _READ_LIMIT:
            return {}
        data = path.read_bytes()
    except OSError:
        return {}
    text, pos = {}, len(PNG_MAGIC)
    while pos + 8 <= len(data):
        length, ctype = int.from_bytes(data[pos:pos + 4], "big"), data[pos + 4:pos + 8]
        body = data[pos + 8:pos + 8 + length]
        if ctype == b"tEXt" and b"\0" in body:
            key, value = body.split(b"\0", 1)
            text[key.decode("latin-1")] = value.decode("latin-1")
        elif ctype == b"IEND":
            break
        pos += 12 + length
    return text


def _npz_found(path: Path) -> Found:
    import numpy as np

    try:
        with np.load(path, allow_pickle=False) as npz:
            names = set(npz.files)
            kind = str(npz[KIND_KEY]) if KIND_KEY in names else None
            source = str(npz[SOURCE_KEY]) if SOURCE_KEY in names else ""
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError):
        return Found(None, None, "a zip file that is not a NumPy .npz")
    if kind is None:  # written before the marker: recognised by the arrays its writer puts in it
        if {"images", "meta"} <= names:
            kind = CALIBRATION
        elif {"logits", "fingerprint", "teachers"} <= names:
            kind = TEACHER_LOGITS
        else:
            return Found(None, None, "a .npz file of no kind ibit-deploy writes")
    return Found(kind, source or None, f"a {kind} .npz")


def _file_found(path: Path) -> Found:
    head = _head(path, 64)
    if head.startswith(ZIP_MAGIC):
        return _npz_found(path)
    if head.startswith(PNG_MAGIC):
        text = _png_text(path)
        kind = text.get(PNG_KIND_KEY)
        return Found(kind, text.get(PNG_SOURCE_KEY) or None, f"a {kind} (PNG)" if kind else
                     "a PNG image no ibit-deploy command marked as its own")
    if head.startswith(PREDICTIONS_HEADER.encode()):
        return Found(PREDICTIONS, None, "a predictions CSV")
    if head.lstrip()[:1] == b"{":
        record = _read_json(path)
        if isinstance(record, dict) and isinstance(record.get(KIND_KEY), str):
            source = record.get(SOURCE_KEY)
            return Found(record[KIND_KEY], source if isinstance(source, str) else None, f"a {record[KIND_KEY]}")
        if isinstance(record, dict) and {"checkpoint", "split", "fingerprint", "confusion"} <= set(record):
            return Found(EVAL_REPORT, None, f"a {EVAL_REPORT}")  # written before the marker
    return Found(None, None, "a file of no kind ibit-deploy writes")


def _is_bench_report(folder: Path) -> bool:
    if not (folder / BENCH_REPORT_FILE).is_file():
        return False
    report = _read_json(folder / BENCH_REPORT_FILE)
    return isinstance(report, dict) and report.get("tool") == BENCH_TOOL


def _folder_found(path: Path) -> Found | None:
    """The kind of folder ``path`` is (None: an empty folder)."""
    if (path / WEIGHTS_FILE).is_file() and (path / CONFIG_FILE).is_file():
        return Found(CHECKPOINT, None, f"the checkpoint {path} (written by ibit-train)")
    if (path / MANIFEST_FILE).is_file():
        return Found(BUNDLE, None, f"the bundle {path} (written by ibit-export)")
    if (path / PACKAGE_MANIFEST).is_file():
        record = _read_json(path / PACKAGE_MANIFEST)
        bundle = record.get("bundle") if isinstance(record, dict) else None
        source = bundle.get("path") if isinstance(bundle, dict) else None
        return Found(PACKAGE, source if isinstance(source, str) else None, f"the package {path}")
    report = _read_json(path / BENCH_REPORT_FILE) if (path / BENCH_REPORT_FILE).is_file() else None
    if isinstance(report, dict) and report.get("tool") == BENCH_TOOL:
        bundle = report.get("bundle") if isinstance(report.get("bundle"), dict) else {}
        source = bundle.get("path")
        return Found(BENCH_REPORT, source if isinstance(source, str) else None, f"the bench report {path}")
    try:
        held = sorted(p.name for p in path.iterdir() if not _is_temp(p.name))
    except OSError:
        held = ["(unreadable)"]
    if not held:
        return None
    shown = ", ".join(held[:5]) + (", ..." if len(held) > 5 else "")
    return Found(None, None, f"a folder of no kind ibit-deploy writes (it holds {shown})")


def _is_temp(name: str) -> bool:
    from .devicekit.fileio import is_atomic_temp

    return is_atomic_temp(name)


def identify(path: str | os.PathLike) -> Found | None:
    """What is at ``path``: None when nothing is there (or an empty folder), else its :class:`Found`."""
    path = Path(path)
    if not os.path.lexists(path):
        return None
    if path.is_dir():
        return _folder_found(path)
    return _file_found(path)


def _bundle_artifacts(bundle: Path) -> set[Path]:
    """Resolved paths the manifest in ``bundle`` lists (plus the manifest itself); unreadable manifests list only it."""
    owned = {(bundle / MANIFEST_FILE).resolve()}
    manifest = _read_json(bundle / MANIFEST_FILE)
    for art in manifest.get("artifacts", []) if isinstance(manifest, dict) else []:
        if isinstance(art, dict) and isinstance(art.get("path"), str):
            owned.add((bundle / art["path"]).resolve())
    return owned


def owner_of(path: str | os.PathLike) -> str | None:
    """The folder ``path`` is part of, in words, if it is a checkpoint's file, a bundle's manifest or artifact, or a
    file inside a package or a bench report; None if it belongs to none of them."""
    path = Path(path).resolve()
    for folder in path.parents:
        if (folder / MANIFEST_FILE).is_file() and path in _bundle_artifacts(folder):
            what = "the manifest" if path.name == MANIFEST_FILE and path.parent == folder else "an artifact"
            return f"{what} of the bundle {folder}"
        if (folder / PACKAGE_MANIFEST).is_file() or _is_bench_report(folder):
            return f"part of {_folder_found(folder).what}"
    parent = path.parent
    if (parent / WEIGHTS_FILE).is_file() and (parent / CONFIG_FILE).is_file() and \
            path.name in (WEIGHTS_FILE, CONFIG_FILE, *OWNED_BY_TRAINING):
        return f"part of the checkpoint {parent} (written by ibit-train)"
    return None


# ---------------------------------------------------------------------------------------------------- the rule
def check_output(path: str | os.PathLike, kind: str, source: str | None = None, *, overwrite: bool = False,
                 folder: bool = False, sources: tuple[str | os.PathLike, ...] = (),
                 hint: str = "remove it or choose another output path") -> Found | None:
    """Raise before a ``kind`` is written at ``path`` unless the write policy allows it; return what it replaces.

    ``source`` is what the output is made from (:func:`source_id`; None: the kind records none, so any output of
    the same kind is replaced), ``overwrite`` whether the user passed ``--overwrite``, ``folder`` whether the
    output is a folder (else a file), ``sources`` the paths the command reads (never written over), ``hint`` the
    way out that the command offers. Raises FileExistsError / IsADirectoryError / NotADirectoryError, whose
    message names what is there and why it stays.
    """
    path = Path(path)
    if path.name in ("", ".", ".."):
        raise IsADirectoryError(f"{path} is not a usable output path; give a new {'folder' if folder else 'file'} "
                                f"name for the {kind}")
    if not folder and path.is_dir():
        raise IsADirectoryError(f"{path} is a directory; give a file name for the {kind}")
    if folder and os.path.lexists(path) and not path.is_dir():
        raise NotADirectoryError(f"{path} exists and is not a folder; give a folder for the {kind}")
    if not folder and os.path.exists(path) and not path.is_file():  # never opened: reading a FIFO would block
        raise FileExistsError(f"refusing to write a {kind} over {path}: it is a special file (a FIFO, device or "
                              f"socket), not a regular file; give a file path for the {kind}")
    owner = owner_of(path)
    if owner is not None:
        raise FileExistsError(f"refusing to write a {kind} over {path}: it is {owner}; choose another output path")
    found = identify(path)
    if found is not None and (found.kind in PROTECTED or found.kind != kind):
        raise FileExistsError(f"refusing to write a {kind} over {path}: it is {found.what}, which this command "
                              f"did not make; --overwrite never replaces it. {hint[0].upper() + hint[1:]}")
    resolved = path.resolve()
    for src in sources:
        src = Path(src).resolve()
        if resolved == src or (folder and resolved in src.parents):
            raise FileExistsError(f"refusing to write a {kind} at {path}: it would replace {src}, which this "
                                  f"command reads; choose another output path")
    if found is None:
        return None
    if source is not None and found.source != source and not overwrite:
        made_for = f"made for {found.source}" if found.source else "whose source is not recorded"
        raise FileExistsError(f"{path} holds a {kind} {made_for}, not for {source}; pass --overwrite to replace "
                              f"it, or {hint}")
    return found


def check_report_folder(folder: str | os.PathLike, names: tuple[str, ...], what: str) -> Path:
    """The policy for a folder a command writes a set of report files into (``names``) beside other files: it may
    not be a checkpoint, a bundle, a package or a bench report, and none of ``names`` may be another folder's file
    or of a kind this toolkit writes for another command. Returns ``folder``."""
    folder = Path(folder)
    found = identify(folder) if folder.is_dir() else None
    if found is not None and found.kind is not None:
        raise FileExistsError(f"refusing to write the {what} into {folder}: it is {found.what}; choose another folder")
    for name in names:
        owner = owner_of(folder / name)
        there = identify(folder / name) if owner is None and not (folder / name).is_dir() else None
        if owner is not None or (there is not None and there.kind is not None):
            raise FileExistsError(f"refusing to write the {what} over {folder / name}: it is "
                                  f"{owner or there.what}; choose another folder")
    return folder


def check_output_file(path: str | os.PathLike, kind: str, source: str | None = None, **options: Any) -> Path:
    """:func:`check_output` for a file output; returns ``path``."""
    check_output(path, kind, source, **options)
    return Path(path)
