"""ibit-export's --engine-compat / --exclude-lean-runtime: checked before anything is written, applied to the engine
built here (TensorRT through the EngineTools seam: the fake module of tests/conftest.py, its real API checked in
tests/conformance), the check opening it as TensorRT requires, and the choice recorded in the manifest's engine
entry (devicekit/engine_compat.py)."""

from __future__ import annotations

import types
from functools import partial

from ibit_deploy.cli.export import main
from ibit_deploy.devicekit.engine_compat import EngineCompat
from ibit_deploy.devicekit.manifest import load_manifest
from ibit_deploy.export.pipeline import ExportOptions, export_checkpoint
from ibit_deploy.trt.build import EngineTools, build_engine

from ..conftest import exit_code, make_fake_trt


def test_bad_compat_options_exit_2_before_writing(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "b"
    assert main([str(tiny_checkpoint), "--engine-compat", "version", "--out", str(out)]) == 2
    assert "--engine-compat / --exclude-lean-runtime need --to tensorrt, got --to onnx" in capsys.readouterr().err
    assert main([str(tiny_checkpoint), "--to", "tensorrt", "--exclude-lean-runtime", "--out", str(out)]) == 2
    assert "--exclude-lean-runtime applies to version-compatible engines only" in capsys.readouterr().err
    assert main([str(tiny_checkpoint), "--to", "tensorrt", "--precision", "auto", "--engine-compat", "version",
                 "--exclude-lean-runtime", "--out", str(out)]) == 2
    assert "--exclude-lean-runtime with --precision auto" in capsys.readouterr().err
    assert exit_code(main, [str(tiny_checkpoint), "--to", "tensorrt", "--engine-compat", "always", "--out",
                            str(out)]) == 2
    assert not out.exists()


def _tools(checks):
    fake = make_fake_trt("10.16.1.11")
    fake.state["inputs"] = [types.SimpleNamespace(name="images", shape=(-1, 1, 28, 28))]
    fake.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8", VERSION_COMPATIBLE="VERSION_COMPATIBLE",
                                             EXCLUDE_LEAN_RUNTIME="EXCLUDE_LEAN_RUNTIME")
    fake.HardwareCompatibilityLevel = types.SimpleNamespace(AMPERE_PLUS="AMPERE_PLUS")

    def verify(engine, onnx, precision, profile, images, inputs, **kw):
        checks.append(kw)
        return {"count": len(images), "agreement": 1.0, "max_abs_diff": 0.0, "inputs": inputs, "passed": True}

    return fake, EngineTools(build=partial(build_engine, trt=fake, device_count=lambda: 1), verify=verify)


def _engine(out):
    return next(a for a in load_manifest(out)["artifacts"] if a["kind"] == "engine")


def test_version_compatible_engine_is_built_checked_and_recorded(tiny_checkpoint, tmp_path):
    checks = []
    fake, tools = _tools(checks)
    out = tmp_path / "trt"
    export_checkpoint(tiny_checkpoint, out, ExportOptions(to="tensorrt", engine_compat="version+hardware"),
                      engine_tools=tools)
    assert fake.calls["flags"] == ["VERSION_COMPATIBLE"]
    assert checks == [{"runtime_options": {"host_code_allowed": True}}]
    engine = _engine(out)
    assert engine["engine_compat"] == EngineCompat("version+hardware").record() and engine["tensorrt"] == "10.16.1.11"


def test_default_engine_records_none_and_opens_plainly(tiny_checkpoint, tmp_path):
    checks = []
    _, tools = _tools(checks)
    out = tmp_path / "trt"
    export_checkpoint(tiny_checkpoint, out, ExportOptions(to="tensorrt"), engine_tools=tools)
    assert checks == [{}] and _engine(out)["engine_compat"] == EngineCompat().record()


def test_engine_without_its_lean_runtime_is_recorded_unchecked(tiny_checkpoint, tmp_path):
    checks = []
    fake, tools = _tools(checks)
    out = tmp_path / "trt"
    export_checkpoint(tiny_checkpoint, out, ExportOptions(to="tensorrt", engine_compat="version",
                                                          exclude_lean_runtime=True), engine_tools=tools)
    assert fake.calls["flags"] == ["VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"] and checks == []
    engine = _engine(out)
    assert engine["engine_compat"]["lean_runtime"] == "excluded"
    assert "without its lean runtime" in engine["verification"]["skipped"]


def test_the_choice_is_recorded_for_the_device_kit(tiny_checkpoint, tmp_path):
    """An export whose engine is built on the device records the choice in the manifest's export block."""
    out = tmp_path / "trt"
    export_checkpoint(tiny_checkpoint, out, ExportOptions(to="tensorrt", engine_compat="version"),
                      engine_tools=EngineTools(build=partial(build_engine, trt=make_fake_trt("10.16.1.11"),
                                                             device_count=lambda: 0)))
    assert load_manifest(out)["export"]["engine_compat"] == EngineCompat("version").record()
    plain = tmp_path / "plain"
    export_checkpoint(tiny_checkpoint, plain, ExportOptions(to="tensorrt"),
                      engine_tools=EngineTools(build=partial(build_engine, trt=make_fake_trt("10.16.1.11"),
                                                             device_count=lambda: 0)))
    assert "engine_compat" not in load_manifest(plain)["export"]
