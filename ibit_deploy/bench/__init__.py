"""Benchmark harness (``ibit-bench``): accuracy against the reference PyTorch model, latency sweeps, Jetson power.

Submodules are imported where used, so ``import ibit_deploy.bench`` stays light:
``harness`` (run_benchmark, BenchOptions), ``latency``, ``accuracy``, ``report``, ``trtexec``, ``jetson``, ``machine``.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "BenchOptions": "ibit_deploy.bench.harness",
    "run_benchmark": "ibit_deploy.bench.harness",
    "measure_latency": "ibit_deploy.bench.latency",
    "latency_stats": "ibit_deploy.bench.latency",
    "LatencyStats": "ibit_deploy.bench.latency",
    "accuracy_report": "ibit_deploy.bench.accuracy",
    "topk_agreement": "ibit_deploy.bench.accuracy",
    "logit_error": "ibit_deploy.bench.accuracy",
    "cosine_similarity": "ibit_deploy.bench.accuracy",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'ibit_deploy.bench' has no attribute {name!r}")


__all__ = list(_LAZY)
