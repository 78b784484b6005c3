"""The refit pieces on their own: builder flags by mode, ``refit_serialized``'s refusals and serialization flags per
TensorRT version, the graph match, the verdict of an engine awaiting a refit, the export options, and the kit's
``--refit`` refusals (bad input before TensorRT is touched)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from ibit_deploy.devicekit.acceptance import artifact_verdict
from ibit_deploy.devicekit.fileio import sha256_file
from ibit_deploy.devicekit.manifest import put_artifact
from ibit_deploy.devicekit.refit import mark_pending, refit_builder_flags, refit_serialized
from ibit_deploy.devicekit.session import EngineBuildError
from ibit_deploy.export.graph_match import graph_differences
from ibit_deploy.export.pipeline import ExportOptions

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "export"))
from test_refit import _fake_trt  # noqa: E402  # the refit stand-in, shared with the end-to-end test


def test_builder_flags_by_mode() -> None:
    assert refit_builder_flags(None) == []
    assert refit_builder_flags("refittable") == ["REFIT"]
    assert refit_builder_flags("stripped") == ["REFIT", "STRIP_PLAN"]
    with pytest.raises(ValueError, match="refit mode"):
        refit_builder_flags("identical")


def test_the_build_sets_the_refit_flags(fake_trt, tmp_path: Path) -> None:
    from ibit_deploy.conformance.paths import profile, tiny_onnx
    from ibit_deploy.devicekit.build import build_serialized_engine

    fake_trt.state["inputs"][0].shape = (-1, 3, 8, 8)
    fake_trt.BuilderFlag.REFIT, fake_trt.BuilderFlag.STRIP_PLAN = "REFIT", "STRIP_PLAN"
    _, info = build_serialized_engine(fake_trt, tiny_onnx(tmp_path / "m.onnx"), profile(), refit="stripped")
    assert fake_trt.calls["flags"] == ["REFIT", "STRIP_PLAN"] and info["refit_mode"] == "stripped"


@pytest.mark.parametrize(("version", "include_refit"), [("10.3.0", False), ("10.14.1", True), ("11.4.0", True)])
def test_a_refit_serializes_whole_and_stays_refittable_where_tensorrt_can(version: str, include_refit: bool,
                                                                           tmp_path: Path) -> None:
    trt = _fake_trt(version)
    blob, info = refit_serialized(trt, b"engine", tmp_path / "model.onnx")
    assert blob == b"REFITTED engine" and info["weights_refitted"] == 3
    assert trt.calls["cleared"] == ["EXCLUDE_WEIGHTS"]
    assert trt.calls["set"] == (["INCLUDE_REFIT"] if include_refit else [])


def test_a_refit_missing_weights_or_of_a_plain_engine_is_refused(tmp_path: Path) -> None:
    trt = _fake_trt()
    trt.Refitter.get_missing_weights = lambda self: ["blocks.0.attn.bias", "head.weight"]
    with pytest.raises(EngineBuildError, match="does not supply 2 weight.*blocks.0.attn.bias"):
        refit_serialized(trt, b"engine", tmp_path / "model.onnx")
    trt = _fake_trt()
    trt.Runtime.deserialize_cuda_engine = lambda self, blob: type("E", (), {"refittable": False})()
    with pytest.raises(EngineBuildError, match="not built refittable"):
        refit_serialized(trt, b"engine", tmp_path / "model.onnx")


def _onnx(path: Path, width: int, seed: int = 0) -> Path:
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = np.ones((4, width), np.float32)
    graph = helper.make_graph([helper.make_node("MatMul", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", width])],
                              [numpy_helper.from_array(weight * np.random.default_rng(seed).random(), "w")])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)
    return path


def test_graphs_match_on_structure_not_values(tmp_path: Path) -> None:
    a, b = _onnx(tmp_path / "a.onnx", 3), _onnx(tmp_path / "b.onnx", 3, seed=1)
    assert sha256_file(a) != sha256_file(b)  # other weight values
    assert graph_differences(a, b) == []
    diffs = graph_differences(a, _onnx(tmp_path / "c.onnx", 5))
    assert any("initializer 'w'" in d and "[4, 3] -> float32 [4, 5]" in d for d in diffs)


def test_an_engine_awaiting_a_refit_fails_its_verdict() -> None:
    entry = {"path": "engine.plan", "kind": "engine", "precision": "fp32", "gate": {"passed": True}}
    assert not artifact_verdict(entry).failed
    verdict = artifact_verdict(mark_pending(entry, "model.onnx", "weight-stripped"))
    assert verdict.failed and "weight-stripped" in verdict.reason and "--refit" in verdict.reason


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"to": "onnx", "refittable": True}, "need --to tensorrt"),
    ({"to": "tensorrt", "strip_weights": True}, "needs --refittable"),
    ({"to": "tensorrt", "refittable": True, "precision": "auto"}, "one engine precision"),
    ({"to": "tensorrt", "refittable": True, "engine_compat": "version"}, "cannot be version-compatible"),
])
def test_refit_options_are_checked(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ExportOptions(**kwargs).validate()
    assert ExportOptions(to="tensorrt", refittable=True, strip_weights=True).refit_mode == "stripped"


def test_the_kit_refuses_to_refit_an_engine_not_built_refittable(bundle, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    from ibit_deploy.devicekit.cli import main

    root, _ = bundle
    (root / "engine.plan").write_bytes(b"plain engine")
    put_artifact(root, {"path": "engine.plan", "sha256": sha256_file(root / "engine.plan"), "kind": "engine",
                        "precision": "fp32", "built_from": "model.onnx"})
    assert main([str(root), "--refit"]) == 2
    assert "not built refittable" in capsys.readouterr().err
    assert main([str(root), "--refit", "--precision", "fp16"]) == 2


def test_the_stripped_engine_of_an_export_is_checked_after_a_refit_and_marked(tmp_path: Path) -> None:
    """ibit-export --refittable --strip-weights with a GPU: the build gets the mode, the check refits first, and the
    entry says the plan needs the device's refit before it runs."""
    import types

    from ibit_deploy.conformance.paths import tiny_bundle
    from ibit_deploy.export.targets import tensorrt_target
    from ibit_deploy.trt.build import EngineTools

    out = tmp_path / "bundle"
    manifest = tiny_bundle(out)
    asked: dict = {}

    def build(onnx, engine, profile, **kw):
        asked["build"] = kw
        Path(engine).write_bytes(b"stripped plan")
        return {"engine_sha256": sha256_file(engine), "tensorrt_version": "10.3.0"}

    def verify(engine, onnx, precision, profile, images, kind, **kw):
        asked["verify"] = kw
        return {"agreement": 1.0, "passed": True}

    options = types.SimpleNamespace(target_precision="fp32", builder_limits={}, refit_mode="stripped")
    record = tensorrt_target(out, manifest, options, EngineTools(build=build, verify=verify))
    entry = next(a for a in manifest["artifacts"] if a["kind"] == "engine")
    assert asked["build"]["refit"] == "stripped" and asked["verify"] == {"stripped": True}
    assert record["status"] == "built"
    assert entry["refit_mode"] == "stripped" and entry["weights"] == "stripped" and entry["gate"]["passed"]
    assert artifact_verdict(entry, manifest).failed  # no reader runs the plan before the device refits it
