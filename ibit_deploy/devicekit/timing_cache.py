"""Timing caches keyed by GPU and TensorRT version: a cache made elsewhere is set aside with a warning and rebuilt.

The key (TensorRT version, GPU name, compute capability) is written beside the cache as ``<cache>.key.json`` (the
cache itself stays TensorRT's own bytes, so trtexec's ``--timingCacheFile`` reads the same file). On load, a cache
whose key differs, that TensorRT cannot parse, or that ``set_timing_cache`` refuses is renamed to
``<cache>.set-aside[.N]`` (its key file with it), a warning says why, and the build starts a fresh cache: never a hard
error. A cache without a key file (made before keys existed, or by trtexec) is offered to TensorRT, which decides.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from .build_limits import GpuInfo
from .fileio import atomic_write_bytes

KEY_SUFFIX = ".key.json"


def cache_key(trt_version: str, gpu: GpuInfo | None) -> dict[str, Any]:
    """What a timing cache is valid for."""
    return {"tensorrt": str(trt_version), "gpu": gpu.name if gpu else None,
            "compute_capability": gpu.record()["compute_capability"] if gpu else None}


def key_path(cache: Path) -> Path:
    return cache.with_name(cache.name + KEY_SUFFIX)


def _recorded_key(cache: Path) -> dict[str, Any] | None:
    try:
        return json.loads(key_path(cache).read_text(encoding="utf-8")[:4096])
    except (OSError, ValueError):
        return None


def set_aside(cache: Path, why: str) -> Path:
    """Rename ``cache`` (and its key file) out of the way; warn on stderr; return the new name."""
    n, target = 0, cache.with_name(cache.name + ".set-aside")
    while target.exists():
        n += 1
        target = cache.with_name(f"{cache.name}.set-aside.{n}")
    os.replace(cache, target)
    if key_path(cache).exists():
        os.replace(key_path(cache), key_path(target))
    print(f"warning: timing cache {cache}: {why}; set aside as {target.name}, a new cache is built", file=sys.stderr)
    return target


def load_timing_cache(trt: Any, config: Any, cache: Path, key: dict[str, Any]) -> dict[str, Any]:
    """Attach the cache at ``cache`` (or a fresh one) to builder ``config``; the record of what happened."""
    info: dict[str, Any] = {"path": str(cache), "key": key, "loaded": False}
    blob = b""
    if cache.is_file():
        recorded = _recorded_key(cache)
        if recorded is not None and recorded != key:
            info["set_aside"] = set_aside(cache, f"made for {recorded}, this build is {key}").name
        else:
            blob = cache.read_bytes()
    try:
        timing = config.create_timing_cache(blob)
    except Exception as exc:  # TensorRT could not parse the bytes
        timing = None
        info["set_aside"] = set_aside(cache, f"TensorRT could not read it ({exc})").name
    # ignore_mismatch=False: a cache from another GPU or TensorRT version is refused rather than misused
    if timing is not None and config.set_timing_cache(timing, False):
        info["loaded"] = bool(blob)
        return info
    if blob and "set_aside" not in info:
        info["set_aside"] = set_aside(cache, "TensorRT refused it (another GPU or TensorRT version)").name
    config.set_timing_cache(config.create_timing_cache(b""), False)
    return info


def save_timing_cache(config: Any, cache: Path, key: dict[str, Any], write_bytes=atomic_write_bytes) -> None:
    """Write the builder's timing cache and its key file."""
    write_bytes(cache, bytes(config.get_timing_cache().serialize()))
    write_bytes(key_path(cache), (json.dumps(key, sort_keys=True) + "\n").encode("utf-8"))
