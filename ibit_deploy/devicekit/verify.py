"""Checking an engine: its outputs against ONNX Runtime on the same ONNX, judged by the acceptance table, and the
manifest entry that records the check beside the rule applied.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from .acceptance import engine_acceptance, engine_accepted, engine_gate
from .agreement import compare_logits
from .layout import DEFAULT_CALIBRATION
from .profile import EngineProfile
from .session import run_engine


def verification_batches(bundle: Path, manifest: dict[str, Any], profile: EngineProfile,
                         samples: int) -> tuple[list[Any], str]:
    """Calibration images from ``calib.npz`` in chunks the profile accepts, else random inputs at min/opt/max."""
    batches, _, inputs = verification_set(bundle, manifest, profile, samples)
    return batches, inputs


def verification_set(bundle: Path, manifest: dict[str, Any], profile: EngineProfile,
                     samples: int) -> tuple[list[Any], Any, str]:
    """(batches, labels or None, description): ``calib.npz`` images (and its labels, when it has them) in chunks the
    profile accepts, else random inputs at min/opt/max without labels."""
    import numpy as np

    lo, hi = profile.min_batch, profile.max_batch
    calib = next((a["path"] for a in manifest.get("artifacts", []) if a.get("kind") == "calibration"),
                 DEFAULT_CALIBRATION)
    if (bundle / calib).is_file():
        with np.load(bundle / calib, allow_pickle=False) as data:
            images = np.asarray(data["images"][:samples], dtype=np.float32)
            labels = np.asarray(data["labels"][:samples]) if "labels" in data.files else None
        chunks = [images[i:i + hi] for i in range(0, len(images), hi)]
        chunks = [c for c in chunks if len(c) >= lo]
        if chunks:
            count = sum(len(c) for c in chunks)
            return chunks, None if labels is None else labels[:count], f"{count} images of {calib}"
    rng = np.random.default_rng(0)
    sizes = sorted({lo, profile.opt_batch, hi})
    return ([rng.standard_normal(profile.shape(n), dtype=np.float32) for n in sizes], None,
            f"random normal inputs, batches {sizes}")


def verify_engine(trt: Any, engine_bytes: bytes, onnx_path: Path, batches: Sequence[Any], *, input_name: str,
                  precision: str, inputs: str, run: Callable[..., list[Any]] | None = None,
                  labels: Any = None, runtime_options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Compare engine outputs with ONNX Runtime (CPU) on the same ONNX file, judged by the acceptance table.

    ``batches``: float32 NCHW arrays within the engine's profile (``inputs`` describes them for the record).
    ``run`` (default :func:`run_engine`) runs the engine; tests pass their own. ``labels`` (one per image) adds
    top-1 accuracies. ``runtime_options`` (:func:`.engine_compat.runtime_options`) go to ``run`` as keywords, for
    a version-compatible engine. Returns the :mod:`.agreement` record
    plus ``inputs``, ``reference``, ``acceptance`` (the rule) and ``passed``; ``{"skipped": why}`` without
    onnxruntime or numpy.
    """
    try:
        import numpy as np
        import onnxruntime as ort
    except ImportError as exc:
        return {"skipped": f"onnxruntime/numpy not importable ({exc}); engine outputs were not checked"}
    session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    reference = np.concatenate([session.run(None, {input_name: b})[0] for b in batches])
    engine_out = np.concatenate((run or run_engine)(trt, engine_bytes, batches, input_name,
                                                    **(runtime_options or {})))
    result = compare_logits(reference, engine_out, labels)  # with labels: top1 of both, top1_drop
    result.update(inputs=inputs, reference=f"onnxruntime {ort.__version__} CPU on {onnx_path.name}",
                  acceptance=engine_acceptance(precision))
    result["passed"] = bool(engine_accepted(precision, result))
    return result


def engine_entry(rel: str, precision: str, profile: EngineProfile, *, sha256: str, built_from: str,
                 tensorrt: str | None, verification: dict[str, Any], **extra: Any) -> dict[str, Any]:
    """The manifest entry of an engine: its file, profile, the check and, beside it, the acceptance rule applied."""
    return {"path": rel, "sha256": sha256, "kind": "engine", "precision": precision, "tensorrt": tensorrt,
            "built_from": built_from, "batch_range": profile.batch_range, "opt_batch": profile.opt_batch,
            "acceptance": engine_acceptance(precision), "verification": verification,
            "gate": engine_gate(precision, verification), **extra}
