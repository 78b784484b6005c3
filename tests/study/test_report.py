"""Aggregation, targets, recommendation and the Pareto front, on result records shaped like the worker's (top-1 a
fraction: the helpers below take percent, as people write it, and store fractions)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from ibit_deploy.study import layout
from ibit_deploy.study.report import _seedwise, aggregate, paired, pareto_front, recommend, targets, write_report


def _result(name, fraction, seed, acc, ms, role="candidate"):
    return {"id": f"s{seed}/{fraction}/{name}", "name": name, "role": role, "fraction": fraction, "seed": seed,
            "val_acc1": acc / 100, "train_seconds": 10.0, "export": {"num_params": 100},
            "convergence": {"converged": True}, "latency": {"batches": {"1": {"p50_ms": ms}}}}


def _study(results, candidates=None):
    listed = candidates or sorted({r["name"] for r in results if r["role"] == "candidate"})
    return {"seeds": [0, 1], "fractions": [0.25, 1.0], "candidates": listed, "results": results}


def test_the_role_is_the_studys_not_the_runs():
    # resnet ran first as a LIB-KD teacher only; once the study lists it, its runs are a candidate's
    results = [_result("ibit_kd", 1.0, 0, 95.0, 1.0), _result("resnet", 1.0, 0, 99.0, 0.3, role="teacher"),
               _result("rednet", 1.0, 0, 98.0, 6.0, role="teacher")]
    assert aggregate(_study(results))["resnet"]["role"] == "teacher"
    table = aggregate(_study(results, candidates=["ibit_kd", "resnet"]))
    assert table["resnet"]["role"] == "candidate" and table["rednet"]["role"] == "teacher"


def test_mean_std_over_seeds_and_median_latency():
    table = aggregate(_study([_result("ibit", 1.0, 0, 90.0, 1.0), _result("ibit", 1.0, 1, 92.0, 3.0)]))
    cell = table["ibit"]["top1"][1.0]
    assert cell["mean"] == pytest.approx(0.91) and cell["std"] == pytest.approx(0.014142, abs=1e-6) and cell["n"] == 2
    assert table["ibit"]["latency_p50_ms"]["1"] == pytest.approx(2.0)


def test_targets_and_recommendation():
    results = [_result("ibit", 0.25, s, 95.0 + s, 2.0) for s in (0, 1)] + \
              [_result("ibit", 1.0, s, 97.0, 2.0) for s in (0, 1)] + \
              [_result("vit", 1.0, s, 94.0, 1.0) for s in (0, 1)] + \
              [_result("convit", f, s, 96.0, 3.0) for f in (0.25, 1.0) for s in (0, 1)] + \
              [_result("resnet", 1.0, s, 96.8, 1.5) for s in (0, 1)]
    table = aggregate(_study(results))
    goals = targets(table, [0.25, 1.0])
    assert goals[0]["met"] is True and goals[0]["difference"] == pytest.approx(0.015)
    assert goals[1]["met"] is False  # IBiT 95.5 < ConViT 96.0 at 25%
    # paired by seed (a seed fixes the held-out images): IBiT at 25% is 95, 96 against ViT's 94, 94 at 100%
    assert goals[0]["paired"]["values"] == pytest.approx([0.01, 0.02]) and goals[0]["paired"]["wins"] == 2
    at_25 = goals[1]["per_fraction"][0]["paired"]
    assert at_25["values"] == pytest.approx([-0.01, 0.0]) and at_25["wins"] == 1 and at_25["mean"] == pytest.approx(-0.005)
    assert _seedwise(goals[0]) == " on every seed" and _seedwise(goals[1]) == ""  # only for a target met
    close = {"met": True, "paired": {"wins": 1, "n": 3}}
    assert _seedwise(close) == " on the mean, not on every seed (1/3 paired)"
    rec = recommend(table, [0.25, 1.0], margin_points=0.5)
    assert rec["best"] == "ibit" and rec["choice"] == "resnet"  # within 0.5 of 97.0 and faster than ibit
    assert recommend(table, [0.25, 1.0], margin_points=0.1)["choice"] == "ibit"
    assert "PROVISIONAL" not in rec["line"]
    partial = recommend(table, [0.25, 1.0], planned=["ibit", "vit", "ibit_kd"], seeds=3)["line"]
    assert "PROVISIONAL: ibit, vit, ibit_kd have not yet finished every seed at 100%" in partial


def test_pareto_front():
    points = {"a": (1.0, 90.0), "b": (2.0, 95.0), "c": (3.0, 94.0), "d": (0.5, 80.0)}
    assert pareto_front(points) == ["d", "a", "b"]


def test_paired_differences_use_the_seeds_both_have():
    a = {"values": [0.90, 0.92, 0.95], "seeds": [0, 1, 2]}
    b = {"values": [0.91, 0.91], "seeds": [1, 2]}
    diff = paired(a, b)
    assert diff["values"] == pytest.approx([0.01, 0.04]) and diff["n"] == 2 and diff["wins"] == 2
    assert paired(a, {"values": [0.80], "seeds": [7]}) is None and paired(a, None) is None


def test_a_failed_stand_in_keeps_the_runs_own_latency_and_says_why(tmp_path, capsys):
    from ibit_deploy.study.report import _no_bundle_note, side_by_side_latency

    results = [_result("ibit", 1.0, 0, 95.0, 1.5), _result("rednet", 1.0, 0, 97.0, 2.0, role="teacher")]
    study = {**_study(results), "recipe": {"backend": "ort-cpu", "threads": 1, "latency_batches": [1]}}
    table = aggregate(study)
    # the study folder holds no run folder for ibit: no bundle, and no spec to build a stand-in from
    interleaved = side_by_side_latency(study, table, rounds=1, out=tmp_path)
    assert interleaved["standins"] == [] and interleaved["no_bundle_left"] == ["ibit"]
    assert "run spec" in interleaved["standin_failed"]["ibit"] or "not found" in interleaved["standin_failed"]["ibit"]
    assert "latency stand-in for ibit (from s0/1.0/ibit) failed" in capsys.readouterr().err
    assert table["ibit"]["latency_p50_ms"]["1"] == 1.5 and interleaved["teachers_not_timed"] == ["rednet"]
    note = _no_bundle_note(interleaved)
    assert "ibit: median over the runs' own measurements" in note and "stand-in failed: ibit:" in note
    assert "teacher rows (rednet): median over their runs' own measurements" in note


COMMITTED_STATE = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "data_efficiency_study" / "state"


def _copy_state(target: Path, keep=lambda run_id: True, edit=lambda result: result) -> Path:
    """A study folder made of the committed study's records (study.json, run.json, result.json; no bundles, no
    checkpoints), ``keep`` choosing the runs and ``edit`` changing each result as it is copied."""
    study = json.loads((COMMITTED_STATE / layout.STUDY_FILE).read_text())
    target.mkdir(parents=True)
    (target / layout.STUDY_FILE).write_text(json.dumps(study))
    for run_id in filter(keep, study["runs"]):
        source, directory = layout.run_dir(COMMITTED_STATE, run_id), layout.run_dir(target, run_id)
        directory.mkdir(parents=True)
        shutil.copyfile(source / layout.RUN_FILE, directory / layout.RUN_FILE)
        result = edit(json.loads((source / layout.RESULT_FILE).read_text()))
        (directory / layout.RESULT_FILE).write_text(json.dumps(result))
    return target


def _snapshot(root: Path) -> dict[str, tuple[bytes, int]]:
    return {str(p.relative_to(root)): (p.read_bytes(), p.stat().st_mtime_ns) for p in root.rglob("*") if p.is_file()}


def test_report_only_reads_the_study_and_writes_only_the_report(tmp_path, capsys):
    from ibit_deploy.cli.main import main

    out = _copy_state(tmp_path / "study")  # 96 finished runs, none with a bundle left: nothing to time here
    before = _snapshot(tmp_path)
    assert main(["compare", "--out", str(out), "--report-only"]) == 0
    after = _snapshot(tmp_path)
    assert {k: v for k, v in after.items() if k in before} == before  # every file: same bytes, same mtime
    assert sorted(set(after) - set(before)) == sorted(f"study/{layout.REPORT_DIR}/{name}" for name in (
        "compare.json", "compare.md", "top1_vs_fraction.png", "top1_vs_latency.png", "curves.png"))
    assert not (out / layout.STANDIN_DIR).exists() and not (out / layout.SIDE_BY_SIDE_FILE).exists()
    text = (out / layout.REPORT_DIR / "compare.md").read_text()
    assert "median over the candidate's runs (each timed by its worker)" in text  # what was measured: per run
    assert "96 of 96 planned runs finished" in capsys.readouterr().out


def _batch_1_only(result: dict) -> dict:
    result["latency"]["batches"] = {"1": result["latency"]["batches"]["1"]}
    return result


def test_a_batch_1_only_study_has_no_other_latency_column(tmp_path):
    out = _copy_state(tmp_path / "study", keep=lambda run_id: run_id.startswith("s0/f100/"), edit=_batch_1_only)
    paths = write_report(out)
    text = paths["markdown"].read_text()
    assert "latency b1 p50 (ms)" in text and "b32" not in text and "nan" not in text
    header = next(line for line in text.splitlines() if line.startswith("| candidate | params"))
    assert header.count("|") == next(line for line in text.splitlines()
                                     if line.startswith("| ibit | 4")).count("|")  # one cell per column
    assert json.loads(paths["json"].read_text())["summary"]["ibit"]["latency_p50_ms"].keys() == {"1"}


def test_nothing_timed_means_no_latency_column_and_no_pareto_plot(tmp_path):
    def unavailable(result: dict) -> dict:
        result["latency"] = {"backend": "tensorrt", "unavailable": "no NVIDIA GPU"}
        return result

    out = _copy_state(tmp_path / "study", keep=lambda run_id: run_id.startswith("s0/f100/"), edit=unavailable)
    stale = out / layout.REPORT_DIR / "top1_vs_latency.png"
    stale.parent.mkdir()
    stale.write_bytes(b"an earlier report's plot")
    paths = write_report(out)
    text = paths["markdown"].read_text()
    assert "latency b" not in text and "No latency was measured: no NVIDIA GPU." in text
    assert "pareto_plot" not in paths and not stale.exists() and "top1_vs_latency.png" not in text
    assert "(no latency measured)" in text  # the recommendation says so too
