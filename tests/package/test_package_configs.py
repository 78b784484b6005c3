"""What each package contains and how bad input is refused: schemas, keys, files with sha256, labels, precisions."""

from __future__ import annotations

import configparser
import json
from pathlib import Path

import numpy as np
import pytest

from ibit_deploy.devicekit.fileio import sha256_file
from ibit_deploy.devicekit.manifest import artifact_entry, load_manifest, set_artifact, write_manifest
from ibit_deploy.package import PACKAGE_MANIFEST, PackageCheckFailed, PackageError, PackageOptions, package_bundle
from ibit_deploy.package.schema import NVINFER_KEYS, check_nvinfer_config, check_triton_config, load_model_config_pb2


def _files_match_manifest(out: Path) -> dict:
    manifest = json.loads((out / PACKAGE_MANIFEST).read_text())
    for entry in manifest["files"]:
        assert sha256_file(out / entry["path"]) == entry["sha256"], entry["path"]
    return manifest


def test_deepstream_config_is_nvinfer_ini_with_documented_keys(trained_bundle, tmp_path):
    out = tmp_path / "ds"
    manifest = package_bundle(trained_bundle[0], "deepstream", out, PackageOptions(batch_size=4, precision="fp32"))
    _files_match_manifest(out)
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str
    parser.read(out / "config_infer_primary_classifier.txt")
    props = parser["property"]
    assert set(props) <= NVINFER_KEYS
    assert props["network-type"] == "1" and props["network-mode"] == "0" and props["batch-size"] == "4"
    assert props["infer-dims"] == "1;28;28" and props["model-color-format"] == "2"
    assert props["output-blob-names"] == "probabilities"
    assert (out / props["onnx-file"]).is_file() and (out / props["labelfile-path"]).is_file()
    assert props["model-engine-file"] == "model.onnx_b4_gpu0_fp32.engine"
    assert (out / "labels.txt").read_text() == ";".join(str(i) for i in range(10)) + "\n"  # one line per output layer
    assert manifest["checks"]["nvinfer_config"]["passed"]
    assert "nvinfer config-file-path=config_infer_primary_classifier.txt" in (out / "run_pipeline.sh").read_text()


def test_nvinfer_check_rejects_unknown_keys_and_missing_files(tmp_path):
    config = tmp_path / "c.txt"
    config.write_text("[property]\nonnx-file=model.onnx\ninfer-dims=1;28;28\nnet-scale=0.5\n")
    with pytest.raises(PackageCheckFailed, match=r"unknown key 'net-scale'.*onnx-file=model.onnx does not exist"):
        check_nvinfer_config(config, channels=1)
    config.write_text("[property]\ninfer-dims=3;28;28\n")
    with pytest.raises(PackageCheckFailed, match="infer-dims"):
        check_nvinfer_config(config, channels=1)


def test_triton_onnx_repository_parses_against_model_config_proto(trained_bundle, tmp_path):
    pytest.importorskip("tritonclient")
    out = tmp_path / "repo"
    manifest = package_bundle(trained_bundle[0], "triton", out, PackageOptions(precision="fp32"))
    _files_match_manifest(out)
    name = manifest["triton"]["model_name"]
    assert manifest["triton"]["platform"] == "onnxruntime_onnx" and manifest["notes"]  # fell back, and says so
    from google.protobuf import text_format

    config = text_format.Parse((out / name / "config.pbtxt").read_text(), load_model_config_pb2().ModelConfig())
    lo, hi = load_manifest(trained_bundle[0])["input"]["batch_range"]
    assert config.max_batch_size == hi and list(config.input[0].dims) == [1, 28, 28]
    assert list(config.output[0].dims) == [10] and config.output[0].label_filename == "labels.txt"
    assert config.input[0].data_type == config.output[0].data_type == 11  # TYPE_FP32
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 64]
    accel = config.optimization.execution_accelerators.gpu_execution_accelerator[0]
    assert accel.name == "tensorrt" and accel.parameters["precision_mode"] == "FP32"
    bundle_onnx = trained_bundle[0] / "model.onnx"
    assert sha256_file(out / name / "1" / "model.onnx") == sha256_file(bundle_onnx)
    assert (out / name / "labels.txt").read_text().splitlines() == [str(i) for i in range(10)]


def _with_engine(bundle: Path, batch_range: list[int], opt: int) -> bytes:
    """Add an engine artifact to a bundle copy (bytes are opaque to packaging: Triton gets the file as it is)."""
    blob = b"serialized-engine-" + bytes(np.arange(64, dtype=np.uint8))
    (bundle / "engine.plan").write_bytes(blob)
    manifest = load_manifest(bundle)
    set_artifact(manifest, artifact_entry(bundle, "engine.plan", "engine", "fp16", batch_range=batch_range,
                                          opt_batch=opt, built_from="model.onnx"))  # as devicekit.verify.engine_entry records
    write_manifest(bundle, manifest)
    return blob


def test_triton_plan_from_the_engine_profile(bundle_copy, tmp_path):
    pytest.importorskip("tritonclient")
    blob = _with_engine(bundle_copy, [1, 16], 4)
    out = tmp_path / "repo"
    manifest = package_bundle(bundle_copy, "triton", out, PackageOptions(precision="fp16", name="digits"))
    text = (out / "digits" / "config.pbtxt").read_text()
    assert 'platform: "tensorrt_plan"' in text and "max_batch_size: 16" in text
    assert "preferred_batch_size: [ 4, 16 ]" in text and "execution_accelerators" not in text
    assert (out / "digits" / "1" / "model.plan").read_bytes() == blob
    assert manifest["checks"]["triton_config"]["passed"]


def test_triton_bad_inputs(bundle_copy, tmp_path):
    with pytest.raises(PackageError, match=r"no fp32 TensorRT engine.*--triton-platform onnxruntime_onnx"):
        package_bundle(bundle_copy, "triton", tmp_path / "a", PackageOptions(triton_platform="tensorrt_plan"))
    _with_engine(bundle_copy, [2, 16], 4)
    with pytest.raises(PackageError, match="batch profile starts at 2.*--min-batch 1"):
        package_bundle(bundle_copy, "triton", tmp_path / "b", PackageOptions(precision="fp16"))
    with pytest.raises(PackageError, match="model name"):
        package_bundle(bundle_copy, "triton", tmp_path / "c", PackageOptions(name="../x"))
    assert not any(p.name.startswith(".") and p.is_dir() for p in tmp_path.iterdir())  # no staging left behind


def test_triton_schema_check_catches_bad_configs(tmp_path):
    pytest.importorskip("tritonclient")
    model = tmp_path / "m"
    (model / "1").mkdir(parents=True)
    (model / "1" / "model.onnx").write_bytes(b"x")
    config = model / "config.pbtxt"
    config.write_text('name: "m"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 4\nbatching: true\n')
    with pytest.raises(PackageCheckFailed, match="not a valid Triton model config"):
        check_triton_config(config)
    config.write_text('name: "m"\nplatform: "onnxruntime_onnx"\nmax_batch_size: 4\n'
                      'output [{ name: "y" data_type: TYPE_FP32 dims: [10] label_filename: "labels.txt" }]\n'
                      'dynamic_batching { preferred_batch_size: [8] }\n')
    with pytest.raises(PackageCheckFailed, match=r"labels.txt is missing.*preferred_batch_size \[8\]"):
        check_triton_config(config)


def _rename_class(bundle: Path, index: int, name: str) -> None:
    manifest = load_manifest(bundle)
    manifest["classes"][index] = name
    write_manifest(bundle, manifest)


@pytest.mark.parametrize(("target", "label", "match"), [
    ("deepstream", "three;3", "contains ';'"),
    ("triton", "three\nthree", "contains '\\\\n'"),
    ("jetson-inference", "  ", "is empty"),
])
def test_labels_with_the_targets_separator_are_refused(bundle_copy, tmp_path, target, label, match):
    _rename_class(bundle_copy, 3, label)
    with pytest.raises(PackageError, match=f"manifest.json: class 3 .*{match}.*config.json 'classes'"):
        package_bundle(bundle_copy, target, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_precisions_a_target_cannot_take(trained_bundle, tmp_path):
    with pytest.raises(PackageError, match="jetson-inference does not take precision 'int8'"):
        package_bundle(trained_bundle[0], "jetson-inference", tmp_path / "a", PackageOptions(precision="int8"))
    with pytest.raises(PackageError, match=r"lists no fp16 ONNX .*ibit-export CHECKPOINT --precision fp16"):
        package_bundle(trained_bundle[0], "deepstream", tmp_path / "b", PackageOptions(precision="fp16"))
    with pytest.raises(PackageError, match="batch range"):
        package_bundle(trained_bundle[0], "deepstream", tmp_path / "c", PackageOptions(batch_size=65))


def test_int8_cannot_take_a_fold(rgb_bundle, tmp_path):
    from ibit_deploy.package.model_variant import write_variant
    from ibit_deploy.package.preprocess import nvinfer_transform
    from ibit_deploy.package.source import read_bundle

    with pytest.raises(PackageError, match="INT8 .* cannot take the fold.*--precision fp16"):
        write_variant(read_bundle(rgb_bundle), "int8", nvinfer_transform(1 / 255, (0, 0, 0), "RGB"),
                      tmp_path / "m.onnx", softmax=True)


def test_jetson_fp16_fold_converts_the_folded_model(bundle_copy, digits, tmp_path):
    from ibit_deploy.quantization.fp16 import convert_fp16

    convert_fp16(bundle_copy / "model.onnx", bundle_copy / "model.fp16.onnx")
    manifest = load_manifest(bundle_copy)
    set_artifact(manifest, artifact_entry(bundle_copy, "model.fp16.onnx", "onnx", "fp16"))
    write_manifest(bundle_copy, manifest)
    out = package_bundle(bundle_copy, "jetson-inference", tmp_path / "ji", PackageOptions(precision="fp16"))
    assert out["model"]["fold"] is not None and out["model"]["fp16"]["fp32_nodes"]
    assert out["parity"]["agreement"] >= 0.875 and out["parity"]["max_abs_diff"] < 0.05


def test_existing_output_needs_overwrite(trained_bundle, tmp_path):
    out = tmp_path / "ji"
    package_bundle(trained_bundle[0], "jetson-inference", out)
    with pytest.raises(PackageError, match="already holds a package.*--overwrite"):
        package_bundle(trained_bundle[0], "jetson-inference", out)
    package_bundle(trained_bundle[0], "jetson-inference", out, PackageOptions(overwrite=True))
    assert (out / PACKAGE_MANIFEST).is_file()
    mine = tmp_path / "mine"  # the write policy: a folder the packager did not make stays, --overwrite or not
    mine.mkdir()
    (mine / "keep.txt").write_text("user file")
    with pytest.raises(PackageError, match="no kind ibit-deploy writes"):
        package_bundle(trained_bundle[0], "jetson-inference", mine, PackageOptions(overwrite=True))
    assert (mine / "keep.txt").read_text() == "user file"


def test_altered_bundle_is_refused(bundle_copy, tmp_path):
    (bundle_copy / "model.onnx").write_bytes(b"tampered")
    with pytest.raises(PackageError, match="altered after export"):
        package_bundle(bundle_copy, "deepstream", tmp_path / "ds")


def test_a_failed_artifact_is_packaged_only_when_asked_for_and_then_recorded(bundle_copy, tmp_path, capsys):
    """A bundle whose FlashBias attention FAILED its gate (so every model of it fails): packaging is refused naming
    the file, the reason and the override; with --allow-failed it is packaged, the command says so plainly and
    package.json records it."""
    from ibit_deploy.cli.package import main as package_main

    manifest = json.loads((bundle_copy / "manifest.json").read_text())
    manifest["attention"] = {"form": "flashbias", "gate": {"passed": False, "reason": "rank 2 lost 3.0 points"}}
    (bundle_copy / "manifest.json").write_text(json.dumps(manifest))
    out = tmp_path / "ds"
    assert package_main([str(bundle_copy), "--for", "deepstream", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "model.onnx (the bundle's flashbias attention failed its gate: rank 2 lost 3.0 points)" in err
    assert "--allow-failed" in err and not out.exists()
    assert package_main([str(bundle_copy), "--for", "deepstream", "--out", str(out), "--allow-failed"]) == 0
    assert "WARNING: packaging model.onnx, which FAILED its gate" in capsys.readouterr().err
    record = json.loads((out / "package.json").read_text())
    assert record["failed_artifacts_used"] == [
        {"path": "model.onnx", "reason": "the bundle's flashbias attention failed its gate: rank 2 lost 3.0 points"}]
