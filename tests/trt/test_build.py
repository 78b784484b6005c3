"""TensorRT build rules (10.x vs 11.x), the build flow against a fake ``tensorrt``, and ``build_engine``'s errors."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from ibit_deploy.devicekit.build import (
    build_serialized_engine,
    parse_trt_version,
    trt_build_settings,
    trtexec_benchmark_command,
    trtexec_command,
)
from ibit_deploy.devicekit.build_limits import BuilderLimits, GpuInfo
from ibit_deploy.devicekit.profile import EngineProfile
from ibit_deploy.devicekit.session import CudaUnavailable, EngineBuildError
from ibit_deploy.errors import BackendUnavailable
from ibit_deploy.trt.build import build_engine


def _profile(lo: int = 1, opt: int = 4, hi: int = 16, chw=(3, 32, 32), name: str = "images") -> EngineProfile:
    return EngineProfile(name, chw, lo, opt, hi)

BENCH_FLAGS_10 = ["--useCudaGraph", "--noDataTransfers", "--useSpinWait", "--separateProfileRun"]
PRECISION_FLAGS = {"--fp16", "--int8", "--best", "--bf16", "--fp8"}


def _cmd(major: int, precision: str = "fp16", **kw) -> list[str]:
    return trtexec_command(major, "m.onnx", "e.plan", precision, _profile(), timing_cache="t.cache", **kw)


# --------------------------------------------------------------------------------------------- version rules

@pytest.mark.parametrize("text, expected", [("10.3.0.30", (10, 3)), ("11.1.0", (11, 1)), (" 10.16", (10, 16))])
def test_parse_trt_version(text, expected):
    assert parse_trt_version(text) == expected


def test_parse_trt_version_rejects_garbage():
    with pytest.raises(ValueError, match="cannot parse TensorRT version 'ten'"):
        parse_trt_version("ten")


@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_strongly_typed_settings_build_from_the_typed_onnx(precision):
    for major in (10, 11):
        settings = trt_build_settings(major, precision)
        assert settings["strongly_typed"] and settings["builder_flags"] == []
        assert settings["onnx_precision"] == precision
    assert trt_build_settings(10, precision)["trtexec_flags"] == ["--stronglyTyped"]
    assert trt_build_settings(11, precision)["trtexec_flags"] == []  # a deprecated no-op on 11


def test_legacy_settings_on_10():
    fp16 = trt_build_settings(10, "fp16", legacy=True)
    assert fp16["builder_flags"] == ["FP16"] and fp16["trtexec_flags"] == ["--fp16"]
    assert fp16["onnx_precision"] == "fp32" and not fp16["strongly_typed"]
    int8 = trt_build_settings(10, "int8", legacy=True)
    assert int8["builder_flags"] == ["INT8", "FP16"] and int8["onnx_precision"] == "int8"


def test_legacy_settings_refused_on_11():
    with pytest.raises(ValueError, match="removed in TensorRT 11"):
        trt_build_settings(11, "fp16", legacy=True)


@pytest.mark.parametrize("major", [8, 9, 12])
def test_unknown_tensorrt_majors_name_the_supported(major):
    with pytest.raises(ValueError, match=rf"TensorRT {major}\.x is not supported: this kit knows TensorRT 10\.x and 11\.x"):
        trt_build_settings(major, "fp16")


def test_unsupported_precision_is_named():
    with pytest.raises(ValueError, match="'bf16'"):
        trt_build_settings(10, "bf16")


def test_trtexec_command_10_vs_11():
    cmd10, cmd11 = _cmd(10), _cmd(11)
    assert "--stronglyTyped" in cmd10 and "--stronglyTyped" not in cmd11
    for cmd in (cmd10, cmd11):
        assert not PRECISION_FLAGS & set(cmd)
        assert cmd[:3] == ["trtexec", "--onnx=m.onnx", "--saveEngine=e.plan"]
        assert "--minShapes=images:1x3x32x32" in cmd and "--optShapes=images:4x3x32x32" in cmd
        assert "--maxShapes=images:16x3x32x32" in cmd and "--timingCacheFile=t.cache" in cmd
        assert "--memPoolSize=workspace:1024M" in cmd and cmd[-1] == "--skipInference"


def test_trtexec_legacy_10_uses_precision_flags():
    cmd = _cmd(10, "int8", legacy=True)
    assert {"--int8", "--fp16"} <= set(cmd) and "--stronglyTyped" not in cmd
    with pytest.raises(ValueError, match="removed in TensorRT 11"):
        _cmd(11, "int8", legacy=True)


def test_trtexec_benchmark_flags_only_on_10():
    cmd10 = _cmd(10, benchmark=True, export_prefix="out/fp16")
    cmd11 = _cmd(11, benchmark=True, export_prefix="out/fp16")
    assert all(flag in cmd10 for flag in BENCH_FLAGS_10)
    assert not set(BENCH_FLAGS_10) & set(cmd11)  # 11 made them the defaults and deprecated the flags
    for cmd in (cmd10, cmd11):
        assert "--skipInference" not in cmd and "--shapes=images:4x3x32x32" in cmd
        assert "--percentile=50,90,99" in cmd
        assert {"--exportTimes=out/fp16.times.json", "--exportProfile=out/fp16.profile.json",
                "--exportLayerInfo=out/fp16.layers.json"} <= set(cmd)


def test_trtexec_benchmark_command_loads_the_engine():
    profile = EngineProfile("images", (1, 28, 28), 1, 8, 16)
    cmd = trtexec_benchmark_command(10, "e.plan", profile)  # the profile's opt batch by default
    assert cmd[:3] == ["trtexec", "--loadEngine=e.plan", "--shapes=images:8x1x28x28"]
    assert all(flag in cmd for flag in BENCH_FLAGS_10)
    assert not set(BENCH_FLAGS_10) & set(trtexec_benchmark_command(11, "e.plan", profile, batch=1))
    assert "--shapes=images:1x1x28x28" in trtexec_benchmark_command(11, "e.plan", profile, batch=1)
    with pytest.raises(ValueError, match=r"batch 32 is outside the engine profile \[1, 16\]"):
        trtexec_benchmark_command(10, "e.plan", profile, batch=32)
    with pytest.raises(ValueError, match="TensorRT 12.x is not supported"):
        trtexec_benchmark_command(12, "e.plan", profile)


@pytest.mark.parametrize("batches", [(0, 1, 4), (4, 2, 8), (1, 8, 4)])
def test_trtexec_command_rejects_bad_batch_range(batches):
    lo, opt, hi = batches
    with pytest.raises(ValueError, match=f"min={lo}, opt={opt}, max={hi}"):
        trtexec_command(10, "m.onnx", "e.plan", "fp32", _profile(lo, opt, hi, (3, 8, 8)))


def test_trtexec_command_rejects_unquotable_input_name():
    with pytest.raises(ValueError, match="input name"):
        trtexec_command(10, "m.onnx", "e.plan", "fp32", _profile(1, 1, 1, (3, 8, 8), "x;rm -rf /"))


# --------------------------------------------------------------------------------------------- build flow (fake trt)

def _build(trt, tmp_path: Path, **kw):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"onnx")
    written: dict[Path, bytes] = {}
    kw.setdefault("timing_cache", tmp_path / "timing.cache")
    engine, info = build_serialized_engine(trt, onnx, kw.pop("profile", _profile()),
                                           write_bytes=lambda p, data: written.__setitem__(p, data), **kw)
    return engine, info, written


@pytest.mark.parametrize("version", ["10.3.0.30", "11.1.0.106"])
def test_build_is_strongly_typed_on_10_and_11(fake_trt_factory, tmp_path, version):
    trt = fake_trt_factory(version)
    engine, info, written = _build(trt, tmp_path)
    assert engine == b"SERIALIZED-ENGINE"
    assert trt.calls["network_flags"] == 1 << 1  # 1 << STRONGLY_TYPED
    assert trt.calls["flags"] == []
    assert trt.calls["profile"] == ("images", (1, 3, 32, 32), (4, 3, 32, 32), (16, 3, 32, 32))
    assert trt.calls["pools"] == {"WORKSPACE": 1024 << 20}
    assert info["strongly_typed"] and info["trt_major"] == int(version.split(".")[0])
    assert info["input"] == {"name": "images", "shape": ["batch", 3, 32, 32]}
    assert info["outputs"] == [{"name": "logits", "shape": ["batch", 10]}]
    assert written[tmp_path / "timing.cache"] == b"CACHE:"  # a new cache, saved after the build, with its key
    assert json.loads(written[tmp_path / "timing.cache.key.json"]) == {
        "tensorrt": version, "gpu": None, "compute_capability": None}
    assert info["builder_limits"] == {"workspace_mib": 1024, "optimization_level": None, "aux_streams": None,
                                      "tactic_sources": None, "device_class": None}
    assert info["build_seconds"] >= 0 and info["build_memory"]["host_peak_rss_mib"] > 0
    assert info["build_memory"]["device_peak_mib"] is None  # no cuda-python / GPU here, and it says so


def test_build_loads_an_existing_timing_cache(fake_trt, tmp_path):
    (tmp_path / "timing.cache").write_bytes(b"old")
    _, info, written = _build(fake_trt, tmp_path)
    assert fake_trt.calls["cache_blobs"] == [b"old"] and info["timing_cache"]["loaded"]
    assert written[tmp_path / "timing.cache"] == b"CACHE:old"


def test_build_sets_aside_a_timing_cache_tensorrt_refuses(fake_trt, tmp_path, capsys):
    (tmp_path / "timing.cache").write_bytes(b"from-another-gpu")
    fake_trt.state["cache_accepts"] = False
    _, info, written = _build(fake_trt, tmp_path)
    assert fake_trt.calls["cache_blobs"] == [b"from-another-gpu", b""]
    assert info["timing_cache"]["set_aside"] == "timing.cache.set-aside" and not info["timing_cache"]["loaded"]
    assert (tmp_path / "timing.cache.set-aside").read_bytes() == b"from-another-gpu"
    assert written[tmp_path / "timing.cache"] == b"CACHE:"  # rebuilt, not a hard error
    assert "warning: timing cache" in capsys.readouterr().err


def test_build_sets_aside_a_timing_cache_keyed_for_another_gpu(fake_trt, tmp_path, capsys):
    gpu = GpuInfo("Orin", 7620, (8, 7), True)
    (tmp_path / "timing.cache").write_bytes(b"thor-cache")
    (tmp_path / "timing.cache.key.json").write_text(json.dumps(
        {"tensorrt": "10.3.0.30", "gpu": "Thor", "compute_capability": "11.0"}))
    (tmp_path / "timing.cache.set-aside").write_bytes(b"older")  # an earlier set-aside cache is kept too
    _, info, written = _build(fake_trt, tmp_path, gpu=gpu)
    assert fake_trt.calls["cache_blobs"] == [b""]  # never offered to TensorRT
    assert (tmp_path / "timing.cache.set-aside.1").read_bytes() == b"thor-cache"
    assert json.loads((tmp_path / "timing.cache.set-aside.1.key.json").read_text())["gpu"] == "Thor"
    assert json.loads(written[tmp_path / "timing.cache.key.json"])["gpu"] == "Orin"
    assert "made for" in capsys.readouterr().err and info["gpu"]["compute_capability"] == "8.7"


def test_build_applies_builder_limits(fake_trt_factory, tmp_path):
    trt = fake_trt_factory("10.16.1.11")
    limits = BuilderLimits(512, optimization_level=2, aux_streams=0, tactic_sources=("CUBLAS", "JIT_CONVOLUTIONS"),
                           device_class="orin-8gb")
    _, info, _ = _build(trt, tmp_path, limits=limits)
    assert trt.calls["pools"] == {"WORKSPACE": 512 << 20} and trt.calls["tactic_sources"] == (1 << 0) | (1 << 4)
    assert info["builder_limits"]["optimization_level"] == 2 and info["builder_limits"]["device_class"] == "orin-8gb"


def test_builder_limits_a_version_lacks_are_refused_by_name(fake_trt_factory, tmp_path):
    with pytest.raises(ValueError, match=r"tactic source\(s\) CUBLAS not available with TensorRT 11\.4\.0"):
        _build(fake_trt_factory("11.4.0"), tmp_path, limits=BuilderLimits(tactic_sources=("CUBLAS",)))


def test_legacy_fp16_on_10_is_weakly_typed_with_builder_flag(fake_trt, tmp_path):
    _, info, _ = _build(fake_trt, tmp_path, strongly_typed=False, legacy_precision="fp16")
    assert fake_trt.calls["network_flags"] == 0 and fake_trt.calls["flags"] == ["FP16"]
    assert not info["strongly_typed"] and info["builder_flags"] == ["FP16"]


def test_legacy_on_11_is_refused(fake_trt_factory, tmp_path):
    with pytest.raises(ValueError, match="removed in TensorRT 11"):
        _build(fake_trt_factory("11.0.0"), tmp_path, strongly_typed=False, legacy_precision="int8")


def test_every_parser_error_is_reported(fake_trt, tmp_path):
    fake_trt.state["parser_errors"] = ["unsupported op X", "shape mismatch Y"]
    with pytest.raises(EngineBuildError) as err:
        _build(fake_trt, tmp_path)
    text = str(err.value)
    assert "model.onnx" in text and "2 error(s)" in text
    assert "unsupported op X" in text and "shape mismatch Y" in text and "Softmax" in text
    assert "built" not in fake_trt.calls


def test_missing_input_name_lists_the_real_inputs(fake_trt, tmp_path):
    with pytest.raises(EngineBuildError, match=r"no input named 'pixels'.*\['images'\]"):
        _build(fake_trt, tmp_path, profile=_profile(name="pixels"))


def test_failed_build_is_an_error(fake_trt, tmp_path):
    fake_trt.state["engine"] = None
    with pytest.raises(EngineBuildError, match="failed to build an engine"):
        _build(fake_trt, tmp_path)


def test_builder_without_gpu_is_cuda_unavailable(fake_trt, tmp_path):
    fake_trt.state["builder_raises"] = TypeError("pybind11::init(): factory function returned nullptr")
    with pytest.raises(CudaUnavailable, match="no usable CUDA GPU"):
        _build(fake_trt, tmp_path)


# --------------------------------------------------------------------------------------------- build_engine

def test_build_engine_without_tensorrt_is_backend_unavailable(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "tensorrt", None)  # makes `import tensorrt` fail, as on this CPU machine
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"onnx")
    with pytest.raises(BackendUnavailable, match="TensorRT is not available: `import tensorrt` failed"):
        build_engine(onnx, tmp_path / "engine.plan", _profile(1, 1, 1))


def test_build_engine_without_gpu_is_backend_unavailable(fake_trt, tmp_path):
    onnx = tmp_path / "model.onnx"
    onnx.write_bytes(b"onnx")
    with pytest.raises(BackendUnavailable, match="no CUDA GPU"):
        build_engine(onnx, tmp_path / "engine.plan", _profile(1, 1, 1), trt=fake_trt, device_count=lambda: 0)


def test_build_engine_writes_the_engine(fake_trt, tmp_path):
    onnx = tmp_path / "model.fp16.onnx"
    onnx.write_bytes(b"onnx")
    info = build_engine(onnx, tmp_path / "out" / "engine.plan", _profile(), timing_cache=tmp_path / "timing.cache",
                        trt=fake_trt, device_count=lambda: 1)
    assert (tmp_path / "out" / "engine.plan").read_bytes() == b"SERIALIZED-ENGINE"
    assert (tmp_path / "timing.cache").read_bytes() == b"CACHE:"
    assert info["engine_bytes"] == len(b"SERIALIZED-ENGINE") and len(info["engine_sha256"]) == 64
    assert not list((tmp_path / "out").glob("*.tmp"))


def test_build_engine_validates_before_importing(tmp_path):
    with pytest.raises(FileNotFoundError, match="ONNX file not found: .*absent.onnx"):
        build_engine(tmp_path / "absent.onnx", tmp_path / "e.plan", _profile(1, 1, 1))
    with pytest.raises(ValueError, match="1 <= min <= opt <= max"):
        _profile(4, 2, 8)
    with pytest.raises(ValueError, match="legacy_precision must be"):
        build_engine(tmp_path / "absent.onnx", tmp_path / "e.plan", _profile(1, 1, 1), legacy_precision="fp8")


# --------------------------------------------------------------------------------------------- torch-tensorrt

def test_torch_tensorrt_precision_settings():
    import torch

    from ibit_deploy.export.torch_tensorrt import precision_kwargs

    autocast = {"use_explicit_typing", "enable_autocast", "low_precision_type"}
    assert precision_kwargs("fp16", autocast, 11) == {"use_explicit_typing": True, "enable_autocast": True,
                                                      "low_precision_type": torch.float16}
    assert precision_kwargs("fp16", set(), 10) == {"enabled_precisions": {torch.float16, torch.float32}}
    assert precision_kwargs("fp32", autocast, 11) == {"use_explicit_typing": True}
    with pytest.raises(BackendUnavailable, match="no autocast"):
        precision_kwargs("fp16", set(), 11)  # weak typing is gone in TensorRT 11
    with pytest.raises(ValueError, match="model.int8.onnx"):
        precision_kwargs("int8", autocast, 10)


def test_torch_tensorrt_export_needs_cuda(tmp_path, monkeypatch):
    import torch

    from ibit_deploy.export.torch_tensorrt import export_torch_tensorrt

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(BackendUnavailable, match="needs a CUDA GPU"):
        export_torch_tensorrt(torch.nn.Identity(), _profile(1, 1, 4, (3, 8, 8)), tmp_path / "m.ep", "fp16")
