"""Engines that survive an upgrade (devicekit/engine_compat.py): the rule which TensorRT may run an engine, the
checks of the choices, the trtexec spelling (against trtexec's own flag tables), and the kit recording the choice in
the manifest. The builder calls themselves run under the real bindings in tests/conformance (kit.main.engine_compat,
kit.main.exclude_lean_runtime)."""

from __future__ import annotations

import json
import shlex
import sys
import types

import pytest

from ibit_deploy.conformance.paths import CHW, tiny_bundle
from ibit_deploy.conformance.trtexec_flags import check_trtexec_argv
from ibit_deploy.devicekit import cli
from ibit_deploy.devicekit import engine_compat as ec
from ibit_deploy.devicekit.build import trtexec_command
from ibit_deploy.devicekit.profile import EngineProfile

from ..conftest import make_fake_trt

NONE, VERSION, HARDWARE, BOTH = (ec.EngineCompat(c) for c in ec.CHOICES)
EXCLUDED = ec.EngineCompat("version", exclude_lean_runtime=True)


@pytest.mark.parametrize("built, compat, installed, kw, refused", [
    ("10.3.0.30", NONE, "10.3.0.30", {}, False),
    ("10.3.0.30", NONE, "10.3.0.26", {}, False),           # the build number is not compared
    ("10.3.0.30", NONE, "10.3.1.4", {}, True),             # another patch release
    ("10.3.0.30", NONE, "10.16.1.11", {}, True),
    ("10.3", NONE, "10.3.0.30", {}, False),                 # a recorded major.minor compares major.minor
    ("10.3.0.30", VERSION, "10.16.1.11", {}, False),       # later minor
    ("10.16.1.11", VERSION, "11.4.0.106", {}, False),      # later major: "TensorRT 10 engines work with 11"
    ("10.16.1.11", VERSION, "10.3.0.30", {}, True),        # never an older TensorRT
    ("10.16.1.11", VERSION, "10.16.0.1", {}, True),
    ("10.3.0.30", EXCLUDED, "10.16.1.11", {}, True),       # no lean runtime library given
    ("10.3.0.30", EXCLUDED, "10.16.1.11", {"lean_runtime": "/opt/libnvinfer_lean.so.10"}, False),
    ("10.16.1.11", HARDWARE, "10.16.1.11", {"compute_capability": (8, 6)}, False),
    ("10.16.1.11", HARDWARE, "10.16.1.11", {"compute_capability": (7, 5)}, True),   # Turing
    ("10.16.1.11", HARDWARE, "10.16.1.11", {"jetson": True}, True),
    ("10.16.1.11", HARDWARE, "11.4.0.106", {}, True),      # hardware-compatible alone is still version-bound
    ("10.16.1.11", BOTH, "11.4.0.106", {"compute_capability": (9, 0)}, False),
    ("10.16.1.11", BOTH, "11.4.0.106", {"jetson": True}, True),
    (None, NONE, "10.3.0.30", {}, False),                   # nothing recorded: TensorRT's own check decides
])
def test_which_tensorrt_may_run_an_engine(built, compat, installed, kw, refused):
    why = ec.refusal(built, compat, installed, engine="engine.plan", **kw)
    assert (why is not None) == refused, why
    if refused:  # names the engine and both versions
        assert "engine.plan" in why and built in why and installed in why


@pytest.mark.parametrize("compat, kw, match", [
    (ec.EngineCompat("always"), {}, "--engine-compat must be one of none, version, hardware, version\\+hardware"),
    (ec.EngineCompat("hardware", exclude_lean_runtime=True), {}, "--exclude-lean-runtime applies to version"),
    (HARDWARE, {"trt_version": "10.3.0.30", "jetson": True}, "hardware-compatible engines .* on a Jetson"),
    (HARDWARE, {"compute_capability": (7, 5)}, "this GPU has 7.5"),
])
def test_bad_choices_are_named(compat, kw, match):
    with pytest.raises(ValueError, match=match):
        compat.check(**kw)


def test_jetson_may_build_version_compatible_engines():
    assert VERSION.check("10.3.0.30", jetson=True) is VERSION
    assert BOTH.check("11.4.0.106", compute_capability=(9, 0)) is BOTH


def test_record_round_trips_and_bad_records_name_the_file():
    for compat in (NONE, VERSION, HARDWARE, BOTH, EXCLUDED):
        assert ec.EngineCompat.from_record(json.loads(json.dumps(compat.record()))) == compat
    assert VERSION.record() == {"choice": "version", "lean_runtime": "embedded", "hardware_compatibility_level": None}
    assert HARDWARE.record()["hardware_compatibility_level"] == "AMPERE_PLUS"
    assert ec.EngineCompat.from_record(None) == NONE  # engines recorded before the option: exact version
    with pytest.raises(ValueError, match="B/manifest.json: engine.plan: engine_compat must be an object"):
        ec.EngineCompat.from_record({"choice": "sometimes"}, "B/manifest.json: engine.plan")
    with pytest.raises(ValueError, match="lean_runtime must be"):
        ec.EngineCompat.from_record({"choice": "version", "lean_runtime": "maybe"})


def test_runtime_options_follow_the_lean_runtime():
    assert ec.runtime_options(NONE) == {} and ec.runtime_options(HARDWARE) == {}
    assert ec.runtime_options(VERSION) == ec.runtime_options(BOTH) == {"host_code_allowed": True}
    assert ec.runtime_options(EXCLUDED, "/lib/libnvinfer_lean.so.10") == {"lean_runtime": "/lib/libnvinfer_lean.so.10"}


@pytest.mark.parametrize("major", [10, 11])
@pytest.mark.parametrize("compat", [VERSION, HARDWARE, BOTH, EXCLUDED])
def test_trtexec_flags_are_trtexecs_own(major, compat):
    profile = EngineProfile("images", (3, 32, 32), 1, 8, 32)
    argv = trtexec_command(major, "model.onnx", "engine.plan", "fp16", profile, compat=compat)
    assert check_trtexec_argv(argv, major) == []
    assert [a for a in argv if a in ("--versionCompatible", "--excludeLeanRuntime")
            or a.startswith("--hardwareCompatibilityLevel")] == compat.trtexec_args()


# ------------------------------------------------------------------------------------------------- the kit

def _kit(tmp_path, monkeypatch, version="10.16.1.11"):
    tiny_bundle(tmp_path / "bundle")
    fake = make_fake_trt(version)
    fake.state["inputs"] = [types.SimpleNamespace(name="images", shape=(-1, *CHW))]
    fake.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8", VERSION_COMPATIBLE="VERSION_COMPATIBLE",
                                             EXCLUDE_LEAN_RUNTIME="EXCLUDE_LEAN_RUNTIME")
    fake.HardwareCompatibilityLevel = types.SimpleNamespace(AMPERE_PLUS="AMPERE_PLUS")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    return fake, tmp_path / "bundle"


def _engine_entry(bundle):
    return next(a for a in json.loads((bundle / "manifest.json").read_text())["artifacts"] if a["kind"] == "engine")


@pytest.mark.parametrize("argv, flags, record", [
    ([], [], NONE.record()),
    (["--engine-compat", "version"], ["VERSION_COMPATIBLE"], VERSION.record()),
    (["--engine-compat", "version", "--exclude-lean-runtime"], ["VERSION_COMPATIBLE", "EXCLUDE_LEAN_RUNTIME"],
     EXCLUDED.record()),
    (["--engine-compat", "version+hardware"], ["VERSION_COMPATIBLE"], BOTH.record()),
])
def test_kit_sets_the_flags_and_records_the_choice(tmp_path, monkeypatch, argv, flags, record):
    fake, bundle = _kit(tmp_path, monkeypatch)
    assert cli.main(["--bundle", str(bundle), "--no-verify", *argv]) == 0
    assert fake.calls["flags"] == flags
    entry = _engine_entry(bundle)
    assert entry["engine_compat"] == record and entry["tensorrt"] == "10.16.1.11"


def test_kit_skips_the_check_of_an_engine_without_its_lean_runtime(tmp_path, monkeypatch, capsys):
    """Without --lean-runtime the engine cannot be opened here: the check says why instead of failing."""
    _, bundle = _kit(tmp_path, monkeypatch)
    assert cli.main(["--bundle", str(bundle), "--engine-compat", "version", "--exclude-lean-runtime"]) == 0
    skipped = _engine_entry(bundle)["verification"]["skipped"]
    assert "without its lean runtime" in skipped and "libnvinfer_lean.so" in skipped


@pytest.mark.parametrize("argv, match", [
    (["--engine-compat", "hardware", "--exclude-lean-runtime"], "--exclude-lean-runtime applies to version"),
    (["--lean-runtime", "lib.so"], "--lean-runtime goes with --exclude-lean-runtime"),
    (["--engine-compat", "version", "--exclude-lean-runtime", "--lean-runtime", "missing.so"],
     "--lean-runtime: file not found: missing.so"),
    (["--engine-compat", "sometimes"], "invalid choice: 'sometimes'"),
])
def test_kit_bad_compat_flags_exit_2(tmp_path, monkeypatch, capsys, argv, match):
    _, bundle = _kit(tmp_path, monkeypatch)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--bundle", str(bundle), "--no-verify", *argv])
    assert exit_.value.code == 2 and match in capsys.readouterr().err


def test_kit_refuses_hardware_compatibility_on_a_jetson(tmp_path, monkeypatch, capsys):
    _, bundle = _kit(tmp_path, monkeypatch, "10.3.0.30")
    monkeypatch.setattr(ec.versions, "read_l4t_release", lambda path=None: "R36.4.3")
    with pytest.raises(SystemExit) as exit_:
        cli.main(["--bundle", str(bundle), "--no-verify", "--engine-compat", "hardware"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and "hardware-compatible engines (Ampere+) cannot be used with TensorRT 10.3.0.30 " \
                                       "on a Jetson" in err
    assert not (bundle / "engine.plan").exists()


def test_kit_prints_the_trtexec_flags(tmp_path, monkeypatch, capsys):
    _, bundle = _kit(tmp_path, monkeypatch)
    assert cli.main(["--bundle", str(bundle), "--print-trtexec", "--trt-major", "11",
                     "--engine-compat", "version+hardware"]) == 0
    argv = shlex.split(capsys.readouterr().out)
    assert "--versionCompatible" in argv and "--hardwareCompatibilityLevel=ampere+" in argv
    assert check_trtexec_argv(argv, 11) == []


# ------------------------------------------------------------------------------------------------- with refit

def test_refit_and_version_compatibility_are_refused_together():
    """The lean runtime that runs a version-compatible engine cannot refit it: one rule, asked everywhere."""
    assert VERSION.refit_refusal("refittable") and "lean runtime" in VERSION.refit_refusal("stripped")
    assert BOTH.refit_refusal("refit") is not None
    assert ec.EngineCompat("hardware").refit_refusal("refittable") is None
    assert VERSION.refit_refusal(None) is None and NONE.refit_refusal("refittable") is None


def test_kit_refuses_a_refittable_version_compatible_build(tmp_path, monkeypatch, capsys):
    _, bundle = _kit(tmp_path, monkeypatch)
    with pytest.raises(SystemExit) as exit_:
        cli.main([str(bundle), "--no-verify", "--refittable", "--engine-compat", "version"])
    assert exit_.value.code == 2 and "cannot be version-compatible" in capsys.readouterr().err


def test_kit_refuses_to_refit_a_recorded_version_compatible_engine(tmp_path, monkeypatch, capsys):
    fake, bundle = _kit(tmp_path, monkeypatch)
    assert cli.main([str(bundle), "--no-verify", "--engine-compat", "version"]) == 0
    manifest = json.loads((bundle / "manifest.json").read_text())
    for entry in manifest["artifacts"]:
        if entry["kind"] == "engine":
            entry["refit_mode"] = "refittable"  # as if it had been built refittable by an older kit
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert cli.main([str(bundle), "--refit"]) == 2
    assert "cannot be version-compatible" in capsys.readouterr().err


def test_kit_builds_with_the_exported_choice_unless_told_otherwise(tmp_path, monkeypatch):
    fake, bundle = _kit(tmp_path, monkeypatch)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["export"] = {"engine_compat": VERSION.record()}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    assert cli.main([str(bundle), "--no-verify"]) == 0
    assert fake.calls["flags"] == ["VERSION_COMPATIBLE"] and _engine_entry(bundle)["engine_compat"] == VERSION.record()
    fake.calls["flags"] = []
    assert cli.main([str(bundle), "--no-verify", "--engine-compat", "none"]) == 0
    assert fake.calls["flags"] == [] and _engine_entry(bundle)["engine_compat"] == NONE.record()


def test_kit_names_a_bad_recorded_choice(tmp_path, monkeypatch, capsys):
    _, bundle = _kit(tmp_path, monkeypatch)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["export"] = {"engine_compat": {"choice": "always"}}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SystemExit) as exit_:
        cli.main([str(bundle), "--no-verify"])
    assert exit_.value.code == 2 and "export block: engine_compat must be" in capsys.readouterr().err


def test_kit_names_the_manifest_for_a_contradictory_recorded_choice(tmp_path, monkeypatch, capsys):
    """No flag was given: the error is the manifest's export record, named with its path, not a flag."""
    _, bundle = _kit(tmp_path, monkeypatch)
    manifest = json.loads((bundle / "manifest.json").read_text())
    manifest["export"] = {"engine_compat": {"choice": "none", "lean_runtime": "excluded"}}
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(SystemExit) as exit_:
        cli.main([str(bundle), "--no-verify"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and f"{bundle / 'manifest.json'} export block: engine_compat.lean_runtime" in err
    assert "--exclude-lean-runtime applies" not in err
