"""The accuracy gate: a quantized model is measured against its fp32 reference on held-out real images.

``evaluate_against_reference`` runs both models through the same :class:`~ibit_deploy.runtime.OrtRunner` the harness
and the runtime use and compares them with :func:`ibit_deploy.devicekit.agreement.compare_logits` (top-1 of each, the
drop, agreement, logit differences; all fractions). ``AccuracyGate`` turns those numbers into a pass/fail with a
reason; ``max_drop=0.01`` means "at most one top-1 point lost".
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..devicekit.agreement import compare_logits
from ..devicekit.profile import InputSpec
from ..runtime.ort_runner import OrtRunner

__all__ = ["EVAL_BATCH", "AccuracyGate", "compare_logits", "evaluate_against_reference", "run_logits"]

EVAL_BATCH = 64


def run_logits(onnx_path: str | os.PathLike, images: np.ndarray, spec: InputSpec, *, threads: int = 0,
               batch: int = EVAL_BATCH) -> np.ndarray:
    """Logits of ``onnx_path`` on ``images`` with ONNX Runtime CPU, batched as every runner batches (infer_all)."""
    with OrtRunner(onnx_path, spec, device="cpu", threads=threads) as runner:
        return runner.infer_all(images, batch)


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
    """Pass when the candidate loses at most ``max_drop`` of top-1 (a fraction: 0.01 is one point) and produces only
    finite logits. ``min_agreement`` (a fraction, optional) additionally bounds how often the top-1 class may change.
    """

    max_drop: float = 0.01
    min_agreement: float | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.max_drop, (int, float)) or not math.isfinite(self.max_drop):
            raise ValueError(f"max_drop must be a finite fraction of top-1 (0.01 = one point), got {self.max_drop!r}")

    def check(self, metrics: dict[str, Any]) -> dict[str, Any]:
        """The gate record for the manifest: the metrics plus ``passed``, ``max_drop`` and a ``reason``."""
        reasons = []
        if metrics.get("nonfinite"):
            reasons.append(f"{metrics['nonfinite']} of {metrics['count']} images gave NaN/inf logits")
        if metrics["top1_drop"] > self.max_drop:
            reasons.append(f"top-1 dropped {metrics['top1_drop']:.2%} ({metrics['top1_ref']:.2%} -> "
                           f"{metrics['top1']:.2%}), more than the allowed {self.max_drop:.2%}")
        if self.min_agreement is not None and metrics["agreement"] < self.min_agreement:
            reasons.append(f"top-1 agreement {metrics['agreement']:.2%} is below {self.min_agreement:.2%}")
        passed = not reasons
        reason = "; ".join(reasons) if reasons else (f"top-1 {metrics['top1']:.2%} vs {metrics['top1_ref']:.2%} "
                                                     f"(drop {metrics['top1_drop']:.2%} <= {self.max_drop:.2%})")
        gate = {"passed": passed, "max_drop": self.max_drop, **metrics, "reason": reason}
        if self.min_agreement is not None:
            gate["min_agreement"] = self.min_agreement
        return gate

    __call__ = check
