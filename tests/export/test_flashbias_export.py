"""ibit-export --attention flashbias: the FlashBias bundle, its gate against the dense-bias model, and bad input."""

from __future__ import annotations

import onnx
import pytest

from ibit_deploy.cli.export import main
from ibit_deploy.devicekit.manifest import load_manifest
from ibit_deploy.export.attention_graph import check_no_dense_bias
from ibit_deploy.export.flashbias import AttentionOption
from ibit_deploy.export.pipeline import ExportFailed, ExportOptions, export_checkpoint
from ibit_deploy.fold import RankPolicy


@pytest.fixture(scope="module")
def bias_checkpoint(tmp_path_factory, checkpoint_factory):
    return checkpoint_factory(tmp_path_factory.mktemp("bias") / "ckpt", attn_mode="bias")


def test_attention_option_parsing():
    assert AttentionOption.parse("dense") == AttentionOption()
    assert AttentionOption.parse("flashbias").policy == RankPolicy("energy", 0.995)
    assert AttentionOption.parse("flashbias:16").policy == RankPolicy("rank", 16)
    assert str(AttentionOption.parse("flashbias:energy=0.99")) == "flashbias:energy=0.99"
    assert AttentionOption.parse("flashbias:error=0.05").policy == RankPolicy("error", 0.05)
    for bad, message in [("sparse", "must be 'dense', 'flashbias"), ("dense:4", "must be 'dense', 'flashbias"),
                         ("flashbias:energy=0", r"energy must be in \(0, 1\]"),
                         ("flashbias:0", "rank must be an integer >= 1")]:
        with pytest.raises(ValueError, match=message):
            AttentionOption.parse(bad)


def test_flashbias_bundle(bias_checkpoint, tmp_path):
    out = tmp_path / "fb"
    manifest = export_checkpoint(bias_checkpoint, out, ExportOptions(attention="flashbias:energy=0.99"))
    assert load_manifest(out)["attention"] == manifest["attention"]
    block = manifest["attention"]
    assert block["form"] == "flashbias" and block["policy"] == "energy=0.99"
    assert manifest["export"]["attention"] == "flashbias:energy=0.99"
    assert len(block["layers"]) == 2  # ibit_test has depth 2
    for layer in block["layers"]:
        assert 1 <= layer["rank"] <= layer["tokens"] and layer["energy_min"] >= 0.99
        assert (layer["head_dim"] + layer["width"]) % 8 == 0 and layer["max_abs_error"] >= 0
    gate = block["gate"]
    assert gate["passed"] and gate["count"] > 0 and "validation images of mnist5k" in gate["images"]
    assert gate["real_images"] is True and "labels" not in gate
    # devicekit.agreement names, fractions (as every comparison record of manifest v2)
    assert gate["max_drop"] == 0.01 and 0.0 <= gate["agreement"] <= 1.0 and gate["top1_drop"] <= 0.01
    assert gate["max_abs_diff"] is not None and {"top1", "top1_ref", "cosine", "mean_abs_diff"} <= set(gate)
    onnx_info = block["onnx"]["model.onnx"]
    assert onnx_info["forms"] == ["matmul"] and onnx_info["cores"] == 2
    check_no_dense_bias(onnx.load(str(out / "model.onnx")))
    assert manifest["artifacts"][0]["parity"]["max_abs_diff"] <= 1e-4


def test_flashbias_gate_failure_fails_the_export(bias_checkpoint, tmp_path):
    out = tmp_path / "fail"
    # a budget no model meets (top-1 must rise 100 points; a fraction): the gate fails, the manifest says why
    with pytest.raises(ExportFailed, match=r"flashbias vs dense bias.*more than the allowed -100.00%"):
        export_checkpoint(bias_checkpoint, out, ExportOptions(attention="flashbias:2", quantize={"max_drop": -1.0}))
    block = load_manifest(out)["attention"]
    assert block["gate"]["passed"] is False and block["policy"] == "rank=2" and block["gate"]["max_drop"] == -1.0


def test_cli_rejects_bad_attention_and_inapplicable_models(tiny_checkpoint, bias_checkpoint, tmp_path, capsys):
    assert main([str(bias_checkpoint), "--attention", "flashbias:energy=1.5", "--out", str(tmp_path / "a")]) == 2
    assert "energy must be in (0, 1]" in capsys.readouterr().err
    assert main([str(bias_checkpoint), "--attention", "flashbias:51", "--out", str(tmp_path / "b")]) == 2
    assert "rank must be in [1, 50] (the token count), got 51" in capsys.readouterr().err
    assert main([str(tiny_checkpoint), "--attention", "flashbias", "--out", str(tmp_path / "c")]) == 2
    err = capsys.readouterr().err
    assert "FlashBias does not apply to mask-mode IBiT" in err and "--attention dense" in err


@pytest.mark.slow
def test_flashbias_fp16_int8_follow_the_fused_attention_rules(train_tiny_factory, tmp_path):
    # a trained model: on an untrained one (~10% top-1) the INT8 accuracy gate measures noise, and failed on one CPU
    checkpoint = train_tiny_factory(tmp_path / "trained_bias", attn_mode="bias")
    out = tmp_path / "q"
    manifest = export_checkpoint(checkpoint, out, ExportOptions(
        attention="flashbias:16", precision="fp32,fp16,int8", quantize={"calib_count": 64, "eval_count": 200}))
    fp16 = next(a for a in manifest["artifacts"] if a["path"] == "model.fp16.onnx")
    assert fp16["quantization"]["keep_op_types"] == ["LayerNormalization"] and fp16["gate"]["passed"]
    graph = onnx.load(str(out / "model.fp16.onnx")).graph
    softmax_types = {n.name for n in graph.node if n.op_type == "Softmax"}
    assert softmax_types and not softmax_types & set(fp16["float_nodes"])
    int8 = manifest["attention"]["onnx"]["model.int8.onnx"]["int8_mha"]
    assert int8["cores"] == 2
    assert int8["qk_dequantized"] == int8["softmax_output_quantized"] == int8["output_quantized"] == 2
    assert int8["qk_head_sizes"] == [32] and int8["tokens"] == 50 and int8["fused_int8_mha_eligible"]


def test_stage_without_the_dataset_says_it_gated_on_random_inputs(capsys):
    import ibit_deploy.models as models
    from ibit_deploy.export.flashbias import flashbias_stage
    from ibit_deploy.export.probe import RANDOM_INPUTS
    from ibit_deploy.fold import fold_masks

    folded = fold_masks(models.create_model("ibit_test_patch4_28", attn_mode="bias"))
    manifest = {"input": {"shape": ["batch", 1, 28, 28], "mean": [0.5], "std": [0.5]}, "data": {}}
    with pytest.warns(UserWarning, match=RANDOM_INPUTS):
        model, block = flashbias_stage(folded, manifest, AttentionOption.parse("flashbias:50"), eval_count=32)
    gate = block["gate"]
    # never silent: the record says the inputs are random and why, and what stood in for labels
    assert RANDOM_INPUTS in gate["images"] and "records no dataset" in gate["images"]
    assert gate["real_images"] is False and "dense model's top-1" in gate["labels"] and gate["count"] == 32
    # rank 50 = T: exact, so the FlashBias model agrees everywhere and the drop is 0 (fractions)
    assert gate["passed"] and gate["agreement"] == 1.0 and gate["top1_drop"] == 0.0 and gate["max_abs_diff"] < 1e-4
    assert block["max_rank"] == 50 and block["max_bias_error"] < 1e-5 and gate["max_drop"] == 0.01


def test_cli_warns_when_the_gate_ran_on_random_inputs(tmp_path, checkpoint_factory, capsys):
    from ibit_deploy.checkpoint import CONFIG_FILE
    from ibit_deploy.devicekit.fileio import atomic_write_json, read_json

    ckpt = checkpoint_factory(tmp_path / "nodata", attn_mode="bias")
    config = read_json(ckpt / CONFIG_FILE)
    config["data"]["spec"] = f"cifar10:{tmp_path / 'not-here'}"  # a dataset this machine does not have
    atomic_write_json(ckpt / CONFIG_FILE, config)
    assert main([str(ckpt), "--attention", "flashbias:50", "--eval-count", "16", "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "WARNING: the FlashBias gate ran on 16 random normal inputs, NOT real images" in err
    assert load_manifest(tmp_path / "b")["attention"]["gate"]["real_images"] is False
