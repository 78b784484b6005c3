"""The device scripts: generation, bash/python syntax, argument checks, and a run of build_engine.sh against a fake
trtexec for TensorRT 10 and 11 (no GPU needed: the fake writes the engine file and logs its arguments)."""

from __future__ import annotations

import json
import os
import py_compile
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ibit_deploy.devicekit.manifest import load_manifest, set_artifact, write_manifest
from ibit_deploy.export.device_bundle import render_build_script, write_device_scripts

BASH = shutil.which("bash")
needs_bash = pytest.mark.skipif(BASH is None, reason="bash is not installed")

FAKE_TRTEXEC = """#!/usr/bin/env bash
echo "&&&& RUNNING TensorRT.trtexec [TensorRT v${FAKE_TRT_VERSION}] [b30] # trtexec $*"
printf '%s\\n' "$*" >> "$FAKE_LOG"
for arg in "$@"; do  # FAKE_REJECT: a file name this trtexec's parser fails on, as 10.14+ might on a new op form
    case "$arg" in --onnx=*"${FAKE_REJECT:-/nothing/}")
        echo "[E] [TRT] ModelImporter.cpp:1 ERROR: Attention: unsupported mask layout" >&2; exit 1 ;; esac
done
for arg in "$@"; do
    case "$arg" in --saveEngine=*) printf 'ENGINE' > "${arg#--saveEngine=}" ;; esac
done
"""


@pytest.fixture
def scripts(bundle):
    root, manifest = bundle
    for entry in write_device_scripts(root, manifest, "fp16"):
        set_artifact(manifest, entry)
    write_manifest(root, manifest)
    return root, manifest


def _python(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(root / "build_engine.py"), *args], capture_output=True, text=True,
                          timeout=60)


def test_scripts_are_written_executable_and_listed(scripts):
    root, manifest = scripts
    for name in ("build_engine.sh", "build_engine.py"):
        mode = (root / name).stat().st_mode
        assert mode & stat.S_IXUSR, f"{name} is not executable"
        entry = next(a for a in manifest["artifacts"] if a["path"] == name)
        assert entry["kind"] == "script" and entry["precision"] == "fp16"
    load_manifest(root)  # every sha256 matches
    # one source of truth: the kit is the package's own devicekit, byte for byte, every file listed as kind "kit"
    import ibit_deploy.devicekit as devicekit

    package = Path(devicekit.__file__).parent
    kit_files = {f"devicekit/{p.name}" for p in package.glob("*.py") if p.name != "launcher.py"}
    assert {a["path"] for a in manifest["artifacts"] if a["kind"] == "kit"} == kit_files
    for rel in kit_files:
        assert (root / rel).read_bytes() == (package / Path(rel).name).read_bytes(), rel
    assert (root / "build_engine.py").read_bytes() == (package / "launcher.py").read_bytes()
    assert not list(root.glob(".*.tmp")) and not list(root.glob("devicekit/.*.tmp"))


def test_the_copied_kit_imports_nothing_from_ibit_deploy(scripts, tmp_path):
    """Run from a bundle with ibit_deploy made unimportable: the kit works on the bundle's copy alone."""
    root, _ = scripts
    code = ("import runpy, sys; sys.modules['ibit_deploy'] = None; sys.argv = ['build_engine.py', '--bundle', "
            f"{str(root)!r}, '--print-trtexec', '--trt-major', '10']; runpy.run_path({str(root / 'build_engine.py')!r}, "
            "run_name='__main__')")
    result = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, timeout=60,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "--optShapes=images:4x3x32x32" in result.stdout


@needs_bash
def test_shell_script_syntax(scripts):
    root, _ = scripts
    result = subprocess.run([BASH, "-n", str(root / "build_engine.sh")], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_shell_script_bakes_in_shapes_and_both_versions(bundle):
    _, manifest = bundle
    text = render_build_script(manifest, "int8")
    assert 'PRECISION="int8"' in text and 'ONNX="$BUNDLE_DIR/model.int8.onnx"' in text
    assert '"--minShapes=images:1x3x32x32"' in text and '"--maxShapes=images:16x3x32x32"' in text
    build_10, build_11 = _function_body(text, "build_10"), _function_body(text, "build_11")
    assert '"--stronglyTyped"' in build_10 and "--stronglyTyped" not in build_11
    assert "--int8" not in build_10 + build_11
    assert '"--int8"' in _function_body(text, "build_10_legacy")
    assert '"--useCudaGraph"' in _function_body(text, "benchmark_10")
    assert "--useCudaGraph" not in _function_body(text, "benchmark_11")


def test_shell_script_builds_with_the_exported_engine_compatibility(bundle):
    """build_engine.sh's trtexec lines carry the choice ibit-export recorded, which build_engine.py --skip-build
    then records for the engine (it reads the same manifest block): the record is what trtexec was told."""
    from ibit_deploy.devicekit.engine_compat import EngineCompat

    _, manifest = bundle
    plain = render_build_script(manifest, "fp32")
    assert "--versionCompatible" not in plain
    manifest = {**manifest, "export": {"engine_compat": EngineCompat("version", True).record()}}
    text = render_build_script(manifest, "fp32")
    for name in ("build_10", "build_11"):
        assert '"--versionCompatible"' in _function_body(text, name)
        assert '"--excludeLeanRuntime"' in _function_body(text, name)
    manifest["export"]["engine_compat"] = {"choice": "sometimes"}
    with pytest.raises(ValueError, match="manifest export block: engine_compat must be"):
        render_build_script(manifest, "fp32")


def _function_body(script: str, name: str) -> str:
    return script.split(f"\n{name}() {{\n")[1].split("\n}\n")[0]


def test_python_script_compiles_and_has_help(scripts, tmp_path):
    root, _ = scripts
    py_compile.compile(str(root / "build_engine.py"), cfile=str(tmp_path / "b.pyc"), doraise=True)
    result = _python(root, "--help")
    assert result.returncode == 0 and "--precision" in result.stdout and "--skip-build" in result.stdout


def test_python_script_rejects_a_bad_batch_range(scripts):
    root, _ = scripts
    result = _python(root, "--min-batch", "8", "--max-batch", "2")
    assert result.returncode == 2
    assert "1 <= min <= opt <= max, got min=8, opt=4, max=2" in result.stderr


def test_python_script_names_a_missing_onnx(scripts):
    root, _ = scripts
    (root / "model.fp16.onnx").unlink()
    result = _python(root)
    # the bundle check (runtime.load's) names the listed file before the build looks for it
    assert result.returncode == 2 and "lists model.fp16.onnx, which is missing from" in result.stderr


def test_python_script_without_tensorrt_exits_3(scripts):
    root, _ = scripts
    script = root / "build_engine.py"
    result = subprocess.run([sys.executable, "-c", "import runpy, sys; sys.modules['tensorrt'] = None; "
                             f"sys.argv = [{str(script)!r}]; runpy.run_path({str(script)!r}, run_name='__main__')"],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 3 and "TensorRT Python package is not importable" in result.stderr


def test_python_script_prints_trtexec_per_version(scripts):
    root, _ = scripts
    cmd10 = _python(root, "--print-trtexec", "--trt-major", "10").stdout
    cmd11 = _python(root, "--print-trtexec", "--trt-major", "11").stdout
    assert f"--onnx={root / 'model.fp16.onnx'}" in cmd10 and "--stronglyTyped" in cmd10
    assert "--stronglyTyped" not in cmd11 and "--fp16" not in cmd11
    legacy = _python(root, "--print-trtexec", "--trt-major", "11", "--legacy")
    assert legacy.returncode == 2 and "removed in TensorRT 11" in legacy.stderr


def _run_shell(root: Path, tmp_path: Path, version: str, *args: str, **extra: str) -> subprocess.CompletedProcess:
    fake = tmp_path / "trtexec"
    fake.write_text(FAKE_TRTEXEC)
    fake.chmod(0o755)
    env = {**os.environ, "TRTEXEC": str(fake), "FAKE_TRT_VERSION": version, "FAKE_LOG": str(tmp_path / "log"),
           "PYTHON": sys.executable, **extra}
    return subprocess.run([BASH, str(root / "build_engine.sh"), *args], capture_output=True, text=True, env=env,
                          timeout=120)


@needs_bash
@pytest.mark.parametrize("version, strongly_typed_flag", [("100300", True), ("110100", False)])
def test_shell_builds_with_the_detected_version_and_records_the_engine(scripts, tmp_path, version,
                                                                       strongly_typed_flag):
    root, _ = scripts
    result = _run_shell(root, tmp_path, version, "--no-verify")
    assert result.returncode == 0, result.stderr
    build_line = (tmp_path / "log").read_text().splitlines()[-1]
    assert f"--onnx={root / 'model.fp16.onnx'}" in build_line and "--skipInference" in build_line
    assert ("--stronglyTyped" in build_line) == strongly_typed_flag
    assert "--fp16" not in build_line
    manifest = load_manifest(root)  # the engine entry's sha256 matches the file
    engine = next(a for a in manifest["artifacts"] if a["kind"] == "engine")
    assert engine["path"] == "engine.plan" and engine["precision"] == "fp16"
    assert engine["tensorrt"] == f"{int(version) // 10000}.{int(version) // 100 % 100}.0"
    report = json.loads((root / "engine.json").read_text())
    assert report["built_by"].startswith("external") and report["verification"] == {"skipped": "--no-verify"}


@needs_bash
def test_shell_legacy_needs_tensorrt_10(scripts, tmp_path):
    root, _ = scripts
    result = _run_shell(root, tmp_path, "110100", "--legacy")
    assert result.returncode == 1 and "--legacy needs TensorRT 10.x" in result.stderr
    result = _run_shell(root, tmp_path, "100300", "--legacy", "--no-verify")
    assert result.returncode == 0, result.stderr
    build_line = (tmp_path / "log").read_text().splitlines()[-1]
    assert f"--onnx={root / 'model.onnx'}" in build_line and "--fp16" in build_line  # fp32 graph + builder flag


@needs_bash
def test_shell_benchmark_uses_version_flags(scripts, tmp_path):
    root, _ = scripts
    assert _run_shell(root, tmp_path, "100300", "--benchmark", "--no-verify").returncode == 0
    bench = (tmp_path / "log").read_text().splitlines()[-1]
    assert bench.startswith(f"--loadEngine={root / 'engine.plan'}") and "--useCudaGraph" in bench
    assert f"--exportTimes={root / 'trtexec' / 'fp16'}.times.json" in bench


@needs_bash
@pytest.mark.parametrize("major, args", [(12, ("--no-verify",)), (9, ("--trt-major", "9"))])
def test_shell_refuses_unknown_tensorrt_majors_naming_the_supported(scripts, tmp_path, major, args):
    root, _ = scripts
    result = _run_shell(root, tmp_path, "120000", *args)  # trtexec's banner says 12.0.0
    assert result.returncode == 3
    assert f"TensorRT {major}.x is not supported: this kit knows TensorRT 10.x and 11.x" in result.stderr
    assert not (root / "engine.plan").exists()


@needs_bash
def test_shell_hands_precision_auto_to_the_python_kit(bundle, tmp_path):
    root, manifest = bundle
    for entry in write_device_scripts(root, manifest, "auto"):
        set_artifact(manifest, entry)
    write_manifest(root, manifest)
    assert next(a for a in manifest["artifacts"] if a["path"] == "build_engine.py")["precision"] == "auto"
    result = _run_shell(root, tmp_path, "100300")  # no tensorrt Python package here: the kit's exit 3
    assert result.returncode == 3 and "--precision auto builds with TensorRT's Python API" in result.stderr
    assert not (tmp_path / "log").exists()  # trtexec is run by build_engine.py's timing, never by the shell here
    result = _run_shell(root, tmp_path, "100300", "--legacy")
    assert result.returncode == 1 and "--legacy does not apply to precision auto" in result.stderr


@needs_bash
def test_shell_rejects_unknown_options(scripts, tmp_path):
    root, _ = scripts
    result = _run_shell(root, tmp_path, "100300", "--fast")
    assert result.returncode == 2 and "unknown option '--fast'" in result.stderr


def test_write_device_scripts_needs_the_onnx_files(bundle):
    root, manifest = bundle
    (root / "model.int8.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="model.int8.onnx is missing"):
        write_device_scripts(root, manifest, "int8")


def test_write_device_scripts_needs_a_finite_batch_range(bundle):
    root, manifest = bundle
    manifest["input"]["batch_range"] = [1, None]
    with pytest.raises(ValueError, match="finite max"):
        write_device_scripts(root, manifest, "fp32")


def test_values_that_bash_would_expand_are_refused(bundle):
    _, manifest = bundle
    manifest["artifacts"][0]["path"] = "$(reboot).onnx"
    with pytest.raises(ValueError, match="shell metacharacters"):
        render_build_script(manifest, "fp32")


def test_python_script_builds_with_the_tensorrt_api(scripts, fake_trt, monkeypatch, capsys):
    from ibit_deploy.devicekit import cli as script

    root, _ = scripts
    monkeypatch.setitem(sys.modules, "tensorrt", fake_trt)
    assert script.main(["--bundle", str(root), "--no-verify"]) == 0
    assert (root / "engine.plan").read_bytes() == b"SERIALIZED-ENGINE"
    assert fake_trt.calls["parsed"] == str(root / "model.fp16.onnx")  # the precision from the script's entry
    assert fake_trt.calls["profile"][2] == (4, 3, 32, 32)  # opt batch from the manifest
    report = json.loads((root / "engine.json").read_text())
    assert report["strongly_typed"] and report["tensorrt_version"] == "10.3.0.30"
    engine = next(a for a in load_manifest(root)["artifacts"] if a["kind"] == "engine")
    assert engine["tensorrt"] == "10.3.0.30" and engine["built_from"] == "model.fp16.onnx"
    assert engine["acceptance"] == {"metric": "agreement", "min": 0.98, "against": "ONNX Runtime CPU on the same ONNX"}
    assert engine["gate"] == {"passed": True, "checked": False}
    assert "check: skipped: --no-verify" in capsys.readouterr().out


def test_verification_batches_follow_the_profile(bundle):
    from ibit_deploy.devicekit.profile import EngineProfile
    from ibit_deploy.devicekit.verify import verification_batches

    root, manifest = bundle
    batches, source = verification_batches(root, manifest, EngineProfile("images", (3, 32, 32), 1, 4, 16), samples=64)
    assert [len(b) for b in batches] == [1, 4, 16] and "random" in source
    np.savez(root / "calib.npz", images=np.zeros((37, 3, 32, 32), np.float32))
    batches, source = verification_batches(root, manifest, EngineProfile("images", (3, 32, 32), 2, 4, 16),
                                           samples=35)
    assert [len(b) for b in batches] == [16, 16, 3] and source == "35 images of calib.npz"


@pytest.fixture
def attn_scripts(bundle):
    """An fp32 bundle with an ONNX Attention-op twin of model.onnx (a placeholder file; the fake trtexec reads none)."""
    from ibit_deploy.devicekit.manifest import artifact_entry

    root, manifest = bundle
    (root / "model.attn.onnx").write_bytes(b"placeholder attention-op onnx")
    source = next(a for a in manifest["artifacts"] if a["path"] == "model.onnx")
    set_artifact(manifest, artifact_entry(root, "model.attn.onnx", "onnx-attention-op", "fp32", opset=23,
                                          twin_of={"path": "model.onnx", "sha256": source["sha256"]},
                                          gate={"passed": True, "reason": "same logits"}))
    for entry in write_device_scripts(root, manifest, "fp32"):
        set_artifact(manifest, entry)
    write_manifest(root, manifest)
    return root, manifest


def _built(root: Path, tmp_path: Path) -> tuple[list[str], dict]:
    """The --onnx file of every trtexec build the fake saw, and the engine's manifest entry."""
    onnx = [arg.split("=", 1)[1].rsplit("/", 1)[-1] for line in (tmp_path / "log").read_text().splitlines()
            for arg in line.split() if arg.startswith("--onnx=")]
    return onnx, next(a for a in load_manifest(root)["artifacts"] if a["kind"] == "engine")


@needs_bash
@pytest.mark.parametrize("version, form, source", [
    ("100300", "matmul", "model.onnx"),  # JetPack 6
    ("101300", "matmul", "model.onnx"),  # JetPack 7.0 / 7.1: no Attention op in the parser
    ("101400", "attention-op", "model.attn.onnx"),
    ("110400", "attention-op", "model.attn.onnx"),
])
def test_shell_builds_the_attention_form_the_version_parses(attn_scripts, tmp_path, version, form, source):
    root, _ = attn_scripts
    result = _run_shell(root, tmp_path, version, "--no-verify")
    assert result.returncode == 0, result.stderr
    onnx, engine = _built(root, tmp_path)
    assert onnx == [source]  # one build, from the chosen form
    assert engine["built_from"] == source and engine["attention_form"] == form
    assert engine["verified_against"] == "model.onnx"  # the MatMul form: any onnxruntime runs it
    assert ("does not take the Attention op (>= 10.14)" in engine["attention_note"]) == (form == "matmul")
    assert ("does not take the Attention op (>= 10.14)" in result.stderr) == (form == "matmul")


@needs_bash
def test_shell_falls_back_to_the_matmul_form_when_trtexec_fails_on_the_attention_op(attn_scripts, tmp_path):
    root, _ = attn_scripts
    result = _run_shell(root, tmp_path, "101600", "--no-verify", FAKE_REJECT="model.attn.onnx")
    assert result.returncode == 0, result.stderr
    onnx, engine = _built(root, tmp_path)
    assert onnx == ["model.attn.onnx", "model.onnx"]
    assert engine["built_from"] == "model.onnx" and engine["attention_form"] == "matmul"
    assert "could not build from model.attn.onnx" in engine["attention_note"]
    assert "trtexec failed on model.attn.onnx" in engine["attention_op_error"]
    assert "unsupported mask layout" in engine["attention_op_error"]  # trtexec's own error line
    assert "note: trtexec could not build from model.attn.onnx" in result.stderr
    # the fallback's own failure is not hidden: both forms rejected -> the script fails, nothing recorded
    (root / "engine.plan").unlink()
    result = _run_shell(root, tmp_path, "101600", "--no-verify", FAKE_REJECT=".onnx")
    assert result.returncode != 0 and not (root / "engine.plan").exists()


@needs_bash
def test_shell_without_a_known_version_builds_the_matmul_form(attn_scripts, tmp_path):
    root, _ = attn_scripts
    result = _run_shell(root, tmp_path, "101600", "--trt-major", "10", "--no-verify")
    assert result.returncode == 0, result.stderr
    onnx, engine = _built(root, tmp_path)
    assert onnx == ["model.onnx"] and engine["attention_form"] == "matmul"
    assert "version was not known" in engine["attention_note"]


@needs_bash
def test_shell_takes_the_threshold_from_the_version_matrix(attn_scripts, tmp_path, monkeypatch):
    import dataclasses

    from ibit_deploy.devicekit import versions

    root, manifest = attn_scripts
    moved = dataclasses.replace(versions.feature("onnx_attention_op"), since=(10, 16))  # one place decides
    monkeypatch.setitem(versions._FEATURES, "onnx_attention_op", moved)
    text = render_build_script(manifest, "fp32")
    assert "(( major > 10 || (major == 10 && minor >= 16) ))" in text and "(>= 10.16)" in text
    for entry in write_device_scripts(root, manifest, "fp32"):  # the script rendered under the moved row
        set_artifact(manifest, entry)
    write_manifest(root, manifest)
    result = _run_shell(root, tmp_path, "101400", "--no-verify")
    assert result.returncode == 0, result.stderr
    assert _built(root, tmp_path)[0] == ["model.onnx"]


def test_a_failed_twin_is_not_rendered_into_the_script(attn_scripts):
    _, manifest = attn_scripts
    assert 'ATTN_ONNX="model.attn.onnx"' in render_build_script(manifest, "fp32")
    assert 'ATTN_ONNX=""' in render_build_script(manifest, "int8")  # no Attention-op form of the int8 model
    for art in manifest["artifacts"]:
        if art["path"] == "model.attn.onnx":
            art["gate"] = {"passed": False, "reason": "differs"}
    assert 'ATTN_ONNX=""' in render_build_script(manifest, "fp32")


def test_built_from_is_checked(attn_scripts):
    root, _ = attn_scripts
    (root / "engine.plan").write_bytes(b"ENGINE")
    for args, message in [(("--built-from", "model.attn.onnx"), "needs --skip-build"),
                          (("--skip-build", "--built-from", "nothere.onnx"), "expected an ONNX file of the bundle"),
                          (("--skip-build", "--attention-op-error", "x"), "goes with --built-from"),
                          (("--skip-build", "--built-from", "model.onnx", "--tensorrt-version", "ten"),
                           "cannot parse TensorRT version")]:
        result = _python(root, *args, "--no-verify")
        assert result.returncode == 2 and message in result.stderr, (args, result.stderr)
