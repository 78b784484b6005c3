"""benchmarks/ort_bench.py: the order interleaved rounds time their candidates in (not the timings themselves)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture(scope="module")
def ort_bench():
    sys.path.insert(0, str(BENCHMARKS))  # the scripts import it from their own folder, as when run
    try:
        import ort_bench

        yield ort_bench
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_each_round_starts_one_candidate_later_after_one_warm_up_round(ort_bench):
    calls: list[str] = []
    candidates = {key: (lambda key=key: calls.append(key)) for key in "abc"}
    times = ort_bench.interleaved_rounds(candidates, rounds=4, iters=2)
    assert {key: len(values) for key, values in times.items()} == {"a": 4, "b": 4, "c": 4}
    assert "".join(calls[::2]) == "abc" + "abc" + "bca" + "cab" + "abc"  # each timed slot calls its candidate twice
    assert calls[::2] == calls[1::2]
