"""The write policy (ibit_deploy.outputs): every data-loss case of issue 21 section 2, and issue 22's lock and modes.

Each command is run as a user would run it; the assertion is always that what was there before is still there,
byte for byte, and that the command said why it refused.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from ibit_deploy.cli.calibrate import main as calibrate_main
from ibit_deploy.cli.distill import main as distill_main
from ibit_deploy.cli.masks import main as masks_main
from ibit_deploy.cli.package import main as package_main
from ibit_deploy.devicekit.fileio import sha256_file
from ibit_deploy.export.pipeline import export_checkpoint

REPO = Path(__file__).resolve().parents[1]


def tree(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (relative path -> sha256), hidden lock files aside."""
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def exported(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint exported at fp32 (read-only: copy it to change it)."""
    out = tmp_path_factory.mktemp("policy") / "bundle"
    export_checkpoint(tiny_checkpoint, out)
    return out


@pytest.fixture
def bundle(exported: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(exported, tmp_path / "bundle"))


@pytest.fixture
def checkpoint(tiny_checkpoint: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_checkpoint, tmp_path / "run"))


# ------------------------------------------------------------------------------------------------ package --out
def test_package_never_replaces_a_bundle_even_with_overwrite(bundle: Path, capsys):
    before = tree(bundle)
    assert package_main([str(bundle), "--for", "triton", "--out", str(bundle), "--overwrite"]) == 2
    assert "bundle" in capsys.readouterr().err
    assert tree(bundle) == before


def test_package_never_replaces_a_checkpoint_even_with_overwrite(bundle: Path, checkpoint: Path, capsys):
    before = tree(checkpoint)
    assert package_main([str(bundle), "--for", "triton", "--out", str(checkpoint), "--overwrite"]) == 2
    assert "checkpoint" in capsys.readouterr().err
    assert tree(checkpoint) == before


def test_package_never_replaces_a_folder_holding_its_source_or_a_users_files(bundle: Path, tmp_path: Path):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    assert package_main([str(bundle), "--for", "triton", "--out", str(mine), "--overwrite"]) == 2
    assert (mine / "notes.txt").read_text() == "mine"
    before = tree(bundle)
    assert package_main([str(bundle), "--for", "triton", "--out", str(tmp_path), "--overwrite"]) == 2
    assert tree(bundle) == before


def test_package_replaces_its_own_package_with_overwrite(bundle: Path, tmp_path: Path, capsys):
    out = tmp_path / "triton"
    assert package_main([str(bundle), "--for", "triton", "--out", str(out)]) == 0
    assert package_main([str(bundle), "--for", "triton", "--out", str(out)]) == 2  # as before: --overwrite asked
    assert package_main([str(bundle), "--for", "triton", "--out", str(out), "--overwrite"]) == 0
    assert json.loads((out / "package.json").read_text())["bundle"]["path"] == str(bundle.resolve())


# ----------------------------------------------------------------------------------------------- re-export
def test_reexport_keeps_the_bundles_packages_and_the_users_files(tiny_checkpoint: Path, bundle: Path):
    assert package_main([str(bundle), "--for", "triton", "--out", str(bundle / "packages" / "triton")]) == 0
    assert package_main([str(bundle), "--for", "jetson-inference", "--out", str(bundle / "pkg")]) == 0
    (bundle / "notes.txt").write_text("my notes")
    kept = {rel: tree(bundle / rel) for rel in ("packages", "pkg")}
    manifest = export_checkpoint(tiny_checkpoint, bundle)
    assert {rel: tree(bundle / rel) for rel in ("packages", "pkg")} == kept
    assert (bundle / "notes.txt").read_text() == "my notes"
    replaced = manifest["export"]["replaced"]
    assert replaced["packages"] == ["packages/triton", "pkg"]
    assert replaced["kept"] == ["notes.txt", "packages", "pkg"]


def test_ibit_export_regenerates_the_kept_packages_and_says_so(tiny_checkpoint: Path, bundle: Path, capsys):
    from ibit_deploy.cli.export import main as export_main

    assert package_main([str(bundle), "--for", "triton", "--out", str(bundle / "packages" / "triton"),
                         "--name", "digits"]) == 0
    assert package_main([str(bundle), "--for", "jetson-inference", "--out", str(bundle / "pkg")]) == 0
    capsys.readouterr()
    assert export_main([str(tiny_checkpoint), "--out", str(bundle)]) == 0
    printed = capsys.readouterr().out
    for rel, target in (("packages/triton", "triton"), ("pkg", "jetson-inference")):
        record = json.loads((bundle / rel / "package.json").read_text())
        assert record["bundle"]["manifest_sha256"] == sha256_file(bundle / "manifest.json")  # from the new bundle
        assert record["target"] == target and f"regenerated the package {bundle / rel}" in printed
    assert (bundle / "packages" / "triton" / "digits").is_dir()  # with the options it was made with


# ------------------------------------------------------------------------------------------------- bench
BENCH_CHILD = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    import numpy as np
    from ibit_deploy.bench.harness import run_benchmark
    from ibit_deploy.runtime.base import InputSpec, Runner
    from ibit_deploy.runtime.load import RunnerChoice

    class Slow(Runner):
        backend = "scripted"
        def _open(self):
            pass
        def _infer(self, images):
            Path(sys.argv[2]).touch()
            time.sleep(600)

    def runners(*args, **kwargs):
        return [RunnerChoice("ort-cpu:fp32", Slow(InputSpec("images", 1, 28, 28)), "ort-cpu", "fp32", "model.onnx")]

    run_benchmark(sys.argv[1], limit=20, batches=[1], warmup=0, iters=2, progress=False, runners=runners)
""")


def _scripted(error: BaseException | None = None):
    from ibit_deploy.runtime.base import InputSpec, Runner
    from ibit_deploy.runtime.load import RunnerChoice

    class Scripted(Runner):
        backend = "scripted"

        def _open(self) -> None:
            pass

        def _infer(self, images: np.ndarray) -> np.ndarray:
            if error is not None:
                raise error
            return np.zeros((len(images), 10), np.float32)

    spec = InputSpec("images", 1, 28, 28)
    return lambda *a, **k: [RunnerChoice("ort-cpu:fp32", Scripted(spec), "ort-cpu", "fp32", "model.onnx")]


def _bench(bundle: Path, error: BaseException | None = None) -> dict:
    from ibit_deploy.bench.harness import run_benchmark

    return run_benchmark(bundle, limit=20, batches=[1], warmup=0, iters=2, progress=False, runners=_scripted(error))


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["kill-9", "ctrl-c"])
def test_a_killed_or_interrupted_bench_leaves_the_previous_reports(bundle: Path, tmp_path: Path, sig):
    assert _bench(bundle)["status"] == "complete"
    before = tree(bundle / "bench")
    started = tmp_path / "started"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", BENCH_CHILD, str(bundle), str(started)], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                             preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 120
        while not started.exists():
            assert child.poll() is None, child.stderr.read().decode()
            assert time.monotonic() < deadline, "the bench child never started measuring"
            time.sleep(0.1)
        child.send_signal(sig)
        child.wait(timeout=60)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stderr.close()
    assert tree(bundle / "bench") == before
    assert _bench(bundle)["status"] == "complete"  # the next bench cleans what the killed one left
    assert not [p for p in bundle.iterdir() if p.name.startswith(".bench.") and p.is_dir()]


def test_ctrl_c_never_replaces_a_complete_report_with_a_partial_one(bundle: Path):
    assert _bench(bundle)["status"] == "complete"
    before = tree(bundle / "bench")
    with pytest.raises(KeyboardInterrupt):
        _bench(bundle, KeyboardInterrupt())
    assert tree(bundle / "bench") == before


def test_bench_never_writes_its_reports_over_a_bundle_or_a_users_folder(bundle: Path, tmp_path: Path):
    from ibit_deploy.bench.harness import run_benchmark

    before = tree(bundle)
    with pytest.raises(FileExistsError, match="bundle"):
        run_benchmark(bundle, limit=20, batches=[1], warmup=0, iters=2, progress=False, runners=_scripted(),
                      out_dir=bundle)
    assert tree(bundle) == before
    mine = tmp_path / "results"
    mine.mkdir()
    (mine / "thesis.tex").write_text("mine")
    with pytest.raises(FileExistsError, match="no kind"):
        run_benchmark(bundle, limit=20, batches=[1], warmup=0, iters=2, progress=False, runners=_scripted(),
                      out_dir=mine)
    assert (mine / "thesis.tex").read_text() == "mine"


# -------------------------------------------------------------------------------------------------- masks
def test_masks_never_write_over_training_curves_or_a_bench_plot(checkpoint: Path, bundle: Path, capsys):
    from ibit_deploy.train.records import CURVES_FILE, plot_curves

    plot_curves(checkpoint, [{"epoch": 1, "train_loss": 1.0, "val_loss": 1.0, "train_top1": 0.5, "val_top1": 0.5}])
    assert (checkpoint / CURVES_FILE).is_file()
    before = tree(checkpoint)
    assert masks_main([str(checkpoint), "--out", str(checkpoint / CURVES_FILE)]) == 2
    assert masks_main([str(checkpoint), "--out", str(checkpoint / CURVES_FILE), "--overwrite"]) == 2
    assert tree(checkpoint) == before
    assert _bench(bundle)["status"] == "complete"
    plot = bundle / "bench" / "latency_vs_batch.png"
    was = sha256_file(plot)
    assert masks_main([str(checkpoint), "--out", str(plot)]) == 2
    assert sha256_file(plot) == was


def test_masks_replace_their_own_plot_of_the_same_source_only(checkpoint: Path, tmp_path: Path, capsys):
    out = tmp_path / "masks.png"
    assert masks_main([str(checkpoint), "--out", str(out)]) == 0
    assert masks_main([str(checkpoint), "--out", str(out), "--query", "1,1"]) == 0
    was = sha256_file(out)
    assert masks_main(["ibit_test_patch4_28", "--out", str(out)]) == 2
    assert "not for ibit_test_patch4_28" in capsys.readouterr().err and sha256_file(out) == was
    # --overwrite replaces the command's own kind made from another source, and nothing else
    assert masks_main(["ibit_test_patch4_28", "--out", str(out), "--overwrite"]) == 0 and sha256_file(out) != was


@pytest.mark.parametrize("command", ["calibrate", "masks", "distill-logits", "eval", "export", "package"])
def test_every_command_that_suggests_overwrite_has_it(command):
    """check_output's message says 'pass --overwrite' for an output of the command's own kind from another
    source: every command that asks the policy must accept that flag."""
    import importlib

    from ibit_deploy.cli.main import COMMANDS

    parser = importlib.import_module(COMMANDS[command]).build_parser()
    assert any("--overwrite" in a.option_strings for a in parser._actions)


# ---------------------------------------------------------------------------------------- calibration vs logits
def _teacher_logits(path: Path) -> None:
    from ibit_deploy.train.distill import save_teacher_logits

    save_teacher_logits(path, np.ones((1, 8, 10), np.float32), "fp", ["resnet_small"], [1.0], "mnist5k")


def test_calibrate_never_replaces_teacher_logits(tmp_path: Path, capsys):
    logits = tmp_path / "teacher_logits.npz"
    _teacher_logits(logits)
    was = sha256_file(logits)
    assert calibrate_main(["--spec", "mnist5k", "--count", "16", "--out", str(logits)]) == 2
    assert calibrate_main(["--spec", "mnist5k", "--count", "16", "--out", str(logits), "--overwrite"]) == 2
    assert "teacher logits" in capsys.readouterr().err and sha256_file(logits) == was


def test_distill_logits_never_replace_a_calibration_set(tiny_checkpoint: Path, tmp_path: Path, capsys):
    calib = tmp_path / "calib.npz"
    assert calibrate_main(["--spec", "mnist5k", "--count", "16", "--out", str(calib)]) == 0
    was = sha256_file(calib)
    assert distill_main([str(tiny_checkpoint), "--out", str(calib)]) == 2
    assert "calibration set" in capsys.readouterr().err and sha256_file(calib) == was


def test_npz_kinds_are_read_from_inside_the_file(tmp_path: Path):
    from ibit_deploy.outputs import CALIBRATION, TEACHER_LOGITS, check_output, identify

    logits, calib = tmp_path / "a.npz", tmp_path / "b.npz"
    _teacher_logits(logits)
    assert calibrate_main(["--spec", "mnist5k", "--count", "16", "--out", str(calib)]) == 0
    assert identify(logits).kind == TEACHER_LOGITS and identify(calib).kind == CALIBRATION
    with np.load(calib) as npz:
        assert str(npz["kind"]) == CALIBRATION
    plain = tmp_path / "plain.npz"
    np.savez(plain, x=np.zeros(3))
    assert identify(plain).kind is None
    with pytest.raises(FileExistsError, match="no kind"):
        check_output(plain, CALIBRATION, overwrite=True)


# ------------------------------------------------------------------------------------------------ examples
def test_classify_folder_never_writes_its_csv_over_a_manifest(bundle: Path, tmp_path: Path):
    from PIL import Image

    images = tmp_path / "images"
    images.mkdir()
    Image.fromarray(np.zeros((28, 28), np.uint8)).save(images / "a.png")
    before = tree(bundle)
    result = subprocess.run([sys.executable, str(REPO / "examples" / "classify_folder.py"), str(bundle),
                             str(images), "--out", str(bundle / "manifest.json")],
                            capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 2, result.stderr
    assert "manifest" in result.stderr
    assert tree(bundle) == before
    out = tmp_path / "predictions.csv"
    for _ in range(2):  # its own CSV it replaces
        result = subprocess.run([sys.executable, str(REPO / "examples" / "classify_folder.py"), str(bundle),
                                 str(images), "--out", str(out)], capture_output=True, text=True, timeout=300,
                                env={**os.environ, "PYTHONPATH": str(REPO)})
        assert result.returncode == 0, result.stderr


# --------------------------------------------------------------------------------------- export: lock and modes
def test_a_refused_export_leaves_no_lock_file(tiny_checkpoint: Path, tmp_path: Path):
    target = tmp_path / "file.txt"
    target.write_text("not a bundle")
    with pytest.raises(NotADirectoryError):
        export_checkpoint(tiny_checkpoint, target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file.txt"]
    from ibit_deploy.outputs import check_output

    with pytest.raises(IsADirectoryError):
        check_output(Path("/"), "bundle", folder=True)


def test_new_bundles_honour_the_umask_and_replaced_ones_keep_their_mode(tiny_checkpoint: Path, tmp_path: Path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "bundle"
        export_checkpoint(tiny_checkpoint, out)
        assert stat.S_IMODE(out.stat().st_mode) == 0o755
        out.chmod(0o750)
        export_checkpoint(tiny_checkpoint, out)
        assert stat.S_IMODE(out.stat().st_mode) == 0o750
    finally:
        os.umask(old)
