"""The one comparison of two models' logits: every stage reports the same metrics under the same names.

Names and units (fractions in [0, 1], never percent), used by the quantization gate, the export parity check, engine
verification (ibit-export and the on-device kit), ibit-bench and the manifest:

    count          samples compared
    agreement      fraction of samples whose candidate top-1 class equals the reference's top-1 class
    max_abs_diff   max |candidate - reference| over all logits
    mean_abs_diff  mean |candidate - reference|
    cosine         mean over samples of the cosine similarity of the two logit vectors; cosine_min its minimum
    nonfinite      samples whose candidate logits contain NaN/inf (they count as disagreeing and as wrong)
    top1, top5     candidate accuracy against labels (top5 is top-min(5, classes)); top1_ref the reference's top-1
    top1_drop      top1_ref - top1

Differences and cosine are None when a candidate logit is non-finite (JSON has no inf).

Part of the device kit (numpy only): the kit checks engines on the device with the same comparison.
"""

from __future__ import annotations

from typing import Any

import numpy as np

METRICS = ("count", "agreement", "max_abs_diff", "mean_abs_diff", "cosine", "cosine_min", "nonfinite")
LABEL_METRICS = ("top1", "top1_ref", "top1_drop", "top5", "top5_k")


def compare_logits(reference: Any, candidate: Any, labels: Any = None) -> dict[str, Any]:
    """Compare ``candidate`` logits with ``reference`` logits, both (N, classes); with ``labels``, accuracies too.

    Raises ValueError for arrays of different or non-2-D shapes, an empty set, or labels that do not fit.
    """
    ref, cand = np.asarray(reference), np.asarray(candidate)
    if ref.shape != cand.shape or ref.ndim != 2:
        raise ValueError(f"logit comparison needs two (N, classes) arrays of one shape, got reference {ref.shape} "
                         f"and candidate {cand.shape}")
    count = len(ref)
    if count == 0:
        raise ValueError("logit comparison: the evaluation set is empty (0 samples)")
    finite = np.isfinite(cand).all(axis=1)
    agree = (cand.argmax(1) == ref.argmax(1)) & finite
    result: dict[str, Any] = {"count": int(count), "agreement": int(agree.sum()) / count,
                              "nonfinite": int((~finite).sum())}
    if finite.all():
        ref64, cand64 = ref.astype(np.float64), cand.astype(np.float64)
        diff = np.abs(cand64 - ref64)
        cos = cosine_rows(ref64, cand64)
        result.update(max_abs_diff=float(diff.max()), mean_abs_diff=float(diff.mean()), cosine=float(cos.mean()),
                      cosine_min=float(cos.min()))
    else:
        result.update(max_abs_diff=None, mean_abs_diff=None, cosine=None, cosine_min=None)
    if labels is not None:
        result.update(label_metrics(ref, cand, labels, finite))
    return result


def label_metrics(reference: np.ndarray, candidate: np.ndarray, labels: Any,
                  finite: np.ndarray | None = None) -> dict[str, Any]:
    """``top1``, ``top1_ref``, ``top1_drop``, ``top5``, ``top5_k`` of ``candidate`` (and ``reference``) vs ``labels``."""
    labels = np.asarray(labels)
    count, classes = candidate.shape
    if labels.shape != (count,):
        raise ValueError(f"{count} logit rows but labels of shape {labels.shape}")
    if labels.min() < 0 or labels.max() >= classes:
        raise ValueError(f"labels must lie in [0, {classes - 1}], found [{labels.min()}, {labels.max()}]")
    finite = np.isfinite(candidate).all(axis=1) if finite is None else finite
    # Counts first, one division each: "drop 0.001 <= max_drop 0.001" then compares equal.
    right = int(((candidate.argmax(1) == labels) & finite).sum())
    right_ref = int((reference.argmax(1) == labels).sum())
    k5 = min(5, classes)
    return {"top1": right / count, "top1_ref": right_ref / count, "top1_drop": (right_ref - right) / count,
            "top5": float((in_topk(candidate, labels, k5) & finite).mean()), "top5_k": k5}


def accuracy(logits: Any, labels: Any) -> dict[str, Any]:
    """``count``, ``top1``, ``top5`` and ``top5_k`` of one model's logits against ``labels`` (no reference)."""
    logits, labels = np.asarray(logits), np.asarray(labels)
    if logits.ndim != 2 or len(logits) == 0 or labels.shape != (len(logits),):
        raise ValueError(f"accuracy needs (N, classes) logits with N >= 1 and N labels, got {logits.shape} and "
                         f"{labels.shape}")
    k5 = min(5, logits.shape[1])
    return {"count": int(len(labels)), "top1": float((logits.argmax(1) == labels).mean()),
            "top5": float(in_topk(logits, labels, k5).mean()), "top5_k": k5}


def cosine_rows(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine similarity of each row pair; two all-zero rows count as identical, one zero row as unrelated."""
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    both_zero = (np.abs(a).sum(axis=1) + np.abs(b).sum(axis=1)) == 0
    return np.where(norms > 0, (a * b).sum(axis=1) / np.where(norms > 0, norms, 1.0), np.where(both_zero, 1.0, 0.0))


def in_topk(logits: np.ndarray, targets: np.ndarray, k: int) -> np.ndarray:
    """Whether each target class is among the ``k`` largest logits of its row."""
    topk = np.argpartition(-logits, min(k, logits.shape[1]) - 1, axis=1)[:, :k]
    return (topk == targets[:, None]).any(axis=1)
