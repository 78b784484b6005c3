"""--precision auto selection on logs in trtexec's documented summary format (SAMPLES written for these tests, not
captured from a real TensorRT run), judged by the real engine acceptance table (kit.engine_accepted)."""

from __future__ import annotations

import pytest

from ibit_deploy.devicekit import precision_auto as pa
from ibit_deploy.devicekit.acceptance import engine_acceptance, engine_accepted
from ibit_deploy.devicekit.trtexec_tool import parse_trtexec_output

BUDGET = pa.AccuracyBudget(max_top1_drop=0.01, reference_top1=0.90, source="test")


def trtexec_log(median: float, version: str = "100300") -> str:
    """A trtexec run's tail as trtexec prints it (timestamps, [I] prefixes, percentiles 90/95/99)."""
    p = [median * f for f in (0.9, 1.1, 1.2, 1.3, 1.01, 1.0)]  # min, max, p90, p95, p99-ish, mean
    t = "[12/03/2026-07:00:00] [I] "
    return "\n".join([
        f"&&&& RUNNING TensorRT.trtexec [TensorRT v{version}] # trtexec --loadEngine=engine.plan",
        f"{t}=== Performance summary ===",
        f"{t}Throughput: {1000 / median:.3f} qps",
        f"{t}Latency: min = {p[0]:.5f} ms, max = {p[1]:.5f} ms, mean = {p[5]:.5f} ms, median = {median:.5f} ms, "
        f"percentile(90%) = {p[2]:.5f} ms, percentile(95%) = {p[3]:.5f} ms, percentile(99%) = {p[4] * 1.2:.5f} ms",
        f"{t}Enqueue Time: min = 0.01 ms, max = 0.05 ms, mean = 0.02 ms, median = 0.02 ms, percentile(90%) = 0.03 ms, "
        f"percentile(95%) = 0.04 ms, percentile(99%) = 0.05 ms",
        f"{t}H2D Latency: min = 0 ms, max = 0 ms, mean = 0 ms, median = 0 ms, percentile(90%) = 0 ms, "
        f"percentile(95%) = 0 ms, percentile(99%) = 0 ms",
        f"{t}GPU Compute Time: min = {p[0]:.5f} ms, max = {p[1]:.5f} ms, mean = {p[5]:.5f} ms, median = {median:.5f} "
        f"ms, percentile(90%) = {p[2]:.5f} ms, percentile(95%) = {p[3]:.5f} ms, percentile(99%) = {p[4] * 1.2:.5f} ms",
        f"{t}D2H Latency: min = 0 ms, max = 0 ms, mean = 0 ms, median = 0 ms, percentile(90%) = 0 ms, "
        f"percentile(95%) = 0 ms, percentile(99%) = 0 ms",
        f"{t}Total Host Walltime: 3.00123 s",
        f"{t}Total GPU Compute Time: 2.95 s",
        f"&&&& PASSED TensorRT.trtexec [TensorRT v{version}] # trtexec --loadEngine=engine.plan",
    ])


def _run(medians, accuracy, fail_build=()):
    built = []

    def build(precision):
        if precision in fail_build:
            raise RuntimeError(f"TensorRT could not build the {precision} engine")
        built.append(precision)
        return f"engine.{precision}.plan"

    def verify(precision, engine):
        return {**accuracy[precision], "acceptance": engine_acceptance(precision)}

    def benchmark(precision, engine, batch):
        return trtexec_log(medians[precision] * (1 if batch == 1 else 6))

    return pa.run_auto(build, verify, engine_accepted, benchmark, parse_trtexec_output, BUDGET, opt_batch=8)


GOOD = {"fp32": {"agreement": 1.0, "top1": 0.90}, "fp16": {"agreement": 0.995, "top1": 0.899},
        "int8": {"agreement": 0.975, "top1": 0.895}}


def test_int8_slower_than_fp16_ships_fp16():
    record = _run({"fp32": 2.0, "fp16": 0.8, "int8": 1.1}, GOOD)  # the field reports' ViT case
    assert record["chosen"] == "fp16" and pa.exit_status(record) == 0
    assert [c["passed"] for c in record["candidates"]] == [True, True, True]
    assert record["candidates"][2]["gpu_compute_ms"]["8"]["median_ms"] == pytest.approx(6.6)
    assert "CHOSEN" in pa.format_table(record) and "b8 p99" in pa.format_table(record)


def test_fastest_failing_the_budget_is_not_shipped():
    accuracy = {**GOOD, "int8": {"agreement": 0.96, "top1": 0.85}}
    record = _run({"fp32": 2.0, "fp16": 0.8, "int8": 0.5}, accuracy)
    assert record["chosen"] == "fp16"
    int8 = record["candidates"][2]
    assert not int8["passed"] and any("agreement 0.96 < 0.97" in f for f in int8["failures"])
    assert any("below the FP32 ONNX" in f for f in int8["failures"])


def test_ties_go_to_the_higher_precision():
    record = _run({"fp32": 1.0, "fp16": 0.995, "int8": 0.99}, GOOD)
    assert record["chosen"] == "fp32" and "higher precision wins the tie" in record["reason"]


def test_build_failure_fails_that_candidate_only():
    record = _run({"fp32": 2.0, "fp16": 0.8, "int8": 0.5}, GOOD, fail_build=("int8",))
    assert record["chosen"] == "fp16"
    assert record["candidates"][2]["failures"] == ["RuntimeError: TensorRT could not build the int8 engine"]


def test_every_candidate_failing_ships_nothing_marked_passed():
    bad = {p: {"agreement": 0.5, "top1": 0.1} for p in pa.CANDIDATES}
    record = _run({"fp32": 2.0, "fp16": 0.8, "int8": 0.5}, bad)
    assert record["chosen"] is None and record["engine"] is None and pa.exit_status(record) == 1
    assert not any(c["passed"] for c in record["candidates"])
    assert "nothing shipped" in pa.format_table(record)


def test_unchecked_engine_does_not_pass():
    accuracy = {**GOOD, "fp16": {"skipped": "onnxruntime not importable"}}
    record = _run({"fp32": 2.0, "fp16": 0.8, "int8": 1.1}, accuracy)
    assert record["chosen"] == "int8"
    assert record["candidates"][1]["failures"] == ["not checked against ONNX Runtime (onnxruntime not importable)"]


def test_summary_without_gpu_compute_fails_the_candidate():
    def build(precision):
        return f"engine.{precision}.plan"

    record = pa.run_auto(build, lambda p, e: {**GOOD[p]}, engine_accepted,
                         lambda p, e, b: "[I] Latency: min = 1 ms, max = 1 ms, mean = 1 ms, median = 1 ms",
                         parse_trtexec_output, BUDGET, opt_batch=4, precisions=("fp32",))
    assert record["chosen"] is None and "no GPU Compute Time median" in record["candidates"][0]["failures"][0]
