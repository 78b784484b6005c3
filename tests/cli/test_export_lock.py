"""``ibit-export`` into a bundle another process is writing: without --wait it fails at once naming the holder; with
--wait it waits, then writes a manifest that lists exactly its own files."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest

from ibit_deploy.devicekit.locking import read_holder
from ibit_deploy.devicekit.manifest import load_manifest

# A real second process holding the bundle's lock as an export does, until the test lets it go.
HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from ibit_deploy.devicekit.locking import directory_lock
    with directory_lock(sys.argv[1], "ibit-export"):
        while not Path(sys.argv[2]).exists():
            time.sleep(0.05)
""")


def _export(checkpoint, out, stderr, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "ibit_deploy.cli.export", str(checkpoint), "--to", "onnx",
                             "--out", str(out), *extra], stdout=subprocess.DEVNULL, stderr=stderr, text=True,
                            env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def _wait_for(condition, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


@pytest.mark.slow
def test_exports_into_a_bundle_being_written(tiny_checkpoint, tmp_path):
    out, release = tmp_path / "bundle", tmp_path / "release"
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(out), str(release)])
    try:
        _wait_for(lambda: (read_holder(out) or {}).get("pid") == holder.pid, "the holder to take the lock")
        refused = _export(tiny_checkpoint, out, subprocess.PIPE)
        _, err = refused.communicate(timeout=120)
        assert refused.returncode == 1 and f"is being written by pid {holder.pid}" in err and "--wait" in err
        assert not out.exists()  # it touched nothing

        log = tmp_path / "wait.log"
        with open(log, "w") as stderr:
            waiting = _export(tiny_checkpoint, out, stderr, "--wait")
            _wait_for(lambda: "waiting for it to finish" in log.read_text(), "the export to report that it waits")
            assert waiting.poll() is None and not out.exists()  # still waiting: nothing written yet
            release.touch()
            assert waiting.wait(timeout=300) == 0, log.read_text()
    finally:
        release.touch()
        holder.wait(timeout=30)
    manifest = load_manifest(out)  # every listed file on disk with its sha256
    assert {a["path"] for a in manifest["artifacts"]} == {"model.onnx", "model.ort.onnx", "reference.npz"}
    assert read_holder(out) is None
