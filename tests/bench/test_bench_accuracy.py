"""Accuracy report and comparison factories on logits whose answers are known by hand."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ibit_deploy.bench.accuracy import accuracy_report, cosine_similarity, logit_error, topk_agreement

CLASSES = ["a", "b", "c"]
# Rows predict a, b, c, a; labels a, b, a, c: top-1 correct on rows 0 and 1.
LOGITS = np.array([[3.0, 1.0, 0.0], [0.0, 2.0, 1.0], [0.0, 1.0, 2.0], [2.0, 0.0, 1.0]], np.float32)
LABELS = np.array([0, 1, 0, 2])


def test_report_against_labels_and_reference():
    ref = LOGITS.copy()
    ref[2] = [0.0, 2.0, 1.0]  # the reference predicts b on row 2: one disagreement in four
    rep = accuracy_report(LOGITS, LABELS, ref, CLASSES)
    assert rep["count"] == 4 and rep["top1"] == pytest.approx(0.5)
    assert rep["top5_k"] == 3 and rep["top5"] == 1.0  # top-min(5, classes): every label is in the top 3
    assert rep["agreement"] == pytest.approx(0.75)
    assert rep["max_abs_diff"] == pytest.approx(1.0)
    assert rep["mean_abs_diff"] == pytest.approx(2.0 / 12)
    cos_row2 = (1 * 2 + 2 * 1) / 5.0
    assert rep["cosine"] == pytest.approx((3 + cos_row2) / 4)
    assert rep["per_class"] == {"a": {"count": 2, "top1": 0.5}, "b": {"count": 1, "top1": 1.0},
                                "c": {"count": 1, "top1": 0.0}}
    json.dumps(rep)  # plain JSON types only


def test_report_without_reference_leaves_reference_fields_empty():
    rep = accuracy_report(LOGITS, LABELS, None, CLASSES)
    assert rep["agreement"] is None and rep["cosine"] is None and rep["top1"] == 0.5


def test_empty_evaluation_set_is_a_clear_error():
    with pytest.raises(ValueError, match="evaluation set is empty"):
        accuracy_report(np.zeros((0, 3), np.float32), np.zeros(0, np.int64), None, CLASSES)
    with pytest.raises(ValueError, match="empty"):
        topk_agreement(1)(np.zeros((0, 3)), np.zeros((0, 3)))


def test_shape_errors_name_what_was_expected():
    with pytest.raises(ValueError, match=r"\(N, 4\) for 4 classes"):
        accuracy_report(LOGITS, LABELS, None, CLASSES + ["d"])
    with pytest.raises(ValueError, match="one shape"):
        logit_error()(LOGITS, LOGITS[:2])


def test_factories_are_truthy_on_pass_and_serialisable():
    top1 = topk_agreement(1)(LOGITS, LOGITS)
    assert top1 and top1.value == 1.0 and top1.to_dict()["disagreements"] == 0
    shifted = LOGITS + 0.5
    assert not logit_error(atol=1e-3)(shifted, LOGITS)
    assert logit_error(atol=0.6, rtol=0)(shifted, LOGITS)
    swapped = LOGITS[:, ::-1].copy()
    assert topk_agreement(3, min_agreement=1.0)(swapped, LOGITS)  # the reference top-1 is always in the top 3
    assert not topk_agreement(1)(swapped, LOGITS)
    assert cosine_similarity()(LOGITS * 3, LOGITS).value == pytest.approx(1.0)
    assert cosine_similarity()(np.zeros((1, 3)), np.zeros((1, 3))).value == 1.0
    with pytest.raises(ValueError, match="k must be"):
        topk_agreement(0)
