"""What the benchmark scripts share for timing ONNX files on ONNX Runtime CPU: sessions, interleaved rounds, profiles.

Imported by the scripts next to it (``python benchmarks/<script>.py`` puts this folder on ``sys.path``).
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Mapping
from pathlib import Path

import numpy as np
import onnxruntime as ort

from ibit_deploy.runtime.ort_runner import session_options


def ort_session(path: Path, threads: int, profile_prefix: str | None = None) -> ort.InferenceSession:
    """A CPU session with ``threads`` intra-op threads and the product's own session options (the runtime's
    :func:`~ibit_deploy.runtime.ort_runner.session_options`), optionally profiling."""
    return ort.InferenceSession(str(path), session_options(threads, profile_prefix), providers=["CPUExecutionProvider"])


def timed(fn: Callable[[], object], iters: int) -> float:
    """Mean milliseconds per call over ``iters`` calls."""
    start = time.perf_counter_ns()
    for _ in range(iters):
        fn()
    return (time.perf_counter_ns() - start) / iters / 1e6


def interleaved_rounds(candidates: Mapping[str, Callable[[], object]], rounds: int, iters: int) -> dict[str, list[float]]:
    """Per-round mean ms of every candidate, timed A, B, C, ... then again, so background load hits all alike.

    One untimed warm-up round comes first. Each round starts one candidate later than the one before (A B C, then
    B C A, then C A B, ...), so load that comes and goes with a period near a round's length cannot keep landing on
    the same candidates' slots.
    """
    for fn in candidates.values():
        timed(fn, iters)
    times: dict[str, list[float]] = {key: [] for key in candidates}
    order = list(candidates)
    for r in range(rounds):
        for key in order[r % len(order):] + order[:r % len(order)]:
            times[key].append(timed(candidates[key], iters))
    return times


def medians(times: Mapping[str, list[float]]) -> dict[str, float]:
    """The median of each candidate's rounds."""
    return {key: statistics.median(values) for key, values in times.items()}


def kernel_times(path: Path, feed: dict[str, np.ndarray], threads: int, runs: int, warmup: int,
                 profile_prefix: str, keep_trace: bool = False) -> tuple[dict[str, float], dict[str, int]]:
    """(ms per run, nodes) per ONNX op type from ONNX Runtime's profiler, largest time first.

    The warm-up runs are profiled too, so the totals are divided by ``warmup + runs``; the trace file is removed
    unless ``keep_trace``.
    """
    sess = ort_session(path, threads, profile_prefix=profile_prefix)
    for _ in range(warmup + runs):
        sess.run(None, feed)
    trace = Path(sess.end_profiling())
    per_op: dict[str, float] = {}
    calls: dict[str, int] = {}
    for event in json.loads(trace.read_text()):
        if event.get("cat") != "Node" or not event.get("name", "").endswith("_kernel_time"):
            continue
        op = event.get("args", {}).get("op_name", "?")
        per_op[op] = per_op.get(op, 0.0) + event["dur"] / 1e3
        calls[op] = calls.get(op, 0) + 1
    if not keep_trace:
        trace.unlink()
    total_runs = warmup + runs
    ms = {op: t / total_runs for op, t in sorted(per_op.items(), key=lambda kv: -kv[1])}
    return ms, {op: calls[op] // total_runs for op in ms}
