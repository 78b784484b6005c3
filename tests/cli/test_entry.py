"""The one CLI wrapper: every command maps exceptions to the exit codes of ibit_deploy.errors, never a traceback."""

from __future__ import annotations

import importlib

import pytest

from ibit_deploy import errors
from ibit_deploy.cli.entry import LOG_DIR_ENV, cli_main
from ibit_deploy.cli.main import COMMANDS


@pytest.mark.parametrize("raised, code", [
    (ValueError("bad value"), errors.BAD_INPUT), (FileNotFoundError("nope"), errors.BAD_INPUT),
    (errors.CheckFailed("gate"), errors.CHECK_FAILED), (errors.RequirementUnmet("no gpu"), errors.REQUIREMENT_UNMET),
    (KeyboardInterrupt(), errors.INTERRUPTED),
])
def test_known_failures_map_to_their_codes(raised, code, capsys):
    @cli_main("ibit-x")
    def main(argv=None):
        raise raised

    assert main([]) == code
    assert "Traceback" not in capsys.readouterr().err


def test_unexpected_error_is_one_line_with_a_log_holding_the_traceback(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(LOG_DIR_ENV, str(tmp_path / "logs"))

    @cli_main("ibit-x")
    def main(argv=None):
        return {}["missing"]  # a bug, not a verdict about the input

    assert main(["--flag"]) == errors.UNEXPECTED
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "Traceback" not in err and "KeyError" in err
    logs = list((tmp_path / "logs").glob("ibit-x-*.log"))
    assert len(logs) == 1 and str(logs[0]) in err
    text = logs[0].read_text()
    assert "command: ibit-x --flag" in text and "Traceback" in text and "KeyError: 'missing'" in text


def test_codes_are_distinct():
    codes = [errors.DONE, errors.CHECK_FAILED, errors.BAD_INPUT, errors.REQUIREMENT_UNMET, errors.UNEXPECTED,
             errors.INTERRUPTED]
    assert len(set(codes)) == len(codes) and codes[:4] == [0, 1, 2, 3]


@pytest.mark.parametrize("module", sorted(set(COMMANDS.values()) | {"ibit_deploy.cli.main"}))
def test_every_command_goes_through_the_wrapper(module):
    mod = importlib.import_module(module)
    assert getattr(mod.main, "__wrapped__", None) is not None, f"{module}.main is not wrapped by cli_main"
