"""build_engine.py, the bundle's launcher: every kit file's sha256 is checked BEFORE any of them is imported, and the
kit then runs from exactly the bytes that were checked."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from ibit_deploy.devicekit import launcher, layout
from ibit_deploy.devicekit.manifest import set_artifact, write_manifest
from ibit_deploy.export.device_bundle import write_device_scripts


@pytest.fixture
def kit_bundle(bundle):
    root, manifest = bundle
    for entry in write_device_scripts(root, manifest, "fp32"):
        set_artifact(manifest, entry)
    write_manifest(root, manifest)
    return root


def _launch(root: Path, *args: str) -> subprocess.CompletedProcess:
    # -I: no user site, no PYTHONPATH, no current directory on sys.path (what a device has: no ibit_deploy)
    return subprocess.run([sys.executable, "-I", str(root / layout.LAUNCHER), *args], capture_output=True, text=True,
                          timeout=60, cwd=root.parent)


def test_a_checked_kit_runs(kit_bundle):
    result = _launch(kit_bundle, "--print-trtexec", "--trt-major", "10")
    assert result.returncode == 0, result.stderr
    assert "--optShapes=images:4x3x32x32" in result.stdout
    assert not (kit_bundle / layout.KIT_DIR / "__pycache__").exists()  # nothing cached that a later run could load


def test_an_altered_kit_file_is_refused_before_any_kit_code_runs(kit_bundle, tmp_path):
    marker = tmp_path / "ran"
    victim = kit_bundle / layout.KIT_DIR / "fileio.py"  # imported by every kit module that writes
    victim.write_text(victim.read_text() + f"\nopen({str(marker)!r}, 'w').write('kit code ran')\n")
    result = _launch(kit_bundle, "--print-trtexec", "--trt-major", "10")
    assert result.returncode == 2
    assert "devicekit/fileio.py was altered after export" in result.stderr and "Traceback" not in result.stderr
    assert not marker.exists()


def test_a_kit_file_the_manifest_does_not_list_is_refused(kit_bundle, tmp_path):
    marker = tmp_path / "ran"
    (kit_bundle / layout.KIT_DIR / "sitecustomize.py").write_text(f"open({str(marker)!r}, 'w')\n")
    result = _launch(kit_bundle, "--help")
    assert result.returncode == 2 and "devicekit/sitecustomize.py" in result.stderr and "not listed" in result.stderr
    assert not marker.exists()


def test_a_missing_kit_file_is_refused(kit_bundle):
    (kit_bundle / layout.KIT_DIR / "build.py").unlink()
    result = _launch(kit_bundle, "--help")
    assert result.returncode == 2 and "devicekit/build.py cannot be read" in result.stderr


@pytest.mark.parametrize("text", ["[" * 100_000, '{"artifacts": "no"}', "\xff\xfe", "[]",
                                  "[" * 100_000 + "]" * 100_000, '{"a":' * 100_000 + "1" + "}" * 100_000,
                                  '{"artifacts": [' + "9" * 5000 + "]}"])
def test_a_hostile_manifest_is_refused_in_one_line(kit_bundle, text):
    (kit_bundle / layout.MANIFEST_FILE).write_bytes(text.encode("latin-1"))
    result = _launch(kit_bundle, "--help")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert result.stderr.startswith("build_engine.py: ") and str(kit_bundle / layout.MANIFEST_FILE) in result.stderr


def test_deep_nesting_the_launcher_reads_is_refused_by_the_kit_in_one_line(kit_bundle):
    """Nesting the standard library parses (below its recursion limit) but deeper than the kit's bound: the launcher
    runs the checked kit, whose manifest reader refuses it (exit 2, one line naming the file)."""
    import json

    manifest = json.loads((kit_bundle / layout.MANIFEST_FILE).read_text())
    manifest["notes"] = json.loads("[" * 200 + "]" * 200)
    (kit_bundle / layout.MANIFEST_FILE).write_text(json.dumps(manifest))
    result = _launch(kit_bundle, "--print-trtexec", "--trt-major", "10")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "JSON nested deeper than 64 levels" in result.stderr and str(kit_bundle / layout.MANIFEST_FILE) in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1  # a bad bundle is not a usage error: no usage text


def test_a_manifest_path_outside_the_kit_folder_is_refused(kit_bundle):
    manifest = json.loads((kit_bundle / layout.MANIFEST_FILE).read_text())
    manifest["artifacts"].append({"path": "devicekit/../model.onnx", "sha256": "0" * 64, "kind": layout.KIT_KIND})
    (kit_bundle / layout.MANIFEST_FILE).write_text(json.dumps(manifest))
    result = _launch(kit_bundle, "--help")
    assert result.returncode == 2 and "is not devicekit/<module>.py" in result.stderr


def test_the_launcher_names_what_the_layout_names():
    """The launcher is standard library only (it runs before anything is checked), so it spells its names out; they
    must be the layout's."""
    from ibit_deploy.devicekit.exit_codes import BAD_INPUT

    assert (launcher.KIT_PACKAGE, launcher.KIT_KIND, launcher.MANIFEST_FILE, launcher.BAD_BUNDLE) == \
        (layout.KIT_DIR, layout.KIT_KIND, layout.MANIFEST_FILE, BAD_INPUT)
    sources = layout.kit_sources()
    assert sources[layout.LAUNCHER].name == "launcher.py"
    assert {f"{layout.KIT_DIR}/__init__.py", f"{layout.KIT_DIR}/cli.py"} <= set(sources)


def test_the_kit_takes_the_bundle_first_like_every_command(kit_bundle, tmp_path, capsys):
    from ibit_deploy.devicekit import cli

    assert cli.main([str(kit_bundle), "--print-trtexec", "--trt-major", "11"]) == 0
    assert "--optShapes=images:4x3x32x32" in capsys.readouterr().out
    assert cli.main(["--bundle", str(kit_bundle), "--print-trtexec", "--trt-major", "11"]) == 0  # the old spelling
    with pytest.raises(SystemExit) as exit_info:
        cli.main([str(kit_bundle), "--bundle", str(tmp_path), "--print-trtexec", "--trt-major", "11"])
    assert exit_info.value.code == 2 and "two bundles given" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["--print-trtexec", "--trt-major", "11"])  # from the package there is no default bundle
    assert exit_info.value.code == 2
