"""The accuracy gate: a quantized model is measured against its fp32 reference on held-out real images.

``evaluate_against_reference`` runs both models through the same :class:`~ibit_deploy.runtime.OrtRunner` the harness
and the runtime use and reports top-1 of each, the drop, top-1 agreement and logit-level differences.
``AccuracyGate`` turns those numbers into a pass/fail with a reason. Accuracies, drop and agreement are in percent
(points), so ``max_drop=1.0`` means "at most one top-1 point lost".
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..runtime import InputSpec, OrtRunner

EVAL_BATCH = 64


def run_logits(onnx_path: str | os.PathLike, images: np.ndarray, spec: InputSpec, *, threads: int = 0,
               batch: int = EVAL_BATCH) -> np.ndarray:
    """Logits of ``onnx_path`` on ``images`` with ONNX Runtime CPU, in batches within the spec's batch range."""
    if spec.max_batch is not None:
        batch = min(batch, spec.max_batch)
    with OrtRunner(onnx_path, spec, device="cpu", threads=threads) as runner:
        return np.concatenate([runner.infer(images[i : i + batch]) for i in range(0, len(images), batch)])


def compare_logits(reference: np.ndarray, candidate: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """Top-1 of both, drop (points), agreement (%), max/mean |diff| and mean/min cosine similarity of the logits.

    Non-finite candidate logits are counted (``nonfinite``) and make the differences ``None`` (JSON has no inf).
    """
    if reference.shape != candidate.shape or len(reference) != len(labels):
        raise ValueError(f"logit shapes differ: reference {reference.shape}, candidate {candidate.shape}, "
                         f"labels {labels.shape}")
    count = len(labels)
    finite = np.isfinite(candidate).all(axis=1)
    right_ref = int((reference.argmax(1) == labels).sum())
    # A sample with NaN/inf logits counts as wrong and as disagreeing, whatever argmax makes of it.
    right = int(((candidate.argmax(1) == labels) & finite).sum())
    agree = int(((candidate.argmax(1) == reference.argmax(1)) & finite).sum())
    # Percentages from integer counts, so "drop 0.1 <= max_drop 0.1" compares equal instead of 0.1000000000000085.
    result: dict[str, Any] = {"count": count, "top1_ref": 100.0 * right_ref / count, "top1": 100.0 * right / count,
                              "drop": 100.0 * (right_ref - right) / count, "agreement": 100.0 * agree / count,
                              "nonfinite": int((~finite).sum())}
    if finite.all():
        diff = np.abs(candidate.astype(np.float64) - reference)
        ref64, cand64 = reference.astype(np.float64), candidate.astype(np.float64)
        cos = (ref64 * cand64).sum(1) / np.maximum(np.linalg.norm(ref64, axis=1) * np.linalg.norm(cand64, axis=1),
                                                    1e-30)
        result.update(max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()), cosine=float(cos.mean()),
                      cosine_min=float(cos.min()))
    else:
        result.update(max_abs_diff=None, mean_abs_diff=None, cosine=None, cosine_min=None)
    return result


def evaluate_against_reference(reference_onnx: str | os.PathLike, candidate_onnx: str | os.PathLike,
                               images: np.ndarray, labels: np.ndarray, input_spec: InputSpec, *,
                               threads: int = 0, reference_logits: np.ndarray | None = None) -> dict[str, Any]:
    """Run both models on ``images`` (preprocessed float32 NCHW) and compare them (see :func:`compare_logits`).

    ``reference_logits`` skips re-running the reference when the caller already has them.
    """
    labels = np.asarray(labels)
    if len(images) == 0 or len(images) != len(labels):
        raise ValueError(f"gate needs images and as many labels, got {len(images)} images and {len(labels)} labels")
    ref = reference_logits if reference_logits is not None else run_logits(reference_onnx, images, input_spec,
                                                                            threads=threads)
    cand = run_logits(candidate_onnx, images, input_spec, threads=threads)
    return compare_logits(ref, cand, labels)


@dataclass(frozen=True)
class AccuracyGate:
    """Pass when the candidate loses at most ``max_drop`` top-1 points and produces only finite logits.

    ``min_agreement`` (percent, optional) additionally bounds how often the top-1 class may change.
    """

    max_drop: float = 1.0
    min_agreement: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_drop, (int, float)) or not math.isfinite(self.max_drop):
            raise ValueError(f"max_drop must be a finite number of top-1 points, got {self.max_drop!r}")

    def check(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """The gate record for the manifest: the metrics plus ``passed``, ``max_drop`` and a ``reason``."""
        reasons = []
        if metrics.get("nonfinite"):
            reasons.append(f"{metrics['nonfinite']} of {metrics['count']} images gave NaN/inf logits")
        if metrics["drop"] > self.max_drop:
            reasons.append(f"top-1 dropped {metrics['drop']:.2f} points ({metrics['top1_ref']:.2f} -> "
                           f"{metrics['top1']:.2f}), more than the allowed {self.max_drop:g}")
        if self.min_agreement is not None and metrics["agreement"] < self.min_agreement:
            reasons.append(f"top-1 agreement {metrics['agreement']:.2f}% is below {self.min_agreement:g}%")
        passed = not reasons
        reason = "; ".join(reasons) if reasons else (f"top-1 {metrics['top1']:.2f} vs {metrics['top1_ref']:.2f} "
                                                     f"(drop {metrics['drop']:.2f} <= {self.max_drop:g})")
        gate = {"passed": passed, "max_drop": self.max_drop, **metrics, "reason": reason}
        if self.min_agreement is not None:
            gate["min_agreement"] = self.min_agreement
        return gate

    __call__ = check
