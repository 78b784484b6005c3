"""The ONNX Attention-op form where the package builds or refits an engine: ``ibit-export --to tensorrt`` builds from
``model.attn.onnx`` where the TensorRT here parses it (the kit's choice and fallback, devicekit/attention_form.py;
a stand-in TensorRT through the EngineTools seam, its real API checked in tests/conformance), checks the engine on
the MatMul form and records the form; ``ibit-deploy refit`` re-exports and graph-matches ``model.attn.onnx`` and the
device refits an engine built from it from that very file."""

from __future__ import annotations

import json
import shutil
import sys
import types
from functools import partial
from pathlib import Path
from typing import Any

import pytest

from ibit_deploy.devicekit.acceptance import artifact_verdict
from ibit_deploy.devicekit.fileio import sha256_file
from ibit_deploy.devicekit.manifest import find_artifact, load_manifest, put_artifact
from ibit_deploy.export.pipeline import ExportOptions, export_checkpoint
from ibit_deploy.export.refit import refit_bundle
from ibit_deploy.export.targets import tensorrt_target
from ibit_deploy.trt.build import EngineTools, build_engine

from ..devicekit.test_attention_form import recording_trt
from .test_refit import _fake_trt as refit_trt
from .test_refit import _ort_runner


def _tools(version: str, reject: str | None = None) -> tuple[types.ModuleType, EngineTools, list[dict[str, Any]]]:
    """A stand-in TensorRT ``version`` (its parser rejects the file ``reject``) and the export's tools around it;
    the list collects every check's ONNX file and keywords."""
    fake = recording_trt(version, reject)
    fake.BuilderFlag = types.SimpleNamespace(FP16="FP16", INT8="INT8", REFIT="REFIT", STRIP_PLAN="STRIP_PLAN")
    checks: list[dict[str, Any]] = []

    def verify(engine, onnx, precision, profile, images, inputs, **kw):
        checks.append({"onnx": Path(onnx).name, **kw})
        return {"count": len(images), "agreement": 1.0, "max_abs_diff": 0.0, "inputs": inputs, "passed": True}

    return fake, EngineTools(build=partial(build_engine, trt=fake, device_count=lambda: 1), verify=verify), checks


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, checkpoint_factory) -> Path:
    return checkpoint_factory(tmp_path_factory.mktemp("bias") / "ckpt", attn_mode="bias")


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory) -> tuple[Path, types.ModuleType, list[dict[str, Any]]]:
    """A bias-mode export --attention onnx-attention --to tensorrt with TensorRT 10.16 here (a stand-in)."""
    fake, tools, checks = _tools("10.16.1.11")
    out = tmp_path_factory.mktemp("attn_engine") / "bundle"
    export_checkpoint(checkpoint, out, ExportOptions(attention="onnx-attention", to="tensorrt", ort_fusions=False),
                      engine_tools=tools)
    return out, fake, checks


def test_the_export_builds_the_engine_from_the_attention_op_form(exported):
    out, fake, checks = exported
    assert fake.calls["parsed_all"] == ["model.attn.onnx"]
    engine = find_artifact(load_manifest(out, verify=True), kind="engine")
    assert engine["built_from"] == "model.attn.onnx" and engine["attention_form"] == "attention-op"
    assert engine["verified_against"] == "model.onnx" and "parses the ONNX Attention op" in engine["attention_note"]
    assert [c["onnx"] for c in checks] == ["model.onnx"]  # checked on the MatMul form, as the kit does


def _target(exported, tmp_path: Path, version: str, reject: str | None = None, **options: Any):
    """tensorrt_target again on a copy of the exported bundle, with another TensorRT here."""
    out = Path(shutil.copytree(exported[0], tmp_path / "bundle"))
    fake, tools, checks = _tools(version, reject)
    manifest = load_manifest(out)
    manifest["artifacts"] = [a for a in manifest["artifacts"] if a["kind"] != "engine"]
    result = tensorrt_target(out, manifest, ExportOptions(attention="onnx-attention", to="tensorrt", **options),
                             tools)
    return fake, checks, result, find_artifact(manifest, kind="engine")


@pytest.mark.parametrize("version, form, built_from", [
    ("10.3.0.30", "matmul", "model.onnx"),  # JetPack 6
    ("10.13.3.9", "matmul", "model.onnx"),  # JetPack 7.0 / 7.1
    ("11.4.1.6", "attention-op", "model.attn.onnx"),
])
def test_the_form_follows_the_tensorrt_here(exported, tmp_path, version, form, built_from):
    fake, checks, result, engine = _target(exported, tmp_path, version)
    assert result["status"] == "built" and fake.calls["parsed_all"] == [built_from]
    assert engine["built_from"] == built_from and engine["attention_form"] == form
    assert engine["verified_against"] == "model.onnx" and [c["onnx"] for c in checks] == ["model.onnx"]


def test_a_rejected_attention_op_form_falls_back_and_says_why(exported, tmp_path, capsys):
    fake, _, result, engine = _target(exported, tmp_path, "10.14.1.48", reject="model.attn.onnx")
    assert result["status"] == "built" and fake.calls["parsed_all"] == ["model.attn.onnx", "model.onnx"]
    assert engine["built_from"] == "model.onnx" and engine["attention_form"] == "matmul"
    assert "no importer for this form" in engine["attention_op_error"]
    assert "ibit-export: note: TensorRT could not build from model.attn.onnx" in capsys.readouterr().err


def test_a_weight_stripped_engine_is_refitted_from_the_file_it_was_built_from(exported, tmp_path):
    _, checks, _, engine = _target(exported, tmp_path, "10.16.1.11", refittable=True, strip_weights=True)
    out = tmp_path / "bundle"
    assert checks == [{"onnx": "model.onnx", "stripped": True, "refit_from": out / "model.attn.onnx"}]
    assert engine["built_from"] == "model.attn.onnx" and engine["refit_pending"]["from"] == "model.attn.onnx"


# ------------------------------------------------------------------------------- ibit-deploy refit and --refit

@pytest.fixture(scope="module")
def trained(tmp_path_factory, train_tiny_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("attn_refit")
    return {v: train_tiny_factory(root / v, steps=3, seed=seed, attn_mode="bias")
            for v, seed in (("v1", 0), ("v2", 1))}


def test_refit_regenerates_and_matches_the_attention_op_form(trained, tmp_path, monkeypatch):
    bundle = tmp_path / "bundle"
    export_checkpoint(trained["v1"], bundle, ExportOptions(attention="onnx-attention", to="tensorrt",
                                                           refittable=True, ort_fusions=False))
    # what the device kit records after building a refittable engine from the Attention-op form (TensorRT >= 10.14)
    blob = b"ENGINE built from " + sha256_file(bundle / "model.attn.onnx").encode()
    (bundle / "engine.plan").write_bytes(blob)
    put_artifact(bundle, {"path": "engine.plan", "sha256": sha256_file(bundle / "engine.plan"), "kind": "engine",
                          "precision": "fp32", "built_from": "model.attn.onnx", "attention_form": "attention-op",
                          "verified_against": "model.onnx", "refit_mode": "refittable", "tensorrt": "10.16.1",
                          "gate": {"passed": True, "checked": True}, "verification": {"agreement": 1.0}},
                 holder="test")
    before = load_manifest(bundle)

    after = refit_bundle(bundle, trained["v2"])

    assert after["refit"]["graphs_compared"] == ["model.onnx", "model.attn.onnx"]
    twin = find_artifact(after, path="model.attn.onnx")
    assert twin["sha256"] != find_artifact(before, path="model.attn.onnx")["sha256"]  # the new weights
    assert twin["twin_of"]["sha256"] == find_artifact(after, path="model.onnx")["sha256"] and twin["gate"]["passed"]
    engine = find_artifact(after, kind="engine")
    assert engine["refit_pending"]["from"] == "model.attn.onnx" and artifact_verdict(engine, after).failed

    fake = refit_trt("10.16.1")
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    from ibit_deploy.devicekit.cli import main as kit

    runs: list[int] = []
    ort = _ort_runner(bundle)  # "the refitted engine": model.onnx's logits, as the gate at export found them equal

    def run(*args):
        runs.append(1)
        return ort(*args)

    assert kit([str(bundle), "--refit", "--verify-samples", "8"], engine_runner=run) == 0
    assert fake.calls["refit_from"] == str(bundle / "model.attn.onnx") and runs  # refitted from what built it
    final = load_manifest(bundle, verify=True)
    entry = find_artifact(final, kind="engine")
    assert "refit_pending" not in entry and entry["gate"]["passed"] and entry["built_from"] == "model.attn.onnx"
    assert entry["refit"]["onnx_sha256"] == sha256_file(bundle / "model.attn.onnx")
    report = json.loads((bundle / "engine.refit.json").read_text())
    assert report["verified_against"] == str(bundle / "model.onnx")  # checked on the MatMul form, as when built


# ---------------------------------------------------------------------------------------- the fp16 twin

@pytest.fixture(scope="module")
def fp16_exported(checkpoint, tmp_path_factory) -> tuple[Path, types.ModuleType, list[dict[str, Any]]]:
    """--attention onnx-attention --precision fp16 --to tensorrt with TensorRT 10.16 here (a stand-in)."""
    fake, tools, checks = _tools("10.16.1.11")
    out = tmp_path_factory.mktemp("attn_fp16") / "bundle"
    export_checkpoint(checkpoint, out, ExportOptions(attention="onnx-attention", precision="fp16", to="tensorrt",
                                                     ort_fusions=False), engine_tools=tools)
    return out, fake, checks


def test_fp16_gets_a_gated_attention_op_twin_built_from_here(fp16_exported):
    import numpy as np
    import onnx

    from ibit_deploy.devicekit.manifest import attention_op_artifact
    from ibit_deploy.devicekit.profile import InputSpec
    from ibit_deploy.quantization.gate import run_logits

    out, fake, checks = fp16_exported
    manifest = load_manifest(out, verify=True)
    twin = attention_op_artifact(manifest, "fp16")
    assert twin["path"] == "model.fp16.attn.onnx" and twin["twin_of"]["path"] == "model.fp16.onnx"
    assert twin["gate"]["passed"] and twin["gate"]["reference"] == "model.onnx"
    assert twin["gate"]["fp16_probe"]["passed"]  # the reference evaluator ran the fp16 Attention op as typed
    assert manifest["attention"]["attention_op"]["fp16"]["passed"]
    graph = onnx.load(str(out / "model.fp16.attn.onnx")).graph
    assert sum(n.op_type == "Attention" for n in graph.node) == 2 and not any(n.op_type == "Softmax"
                                                                              for n in graph.node)
    # as close to the fp16 MatMul form as fp16 allows: ONNX Runtime CPU runs both
    images = np.random.default_rng(0).standard_normal((8, 1, 28, 28)).astype(np.float32)
    spec = InputSpec.from_manifest(manifest)
    ours, matmul, fp32 = (run_logits(out / name, images, spec) for name in
                          ("model.fp16.attn.onnx", "model.fp16.onnx", "model.onnx"))
    assert np.abs(ours - fp32).max() < 0.05 and np.abs(ours - matmul).max() < 0.05
    from ibit_deploy.conformance.onnx_support import check_bundle

    assert check_bundle(out)["model.fp16.attn.onnx"]["parser"] == "TensorRT >= 10.14"  # the op's fp16 mask: legal
    assert check_bundle(out)["model.fp16.attn.onnx"]["passed"]
    # the engine (fp16) is built from it and checked on the MatMul form
    assert fake.calls["parsed_all"] == ["model.fp16.attn.onnx"] and [c["onnx"] for c in checks] == ["model.fp16.onnx"]
    engine = find_artifact(manifest, kind="engine")
    assert engine["built_from"] == "model.fp16.attn.onnx" and engine["verified_against"] == "model.fp16.onnx"
    # the int8 model has no Attention-op form (its Q/DQ sit on the attention MatMuls)
    assert attention_op_artifact(manifest, "int8") is None
