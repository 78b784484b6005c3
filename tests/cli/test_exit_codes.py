"""Exit codes come from the exception classes; a disk that refuses a write is exit 2 "nothing was written" in every
command; a bug is exit 70, never "bad input"."""

from __future__ import annotations

import ast
import errno
import inspect
import os
import tempfile
from pathlib import Path

import pytest

from ibit_deploy import errors
from ibit_deploy.cli.entry import LOG_DIR_ENV, cli_main
from ibit_deploy.devicekit.locking import LockBusy

CLI = Path(errors.__file__).parent / "cli"


def _error_classes() -> list[type[BaseException]]:
    return [obj for _, obj in inspect.getmembers(errors, inspect.isclass)
            if issubclass(obj, BaseException) and obj.__module__ == errors.__name__]


@pytest.mark.parametrize("cls", _error_classes(), ids=lambda c: c.__name__)
def test_every_exception_class_carries_its_exit_code(cls):
    assert cls.exit_code in {errors.CHECK_FAILED, errors.BAD_INPUT, errors.REQUIREMENT_UNMET, errors.UNEXPECTED}
    assert isinstance(cls.label, str) and cls.label


def test_the_codes_the_classes_carry():
    assert errors.CheckFailed.exit_code == errors.ExportFailed.exit_code == errors.GateFailed.exit_code == 1
    assert errors.BadInput.exit_code == 2
    assert errors.RequirementUnmet.exit_code == errors.BackendUnavailable.exit_code == 3


def test_train_and_package_check_failures_are_check_failed():
    from ibit_deploy.package import PackageCheckFailed
    from ibit_deploy.train import NonFiniteLossError

    assert issubclass(NonFiniteLossError, errors.CheckFailed) and issubclass(PackageCheckFailed, errors.CheckFailed)
    assert errors.exit_code_of(NonFiniteLossError("nan")) == errors.exit_code_of(PackageCheckFailed("x")) == 1


def test_dead_engine_required_is_gone():
    import ibit_deploy.cli.export as export_cli

    assert not hasattr(export_cli, "EngineRequired")


def _bare_int_exits(path: Path) -> list[str]:
    """``return 2`` / ``sys.exit(2)`` / ``SystemExit(2)`` / ``return 0 if x else 1`` in a file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        value = None
        if isinstance(node, ast.Return):
            value = node.value
        elif isinstance(node, ast.Call) and node.args and (
                (isinstance(node.func, ast.Attribute) and node.func.attr == "exit")
                or (isinstance(node.func, ast.Name) and node.func.id == "SystemExit")):
            value = node.args[0]
        parts = [value.body, value.orelse] if isinstance(value, ast.IfExp) else [value]
        if any(isinstance(p, ast.Constant) and type(p.value) is int for p in parts):
            found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_command_returns_a_bare_integer():
    found = [hit for path in sorted(CLI.glob("*.py")) for hit in _bare_int_exits(path)]
    assert not found, f"exit codes as bare integers (use ibit_deploy.errors' constants or classes): {found}"


@pytest.mark.parametrize("raised, code, words", [
    (OSError(errno.ENOSPC, "No space left on device", "/out/x"), 2, "nothing was written"),
    (OSError(errno.EROFS, "Read-only file system", "/out/x"), 2, "nothing was written"),
    (OSError(errno.EDQUOT, "Disk quota exceeded"), 2, "nothing was written"),
    (PermissionError(errno.EACCES, "Permission denied", "/out/x"), 2, "nothing was written"),
    (OSError(errno.EIO, "Input/output error"), 70, "unexpected error"),
    (RuntimeError("a bug"), 70, "unexpected error"),
    (LockBusy("held by pid 1"), 1, "FAILED"),
    (errors.BadInput("no such command"), 2, "error: no such command"),
])
def test_wrapper_maps_through_the_classes(raised, code, words, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path / "logs"))

    @cli_main("ibit-x")
    def main(argv=None):
        raise raised

    assert main([]) == code
    err = capsys.readouterr().err
    assert words in err and err.startswith("ibit-x: ") and err.count("\n") == 1


# --------------------------------------------------------------------------------- a full disk, command by command
@pytest.fixture
def full_disk(tmp_path, monkeypatch):
    """A folder on a 'full disk': every atomic write under it (and any temp file made there) fails with ENOSPC."""
    disk = tmp_path / "disk"
    disk.mkdir()
    real = tempfile.mkstemp

    def mkstemp(*args, **kwargs):
        where = kwargs.get("dir") or (args[2] if len(args) > 2 else None)
        if where is not None and Path(os.path.abspath(where)).is_relative_to(disk):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(where))
        return real(*args, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path / "logs"))
    return disk


def _assert_nothing_written(code, capsys, prog):
    err = capsys.readouterr().err
    assert code == errors.BAD_INPUT, err
    assert f"{prog}: error: cannot write the output" in err and "nothing was written" in err
    assert "unexpected error" not in err and "Traceback" not in err


def test_masks_on_a_full_disk(full_disk, capsys):
    from ibit_deploy.cli.masks import main

    _assert_nothing_written(main(["ibit_test_patch4_28", "--out", str(full_disk / "masks.png")]), capsys, "ibit-masks")
    assert not (full_disk / "masks.png").exists()


def test_calibrate_on_a_full_disk(full_disk, capsys):
    from ibit_deploy.cli.calibrate import main

    code = main(["--spec", "synthetic:32", "--count", "8", "--out", str(full_disk / "calib.npz")])
    _assert_nothing_written(code, capsys, "ibit-calibrate")
    assert not (full_disk / "calib.npz").exists()


def test_train_on_a_full_disk(full_disk, capsys):
    from ibit_deploy.cli.train import main

    code = main(["--model", "ibit_test_patch4_28", "--data", "synthetic:32", "--epochs", "1", "--batch-size", "8",
                 "--max-steps-per-epoch", "1", "--num-workers", "0", "--quiet", "--out", str(full_disk / "run")])
    _assert_nothing_written(code, capsys, "ibit-train")


def test_eval_on_a_full_disk(tiny_checkpoint, full_disk, capsys):
    from ibit_deploy.cli.evaluate import main

    code = main([str(tiny_checkpoint), "--out", str(full_disk / "eval")])
    _assert_nothing_written(code, capsys, "ibit-eval")


def test_export_on_a_full_disk(tiny_checkpoint, full_disk, capsys):
    from ibit_deploy.cli.export import main

    _assert_nothing_written(main([str(tiny_checkpoint), "--quiet", "--out", str(full_disk / "bundle")]), capsys,
                            "ibit-export")
    assert not (full_disk / "bundle" / "manifest.json").exists()


def test_eval_bug_is_unexpected_not_bad_input(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    import ibit_deploy.train.evaluate as evaluate

    def broken(*args, **kwargs):
        raise RuntimeError("shape mismatch in our own code")

    monkeypatch.setattr(evaluate, "evaluate_checkpoint", broken)
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path / "logs"))
    from ibit_deploy.cli.evaluate import main

    assert main([str(tiny_checkpoint)]) == errors.UNEXPECTED
    assert "unexpected error (RuntimeError" in capsys.readouterr().err


def test_export_io_error_is_unexpected_not_bad_input(tiny_checkpoint, tmp_path, monkeypatch, capsys):
    import ibit_deploy.cli.export as export_cli

    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(export_cli, "export_checkpoint", broken)
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path / "logs"))
    assert export_cli.main([str(tiny_checkpoint), "--out", str(tmp_path / "b")]) == errors.UNEXPECTED
    assert "unexpected error (OSError" in capsys.readouterr().err


def test_unknown_command_is_bad_input(capsys):
    from ibit_deploy.cli.main import main

    assert main(["nope"]) == errors.BAD_INPUT
    assert "unknown command 'nope'" in capsys.readouterr().err
