"""One engine acceptance rule per precision, from one table, applied the same way by every stage."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ibit_deploy.manifest import artifact_entry, load_manifest, set_artifact, write_manifest
from ibit_deploy.trt import kit
from ibit_deploy.trt.kit import ENGINE_ACCEPTANCE, EngineProfile, engine_acceptance, engine_accepted, engine_entry

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "bundle_v1"


def test_one_table_for_every_precision():
    assert set(ENGINE_ACCEPTANCE) == set(kit.PRECISIONS)
    for precision, minimum in ENGINE_ACCEPTANCE.items():
        assert engine_acceptance(precision)["min"] == minimum and engine_acceptance(precision)["metric"] == "agreement"


@pytest.mark.parametrize("agreement, expected", [(0.97, True), (0.93, False), (0.9699, False)])
def test_int8_rule_is_the_same_for_export_and_device(agreement, expected):
    """The drift of the issue: 0.93 passed on the device (0.90) and failed on a desktop (0.97). Now one rule."""
    assert engine_accepted("int8", {"agreement": agreement}) is expected
    assert engine_accepted("int8", {"top1_agreement": agreement}) is expected  # a v1 kit record


def test_unchecked_engines_are_neither_accepted_nor_rejected():
    assert engine_accepted("fp16", {"skipped": "--no-verify"}) is None
    assert engine_accepted("fp16", {"passed": False, "error": "could not deserialize"}) is False


def test_the_entry_carries_the_rule_beside_the_check():
    profile = EngineProfile("images", (1, 28, 28), 1, 4, 8)
    entry = engine_entry("engine.plan", "int8", profile, sha256="0" * 64, built_from="model.int8.onnx",
                         tensorrt="10.3.0", verification={"agreement": 0.93, "inputs": "x", "max_abs_diff": 1.0})
    assert entry["acceptance"] == engine_acceptance("int8") and entry["gate"]["passed"] is False
    assert "needs >= 0.97" in entry["gate"]["reason"] and entry["batch_range"] == [1, 8]


def test_runtime_load_applies_the_table_not_the_recorded_verdict(tmp_path):
    """An int8 engine recorded as passed at 93% (the old device threshold) is refused by runtime.load's runner list."""
    from ibit_deploy.runtime.load import make_runners

    bundle = tmp_path / "b"
    shutil.copytree(FIXTURE, bundle)
    manifest = load_manifest(bundle)
    (bundle / "engine.int8.plan").write_bytes(b"engine")
    set_artifact(manifest, artifact_entry(bundle, "engine.int8.plan", "engine", "int8",
                                          verification={"agreement": 0.93, "passed": True}))
    write_manifest(bundle, manifest)
    choices = make_runners(bundle, ["tensorrt"], load_manifest(bundle), precisions=["int8"])
    assert len(choices) == 1 and isinstance(choices[0].runner, str) and "failed its check" in choices[0].runner


def _ort_engine(noise: float):
    """A stand-in engine runner (the ``run`` seam): ONNX Runtime on the same file, plus ``noise`` on the logits."""
    import numpy as np
    import onnxruntime as ort

    session = ort.InferenceSession(str(FIXTURE / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)

    def run(trt, engine_bytes, batches, input_name):
        assert engine_bytes == b"engine bytes" and trt is None
        return [session.run(None, {input_name: b})[0] + noise * rng.standard_normal((len(b), 10)) for b in batches]

    return run


@pytest.mark.parametrize("noise, passed", [(0.0, True), (50.0, False)])
def test_export_verification_runs_the_kit_and_applies_the_table(tmp_path, noise, passed):
    import numpy as np

    from ibit_deploy.trt.build import verify_built_engine

    engine = tmp_path / "engine.plan"
    engine.write_bytes(b"engine bytes")
    images = np.random.default_rng(1).standard_normal((21, 1, 28, 28)).astype(np.float32)
    profile = EngineProfile("images", (1, 28, 28), 2, 4, 8)
    check = verify_built_engine(engine, FIXTURE / "model.onnx", "fp32", profile, images, "21 random images",
                                trt=None, run=_ort_engine(noise))
    assert check["count"] == 21 and check["inputs"] == "21 random images"  # chunks 8, 8, 5: all within [2, 8]
    assert check["passed"] is passed and check["acceptance"] == engine_acceptance("fp32")
    assert (check["agreement"] == 1.0 and check["max_abs_diff"] < 1e-5) if passed else check["agreement"] < 0.99
