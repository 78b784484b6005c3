"""``export_checkpoint(..., precision=int8|fp16)`` end to end: files, manifest entries with sha256, gate marking."""

from __future__ import annotations

import pytest

from ibit_deploy.calibration import load_calibration
from ibit_deploy.devicekit.fileio import sha256_file
from ibit_deploy.devicekit.manifest import find_artifact, load_manifest
from ibit_deploy.errors import GateFailed
from ibit_deploy.export.pipeline import ExportFailed, ExportOptions, export_checkpoint
from ibit_deploy.quantization import Int8Config, quantize_artifact


def test_int8_export_writes_model_and_calibration_with_hashes(int8_export):
    bundle, manifest = int8_export
    assert (bundle / "model.int8.onnx").is_file() and (bundle / "calib.npz").is_file()
    load_manifest(bundle, verify=True)  # every listed file matches its sha256
    calib = find_artifact(manifest, kind="calibration")
    int8 = find_artifact(manifest, kind="onnx", precision="int8")
    assert calib["sha256"] == sha256_file(bundle / "calib.npz") and calib["count"] == 256
    assert int8["sha256"] == sha256_file(bundle / "model.int8.onnx")
    assert Int8Config.from_dict(int8["quantization"]) == Int8Config()
    gate = int8["gate"]
    assert gate["passed"] and gate["count"] == 500 and gate["top1_drop"] <= 0.01 and "val images" in gate["images"]
    assert int8["float_nodes"] and int8["calibration"] == "calib.npz"
    images, meta = load_calibration(bundle / "calib.npz", (1, 28, 28))
    assert meta["split"] == "train" and meta["images_sha256"] == calib["images_sha256"] and len(images) == 256


def test_failed_gate_is_marked_and_fails_the_export(trained_checkpoint, tmp_path):
    options = ExportOptions(precision="fp16", quantize={"max_drop": -1.0, "eval_count": 100, "threads": 1,
                                                        "fp16_probe": 2})
    with pytest.raises(ExportFailed, match="accuracy gate failed") as failed:
        export_checkpoint(trained_checkpoint, tmp_path / "b", options)
    manifest = load_manifest(tmp_path / "b")
    # a GateFailed carries the manifest it wrote (quickstart benchmarks the marked bundle from it)
    assert isinstance(failed.value, GateFailed) and failed.value.manifest["artifacts"] == manifest["artifacts"]
    fp16 = find_artifact(manifest, precision="fp16")
    assert fp16["gate"]["passed"] is False and "more than the allowed -1" in fp16["gate"]["reason"]
    assert fp16["gate"]["fp16_probe"]["passed"]  # the model itself is fine: only the budget was impossible


def test_quantize_artifact_refuses_bad_input(trained_bundle, tmp_path):
    bundle, manifest = trained_bundle
    with pytest.raises(ValueError, match="precision"):
        quantize_artifact(bundle, manifest, "int4", {})
    with pytest.raises(ValueError, match="unknown quantization option"):
        quantize_artifact(bundle, manifest, "int8", {"calib_cnt": 3})
    with pytest.raises(FileNotFoundError, match="model.onnx"):
        quantize_artifact(tmp_path, manifest, "int8", {})
    no_data = {**manifest, "data": {}}
    with pytest.raises(ValueError, match="needs real images"):
        quantize_artifact(bundle, no_data, "int8", {})


def test_auto_option_records_its_choice(trained_bundle, tmp_path):
    import shutil

    bundle, manifest = trained_bundle
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    entries = quantize_artifact(copy, manifest, "int8", {"auto": True, "max_drop": -1.0, "calib_count": 60,
                                                         "eval_count": 200, "max_float": 1, "threads": 1})
    int8 = entries[-1]
    assert int8["gate"]["passed"] is False  # recorded, not raised: the pipeline marks it and fails the export
    auto = int8["auto"]
    assert auto["passed"] is False and len(auto["float_nodes"]) == 1 and auto["float_layers"]
    assert set(auto["float_nodes"]) <= set(int8["float_nodes"])
    assert auto["sensitivity"] and auto["steps"][0]["added"] is None
    assert int8["float_reasons"][auto["float_nodes"][0]] == "auto: sensitive layer"
