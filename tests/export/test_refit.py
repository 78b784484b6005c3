"""``ibit-deploy refit``: a retrained checkpoint of the same model into a refittable bundle, end to end on this CPU
machine (re-export, graph match, staged swap, the engine marked for the device's refit, then the kit's ``--refit``
with a stand-in TensorRT module whose engine is run by ONNX Runtime), and the refusals (architecture, folding, a
bundle that is not refittable)."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from ibit_deploy.devicekit.acceptance import artifact_verdict
from ibit_deploy.devicekit.fileio import sha256_file
from ibit_deploy.devicekit.manifest import find_artifact, load_manifest, put_artifact
from ibit_deploy.errors import BadInput
from ibit_deploy.export.pipeline import ExportOptions, export_checkpoint
from ibit_deploy.export.refit import refit_bundle

STEPS = 3  # a couple of training steps: different seeds give different weights of the same model


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory, train_tiny_factory, checkpoint_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("refit")
    return {"v1": train_tiny_factory(root / "v1", steps=STEPS, seed=0),
            "v2": train_tiny_factory(root / "v2", steps=STEPS, seed=1),
            "rank": checkpoint_factory(root / "rank", mask_rank=2),  # another architecture
            "bias": checkpoint_factory(root / "bias", attn_mode="bias")}  # another attention mode / folding


@pytest.fixture(scope="module")
def exported(checkpoints: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The v1 bundle exported --to tensorrt --refittable (no TensorRT here: the kit builds on the device)."""
    out = tmp_path_factory.mktemp("refit_bundle") / "bundle"
    manifest = export_checkpoint(checkpoints["v1"], out, ExportOptions(to="tensorrt", refittable=True))
    assert manifest["export"]["refittable"] is True
    return out


def _copy(src: Path, dest: Path) -> Path:
    import shutil

    shutil.copytree(src, dest)
    return dest


def _device_built(bundle: Path) -> bytes:
    """What the device kit records after `build_engine.py` built a refittable engine (TensorRT cannot run here)."""
    blob = b"ENGINE built from " + sha256_file(bundle / "model.onnx").encode()
    (bundle / "engine.plan").write_bytes(blob)
    put_artifact(bundle, {"path": "engine.plan", "sha256": sha256_file(bundle / "engine.plan"), "kind": "engine",
                          "precision": "fp32", "built_from": "model.onnx", "refit_mode": "refittable",
                          "tensorrt": "10.3.0", "gate": {"passed": True, "checked": True},
                          "verification": {"agreement": 1.0}}, holder="test")
    return blob


def test_a_retrained_checkpoint_is_refitted_end_to_end(exported: Path, checkpoints: dict[str, Path], tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = _copy(exported, tmp_path / "bundle")
    old_engine = _device_built(bundle)
    (bundle / "timing.cache").write_bytes(b"the device's cache")  # made by no export: kept
    before = load_manifest(bundle)

    after = refit_bundle(bundle, checkpoints["v2"])

    assert after["refit"]["graphs_compared"] == ["model.onnx", "model.ort.onnx"]
    assert after["source"]["path"] == str(checkpoints["v2"]) and before["source"]["path"] == str(checkpoints["v1"])
    for name in ("model.onnx", "reference.npz"):  # new weights, new reference outputs
        assert find_artifact(after, path=name)["sha256"] != find_artifact(before, path=name)["sha256"]
    engine = find_artifact(after, kind="engine")
    assert (bundle / "engine.plan").read_bytes() == old_engine and "refit_pending" in engine
    verdict = artifact_verdict(engine, after)
    assert verdict.failed and "build_engine.py --refit" in verdict.reason  # no reader runs the stale engine
    assert (bundle / "timing.cache").read_bytes() == b"the device's cache"
    load_manifest(bundle, verify=True)  # every file as recorded

    # the device: build_engine.py --refit with a TensorRT stand-in; its engine runs as ONNX Runtime on the new ONNX
    fake = _fake_trt()
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    from ibit_deploy.devicekit.cli import main as kit

    assert kit([str(bundle), "--refit", "--verify-samples", "8"], engine_runner=_ort_runner(bundle)) == 0
    assert fake.calls["refit_from"] == str(bundle / "model.onnx")
    assert fake.calls["cleared"] == ["EXCLUDE_WEIGHTS"] and fake.calls["set"] == []  # 10.3: no INCLUDE_REFIT
    final = load_manifest(bundle, verify=True)
    entry = find_artifact(final, kind="engine")
    assert "refit_pending" not in entry and entry["gate"]["passed"] and entry["weights"] == "included"
    assert entry["refit"]["onnx_sha256"] == sha256_file(bundle / "model.onnx")
    assert (bundle / "engine.plan").read_bytes() == b"REFITTED " + old_engine
    assert not artifact_verdict(entry, final).failed
    assert json.loads((bundle / "engine.refit.json").read_text())["refit"]["weights_refitted"] == 3


def test_a_refitted_engine_that_fails_its_check_leaves_the_bundle_as_it_was(
        exported: Path, checkpoints: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bundle = _copy(exported, tmp_path / "bundle")
    _device_built(bundle)
    refit_bundle(bundle, checkpoints["v2"])
    manifest_bytes, engine_bytes = (bundle / "manifest.json").read_bytes(), (bundle / "engine.plan").read_bytes()
    monkeypatch.setitem(sys.modules, "tensorrt", _fake_trt())
    from ibit_deploy.devicekit.cli import main as kit

    ort = _ort_runner(bundle)
    shuffled = lambda *a: [np.roll(x, 1, axis=1) for x in ort(*a)]  # noqa: E731  # a refit that broke the model
    assert kit([str(bundle), "--refit", "--verify-samples", "8"], engine_runner=shuffled) == 1
    assert (bundle / "manifest.json").read_bytes() == manifest_bytes
    assert (bundle / "engine.plan").read_bytes() == engine_bytes
    assert json.loads((bundle / "engine.refit.json").read_text())["verification"]["passed"] is False


@pytest.mark.parametrize(("which", "named"), [("rank", "model.kwargs.mask_rank"), ("bias", "model.attn_mode")])
def test_another_architecture_or_folding_is_refused_naming_it(exported: Path, checkpoints: dict[str, Path],
                                                             tmp_path: Path, which: str, named: str) -> None:
    bundle = _copy(exported, tmp_path / "bundle")
    before = {p.name: p.read_bytes() for p in bundle.iterdir() if p.is_file()}
    with pytest.raises(BadInput, match=named):
        refit_bundle(bundle, checkpoints[which])
    assert {p.name: p.read_bytes() for p in bundle.iterdir() if p.is_file()} == before
    assert not [p for p in bundle.parent.iterdir() if p.name.startswith(".bundle.")]  # no staging left


def test_the_cli_refuses_a_bundle_that_is_not_refittable(checkpoints: dict[str, Path], tmp_path: Path,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    from ibit_deploy.cli.main import main

    plain = tmp_path / "plain"
    export_checkpoint(checkpoints["v1"], plain, ExportOptions(ort_fusions=False))
    assert main(["refit", str(plain), str(checkpoints["v2"])]) == 2
    assert "not exported refittable" in capsys.readouterr().err


def test_the_cli_refits_and_says_what_the_device_must_do(exported: Path, checkpoints: dict[str, Path],
                                                         tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ibit_deploy.cli.main import main

    bundle = _copy(exported, tmp_path / "bundle")
    _device_built(bundle)
    assert main(["refit", str(bundle), str(checkpoints["v2"]), "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "weights replaced" in out and "build_engine.py --refit" in out


@pytest.mark.parametrize("wrong", ["nowhere", "bundle", "file"])
def test_a_checkpoint_path_that_is_no_checkpoint_is_refused_naming_it(exported: Path, tmp_path: Path, wrong: str,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    from ibit_deploy.cli.main import main

    bundle = _copy(exported, tmp_path / "bundle")
    before = {p.name: p.read_bytes() for p in bundle.iterdir() if p.is_file()}
    checkpoint = {"nowhere": tmp_path / "nowhere", "bundle": bundle, "file": bundle / "manifest.json"}[wrong]
    assert main(["refit", str(bundle), str(checkpoint), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(checkpoint) in err and "model.safetensors and config.json" in err and "Errno" not in err, err
    assert {p.name: p.read_bytes() for p in bundle.iterdir() if p.is_file()} == before


def test_a_bundle_with_the_attention_op_twin_is_refitted_and_the_twin_compared(
        train_tiny_factory, tmp_path: Path) -> None:
    """--attention onnx-attention writes model.attn.onnx (kind onnx-attention-op), which the device may build the
    engine from: a refit re-exports it with the new weights and compares its graph like every ONNX file."""
    v1 = train_tiny_factory(tmp_path / "b1", steps=STEPS, seed=0, attn_mode="bias")
    v2 = train_tiny_factory(tmp_path / "b2", steps=STEPS, seed=1, attn_mode="bias")
    bundle = tmp_path / "bundle"
    before = export_checkpoint(v1, bundle, ExportOptions(to="tensorrt", refittable=True, attention="onnx-attention",
                                                         ort_fusions=False))
    after = refit_bundle(bundle, v2)
    assert "model.attn.onnx" in after["refit"]["graphs_compared"]
    old, new = find_artifact(before, path="model.attn.onnx"), find_artifact(after, path="model.attn.onnx")
    assert new["sha256"] != old["sha256"] and new["sha256"] == sha256_file(bundle / "model.attn.onnx")
    assert new["twin_of"]["sha256"] == find_artifact(after, path="model.onnx")["sha256"]


@pytest.mark.parametrize(("block", "key", "value"), [
    ("export", None, [1]), ("model", None, [1]), ("input", None, "x"), ("input", "batch_range", 5),
    ("input", "batch_range", [1]), ("export", "quantize", [1]), ("input", "shape", 7)])
def test_a_hostile_manifest_block_is_bad_input_naming_the_manifest(exported: Path, checkpoints: dict[str, Path],
                                                                 tmp_path: Path, block: str, key: str | None,
                                                                 value: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from ibit_deploy.cli.main import main
    from ibit_deploy.devicekit.manifest import write_manifest

    bundle = _copy(exported, tmp_path / "bundle")
    manifest = load_manifest(bundle)
    if key is None:
        manifest[block] = value
    else:
        manifest[block][key] = value
    write_manifest(bundle, manifest)
    before = {p.name: p.read_bytes() for p in bundle.iterdir() if p.is_file()}
    assert main(["refit", str(bundle), str(checkpoints["v2"]), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert str(bundle / "manifest.json") in err and block in err and "unexpected error" not in err, err
    assert {p.name: p.read_bytes() for p in bundle.iterdir() if p.is_file()} == before


# ------------------------------------------------------------------------------------------ the device's stand-ins

def _ort_runner(bundle: Path):
    """The engine as the refit should leave it: the bundle's (new) ONNX, run by ONNX Runtime."""
    import onnxruntime as ort

    def run(trt: Any, engine_bytes: bytes, batches: list[Any], input_name: str) -> list[Any]:
        session = ort.InferenceSession(str(bundle / "model.onnx"), providers=["CPUExecutionProvider"])
        return [session.run(None, {input_name: b})[0] for b in batches]

    return run


def _fake_trt(version: str = "10.3.0") -> types.ModuleType:
    """A ``tensorrt`` stand-in for the refit calls (names as in the real bindings; tests/conformance checks them)."""
    trt = types.ModuleType("tensorrt")
    trt.__version__ = version
    calls: dict[str, Any] = {"cleared": [], "set": []}
    trt.calls = calls

    class ILogger:
        def __init__(self) -> None:
            pass

    class SerializationConfig:
        def clear_flag(self, flag: str) -> bool:
            calls["cleared"].append(flag)
            return True

        def set_flag(self, flag: str) -> bool:
            calls["set"].append(flag)
            return True

    class Engine:
        refittable = True

        def __init__(self, blob: bytes) -> None:
            self.blob = blob

        def create_serialization_config(self) -> SerializationConfig:
            return SerializationConfig()

        def serialize_with_config(self, config: SerializationConfig) -> bytes:
            return b"REFITTED " + self.blob

    class Runtime:
        def __init__(self, logger: Any) -> None:
            pass

        def deserialize_cuda_engine(self, blob: bytes) -> Engine:
            return Engine(blob)

    class Refitter:
        def __init__(self, engine: Engine, logger: Any) -> None:
            pass

        def get_missing_weights(self) -> list[str]:
            return []

        def get_all_weights(self) -> list[str]:
            return ["a", "b", "c"]

        def refit_cuda_engine(self) -> bool:
            return True

    class OnnxParserRefitter:
        num_errors = 0

        def __init__(self, refitter: Refitter, logger: Any) -> None:
            pass

        def refit_from_file(self, path: str) -> bool:
            calls["refit_from"] = path
            return True

    trt.ILogger, trt.Runtime, trt.Refitter, trt.OnnxParserRefitter = ILogger, Runtime, Refitter, OnnxParserRefitter
    trt.SerializationFlag = types.SimpleNamespace(EXCLUDE_WEIGHTS="EXCLUDE_WEIGHTS", INCLUDE_REFIT="INCLUDE_REFIT")
    return trt
