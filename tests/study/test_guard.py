"""A run stops writing when its study is gone (issue 25): the study folder removed, or the run's lock taken over.

Every child here starts with SIGINT reset to the default (see tests/study/test_lifetime.py).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ibit_deploy.devicekit.locking import directory_lock, lock_path
from ibit_deploy.study import layout
from ibit_deploy.study.guard import EXIT_STUDY_GONE, Claim
from ibit_deploy.study.plan import StudyConfig
from ibit_deploy.study.scheduler import prepare

REPO = Path(__file__).resolve().parents[2]
# a run that would train for hours: only the guard (or a kill) ends it
ENDLESS = ["--data", "synthetic:256", "--candidates", "vit", "--seeds", "0", "--fractions", "1.0", "--embed-dim", "32",
           "--depth", "2", "--num-heads", "2", "--batch-size", "16", "--steps", "1000000"]
RUN_ID = "s0/f100/vit"


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def _gone_within(pid: int, seconds: float) -> bool:
    """Whether ``pid`` ended (or is a zombie) within ``seconds``."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (FileNotFoundError, ProcessLookupError):
            return True
        if state in ("Z", "X"):
            return True
        time.sleep(0.05)
    return False


def _run_with_spec(tmp_path: Path) -> tuple[Path, Path, str]:
    directory = tmp_path / "runs" / "r"
    directory.mkdir(parents=True)
    spec = directory / layout.RUN_FILE
    spec.write_text(json.dumps({"digest": "a" * 64}))
    return directory, spec, "a" * 64


def test_a_held_claim_is_kept_and_each_way_of_losing_it_is_named(tmp_path):
    directory, spec, digest = _run_with_spec(tmp_path)
    with directory_lock(directory, "test"):
        claim = Claim(directory, spec, digest)
        assert claim.lost() is None
        spec.write_text(json.dumps({"digest": "b" * 64}))
        assert "now holds another run (digest bbbbbbbbbbbb..." in claim.lost()
        spec.unlink()
        assert claim.lost() == f"{spec} is gone (the study folder was removed)"
        spec.write_text(json.dumps({"digest": digest}))
        lock = lock_path(directory)
        record = json.loads(lock.read_text())
        lock.write_text(json.dumps({**record, "pid": record["pid"] + 1}))  # another holder's record, same file
        assert f"was taken over by pid {record['pid'] + 1}" in claim.lost()
        lock.write_text(json.dumps(record))
        assert claim.lost() is None
    shutil.rmtree(tmp_path / "runs")
    assert "is gone (the study folder was removed)" in claim.lost()
    directory.mkdir(parents=True)  # the study made again at the same path, its run locked by someone else
    with directory_lock(directory, "another study"):
        assert "was replaced" in claim.lost()


def test_a_study_file_claim_holds_while_the_very_file_is_there(tmp_path):
    (tmp_path / "study" / layout.STUDY_FILE).parent.mkdir()
    (tmp_path / "study" / layout.STUDY_FILE).write_text("{}")
    with directory_lock(tmp_path / "study", "test"):
        claim = Claim(tmp_path / "study", tmp_path / "study" / layout.STUDY_FILE)
        assert claim.lost() is None
        (tmp_path / "study" / "new.json").write_text("{}")
        os.replace(tmp_path / "study" / "new.json", tmp_path / "study" / layout.STUDY_FILE)  # as a study writes it
        assert "was replaced" in claim.lost()
        (tmp_path / "study" / layout.STUDY_FILE).unlink()
        assert "is gone" in claim.lost()


def _wait_for_epoch(directory: Path, proc: subprocess.Popen, seconds: float = 240) -> None:
    metrics = directory / layout.CHECKPOINT_DIR / "metrics.jsonl"
    deadline = time.monotonic() + seconds
    while not (metrics.exists() and metrics.read_text().strip()):
        assert proc.poll() is None, f"exited with {proc.returncode} before training an epoch"
        assert time.monotonic() < deadline, "no epoch was trained"
        time.sleep(0.05)


@pytest.mark.slow
def test_a_worker_whose_study_folder_is_removed_stops(tmp_path):
    """Without the guard the worker trains on, its checkpoint saves making the removed folders again."""
    out = tmp_path / "study"
    from ibit_deploy.cli.compare import build_parser

    args = build_parser().parse_args([*ENDLESS, "--out", str(out)])
    prepare(StudyConfig(data=args.data, candidates=args.candidates, steps=args.steps, seeds=args.seeds,
                        fractions=args.fractions, embed_dim=32, depth=2, num_heads=2, batch_size=16), out)
    directory = layout.run_dir(out, RUN_ID)
    proc = subprocess.Popen([sys.executable, "-m", "ibit_deploy.study.worker", str(out), RUN_ID], env=_env(),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=_default_sigint)
    try:
        _wait_for_epoch(directory, proc)
        shutil.rmtree(out)
        assert proc.wait(timeout=60) == EXIT_STUDY_GONE
        assert "this run no longer belongs to a study" in proc.stderr.read()
        assert not (directory / layout.RESULT_FILE).exists()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stderr.close()


@pytest.mark.slow
def test_a_study_whose_folder_is_removed_stops_its_runs_and_exits_1(tmp_path):
    from ibit_deploy.devicekit.locking import read_holder

    out = tmp_path / "study"
    study = subprocess.Popen([sys.executable, "-m", "ibit_deploy.cli.main", "compare", *ENDLESS, "--out", str(out),
                              "--no-report"], env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                             preexec_fn=_default_sigint)
    directory = layout.run_dir(out, RUN_ID)
    try:
        _wait_for_epoch(directory, study)
        worker = read_holder(directory)["pid"]
        shutil.rmtree(out)
        assert study.wait(timeout=60) == 1
        err = study.stderr.read()
        assert "the study folder went away while the study ran" in err and "Traceback" not in err
        assert _gone_within(worker, 30), "the worker outlived its removed study"
    finally:
        if study.poll() is None:
            study.kill()
            study.wait()
        study.stderr.close()
