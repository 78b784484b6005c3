"""The on-device kit, run as the bundle's own copy (build_engine.py), applies runtime.load's bundle checks before
it does anything: an altered artifact or a manifest path leaving the bundle stops it with exit 2, before TensorRT
is imported and before ``--print-trtexec`` prints a path."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ibit_deploy.devicekit.manifest import set_artifact, write_manifest
from ibit_deploy.export.device_bundle import write_device_scripts

# A stand-in `tensorrt` that leaves a mark when imported: the kit must refuse a bad bundle before importing it.
FAKE_TENSORRT = "import os\nopen(os.environ['TRT_IMPORTED'], 'w').close()\n__version__ = '10.3.0'\n"


@pytest.fixture
def kit(bundle, tmp_path):
    root, manifest = bundle
    for entry in write_device_scripts(root, manifest, "fp16"):
        set_artifact(manifest, entry)
    write_manifest(root, manifest)
    fake = tmp_path / "fake_trt"
    fake.mkdir()
    (fake / "tensorrt.py").write_text(FAKE_TENSORRT)
    return root, fake


def _run_kit(root: Path, fake: Path, *args: str) -> subprocess.CompletedProcess:
    """The bundle's copy of the kit, with ibit_deploy unimportable and the marking fake TensorRT on the path."""
    marker = fake / "imported"
    code = ("import runpy, sys; sys.modules['ibit_deploy'] = None; "
            f"sys.argv = ['build_engine.py', *{list(args)!r}]; "
            f"runpy.run_path({str(root / 'build_engine.py')!r}, run_name='__main__')")
    env = {**os.environ, "PYTHONPATH": str(fake), "TRT_IMPORTED": str(marker), "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env,
                          cwd=root.parent)


def test_one_altered_byte_in_the_fp16_onnx_is_refused(kit):
    root, fake = kit
    onnx = root / "model.fp16.onnx"
    data = bytearray(onnx.read_bytes())
    data[3] ^= 0x01
    onnx.write_bytes(bytes(data))
    for args in (["--print-trtexec", "--trt-major", "10"], []):
        result = _run_kit(root, fake, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert f"{onnx} was altered after export" in result.stderr
        assert "trtexec" not in result.stdout and not result.stdout.strip()
        assert not (fake / "imported").exists(), "TensorRT was imported for a tampered bundle"


def test_a_manifest_path_leaving_the_bundle_is_refused(kit):
    root, fake = kit
    path = root / "manifest.json"
    manifest = json.loads(path.read_text())
    for art in manifest["artifacts"]:
        if art["path"] == "model.fp16.onnx":
            art["path"] = "../../../../etc/passwd"
    path.write_text(json.dumps(manifest))
    for args in (["--print-trtexec", "--trt-major", "10"], []):
        result = _run_kit(root, fake, *args)
        assert result.returncode == 2, (args, result.stdout, result.stderr)
        assert "artifact path '../../../../etc/passwd' points outside the bundle" in result.stderr
        assert "passwd" not in result.stdout and not result.stdout.strip()
        assert not (fake / "imported").exists()


def test_an_intact_bundle_still_prints_its_trtexec_command(kit):
    root, fake = kit
    result = _run_kit(root, fake, "--print-trtexec", "--trt-major", "10")
    assert result.returncode == 0, result.stderr
    assert f"--onnx={root / 'model.fp16.onnx'}" in result.stdout
