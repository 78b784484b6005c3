"""Accuracy of a backend's logits, against the labels and against the reference model's logits.

Comparisons are small factories in the Polygraphy manner: ``topk_agreement(k)``, ``logit_error(atol, rtol)`` and
``cosine_similarity(min_mean)`` each return a function ``compare(logits, ref_logits) -> ComparisonResult``; a
result is truthy when it passed and ``to_dict()`` gives its JSON form. :func:`accuracy_report` gathers what the
harness records for one backend; its metrics are :mod:`ibit_deploy.devicekit.agreement`' (same names, fractions).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..devicekit.agreement import accuracy, compare_logits, cosine_rows, in_topk

Comparison = Callable[[np.ndarray, np.ndarray], "ComparisonResult"]


@dataclass
class ComparisonResult:
    """Outcome of one comparison: ``passed``, the headline ``value`` and its ``details``."""

    name: str
    passed: bool
    value: float
    details: dict[str, Any] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return self.passed

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "passed": self.passed, "value": self.value, **self.details}


def topk_agreement(k: int = 1, min_agreement: float = 0.99) -> Comparison:
    """Fraction of samples whose reference top-1 class is among the candidate's top ``k``; passes at ``min_agreement``."""
    if k < 1:
        raise ValueError(f"topk_agreement: k must be >= 1, got {k}")

    def compare(logits: np.ndarray, ref_logits: np.ndarray) -> ComparisonResult:
        logits, ref_logits = _pair(logits, ref_logits)
        hits = in_topk(logits, ref_logits.argmax(axis=1), k)
        value = float(hits.mean())
        return ComparisonResult(f"top{k}_agreement", value >= min_agreement, value,
                                {"k": k, "min_agreement": min_agreement, "disagreements": int((~hits).sum())})

    return compare


def logit_error(atol: float = 1e-3, rtol: float = 1e-3) -> Comparison:
    """Max and mean absolute logit difference; passes when every ``|a - r| <= atol + rtol * |r|``."""

    def compare(logits: np.ndarray, ref_logits: np.ndarray) -> ComparisonResult:
        logits, ref_logits = _pair(logits, ref_logits)
        diff = np.abs(logits.astype(np.float64) - ref_logits.astype(np.float64))
        worst = float(diff.max())
        passed = bool(np.all(diff <= atol + rtol * np.abs(ref_logits)))
        return ComparisonResult("logit_error", passed, worst,
                                {"max_abs": worst, "mean_abs": float(diff.mean()), "atol": atol, "rtol": rtol})

    return compare


def cosine_similarity(min_mean: float = 0.999) -> Comparison:
    """Mean over samples of the cosine similarity of the logit vectors; passes at ``min_mean``."""

    def compare(logits: np.ndarray, ref_logits: np.ndarray) -> ComparisonResult:
        logits, ref_logits = _pair(logits, ref_logits)
        cos = cosine_rows(logits.astype(np.float64), ref_logits.astype(np.float64))
        value = float(cos.mean())
        return ComparisonResult("cosine_similarity", value >= min_mean, value,
                                {"min": float(cos.min()), "min_mean": min_mean})

    return compare


def accuracy_report(logits: np.ndarray, labels: np.ndarray, ref_logits: np.ndarray | None,
                    classes: Sequence[str]) -> dict[str, Any]:
    """Top-1/top-5 against ``labels``, agreement/logit error/cosine against ``ref_logits``, per-class accuracy.

    ``top5`` is top-min(5, classes). Reference fields are None when ``ref_logits`` is None.
    """
    logits = np.asarray(logits)
    labels = np.asarray(labels)
    if len(labels) == 0 or logits.size == 0:
        raise ValueError("accuracy_report: the evaluation set is empty (0 samples); check the data spec, split and "
                         "limit")
    if logits.ndim != 2 or logits.shape[1] != len(classes):
        raise ValueError(f"accuracy_report: expected logits of shape (N, {len(classes)}) for {len(classes)} classes, "
                         f"got {logits.shape}")
    if labels.shape != (len(logits),):
        raise ValueError(f"accuracy_report: {len(logits)} logit rows but labels of shape {labels.shape}")
    if labels.min() < 0 or labels.max() >= len(classes):
        raise ValueError(f"accuracy_report: labels must lie in [0, {len(classes) - 1}], found "
                         f"[{labels.min()}, {labels.max()}]")
    report: dict[str, Any] = {**accuracy(logits, labels), "agreement": None, "max_abs_diff": None,
                               "mean_abs_diff": None, "cosine": None, "per_class": {}}
    top1 = logits.argmax(axis=1) == labels
    for k, name in enumerate(classes):
        mask = labels == k
        report["per_class"][str(name)] = {"count": int(mask.sum()),
                                          "top1": float(top1[mask].mean()) if mask.any() else None}
    if ref_logits is not None:
        metrics = compare_logits(ref_logits, logits)  # the one comparison (devicekit.agreement), reference first
        report.update({key: metrics[key] for key in ("agreement", "max_abs_diff", "mean_abs_diff", "cosine")})
    return report


def _pair(logits: np.ndarray, ref_logits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    logits, ref_logits = np.asarray(logits), np.asarray(ref_logits)
    if logits.shape != ref_logits.shape or logits.ndim != 2:
        raise ValueError(f"comparison: expected two (N, C) logit arrays of one shape, got {logits.shape} and "
                         f"{ref_logits.shape}")
    if len(logits) == 0:
        raise ValueError("comparison: the evaluation set is empty (0 samples)")
    return logits, ref_logits
