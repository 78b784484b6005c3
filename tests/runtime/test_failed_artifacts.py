"""An artifact that FAILED its gate at export is never loaded unless asked for by name, and then says so."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest

from ibit_deploy.devicekit.layout import MANIFEST_FILE
from ibit_deploy.errors import BackendUnavailable
from ibit_deploy.runtime.load import FailedArtifactWarning, load, make_runners

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "bundle_v1"


def failed_bundle(tmp_path: Path, *, fp16_failed: bool = False, attention_failed: bool = False) -> Path:
    bundle = tmp_path / "b"
    shutil.copytree(FIXTURE, bundle)
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    for art in manifest["artifacts"]:
        if art["path"] == "model.fp16.onnx" and fp16_failed:
            art["gate"].update(passed=False, reason="top-1 drop 4.0 points > 1.0")
    if attention_failed:
        manifest["attention"] = {"form": "flashbias", "gate": {"passed": False, "reason": "rank 2 lost 6 points"}}
    (bundle / MANIFEST_FILE).write_text(json.dumps(manifest))
    return bundle


def test_a_failed_fp16_onnx_is_not_loaded_without_asking(tmp_path):
    bundle = failed_bundle(tmp_path, fp16_failed=True)
    with pytest.raises(BackendUnavailable, match=r"model\.fp16\.onnx FAILED its accuracy gate at export \(top-1 "
                                                 r"drop 4\.0 points > 1\.0\).*allow_failed=True, --allow-failed"):
        load(bundle, "ort-cpu", "fp16")
    with load(bundle, "ort-cpu", "fp32") as runner:  # the passing artifacts still load, silently
        assert runner.infer(np.zeros((1, 1, 28, 28), np.float32)).shape == (1, 10)


def test_asking_for_a_failed_artifact_by_name_uses_it_and_warns(tmp_path):
    bundle = failed_bundle(tmp_path, fp16_failed=True)
    with pytest.warns(FailedArtifactWarning, match=r"model\.fp16\.onnx FAILED its accuracy gate .* outputs may be "
                                                   r"wrong"), load(bundle, "ort-cpu", "fp16", allow_failed=True) as r:
        assert r.infer(np.zeros((1, 1, 28, 28), np.float32)).shape == (1, 10)


def test_a_failed_attention_form_fails_every_model_of_the_bundle(tmp_path):
    bundle = failed_bundle(tmp_path, attention_failed=True)
    rows = make_runners(bundle, ["ort-cpu", "tensorrt"], json.loads((bundle / MANIFEST_FILE).read_text()))
    assert rows and all(isinstance(r.runner, str) and "flashbias attention failed its gate: rank 2 lost 6 points"
                        in r.runner for r in rows)


def test_the_benchmark_lists_a_failed_artifact_with_its_reason(tmp_path):
    bundle = failed_bundle(tmp_path, fp16_failed=True)
    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    rows = {r.name: r.runner for r in make_runners(bundle, ["ort-cpu"], manifest)}
    assert isinstance(rows["ort-cpu:fp16"], str) and "FAILED" in rows["ort-cpu:fp16"]
    assert not isinstance(rows["ort-cpu:fp32"], str)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FailedArtifactWarning)
        rows = {r.name: r.runner for r in make_runners(bundle, ["ort-cpu"], manifest, allow_failed=True)}
    assert not isinstance(rows["ort-cpu:fp16"], str)
