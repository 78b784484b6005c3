"""Format version 2, and version-1 bundles (a real one kept as a fixture) still load, migrated to v2 names/units."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from ibit_deploy.data.eval_split import EvalSet
from ibit_deploy.devicekit.bundle import open_bundle
from ibit_deploy.devicekit.manifest import FORMAT_VERSION, load_manifest, update_manifest

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "bundle_v1"


def test_the_fixture_really_is_version_1():
    raw = json.loads((FIXTURE / "manifest.json").read_text())
    assert raw["format_version"] == 1 and FORMAT_VERSION == 2
    fp16 = next(a for a in raw["artifacts"] if a["path"] == "model.fp16.onnx")
    assert fp16["gate"]["agreement"] == 100.0 and "drop" in fp16["gate"]


def test_version_1_is_migrated_on_load():
    manifest = load_manifest(FIXTURE)  # sha256 of every file checked too
    assert manifest["format_version"] == 2 and manifest["migrated_from"] == 1
    arts = {a["path"]: a for a in manifest["artifacts"]}
    gate = arts["model.fp16.onnx"]["gate"]
    assert gate["agreement"] == 1.0 and gate["top1_drop"] == 0.0 and "drop" not in gate
    assert gate["max_drop"] == 1.0 and 0 < gate["top1"] < 1 and gate["fp16_probe"]["agreement"] == 1.0
    assert arts["model.onnx"]["parity"]["max_abs_diff"] < 1e-4 and "max_abs_diff_vs_torch" not in arts["model.onnx"]["parity"]
    engine = arts["engine.plan"]
    assert engine["verification"]["agreement"] == 0.984375 and engine["verification"]["count"] == 64
    assert engine["acceptance"] == {"metric": "agreement", "min": 0.98, "against": "ONNX Runtime CPU on the same ONNX"}
    accuracy = manifest["results"][0]["accuracy"]
    assert accuracy["agreement"] == 0.999 and accuracy["max_abs_diff"] == 0.0002


def test_a_version_1_bundle_runs(tmp_path):
    from ibit_deploy.runtime import Predictor

    bundle = open_bundle(FIXTURE)
    assert bundle.input.chw == (1, 28, 28) and bundle.input.profile().opt_batch == 4
    assert EvalSet.from_manifest(bundle.manifest).spec == "mnist5k" and bundle.find("onnx", "fp16").path == "model.fp16.onnx"
    with Predictor(FIXTURE, backend="ort-cpu", precision="fp16", threads=1) as predictor:
        result = predictor.predict([np.zeros((28, 28), np.uint8)] * 11)  # 11 images: chunks of 8, then 3
    assert result.logits.shape == (11, 10) and np.isfinite(result.logits).all()


def test_writing_a_version_1_bundle_upgrades_it(tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(FIXTURE, bundle)
    update_manifest(bundle, results=[])
    assert json.loads((bundle / "manifest.json").read_text())["format_version"] == 2


def test_unknown_versions_are_refused(tmp_path):
    bundle = tmp_path / "b"
    shutil.copytree(FIXTURE, bundle)
    raw = json.loads((bundle / "manifest.json").read_text())
    raw["format_version"] = 3
    (bundle / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ValueError, match="expected format_version 1 or 2, found 3"):
        load_manifest(bundle)
