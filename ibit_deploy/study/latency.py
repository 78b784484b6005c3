"""Side-by-side latency of one bundle per candidate: interleaved rounds, so machine load hits every model alike.

Each run's worker already times its own export, but runs finish hours apart on a shared machine; the report's
latency ranking (the Pareto plot, the recommendation) uses this pass when it is asked for: every round times every
candidate at every batch size once (``ibit-bench``'s runner and ``measure_latency``), the candidate order rotating
from round to round; a candidate's figure is the median over rounds of its per-round p50.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from ..bench.latency import make_batch, measure_latency
from ..devicekit.manifest import load_manifest
from ..runtime.base import BackendUnavailable
from ..runtime.load import make_runners


def interleaved_latency(bundles: dict[str, str | os.PathLike], backend: str, batches: list[int], rounds: int = 5,
                        seconds: float = 0.5, threads: int = 1) -> dict[str, Any]:
    """{name: {batch: {"p50_ms": median over rounds, "rounds_p50_ms": [...]}} or {"unavailable": reason}}."""
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    runners: dict[str, Any] = {}
    out: dict[str, Any] = {}
    try:
        for name, bundle in bundles.items():
            manifest = load_manifest(Path(bundle))
            choice = make_runners(bundle, [backend], manifest, precisions=["fp32"], threads=threads)[0]
            if isinstance(choice.runner, str):
                out[name] = {"unavailable": choice.runner}
                continue
            try:
                runners[name] = choice.runner.open()
            except BackendUnavailable as exc:
                out[name] = {"unavailable": str(exc)}
                continue
            _, chans, height, width = manifest["input"]["shape"]
            images = np.random.default_rng(0).standard_normal((max(batches), chans, height, width)).astype(np.float32)
            out[name] = {"images": images, "rounds": {str(b): [] for b in batches}}
        names = list(runners)
        for r in range(rounds):
            for name in names[r % len(names):] + names[: r % len(names)] if names else []:
                for b in batches:
                    stats = measure_latency(runners[name], make_batch(out[name]["images"], b), warmup=3,
                                            seconds=seconds)
                    out[name]["rounds"][str(b)].append(stats.p50_ms)
    finally:
        for runner in runners.values():
            runner.close()
    for name in runners:
        out[name] = {b: {"p50_ms": float(np.median(v)), "rounds_p50_ms": v} for b, v in out[name]["rounds"].items()}
    return {"backend": backend, "threads": threads, "rounds": rounds, "seconds_per_measurement": seconds,
            "candidates": out}
