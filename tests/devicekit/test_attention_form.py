"""The device kit's choice of attention form: the ONNX Attention-op form where TensorRT >= 10.14 parses it, the
MatMul form elsewhere, and the fallback when TensorRT rejects the Attention-op form (a stand-in TensorRT: the real
one needs a GPU; the TensorRT calls run under the real bindings in tests/conformance)."""

from __future__ import annotations

import shutil
import sys
import types
from pathlib import Path

import pytest

from ibit_deploy.devicekit import attention_form
from ibit_deploy.devicekit import cli as kit
from ibit_deploy.devicekit.manifest import find_artifact, load_manifest
from ibit_deploy.devicekit.session import EngineBuildError
from ibit_deploy.export.pipeline import ExportOptions, export_checkpoint

from ..conftest import make_fake_trt


@pytest.fixture(scope="module")
def exported(tmp_path_factory, checkpoint_factory):
    """A bias-mode bundle exported with --attention onnx-attention --to tensorrt (the kit inside)."""
    checkpoint = checkpoint_factory(tmp_path_factory.mktemp("bias") / "ckpt", attn_mode="bias")
    out = tmp_path_factory.mktemp("attn") / "bundle"
    export_checkpoint(checkpoint, out, ExportOptions(attention="onnx-attention", to="tensorrt", ort_fusions=False))
    return out


@pytest.fixture
def bundle_copy(exported, tmp_path):
    return Path(shutil.copytree(exported, tmp_path / "bundle"))


def fake_tensorrt(monkeypatch, version: str, reject: str | None = None):
    """:func:`recording_trt`, installed as ``tensorrt`` (the kit imports it itself, as on the device)."""
    fake = recording_trt(version, reject)
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    return fake


def recording_trt(version: str, reject: str | None = None):
    """A stand-in ``tensorrt`` whose parser records every file it parses and rejects the file named ``reject``."""
    fake = make_fake_trt(version)
    fake.state["inputs"] = [types.SimpleNamespace(name="images", shape=(-1, 1, 28, 28))]
    parsed: list[str] = []
    fake.calls["parsed_all"] = parsed
    base = fake.OnnxParser

    class Parser(base):
        def parse_from_file(self, path: str) -> bool:
            parsed.append(Path(path).name)
            if reject is not None and Path(path).name == reject:
                self.errors = [types.SimpleNamespace(code=lambda: "UNSUPPORTED_NODE", desc=lambda: "Attention: no "
                                                     "importer for this form", node=lambda: 3,
                                                     node_name=lambda: "attn", node_operator=lambda: "Attention")]
                self.num_errors = 1
                return False
            return super().parse_from_file(path)

    fake.OnnxParser = Parser
    return fake


@pytest.mark.parametrize("version, form, built_from", [
    ("10.3.0.30", "matmul", "model.onnx"),  # JetPack 6
    ("10.13.3.9", "matmul", "model.onnx"),  # JetPack 7.0 / 7.1
    ("10.14.1.48", "attention-op", "model.attn.onnx"),
    ("10.16.1.11", "attention-op", "model.attn.onnx"),
    ("11.4.1.6", "attention-op", "model.attn.onnx"),
])
def test_the_kit_builds_from_the_form_the_version_parses(bundle_copy, monkeypatch, capsys, version, form, built_from):
    fake = fake_tensorrt(monkeypatch, version)
    assert kit.main([str(bundle_copy), "--no-verify"]) == 0
    assert fake.calls["parsed_all"] == [built_from]
    engine = find_artifact(load_manifest(bundle_copy), kind="engine")
    assert engine["built_from"] == built_from and engine["attention_form"] == form
    assert engine["verified_against"] == "model.onnx"  # the MatMul form: any onnxruntime runs it
    assert ("does not take the Attention op (>= 10.14)" in engine["attention_note"]) == (form == "matmul")


def test_a_rejected_attention_op_form_falls_back_to_the_matmul_form(bundle_copy, monkeypatch, capsys):
    fake = fake_tensorrt(monkeypatch, "10.14.1.48", reject="model.attn.onnx")
    assert kit.main([str(bundle_copy), "--no-verify"]) == 0
    assert fake.calls["parsed_all"] == ["model.attn.onnx", "model.onnx"]
    engine = find_artifact(load_manifest(bundle_copy), kind="engine")
    assert engine["built_from"] == "model.onnx" and engine["attention_form"] == "matmul"
    assert "could not build from model.attn.onnx" in engine["attention_note"]
    assert "no importer for this form" in engine["attention_op_error"]
    assert "note: TensorRT could not build from model.attn.onnx" in capsys.readouterr().err


def test_onnx_flag_names_the_file(bundle_copy, monkeypatch):
    fake = fake_tensorrt(monkeypatch, "10.16.1.11")
    assert kit.main([str(bundle_copy), "--no-verify", "--onnx", str(bundle_copy / "model.onnx")]) == 0
    assert fake.calls["parsed_all"] == ["model.onnx"]
    assert "attention_form" not in find_artifact(load_manifest(bundle_copy), kind="engine")


def test_choice_rules(bundle_copy):
    manifest = load_manifest(bundle_copy)
    choice = attention_form.choose_onnx(bundle_copy, manifest, "fp32", "10.14.1")
    assert choice.form == "attention-op" and choice.fallback == bundle_copy / "model.onnx"
    # on a Jetson the feature follows the version too (JetPack 7.2: 10.16)
    assert attention_form.choose_onnx(bundle_copy, manifest, "fp32", "10.16.1", jetson=True).form == "attention-op"
    # a twin recorded for other bytes than today's model.onnx is not its twin
    stale = {**manifest, "artifacts": [dict(a, sha256="0" * 64) if a["path"] == "model.onnx" else a
                                       for a in manifest["artifacts"]]}
    assert attention_form.choose_onnx(bundle_copy, stale, "fp32", "10.14.1").considered is False
    # a twin whose gate failed is never built from
    failed = {**manifest, "artifacts": [dict(a, gate={"passed": False, "reason": "differs"})
                                        if a["path"] == "model.attn.onnx" else a for a in manifest["artifacts"]]}
    choice = attention_form.choose_onnx(bundle_copy, failed, "fp32", "10.14.1")
    assert choice.form == "matmul" and "failed its check at export (differs)" in choice.reason
    (bundle_copy / "model.attn.onnx").unlink()
    assert "listed but missing" in attention_form.choose_onnx(bundle_copy, manifest, "fp32", "10.14.1").reason


def test_fallback_only_for_the_attention_op_form(tmp_path):
    matmul = attention_form.OnnxChoice(tmp_path / "model.onnx", "matmul", None, "only form", considered=False)

    def reject(path):
        raise EngineBuildError(f"TensorRT's ONNX parser rejected {path}")

    with pytest.raises(EngineBuildError):  # nothing to fall back to: the failure stands
        attention_form.build_with_fallback(matmul, reject)
    twin = attention_form.OnnxChoice(tmp_path / "model.attn.onnx", "attention-op", tmp_path / "model.onnx", "x")
    with pytest.raises(EngineBuildError, match="model.onnx"):  # the fallback's own failure is not hidden
        attention_form.build_with_fallback(twin, reject, say=lambda line: None)


def test_precision_auto_builds_fp32_from_the_attention_op_form(bundle_copy, monkeypatch):
    import numpy as np
    import onnxruntime as ort

    from .test_kit_precision_auto import summary

    fake = fake_tensorrt(monkeypatch, "10.16.1.11")
    reference = ort.InferenceSession(str(bundle_copy / "model.onnx"), providers=["CPUExecutionProvider"])

    def run(trt, engine_bytes, batches, input_name):  # "the engine": the MatMul form's own logits
        return [reference.run(None, {input_name: np.asarray(b)})[0] for b in batches]

    code = kit.main([str(bundle_copy), "--precision", "auto", "--verify-samples", "4"],
                    trtexec_run=lambda argv: summary(1.0), engine_runner=run)
    assert code == 0
    manifest = load_manifest(bundle_copy)
    assert manifest["engine_selection"]["chosen"] == "fp32"  # the only precision this bundle has
    assert manifest["engine_selection"]["built_from"] == {"fp32": "model.attn.onnx"}
    engine = find_artifact(manifest, kind="engine")
    assert engine["built_from"] == "model.attn.onnx" and engine["attention_form"] == "attention-op"
    assert fake.calls["parsed_all"] == ["model.attn.onnx"]
