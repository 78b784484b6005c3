"""jetson-inference ``imagenet``: an ONNX ending in a softmax, with ImageNet normalisation folded in, and labels.

imageNet feeds ONNX models ``(RGB pixels / 255 - (0.485, 0.456, 0.406)) / (0.229, 0.224, 0.225)`` whatever the
model was trained with, and reads its output as probabilities (threshold 0.01) without a softmax. So the packaged
model takes that tensor, maps it back to the bundle's input in its first layer (for a grey model: ITU-R 601 luma of
the three channels, as PIL's convert("L")), ends in a softmax, and has batch 1 (imageNet classifies one image).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..devicekit.fileio import atomic_write_text
from .labels import write_labels
from .model_variant import PROB_OUTPUT, check_parity, write_variant
from .options import PackageOptions
from .preprocess import jetson_inference_transform
from .source import BundleView

ONNX_FILE = "model.onnx"
LABELS_FILE = "labels.txt"
SCRIPT_FILE = "run_imagenet.sh"


def imagenet_command(input_name: str, image: str = "input.jpg", output: str = "output.jpg") -> str:
    """The exact ``imagenet`` command line for the package (run in its directory)."""
    return (f"imagenet --model={ONNX_FILE} --labels={LABELS_FILE} --input_blob={input_name} "
            f"--output_blob={PROB_OUTPUT} {image} {output}")


def write_jetson_inference(view: BundleView, out: Path, options: PackageOptions) -> dict[str, Any]:
    """Write the imageNet package into ``out``; returns the package record."""
    target = jetson_inference_transform()
    variant = write_variant(view, options.precision, target, out / ONNX_FILE, softmax=True, batch=1)
    write_labels(out / LABELS_FILE, view.classes, "\n", "jetson-inference", view.manifest_path)
    command = imagenet_command(view.input_name)
    atomic_write_text(out / SCRIPT_FILE, f"""#!/usr/bin/env bash
# Classify an image (or a video / camera URI) with jetson-inference's imagenet and the packaged model.
# Usage: bash {SCRIPT_FILE} INPUT [OUTPUT]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
imagenet --model="$here/{ONNX_FILE}" --labels="$here/{LABELS_FILE}" --input_blob={view.input_name} \\
  --output_blob={PROB_OUTPUT} "${{1:?usage: bash {SCRIPT_FILE} INPUT [OUTPUT]}}" "${{2:-output.jpg}}"
""")
    parity = check_parity(view, out / ONNX_FILE, options.precision, target, softmax=True)
    return {
        "files": {ONNX_FILE: "model", LABELS_FILE: "labels", SCRIPT_FILE: "imagenet command"},
        "references": {SCRIPT_FILE: [ONNX_FILE, LABELS_FILE]},
        "preprocessing": {"target": "jetson-inference imageNet", **target.to_dict()},
        "model": variant, "parity": parity,
        "commands": [command],
        "notes": ["imagenet builds a TensorRT engine from model.onnx on the first run and caches it beside it."],
    }
