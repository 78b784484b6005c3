"""Exports are staged beside --out and swapped in whole: a failed or killed export leaves the previous bundle
exactly as it was; another checkpoint's bundle is replaced only with --overwrite and leaves nothing behind; bench
results survive a re-export only when what they measured is byte-identical."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ibit_deploy.cli.export import main
from ibit_deploy.devicekit import staging
from ibit_deploy.devicekit.fileio import sha256_file
from ibit_deploy.devicekit.locking import read_holder
from ibit_deploy.devicekit.manifest import load_manifest, update_manifest
from ibit_deploy.devicekit.session import EngineBuildError
from ibit_deploy.export.pipeline import ExportFailed, ExportOptions, export_checkpoint
from ibit_deploy.trt.build import EngineTools

from ..conftest import exit_code

FAST_GATE = {"eval_count": 32, "fp16_probe": 0}  # the gate's cost, not its subject here
FAST = ["--eval-count", "32"]


def snapshot(root: Path) -> dict[str, str]:
    """Every file under ``root`` (bench reports included) with its sha256: 'exactly as it was' means equal."""
    return {p.relative_to(root).as_posix(): sha256_file(p) for p in sorted(root.rglob("*")) if p.is_file()}


def leftovers(out: Path) -> list[str]:
    return sorted(p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.") and
                  not p.name.endswith(".lock"))


def _result(artifact: str, backend: str) -> dict:
    return {"kind": "bench", "artifact": artifact, "backend": backend, "precision": "fp32", "report": None,
            "accuracy": {"top1": 0.5}, "latency": {"1": {"p50_ms": 1.0}}}


@pytest.fixture
def bundle_with_results(tiny_checkpoint, tmp_path):
    """An fp32+fp16 bundle of the tiny checkpoint with bench results (ONNX Runtime and PyTorch) and bench reports."""
    out = tmp_path / "bundle"
    manifest = export_checkpoint(tiny_checkpoint, out, ExportOptions(precision="fp16", quantize=FAST_GATE))
    source = manifest["source"]["path"]
    (out / "bench").mkdir()
    (out / "bench" / "report.json").write_text('{"runs": []}')
    results = [_result("model.onnx", "ort-cpu"), _result("model.fp16.onnx", "ort-cpu"), _result(source, "torch-ref")]
    for r in results:
        r["report"] = str((out / "bench" / "report.json").resolve())
    update_manifest(out, results=results)
    return out


def _another_checkpoint(checkpoint: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "other-ck"
    shutil.copytree(checkpoint, copy)
    config = json.loads((copy / "config.json").read_text())
    config["classes"] = [f"class-{c}" for c in config["classes"]]  # another checkpoint: other bytes, same shapes
    config["data"]["classes"] = config["classes"]  # (a config that contradicts itself is refused before anything)
    (copy / "config.json").write_text(json.dumps(config))
    return copy


@pytest.mark.slow
def test_a_failure_mid_export_leaves_the_previous_bundle_exactly_as_it_was(bundle_with_results, tiny_checkpoint,
                                                                         capsys):
    out = bundle_with_results
    before = snapshot(out)
    for argv in (["--precision", "int8", "--calib-count", "0"], ["--precision", "int8", "--data", "imagefolder:/no/such"],
                 ["--opset", "99"]):
        assert exit_code(main, [str(tiny_checkpoint), "--out", str(out), *argv]) == 2, argv
        assert snapshot(out) == before, argv

    def rejecting_build(*args, **kwargs):  # TensorRT is here and rejects the network, after the ONNX was written
        raise EngineBuildError("the parser rejected node /blocks.0/attn")

    with pytest.raises(Exception, match="TensorRT could not build engine.plan"):
        export_checkpoint(tiny_checkpoint, out, ExportOptions(to="tensorrt", precision="fp16", quantize=FAST_GATE),
                          engine_tools=EngineTools(build=rejecting_build))
    assert snapshot(out) == before
    with pytest.raises(ExportFailed, match=f"the bundle in {out} is unchanged"):  # a failed gate replaces nothing
        export_checkpoint(tiny_checkpoint, out, ExportOptions(precision="fp16", quantize={**FAST_GATE,
                                                                                          "max_drop": -1.0}))
    assert snapshot(out) == before
    assert leftovers(out) == []  # the staging directories went with the failures
    load_manifest(out)  # still a complete, verifiable bundle


@pytest.mark.slow
def test_another_checkpoints_bundle_needs_overwrite_and_leaves_nothing_behind(bundle_with_results, tiny_checkpoint,
                                                                            tmp_path, capsys):
    out = bundle_with_results
    other = _another_checkpoint(tiny_checkpoint, tmp_path)
    before = snapshot(out)
    assert main([str(other), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "holds a bundle exported from another checkpoint" in err and "--overwrite" in err
    assert snapshot(out) == before

    assert main([str(other), "--out", str(out), "--overwrite"]) == 0
    text = capsys.readouterr().out
    assert "another checkpoint, --overwrite" in text and "dropped 3 bench result(s)" in text
    assert "bench/ reports dropped" in text
    manifest = load_manifest(out)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx", "model.ort.onnx", "reference.npz"]  # no fp16, no bench/
    assert manifest["results"] == [] and manifest["classes"][0] == "class-0"
    assert manifest["export"]["replaced"]["results_carried"] == 0
    assert leftovers(out) == []


def test_a_directory_that_is_not_a_bundle_is_never_replaced(tiny_checkpoint, tmp_path, capsys):
    out = tmp_path / "notes"
    out.mkdir()
    (out / "todo.txt").write_text("mine")
    assert main([str(tiny_checkpoint), "--out", str(out), "--overwrite"]) == 2
    assert "is not a bundle (no manifest.json)" in capsys.readouterr().err
    assert snapshot(out) == {"todo.txt": sha256_file(out / "todo.txt")}


@pytest.mark.slow
def test_reexport_carries_results_of_byte_identical_artifacts_only(bundle_with_results, tiny_checkpoint, capsys):
    out = bundle_with_results
    old = load_manifest(out)
    # same checkpoint, same options: every artifact is rebuilt byte for byte, so every result still holds
    assert main([str(tiny_checkpoint), "--out", str(out), "--precision", "fp16", *FAST]) == 0
    assert "carried over 3 bench result(s)" in capsys.readouterr().out
    again = load_manifest(out)
    assert {a["path"]: a["sha256"] for a in again["artifacts"]} == {a["path"]: a["sha256"] for a in old["artifacts"]}
    assert again["results"] == old["results"] and (out / "bench" / "report.json").is_file()

    # another opset: model.onnx changes and fp16 is not exported; only the PyTorch result (same checkpoint) holds
    assert main([str(tiny_checkpoint), "--out", str(out), "--opset", "17"]) == 0
    text = capsys.readouterr().out
    assert "carried over 1 bench result(s)" in text and "dropped 2 bench result(s)" in text
    assert "ort-cpu on model.onnx (changed)" in text and "ort-cpu on model.fp16.onnx (not in the new bundle)" in text
    final = load_manifest(out)
    assert [r["backend"] for r in final["results"]] == ["torch-ref"]
    assert final["results"][0]["report"] is None  # its report file went with the replaced bundle
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "model.onnx", "model.ort.onnx", "reference.npz"]


@pytest.mark.slow
def test_results_measured_before_a_reexport_are_not_added_to_the_new_bundle(bundle_with_results, tiny_checkpoint):
    out = bundle_with_results
    measured_on = load_manifest(out)  # a benchmark starts on this bundle ...
    export_checkpoint(tiny_checkpoint, out, ExportOptions(opset=17))  # ... which is re-exported meanwhile
    current = update_manifest(out, results=[_result("model.onnx", "ort-cpu")], measured_on=measured_on)
    assert [r["artifact"] for r in current["results"]].count("model.onnx") == 0


def test_swap_without_an_atomic_exchange_and_recovery_of_an_interrupted_one(tmp_path, monkeypatch):
    target = tmp_path / "b"
    target.mkdir()
    (target / "old").write_text("old")
    new = staging.new_staging(target)
    (new / "new").write_text("new")
    monkeypatch.setattr(staging, "_exchange", lambda a, b: False)  # e.g. not Linux: two renames
    staging.swap_in(new, target)
    assert [p.name for p in target.iterdir()] == ["new"] and leftovers(target) == []

    # killed between the two renames: the target is gone, the previous bundle lies aside; the next export restores it
    os.rename(target, tmp_path / ".b.replaced-999999-abcd")
    (tmp_path / ".b.export-999999-efgh").mkdir()
    notes = staging.clean_leftovers(target)
    assert [p.name for p in target.iterdir()] == ["new"] and leftovers(target) == []
    assert any("restored" in n for n in notes) and any("did not finish" in n for n in notes)


@pytest.mark.slow
def test_a_killed_export_leaves_the_previous_bundle_and_its_staging_is_cleaned_up(bundle_with_results,
                                                                                 tiny_checkpoint):
    out = bundle_with_results
    before = snapshot(out)
    proc = subprocess.Popen([sys.executable, "-m", "ibit_deploy.cli.export", str(tiny_checkpoint), "--out", str(out),
                             "--precision", "fp16", *FAST], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        deadline = time.monotonic() + 120
        while not any((p / "model.onnx").exists() for p in out.parent.glob(f".{out.name}.export-*")):
            assert proc.poll() is None and time.monotonic() < deadline, "the export never staged model.onnx"
            time.sleep(0.02)
        assert (read_holder(out) or {}).get("pid") == proc.pid
        proc.send_signal(signal.SIGKILL)  # no cleanup runs: the worst case
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert snapshot(out) == before
    load_manifest(out)
    assert leftovers(out)  # the dead export's staging directory ...
    with pytest.warns(UserWarning, match="left by an export that did not finish"):
        export_checkpoint(tiny_checkpoint, out, ExportOptions(precision="fp16", quantize=FAST_GATE))
    assert leftovers(out) == []  # ... is removed by the next export


def test_publish_new_keeps_whoever_finished_first(tmp_path):
    """A cache any process may fill (the conformance bindings): the first complete folder wins, the second is dropped."""
    target = tmp_path / "cache"
    first, second = staging.new_staging(target), staging.new_staging(target)
    (first / "who").write_text("first")
    (second / "who").write_text("second")
    assert staging.publish_new(first, target) is True
    assert staging.publish_new(second, target) is False
    assert (target / "who").read_text() == "first" and sorted(p.name for p in tmp_path.iterdir()) == ["cache"]
