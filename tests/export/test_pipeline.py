"""export_checkpoint / ibit-export: bundles, manifests, targets, and the errors users meet."""

from __future__ import annotations

import json
import shutil

import onnx
import pytest

from ibit_deploy.cli.export import main
from ibit_deploy.devicekit.fileio import sha256_file
from ibit_deploy.devicekit.layout import ORT_KIND, ORT_ONNX, kit_sources
from ibit_deploy.devicekit.manifest import load_manifest
from ibit_deploy.export.pipeline import ExportOptions, export_checkpoint

from ..conftest import exit_code


def test_onnx_bundle_manifest(tiny_checkpoint, tmp_path):
    out = tmp_path / "bundle"
    manifest = export_checkpoint(tiny_checkpoint, out)
    assert load_manifest(out) == json.loads((out / "manifest.json").read_text())
    art = manifest["artifacts"][0]
    assert art["path"] == "model.onnx" and art["sha256"] == sha256_file(out / "model.onnx")
    assert art["parity"]["max_abs_diff"] <= 1e-4 and art["parity"]["agreement"] == 1.0 and "validation images of mnist5k" in art["parity"]["inputs"]
    assert manifest["input"]["shape"] == ["batch", 1, 28, 28] and manifest["input"]["mean"] == [0.1307]
    assert manifest["model"]["folded"] and manifest["model"]["fold_max_abs_diff"] <= 1e-6
    assert manifest["source"]["weights_sha256"] == sha256_file(tiny_checkpoint / "model.safetensors")
    assert manifest["classes"] == [str(i) for i in range(10)]
    props = {p.key: p.value for p in onnx.load(str(out / "model.onnx")).metadata_props}
    assert props["ibit_deploy.model"] == "ibit_test_patch4_28" and props["ibit_deploy.image_size"] == "28x28"


def test_baseline_checkpoint_exports(tmp_path, checkpoint_factory):
    from ibit_deploy.models import matching_baseline_kwargs

    ckpt = checkpoint_factory(tmp_path / "vit", "vit_tiny_patch16_224",
                           **matching_baseline_kwargs("ibit_test_patch4_28"))
    manifest = export_checkpoint(ckpt, tmp_path / "b")
    assert manifest["model"]["folded"] is False and manifest["model"]["attn_mode"] == "timm"


def test_tensorrt_without_gpu_writes_device_kit(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "trt"
    assert main([str(tiny_checkpoint), "--to", "tensorrt", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    assert "No TensorRT engine was built here" in text and "build_engine.sh" in text
    assert f"copy {out} and run" in text and ".export-" not in text  # the bundle's place, not its staging directory
    manifest = load_manifest(out)
    kinds = {a["path"]: a["kind"] for a in manifest["artifacts"]}
    kit = {rel: "kit" for rel in kit_sources() if rel.startswith("devicekit/")}
    assert kinds == {"model.onnx": "onnx", ORT_ONNX["fp32"]: ORT_KIND, "reference.npz": "reference", "build_engine.sh": "script",
                     "build_engine.py": "script", **kit}
    assert "devicekit/manifest.py" in kit and "devicekit/launcher.py" not in kit
    assert manifest["tensorrt"]["status"] == "build-on-device"
    assert main([str(tiny_checkpoint), "--to", "tensorrt", "--out", str(tmp_path / "t2"), "--require-engine"]) == 3


def test_unsupported_pair_and_bad_batch_range(tiny_checkpoint, tmp_path, capsys):
    assert main([str(tiny_checkpoint), "--to", "torch-tensorrt", "--precision", "int8", "--out", str(tmp_path)]) == 2
    assert "torch-tensorrt export supports fp32 and fp16" in capsys.readouterr().err
    assert exit_code(main, [str(tiny_checkpoint), "--precision", "int8", "--max-drop", "-1", "--out",
                            str(tmp_path / "q")]) == 2
    assert "--max-drop must be a finite number in [0, 100], got '-1'" in capsys.readouterr().err
    assert main([str(tiny_checkpoint), "--precision", "fp64", "--out", str(tmp_path / "p")]) == 2
    assert "--precision must be one or more of" in capsys.readouterr().err
    with pytest.raises(ValueError, match="batch range"):
        export_checkpoint(tiny_checkpoint, tmp_path / "x", ExportOptions(min_batch=8, opt_batch=4))


def test_checkpoint_that_does_not_match_its_config(tiny_checkpoint, tmp_path, capsys):
    bad = tmp_path / "bad"
    shutil.copytree(tiny_checkpoint, bad)
    config = json.loads((bad / "config.json").read_text())
    config["model"]["kwargs"] = {"depth": 3}
    (bad / "config.json").write_text(json.dumps(config))
    assert main([str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "does not match the model in its config" in capsys.readouterr().err


def test_corrupt_and_missing_files(tiny_checkpoint, tmp_path, capsys):
    corrupt = tmp_path / "corrupt"
    shutil.copytree(tiny_checkpoint, corrupt)
    (corrupt / "model.safetensors").write_bytes(b"\x00" * 100)
    assert main([str(corrupt), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "model.safetensors" in err and "not a readable safetensors file" in err
    assert main([str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert "checkpoint directory not found" in capsys.readouterr().err
    (corrupt / "config.json").write_text("{not json")
    assert main([str(corrupt), "--out", str(tmp_path / "o")]) == 2
    assert "config.json is not a valid checkpoint config" in capsys.readouterr().err


def test_a_folder_that_is_not_a_checkpoint_is_refused_saying_what_one_holds(tiny_checkpoint, tmp_path, capsys):
    """A bundle (or any folder) given where a checkpoint belongs: one line naming the folder and what a checkpoint
    holds, not a bare OS error about model.safetensors."""
    bundle = tmp_path / "bundle"
    assert main([str(tiny_checkpoint), "--out", str(bundle), "--quiet"]) == 0
    capsys.readouterr()
    for wrong in (bundle, bundle / "manifest.json"):
        assert main([str(wrong), "--out", str(tmp_path / "o")]) == 2
        err = capsys.readouterr().err
        assert f"{wrong}" in err and "model.safetensors and config.json" in err and "ibit-train" in err, err
        assert "Errno" not in err, err
    assert not (tmp_path / "o").exists()


def test_failed_export_leaves_the_bundle_as_it_was(tiny_checkpoint, tmp_path, monkeypatch):
    out = tmp_path / "bundle"
    export_checkpoint(tiny_checkpoint, out)
    before = {p.name: p.read_bytes() for p in out.iterdir()}

    def explode(*args, **kwargs):
        raise RuntimeError("killed mid-export")

    monkeypatch.setattr("ibit_deploy.export.pipeline.export_onnx", explode)
    with pytest.raises(RuntimeError, match="killed"):
        export_checkpoint(tiny_checkpoint, out)
    # staged beside the bundle: the failure took only the staging directory with it
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    load_manifest(out)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".bundle.lock", "bundle"]


def test_manifest_paths_must_stay_inside_the_bundle(tiny_checkpoint, tmp_path):
    out = tmp_path / "bundle"
    manifest = export_checkpoint(tiny_checkpoint, out)
    for bad in ("/etc/passwd", "../outside.onnx"):
        manifest["artifacts"][0]["path"] = bad
        (out / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(ValueError, match="points outside the bundle"):
            load_manifest(out, verify=False)


def test_engine_that_fails_its_check_fails_the_export(tiny_checkpoint, tmp_path):
    """With TensorRT present (faked through the EngineTools seam), a failed check is an export failure."""
    from ibit_deploy.export.pipeline import ExportFailed
    from ibit_deploy.runtime.load import make_runners
    from ibit_deploy.trt.build import EngineTools

    def fake_build(onnx_path, engine_path, profile, **kwargs):
        engine_path.write_bytes(b"not a real engine")
        return {"tensorrt_version": "10.3.0"}

    def fake_verify(engine, onnx, precision, profile, images, inputs):
        assert images.shape[1:] == profile.chw and precision == "fp32"
        return {"count": len(images), "agreement": 0.5, "max_abs_diff": 3.0, "inputs": inputs, "passed": False}

    tools = EngineTools(build=fake_build, verify=fake_verify)
    out = tmp_path / "trt"
    with pytest.raises(ExportFailed, match="engine.plan: top-1 agreement 0.5000 \\(needs >= 0.99\\)"):
        export_checkpoint(tiny_checkpoint, out, ExportOptions(to="tensorrt"), engine_tools=tools)
    manifest = load_manifest(out)
    engine = next(a for a in manifest["artifacts"] if a["kind"] == "engine")
    assert engine["gate"]["passed"] is False and engine["acceptance"]["min"] == 0.99
    choice = next(c for c in make_runners(out, ["tensorrt"], manifest) if c.backend == "tensorrt")
    assert isinstance(choice.runner, str) and "FAILED its check" in choice.runner


@pytest.mark.slow
def test_precision_auto_kit_here_and_selection_where_tensorrt_is(trained_checkpoint, tmp_path, capsys, monkeypatch):
    """--to tensorrt --precision auto: without TensorRT the bundle carries all three ONNX and a kit that defaults to
    auto; with TensorRT (a stand-in module through build_engine_auto's seams, engines run as ONNX Runtime, trtexec
    answering in its documented summary format: SAMPLE numbers) the fastest passing engine is shipped. A trained
    checkpoint: an untrained one (near-tied logits) passes or fails the INT8 gate by chance."""
    import re
    import types
    from functools import partial
    from pathlib import Path

    import numpy as np
    import onnxruntime as ort

    from ibit_deploy.export.targets import tensorrt_target
    from ibit_deploy.trt.build import EngineTools, build_engine_auto

    from ..conftest import make_fake_trt

    out = tmp_path / "auto"
    assert main([str(trained_checkpoint), "--to", "tensorrt", "--precision", "auto", "--out", str(out)]) == 0
    assert "build_engine.py --precision auto" in capsys.readouterr().out
    manifest = load_manifest(out)
    assert {a["precision"] for a in manifest["artifacts"] if a["kind"] == "onnx"} == {"fp32", "fp16", "int8"}
    assert next(a for a in manifest["artifacts"] if a["path"] == "build_engine.py")["precision"] == "auto"
    assert manifest["tensorrt"]["status"] == "build-on-device"
    assert 'PRECISION="auto"' in (out / "build_engine.sh").read_text()

    chw = tuple(manifest["input"]["shape"][1:])
    fake = make_fake_trt("11.4.0.106")
    fake.state["inputs"] = [types.SimpleNamespace(name="images", shape=(-1, *chw))]

    def run(trt, engine_bytes, batches, input_name):  # the engine just built = ONNX Runtime on the ONNX it parsed
        session = ort.InferenceSession(fake.calls["parsed"], providers=["CPUExecutionProvider"])
        return [session.run(None, {input_name: np.asarray(b)})[0] for b in batches]

    medians = {"fp32": 3.0, "fp16": 1.0, "int8": 1.4}

    def trtexec_run(argv):
        precision = re.search(r"engine\.(\w+)\.plan", " ".join(argv)).group(1)
        m = medians[precision]
        stats = f"min = {m} ms, max = {m} ms, mean = {m} ms, median = {m} ms, percentile(99%) = {m} ms"
        return f"[I] === Performance summary ===\n[I] Throughput: 10 qps\n[I] GPU Compute Time: {stats}\n"

    tools = EngineTools(auto=partial(build_engine_auto, trt=fake, device_count=lambda: 1, trtexec_run=trtexec_run,
                                     run=run))
    result = tensorrt_target(out, manifest, ExportOptions(to="tensorrt", precision="auto"), tools)
    assert result["status"] == "built" and result["chosen"] == "fp16", result
    engine = next(a for a in manifest["artifacts"] if a["kind"] == "engine")
    assert engine["precision"] == "fp16" and engine["gate"]["passed"] and engine["tensorrt"] == "11.4.0.106"
    assert engine["sha256"] == sha256_file(out / "engine.plan")
    assert [c["passed"] for c in manifest["engine_selection"]["candidates"]] == [True, True, True], manifest["engine_selection"]
    assert not list(Path(out).glob(".auto-*"))

    def noisy(trt, engine_bytes, batches, input_name):
        return [o + 100 * np.random.default_rng(0).standard_normal(o.shape) for o in run(trt, engine_bytes, batches,
                                                                                          input_name)]

    tools = EngineTools(auto=partial(build_engine_auto, trt=fake, device_count=lambda: 1, trtexec_run=trtexec_run,
                                     run=noisy))
    result = tensorrt_target(out, manifest, ExportOptions(to="tensorrt", precision="auto"), tools)
    assert result["status"] == "no-engine-passed" and "nothing shipped" in result["reason"]
    assert manifest["engine_selection"]["chosen"] is None
    with pytest.raises(ValueError):
        ExportOptions(to="onnx", precision="auto").validate()
    with pytest.raises(ValueError, match="stands alone"):
        ExportOptions(to="tensorrt", precision="fp16,auto").validate()
