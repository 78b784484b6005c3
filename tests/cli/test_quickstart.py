"""The main job end to end on a tiny model: every stage runs, a rerun reuses the trained model."""

from __future__ import annotations

import json

import pytest

from ibit_deploy.cli.main import main as ibit_deploy_main
from ibit_deploy.manifest import load_manifest
from ibit_deploy.quickstart import QuickstartConfig, quickstart


@pytest.mark.slow
def test_quickstart_tiny(tmp_path):
    config = QuickstartConfig(out=str(tmp_path / "qs"), model="ibit_test_patch4_28", model_kwargs={}, epochs=1,
                              max_steps_per_epoch=3, precisions="fp32,fp16,int8", batches="1,4", bench_seconds=0.05)
    summary = quickstart(config)
    bundle = tmp_path / "qs" / "bundle"
    manifest = load_manifest(bundle)
    paths = {a["path"] for a in manifest["artifacts"]}
    assert {"model.onnx", "model.fp16.onnx", "model.int8.onnx", "calib.npz", "build_engine.sh"} <= paths
    report = json.loads((tmp_path / "qs" / "bench" / "report.json").read_text())
    ran = {r["name"] for r in report["runs"] if r["status"] == "ok"}
    assert {"torch-ref", "torch-folded", "ort-cpu:fp32", "ort-cpu:fp16", "ort-cpu:int8"} <= ran
    skipped = [r for r in report["runs"] if r["backend"] == "tensorrt"]
    assert skipped and skipped[0]["status"] == "skipped" and skipped[0]["reason"]
    assert 0.0 <= summary["val_top1"] <= 1.0 and summary["top1_target_met"] is False  # 3 steps cannot reach 95%
    assert manifest["results"], "the harness appends its results to the manifest"

    again = quickstart(config)  # finished training is reused, not repeated
    assert again["train"].get("skipped") == "already trained"


def test_entry_point_dispatch(capsys):
    assert ibit_deploy_main(["--version"]) == 0
    assert "ibit-deploy" in capsys.readouterr().out
    assert ibit_deploy_main(["frobnicate"]) == 2
    assert "unknown command" in capsys.readouterr().err
    assert ibit_deploy_main([]) == 2
