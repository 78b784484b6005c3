"""Builder limits (devicekit/build_limits.py): the device-class rule, flags and their checks, trtexec spelling,
the kit recording limits, build time and memory in the manifest, and the device-memory sampler."""

from __future__ import annotations

import json
import sys
import types

import pytest

from ibit_deploy.conformance.paths import CHW, tiny_bundle
from ibit_deploy.devicekit import build_limits as bl
from ibit_deploy.devicekit import cli
from ibit_deploy.devicekit.build_memory import DeviceMemorySampler

from ..conftest import make_fake_trt


@pytest.mark.parametrize("gpu, key", [
    (bl.GpuInfo("Orin", 7620, (8, 7), True), "orin-8gb"),            # Orin Nano 8 GB
    (bl.GpuInfo("Orin", 15390, (8, 7), True), "orin"),               # Orin NX 16 GB
    (bl.GpuInfo("Orin", 62841, (8, 7), True), "orin"),               # AGX Orin 64 GB
    (bl.GpuInfo("NVIDIA Thor", 125772, (11, 0), True), "thor"),
    (bl.GpuInfo("NVIDIA GeForce RTX 4090", 24080, (8, 9), False), "desktop"),
    (bl.GpuInfo("NVIDIA H100", 81000, (9, 0), False), "desktop"),
    (None, "desktop"),
])
def test_device_class_rule(gpu, key):
    assert bl.device_class(gpu).key == key


def test_defaults_follow_the_class_and_flags_override():
    small = bl.resolve_limits(bl.GpuInfo("Orin", 7620, (8, 7), True))
    assert (small.workspace_mib, small.optimization_level, small.aux_streams) == (512, 2, 0)
    override = bl.resolve_limits(bl.GpuInfo("Orin", 7620, (8, 7), True), workspace_mib=256, aux_streams=1)
    assert (override.workspace_mib, override.optimization_level, override.aux_streams) == (256, 2, 1)
    assert bl.resolve_limits(None, device_class_key="thor").workspace_mib == 2048


@pytest.mark.parametrize("kw, match", [
    ({"workspace_mib": 0}, "workspace limit must be a positive number of MiB, got 0"),
    ({"optimization_level": 7}, r"builder optimization level must be 0\.\.5.*got 7"),
    ({"aux_streams": -1}, "auxiliary streams must be >= 0, got -1"),
])
def test_bad_limits_are_named(kw, match):
    with pytest.raises(ValueError, match=match):
        bl.resolve_limits(None, **kw)


def test_tactic_sources_per_version_and_trtexec_spelling():
    assert bl.tactic_source_names("10.3.0") == ("CUBLAS", "CUBLAS_LT", "CUDNN", "EDGE_MASK_CONVOLUTIONS",
                                                "JIT_CONVOLUTIONS")
    assert bl.tactic_source_names("11.4.0") == ("EDGE_MASK_CONVOLUTIONS", "JIT_CONVOLUTIONS")
    limits = bl.BuilderLimits(512, 2, 0, ("JIT_CONVOLUTIONS",))
    assert limits.trtexec_args(11) == ["--memPoolSize=workspace:512M", "--builderOptimizationLevel=2",
                                       "--maxAuxStreams=0", "--tacticSources=-EDGE_MASK_CONVOLUTIONS,+JIT_CONVOLUTIONS"]
    assert bl.parse_tactic_sources("default") is None
    assert bl.parse_tactic_sources(" jit_convolutions, cudnn ") == ("JIT_CONVOLUTIONS", "CUDNN")


def _kit(tmp_path, monkeypatch, version="10.3.0.30"):
    tiny_bundle(tmp_path / "bundle")
    fake = make_fake_trt(version)
    fake.state["inputs"] = [types.SimpleNamespace(name="images", shape=(-1, *CHW))]
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    return fake, tmp_path / "bundle"


def test_kit_records_limits_time_and_memory_in_the_manifest(tmp_path, monkeypatch):
    fake, bundle = _kit(tmp_path, monkeypatch)
    assert cli.main(["--bundle", str(bundle), "--no-verify", "--device-class", "orin-8gb",
                     "--tactic-sources", "cudnn,jit_convolutions"]) == 0
    engine = next(a for a in json.loads((bundle / "manifest.json").read_text())["artifacts"] if a["kind"] == "engine")
    build = engine["build"]
    assert build["builder_limits"] == {"workspace_mib": 512, "optimization_level": 2, "aux_streams": 0,
                                       "tactic_sources": ["CUDNN", "JIT_CONVOLUTIONS"], "device_class": "orin-8gb"}
    assert build["build_seconds"] >= 0 and build["build_memory"]["host_peak_rss_mib"] > 0
    assert "device_peak_mib" in build["build_memory"] and build["timing_cache"]["saved"]
    assert fake.calls["pools"] == {"WORKSPACE": 512 << 20} and fake.calls["tactic_sources"] == (1 << 2) | (1 << 4)


@pytest.mark.parametrize("argv, version, match", [
    (["--builder-optimization-level", "9"], "10.3.0.30", "--builder-optimization-level must be an integer in [0, 5], got '9'"),
    (["--tactic-sources", "cublas"], "11.4.0.106", "CUBLAS not available with TensorRT 11.4.0.106"),
    (["--tactic-sources", ","], "10.3.0.30", "--tactic-sources: expected a comma list"),
])
def test_kit_bad_limits_exit_2_naming_the_value(tmp_path, monkeypatch, capsys, argv, version, match):
    _, bundle = _kit(tmp_path, monkeypatch, version)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--bundle", str(bundle), "--no-verify", *argv])
    assert exit_.value.code == 2 and match in capsys.readouterr().err


class _Cudart:
    """cuda-python's ``cudaMemGetInfo`` answers (error, free, total); no GPU here, so its values are scripted."""

    def __init__(self, used_mib):
        self.used = iter(used_mib)
        self.last = 0

    def cudaMemGetInfo(self):
        self.last = next(self.used, self.last)
        return 0, (8192 - self.last) << 20, 8192 << 20


def test_device_memory_sampler_keeps_the_peak_above_the_baseline():
    with DeviceMemorySampler(_Cudart([1000, 1500, 2600, 1200]), interval=0.001) as sampler:
        import time
        time.sleep(0.05)
    assert sampler.record() == {"device_peak_mib": 1600.0, "device_used_before_mib": 1000.0}
    assert DeviceMemorySampler(None).record() == {"device_peak_mib": None,
                                                  "device_memory_note": "cuda-python is not available"}
