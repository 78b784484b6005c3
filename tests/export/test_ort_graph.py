"""ONNX Runtime's fused graphs (model*.ort.onnx): the fusions, the export stage's gate, and who runs them."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import TensorProto, helper

from ibit_deploy.devicekit.layout import ORT_KIND, ORT_ONNX
from ibit_deploy.devicekit.manifest import find_artifact, load_manifest, write_manifest
from ibit_deploy.export.onnx_export import export_onnx
from ibit_deploy.export.ort_fusions import CONTRIB_DOMAIN, fuse_for_ort
from ibit_deploy.export.ort_graph import ort_graph_stage
from ibit_deploy.export.ort_rewrites import REDUCE_L2, SPLIT_QKV
from ibit_deploy.export.pipeline import ExportOptions, export_checkpoint
from ibit_deploy.export.probe import probe_images
from ibit_deploy.fold import fold_masks
from ibit_deploy.models import create_model
from ibit_deploy.runtime.load import load, make_runners


@pytest.fixture(scope="module")
def mask_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folded mask-mode ibit_test_patch4_28 as fp32 ONNX (its norm is an opset-18 ReduceL2 with axes input)."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("ortg") / "model.onnx"
    return export_onnx(fold_masks(create_model("ibit_test_patch4_28").eval()), path, (1, 28, 28))


def _logits(path: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"images": images})[0]


def test_fusions_apply_to_the_mask_mode_graph_and_keep_its_logits(mask_onnx: Path, tmp_path: Path):
    default = fuse_for_ort(mask_onnx, tmp_path / "default.onnx")
    assert default["fusions"] == {"BiasGelu": 2}  # SkipLN: off by default
    # in both blocks the Frobenius norm's ReduceL2 becomes Sqrt(ReduceSum(Mul(S, S))) and the qkv projection three
    # (export/ort_rewrites.py)
    assert default["rewrites"] == {REDUCE_L2: 2, SPLIT_QKV: 2} and default["ops_before"]["ReduceL2"] == 2
    assert "ReduceL2" not in default["ops_after"]
    assert default["ops_after"]["Sqrt"] == default["ops_before"].get("Sqrt", 0) + 2
    assert default["ops_after"]["ReduceSum"] == default["ops_before"].get("ReduceSum", 0) + 2
    report = fuse_for_ort(mask_onnx, tmp_path / "fused.onnx", num_heads=2, hidden_size=32, disabled=())
    # SkipLayerNormalization needs the optimizer's shape inference, which stops at ReduceL2 without our rule
    assert report["fusions"] == {"BiasGelu": 2, "SkipLayerNormalization": 4}
    fused = onnx.load(str(tmp_path / "fused.onnx"))
    assert CONTRIB_DOMAIN in {o.domain for o in fused.opset_import}
    onnx.checker.check_model(fused)
    assert report["ops_after"][f"{CONTRIB_DOMAIN}:SkipLayerNormalization"] == 4
    images = np.random.default_rng(0).standard_normal((8, 1, 28, 28)).astype(np.float32)
    np.testing.assert_allclose(_logits(tmp_path / "fused.onnx", images), _logits(mask_onnx, images), atol=1e-5)
    np.testing.assert_allclose(_logits(tmp_path / "default.onnx", images), _logits(mask_onnx, images), atol=1e-5)


def _stage_bundle(tmp_path: Path, source: Path) -> tuple[Path, dict]:
    """A bundle folder holding ``source`` as model.onnx and the manifest blocks the stage reads."""
    from ibit_deploy.devicekit.manifest import artifact_entry

    root = tmp_path / "bundle"
    root.mkdir()
    shutil.copy(source, root / "model.onnx")
    manifest = {"input": {"name": "images", "shape": ["batch", 1, 28, 28], "dtype": "float32", "layout": "NCHW",
                          "image_size": [28, 28], "mean": [0.5], "std": [0.5]},
                "data": {"spec": "mnist5k", "val_fraction": 0.2, "seed": 0},
                "artifacts": [artifact_entry(root, "model.onnx", "onnx", "fp32")]}
    return root, manifest


def test_stage_refuses_a_fused_graph_that_fails_its_gate(mask_onnx: Path, tmp_path: Path):
    root, manifest = _stage_bundle(tmp_path, mask_onnx)
    probe = probe_images(manifest, 32)
    entries, records = ort_graph_stage(root, manifest, probe, num_heads=2, hidden_size=32, max_drop=0.01,
                                       fp32_max_abs_diff=-1.0)  # no graph can meet this bound
    assert entries == [] and not (root / ORT_ONNX["fp32"]).exists()
    assert records[0]["status"] == "refused" and "failed its gate" in records[0]["reason"]
    assert records[0]["gate"]["real_images"] is True and records[0]["gate"]["passed"] is False

    entries, records = ort_graph_stage(root, manifest, probe, num_heads=2, hidden_size=32, max_drop=0.01,
                                       fp32_max_abs_diff=1e-3)
    assert [e["path"] for e in entries] == [ORT_ONNX["fp32"]] and records[0]["status"] == "written"
    assert entries[0]["optimized_from"] == {"path": "model.onnx", "sha256": manifest["artifacts"][0]["sha256"]}
    assert entries[0]["gate"]["passed"] and entries[0]["gate"]["agreement"] == 1.0


def test_stage_skips_a_graph_no_fusion_changes(tmp_path: Path):
    graph = helper.make_graph([helper.make_node("Flatten", ["images"], ["flat"]),
                               helper.make_node("MatMul", ["flat", "w"], ["logits"])], "plain",
                              [helper.make_tensor_value_info("images", TensorProto.FLOAT, ["batch", 1, 28, 28])],
                              [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", 10])],
                              [onnx.numpy_helper.from_array(np.ones((784, 10), np.float32), "w")])
    source = tmp_path / "linear.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)]), source)
    root, manifest = _stage_bundle(tmp_path, source)
    entries, records = ort_graph_stage(root, manifest, probe_images(manifest, 4), num_heads=0, hidden_size=0,
                                       max_drop=0.01)
    assert entries == [] and records[0]["status"] == "skipped" and "no fusion" in records[0]["reason"]
    assert not (root / ORT_ONNX["fp32"]).exists()


def test_export_lists_the_gated_fused_graph_and_ort_backends_run_it(trained_bundle, tmp_path: Path):
    src, manifest = trained_bundle
    fused = find_artifact(manifest, kind=ORT_KIND, precision="fp32")
    plain = find_artifact(manifest, kind="onnx", precision="fp32")
    assert fused["path"] == ORT_ONNX["fp32"] and fused["optimized_from"]["sha256"] == plain["sha256"]
    assert fused["gate"]["passed"] and fused["gate"]["real_images"] and fused["fusions"] == {"BiasGelu": 2}
    assert fused["rewrites"] == {REDUCE_L2: 2, SPLIT_QKV: 2} == manifest["ort_graphs"][0]["rewrites"]
    assert "SkipLayerNormalization" in fused["optimizer"]["disabled"]
    assert manifest["ort_graphs"][0]["status"] == "written"

    with load(src, "ort-cpu") as runner:
        assert runner.onnx_path.name == ORT_ONNX["fp32"]
    with load(src, "ort-cpu", ort_graph="plain") as runner:
        assert runner.onnx_path.name == "model.onnx"
    rows = {c.backend: c.artifact for c in make_runners(src, ["ort-cpu", "ort-cuda", "ort-trt"], manifest)}
    assert rows == {"ort-cpu": ORT_ONNX["fp32"], "ort-cuda": ORT_ONNX["fp32"], "ort-trt": "model.onnx"}

    # a twin recorded as failed, or made from other bytes than the file it claims, is not run
    bundle = Path(shutil.copytree(src, tmp_path / "b"))
    edited = json.loads((bundle / "manifest.json").read_text())
    find_artifact(edited, kind=ORT_KIND)["gate"]["passed"] = False
    write_manifest(bundle, edited)
    assert make_runners(bundle, ["ort-cpu"], load_manifest(bundle))[0].artifact == "model.onnx"
    find_artifact(edited, kind=ORT_KIND)["gate"]["passed"] = True
    find_artifact(edited, kind=ORT_KIND)["optimized_from"]["sha256"] = "0" * 64
    write_manifest(bundle, edited)
    assert make_runners(bundle, ["ort-cpu"], load_manifest(bundle))[0].artifact == "model.onnx"


def test_ibit_bench_times_the_fused_graph_unless_told_plain(trained_bundle, tmp_path: Path):
    from ibit_deploy.bench.harness import run_benchmark

    bundle = Path(shutil.copytree(trained_bundle[0], tmp_path / "b"))
    for graph, expected in (("fused", ORT_ONNX["fp32"]), ("plain", "model.onnx")):
        report = run_benchmark(bundle, backends=["ort-cpu"], limit=20, batches=[1], warmup=0, iters=2,
                               out_dir=tmp_path / graph, progress=False, ort_graph=graph)
        assert [r["artifact"] for r in report["runs"]] == [expected]


def test_no_ort_fusions_writes_no_fused_graph(tiny_checkpoint: Path, tmp_path: Path):
    manifest = export_checkpoint(tiny_checkpoint, tmp_path / "b", ExportOptions(ort_fusions=False))
    assert find_artifact(manifest, kind=ORT_KIND) is None and "ort_graphs" not in manifest
    assert not (tmp_path / "b" / ORT_ONNX["fp32"]).exists()
