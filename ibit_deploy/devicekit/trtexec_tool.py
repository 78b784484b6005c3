"""Find NVIDIA's ``trtexec`` and read the performance summary it prints: the one trtexec output parser.

Part of the device kit (standard library only): the kit times engines with trtexec for ``--precision auto`` on
the device; ``ibit-bench`` (:mod:`ibit_deploy.bench.trtexec`) parses the same way through this
module.

trtexec is looked for at ``$TRTEXEC``, ``/usr/src/tensorrt/bin/trtexec`` (JetPack) and on ``PATH``. The summary it
prints at the end looks like (timestamps and ``[I]`` prefixes vary)::

    [I] === Performance summary ===
    [I] Throughput: 1234.5 qps
    [I] Latency: min = 0.81 ms, max = 1.2 ms, mean = 0.82 ms, median = 0.81 ms, percentile(90%) = 0.83 ms, ...
    [I] Enqueue Time: ...   [I] H2D Latency: ...   [I] GPU Compute Time: ...   [I] D2H Latency: ...
    [I] Total Host Walltime: 3.0 s
    [I] Total GPU Compute Time: 2.9 s
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any

JETPACK_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
METRICS = {"Latency": "latency", "Enqueue Time": "enqueue", "H2D Latency": "h2d", "GPU Compute Time": "gpu_compute",
           "D2H Latency": "d2h"}
_METRIC_RE = re.compile(r"\b(" + "|".join(re.escape(m) for m in METRICS) + r"):\s*(min\s*=.*)$")
_VALUE_RE = re.compile(r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*=?\s*([-+0-9.eE]+)\s*ms")
_THROUGHPUT_RE = re.compile(r"\bThroughput:\s*([-+0-9.eE]+)\s*qps")
_TOTAL_RE = re.compile(r"\bTotal (Host Walltime|GPU Compute Time):\s*([-+0-9.eE]+)\s*s\b")
_VERSION_RE = re.compile(r"TensorRT version:\s*(\d+(?:\.\d+)*)")
_RUNNING_RE = re.compile(r"\[TensorRT v(\d{4,})\]")


def find_trtexec(env: Mapping[str, str] | None = None) -> Path | None:
    """The trtexec executable: ``$TRTEXEC``, then JetPack's location, then ``PATH``; None when there is none."""
    env = os.environ if env is None else env
    candidates = [env.get("TRTEXEC"), JETPACK_TRTEXEC, shutil.which("trtexec", path=env.get("PATH"))]
    for candidate in candidates:
        if candidate and Path(candidate).is_file() and os.access(candidate, os.X_OK):
            return Path(candidate)
    return None


def parse_trtexec_output(text: str) -> dict[str, Any]:
    """The performance summary of a trtexec log: throughput, per-metric statistics (ms), totals, TensorRT version.

    Metrics are keyed ``latency``, ``enqueue``, ``h2d``, ``gpu_compute``, ``d2h``; each holds ``min_ms``,
    ``max_ms``, ``mean_ms``, ``median_ms`` and ``pNN_ms`` for every percentile printed. Raises ValueError when the
    text has no performance summary (trtexec failed, or ran with --skipInference).
    """
    out: dict[str, Any] = {"tensorrt_version": None, "throughput_qps": None, "metrics": {},
                           "total_host_walltime_s": None, "total_gpu_compute_s": None}
    for line in text.splitlines():
        if (m := _METRIC_RE.search(line)) is not None:
            stats: dict[str, float] = {}
            for name, pct, value in _VALUE_RE.findall(m.group(2)):
                key = f"p{_pct_label(pct)}_ms" if pct else f"{name}_ms"
                stats[key] = float(value)
            out["metrics"][METRICS[m.group(1)]] = stats
        elif (m := _THROUGHPUT_RE.search(line)) is not None:
            out["throughput_qps"] = float(m.group(1))
        elif (m := _TOTAL_RE.search(line)) is not None:
            key = "total_host_walltime_s" if m.group(1) == "Host Walltime" else "total_gpu_compute_s"
            out[key] = float(m.group(2))
        elif (m := _VERSION_RE.search(line)) is not None:
            out["tensorrt_version"] = m.group(1)
        elif out["tensorrt_version"] is None and (m := _RUNNING_RE.search(line)) is not None:
            out["tensorrt_version"] = _version_from_code(m.group(1))
    if "gpu_compute" not in out["metrics"] and "latency" not in out["metrics"]:
        raise ValueError("no trtexec performance summary found (expected lines like 'GPU Compute Time: min = ... ms'); "
                         "did trtexec fail or run with --skipInference?")
    return out


def _pct_label(pct: str) -> str:
    value = float(pct)
    return str(int(value)) if value.is_integer() else str(value).replace(".", "_")


def _version_from_code(code: str) -> str:
    """``100300`` -> ``10.3.0`` (TensorRT >= 10 prints MMmmpp), ``8601`` -> ``8.6.1`` (older, Mmpp)."""
    if len(code) >= 6:
        return f"{int(code[:-4])}.{int(code[-4:-2])}.{int(code[-2:])}"
    return f"{int(code[:-3])}.{int(code[-3:-2])}.{int(code[-2:])}"
