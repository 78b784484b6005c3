"""Atomic file writes and hashing: an artifact on disk is either complete or absent, never half-written."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Temporary files of atomic writes: ".<name>.<pid>.<random>.tmp" (the pid tells whether the writer still runs).
_TEMP = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]+\.tmp$")
_LEGACY_TEMP = re.compile(r"^\..+\.[A-Za-z0-9_]{8}\.tmp$")  # before the pid was in the name
LEGACY_TEMP_AGE_S = 3600.0  # a pid-less temp untouched this long belongs to no running write


def is_atomic_temp(name: str) -> bool:
    """Whether ``name`` is the temporary file of an atomic write (live or left by a killed one)."""
    return bool(_TEMP.match(name) or _LEGACY_TEMP.match(name))


def _pid_alive(pid: int) -> bool:
    if os.name != "posix":  # os.kill(pid, 0) would terminate the process on Windows
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError):  # another user's process, or a pid no process can have
        return True
    return True


def remove_stale_temps(directory: str | os.PathLike) -> list[Path]:
    """Remove temporary files that killed atomic writes left in ``directory``; returns what was removed.

    A temp whose writer (its pid) no longer runs is stale; so is a pid-less one older than LEGACY_TEMP_AGE_S.
    Temps of writes still running are left alone.
    """
    directory = Path(directory)
    removed: list[Path] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    now = time.time()
    for entry in entries:
        match = _TEMP.match(entry.name)
        try:
            if match:
                stale = int(match["pid"]) != os.getpid() and not _pid_alive(int(match["pid"]))
            elif _LEGACY_TEMP.match(entry.name):
                stale = now - entry.stat(follow_symlinks=False).st_mtime > LEGACY_TEMP_AGE_S
            else:
                continue
            if stale and entry.is_file(follow_symlinks=False):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
            elif stale and entry.is_dir(follow_symlinks=False):  # an atomic_named_path folder
                shutil.rmtree(entry.path)
                removed.append(Path(entry.path))
        except OSError:  # gone meanwhile, or not ours to remove: never fail a write over a leftover
            continue
    return removed


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is renamed over ``path``, on error removed.

    Rename within one directory is atomic on POSIX, so a reader (or a run killed mid-write) sees the old file or the
    new one, never a partial one. Temps that killed writes left in the directory are removed first.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; artifacts get the mode any new file would
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as fh:  # make the bytes durable before the rename publishes them
            os.fsync(fh.fileno())
        os.replace(tmp_path, path)
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def atomic_named_path(path: str | os.PathLike) -> Iterator[Path]:
    """Like :func:`atomic_path`, but the temporary file keeps ``path``'s own name, inside a temporary folder beside
    it: for writers that choose a format by the file's extension (``torch_tensorrt.save``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(path.parent)
    folder = Path(tempfile.mkdtemp(prefix=f".{path.name}.{os.getpid()}.", suffix=".tmp", dir=path.parent))
    try:
        yield folder / path.name
        os.replace(folder / path.name, path)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write ``obj`` as indented JSON to ``path`` atomically."""
    atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, (set, tuple)):
        return list(obj)
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


# Bounds of every JSON file the tools read (manifests, configs, studies, run and package records): a hostile file
# gets a clear error naming it instead of exhausting memory or the interpreter's recursion limit.
JSON_MAX_BYTES = 64 << 20
JSON_MAX_DEPTH = 64


def json_depth(text: str) -> int:
    """The deepest nesting of arrays and objects in JSON ``text`` (strings skipped), without parsing it."""
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
        elif char in "]}":
            depth -= 1
    return deepest


def parse_json_text(text: str, where: str | os.PathLike, what: str = "JSON file", *,
                    max_depth: int = JSON_MAX_DEPTH) -> Any:
    """Parse JSON ``text`` (from ``where``) with bounded nesting; ValueError naming ``where`` and what was expected."""
    if json_depth(text) > max_depth:
        raise ValueError(f"{where} is not a valid {what}: JSON nested deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except (ValueError, RecursionError) as exc:  # JSONDecodeError, and an integer too long for int() (4300 digits)
        raise ValueError(f"{where} is not a valid {what} (expected UTF-8 JSON): {exc}") from exc


def _read_text(path: Path, what: str, max_bytes: int) -> str:
    """The UTF-8 text of file ``path``, at most ``max_bytes``; FileNotFoundError / ValueError naming it otherwise."""
    if not path.is_file():
        raise FileNotFoundError(f"{what} not found: {path}")
    size = path.stat().st_size
    if size > max_bytes:
        raise ValueError(f"{path} is not a valid {what}: {size} bytes, more than the {max_bytes} a {what} may have")
    try:
        return path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ValueError(f"{path} is not a valid {what} (expected UTF-8 JSON): {exc}") from exc


def read_json(path: str | os.PathLike, what: str = "JSON file", *, max_bytes: int = JSON_MAX_BYTES,
              max_depth: int = JSON_MAX_DEPTH) -> Any:
    """Read JSON from ``path`` with an error that names the file and what was expected; the file's size and nesting
    are bounded (``max_bytes``, ``max_depth``) so a hostile file is refused, never a crash."""
    path = Path(path)
    return parse_json_text(_read_text(path, what, max_bytes), path, what, max_depth=max_depth)


def read_json_lines(path: str | os.PathLike, what: str = "JSON-lines file", *, max_bytes: int = JSON_MAX_BYTES,
                    max_depth: int = JSON_MAX_DEPTH) -> list[Any]:
    """Every non-blank line of a JSON-lines file (``metrics.jsonl``), each parsed with :func:`parse_json_text`'s
    bounds, the file's size bounded as :func:`read_json`'s; a bad line is a ValueError naming the file and line."""
    path = Path(path)
    lines = _read_text(path, what, max_bytes).splitlines()
    return [parse_json_text(line, f"{path} line {i}", what, max_depth=max_depth)
            for i, line in enumerate(lines, 1) if line.strip()]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
