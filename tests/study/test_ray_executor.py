"""``ibit-deploy compare --executor ray`` for real (issue 25): a local Ray cluster (``ray.init(num_cpus=2)``, one per
module), a tiny study through the CLI with one run's Ray worker killed mid-training, the same report as the local
executor on the same seeds, and a killed driver leaving no run training.

The study's driver is the CLI in a child process connecting with ``--ray-address`` (a separate Ray job, as on a real
cluster); this test process only hosts the cluster. Every child starts with SIGINT reset to the default (see
tests/study/test_lifetime.py).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ibit_deploy.cli.main import main
from ibit_deploy.devicekit.locking import directory_lock, read_holder
from ibit_deploy.study import layout
from ibit_deploy.train.state import STATE_FILE

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install '.[ray]')")

REPO = Path(__file__).resolve().parents[2]
# light: no usage report, no token file written to ~/.ray, no dashboard
RAY_ENV = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": "disabled"}
pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="reads process states from /proc")]
# synthetic:256 -> 204 training images = 12 batches of 16; 240 steps = 20 epochs of ~0.2 s each
STUDY = ["compare", "--data", "synthetic:256", "--candidates", "ibit,vit", "--seeds", "0", "--fractions", "1.0",
         "--embed-dim", "32", "--depth", "2", "--num-heads", "2", "--batch-size", "16", "--steps", "240",
         "--latency-seconds", "0.1", "--latency-rounds", "0"]
EPOCHS = 20


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _env() -> dict[str, str]:
    return {**os.environ, **RAY_ENV,
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}


def _state(pid: int) -> str | None:
    """The /proc state letter of ``pid``, or None when it is gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def _running(pid: int) -> bool:
    return _state(pid) not in (None, "Z", "X")


def _gone_within(pids: set[int], seconds: float) -> set[int]:
    """Those of ``pids`` still running after ``seconds``."""
    deadline = time.monotonic() + seconds
    while (left := {p for p in pids if _running(p)}) and time.monotonic() < deadline:
        time.sleep(0.1)
    return left


def _descendants(root: int) -> set[int]:
    children: dict[int, set[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        children.setdefault(int(fields[1]), set()).add(int(stat.parent.name))
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), ()):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


@pytest.fixture(scope="module")
def cluster():
    """A two-CPU Ray cluster hosted by this process; its GCS address. Ends with the module, leaving no process."""
    saved = {k: os.environ.get(k) for k in RAY_ENV}
    os.environ.update(RAY_ENV)
    before = _descendants(os.getpid())
    # address="local": a new cluster of its own, never one a `ray start` on this machine left behind
    context = ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=80 * 1024**2,
                       log_to_driver=False)
    try:
        yield context.address_info["gcs_address"]
    finally:
        started = _descendants(os.getpid()) - before  # GCS, raylet, their agents, the workers
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
        left = _gone_within(started, 60)
        for pid in left:  # ours: end them by pid, then fail the test
            os.kill(pid, signal.SIGKILL)
        assert not left, f"Ray processes left after ray.shutdown(): {sorted(left)}"


def _epochs(directory: Path) -> int:
    path = directory / layout.CHECKPOINT_DIR / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def _training(out: Path, driver: subprocess.Popen, seconds: float = 300) -> tuple[Path, int]:
    """The first run folder whose worker has trained an epoch and not finished, and that worker's pid."""
    deadline = time.monotonic() + seconds
    while True:
        for spec in sorted(out.glob(f"{layout.RUNS_DIR}/*/*/*/{layout.RUN_FILE}")):
            directory = spec.parent
            holder = read_holder(directory) or {}
            if _epochs(directory) >= 1 and not (directory / layout.RESULT_FILE).exists() and holder.get("pid"):
                return directory, int(holder["pid"])
        assert driver.poll() is None, f"the study ended (exit {driver.returncode}) before a run trained an epoch"
        assert time.monotonic() < deadline, "no run trained an epoch"
        time.sleep(0.02)


def _driver(argv: list[str], log: Path) -> subprocess.Popen:
    with open(log, "wb") as sink:
        return subprocess.Popen([sys.executable, "-m", "ibit_deploy.cli.main", *argv], env=_env(), stdout=sink,
                                stderr=subprocess.STDOUT, preexec_fn=_default_sigint)


def _results(out: Path) -> dict[str, dict]:
    return {str(p.parent.relative_to(out / layout.RUNS_DIR)): json.loads(p.read_text())
            for p in out.glob(f"{layout.RUNS_DIR}/*/*/*/{layout.RESULT_FILE}")}


def _top1_section(markdown: str) -> str:
    return markdown.split("## Top-1", 1)[1].split("## Deployment", 1)[0]


def test_a_killed_run_is_retried_by_ray_and_the_report_equals_the_local_executors(tmp_path, cluster):
    local, on_ray = tmp_path / "local", tmp_path / "ray"
    assert main([*STUDY, "--out", str(local)]) == 0

    driver = _driver([*STUDY, "--out", str(on_ray), "--executor", "ray", "--ray-address", cluster],
                     tmp_path / "driver.log")
    try:
        directory, worker = _training(on_ray, driver)
        assert worker != driver.pid and _running(worker)
        os.kill(worker, signal.SIGKILL)  # the Ray worker process training the run: Ray retries the task
        killed_after = _epochs(directory)
        assert driver.wait(timeout=600) == 0, (tmp_path / "driver.log").read_text()[-3000:]
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    assert 1 <= killed_after < EPOCHS, "the kill came too late to test"

    ours, theirs = _results(on_ray), _results(local)
    assert sorted(ours) == sorted(theirs) == ["s0/f100/ibit", "s0/f100/vit"]
    killed = ours[str(directory.relative_to(on_ray / layout.RUNS_DIR))]
    # resumed from its last saved epoch, every epoch recorded once
    assert killed["resumed"] is True and [c["epoch"] for c in killed["curve"]] == list(range(1, EPOCHS + 1))
    node = ray.nodes()[0]["NodeID"]
    for run_id, result in ours.items():
        # one thread: the same weights and accuracies as the local executor's runs, the killed one included
        for key in ("weights_sha256", "val_acc1", "val_acc5", "steps", "epochs"):
            assert result[key] == theirs[run_id][key], (run_id, key)
        assert [c["val_acc1"] for c in result["curve"]] == [c["val_acc1"] for c in theirs[run_id]["curve"]]
        assert result["executor"] == {"name": "ray", "node": node}
        assert theirs[run_id]["executor"] == {"name": "local", "node": None}

    reports = {out: json.loads((out / layout.REPORT_DIR / "compare.json").read_text()) for out in (local, on_ray)}
    for name in ("ibit", "vit"):
        assert reports[on_ray]["summary"][name]["top1"] == reports[local]["summary"][name]["top1"]
    text = {out: (out / layout.REPORT_DIR / "compare.md").read_text() for out in (local, on_ray)}
    assert _top1_section(text[on_ray]) == _top1_section(text[local])
    assert f"Ray node {node[:12]}: s0/f100/ibit, s0/f100/vit" in text[on_ray]
    assert "Ray node" not in text[local]


def _endless_driver(out, cluster, log):
    """A driver on Ray of one run that trains far longer than any test waits."""
    endless = [a if a != "240" else "1000000" for a in STUDY]
    return _driver([*endless, "--candidates", "vit", "--no-report", "--out", str(out), "--executor", "ray",
                    "--ray-address", cluster], log)


def test_killing_the_driver_stops_its_runs_on_ray_and_leaves_them_resumable(tmp_path, cluster):
    out = tmp_path / "study"
    driver = _endless_driver(out, cluster, tmp_path / "driver.log")
    try:
        directory, worker = _training(out, driver)
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=30)
        # the task belonged to the driver's Ray job: Ray ends the job and kills its worker
        assert not _gone_within({worker}, 30), "the run's Ray worker outlived the killed driver"
        epochs = _epochs(directory)
        time.sleep(1.0)
        assert _epochs(directory) == epochs and not (directory / layout.RESULT_FILE).exists()
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    # resumable: the run's lock is free and its last epoch's resume state is there
    with directory_lock(directory, "test", wait=False):
        assert (directory / layout.CHECKPOINT_DIR / STATE_FILE).is_file()


def test_ctrl_c_of_the_driver_cancels_its_runs_on_ray(tmp_path, cluster):
    out = tmp_path / "study"
    driver = _endless_driver(out, cluster, tmp_path / "driver.log")
    try:
        directory, worker = _training(out, driver)
        driver.send_signal(signal.SIGINT)
        assert driver.wait(timeout=120) == 130
        assert not _gone_within({worker}, 30), "the run's Ray worker outlived the interrupted driver"
        assert "interrupted: stopping 1 run(s); re-run the same command to resume" in (
            tmp_path / "driver.log").read_text()
    finally:
        if driver.poll() is None:
            driver.kill()
            driver.wait()
    with directory_lock(directory, "test", wait=False):
        assert (directory / layout.CHECKPOINT_DIR / STATE_FILE).is_file()


def test_a_task_that_cannot_see_its_run_fails_naming_it_and_a_held_run_is_busy(tmp_path, cluster, lock_holder):
    """Through this process's own Ray connection (an executor leaves a caller's connection open)."""
    from ibit_deploy.study.executors.base import BUSY, FAILED, Needs
    from ibit_deploy.study.executors.ray_cluster import RayExecutor
    from ibit_deploy.study.plan import StudyConfig
    from ibit_deploy.study.scheduler import prepare

    (spec,) = prepare(StudyConfig(data="synthetic:256", candidates=["vit"], steps=24, seeds=[0], fractions=[1.0],
                                  embed_dim=32, depth=2, num_heads=2, batch_size=16), tmp_path / "study")
    lock_holder(layout.run_dir(tmp_path / "study", spec.id), 120)  # as a dead node's lock not yet released would
    executor = RayExecutor(tmp_path / "study", Needs(1, 0), None, "auto", log=print)
    elsewhere = RayExecutor(tmp_path / "not-shared", Needs(1, 0), None, "auto", log=print)
    try:
        executor.submit(spec)
        elsewhere.submit(spec)  # a study folder this node does not see
        outcomes = {}
        deadline = time.monotonic() + 120
        while len(outcomes) < 2 and time.monotonic() < deadline:
            for where, ex in (("here", executor), ("elsewhere", elsewhere)):
                for outcome in ex.finished().values():
                    outcomes[where] = outcome
            time.sleep(0.1)
    finally:
        executor.close()
        elsewhere.close()
    assert outcomes["here"].status == BUSY
    assert outcomes["elsewhere"].status == FAILED
    assert "StudyGone: " in outcomes["elsewhere"].detail and "is not there on Ray node" in outcomes["elsewhere"].detail
    assert "file system every node mounts at the same path" in outcomes["elsewhere"].detail
    assert ray.is_initialized()  # the caller's connection is left open
    assert not (layout.run_dir(tmp_path / "study", spec.id) / layout.CHECKPOINT_DIR).exists()
