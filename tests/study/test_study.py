"""The whole flow on a tiny budget: plan -> worker processes -> result.json -> report, with kill-and-resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ibit_deploy.devicekit.locking import LockBusy
from ibit_deploy.study import layout
from ibit_deploy.study.plan import StudyConfig
from ibit_deploy.study.report import write_report
from ibit_deploy.study.scheduler import prepare, run_study

# synthetic:256 -> 204 training images = 12 batches of 16; 120 steps = 10 epochs of ~0.1 s each
TINY = dict(data="synthetic:256", steps=120, seeds=[0], fractions=[1.0], embed_dim=32, depth=2, num_heads=2,
            batch_size=16, latency_seconds=0.1)


def _metrics_lines(directory: Path) -> int:
    path = directory / layout.CHECKPOINT_DIR / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


@pytest.mark.slow
def test_killed_run_resumes_and_finished_runs_are_kept(tmp_path):
    config = StudyConfig(**TINY, candidates=["ibit"])
    killed = tmp_path / "killed"
    prepare(config, killed)
    run_dir = layout.run_dir(killed, "s0/f100/ibit")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "ibit_deploy.study.worker", str(killed), "s0/f100/ibit"], env=env)
    deadline = time.monotonic() + 120
    while _metrics_lines(run_dir) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    epochs_before = _metrics_lines(run_dir)
    assert 2 <= epochs_before < 10 and not (run_dir / layout.RESULT_FILE).exists(), "the kill came too late to test"

    summary = run_study(config, killed, log=lambda line: None)
    assert summary["done"] == ["s0/f100/ibit"] and not summary["failed"]
    resumed = json.loads((run_dir / layout.RESULT_FILE).read_text())
    # resumed from the last saved epoch: every epoch recorded exactly once (the trainer's resume is bit-exact,
    # tests/train/test_resume.py)
    assert resumed["resumed"] is True and [c["epoch"] for c in resumed["curve"]] == list(range(1, 11))
    assert resumed["steps"] == resumed["budget"]["steps"] == 120
    assert resumed["accuracy_unit"] == "fraction" and 0.0 <= resumed["val_acc1"] <= 1.0
    assert all(c["val_acc1"] is None or 0.0 <= c["val_acc1"] <= 1.0 for c in resumed["curve"])

    # a finished run is never redone: a second session launches no worker and leaves result.json alone
    stamp = (run_dir / layout.RESULT_FILE).stat().st_mtime_ns
    lines = []
    summary = run_study(config, killed, log=lines.append)
    assert (run_dir / layout.RESULT_FILE).stat().st_mtime_ns == stamp and summary["done"] == ["s0/f100/ibit"]
    assert "1 runs planned, 1 already finished, 0 to run" in lines[0]

    paths = write_report(killed, latency_rounds=2)
    report = json.loads(paths["json"].read_text())
    assert report["runs_finished"] == report["runs_planned"] == 1
    assert "1 of 1 planned runs finished" in paths["markdown"].read_text()
    assert all(paths[k].stat().st_size > 1000 for k in ("fraction_plot", "pareto_plot", "curves_plot"))
    side_by_side = report["latency_interleaved"]["candidates"]["ibit"]["1"]
    assert len(side_by_side["rounds_p50_ms"]) == 2 and report["summary"]["ibit"]["latency_p50_ms"]["1"] > 0
    latency = report["runs"][0]["latency"]
    assert latency["backend"] == "ort-cpu" and latency["batches"]["1"]["n"] >= 3


def test_another_recipe_is_refused_and_a_locked_study_is_busy(tmp_path, lock_holder):
    config = StudyConfig(**TINY, candidates=["vit"])
    prepare(config, tmp_path)
    with pytest.raises(ValueError, match=r"another recipe \(lr: saved 0.002 vs now 0.001\)"):
        prepare(StudyConfig(**{**TINY, "candidates": ["vit"]}, lr=1e-3), tmp_path)
    lock_holder(tmp_path, 60)  # a study already running on this folder
    with pytest.raises(LockBusy, match=r"pid \d+"):
        run_study(config, tmp_path, log=lambda line: None)
    assert not (layout.run_dir(tmp_path, "s0/f100/vit") / layout.CHECKPOINT_DIR).exists()  # nothing trained


def test_a_run_held_by_another_process_is_not_touched(tmp_path, lock_holder):
    from ibit_deploy.study import worker

    prepare(StudyConfig(**TINY, candidates=["vit"]), tmp_path)
    directory = layout.run_dir(tmp_path, "s0/f100/vit")
    lock_holder(directory, 60)  # as an orphaned worker of a killed study would
    assert worker.main([str(tmp_path), "s0/f100/vit"]) == worker.EXIT_BUSY
    assert not (directory / layout.CHECKPOINT_DIR).exists()


def test_a_run_planned_under_another_spec_is_refused(tmp_path):
    config = StudyConfig(**TINY, candidates=["vit"])
    prepare(config, tmp_path)
    spec_file = layout.run_dir(tmp_path, "s0/f100/vit") / layout.RUN_FILE
    spec = json.loads(spec_file.read_text())
    spec["digest"] = "0" * 64
    spec_file.write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="was planned with another spec.*cannot be mixed"):
        prepare(config, tmp_path)


def test_a_subset_run_first_keeps_the_whole_study_planned(tmp_path):
    whole = dict(TINY, seeds=[0, 1], fractions=[0.5, 1.0])
    prepare(StudyConfig(**whole, candidates=["ibit", "vit", "resnet"]), tmp_path)
    # the headline candidates over the full data first: the study (and its report) still plans all 12 runs
    prepare(StudyConfig(**{**whole, "fractions": [1.0]}, candidates=["vit", "ibit"]), tmp_path)
    study = json.loads((tmp_path / layout.STUDY_FILE).read_text())
    assert study["candidates"] == ["ibit", "vit", "resnet"] and study["seeds"] == [0, 1]
    assert study["fractions"] == [0.5, 1.0] and len(study["runs"]) == 12
    # adding a candidate grows it
    prepare(StudyConfig(**whole, candidates=["convit"]), tmp_path)
    study = json.loads((tmp_path / layout.STUDY_FILE).read_text())
    assert study["candidates"] == ["ibit", "vit", "convit", "resnet"] and len(study["runs"]) == 16
    assert "s1/f050/convit" in study["runs"]


def test_a_teacher_run_is_kept_when_its_candidate_is_added(tmp_path):
    kd_only = dict(TINY, candidates=["ibit_kd"])
    prepare(StudyConfig(**kd_only), tmp_path)  # resnet planned as a LIB-KD teacher only
    resnet = layout.run_dir(tmp_path, "s0/f100/resnet")
    digest = json.loads((resnet / layout.RUN_FILE).read_text())["digest"]
    (resnet / layout.RESULT_FILE).write_text(json.dumps({"digest": digest, "val_acc1": 99.0}))
    runs = prepare(StudyConfig(**{**kd_only, "candidates": ["ibit_kd", "resnet"]}), tmp_path)
    spec = next(r for r in runs if r.id == "s0/f100/resnet")
    assert spec.role == "candidate" and spec.digest() == digest
    assert json.loads((resnet / layout.RESULT_FILE).read_text())["val_acc1"] == 99.0  # the finished run is kept


def test_runs_planned_under_the_legacy_digest_are_rekeyed_and_kept(tmp_path):
    from ibit_deploy.study.worker import finished_result

    config = StudyConfig(**TINY, candidates=["vit"])
    (spec,) = prepare(config, tmp_path)
    directory = layout.run_dir(tmp_path, spec.id)
    legacy = next(d for d in spec.legacy_digests() if d != spec.digest())
    assert legacy != spec.digest() and spec.digest() not in spec.legacy_digests()
    record = json.loads((directory / layout.RUN_FILE).read_text())
    (directory / layout.RUN_FILE).write_text(json.dumps({**record, "digest": legacy}))
    (directory / layout.RESULT_FILE).write_text(json.dumps({"digest": legacy, "val_acc1": 91.0}))
    prepare(config, tmp_path)
    assert json.loads((directory / layout.RUN_FILE).read_text())["digest"] == spec.digest()
    assert finished_result(directory, spec.digest())["val_acc1"] == pytest.approx(0.91)  # an unmarked record: percent


def _copy_records(source: Path, target: Path, run_ids: list[str]) -> None:
    """What benchmarks/results/.../state keeps of a study: study.json and each finished run's two JSON files."""
    target.mkdir()
    (target / layout.STUDY_FILE).write_text((source / layout.STUDY_FILE).read_text())
    for run_id in run_ids:
        directory = layout.run_dir(target, run_id)
        directory.mkdir(parents=True)
        for name in (layout.RUN_FILE, layout.RESULT_FILE):
            (directory / name).write_text((layout.run_dir(source, run_id) / name).read_text())


@pytest.mark.slow
def test_a_study_continued_from_its_records_retrains_missing_teachers_and_reports(tmp_path):
    config = StudyConfig(**{**TINY, "steps": 24}, candidates=["ibit", "ibit_kd"])
    first = tmp_path / "first"
    summary = run_study(config, first, workers=2, log=lambda line: None)
    assert not summary["failed"] and len(summary["done"]) == 4  # ibit, resnet + rednet teachers, ibit_kd
    teachers = ["s0/f100/resnet", "s0/f100/rednet"]
    # continue from the records alone, as a later session does from the repository: no checkpoints, no bundles,
    # and the student not yet run
    later = tmp_path / "later"
    _copy_records(first, later, ["s0/f100/ibit", *teachers])
    summary = run_study(config, later, log=lambda line: None)
    assert not summary["failed"] and summary["done"] == sorted(["s0/f100/ibit", *teachers, "s0/f100/ibit_kd"])
    student = json.loads((layout.run_dir(later, "s0/f100/ibit_kd") / layout.RESULT_FILE).read_text())
    restored = {r["teacher"]: r for r in student["teachers_restored"]}
    # kept beside the logits, so a student killed after making them still reports what they cost
    record = json.loads((layout.run_dir(later, "s0/f100/ibit_kd") / layout.LOGITS_RECORD).read_text())
    assert record["teachers_restored"] == student["teachers_restored"] and record["teacher_logits_seconds"] > 0
    assert sorted(restored) == sorted(teachers)
    # single-threaded training is deterministic: the retrained teachers are the recorded ones
    assert all(r["identical"] and r["weights_sha256"] == r["recorded_weights_sha256"] for r in restored.values())
    assert all(r["val_acc1"] == r["recorded_val_acc1"] for r in restored.values())
    assert student["machine"]["cpu"] and student["machine"]["torch_cpu_capability"]
    for teacher in teachers:  # the finished teacher runs themselves are kept as they were
        kept = layout.run_dir(later, teacher) / layout.RESULT_FILE
        assert kept.read_text() == (layout.run_dir(first, teacher) / layout.RESULT_FILE).read_text()
    assert student["val_acc1"] == json.loads(
        (layout.run_dir(first, "s0/f100/ibit_kd") / layout.RESULT_FILE).read_text())["val_acc1"]

    # the report's side-by-side latency times a stand-in of a candidate whose bundles are gone (ibit): the same
    # architecture exported the same way, so every candidate is timed here, side by side
    paths = write_report(later, latency_rounds=1)
    report = json.loads(paths["json"].read_text())
    text = paths["markdown"].read_text()
    assert "- s0/f100/ibit_kd: retrained s0/f100/resnet bit-identical to its record (top-1 " in text
    assert f"run(s) on {student['machine']['cpu']}" in text
    interleaved = report["latency_interleaved"]
    assert interleaved["standins"] == ["ibit"] and interleaved["no_bundle_left"] == []
    assert {"ibit", "ibit_kd"} <= set(interleaved["candidates"])
    assert report["summary"]["ibit"]["latency_source"] == "interleaved"
    standin = json.loads((Path(interleaved["bundles"]["ibit"]) / "manifest.json").read_text())
    trained = json.loads((layout.run_dir(first, "s0/f100/ibit") / layout.BUNDLE_DIR / "manifest.json").read_text())
    assert standin["model"]["num_params"] == trained["model"]["num_params"]  # the same architecture
    assert "ibit: timed on a latency stand-in" in text
    # a later report only reads: it uses the kept side-by-side measurement and rebuilds or times nothing
    kept = {p: p.stat().st_mtime_ns for p in later.rglob("*") if p.is_file() and layout.REPORT_DIR not in p.parts}
    reread = json.loads(write_report(later)["json"].read_text())
    assert {p: p.stat().st_mtime_ns for p in later.rglob("*") if p.is_file() and layout.REPORT_DIR not in p.parts} == kept
    assert reread["summary"]["ibit"]["latency_p50_ms"] == report["summary"]["ibit"]["latency_p50_ms"]
    assert reread["latency_interleaved"]["standins"] == ["ibit"]
    # without stand-ins the candidate keeps its runs' own measurement, and the report says so
    report = json.loads(write_report(later, latency_rounds=1, standins=False)["json"].read_text())
    assert report["latency_interleaved"]["no_bundle_left"] == ["ibit"]
    assert report["summary"]["ibit"]["latency_p50_ms"]["1"] > 0


def test_a_checkpoint_killed_before_its_first_resume_state_is_cleared(tmp_path):
    from ibit_deploy.study.worker import _resumable
    from ibit_deploy.train.state import STATE_FILE

    checkpoint = tmp_path / layout.CHECKPOINT_DIR
    checkpoint.mkdir()
    (checkpoint / "model.safetensors").write_bytes(b"half-written")
    assert _resumable(checkpoint) is False and not checkpoint.exists()
    checkpoint.mkdir()
    (checkpoint / STATE_FILE).write_bytes(b"")
    assert _resumable(checkpoint) is True and checkpoint.exists()


def test_time_left_charges_running_runs_only_what_they_have_left():
    from ibit_deploy.study.scheduler import _Eta

    eta = _Eta(workers=2)
    assert eta.left(["ibit"]) is None  # nothing finished yet: unknown
    eta.add("ibit", 600.0)
    eta.add("vit", 400.0)
    # two pending ibit runs (600 s each) + a vit 300 s in (100 s left) + an unseen name (the mean, 500 s), 2 workers
    assert eta.left(["ibit", "ibit", "convit"], [("vit", 300.0)]) == pytest.approx((600 + 600 + 500 + 100) / 2)
    assert eta.left([], [("ibit", 900.0)]) == 0.0  # overrunning its estimate: not negative
