"""``package_bundle``: bundle directory -> a directory DeepStream, Triton or jetson-inference consumes as it is.

The package is written into a hidden staging directory beside ``out`` and swapped into place when every file is
written and checked, so ``out`` is either a complete package or the previous one (the write policy,
:mod:`ibit_deploy.outputs`: ``out`` may only be nothing, an empty folder, or a package; never the bundle, a
checkpoint, a folder holding them, or anything else, ``--overwrite`` or not). ``package.json`` records each file with its
sha256, the preprocessing the target applies, and the fold (if any) that makes it exact.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import Any

from ..devicekit.fileio import atomic_write_json, sha256_file
from ..devicekit.manifest import utc_now
from ..devicekit.staging import staged_folder
from ..outputs import PACKAGE, Found, check_output, source_id
from .model_variant import PackageCheckFailed
from .options import PACKAGE_MANIFEST, TARGET_PRECISIONS, TARGETS, TRITON_PLATFORMS, PackageOptions
from .source import BundleView, PackageError, read_bundle

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
    _check_out(bundle, out, options)  # before anything is written, the lock file beside ``out`` included
    view = read_bundle(bundle)
    failed = failed_sources(view, target, options)
    with staged_folder(out, "ibit-deploy package") as staged:  # swapped in whole, or the previous one stays
        _check_out(bundle, out, options)  # again under the lock: another writer may have been first
        staging = staged.path
        record = _writer(target)(view, staging, options)
        record["checks"] = _check(target, staging, record, view.input.channels)
        manifest = {
            "format_version": PACKAGE_FORMAT_VERSION, "created": utc_now(), "target": target,
            "bundle": {"path": str(view.path.resolve()), "manifest_sha256": sha256_file(view.manifest_path),
                       "model": view.model_name},
            "precision": options.precision,
            "options": {k: v for k, v in dataclasses.asdict(options).items() if k != "overwrite"},
            **({"failed_artifacts_used": failed} if failed else {}),
            **record,
            "files": [{"path": rel, "role": role, "sha256": sha256_file(staging / rel)}
                      for rel, role in record["files"].items()],
        }
        atomic_write_json(staging / PACKAGE_MANIFEST, manifest)
        _set_modes(staging)
    return manifest


def failed_sources(view: BundleView, target: str, options: PackageOptions) -> list[dict[str, str]]:
    """The bundle artifacts this package is made from whose recorded verdict FAILED (ONNX of the precision and the
    fp32 ONNX every target is checked against; Triton's engine of the precision unless it serves the ONNX).

    None may be packaged unless ``options.allow_failed`` (``--allow-failed``): PackageError names them and the flag.
    With it, a warning on stderr says so plainly and the package records them (``failed_artifacts_used``)."""
    used = [view.artifact("onnx", options.precision), view.artifact("onnx", "fp32")]
    if target == "triton" and options.triton_platform != "onnxruntime_onnx":
        used.append(view.artifact("engine", options.precision))
    failed = []
    for art in dict.fromkeys(a for a in used if a is not None):
        verdict = view.bundle.verdict(art)
        if verdict.failed:
            failed.append({"path": art.path, "reason": verdict.reason})
    if failed and not options.allow_failed:
        names = "; ".join(f"{f['path']} ({f['reason']})" for f in failed)
        raise PackageError(f"{view.manifest_path}: the {target} package would be made from artifacts that FAILED "
                           f"their gate at export: {names}. Re-export, or package them anyway with --allow-failed "
                           f"(the package then records it)")
    for f in failed:
        print(f"ibit-deploy package: WARNING: packaging {f['path']}, which FAILED its gate at export ({f['reason']}), "
              f"because --allow-failed was given; package.json records it", file=sys.stderr)
    return failed


def repackage(bundle: str | os.PathLike, folder: str | os.PathLike) -> dict[str, Any]:
    """Regenerate the package in ``folder`` from ``bundle`` with the target and options its ``package.json``
    records (a re-export keeps the packages inside the bundle and regenerates them); returns the new manifest."""
    from ..devicekit.fileio import read_json

    folder = Path(folder)
    record = read_json(folder / PACKAGE_MANIFEST, "package manifest")
    if not isinstance(record, dict) or record.get("target") not in TARGETS:
        raise PackageError(f"{folder / PACKAGE_MANIFEST} names no package target this version knows")
    fields = {f.name for f in dataclasses.fields(PackageOptions)} - {"overwrite"}
    recorded = record.get("options") if isinstance(record.get("options"), dict) else \
        {"precision": record.get("precision", "fp32")}  # packages written before the options were recorded
    options = PackageOptions(**{k: v for k, v in recorded.items() if k in fields}, overwrite=True)
    return package_bundle(bundle, record["target"], folder, options)


def _check_out(bundle: str | os.PathLike, out: Path, options: PackageOptions) -> Found | None:
    """The write policy for ``out`` (what it holds, None if nothing); a package there needs ``--overwrite``."""
    try:
        found = check_output(out, PACKAGE, source_id(bundle), overwrite=options.overwrite, folder=True,
                             sources=(bundle,), hint="choose another --out")
    except OSError as exc:
        raise PackageError(str(exc)) from None
    if found is not None and not options.overwrite:
        raise PackageError(f"{out} already holds a package; choose another --out or pass --overwrite")
    return found


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
