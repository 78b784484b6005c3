"""``ibit-deploy compare`` bad input: exit 2 with a clear message, before any training starts."""

from __future__ import annotations

import pytest

from ibit_deploy.cli.main import main

BASE = ["compare", "--data", "synthetic:256", "--embed-dim", "32", "--depth", "2", "--num-heads", "2",
        "--batch-size", "16", "--seeds", "0"]


@pytest.mark.parametrize("extra, message", [
    (["--candidates", "ibit,swin"], "unknown candidate(s) 'swin'; known candidates: ibit, vit, convit, resnet"),
    (["--fractions", "0.5,1.2"], "--fractions must be numbers in (0, 1]"),
    (["--fractions", "0.5", "--steps", "3"], "--steps 3 is too small"),
    (["--data", "synthetic:4", "--batch-size", "1", "--steps", "1"], "has 1 image(s); the split needs at least 2"),
    (["--backend", "cuda-magic"], "unknown backend 'cuda-magic'"),
    (["--latency-batches", "8,32"], "--latency-batches must include 1"),
    (["--fractions", "0.3333,0.33334"], "too close to tell apart"),
])
def test_bad_input_exits_2_before_training(tmp_path, capsys, extra, message):
    out = tmp_path / "study"
    assert main([*BASE, "--out", str(out), *extra]) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_report_of_an_empty_folder_is_a_clear_error(tmp_path, capsys):
    assert main(["compare", "--out", str(tmp_path), "--report-only"]) == 2
    assert "study file not found" in capsys.readouterr().err


def test_quickstart_prints_the_compare_command_and_it_is_a_valid_command_line(tmp_path, monkeypatch, capsys):
    import shlex

    import ibit_deploy.quickstart as qs
    from ibit_deploy.cli.compare import OWN_DATA_EXAMPLE

    report = tmp_path / "report.md"
    report.write_text("| table |\n")
    summary = {"report_markdown": str(report), "tensorrt": "", "top1_target_met": True, "val_top1": 0.97,
               "checkpoint": "c", "bundle": "b", "report": "r", "bench_status": "complete", "gates_passed": True,
               "gate_failed": None}
    monkeypatch.setattr(qs, "quickstart", lambda config: summary)  # our own pipeline, already tested end to end
    assert main(["quickstart", "--out", str(tmp_path)]) == 0
    assert OWN_DATA_EXAMPLE in capsys.readouterr().out
    argv = shlex.split(OWN_DATA_EXAMPLE)[1:]  # "ibit-deploy compare ..." -> ["compare", ...]
    argv = [a.replace("/path/to/images", str(tmp_path / "missing")).replace("runs/compare", str(tmp_path / "c"))
            for a in argv]
    assert main(argv) == 2
    assert "ImageFolder root not found" in capsys.readouterr().err
