"""trtexec: parsing its summary and --exportTimes JSON, and the run flow with a stand-in executable.

SAMPLE_LOG and SAMPLE_TIMES are SAMPLES written for this test from trtexec's documented output format (the
"=== Performance summary ===" block and the per-inference --exportTimes objects); they were not captured from a
real TensorRT run and their numbers mean nothing.
"""

from __future__ import annotations

import json
import os
import stat
import sys
from pathlib import Path

import pytest

from ibit_deploy.bench.trtexec import find_trtexec, parse_exported_times, parse_trtexec_output, run_trtexec
from ibit_deploy.devicekit.profile import EngineProfile
from ibit_deploy.runtime.base import BackendUnavailable

PROFILE = EngineProfile("images", (1, 28, 28), 1, 8, 32)

# SAMPLE (hand-written in the documented format, not real measurements).
SAMPLE_LOG = """\
&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec --loadEngine=engine.plan --shapes=images:8x1x28x28
[11/21/2026-21:00:00] [I] TensorRT version: 10.3.0
[11/21/2026-21:00:03] [I] === Performance summary ===
[11/21/2026-21:00:03] [I] Throughput: 2000.5 qps
[11/21/2026-21:00:03] [I] Latency: min = 0.40 ms, max = 0.90 ms, mean = 0.50 ms, median = 0.48 ms, percentile(50%) = 0.48 ms, percentile(90%) = 0.60 ms, percentile(99%) = 0.85 ms
[11/21/2026-21:00:03] [I] Enqueue Time: min = 0.01 ms, max = 0.05 ms, mean = 0.02 ms, median = 0.02 ms, percentile(50%) = 0.02 ms, percentile(90%) = 0.03 ms, percentile(99%) = 0.04 ms
[11/21/2026-21:00:03] [I] H2D Latency: min = 0 ms, max = 0 ms, mean = 0 ms, median = 0 ms, percentile(50%) = 0 ms, percentile(90%) = 0 ms, percentile(99%) = 0 ms
[11/21/2026-21:00:03] [I] GPU Compute Time: min = 0.38 ms, max = 0.88 ms, mean = 0.47 ms, median = 0.46 ms, percentile(50%) = 0.46 ms, percentile(90%) = 0.58 ms, percentile(99%) = 0.83 ms
[11/21/2026-21:00:03] [I] D2H Latency: min = 0 ms, max = 0 ms, mean = 0 ms, median = 0 ms, percentile(50%) = 0 ms, percentile(90%) = 0 ms, percentile(99%) = 0 ms
[11/21/2026-21:00:03] [I] Total Host Walltime: 3.00049 s
[11/21/2026-21:00:03] [I] Total GPU Compute Time: 2.81 s
&&&& PASSED TensorRT.trtexec [TensorRT v100300]
"""

# SAMPLE (hand-written): a count header, then one object per inference.
SAMPLE_TIMES = [
    {"count": 3},
    {"startEnqMs": 0.0, "endEnqMs": 0.02, "startComputeMs": 0.02, "endComputeMs": 0.42, "latencyMs": 0.5,
     "computeMs": 0.4, "h2dMs": 0.0, "d2hMs": 0.0, "enqueueMs": 0.02},
    {"startEnqMs": 1.0, "endEnqMs": 1.02, "startComputeMs": 1.02, "endComputeMs": 1.62, "latencyMs": 0.7,
     "computeMs": 0.6, "h2dMs": 0.0, "d2hMs": 0.0, "enqueueMs": 0.02},
    {"startEnqMs": 2.0, "endEnqMs": 2.02, "startComputeMs": 2.02, "endComputeMs": 2.52, "latencyMs": 0.6,
     "computeMs": 0.5, "h2dMs": 0.0, "d2hMs": 0.0, "enqueueMs": 0.02},
]


def test_parse_summary_sample():
    out = parse_trtexec_output(SAMPLE_LOG)
    assert out["tensorrt_version"] == "10.3.0" and out["throughput_qps"] == pytest.approx(2000.5)
    gpu = out["metrics"]["gpu_compute"]
    assert gpu == {"min_ms": 0.38, "max_ms": 0.88, "mean_ms": 0.47, "median_ms": 0.46, "p50_ms": 0.46,
                   "p90_ms": 0.58, "p99_ms": 0.83}
    assert set(out["metrics"]) == {"latency", "enqueue", "h2d", "gpu_compute", "d2h"}
    assert out["total_host_walltime_s"] == pytest.approx(3.00049) and out["total_gpu_compute_s"] == pytest.approx(2.81)


def test_parse_summary_version_from_running_line_and_missing_summary():
    text = SAMPLE_LOG.replace("[11/21/2026-21:00:00] [I] TensorRT version: 10.3.0\n", "")
    assert parse_trtexec_output(text)["tensorrt_version"] == "10.3.0"
    old = text.replace("v100300", "v8601")
    assert parse_trtexec_output(old)["tensorrt_version"] == "8.6.1"
    with pytest.raises(ValueError, match="no trtexec performance summary"):
        parse_trtexec_output("[I] Engine built in 12 s\n&&&& PASSED")


def test_parse_exported_times_sample():
    out = parse_exported_times(SAMPLE_TIMES, batch=8)
    assert out["compute"]["n"] == 3 and out["compute"]["p50_ms"] == pytest.approx(0.5)
    assert out["latency"]["mean_ms"] == pytest.approx(0.6) and out["latency"]["batch"] == 8
    legacy = [{"latencyMs": 1.0, "computeMs": 0.8, "inMs": 0.1, "outMs": 0.1}]
    assert parse_exported_times(legacy)["h2d"]["mean_ms"] == pytest.approx(0.1)
    with pytest.raises(ValueError, match="JSON list"):
        parse_exported_times({"latencyMs": 1.0})


def _fake_trtexec(directory: Path) -> Path:
    """A stand-in executable that prints SAMPLE_LOG and writes SAMPLE_TIMES where --exportTimes says."""
    exe = directory / "trtexec"
    exe.write_text(f"""#!{sys.executable}
import json, sys
args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
assert "--useCudaGraph" in sys.argv and args["--percentile"] == "50,90,99", sys.argv
json.dump({json.dumps(SAMPLE_TIMES)}, open(args["--exportTimes"], "w"))
print({SAMPLE_LOG!r})
""")
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    return exe


def test_run_trtexec_with_a_stand_in_executable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    exe = _fake_trtexec(tmp_path)
    monkeypatch.setenv("TRTEXEC", str(exe))
    assert find_trtexec() == exe
    out = run_trtexec(tmp_path / "engine.plan", PROFILE, batch=8, out_dir=tmp_path / "out")
    assert "--loadEngine=" + str(tmp_path / "engine.plan") in out["command"]
    assert "--shapes=images:8x1x28x28" in out["command"]
    assert out["summary"]["metrics"]["gpu_compute"]["p99_ms"] == 0.83
    assert out["times"]["compute"]["n"] == 3 and Path(out["log"]).is_file()


def test_missing_trtexec_is_unavailable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("TRTEXEC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    if os.path.exists("/usr/src/tensorrt/bin/trtexec"):
        pytest.skip("this machine has JetPack's trtexec")
    assert find_trtexec() is None
    with pytest.raises(BackendUnavailable, match="trtexec not found"):
        run_trtexec(tmp_path / "engine.plan", PROFILE, batch=1, out_dir=tmp_path)
