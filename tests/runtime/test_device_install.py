"""A device install: no torch, timm or torchvision. The project's wheel with its ``device`` extra, in a fresh virtual
environment, runs ``runtime.load``, a ``Predictor`` and ``ibit-bench`` on a bundle made by the normal toolchain, and
their outputs match the reference logits the export recorded in the bundle.

pip installs from PyPI (numpy and onnxruntime download once, then come from pip's cache; the wheel build fetches
setuptools the same way); without PyPI the test skips with pip's reason.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import ibit_deploy
from ibit_deploy.bench.harness import RECORDED_REFERENCE
from ibit_deploy.devicekit.manifest import load_manifest
from ibit_deploy.devicekit.reference import read_reference
from ibit_deploy.export.pipeline import PARITY_TOLERANCE

ROOT = Path(ibit_deploy.__file__).resolve().parent.parent
TRAINING_ONLY = ("torch", "timm", "torchvision", "safetensors", "mlxtend", "matplotlib", "onnx", "tqdm")

# Run inside the device environment: runtime.load and a Predictor on the bundle's check images.
DEVICE_SCRIPT = r"""
import importlib.util, json, sys
import numpy as np
import ibit_deploy
from ibit_deploy.devicekit.manifest import load_manifest
from ibit_deploy.devicekit.reference import read_reference
from ibit_deploy.runtime import Predictor, load
import ibit_deploy.runtime.tensorrt_runner, ibit_deploy.bench.trtexec  # the TensorRT side imports without torch too

bundle = sys.argv[1]
absent = [m for m in sys.argv[2].split(",") if importlib.util.find_spec(m) is None]
manifest = load_manifest(bundle)
ref = read_reference(bundle, manifest)
with load(bundle) as runner:
    loaded = runner.infer_all(ref.images)
    backend = runner.describe()
spec = manifest["input"]
std = np.asarray(spec["std"], np.float32).reshape(1, -1, 1, 1)
mean = np.asarray(spec["mean"], np.float32).reshape(1, -1, 1, 1)
pixels = np.rint((ref.images * std + mean) * 255).clip(0, 255).astype(np.uint8).transpose(0, 2, 3, 1)
with Predictor(bundle) as predictor:
    predicted = predictor.predict(pixels)
print(json.dumps({
    "absent": absent, "backend": backend,
    "load_max_abs_diff": float(np.abs(loaded - ref.logits).max()),
    "predictor_max_abs_diff": float(np.abs(predicted.logits - ref.logits).max()),
    "predictor_agreement": float((predicted.indices == ref.logits.argmax(1)).mean()),
    "labels": predicted.labels[:3], "classes": list(manifest["classes"]),
}))
"""


def _run(argv: list[str], env: dict[str, str], timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=timeout)


def _pip(python: Path, env: dict[str, str], *args: str) -> None:
    done = _run([str(python), "-m", "pip", "--disable-pip-version-check", *args], env)
    if done.returncode != 0:
        out = done.stdout + done.stderr
        if any(s in out for s in ("Could not find a version", "No matching distribution", "Failed to establish",
                                  "Network is unreachable", "Temporary failure in name resolution")):
            pytest.skip(f"pip cannot reach PyPI here: {out.strip().splitlines()[-1]}")
        raise AssertionError(f"pip {' '.join(args)} failed:\n{out}")


@pytest.fixture(scope="module")
def device_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """(the venv's bin folder, env) of a fresh venv holding this project's wheel with the ``device`` extra."""
    root = tmp_path_factory.mktemp("device")
    source = root / "src"  # a copy, so the wheel build leaves nothing in the checkout
    shutil.copytree(ROOT / "ibit_deploy", source / "ibit_deploy", ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(ROOT / name, source / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "PIP_"))}
    subprocess.run([sys.executable, "-m", "venv", str(root / "venv")], check=True, env=env, timeout=300)
    python = root / "venv" / "bin" / "python"
    _pip(python, env, "wheel", "--quiet", "--no-deps", str(source), "-w", str(root / "dist"))
    wheel = next((root / "dist").glob("ibit_deploy-*.whl"))
    _pip(python, env, "install", "--quiet", f"{wheel}[device]")
    return python.parent, env


@pytest.mark.slow
def test_runtime_predictor_and_bench_run_without_torch(device_env, trained_bundle, tmp_path):
    bin_dir, env = device_env
    bundle = tmp_path / "bundle"
    shutil.copytree(trained_bundle[0], bundle)
    recorded = read_reference(bundle, load_manifest(bundle))
    assert recorded is not None and recorded.real

    done = _run([str(bin_dir / "python"), "-c", DEVICE_SCRIPT, str(bundle), ",".join(TRAINING_ONLY)], env)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["absent"] == list(TRAINING_ONLY)  # nothing of the training side is installed there
    assert result["backend"]["backend"] == "ort-cpu"
    assert result["load_max_abs_diff"] <= PARITY_TOLERANCE
    assert result["predictor_max_abs_diff"] <= PARITY_TOLERANCE
    assert result["predictor_agreement"] == 1.0
    assert set(result["labels"]) <= set(result["classes"])

    out = tmp_path / "bench"
    done = _run([str(bin_dir / "ibit-bench"), str(bundle), "--backends", "torch-ref,ort-cpu", "--batches", "1",
                 "--iters", "3", "--warmup", "1", "--quiet", "--out", str(out)], env)
    assert done.returncode == 0, done.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["reference"]["name"] == RECORDED_REFERENCE and not report["reference"]["fallback"]
    assert report["data"]["count"] == len(recorded.labels)
    rows = {r["name"]: r for r in report["runs"]}
    assert rows["torch-ref"]["status"] == "skipped" and "PyTorch is not importable" in rows["torch-ref"]["reason"]
    ort = rows["ort-cpu:fp32"]
    assert ort["status"] == "ok"
    assert ort["accuracy"]["agreement"] == 1.0 and ort["accuracy"]["max_abs_diff"] <= PARITY_TOLERANCE
    expected_top1 = float((recorded.logits.argmax(1) == recorded.labels).mean())
    assert abs(ort["accuracy"]["top1"] - expected_top1) <= 1 / len(recorded.labels)
