"""The one place ONNX Runtime session options are set (runtime.ort_runner.session_options) and who uses it."""

from __future__ import annotations

import sys
from pathlib import Path

import onnxruntime as ort

from ibit_deploy.runtime.ort_runner import session_options

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def test_session_options_are_the_documented_ones(tmp_path: Path):
    options = session_options(3)
    assert (options.intra_op_num_threads, options.inter_op_num_threads) == (3, 1)
    assert options.graph_optimization_level == ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    assert not options.enable_profiling
    assert session_options(0).intra_op_num_threads == ort.SessionOptions().intra_op_num_threads  # ORT's default
    profiled = session_options(1, profile_prefix=str(tmp_path / "trace"))
    assert profiled.enable_profiling and profiled.profile_file_prefix == str(tmp_path / "trace")


def test_the_benchmarks_open_sessions_with_the_product_options(monkeypatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    sys.modules.pop("ort_bench", None)
    import ort_bench

    assert ort_bench.session_options is session_options
