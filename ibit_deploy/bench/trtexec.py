"""Optional: time a TensorRT engine with NVIDIA's ``trtexec`` and parse what it prints and exports.

trtexec is looked for at ``$TRTEXEC``, ``/usr/src/tensorrt/bin/trtexec`` (JetPack) and on ``PATH``. The command is
the one ``ibit_deploy.trt.kit.trtexec_benchmark_command`` builds (``--loadEngine --shapes
--percentile=50,90,99 --exportTimes/--exportProfile/--exportLayerInfo``, plus on TensorRT 10 ``--useCudaGraph
--noDataTransfers --useSpinWait --separateProfileRun``, the defaults of 11), so the engine's GPU compute time is
measured apart from copies and enqueue overhead.

The summary trtexec prints at the end looks like (timestamps and ``[I]`` prefixes vary)::

    [I] === Performance summary ===
    [I] Throughput: 1234.5 qps
    [I] Latency: min = 0.81 ms, max = 1.2 ms, mean = 0.82 ms, median = 0.81 ms, percentile(90%) = 0.83 ms, ...
    [I] Enqueue Time: ...   [I] H2D Latency: ...   [I] GPU Compute Time: ...   [I] D2H Latency: ...
    [I] Total Host Walltime: 3.0 s
    [I] Total GPU Compute Time: 2.9 s

and ``--exportTimes`` writes a JSON list with one object per inference (``latencyMs``, ``computeMs``, ``h2dMs``,
``d2hMs`` and start/end timestamps; older releases name the copies ``inMs``/``outMs``).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from ..fileio import atomic_write_text
from ..runtime.base import BackendUnavailable
from .latency import latency_stats

JETPACK_TRTEXEC = "/usr/src/tensorrt/bin/trtexec"
METRICS = {"Latency": "latency", "Enqueue Time": "enqueue", "H2D Latency": "h2d", "GPU Compute Time": "gpu_compute",
           "D2H Latency": "d2h"}
_METRIC_RE = re.compile(r"\b(" + "|".join(re.escape(m) for m in METRICS) + r"):\s*(min\s*=.*)$")
_VALUE_RE = re.compile(r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*=?\s*([-+0-9.eE]+)\s*ms")
_THROUGHPUT_RE = re.compile(r"\bThroughput:\s*([-+0-9.eE]+)\s*qps")
_TOTAL_RE = re.compile(r"\bTotal (Host Walltime|GPU Compute Time):\s*([-+0-9.eE]+)\s*s\b")
_VERSION_RE = re.compile(r"TensorRT version:\s*(\d+(?:\.\d+)*)")
_RUNNING_RE = re.compile(r"\[TensorRT v(\d{4,})\]")
TIMES_KEYS = {"latency": ("latencyMs",), "compute": ("computeMs",), "h2d": ("h2dMs", "inMs"), "d2h": ("d2hMs", "outMs")}


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


def parse_exported_times(entries: Any, batch: int = 1) -> dict[str, dict[str, Any]]:
    """Statistics of an ``--exportTimes`` JSON list: ``latency``, ``compute``, ``h2d``, ``d2h`` (LatencyStats dicts).

    Entries without a ``computeMs``/``latencyMs`` (a leading ``{"count": N}`` header) are ignored.
    """
    if not isinstance(entries, list):
        raise ValueError(f"trtexec --exportTimes: expected a JSON list of per-inference objects, got "
                         f"{type(entries).__name__}")
    out: dict[str, dict[str, Any]] = {}
    for name, keys in TIMES_KEYS.items():
        values = _first_key_values(entries, keys)
        if values:
            out[name] = latency_stats(values, batch).to_dict()
    if not out:
        raise ValueError("trtexec --exportTimes: no entry has latencyMs or computeMs")
    return out


def run_trtexec(engine: str | os.PathLike, *, batch: int, input_chw: Sequence[int], out_dir: str | os.PathLike,
                input_name: str = "images", trt_major: int = 10, trtexec: str | os.PathLike | None = None,
                timeout: float = 900.0) -> dict[str, Any]:
    """Time ``engine`` at ``batch`` with trtexec; the log and exported JSON files go to ``out_dir``.

    Returns {"command", "batch", "summary" (parse_trtexec_output), "times" (parse_exported_times or None), "log"}.
    Raises BackendUnavailable when trtexec is not found, RuntimeError when it fails (with the end of its log).
    """
    from ..trt.kit import trtexec_benchmark_command

    exe = Path(trtexec) if trtexec else find_trtexec()
    if exe is None:
        raise BackendUnavailable(f"trtexec not found (looked at $TRTEXEC, {JETPACK_TRTEXEC} and PATH); it ships with "
                                 f"TensorRT (JetPack, or NVIDIA's tar/deb packages), not with the Python wheels")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / f"trtexec-{Path(engine).stem}-b{batch}"
    argv = trtexec_benchmark_command(trt_major, str(engine), batch=batch, input_chw=list(input_chw),
                                     input_name=input_name, export_prefix=str(prefix), trtexec=str(exe))
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"trtexec did not finish within {timeout:.0f} s: {' '.join(argv)}") from exc
    log = Path(f"{prefix}.log")
    atomic_write_text(log, proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).splitlines()[-15:])
        raise RuntimeError(f"trtexec exited with {proc.returncode} (full log: {log}):\n{tail}")
    times_file = Path(f"{prefix}.times.json")
    times = parse_exported_times(json.loads(times_file.read_text()), batch) if times_file.is_file() else None
    return {"command": argv, "batch": batch, "summary": parse_trtexec_output(proc.stdout), "times": times,
            "log": str(log)}


def _first_key_values(entries: list[Any], keys: Sequence[str]) -> list[float]:
    """Values of the first of ``keys`` present in each entry."""
    values = []
    for entry in entries:
        if isinstance(entry, dict):
            key = next((k for k in keys if k in entry), None)
            if key is not None:
                values.append(float(entry[key]))
    return values


def _pct_label(pct: str) -> str:
    value = float(pct)
    return str(int(value)) if value.is_integer() else str(value).replace(".", "_")


def _version_from_code(code: str) -> str:
    """``100300`` -> ``10.3.0`` (TensorRT >= 10 prints MMmmpp), ``8601`` -> ``8.6.1`` (older, Mmpp)."""
    if len(code) >= 6:
        return f"{int(code[:-4])}.{int(code[-4:-2])}.{int(code[-2:])}"
    return f"{int(code[:-3])}.{int(code[-3:-2])}.{int(code[-2:])}"
