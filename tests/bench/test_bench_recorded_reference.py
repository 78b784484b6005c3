"""Where the bundle's dataset cannot be read (a device: no dataset, no torch), ibit-bench measures on the check
images the bundle carries and compares against the reference logits the export recorded for them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ibit_deploy.bench.harness import RECORDED_REFERENCE, run_benchmark
from ibit_deploy.bench.report import check_report
from ibit_deploy.devicekit.layout import REFERENCE_FILE, REFERENCE_KIND
from ibit_deploy.devicekit.manifest import load_manifest, write_manifest
from ibit_deploy.devicekit.reference import read_reference

FAST = {"batches": [1], "warmup": 1, "iters": 2, "threads": 1, "progress": False}


def _data_elsewhere(bundle: Path, *, drop_reference: bool = False) -> None:
    """The bundle's recorded dataset points at a folder that is not on this machine."""
    manifest = load_manifest(bundle)
    manifest["data"]["spec"] = f"imagefolder:{bundle / 'not-here'}"
    if drop_reference:
        manifest["artifacts"] = [a for a in manifest["artifacts"] if a["kind"] != REFERENCE_KIND]
        (bundle / REFERENCE_FILE).unlink()
    write_manifest(bundle, manifest)


def test_bench_uses_the_check_images_and_the_recorded_reference(bundle_copy: Path, tmp_path: Path):
    recorded = read_reference(bundle_copy, load_manifest(bundle_copy))
    assert recorded is not None and recorded.real
    _data_elsewhere(bundle_copy)
    with pytest.warns(UserWarning, match="cannot be read here"):
        report = run_benchmark(bundle_copy, out_dir=tmp_path / "out", backends=["ort-cpu"], **FAST)
    check_report(report)
    assert report["complete"] and report["data"]["spec"].startswith(REFERENCE_FILE)
    assert report["data"]["count"] == len(recorded.labels)
    assert report["reference"] == {"name": RECORDED_REFERENCE, "fallback": False,
                                   "reason": report["reference"]["reason"]}
    run = report["runs"][0]
    assert run["accuracy"]["agreement"] == 1.0 and run["accuracy"]["max_abs_diff"] < 1e-3
    assert run["accuracy"]["top1"] == pytest.approx(float((recorded.logits.argmax(1) == recorded.labels).mean()))
    saved = json.loads((tmp_path / "out" / "report.json").read_text())
    assert saved["reference"]["name"] == RECORDED_REFERENCE


def test_the_limit_applies_to_the_check_images(bundle_copy: Path, tmp_path: Path):
    _data_elsewhere(bundle_copy)
    with pytest.warns(UserWarning):
        report = run_benchmark(bundle_copy, out_dir=tmp_path / "out", backends=["ort-cpu"], limit=5, **FAST)
    assert report["data"]["count"] == 5


def test_without_data_or_check_images_it_asks_for_data(bundle_copy: Path, tmp_path: Path):
    _data_elsewhere(bundle_copy, drop_reference=True)
    with pytest.raises(ValueError, match="give --data SPEC"):
        run_benchmark(bundle_copy, out_dir=tmp_path / "out", backends=["ort-cpu"], **FAST)


def test_the_export_records_the_trained_models_logits(tiny_checkpoint: Path, tiny_bundle: Path):
    import torch

    from ibit_deploy.checkpoint import load_checkpoint

    manifest = load_manifest(tiny_bundle)
    entry = next(a for a in manifest["artifacts"] if a["kind"] == REFERENCE_KIND)
    assert entry["path"] == REFERENCE_FILE and entry["model"] == "torch-ref" and "mnist5k" in entry["inputs"]
    recorded = read_reference(tiny_bundle, manifest)
    model, _ = load_checkpoint(tiny_checkpoint)
    with torch.no_grad():
        expected = model(torch.from_numpy(recorded.images)).numpy()
    assert np.array_equal(recorded.logits, expected)
    assert recorded.real and len(recorded.labels) == entry["count"] == 256  # 28x28 inputs: the count cap
