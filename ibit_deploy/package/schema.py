"""Checks of the written configs without the servers: Triton's against its protobuf schema, nvinfer's as its INI.

Triton: the config is parsed as protobuf text of ``inference.ModelConfig`` with the message classes generated from
Triton's ``model_config.proto`` that the ``tritonclient`` package ships (``tritonclient/grpc/model_config_pb2.py``);
that module is loaded by path, because importing the ``tritonclient.grpc`` package also needs grpcio, which the
schema does not. Unknown fields, wrong enum values and wrong types are parse errors.

nvinfer: parsed with Python's INI parser (GLib key files are INI); every key must be one that
``gstnvinfer_property_parser.h`` (DeepStream 6.4-8.0) defines, values are checked for the keys written here.
"""

from __future__ import annotations

import configparser
import importlib.util
from pathlib import Path
from typing import Any

from .model_variant import PackageCheckFailed

# Keys of the [property] group in DeepStream's gstnvinfer_property_parser.h (CONFIG_GROUP_INFER_* macros) and the
# Gst-nvinfer plugin documentation.
_KEY_LIST = """
gie-unique-id process-mode interval labelfile-path gpu-id secondary-reinfer-interval output-tensor-meta
disable-output-host-copy auto-inc-mem max-gpu-mem-per enable-dla use-dla-core dump-input-tensor dump-output-tensor
batch-size network-mode model-engine-file int8-calib-file workspace-size output-blob-names is-classifier
network-type force-implicit-batch-dim infer-dims model-color-format net-scale-factor offsets mean-file
maintain-aspect-ratio symmetric-padding scaling-filter scaling-compute-hw custom-network-config onnx-file
model-file proto-file uff-file tlt-encoded-model tlt-model-key layer-device-precision classifier-threshold
classifier-async-mode classifier-type parse-classifier-func-name custom-lib-path operate-on-gie-id
operate-on-class-ids input-object-min-width input-object-min-height input-object-max-width input-object-max-height
num-detected-classes cluster-mode parse-bbox-func-name filter-out-class-ids segmentation-threshold
output-instance-mask output-io-formatting engine-create-func-name crop-objects-to-roi-boundary
"""
NVINFER_KEYS = frozenset(_KEY_LIST.split())
NVINFER_FILE_KEYS = ("onnx-file", "labelfile-path", "int8-calib-file", "mean-file", "custom-lib-path")


def load_model_config_pb2() -> Any:
    """tritonclient's generated ``model_config_pb2`` module, or ImportError saying how to install it."""
    spec = importlib.util.find_spec("tritonclient")
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("the Triton schema check needs the tritonclient package (pip install tritonclient)")
    path = Path(next(iter(spec.submodule_search_locations))) / "grpc" / "model_config_pb2.py"
    if not path.is_file():
        raise ImportError(f"tritonclient is installed but has no {path}")
    module_spec = importlib.util.spec_from_file_location("ibit_deploy_triton_model_config_pb2", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    return module


def check_triton_config(path: Path) -> dict[str, Any]:
    """Parse ``config.pbtxt`` against inference.ModelConfig and check what Triton checks on load."""
    from google.protobuf import text_format

    try:
        pb2 = load_model_config_pb2()
    except ImportError as exc:
        return {"checked": False, "reason": str(exc)}
    try:
        config = text_format.Parse(path.read_text(encoding="utf-8"), pb2.ModelConfig())
    except text_format.ParseError as exc:
        raise PackageCheckFailed(f"{path} is not a valid Triton model config (inference.ModelConfig): {exc}") from exc
    model_dir = path.parent
    problems = []
    if config.name != model_dir.name:
        problems.append(f"name {config.name!r} differs from the model directory {model_dir.name!r}")
    files = {"tensorrt_plan": "model.plan", "onnxruntime_onnx": "model.onnx"}
    if config.platform not in files:
        problems.append(f"platform {config.platform!r} is not one of {sorted(files)}")
    elif not any((d / (config.default_model_filename or files[config.platform])).is_file()
                 for d in model_dir.iterdir() if d.is_dir() and d.name.isdigit()):
        problems.append(f"no version directory holds {files[config.platform]}")
    for tensor in [*config.input, *config.output]:
        if any(d == 0 or d < -1 for d in tensor.dims):
            problems.append(f"{tensor.name}: dims {list(tensor.dims)} must be positive (or -1)")
    for out in config.output:
        if out.label_filename and not (model_dir / out.label_filename).is_file():
            problems.append(f"{out.name}: label_filename {out.label_filename} is missing")
    batching = config.dynamic_batching
    if config.max_batch_size <= 0 and config.HasField("dynamic_batching"):
        problems.append("dynamic_batching needs max_batch_size > 0")
    if any(not 1 <= b <= config.max_batch_size for b in batching.preferred_batch_size):
        problems.append(f"preferred_batch_size {list(batching.preferred_batch_size)} must lie in [1, "
                        f"{config.max_batch_size}]")
    if problems:
        raise PackageCheckFailed(f"{path}: " + "; ".join(problems))
    return {"checked": True, "schema": "inference.ModelConfig from tritonclient's model_config_pb2 (Triton's "
                                       "model_config.proto)", "passed": True}


def check_nvinfer_config(path: Path, channels: int) -> dict[str, Any]:
    """Parse an nvinfer config as INI; every key documented, written values well formed, referenced files present."""
    parser = configparser.ConfigParser(interpolation=None, strict=True, delimiters=("=",), comment_prefixes=("#",))
    parser.optionxform = str  # nvinfer keys are case-sensitive
    try:
        parser.read_string(path.read_text(encoding="utf-8"), source=str(path))
    except configparser.Error as exc:
        raise PackageCheckFailed(f"{path} is not a valid nvinfer INI config: {exc}") from exc
    if "property" not in parser:
        raise PackageCheckFailed(f"{path} has no [property] group")
    props = parser["property"]
    problems = [f"unknown key {k!r}" for k in props if k not in NVINFER_KEYS]
    try:
        dims = [int(v) for v in props.get("infer-dims", "").split(";")]
        if len(dims) != 3 or dims[0] != channels or min(dims) <= 0:
            problems.append(f"infer-dims {props.get('infer-dims')} must be C;H;W with C={channels}")
        if int(props.get("network-mode", "0")) not in (0, 1, 2):
            problems.append(f"network-mode {props['network-mode']} must be 0 (FP32), 1 (INT8) or 2 (FP16)")
        if int(props.get("model-color-format", "0")) not in (0, 1, 2):
            problems.append("model-color-format must be 0 (RGB), 1 (BGR) or 2 (GRAY)")
        float(props.get("net-scale-factor", "1"))
        offsets = [float(v) for v in props.get("offsets", "0").split(";")] if "offsets" in props else []
        if offsets and len(offsets) != channels:
            problems.append(f"offsets has {len(offsets)} values for {channels} channels")
        float(props.get("classifier-threshold", "0"))
        if int(props.get("batch-size", "1")) < 1:
            problems.append("batch-size must be >= 1")
    except ValueError as exc:
        problems.append(f"malformed value: {exc}")
    for key in NVINFER_FILE_KEYS:
        if key in props and not (path.parent / props[key]).is_file():
            problems.append(f"{key}={props[key]} does not exist beside the config")
    if problems:
        raise PackageCheckFailed(f"{path}: " + "; ".join(problems))
    return {"checked": True, "schema": "INI [property] with keys from gstnvinfer_property_parser.h", "passed": True}
