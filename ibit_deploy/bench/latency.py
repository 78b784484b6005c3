"""Latency of a runner: warm-up, then synchronous ``infer`` calls timed with ``perf_counter_ns``, and percentiles.

What is measured, and what is not:

- ``host``: wall time of one synchronous ``runner.infer(batch)`` (a host numpy array in, host logits out). For a GPU
  backend it includes the host<->device copies and synchronisation; it is what an application calling the runner
  sees, not "GPU latency".
- ``device``: offered only by runners that time themselves with CUDA events (the TensorRT runner): GPU compute
  apart from the H2D and D2H copies, as trtexec reports it. The protocol is one method, run as a separate series
  after the host-timed one so event recording does not disturb the host numbers::

      runner.time_stages(images, iterations=n, warmup=k) -> {"h2d_ms": [...], "compute_ms": [...], "d2h_ms": [...]}

Statistics use numpy's default (linear) percentile interpolation and the population standard deviation.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from ..devicekit.numbers import COUNT, Range
from ..runtime.base import Runner

DEFAULT_ITERS = 50
MIN_TIMED_ITERS = 3  # a --seconds run still needs a few samples for percentiles to mean anything
DEVICE_TIMING_KEYS = ("h2d_ms", "compute_ms", "d2h_ms")


@dataclass
class LatencyStats:
    """Summary of ``n`` timings (milliseconds) of a batch of ``batch`` images."""

    batch: int
    n: int
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    images_per_s: float
    threads: int | None = None
    device: dict[str, dict[str, float]] | None = None  # {"compute_ms": stats, "h2d_ms": ..., "d2h_ms": ...}
    power: dict[str, Any] | None = None  # from a power monitor (Jetson tegrastats) over the timed window
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out.pop("extra")
        out.update(self.extra)
        return out


def latency_stats(times_ms: Sequence[float] | np.ndarray, batch: int = 1) -> LatencyStats:
    """Statistics of per-call times in milliseconds; ``images_per_s`` is ``batch`` over the mean time."""
    arr = np.asarray(times_ms, dtype=np.float64).ravel()
    if arr.size == 0:
        raise ValueError("latency_stats: no timings given")
    if not np.all(np.isfinite(arr)) or np.any(arr < 0):
        raise ValueError(f"latency_stats: timings must be finite and >= 0 ms, got min {arr.min()} max {arr.max()}")
    if batch < 1:
        raise ValueError(f"latency_stats: batch must be >= 1, got {batch}")
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    mean = float(arr.mean())
    return LatencyStats(
        batch=int(batch), n=int(arr.size), mean_ms=mean, std_ms=float(arr.std()), min_ms=float(arr.min()),
        max_ms=float(arr.max()), p50_ms=float(p50), p90_ms=float(p90), p99_ms=float(p99),
        images_per_s=float(batch * 1000.0 / mean) if mean > 0 else float("inf"),
    )


def measure_latency(runner: Runner, batch: np.ndarray, *, warmup: int = 10, iters: int | None = None,
                    seconds: float | None = None, monitor: Callable[[], Any] | None = None) -> LatencyStats:
    """Time ``runner.infer(batch)`` (an open runner) after ``warmup`` untimed calls.

    Runs ``iters`` timed calls, or as many as fit in ``seconds`` (at least 3); neither given: 50 calls.
    ``monitor`` is a factory of context managers entered around the timed loop only (not the warm-up) whose
    ``summary(images=..., seconds=...)`` dict is stored as ``power`` (see :class:`TegrastatsSampler`).
    """
    iters, seconds = check_budget(warmup, iters, seconds)
    stages = getattr(runner, "time_stages", None)
    for _ in range(warmup):
        runner.infer(batch)
    host: list[float] = []
    watch = monitor() if monitor is not None else contextlib.nullcontext()
    with watch:
        start = time.perf_counter_ns()
        while True:
            t0 = time.perf_counter_ns()
            runner.infer(batch)
            t1 = time.perf_counter_ns()
            host.append((t1 - t0) / 1e6)
            if iters is not None and len(host) >= iters:
                break
            if seconds is not None and (t1 - start) / 1e9 >= seconds and len(host) >= MIN_TIMED_ITERS:
                break
        window_s = (time.perf_counter_ns() - start) / 1e9
    stats = latency_stats(host, batch=len(batch))
    stats.threads = runner.describe().get("threads")
    if callable(stages):
        device = stages(batch, iterations=len(host), warmup=min(warmup, 3))
        stats.device = {key: _brief(latency_stats(device[key], len(batch))) for key in DEVICE_TIMING_KEYS}
    if monitor is not None:
        stats.power = watch.summary(images=len(batch) * len(host), seconds=window_s)
    return stats


def sweep_batches(runner: Runner, images: np.ndarray, batches: Sequence[int], *, warmup: int = 10,
                  iters: int | None = None, seconds: float | None = None,
                  monitor: Callable[[], Any] | None = None) -> list[dict[str, Any]]:
    """:func:`measure_latency` at every batch size; a batch outside the runner's range is skipped with a reason.

    Batches are built from ``images`` (repeated when there are fewer images than the batch size).
    """
    results: list[dict[str, Any]] = []
    spec = runner.spec
    for size in batches:
        if size < spec.min_batch or (spec.max_batch is not None and size > spec.max_batch):
            results.append({"batch": int(size), "status": "skipped",
                            "reason": f"batch {size} is outside the artifact's range [{spec.min_batch}, "
                                      f"{spec.max_batch}]"})
            continue
        stats = measure_latency(runner, make_batch(images, size), warmup=warmup, iters=iters, seconds=seconds,
                                monitor=monitor)
        results.append({**stats.to_dict(), "status": "ok"})
    return results


def make_batch(images: np.ndarray, size: int) -> np.ndarray:
    """The first ``size`` images, cycling through ``images`` when there are fewer (contiguous float32)."""
    if len(images) == 0:
        raise ValueError("cannot build a latency batch from an empty image set")
    reps = -(-size // len(images))
    return np.ascontiguousarray(np.concatenate([images] * reps)[:size] if reps > 1 else images[:size])


# The timing budget's options (checked when ibit-bench parses them, and by check_budget for library callers).
BUDGET_RANGES = {"warmup": Range(0, integer=True), "iters": COUNT,
                 "seconds": Range(0, 3600, low_open=True)}  # per batch size: an hour is a budget, not a typo


def check_budget(warmup: int, iters: int | None, seconds: float | None) -> tuple[int | None, float | None]:
    """Validate a timing budget; returns (iters, seconds) with the default iteration count filled in."""
    BUDGET_RANGES["warmup"].check(warmup, "warmup")
    if iters is not None and seconds is not None:
        raise ValueError("give iters or seconds, not both")
    if iters is not None:
        BUDGET_RANGES["iters"].check(iters, "iters")
    if seconds is not None:
        BUDGET_RANGES["seconds"].check(seconds, "seconds")
    if iters is None and seconds is None:
        iters = DEFAULT_ITERS
    return iters, seconds


def _brief(stats: LatencyStats) -> dict[str, float]:
    return {k: getattr(stats, k) for k in ("n", "mean_ms", "std_ms", "min_ms", "max_ms", "p50_ms", "p90_ms", "p99_ms")}
