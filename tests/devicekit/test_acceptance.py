"""One engine acceptance rule per precision, from one table, applied the same way by every stage."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ibit_deploy.devicekit.acceptance import (
    ENGINE_ACCEPTANCE,
    Verdict,
    artifact_verdict,
    engine_acceptance,
    engine_accepted,
)
from ibit_deploy.devicekit.layout import PRECISIONS
from ibit_deploy.devicekit.manifest import artifact_entry, load_manifest, set_artifact, write_manifest
from ibit_deploy.devicekit.profile import EngineProfile
from ibit_deploy.devicekit.verify import engine_entry

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "bundle_v1"


def test_one_table_for_every_precision():
    assert set(ENGINE_ACCEPTANCE) == set(PRECISIONS)
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


def _bundle_with_engine(tmp_path, **entry) -> Path:
    bundle = tmp_path / "b"
    shutil.copytree(FIXTURE, bundle)
    manifest = load_manifest(bundle)
    (bundle / "engine.int8.plan").write_bytes(b"engine")
    set_artifact(manifest, artifact_entry(bundle, "engine.int8.plan", "engine", "int8", **entry))
    write_manifest(bundle, manifest)
    return bundle


def _engine_rows(bundle: Path) -> list:
    from ibit_deploy.runtime.load import make_runners

    return make_runners(bundle, ["tensorrt"], load_manifest(bundle), precisions=["int8"])


def test_an_engine_recorded_without_a_verdict_is_judged_by_the_table(tmp_path):
    """An int8 engine a version-1 kit recorded as passed at 93% (its old threshold, no rule beside it) is refused."""
    choices = _engine_rows(_bundle_with_engine(tmp_path, verification={"agreement": 0.93, "passed": True}))
    assert len(choices) == 1 and isinstance(choices[0].runner, str) and "FAILED its check" in choices[0].runner


def test_the_recorded_verdict_with_its_rule_is_the_truth(tmp_path):
    """Judged once, by the rule of its day, recorded beside the check: a reader never re-judges it by a newer table."""
    passed_then = {"verification": {"agreement": 0.95}, "acceptance": {"metric": "agreement", "min": 0.95},
                   "gate": {"passed": True, "checked": True}}
    assert artifact_verdict({"kind": "engine", "precision": "int8", **passed_then}) == Verdict(True)
    assert engine_accepted("int8", passed_then["verification"]) is False  # today's table would refuse it
    rows = _engine_rows(_bundle_with_engine(tmp_path, **passed_then))
    assert not (isinstance(rows[0].runner, str) and "FAILED its check" in rows[0].runner)

    failed_then = {"verification": {"agreement": 0.99}, "gate": {"passed": False, "reason": "below 0.995 then"}}
    verdict = artifact_verdict({"kind": "engine", "precision": "int8", **failed_then})
    assert verdict.failed and verdict.reason == "below 0.995 then"
    rows = _engine_rows(_bundle_with_engine(tmp_path / "2", **failed_then))
    assert isinstance(rows[0].runner, str) and "below 0.995 then" in rows[0].runner


@pytest.mark.parametrize("entry, expected", [
    ({"kind": "onnx", "gate": {"passed": False, "reason": "top-1 drop 3 points"}}, Verdict(False, "top-1 drop 3 points")),
    ({"kind": "onnx", "gate": {"passed": True}}, Verdict(True)),
    ({"kind": "onnx"}, Verdict(None)),
    ({"kind": "engine", "precision": "fp16", "gate": {"passed": True, "checked": False}}, Verdict(None)),
    ({"kind": "engine", "precision": "fp16", "verification": {"skipped": "no GPU"}}, Verdict(None)),
    ({"kind": "engine", "precision": "fp16", "verification": {"agreement": 0.96},
      "acceptance": {"min": 0.95}}, Verdict(True)),
])
def test_verdicts_of_every_kind_of_record(entry, expected):
    assert artifact_verdict(entry) == expected


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
