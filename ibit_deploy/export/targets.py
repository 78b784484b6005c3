"""The ``--to tensorrt`` and ``--to torch-tensorrt`` targets of ``export_checkpoint``.

TensorRT engines are tied to a GPU architecture and TensorRT version, so a bundle always carries what is needed to
build the engine on the target (build_engine.sh / build_engine.py); where TensorRT and a GPU are present here, the
engine is also built now and checked against ONNX Runtime on real images.
"""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

import torch

from ..devicekit import attention_form
from ..devicekit.auto_build import AUTO
from ..devicekit.build import build_record
from ..devicekit.engine_compat import EngineCompat, refusal, runtime_options
from ..devicekit.layout import DEFAULT_ENGINE, DEFAULT_TIMING_CACHE
from ..devicekit.manifest import artifact_entry, attention_op_artifact, onnx_for, set_artifact
from ..devicekit.profile import InputSpec
from ..devicekit.refit import mark_pending
from ..devicekit.session import EngineBuildError
from ..devicekit.verify import engine_entry
from ..devicekit.versions import read_l4t_release
from ..errors import BackendUnavailable, ExportFailed
from ..trt.build import EngineTools
from .probe import parity_images

ENGINE_FILE = DEFAULT_ENGINE
TIMING_CACHE_FILE = DEFAULT_TIMING_CACHE
VERIFY_COUNT = 64  # images the engine is compared with ONNX Runtime on


def tensorrt_target(out: Path, manifest: dict[str, Any], options: Any,
                    tools: EngineTools | None = None, *, shown: Path | None = None) -> dict[str, Any]:
    """Write the on-device build kit; build and verify the engine too when TensorRT and a GPU are here.

    ``tools`` builds and verifies the engine (default: TensorRT through :mod:`ibit_deploy.trt.build`). The engine's
    manifest entry carries its check and the acceptance rule (:func:`ibit_deploy.devicekit.verify.engine_entry`), exactly
    as the on-device kit writes it. Files are written into ``out``; messages name ``shown`` (default ``out``): the
    bundle's place once an export's staging directory is swapped in.
    """
    shown = shown or out
    from .device_bundle import write_device_scripts

    tools = tools or EngineTools()
    precision = options.target_precision
    compat = EngineCompat(getattr(options, "engine_compat", "none"), getattr(options, "exclude_lean_runtime", False))
    asked = {"compat": compat} if compat != EngineCompat() else {}  # tools that predate --engine-compat still work
    if precision == AUTO:
        return _auto_target(out, manifest, tools, options.builder_limits, asked)
    onnx_name = onnx_for(manifest, precision)
    for entry in write_device_scripts(out, manifest, precision):
        set_artifact(manifest, entry)
    how = (f"On the target (Jetson: JetPack 6 / TensorRT 10.3; desktop: TensorRT 10.x or 11.x), copy {shown} and run "
           f"`bash build_engine.sh` in it (trtexec) or `python3 build_engine.py` (TensorRT Python API); either writes "
           f"{ENGINE_FILE} from {onnx_name} and checks it against ONNX Runtime.")
    profile = InputSpec.from_manifest(manifest).profile()
    mode = getattr(options, "refit_mode", None)  # --refittable / --strip-weights (devicekit/refit.py)
    # a bundle with the ONNX Attention-op form: the kit's choice of form for the TensorRT here, and its fallback
    forms = {"onnx_choice": partial(attention_form.choose_onnx, out, manifest, precision,
                                    jetson=read_l4t_release() is not None)} \
        if attention_op_artifact(manifest, precision) is not None else {}
    try:
        info = tools.build(out / onnx_name, out / ENGINE_FILE, profile, timing_cache=out / TIMING_CACHE_FILE,
                           **({"limits": options.builder_limits} if options.builder_limits else {}),
                           **({"refit": mode} if mode else {}), **asked, **forms)
    except BackendUnavailable as exc:
        return {"engine": None, "status": "build-on-device", "reason": str(exc),
                "message": f"No TensorRT engine was built here: {exc}\n{how}"}
    except EngineBuildError as exc:  # TensorRT is here but rejected the network: a failed export, not a crash
        raise ExportFailed(f"TensorRT could not build {ENGINE_FILE} from {onnx_name}: {exc}") from exc
    # checked against the MatMul form (as the kit does): the Attention-op form was gated equal to it at export
    built_from = str(info.get("built_from") or onnx_name)
    form = {k: info[k] for k in attention_form.RECORD_KEYS if k in info}
    if form:
        form["verified_against"] = onnx_name
    images, kind = parity_images(manifest, VERIFY_COUNT)
    built = info.get("tensorrt_version")
    opts = runtime_options(compat)
    try:
        if built and (why := refusal(built, compat, built, engine=ENGINE_FILE)) is not None:
            check = {"skipped": f"engine outputs were not checked here: {why}"}  # no lean runtime library here
        else:
            check = tools.verify(out / ENGINE_FILE, out / onnx_name, precision, profile, images.numpy(), kind,
                                 **({"runtime_options": opts} if opts else {}),
                                 **({"stripped": True} if mode == "stripped" else {}),
                                 **({"refit_from": out / built_from} if mode == "stripped" and built_from != onnx_name
                                    else {}))
    except EngineBuildError as exc:  # TensorRT could not load or run the engine it built: a failed check
        check = {"passed": False, "error": str(exc)}
    entry = engine_entry(ENGINE_FILE, precision, profile, sha256=info.get("engine_sha256") or "",
                         built_from=built_from, tensorrt=info.get("tensorrt_version"), verification=check, **form,
                         **_bundle_relative(build_record(info)))
    entry.update(artifact_entry(out, ENGINE_FILE, "engine", precision))  # the sha256 of the file on disk
    if mode:
        entry.update(refit_mode=mode, weights="stripped" if mode == "stripped" else "included")
    if mode == "stripped":  # checked after an in-memory refit; the shipped plan has no weights until the device's
        entry = mark_pending(entry, built_from, "weight-stripped: the plan ships without its weights")
    set_artifact(manifest, entry)
    status = "built" if entry["gate"]["passed"] else "built-but-failed-check"
    build = _bundle_relative({k: v for k, v in info.items() if k != "engine"})
    return {"engine": ENGINE_FILE, "status": status, "build": build,
            "verification": check,
            "message": f"Built {shown / ENGINE_FILE} ({status}); it runs only on this GPU model and TensorRT version. {how}"}


def _bundle_relative(record: dict[str, Any]) -> dict[str, Any]:
    """``record`` (a build description or ``{"build": ...}``) with its timing-cache path relative to the bundle, not
    the staging folder it was built in."""
    inner = record.get("build", record)
    cache = inner.get("timing_cache")
    if isinstance(cache, dict) and cache.get("path"):
        inner = {**inner, "timing_cache": {**cache, "path": TIMING_CACHE_FILE}}
    return {**record, "build": inner} if "build" in record else inner


def _auto_target(out: Path, manifest: dict[str, Any], tools: EngineTools,
                 limits: dict[str, Any] | None = None, asked: dict[str, Any] | None = None) -> dict[str, Any]:
    """``--precision auto``: the kit (its build_engine.py defaults to auto); where TensorRT, a GPU and trtexec are
    here, the selection now (status ``no-engine-passed`` when every candidate failed: the export fails)."""
    from .device_bundle import write_device_scripts

    for entry in write_device_scripts(out, manifest, AUTO):
        set_artifact(manifest, entry)
    how = (f"On the target (Jetson: JetPack 6 / TensorRT 10.3; desktop: TensorRT 10.x or 11.x, with trtexec), copy "
           f"{out} and run `python3 build_engine.py --precision auto` (or `bash build_engine.sh`): it builds fp32, "
           f"fp16 and int8 engines, checks each against ONNX Runtime, times each with trtexec and keeps the fastest "
           f"that passes as {ENGINE_FILE}.")
    profile = InputSpec.from_manifest(manifest).profile()
    try:
        record = tools.auto(out, manifest, profile, out / ENGINE_FILE, timing_cache=out / TIMING_CACHE_FILE,
                            **({"limits": limits} if limits else {}), **(asked or {}))
    except BackendUnavailable as exc:
        return {"engine": None, "status": "build-on-device", "precision": AUTO, "reason": str(exc),
                "message": f"No TensorRT engine was selected here: {exc}\n{how}"}
    manifest["engine_selection"] = record
    if not record["chosen"]:
        return {"engine": None, "status": "no-engine-passed", "precision": AUTO,
                "reason": f"--precision auto: {record['reason']}", "message": record["reason"]}
    chosen = next(c for c in record["candidates"] if c["precision"] == record["chosen"])
    entry = engine_entry(ENGINE_FILE, record["chosen"], profile, sha256="",
                         built_from=record.get("built_from", {}).get(record["chosen"]) or onnx_for(manifest, record["chosen"]),
                         tensorrt=record.get("tensorrt_version"), verification=chosen["accuracy"],
                         selected_by="--precision auto",
                         **_bundle_relative(record.get("builds", {}).get(record["chosen"], {})))
    entry.update(artifact_entry(out, ENGINE_FILE, "engine", record["chosen"]))  # the sha256 of the file on disk
    set_artifact(manifest, entry)
    return {"engine": ENGINE_FILE, "status": "built", "precision": AUTO, "chosen": record["chosen"],
            "message": f"Built {out / ENGINE_FILE} ({record['reason']}); it runs only on this GPU model and TensorRT "
                       f"version. {how}"}


def torch_tensorrt_target(out: Path, manifest: dict[str, Any], folded: torch.nn.Module,
                          options: Any, *, shown: Path | None = None) -> dict[str, Any]:
    """Compile the folded model with torch-tensorrt (dynamo) and save it, where torch_tensorrt and CUDA exist.

    Written into ``out``; messages name ``shown`` (default ``out``), as in :func:`tensorrt_target`."""
    shown = shown or out
    from .torch_tensorrt import export_torch_tensorrt

    profile = InputSpec.from_manifest(manifest).profile()
    name = "model.trt.ep"
    try:
        info = export_torch_tensorrt(folded, profile, out / name, options.target_precision)
    except BackendUnavailable as exc:
        return {"program": None, "status": "unavailable", "reason": str(exc),
                "message": f"No torch-tensorrt program was written: {exc}. The ONNX in {shown} is complete; use "
                           f"--to tensorrt for an engine built on the target."}
    set_artifact(manifest, artifact_entry(out, name, "torch-tensorrt", options.target_precision,
                                          **{k: v for k, v in info.items() if k not in ("path", "sha256")}))
    return {"program": name, "status": "saved", "message": f"Saved {shown / name} (load with torch.export.load on a "
                                                           f"machine with torch_tensorrt and the same GPU)."}
