"""``build_engine.py --refit``: refit the bundle's refittable engine from the bundle's ONNX, check it, swap it in.

Run on the device after ``ibit-deploy refit BUNDLE CHECKPOINT`` replaced the bundle's ONNX with a retrained
checkpoint's (same architecture and folding; the engine entry is then marked ``refit_pending``), or before the first
use of a weight-stripped engine. Steps: the engine entry must record a ``refit_mode`` (built refittable) and its
file must match its sha256; :func:`.refit.refit_serialized` refits it from the ONNX it was built from (entry
``built_from``: the ONNX Attention-op form ``model.attn.onnx`` for an engine built from it); the refitted engine goes
through the same acceptance check as a built one (:func:`.verify.verify_engine` against ONNX Runtime on the ONNX it
was checked against when built, ``verified_against``, else ``built_from``; judged by :mod:`.acceptance`); only an engine that passes (or was not checked, ``--no-verify``)
replaces the old one, through the staged folder swap every bundle writer uses (:mod:`.staging`): a copy of the
bundle (hard links) with the new engine and manifest entry, swapped in whole. A failed refit or check leaves the
bundle as it was (its engine still marked as needing a refit, so no reader runs it) and writes its report beside.

Exit codes as the kit's: 0 refitted, 1 refit or check failed, 2 bad bundle or arguments, 3 TensorRT or a GPU
missing.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .acceptance import engine_acceptance, engine_accepted, engine_gate, verification_summary
from .engine_compat import EngineCompat
from .exit_codes import BAD_INPUT, CHECK_FAILED, DONE, REQUIREMENT_UNMET
from .fileio import atomic_write_bytes, is_atomic_temp, sha256_file
from .layout import MANIFEST_FILE, PRECISIONS
from .manifest import find_artifact, load_manifest, set_artifact, write_manifest
from .profile import EngineProfile
from .refit import PENDING, refit_serialized
from .session import CudaUnavailable, EngineBuildError, cuda_device_name
from .staging import staged_folder
from .verify import verification_batches, verify_engine

PURPOSE = "build_engine.py --refit"
CLASHING = ("legacy", "skip_build", "onnx", "print_trtexec", "no_manifest", "refittable")


class _Changed(Exception):
    """Another writer changed the engine or its ONNX between the refit and the swap."""


def _fail(message: str) -> int:
    print(f"build_engine.py: error: {message}", file=sys.stderr)
    return BAD_INPUT


def _engine_entry(bundle: Path, manifest: dict[str, Any], engine: Path) -> tuple[dict[str, Any] | None, str]:
    """(the engine's manifest entry or None, why not)."""
    if not engine.is_relative_to(bundle):
        return None, f"--refit refits the bundle's own engine; {engine} is outside {bundle}"
    rel = engine.relative_to(bundle).as_posix()
    entry = find_artifact(manifest, kind="engine", path=rel)
    if entry is None:
        return None, f"{bundle / MANIFEST_FILE} lists no engine {rel}: build one first (python3 build_engine.py)"
    if not entry.get("refit_mode"):
        return None, (f"{rel} was not built refittable (its manifest entry has no refit_mode): rebuild it with "
                      f"`python3 build_engine.py --refittable`, or export with ibit-export --refittable")
    try:
        compat = EngineCompat.from_record(entry.get("engine_compat"), f"{bundle / MANIFEST_FILE}: {rel}")
    except ValueError as exc:
        return None, str(exc)
    if (why := compat.refit_refusal("refit")) is not None:
        return None, f"{rel}: {why}"
    if entry.get("precision") not in PRECISIONS or not isinstance(entry.get("built_from"), str):
        return None, f"{bundle / MANIFEST_FILE}: the entry of {rel} records no precision/built_from ONNX"
    if not engine.is_file():
        return None, f"{engine} is missing; build the engine (python3 build_engine.py)"
    if sha256_file(engine) != entry.get("sha256"):
        return None, f"{engine} does not match the sha256 its manifest entry records (altered since it was recorded)"
    for key, what in (("built_from", "was built from"), ("verified_against", "is checked against")):
        name = entry.get(key)
        if name is not None and not (isinstance(name, str) and (bundle / name).is_file()):
            return None, f"{bundle / str(name)} (the ONNX {rel} {what}) is missing"
    return entry, ""


def _link_tree(source: Path, dest: Path, skip: set[str]) -> None:
    """Copy bundle ``source`` into ``dest`` as hard links (a copy where links cannot be made), but ``skip``."""
    def link(src: str, dst: str) -> None:
        try:
            os.link(src, dst)
        except OSError:
            shutil.copy2(src, dst)

    for item in sorted(source.iterdir()):
        if item.name in skip or is_atomic_temp(item.name):
            continue
        if item.is_dir() and not item.is_symlink():
            shutil.copytree(item, dest / item.name, symlinks=True, copy_function=link)
        elif item.is_symlink():
            os.symlink(os.readlink(item), dest / item.name)
        else:
            link(str(item), str(dest / item.name))


def main_refit(args: argparse.Namespace, r: dict[str, Any], trt: Any, trt_error: str,
               engine_runner: Callable[..., list[Any]] | None = None) -> int:
    """The ``--refit`` run of the kit CLI (``r``: its resolved bundle, manifest, engine, profile)."""
    clash = [f"--{name.replace('_', '-')}" for name in CLASHING if getattr(args, name, False)]
    if clash or args.precision:
        return _fail(f"--refit refits the recorded engine as it was built; drop {', '.join(clash or ['--precision'])}")
    bundle, manifest, engine = r["bundle"], r["manifest"], r["engine"]
    entry, why = _engine_entry(bundle, manifest, engine)
    if entry is None:
        return _fail(why)
    if trt is None:
        print(f"build_engine.py: {trt_error}; --refit needs TensorRT's Python API (and the GPU that built the "
              f"engine).", file=sys.stderr)
        return REQUIREMENT_UNMET
    rel, precision, onnx = engine.relative_to(bundle).as_posix(), entry["precision"], bundle / entry["built_from"]
    # refitted from the file it was built from (the ONNX Attention-op form, maybe), checked on the one it was checked
    # against when built (the MatMul form: any onnxruntime runs it)
    reference = bundle / str(entry.get("verified_against") or entry["built_from"])
    onnx_sha = sha256_file(onnx)
    report: dict[str, Any] = {"created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                              "action": "refit", "engine": str(engine), "precision": precision, "onnx": str(onnx),
                              "verified_against": str(reference),
                              "previous_engine_sha256": entry.get("sha256")}
    try:
        refitted, info = refit_serialized(trt, engine.read_bytes(), onnx)
    except CudaUnavailable as exc:
        print(f"build_engine.py: {exc}", file=sys.stderr)
        return REQUIREMENT_UNMET
    except EngineBuildError as exc:
        report["error"] = str(exc)
        _write_report(args, engine, report)
        print(f"build_engine.py: refit failed, {rel} left as it was: {exc}", file=sys.stderr)
        return CHECK_FAILED
    report["refit"] = info
    check = _check(args, r, trt, refitted, reference, precision, engine_runner)
    report["verification"], report["acceptance"] = check, engine_acceptance(precision)
    if engine_accepted(precision, check) is False:
        _write_report(args, engine, report)
        print(f"build_engine.py: the refitted engine FAILED its check ({verification_summary(check, precision)}); "
              f"{rel} left as it was (still marked as needing a refit)", file=sys.stderr)
        return CHECK_FAILED
    device = cuda_device_name()
    try:
        with staged_folder(bundle, PURPOSE, say=lambda text: print(f"build_engine.py: {text}", file=sys.stderr)) \
                as staged:
            current = load_manifest(bundle, verify=False)  # under the lock: what another writer may have changed
            now = find_artifact(current, kind="engine", path=rel) or {}
            if now.get("sha256") != entry.get("sha256") or sha256_file(onnx) != onnx_sha:
                raise _Changed(f"{bundle} changed while the engine was refitted; run --refit again")
            _link_tree(bundle, staged.path, {MANIFEST_FILE, rel})
            (staged.path / rel).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(staged.path / rel, refitted)  # a new file: the old bundle's link is untouched
            new = {k: v for k, v in now.items() if k != PENDING}
            new.update(sha256=sha256_file(staged.path / rel), tensorrt=str(trt.__version__), device=device,
                       verification=check, acceptance=engine_acceptance(precision),
                       gate=engine_gate(precision, check), weights="included",
                       refit={**info, "onnx_sha256": onnx_sha, "at": report["created"]})
            set_artifact(current, new)
            report.update(engine_sha256=new["sha256"], engine_bytes=len(refitted), device=device)
            if args.report is None:  # the kit's report, beside the engine in the new bundle
                _write_report(args, staged.path / rel, report)
            write_manifest(staged.path, current)
    except _Changed as exc:
        return _fail(str(exc))
    if args.report is not None:
        _write_report(args, engine, report)
    print(f"engine: {engine} refitted from {onnx.name} in {info['refit_seconds']} s ({info['weights_refitted']} "
          f"weights); check: {verification_summary(check, precision)}")
    return DONE


def _check(args: argparse.Namespace, r: dict[str, Any], trt: Any, engine_bytes: bytes, onnx: Path, precision: str,
           engine_runner: Callable[..., list[Any]] | None) -> dict[str, Any]:
    """The acceptance check a built engine gets (the kit's ``verify_engine``), on the refitted bytes."""
    if args.no_verify:
        return {"skipped": "--no-verify"}
    profile: EngineProfile = r["profile"]
    try:
        batches, inputs = verification_batches(r["bundle"], r["manifest"], profile, args.verify_samples)
        return verify_engine(trt, engine_bytes, onnx, batches, input_name=profile.input_name, precision=precision,
                             inputs=inputs, run=engine_runner)
    except EngineBuildError as exc:  # TensorRT could not load or run the refitted engine: a failed check
        return {"passed": False, "error": str(exc)}
    except (ImportError, RuntimeError) as exc:  # no cuda-python, no GPU: nothing was checked
        return {"skipped": f"engine could not be run here: {exc}"}


def _report_path(args: argparse.Namespace, engine: Path) -> Path:
    return args.report or engine.with_suffix(".refit.json")


def _write_report(args: argparse.Namespace, engine: Path, report: dict[str, Any]) -> None:
    atomic_write_bytes(_report_path(args, engine), (json.dumps(report, indent=2) + "\n").encode("utf-8"))
