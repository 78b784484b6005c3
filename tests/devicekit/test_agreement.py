"""The one logit comparison: names, units (fractions), non-finite handling, labels."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ibit_deploy.devicekit.agreement import LABEL_METRICS, METRICS, accuracy, compare_logits

REF = np.array([[2.0, 0.0, 0.0], [0.0, 2.0, 0.0], [0.0, 0.0, 2.0], [2.0, 1.0, 0.0]])
CAND = np.array([[2.0, 0.0, 0.0], [2.0, 1.0, 0.0], [0.0, 0.0, 2.0], [2.0, 1.0, 0.0]])
LABELS = np.array([0, 1, 2, 1])


def test_metrics_are_fractions_with_one_name_each():
    m = compare_logits(REF, CAND, LABELS)
    assert set(m) == set(METRICS) | set(LABEL_METRICS)
    assert m["count"] == 4 and m["agreement"] == 0.75 and m["nonfinite"] == 0
    assert m["max_abs_diff"] == 2.0 and m["mean_abs_diff"] == pytest.approx(3.0 / 12)
    assert m["top1_ref"] == 0.75 and m["top1"] == 0.5 and m["top1_drop"] == 0.25
    assert m["top5_k"] == 3 and m["top5"] == 1.0
    cos_row1 = 2.0 / (2.0 * np.sqrt(5.0))  # (0, 2, 0) against (2, 1, 0)
    assert m["cosine"] == pytest.approx((3 + cos_row1) / 4) and m["cosine_min"] == pytest.approx(cos_row1)


def test_without_labels_only_the_model_to_model_metrics():
    assert set(compare_logits(REF, REF)) == set(METRICS)
    assert compare_logits(REF, REF)["agreement"] == 1.0


def test_nonfinite_candidates_disagree_and_stay_json_safe():
    cand = CAND.copy()
    cand[2] = [np.nan, 0.0, np.inf]
    m = compare_logits(REF, cand, LABELS)
    assert m["nonfinite"] == 1 and m["agreement"] == 0.5 and m["top1"] == 0.25
    assert m["max_abs_diff"] is None and m["cosine"] is None
    json.dumps(m, allow_nan=False)


@pytest.mark.parametrize("ref, cand", [(REF, REF[:3]), (REF[0], REF[0]), (REF[:0], REF[:0])])
def test_bad_shapes_are_refused(ref, cand):
    with pytest.raises(ValueError, match="logit comparison"):
        compare_logits(ref, cand)


def test_labels_must_fit():
    with pytest.raises(ValueError, match="labels must lie in"):
        compare_logits(REF, CAND, np.array([0, 1, 2, 3]))
    assert accuracy(CAND, LABELS) == {"count": 4, "top1": 0.5, "top5": 1.0, "top5_k": 3}
