"""The bundle's file layout: every file name a bundle holds, and the precisions it may hold them in.

    BUNDLE/
      manifest.json            the one description of the bundle (devicekit.manifest reads and writes it)
      model.onnx               fp32 ONNX; model.fp16.onnx and model.int8.onnx beside it when exported
      model[.fp16|.int8].ort.onnx  the same graphs with ONNX Runtime's transformer fusions (ORT backends only)
      model.attn.onnx          --attention onnx-attention: model.onnx with each attention as one ONNX Attention op
      engine.plan              the TensorRT engine (built by ibit-export or on the device), timing.cache beside it
      calib.npz                calibration / verification images
      reference.npz            the reference model's logits on the bundle's check images (devicekit.reference)
      build_engine.py          the launcher: checks every kit file's sha256, then runs devicekit.cli
      build_engine.sh          the trtexec route to the same engine
      devicekit/*.py           this package, copied whole
      bench/                   ibit-bench reports
      packages/                DeepStream / Triton / jetson-inference packages

Standard library only: the device kit and the full package both read their names here.
"""

from __future__ import annotations

from pathlib import Path

MANIFEST_FILE = "manifest.json"
PRECISIONS = ("fp32", "fp16", "int8")
DEFAULT_ONNX = {"fp32": "model.onnx", "fp16": "model.fp16.onnx", "int8": "model.int8.onnx"}
# ONNX Runtime's fused form of each ONNX file above (export/ort_graph.py); manifest kind ORT_KIND, so that TensorRT,
# which fuses on its own and cannot parse ORT's contrib ops, never takes one for its precision's ONNX
ORT_ONNX = {"fp32": "model.ort.onnx", "fp16": "model.fp16.ort.onnx", "int8": "model.int8.ort.onnx"}
ORT_KIND = "onnx-ort"
# ``ibit-export --attention onnx-attention`` (export/attention_op.py): the fp32 (and fp16) model with each attention core as one
# ONNX ``Attention`` op (opset 23) carrying the folded bias as its additive attn_mask. Its own kind, so that no reader
# takes it for its precision's ONNX: only the device kit builds from it, where the TensorRT there parses the op
# (devicekit/attention_form.py), and falls back to the MatMul form (DEFAULT_ONNX) elsewhere.
ATTENTION_OP_ONNX = {"fp32": "model.attn.onnx", "fp16": "model.fp16.attn.onnx"}  # no int8: export/attention_op.py
ATTENTION_OP_KIND = "onnx-attention-op"
DEFAULT_ENGINE = "engine.plan"
DEFAULT_TIMING_CACHE = "timing.cache"
DEFAULT_CALIBRATION = "calib.npz"
REFERENCE_FILE = "reference.npz"  # check images + the trained (unfolded) model's logits on them, written at export
REFERENCE_KIND = "reference"  # its kind in manifest.json's artifacts
BENCH_DIR = "bench"  # ibit-bench's default report folder inside a bundle
PACKAGES_DIR = "packages"  # ibit-export --package / ibit-deploy package's default folder inside a bundle
LAUNCHER = "build_engine.py"  # the bundle's entry point into the kit (devicekit/launcher.py, copied)
KIT_DIR = "devicekit"  # where the bundle carries this package
# What the bundle lists as its kit: the launcher's kind and the kit modules' kind in manifest.json's artifacts.
LAUNCHER_KIND = "script"
KIT_KIND = "kit"


def kit_sources() -> dict[str, Path]:
    """Bundle-relative path -> this package's file, for every file a bundle carries as its device kit."""
    here = Path(__file__).resolve().parent
    files = {f"{KIT_DIR}/{p.name}": p for p in sorted(here.glob("*.py")) if p.name != "launcher.py"}
    files[LAUNCHER] = here / "launcher.py"
    return files


def check_precision(precision: str) -> None:
    """ValueError unless ``precision`` is one a bundle may hold."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")
