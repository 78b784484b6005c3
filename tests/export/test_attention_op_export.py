"""ibit-export --attention onnx-attention: the exact ONNX Attention-op twin of model.onnx, its gate, and bad input."""

from __future__ import annotations

import json

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from ibit_deploy.checkpoint import load_checkpoint
from ibit_deploy.cli.export import main
from ibit_deploy.conformance.onnx_support import check_bundle, check_onnx
from ibit_deploy.devicekit.acceptance import artifact_verdict
from ibit_deploy.devicekit.layout import ATTENTION_OP_KIND, ATTENTION_OP_ONNX
from ibit_deploy.devicekit.manifest import attention_op_artifact, load_manifest
from ibit_deploy.errors import GateFailed
from ibit_deploy.export import attention_op
from ibit_deploy.export.attention_graph import attention_cores
from ibit_deploy.export.flashbias import AttentionOption
from ibit_deploy.export.onnx_export import onnx_opset
from ibit_deploy.export.pipeline import ExportOptions, export_checkpoint
from ibit_deploy.fold import fold_masks

TWIN = ATTENTION_OP_ONNX["fp32"]


@pytest.fixture(scope="module")
def bias_checkpoint(tmp_path_factory, checkpoint_factory):
    return checkpoint_factory(tmp_path_factory.mktemp("bias") / "ckpt", attn_mode="bias")


@pytest.fixture(scope="module")
def attn_bundle(bias_checkpoint, tmp_path_factory):
    out = tmp_path_factory.mktemp("attn") / "bundle"
    manifest = export_checkpoint(bias_checkpoint, out, ExportOptions(attention="onnx-attention", to="tensorrt"))
    return out, manifest


def test_option_parsing():
    assert AttentionOption.parse("onnx-attention").form == "onnx-attention"
    assert str(AttentionOption.parse("onnx-attention")) == "onnx-attention"
    with pytest.raises(ValueError, match="'onnx-attention', got 'onnx-attention:4'"):
        AttentionOption.parse("onnx-attention:4")


def test_bundle_carries_both_forms(attn_bundle):
    out, manifest = attn_bundle
    assert load_manifest(out)["attention"] == manifest["attention"]  # every listed file matches its sha256
    assert onnx_opset(out / "model.onnx") == 18 and onnx_opset(out / TWIN) == attention_op.OPSET
    matmul, twin = onnx.load(str(out / "model.onnx")), onnx.load(str(out / TWIN))
    assert {c["form"] for c in attention_cores(matmul)} == {"matmul"}
    cores = attention_cores(twin)
    assert len(cores) == 2 and all(c["form"] == "attention-op" and c["attn_mask"] for c in cores)  # depth 2
    # the folded bias is the op's mask: a (heads, T, T) constant per layer, nothing low-rank
    assert all(list(dims)[-2:] == [50, 50] for c in cores for dims in c["constants"].values())
    assert not any(n.op_type == "Softmax" for n in twin.graph.node)
    entry = attention_op_artifact(manifest, "fp32")
    assert entry["kind"] == ATTENTION_OP_KIND and entry["path"] == TWIN and entry["opset"] == 23
    assert entry["twin_of"] == {"path": "model.onnx", "sha256": manifest["artifacts"][0]["sha256"]}
    gate = entry["gate"]
    assert gate["passed"] and gate["agreement"] == 1.0 and gate["max_abs_diff"] <= attention_op.EXACT_TOLERANCE
    assert gate["real_images"] and gate["reference"] == "model.onnx" and "the same top-1" in gate["reason"]
    block = manifest["attention"]
    assert block["form"] == "onnx-attention" and block["attention_op"]["cores"] == 2
    assert block["onnx"][TWIN]["forms"] == ["attention-op"] and block["onnx"]["model.onnx"]["forms"] == ["matmul"]
    # readers that pick "the ONNX of a precision" never see the twin
    assert [a["path"] for a in manifest["artifacts"] if a["kind"] == "onnx"] == ["model.onnx"]


def test_onnx_runtime_runs_the_twin_and_it_equals_the_folded_model(attn_bundle, bias_checkpoint):
    out, _ = attn_bundle
    model, _ = load_checkpoint(bias_checkpoint)
    images = torch.randn(5, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        torch_logits = fold_masks(model).eval()(images).numpy()
    logits = {}
    for name in ("model.onnx", TWIN):
        session = ort.InferenceSession(str(out / name), providers=["CPUExecutionProvider"])
        logits[name] = session.run(None, {"images": images.numpy()})[0]
    assert np.abs(logits[TWIN] - logits["model.onnx"]).max() <= attention_op.EXACT_TOLERANCE
    assert np.abs(logits[TWIN] - torch_logits).max() <= 1e-4
    assert (logits[TWIN].argmax(1) == logits["model.onnx"].argmax(1)).all()


def test_parser_tables_tell_the_forms_apart(attn_bundle):
    out, _ = attn_bundle
    results = check_bundle(out)  # model.onnx against 10.3's table, the twin against >= 10.14's
    assert results["model.onnx"]["passed"] and results["model.onnx"]["parser"] == "TensorRT 10.3"
    assert results[TWIN]["passed"] and results[TWIN]["parser"] == "TensorRT >= 10.14", results[TWIN]["problems"]
    old = check_onnx(out / TWIN)  # what JetPack 6's parser would meet
    problems = {p["op"] for p in old["problems"]}
    assert not old["passed"] and {"opset", "Attention"} <= problems


def test_a_failed_gate_fails_the_export_and_the_kit_skips_the_twin(bias_checkpoint, tmp_path, monkeypatch):
    monkeypatch.setattr(attention_op, "EXACT_TOLERANCE", -1.0)  # a bound no model meets
    out = tmp_path / "fail"
    with pytest.raises(GateFailed, match=r"model.attn.onnx \(ONNX Attention op vs model.onnx\).*not the same model"):
        export_checkpoint(bias_checkpoint, out, ExportOptions(attention="onnx-attention"))
    manifest = load_manifest(out)
    entry = attention_op_artifact(manifest, "fp32")
    assert entry["gate"]["passed"] is False and artifact_verdict(entry, manifest).failed
    assert manifest["attention"]["attention_op"]["passed"] is False
    assert artifact_verdict(manifest["artifacts"][0], manifest).passed is not False  # model.onnx stays good


def test_mask_mode_and_opset_23_are_refused_before_anything_is_written(tiny_checkpoint, bias_checkpoint, tmp_path,
                                                                      capsys):
    out = tmp_path / "mask"
    assert main([str(tiny_checkpoint), "--attention", "onnx-attention", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "mask-mode IBiT" in err and "has no softmax" in err and "--attention dense" in err
    assert not out.exists() and not list(tmp_path.iterdir())
    assert main([str(bias_checkpoint), "--attention", "onnx-attention", "--opset", "23", "--out", str(out)]) == 2
    assert "needs --opset <= 22" in capsys.readouterr().err and not out.exists()


def test_help_text_says_where_each_form_goes(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "'onnx-attention'" in text and ">= 10.14" in text and "Mask-mode IBiT has no softmax" in text


def test_cli_prints_the_twin(bias_checkpoint, tmp_path, capsys):
    out = tmp_path / "cli"
    assert main([str(bias_checkpoint), "--attention", "onnx-attention", "--out", str(out), "--quiet",
                 "--no-ort-fusions"]) == 0
    text = capsys.readouterr().out
    assert "onnx-attention: model.attn.onnx (2 Attention ops, opset 23) vs model.onnx: the same top-1" in text
    assert json.loads((out / "manifest.json").read_text())["export"]["attention"] == "onnx-attention"
