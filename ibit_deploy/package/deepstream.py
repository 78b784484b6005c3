"""DeepStream (Gst-nvinfer): a ``[property]`` config for a primary classifier, the ONNX, labels and a pipeline script.

nvinfer computes ``y = net-scale-factor * (x - offsets[c])`` on frames converted to ``model-color-format``; a
bundle whose per-channel std differs cannot be expressed with one scale, so the package then feeds pixels / 255
(``net-scale-factor=1/255``, offsets 0) to a model with the bundle's normalisation folded into its first layer.
nvinfer's default classifier parser takes each output layer's largest value as a probability and compares it with
``classifier-threshold``, so the packaged model ends in a softmax.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..devicekit.fileio import atomic_write_text
from .labels import write_labels
from .model_variant import PROB_OUTPUT, check_parity, write_variant
from .options import PackageOptions
from .preprocess import nvinfer_keys_for, nvinfer_transform
from .source import BundleView, PackageError

CONFIG_FILE = "config_infer_primary_classifier.txt"
ONNX_FILE = "model.onnx"
LABELS_FILE = "labels.txt"
PIPELINE_FILE = "run_pipeline.sh"
NETWORK_MODE = {"fp32": 0, "int8": 1, "fp16": 2}
COLOR_FORMAT = {"RGB": 0, "BGR": 1, "L": 2}
RAW_SCALE = 1.0 / 255.0  # the folded variant takes pixels / 255


def engine_file_name(batch: int, precision: str) -> str:
    """The name nvinfer gives the engine it builds from ``onnx-file`` (so a second run reuses it)."""
    return f"{ONNX_FILE}_b{batch}_gpu0_{precision}.engine"


def write_deepstream(view: BundleView, out: Path, options: PackageOptions) -> dict[str, Any]:
    """Write the nvinfer package into ``out``; returns the package record (files, preprocessing, commands)."""
    profile = view.profile()
    lo, hi = profile.min_batch, profile.max_batch
    if not lo <= options.batch_size <= hi:
        raise PackageError(f"--batch-size {options.batch_size} is outside the bundle's batch range [{lo}, {hi}] "
                           f"({view.manifest_path} input.batch_range); re-export with --max-batch >= "
                           f"{options.batch_size}")
    spec = view.input
    order = "L" if spec.channels == 1 else "RGB"
    keys = nvinfer_keys_for(spec.mean, spec.std)
    scale, offsets = keys if keys is not None else (RAW_SCALE, tuple(0.0 for _ in spec.mean))
    target = nvinfer_transform(scale, offsets, order)
    variant = write_variant(view, options.precision, target, out / ONNX_FILE, softmax=True)
    write_labels(out / LABELS_FILE, view.classes, ";", "nvinfer", view.manifest_path)
    props = {
        "onnx-file": ONNX_FILE,
        "model-engine-file": engine_file_name(options.batch_size, options.precision),
        "labelfile-path": LABELS_FILE,
        "batch-size": options.batch_size,
        "network-mode": NETWORK_MODE[options.precision],
        "network-type": 1,
        "process-mode": 1,
        "gie-unique-id": 1,
        "infer-dims": ";".join(map(str, spec.chw)),
        "output-blob-names": PROB_OUTPUT,
        "model-color-format": COLOR_FORMAT[order],
        "net-scale-factor": repr(float(scale)),
        "offsets": ";".join(repr(float(o)) for o in offsets),
        "maintain-aspect-ratio": 0,
        "classifier-threshold": options.classifier_threshold,
    }
    lines = ["# Gst-nvinfer config written by ibit-deploy package: primary classifier on full frames.",
             f"# Preprocessing: y = net-scale-factor * (x - offsets[c]) on {order} frames resized to "
             f"{spec.width}x{spec.height}" + ("; the bundle's mean/std are folded into the model." if
                                             variant["fold"] else " = (x / 255 - mean) / std of the bundle."),
             "[property]", *(f"{k}={v}" for k, v in props.items())]
    atomic_write_text(out / CONFIG_FILE, "\n".join(lines) + "\n")
    atomic_write_text(out / PIPELINE_FILE, pipeline_script(options.batch_size))
    parity = check_parity(view, out / ONNX_FILE, options.precision, target, softmax=True)
    return {
        "files": {CONFIG_FILE: "nvinfer config", ONNX_FILE: "model", LABELS_FILE: "labels",
                  PIPELINE_FILE: "gst-launch pipeline"},
        "references": {CONFIG_FILE: [ONNX_FILE, LABELS_FILE]},
        "preprocessing": {"target": "nvinfer", **target.to_dict(), "net-scale-factor": scale,
                          "offsets": list(offsets), "model-color-format": COLOR_FORMAT[order]},
        "model": variant, "parity": parity,
        "commands": [f"bash {PIPELINE_FILE} /path/to/video.mp4"],
        "notes": [f"nvinfer builds {props['model-engine-file']} from {ONNX_FILE} on the first run (minutes on a "
                  f"Jetson) and reuses it after."],
    }


def pipeline_script(batch: int) -> str:
    """A gst-launch-1.0 line for an H.264 MP4 file through the classifier (prints the FPS, no display needed)."""
    return f"""#!/usr/bin/env bash
# Classify every frame of an H.264 MP4 with the packaged model (DeepStream 6.x/7.x, run from this directory).
# Usage: bash {PIPELINE_FILE} VIDEO.mp4
set -euo pipefail
cd "$(dirname "$0")"
video="$(realpath "${{1:?usage: bash {PIPELINE_FILE} VIDEO.mp4}}")"
gst-launch-1.0 -e filesrc location="$video" ! qtdemux ! h264parse ! nvv4l2decoder ! m.sink_0 \\
  nvstreammux name=m batch-size={batch} width=1280 height=720 ! \\
  nvinfer config-file-path={CONFIG_FILE} ! nvvideoconvert ! nvdsosd ! \\
  fpsdisplaysink video-sink=fakesink text-overlay=false -v
"""
