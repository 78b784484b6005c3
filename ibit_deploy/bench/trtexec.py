"""Optional: time a TensorRT engine with NVIDIA's ``trtexec`` and parse what it prints and exports.

The command is the one ``ibit_deploy.devicekit.build.trtexec_benchmark_command`` builds (``--loadEngine --shapes
--percentile=50,90,99 --exportTimes/--exportProfile/--exportLayerInfo``, plus on TensorRT 10 ``--useCudaGraph
--noDataTransfers --useSpinWait --separateProfileRun``, the defaults of 11), so the engine's GPU compute time is
measured apart from copies and enqueue overhead. Finding trtexec and parsing its printed summary live in
:mod:`ibit_deploy.devicekit.trtexec_tool` (the on-device kit needs them too); this module adds the run and the
``--exportTimes`` statistics.

``--exportTimes`` writes a JSON list with one object per inference (``latencyMs``, ``computeMs``, ``h2dMs``,
``d2hMs`` and start/end timestamps; older releases name the copies ``inMs``/``outMs``).
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ..devicekit.build import trtexec_benchmark_command
from ..devicekit.fileio import atomic_write_text, read_json
from ..devicekit.profile import EngineProfile
from ..devicekit.trtexec_tool import JETPACK_TRTEXEC, find_trtexec, parse_trtexec_output
from ..runtime.base import BackendUnavailable
from .latency import latency_stats

__all__ = ["JETPACK_TRTEXEC", "find_trtexec", "parse_exported_times", "parse_trtexec_output", "run_trtexec"]
TIMES_KEYS = {"latency": ("latencyMs",), "compute": ("computeMs",), "h2d": ("h2dMs", "inMs"), "d2h": ("d2hMs", "outMs")}


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


def run_trtexec(engine: str | os.PathLike, profile: EngineProfile, *, batch: int, out_dir: str | os.PathLike,
                trt_major: int = 10, trtexec: str | os.PathLike | None = None,
                timeout: float = 900.0) -> dict[str, Any]:
    """Time ``engine`` (input and shapes: ``profile``) at ``batch`` with trtexec; the log and exported JSON files go
    to ``out_dir``.

    Returns {"command", "batch", "summary" (parse_trtexec_output), "times" (parse_exported_times or None), "log"}.
    Raises BackendUnavailable when trtexec is not found, RuntimeError when it fails (with the end of its log).
    """
    exe = Path(trtexec) if trtexec else find_trtexec()
    if exe is None:
        raise BackendUnavailable(f"trtexec not found (looked at $TRTEXEC, {JETPACK_TRTEXEC} and PATH); it ships with "
                                 f"TensorRT (JetPack, or NVIDIA's tar/deb packages), not with the Python wheels")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    prefix = out_dir / f"trtexec-{Path(engine).stem}-b{batch}"
    argv = trtexec_benchmark_command(trt_major, str(engine), profile, batch=batch, export_prefix=str(prefix),
                                     trtexec=str(exe))
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
    times = parse_exported_times(read_json(times_file, "trtexec times file"), batch) if times_file.is_file() else None
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
