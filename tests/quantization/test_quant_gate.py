"""The accuracy gate and the per-layer sensitivity search."""

from __future__ import annotations

import numpy as np
import pytest

from ibit_deploy.quantization import AccuracyGate, Int8Config, auto_exclude, compare_logits, evaluate_against_reference
from ibit_deploy.runtime import InputSpec


def test_compare_logits_counts_and_differences():
    labels = np.array([0, 1, 1, 0])
    ref = np.array([[2.0, 0.0], [0.0, 2.0], [0.0, 2.0], [0.0, 2.0]])  # 3 of 4 right
    cand = np.array([[2.0, 0.0], [2.0, 0.0], [0.0, 2.0], [0.0, 2.0]])  # 2 of 4 right
    metrics = compare_logits(ref, cand, labels)
    assert metrics["top1_ref"] == 0.75 and metrics["top1"] == 0.5 and metrics["top1_drop"] == 0.25
    assert metrics["agreement"] == 0.75 and metrics["max_abs_diff"] == 2.0 and metrics["nonfinite"] == 0


def test_nonfinite_logits_fail_the_gate_and_stay_json_safe():
    labels = np.array([0, 1])
    ref = np.array([[2.0, 0.0], [0.0, 2.0]])
    cand = np.array([[2.0, 0.0], [np.nan, np.inf]])
    gate = AccuracyGate(max_drop=1.0).check(compare_logits(ref, cand, labels))
    assert not gate["passed"] and "NaN/inf" in gate["reason"]
    assert gate["max_abs_diff"] is None and gate["top1"] == 0.5


def test_gate_boundaries():
    metrics = {"count": 1000, "top1_ref": 0.823, "top1": 0.822, "top1_drop": 1 / 1000, "agreement": 0.99,
               "nonfinite": 0}
    assert AccuracyGate(max_drop=0.001).check(metrics)["passed"]  # exactly at the budget passes
    failed = AccuracyGate(max_drop=-1.0).check(metrics)
    assert not failed["passed"] and "more than the allowed -100.00%" in failed["reason"]
    assert not AccuracyGate(max_drop=0.01, min_agreement=0.995).check(metrics)["passed"]
    with pytest.raises(ValueError, match="max_drop"):
        AccuracyGate(max_drop=float("nan"))


def test_identical_models_agree_fully(trained_bundle, val_set):
    bundle, manifest = trained_bundle
    images, labels = val_set
    metrics = evaluate_against_reference(bundle / "model.onnx", bundle / "model.onnx", images[:64], labels[:64],
                                         InputSpec.from_manifest(manifest), threads=1)
    assert metrics["top1_drop"] == 0.0 and metrics["agreement"] == 1.0 and metrics["max_abs_diff"] == 0.0


def test_auto_exclude_records_sensitivities_and_its_choice(trained_bundle, calibration_images, val_set):
    bundle, manifest = trained_bundle
    images, labels = val_set
    # an impossible budget (-1 point) makes the search run to its max_float bound and report that it failed
    result = auto_exclude(bundle / "model.onnx", calibration_images, images[:300], labels[:300],
                          InputSpec.from_manifest(manifest), Int8Config(), AccuracyGate(max_drop=-1.0),
                          max_float=3, threads=1)
    sensitivity = result["sensitivity"]
    assert len(sensitivity) == 12
    scores = [s["score"] for s in sensitivity]
    assert scores == sorted(scores, reverse=True)
    assert not result["passed"] and len(result["float_nodes"]) == 3
    assert result["float_nodes"] == [s["node"] for s in sensitivity[:3]]
    steps = result["steps"]
    assert steps[0]["added"] is None and len(steps) == len(result["float_nodes"]) + 1
    assert steps[-1]["mean_abs_diff"] < steps[0]["mean_abs_diff"]  # keeping the worst layers float helps
    assert all(result["layers"][n] for n in result["float_nodes"])
