"""ibit-bench end to end on the tiny bundle, and the ways a run must refuse to start or be marked incomplete."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ibit_deploy.bench.harness import run_benchmark
from ibit_deploy.bench.report import check_report
from ibit_deploy.cli.bench import main
from ibit_deploy.devicekit.manifest import artifact_entry, load_manifest, set_artifact, update_manifest, write_manifest
from ibit_deploy.runtime.base import InputSpec, Runner
from ibit_deploy.runtime.load import RunnerChoice

FAST = ["--limit", "40", "--warmup", "1", "--iters", "3", "--threads", "1", "--quiet"]


def _add_fake_engine(bundle: Path) -> None:
    """Register a (not really) serialized engine, as build_engine.py does, so the tensorrt backend has a file."""
    (bundle / "engine.plan").write_bytes(b"not a real TensorRT engine")
    manifest = load_manifest(bundle)
    set_artifact(manifest, artifact_entry(bundle, "engine.plan", "engine", "fp32", tensorrt="10.3.0"))
    write_manifest(bundle, manifest)


def test_end_to_end_report_files_and_manifest_results(bundle_copy: Path, tmp_path: Path, capsys):
    _add_fake_engine(bundle_copy)
    before = len(load_manifest(bundle_copy)["results"])
    out = tmp_path / "out"
    rc = main([str(bundle_copy), "--backends", "torch-ref,torch-folded,ort-cpu,ort-cuda,tensorrt", "--batches",
               "1,4", "--out", str(out), *FAST])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    check_report(report)
    assert report["status"] == "complete" and report["data"]["count"] == 40 and report["data"]["spec"] == "mnist5k"
    runs = {r["name"]: r for r in report["runs"]}
    assert {n: r["status"] for n, r in runs.items()} == {
        "torch-ref": "ok", "torch-folded": "ok", "ort-cpu:fp32": "ok", "ort-cuda:fp32": "skipped",
        "tensorrt:fp32": "skipped"}
    assert "CUDAExecutionProvider" in runs["ort-cuda:fp32"]["reason"]
    assert runs["tensorrt:fp32"]["reason"]  # no TensorRT here: the reason says why
    assert report["reference"] == {"name": "torch-ref", "fallback": False, "reason": None}
    ort = runs["ort-cpu:fp32"]
    assert ort["accuracy"]["agreement"] == 1.0 and ort["accuracy"]["max_abs_diff"] < 1e-4
    assert [e["batch"] for e in ort["latency"]] == [1, 4] and ort["latency"][0]["n"] == 3
    assert ort["latency"][0]["threads"] == 1 and set(ort["speedup_vs_reference"]) == {"1", "4"}
    for name in ("report.md", "latency_vs_batch.png", "accuracy_vs_latency.png"):
        assert (out / name).is_file()
    assert (out / "latency_vs_batch.png").read_bytes()[:4] == b"\x89PNG"
    printed = capsys.readouterr().out
    assert "| model.ort.onnx | ort-cpu | fp32 |" in printed and "p50 ms @4" in printed
    results = load_manifest(bundle_copy)["results"]
    assert len(results) == before + 3 and report["manifest_update"]["updated"]
    assert {r["backend"] for r in results[before:]} == {"torch-ref", "torch-folded", "ort-cpu"}
    assert results[-1]["machine"]["cpu"] and set(results[-1]["latency"]) == {"1", "4"}


def test_altered_artifact_fails_before_measuring(bundle_copy: Path, tmp_path: Path, capsys):
    onnx = bundle_copy / "model.onnx"
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0xFF
    onnx.write_bytes(bytes(data))
    out = tmp_path / "out"
    assert main([str(bundle_copy), "--backends", "ort-cpu", "--out", str(out), *FAST]) == 2
    err = capsys.readouterr().err
    assert "model.onnx was altered after export" in err and "sha256" in err
    assert not (out / "report.json").exists()


def test_missing_artifact_fails_before_measuring(bundle_copy: Path, tmp_path: Path):
    (bundle_copy / "model.onnx").unlink()
    with pytest.raises(FileNotFoundError, match="lists model.onnx, which is missing"):
        run_benchmark(bundle_copy, backends=["ort-cpu"], out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "report.json").exists()


def test_empty_evaluation_set_is_refused(bundle_copy: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="empty evaluation set"):
        run_benchmark(bundle_copy, backends=["ort-cpu"], limit=0, out_dir=tmp_path / "out")
    manifest = load_manifest(bundle_copy)
    update_manifest(bundle_copy, data={**manifest["data"], "val_fraction": 0.0})
    with pytest.raises(ValueError, match="empty"):
        run_benchmark(bundle_copy, backends=["ort-cpu"], out_dir=tmp_path / "out", progress=False)
    assert not (tmp_path / "out" / "report.json").exists()


def test_data_that_does_not_fit_the_input_is_refused(tiny_bundle: Path, tmp_path: Path):
    from PIL import Image

    for cls in map(str, range(10)):  # the model's classes, in colour
        (tmp_path / "rgb" / cls).mkdir(parents=True)
        for i in range(2):
            Image.new("RGB", (28, 28), (40 * i, 90, 200)).save(tmp_path / "rgb" / cls / f"{i}.png")
    with pytest.raises(ValueError, match=r"3-channel images but the bundle's model takes 1-channel images"):
        run_benchmark(tiny_bundle, backends=["ort-cpu"], data=f"imagefolder:{tmp_path / 'rgb'}",
                      out_dir=tmp_path / "out")
    with pytest.raises(ValueError, match="batch sizes"):
        run_benchmark(tiny_bundle, batches=[0], out_dir=tmp_path / "out")
    with pytest.raises(ValueError, match="unknown backend 'ort-rocm'"):
        run_benchmark(tiny_bundle, backends=["ort-rocm"], out_dir=tmp_path / "out")
    with pytest.raises(SystemExit) as exc:  # argparse rejects it before anything runs
        main([str(tiny_bundle), "--batches", "1,x"])
    assert exc.value.code == 2
    with pytest.raises(SystemExit) as exc:  # refused when parsed, naming the flag
        main([str(tiny_bundle), "--limit", "-3", "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert not (tmp_path / "out" / "report.json").exists()


class _Scripted(Runner):
    """Zero logits, or raises ``error`` on every call."""

    def __init__(self, spec: InputSpec, error: BaseException | None = None) -> None:
        super().__init__(spec)
        self.error = error
        self.backend = "scripted"

    def _open(self) -> None:
        pass

    def _infer(self, images: np.ndarray) -> np.ndarray:
        if self.error is not None:
            raise self.error
        return np.zeros((len(images), 10), np.float32)


def _scripted_choices(error: BaseException):
    spec = InputSpec("images", 1, 28, 28)
    choices = [RunnerChoice("ort-cpu:fp32", _Scripted(spec), "ort-cpu", "fp32", "model.onnx"),
               RunnerChoice("ort-cpu:fp16", _Scripted(spec, error), "ort-cpu", "fp16", "model.fp16.onnx")]
    return lambda *a, **k: choices


def test_failing_backend_marks_the_run_incomplete(bundle_copy: Path, tmp_path: Path):
    report = run_benchmark(bundle_copy, limit=20, batches=[1], warmup=0, iters=2, out_dir=tmp_path / "out",
                           progress=False, runners=_scripted_choices(RuntimeError("kernel exploded")))
    assert report["status"] == "incomplete" and report["complete"] is False
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    bad = next(r for r in saved["runs"] if r["name"] == "ort-cpu:fp16")
    assert bad["status"] == "error" and "RuntimeError: kernel exploded" in bad["reason"]
    assert saved["reference"]["fallback"] and saved["reference"]["name"] == "ort-cpu:fp32"
    assert load_manifest(bundle_copy)["results"][-1]["complete"] is False


def test_interrupted_run_is_marked_and_not_recorded(bundle_copy: Path, tmp_path: Path):
    before = len(load_manifest(bundle_copy)["results"])
    with pytest.raises(KeyboardInterrupt):
        run_benchmark(bundle_copy, limit=20, batches=[1], warmup=0, iters=2, out_dir=tmp_path / "out",
                      progress=False, runners=_scripted_choices(KeyboardInterrupt()))
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["status"] == "interrupted" and saved["complete"] is False
    assert len(load_manifest(bundle_copy)["results"]) == before
