"""Triton Inference Server: a model repository ``<name>/config.pbtxt``, ``<name>/1/model.plan|model.onnx``, labels.

Triton does no preprocessing: clients send the tensor the bundle expects, ``(pixels / 255 - mean) / std`` NCHW
float32, recorded in the package manifest. ``max_batch_size`` and the preferred batch sizes come from the engine's
optimization profile (or the ONNX export's batch range); dims exclude the batch axis.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

from onnx import TensorProto

from ..devicekit.bundle import Artifact
from ..devicekit.fileio import atomic_write_text
from ..export.device_bundle import SHELL_SCRIPT as BUILD_SCRIPT
from .graph_edit import io_types
from .labels import write_labels
from .options import PackageOptions
from .preprocess import bundle_transform
from .source import BundleView, PackageError

CONFIG_FILE = "config.pbtxt"
LABELS_FILE = "labels.txt"
VERSION = "1"
MODEL_FILES = {"tensorrt_plan": "model.plan", "onnxruntime_onnx": "model.onnx"}
ONNX_TYPES = {TensorProto.FLOAT: "TYPE_FP32", TensorProto.FLOAT16: "TYPE_FP16"}
# ORT TensorRT execution provider precision per packaged precision (Triton onnxruntime backend "precision_mode")
TRT_EP_PRECISION = {"fp32": "FP32", "fp16": "FP16", "int8": "INT8"}


def model_name(view: BundleView, options: PackageOptions) -> str:
    """Triton model name (a directory name): the option or the bundle's model, made filesystem-safe."""
    name = options.name or view.model_name
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name in (".", ".."):
        raise PackageError(f"model name {name!r} must use letters, digits, '_', '.', '-' only (--name)")
    return name


def choose_platform(view: BundleView, options: PackageOptions) -> tuple[str, Artifact | None, str | None]:
    """(platform, engine artifact or None, note) for the requested platform and what the bundle holds."""
    engine = view.artifact("engine", options.precision)
    if options.triton_platform == "tensorrt_plan" and engine is None:
        if (view.path / BUILD_SCRIPT).is_file():
            how = (f"copy {view.path} to the serving GPU and run `bash {BUILD_SCRIPT}` in it (it builds the engine "
                   f"and records it in the manifest)")
        else:
            how = (f"export with `ibit-export CHECKPOINT --to tensorrt --precision {options.precision} --out "
                   f"{view.path}` (on the serving GPU it builds the engine; elsewhere it writes {BUILD_SCRIPT} to run "
                   f"there)")
        raise PackageError(
            f"{view.manifest_path} lists no {options.precision} TensorRT engine for Triton's tensorrt_plan platform. "
            f"To build it: {how}; then package again. Or serve the ONNX through ONNX Runtime with the TensorRT "
            f"accelerator: --triton-platform onnxruntime_onnx")
    if options.triton_platform == "onnxruntime_onnx" or engine is None:
        note = None if options.triton_platform == "onnxruntime_onnx" else (
            f"no {options.precision} TensorRT engine in the bundle: serving the ONNX through ONNX Runtime with "
            f"the TensorRT execution accelerator (build an engine with build_engine.sh for tensorrt_plan)")
        return "onnxruntime_onnx", None, note
    return "tensorrt_plan", engine, None


def _built_from(view: BundleView, engine: Artifact) -> Path:
    """The ONNX ``engine`` was built from (its manifest entry's ``built_from``, else the ONNX of its precision)."""
    built_from = engine.entry.get("built_from")
    art = view.bundle.find("onnx", path=built_from) if built_from else None
    return view.bundle.file(art) if art is not None else view.require_onnx(engine.precision)


def write_triton(view: BundleView, out: Path, options: PackageOptions) -> dict[str, Any]:
    """Write a one-model Triton repository into ``out``; returns the package record."""
    name = model_name(view, options)
    platform, engine, note = choose_platform(view, options)
    model_rel = f"{name}/{VERSION}/{MODEL_FILES[platform]}"
    (out / name / VERSION).mkdir(parents=True, exist_ok=True)
    profile = view.profile(engine)
    # The tensor types are the ONNX graph's: an engine keeps the I/O types of the ONNX it was built from.
    onnx_source = _built_from(view, engine) if engine is not None else view.require_onnx(options.precision)
    source = view.bundle.file(engine) if engine is not None else onnx_source
    types = io_types(onnx_source)
    try:
        in_type = ONNX_TYPES[types[view.input_name][0]]
        out_type = ONNX_TYPES[types[view.output_name][0]]
    except KeyError as exc:
        raise PackageError(f"{onnx_source}: input/output {view.input_name!r}/{view.output_name!r} must be float32 or "
                           f"float16 tensors for Triton; found {types}") from exc
    lo, hi, opt = profile.min_batch, profile.max_batch, profile.opt_batch
    if lo != 1:
        raise PackageError(f"{source}: its batch profile starts at {lo}, but Triton sends any batch from 1 to "
                           f"max_batch_size; rebuild with --min-batch 1")
    shutil.copyfile(source, out / model_rel)
    write_labels(out / name / LABELS_FILE, view.classes, "\n", "Triton", view.manifest_path)
    preferred = sorted({int(opt), int(hi)})
    text = config_text(name, platform, int(hi), view, in_type, out_type, preferred, options)
    atomic_write_text(out / name / CONFIG_FILE, text)
    return {
        "files": {f"{name}/{CONFIG_FILE}": "Triton model config", model_rel: f"model ({platform})",
                  f"{name}/{LABELS_FILE}": "labels"},
        "references": {f"{name}/{CONFIG_FILE}": [f"{name}/{LABELS_FILE}", model_rel]},
        "triton": {"model_name": name, "platform": platform, "max_batch_size": int(hi),
                   "preferred_batch_size": preferred, "source": source.name},
        "preprocessing": {"target": "triton (client side)", **bundle_transform(
                              view.input.mean, view.input.std, view.input.order).to_dict(),
                          "note": "Triton passes tensors through; the client sends (pixels / 255 - mean) / std"},
        "model": {"source": source.name, "precision": options.precision, "fold": None, "softmax": False},
        "commands": ["docker run --gpus all --rm -p8000:8000 -p8001:8001 -p8002:8002 -v \"$PWD\":/models "
                     "nvcr.io/nvidia/tritonserver:<yy.mm>-py3 tritonserver --model-repository=/models",
                     f"curl -s localhost:8000/v2/models/{name}/config"],
        "notes": [note] if note else [],
    }


def config_text(name: str, platform: str, max_batch: int, view: BundleView, in_type: str, out_type: str,
                preferred: list[int], options: PackageOptions) -> str:
    """config.pbtxt in protobuf text format (inference.ModelConfig)."""
    chw = ", ".join(map(str, view.input.chw))
    text = f"""name: "{name}"
platform: "{platform}"
max_batch_size: {max_batch}
input [
  {{
    name: "{view.input_name}"
    data_type: {in_type}
    format: FORMAT_NCHW
    dims: [ {chw} ]
  }}
]
output [
  {{
    name: "{view.output_name}"
    data_type: {out_type}
    dims: [ {len(view.classes)} ]
    label_filename: "{LABELS_FILE}"
  }}
]
dynamic_batching {{
  preferred_batch_size: [ {", ".join(map(str, preferred))} ]
  max_queue_delay_microseconds: {options.max_queue_delay_us}
}}
instance_group [
  {{
    count: 1
    kind: KIND_GPU
  }}
]
"""
    if platform == "onnxruntime_onnx":
        text += f"""optimization {{
  execution_accelerators {{
    gpu_execution_accelerator : [
      {{
        name : "tensorrt"
        parameters {{ key: "precision_mode" value: "{TRT_EP_PRECISION[options.precision]}" }}
        parameters {{ key: "max_workspace_size_bytes" value: "1073741824" }}
      }}
    ]
  }}
}}
"""
    return text
