"""``manifest.json``: the one description of an exported bundle that every stage reads and extends.

Schema (format_version 1)::

    {
      "format_version": 1,
      "created": "2026-11-21T21:00:00Z",
      "source": {"path", "weights_sha256", "config_sha256"},          # the checkpoint it came from
      "model": {"name", "kwargs", "num_params", "attn_mode", "folded"},
      "input": {"name": "images", "shape": ["batch", C, H, W], "dtype": "float32", "layout": "NCHW",
                "image_size": [H, W], "mean": [...], "std": [...], "channel_order": "RGB" | "L"},
      "output": {"name": "logits", "shape": ["batch", num_classes], "dtype": "float32"},
      "classes": [...],
      "artifacts": [{"path", "sha256", "kind": "onnx"|"engine"|"calibration"|"script"|...,
                     "precision": "fp32"|"fp16"|"int8", "opset", "quantization": {...}, "gate": {...}, ...}],
      "results": [{"artifact", "backend", "accuracy": {...}, "latency": {...}, "machine": {...}}],
      "tools": {library versions}
    }

The manifest is written last (atomically): a bundle without one is incomplete by definition.
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path
from typing import Any

from .fileio import atomic_write_json, read_json, sha256_file

MANIFEST_FILE = "manifest.json"
FORMAT_VERSION = 1


def utc_now() -> str:
    """Current UTC time, ISO 8601 with a Z."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def artifact_entry(bundle: str | os.PathLike, relpath: str, kind: str, precision: str | None = None,
                   **extra: Any) -> dict[str, Any]:
    """Describe file ``relpath`` of ``bundle`` (its sha256 is computed now)."""
    entry: dict[str, Any] = {"path": relpath, "sha256": sha256_file(Path(bundle) / relpath), "kind": kind}
    if precision is not None:
        entry["precision"] = precision
    entry.update(extra)
    return entry


def set_artifact(manifest: dict[str, Any], entry: dict[str, Any]) -> None:
    """Add ``entry`` to the manifest's artifacts, replacing an earlier entry for the same path."""
    arts = [a for a in manifest.setdefault("artifacts", []) if a["path"] != entry["path"]]
    arts.append(entry)
    manifest["artifacts"] = arts


def find_artifact(manifest: dict[str, Any], kind: str | None = None, precision: str | None = None,
                  path: str | None = None) -> dict[str, Any] | None:
    """The first artifact matching every given field, or None."""
    for art in manifest.get("artifacts", []):
        if (kind is None or art.get("kind") == kind) and (precision is None or art.get("precision") == precision) \
                and (path is None or art["path"] == path):
            return art
    return None


def write_manifest(bundle: str | os.PathLike, manifest: dict[str, Any]) -> Path:
    """Write ``manifest`` into ``bundle`` atomically; call it after every file it lists is in place."""
    manifest.setdefault("format_version", FORMAT_VERSION)
    manifest.setdefault("created", utc_now())
    path = Path(bundle) / MANIFEST_FILE
    atomic_write_json(path, manifest)
    return path


def load_manifest(bundle: str | os.PathLike, verify: bool = True) -> dict[str, Any]:
    """Read a bundle's manifest; with ``verify``, check every listed file exists and matches its sha256."""
    bundle = Path(bundle)
    if not bundle.is_dir():
        raise FileNotFoundError(f"bundle directory not found: {bundle}")
    path = bundle / MANIFEST_FILE
    if not path.is_file():
        raise FileNotFoundError(f"{bundle} has no {MANIFEST_FILE}: the bundle is incomplete (an export that did not "
                                f"finish) or not a bundle written by ibit-export")
    manifest = read_json(path, "bundle manifest")
    if not isinstance(manifest, dict) or manifest.get("format_version") != FORMAT_VERSION:
        found = manifest.get("format_version") if isinstance(manifest, dict) else type(manifest).__name__
        raise ValueError(f"{path}: expected format_version {FORMAT_VERSION}, found {found!r}")
    for key in ("input", "artifacts"):
        if key not in manifest:
            raise ValueError(f"{path}: missing required field {key!r}")
    root = bundle.resolve()
    for art in manifest["artifacts"]:
        rel = art.get("path") if isinstance(art, dict) else None
        if not isinstance(rel, str) or not isinstance(art.get("sha256"), str):
            raise ValueError(f"{path}: every artifact needs a string 'path' and 'sha256', got {art!r}")
        if Path(rel).is_absolute() or not (bundle / rel).resolve().is_relative_to(root):
            raise ValueError(f"{path}: artifact path {rel!r} points outside the bundle {bundle}; refusing it")
    if verify:
        for art in manifest["artifacts"]:
            file = bundle / art["path"]
            if not file.is_file():
                raise FileNotFoundError(f"{path} lists {art['path']}, which is missing from {bundle}")
            digest = sha256_file(file)
            if digest != art["sha256"]:
                raise ValueError(f"{file} was altered after export: sha256 {digest[:12]}... does not match the "
                                 f"manifest's {art['sha256'][:12]}...")
    return manifest


def update_manifest(bundle: str | os.PathLike, **fields: Any) -> dict[str, Any]:
    """Read, update top-level ``fields`` (lists in ``results`` are appended), and rewrite the manifest atomically."""
    manifest = load_manifest(bundle, verify=False)
    for key, value in fields.items():
        if key == "results":
            manifest.setdefault("results", []).extend(value)
        else:
            manifest[key] = value
    write_manifest(bundle, manifest)
    return manifest
