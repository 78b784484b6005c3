"""The ``--to tensorrt`` and ``--to torch-tensorrt`` targets of ``export_checkpoint``.

TensorRT engines are tied to a GPU architecture and TensorRT version, so a bundle always carries what is needed to
build the engine on the target (build_engine.sh / build_engine.py); where TensorRT and a GPU are present here, the
engine is also built now and checked against ONNX Runtime on real images.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..manifest import artifact_entry, find_artifact, set_artifact
from ..runtime.base import BackendUnavailable, InputSpec

ENGINE_FILE = "engine.plan"
TIMING_CACHE_FILE = "timing.cache"
# top-1 agreement an engine must reach against ONNX Runtime on the same ONNX, per precision
ENGINE_AGREEMENT = {"fp32": 0.99, "fp16": 0.98, "int8": 0.97}


def _onnx_for(manifest: dict[str, Any], precision: str) -> str:
    art = find_artifact(manifest, kind="onnx", precision=precision)
    if art is None:
        raise ValueError(f"the bundle has no {precision} ONNX to build a TensorRT engine from")
    return art["path"]


def tensorrt_target(out: Path, manifest: dict[str, Any], options: Any) -> dict[str, Any]:
    """Write the on-device build kit; build and verify the engine too when TensorRT and a GPU are here."""
    from .device_bundle import write_device_scripts
    from .templates.build_engine import EngineBuildError
    from .tensorrt_build import build_engine

    precision = options.target_precision
    onnx_name = _onnx_for(manifest, precision)
    for entry in write_device_scripts(out, manifest, precision):
        set_artifact(manifest, entry)
    how = (f"On the target (Jetson: JetPack 6 / TensorRT 10.3; desktop: TensorRT 10.x or 11.x), copy {out} and run "
           f"`bash build_engine.sh` in it (trtexec) or `python3 build_engine.py` (TensorRT Python API); either writes "
           f"{ENGINE_FILE} from {onnx_name} and checks it against ONNX Runtime.")
    try:
        info = build_engine(out / onnx_name, out / ENGINE_FILE, min_batch=options.min_batch,
                            opt_batch=options.opt_batch, max_batch=options.max_batch,
                            timing_cache=out / TIMING_CACHE_FILE)
    except BackendUnavailable as exc:
        return {"engine": None, "status": "build-on-device", "reason": str(exc),
                "message": f"No TensorRT engine was built here: {exc}\n{how}"}
    except EngineBuildError as exc:  # TensorRT is here but rejected the network: a failed export, not a crash
        from .pipeline import ExportFailed

        raise ExportFailed(f"TensorRT could not build {ENGINE_FILE} from {onnx_name}: {exc}") from exc
    check = verify_engine(out / ENGINE_FILE, out / onnx_name, manifest, precision)
    gate = {"passed": check["passed"]}
    if not check["passed"]:
        gate["reason"] = (f"engine top-1 agreement with ONNX Runtime {check['agreement']:.3f} < "
                          f"{ENGINE_AGREEMENT[precision]} ({check['inputs']})")
    set_artifact(manifest, artifact_entry(out, ENGINE_FILE, "engine", precision, built_from=onnx_name,
                                          tensorrt=info.get("tensorrt_version"), batch_range=[options.min_batch,
                                          options.max_batch], opt_batch=options.opt_batch, verification=check,
                                          gate=gate))
    status = "built" if check["passed"] else "built-but-failed-check"
    return {"engine": ENGINE_FILE, "status": status, "build": {k: v for k, v in info.items() if k != "engine"},
            "verification": check,
            "message": f"Built {out / ENGINE_FILE} ({status}); it runs only on this GPU model and TensorRT version. {how}"}


def verify_engine(engine: Path, onnx_path: Path, manifest: dict[str, Any], precision: str,
                  count: int = 64) -> dict[str, Any]:
    """Compare a TensorRT engine with ONNX Runtime on the same ONNX, on real validation images where available."""
    from ..runtime.ort_runner import OrtRunner
    from ..runtime.tensorrt_runner import TrtRunner
    from .pipeline import parity_images

    images, kind = parity_images({"data": manifest.get("data", {})}, manifest["input"], count)
    spec = InputSpec.from_manifest(manifest)
    batch = images.numpy()[: spec.max_batch or len(images)]
    with OrtRunner(onnx_path, spec) as ref, TrtRunner(engine, spec) as trt:
        expected, got = ref.infer(batch), trt.infer(batch)
    agreement = float((expected.argmax(1) == got.argmax(1)).mean())
    return {"reference": "ort-cpu", "inputs": kind, "agreement": agreement,
            "max_abs_diff": float(np.abs(expected - got).max()), "passed": agreement >= ENGINE_AGREEMENT[precision]}


def torch_tensorrt_target(out: Path, manifest: dict[str, Any], folded: torch.nn.Module,
                          options: Any) -> dict[str, Any]:
    """Compile the folded model with torch-tensorrt (dynamo) and save it, where torch_tensorrt and CUDA exist."""
    from .torch_tensorrt import export_torch_tensorrt

    chw = tuple(manifest["input"]["shape"][1:])
    name = "model.trt.ep"
    try:
        info = export_torch_tensorrt(folded, torch.randn(options.opt_batch, *chw), out / name, options.target_precision,
                                     min_batch=options.min_batch, opt_batch=options.opt_batch,
                                     max_batch=options.max_batch)
    except BackendUnavailable as exc:
        return {"program": None, "status": "unavailable", "reason": str(exc),
                "message": f"No torch-tensorrt program was written: {exc}. The ONNX in {out} is complete; use "
                           f"--to tensorrt for an engine built on the target."}
    set_artifact(manifest, artifact_entry(out, name, "torch-tensorrt", options.target_precision,
                                          **{k: v for k, v in info.items() if k not in ("path", "sha256")}))
    return {"program": name, "status": "saved", "message": f"Saved {out / name} (load with torch.export.load on a "
                                                           f"machine with torch_tensorrt and the same GPU)."}
