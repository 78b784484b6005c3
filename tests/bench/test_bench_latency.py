"""Latency statistics against numpy on known timings, and the timing loop on a fake runner (no model needed)."""

from __future__ import annotations

import contextlib

import numpy as np
import pytest

from ibit_deploy.bench.latency import (
    DEFAULT_ITERS,
    check_budget,
    latency_stats,
    make_batch,
    measure_latency,
    sweep_batches,
)
from ibit_deploy.runtime.base import InputSpec, Runner

KNOWN_MS = [1.0, 2.0, 2.0, 3.0, 4.0, 5.0, 8.0, 13.0, 21.0, 100.0]


class EchoRunner(Runner):
    """Returns zeros; counts calls. ``timed`` adds the CUDA-event protocol (time_stages) with fixed device times."""

    backend = "echo"

    def __init__(self, spec: InputSpec, timed: bool = False) -> None:
        super().__init__(spec)
        self.calls = 0
        if timed:
            self.time_stages = self._time_stages

    def _open(self) -> None:
        pass

    def _infer(self, images: np.ndarray) -> np.ndarray:
        self.calls += 1
        return np.zeros((len(images), 3), np.float32)

    def _time_stages(self, images: np.ndarray, iterations: int, warmup: int) -> dict[str, list[float]]:
        return {"h2d_ms": [0.25] * iterations, "compute_ms": [1.5] * iterations, "d2h_ms": [0.125] * iterations}

    def describe(self) -> dict:
        return {"backend": self.backend, "threads": 3}


SPEC = InputSpec("images", 1, 4, 4, 1, 8)


def test_latency_stats_match_numpy_on_known_timings():
    stats = latency_stats(KNOWN_MS, batch=4)
    arr = np.asarray(KNOWN_MS)
    assert stats.n == 10 and stats.batch == 4
    assert stats.mean_ms == pytest.approx(arr.mean())
    assert stats.std_ms == pytest.approx(arr.std())
    assert (stats.min_ms, stats.max_ms) == (1.0, 100.0)
    for q, value in ((50, stats.p50_ms), (90, stats.p90_ms), (99, stats.p99_ms)):
        assert value == pytest.approx(np.percentile(arr, q))
    assert stats.p50_ms == pytest.approx(4.5)  # hand-checked: the middle of 4 and 5
    assert stats.images_per_s == pytest.approx(4 * 1000 / arr.mean())


def test_latency_stats_single_and_bad_inputs():
    one = latency_stats([2.5])
    assert one.p50_ms == one.p99_ms == one.mean_ms == 2.5 and one.std_ms == 0.0
    with pytest.raises(ValueError, match="no timings"):
        latency_stats([])
    with pytest.raises(ValueError, match="finite"):
        latency_stats([1.0, -1.0])
    with pytest.raises(ValueError, match="finite"):
        latency_stats([1.0, float("nan")])


def test_measure_latency_counts_warmup_and_iters_and_records_threads():
    with EchoRunner(SPEC) as runner:
        stats = measure_latency(runner, np.zeros((2, 1, 4, 4), np.float32), warmup=3, iters=7)
    assert runner.calls == 10 and stats.n == 7 and stats.batch == 2 and stats.threads == 3
    assert stats.device is None and stats.power is None


def test_measure_latency_default_and_seconds_budget():
    batch = np.zeros((1, 1, 4, 4), np.float32)
    with EchoRunner(SPEC) as runner:
        assert measure_latency(runner, batch, warmup=0).n == DEFAULT_ITERS
        timed = measure_latency(runner, batch, warmup=0, seconds=0.02)
    assert timed.n >= 3
    with pytest.raises(ValueError, match="not both"):
        check_budget(1, 5, 1.0)
    with pytest.raises(ValueError, match="iters"):
        check_budget(1, 0, None)
    with pytest.raises(ValueError, match="warmup"):
        check_budget(-1, None, None)


def test_device_timings_are_used_when_the_runner_offers_them():
    with EchoRunner(SPEC, timed=True) as runner:
        stats = measure_latency(runner, np.zeros((4, 1, 4, 4), np.float32), warmup=1, iters=5)
    assert stats.device["compute_ms"]["p50_ms"] == pytest.approx(1.5)
    assert stats.device["h2d_ms"]["mean_ms"] == pytest.approx(0.25) and stats.device["d2h_ms"]["n"] == 5


def test_monitor_wraps_only_the_timed_window():
    seen = {}

    class Monitor(contextlib.AbstractContextManager):
        def __exit__(self, *exc):
            return None

        def summary(self, images, seconds):
            seen.update(images=images, seconds=seconds)
            return {"mean_power_mW": 1000.0}

    with EchoRunner(SPEC) as runner:
        stats = measure_latency(runner, np.zeros((2, 1, 4, 4), np.float32), warmup=4, iters=6, monitor=Monitor)
    assert seen["images"] == 12 and seen["seconds"] >= 0 and stats.power == {"mean_power_mW": 1000.0}


def test_sweep_skips_batches_outside_the_artifact_range():
    images = np.random.default_rng(0).standard_normal((3, 1, 4, 4)).astype(np.float32)
    with EchoRunner(SPEC) as runner:
        rows = sweep_batches(runner, images, [1, 5, 16], warmup=0, iters=2)
    assert [r["status"] for r in rows] == ["ok", "ok", "skipped"]
    assert rows[1]["batch"] == 5 and "outside the artifact's range [1, 8]" in rows[2]["reason"]
    batch = make_batch(images, 5)
    assert batch.shape == (5, 1, 4, 4) and np.array_equal(batch[3], images[0])
