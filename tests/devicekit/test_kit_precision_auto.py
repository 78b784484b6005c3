"""``build_engine.py --precision auto`` end to end on CPU, through the kit's seams: a stand-in ``tensorrt`` module
(tests/conftest.py) builds, ``engine_runner`` runs each "engine" as ONNX Runtime on the real fixture ONNX plus noise,
and ``trtexec_run`` answers each timing run with a summary in trtexec's documented format (SAMPLES written for this
test, not measurements). The check against ONNX Runtime, the acceptance table, the budget, the selection, the
manifest record and the exit codes are the kit's own code."""

from __future__ import annotations

import json
import re
import shutil
import sys
import types
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from ibit_deploy.conformance.trtexec_flags import check_trtexec_argv
from ibit_deploy.devicekit import auto_build, launcher, session
from ibit_deploy.devicekit import cli as kit
from ibit_deploy.devicekit.fileio import sha256_file

from ..conftest import make_fake_trt

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "bundle_v1"
CHW = (1, 28, 28)


def summary(median_ms: float) -> str:
    """A trtexec performance summary in its documented format (SAMPLE numbers)."""
    stats = (f"min = {median_ms * 0.9:.4f} ms, max = {median_ms * 1.5:.4f} ms, mean = {median_ms:.4f} ms, "
             f"median = {median_ms:.4f} ms, percentile(90%) = {median_ms * 1.1:.4f} ms, "
             f"percentile(99%) = {median_ms * 1.3:.4f} ms")
    return "\n".join(["&&&& RUNNING TensorRT.trtexec [TensorRT v100300] # trtexec",
                      "[I] === Performance summary ===", f"[I] Throughput: {1000 / median_ms:.1f} qps",
                      f"[I] Latency: {stats}", f"[I] GPU Compute Time: {stats}",
                      "[I] Total Host Walltime: 3.0 s", "&&&& PASSED TensorRT.trtexec"])


@pytest.fixture
def auto_bundle(tmp_path):
    """The fixture model as the bundle's fp32, fp16 and int8 ONNX, calib.npz with labels, a 1-point gate budget."""
    root = tmp_path / "bundle"
    root.mkdir()
    artifacts = []
    for name, precision in (("model.onnx", "fp32"), ("model.fp16.onnx", "fp16"), ("model.int8.onnx", "int8")):
        shutil.copy(FIXTURE / "model.onnx", root / name)
        artifacts.append({"path": name, "kind": "onnx", "precision": precision,
                          **({"gate": {"passed": True, "max_drop": 0.01}} if precision == "int8" else {})})
    images = np.random.default_rng(0).standard_normal((12, *CHW)).astype(np.float32)
    session = ort.InferenceSession(str(root / "model.onnx"), providers=["CPUExecutionProvider"])
    labels = session.run(None, {"images": images})[0].argmax(1)  # FP32 ONNX top-1 = 1.0 on these
    np.savez(root / "calib.npz", images=images, labels=labels)
    artifacts.append({"path": "calib.npz", "kind": "calibration"})
    shutil.copy(launcher.__file__, root / "build_engine.py")
    artifacts.append({"path": "build_engine.py", "kind": "script", "precision": "fp16"})
    for entry in artifacts:  # the kit checks every listed file against its sha256 before anything else
        entry["sha256"] = sha256_file(root / entry["path"])
    manifest = {"format_version": 2, "artifacts": artifacts,
                "input": {"name": "images", "shape": ["batch", *CHW], "batch_range": [1, 8], "opt_batch": 4}}
    (root / "manifest.json").write_text(json.dumps(manifest))
    return root


def fake_tensorrt(monkeypatch, version="10.3.0.30"):
    fake = make_fake_trt(version)
    fake.state["inputs"] = [types.SimpleNamespace(name="images", shape=(-1, *CHW))]
    monkeypatch.setitem(sys.modules, "tensorrt", fake)  # the kit imports tensorrt itself, as on the device
    return fake


def engine_runner(fake, noise):
    """Runs "the engine just built" (the stand-in records which ONNX it parsed) as ONNX Runtime plus noise."""
    rng = np.random.default_rng(1)

    def run(trt, engine_bytes, batches, input_name):
        assert trt is fake and engine_bytes == fake.state["engine"]
        precision = {"model.onnx": "fp32", "model.fp16.onnx": "fp16", "model.int8.onnx": "int8"}[
            Path(fake.calls["parsed"]).name]
        session = ort.InferenceSession(fake.calls["parsed"], providers=["CPUExecutionProvider"])
        return [session.run(None, {input_name: b})[0] + noise[precision] * rng.standard_normal((len(b), 10))
                for b in batches]

    return run


def trtexec(medians, seen):
    def run(argv):
        seen.append(argv)
        engine = next(a for a in argv if a.startswith("--loadEngine="))
        batch = int(re.search(r"--shapes=images:(\d+)x", " ".join(argv)).group(1))
        precision = re.search(r"engine\.(\w+)\.plan$", engine).group(1)
        return summary(medians[precision] * batch)

    return run


def test_fastest_passing_engine_ships_and_every_candidate_is_recorded(auto_bundle, monkeypatch, capsys):
    fake = fake_tensorrt(monkeypatch)
    seen = []
    code = kit.main(["--bundle", str(auto_bundle), "--precision", "auto"],
                    trtexec_run=trtexec({"fp32": 2.0, "fp16": 0.8, "int8": 1.1}, seen),  # INT8 slower than FP16
                    engine_runner=engine_runner(fake, {"fp32": 0.0, "fp16": 1e-3, "int8": 1e-2}))
    out = capsys.readouterr().out
    assert code == 0
    manifest = json.loads((auto_bundle / "manifest.json").read_text())
    selection = manifest["engine_selection"]
    assert selection["chosen"] == "fp16" and selection["engine"] == "engine.plan"
    assert [c["precision"] for c in selection["candidates"]] == ["fp32", "fp16", "int8"]
    assert all(c["passed"] for c in selection["candidates"])
    fp16 = selection["candidates"][1]
    assert fp16["accuracy"]["agreement"] == 1.0 and fp16["accuracy"]["top1"] == 1.0
    assert fp16["gpu_compute_ms"]["4"]["median_ms"] == pytest.approx(3.2)
    assert set(fp16["gpu_compute_ms"]["1"]) >= {"median_ms", "p90_ms", "p99_ms"}
    assert selection["budget"] == {"max_top1_drop": 0.01, "reference_top1": 1.0,
                                   "source": "quantization gate of model.int8.onnx"}
    engine = next(a for a in manifest["artifacts"] if a["path"] == "engine.plan")
    assert engine["precision"] == "fp16" and engine["gate"]["passed"] and engine["selected_by"] == "--precision auto"
    assert (auto_bundle / "engine.plan").read_bytes() == fake.state["engine"]
    assert not list(auto_bundle.glob(".auto-*")) and not list(auto_bundle.glob("engine.*.plan"))
    # one recipe: batch 1 and the opt batch for every candidate, each a valid trtexec 10.x command line
    assert sorted(re.search(r"images:(\d+)x", " ".join(a)).group(1) for a in seen) == ["1", "1", "1", "4", "4", "4"]
    assert all(check_trtexec_argv(a, 10) == [] for a in seen)
    assert "CHOSEN" in out and "b4 p99" in out and "fastest passing at batch 4: fp16" in out


def test_every_candidate_failing_exits_1_and_ships_nothing(auto_bundle, monkeypatch, capsys):
    fake = fake_tensorrt(monkeypatch)
    code = kit.main(["--bundle", str(auto_bundle), "--precision", "auto"],
                    trtexec_run=trtexec({"fp32": 2.0, "fp16": 0.8, "int8": 0.5}, []),
                    engine_runner=engine_runner(fake, {"fp32": 50.0, "fp16": 50.0, "int8": 50.0}))
    assert code == 1
    manifest = json.loads((auto_bundle / "manifest.json").read_text())
    assert manifest["engine_selection"]["chosen"] is None
    assert not any(c["passed"] for c in manifest["engine_selection"]["candidates"])
    assert not any(a.get("kind") == "engine" for a in manifest["artifacts"])
    assert not (auto_bundle / "engine.plan").exists() and not list(auto_bundle.glob(".auto-*"))
    assert "nothing shipped" in capsys.readouterr().out


def test_int8_fastest_but_over_the_budget_is_not_shipped(auto_bundle, monkeypatch):
    fake = fake_tensorrt(monkeypatch)
    # --max-drop 0 (points): any top-1 lost against the FP32 ONNX fails; noise 3.0 flips some int8 labels
    code = kit.main(["--bundle", str(auto_bundle), "--precision", "auto", "--max-drop", "0"],
                    trtexec_run=trtexec({"fp32": 2.0, "fp16": 0.8, "int8": 0.5}, []),
                    engine_runner=engine_runner(fake, {"fp32": 0.0, "fp16": 0.0, "int8": 3.0}))
    selection = json.loads((auto_bundle / "manifest.json").read_text())["engine_selection"]
    int8 = selection["candidates"][2]
    assert code == 0 and selection["chosen"] == "fp16" and not int8["passed"]
    assert selection["budget"]["source"] == "--max-drop"
    assert any("below the FP32 ONNX" in f or "agreement" in f for f in int8["failures"]), int8["failures"]


@pytest.mark.parametrize("version", ["9.0.1.3", "12.0.0"])
def test_unknown_tensorrt_versions_exit_3_naming_the_supported(auto_bundle, monkeypatch, capsys, version):
    fake_tensorrt(monkeypatch, version)
    code = kit.main(["--bundle", str(auto_bundle), "--precision", "auto"], trtexec_run=lambda argv: "")
    assert code == 3
    assert re.search(r"TensorRT \d+\.x is not supported: this kit knows TensorRT 10\.x and 11\.x", capsys.readouterr().err)
    assert code == kit.main(["--bundle", str(auto_bundle), "--precision", "fp16", "--no-verify"])  # the plain build too


def test_without_cuda_python_auto_exits_3(auto_bundle, monkeypatch, capsys):
    try:
        session.import_cudart()
        pytest.skip("cuda-python is installed here")
    except ImportError:
        pass
    fake_tensorrt(monkeypatch)
    assert kit.main(["--bundle", str(auto_bundle), "--precision", "auto"], trtexec_run=lambda argv: "") == 3
    assert "needs cuda-python" in capsys.readouterr().err
    assert not (auto_bundle / "engine.plan").exists()


def test_without_trtexec_auto_exits_3(auto_bundle, monkeypatch, capsys, tmp_path):
    fake_tensorrt(monkeypatch)
    monkeypatch.delenv("TRTEXEC", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    if Path("/usr/src/tensorrt/bin/trtexec").exists():
        pytest.skip("this machine has JetPack's trtexec")
    assert kit.main(["--bundle", str(auto_bundle), "--precision", "auto"], engine_runner=lambda *a: []) == 3
    assert "trtexec, which was not found" in capsys.readouterr().err


def test_budget_comes_from_the_tightest_gate_else_acceptance_only():
    gates = {"artifacts": [{"path": "model.int8.onnx", "gate": {"max_drop": 0.02}},
                           {"path": "model.fp16.onnx", "gate": {"max_drop": 0.005}}, {"path": "model.onnx"}]}
    assert auto_build.accuracy_budget(gates, 0.9).to_dict() == {"max_top1_drop": 0.005, "reference_top1": 0.9,
                                                         "source": "quantization gate of model.fp16.onnx"}
    none = auto_build.accuracy_budget({"artifacts": []}, None)
    assert none.max_top1_drop is None and none.check({"top1": 0.0}) == [] and "acceptance table only" in none.source
    assert auto_build.accuracy_budget(gates, 0.9, max_drop=0.0).check({"top1": 0.89})  # --max-drop 0 points


def test_max_drop_without_auto_is_refused(auto_bundle):
    with pytest.raises(SystemExit) as exc:
        kit.main(["--bundle", str(auto_bundle), "--precision", "fp16", "--max-drop", "1"])
    assert exc.value.code == 2


@pytest.mark.parametrize("extra", [["--legacy"], ["--skip-build"], ["--print-trtexec"], ["--max-drop", "-1"]])
def test_auto_refuses_conflicting_arguments(auto_bundle, extra):
    with pytest.raises(SystemExit) as exc:
        kit.main(["--bundle", str(auto_bundle), "--precision", "auto", *extra])
    assert exc.value.code == 2
