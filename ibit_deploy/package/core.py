"""``package_bundle``: bundle directory -> a directory DeepStream, Triton or jetson-inference consumes as it is.

The package is written into a hidden staging directory beside ``out`` and renamed into place when every file is
written and checked, so ``out`` is either a complete package or absent. ``package.json`` records each file with its
sha256, the preprocessing the target applies, and the fold (if any) that makes it exact.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..devicekit.fileio import atomic_write_json, sha256_file
from ..devicekit.manifest import utc_now
from ..devicekit.staging import swap_in
from .model_variant import PackageCheckFailed
from .options import PACKAGE_MANIFEST, TARGET_PRECISIONS, TARGETS, TRITON_PLATFORMS, PackageOptions
from .source import PackageError, read_bundle

PACKAGE_FORMAT_VERSION = 1


def _writer(target: str):
    if target == "deepstream":
        from .deepstream import write_deepstream

        return write_deepstream
    if target == "triton":
        from .triton import write_triton

        return write_triton
    from .jetson_inference import write_jetson_inference

    return write_jetson_inference


def validate_options(target: str, options: PackageOptions) -> None:
    """PackageError for a target or option value the packagers do not accept."""
    if target not in TARGETS:
        raise PackageError(f"--for must be one of {', '.join(TARGETS)}, got {target!r}")
    if options.precision not in TARGET_PRECISIONS[target]:
        hint = {"jetson-inference": "imagenet builds its own FP16 engine from an fp32/fp16 ONNX and has no INT8 "
                                    "calibration for ONNX models; package --precision fp16 (or use --for deepstream "
                                    "or triton for INT8)"}.get(target, "")
        raise PackageError(f"{target} does not take precision {options.precision!r}; it takes "
                           f"{', '.join(TARGET_PRECISIONS[target])}. {hint}".strip())
    if options.triton_platform not in TRITON_PLATFORMS:
        raise PackageError(f"--triton-platform must be one of {', '.join(TRITON_PLATFORMS)}")
    if options.batch_size < 1 or options.max_queue_delay_us < 0:
        raise PackageError("--batch-size must be >= 1 and --max-queue-delay-us >= 0")
    if not 0.0 <= options.classifier_threshold <= 1.0:
        raise PackageError(f"--threshold is a probability in [0, 1], got {options.classifier_threshold}")


def package_bundle(bundle: str | os.PathLike, target: str, out: str | os.PathLike,
                   options: PackageOptions | None = None) -> dict[str, Any]:
    """Write the ``target`` package of ``bundle`` into ``out``; returns its manifest (also ``out/package.json``).

    Raises PackageError for bad input (the message names the file or value and the fix) and PackageCheckFailed
    when a written file fails its check (parity with the bundle, config schema).
    """
    options = options or PackageOptions()
    validate_options(target, options)
    out = Path(out)
    if out.exists() and not options.overwrite and (not out.is_dir() or any(out.iterdir())):
        raise PackageError(f"{out} already exists and is not empty; choose another --out or pass --overwrite")
    view = read_bundle(bundle)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        record = _writer(target)(view, staging, options)
        record["checks"] = _check(target, staging, record, view.input.channels)
        manifest = {
            "format_version": PACKAGE_FORMAT_VERSION, "created": utc_now(), "target": target,
            "bundle": {"path": str(view.path.resolve()), "manifest_sha256": sha256_file(view.manifest_path),
                       "model": view.model_name},
            "precision": options.precision,
            **record,
            "files": [{"path": rel, "role": role, "sha256": sha256_file(staging / rel)}
                      for rel, role in record["files"].items()],
        }
        atomic_write_json(staging / PACKAGE_MANIFEST, manifest)
        _set_modes(staging)
        swap_in(staging, out)  # one rename exchange: a kill never leaves the package half replaced or gone
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return manifest


def _set_modes(root: Path) -> None:
    """Directories and files get the modes new ones would (mkdtemp makes 0700); shell scripts are executable."""
    mask = os.umask(0)
    os.umask(mask)
    for path in [root, *root.rglob("*")]:
        executable = path.is_dir() or path.suffix == ".sh"
        path.chmod((0o777 if executable else 0o666) & ~mask)


def _check(target: str, root: Path, record: dict[str, Any], channels: int) -> dict[str, Any]:
    """Every listed and referenced file exists; the target's config passes its schema check."""
    from .schema import check_nvinfer_config, check_triton_config

    missing = [rel for rel in record["files"] if not (root / rel).is_file()]
    missing += [f"{rel} (referenced by {src})" for src, rels in record.get("references", {}).items() for rel in rels
                if not (root / rel).is_file()]
    if missing:
        raise PackageCheckFailed(f"package for {target} is missing {', '.join(missing)}")
    checks: dict[str, Any] = {"files_exist": True}
    for rel, role in record["files"].items():
        if role == "nvinfer config":
            checks["nvinfer_config"] = check_nvinfer_config(root / rel, channels)
        elif role == "Triton model config":
            checks["triton_config"] = check_triton_config(root / rel)
    return checks
