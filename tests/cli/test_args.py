"""The same thing has the same flag in every command; old spellings still parse, with a one-line note on stderr."""

from __future__ import annotations

import argparse
import importlib

import pytest

from ibit_deploy.cli.main import COMMANDS

# (command module, old argv, new argv): both must parse to the same values
RENAMED = [
    ("bench", ["B", "--precisions", "fp16,int8"], ["B", "--precision", "fp16,int8"]),
    ("bench", ["B", "--torch-device", "cuda"], ["B", "--device", "cuda"]),
    ("quickstart", ["--precisions", "fp32,fp16"], ["--precision", "fp32,fp16"]),
    ("compare", ["--out", "o", "--backend", "ort-trt"], ["--out", "o", "--backends", "ort-trt"]),
    ("calibrate", ["--bundle", "B", "--out", "c.npz"], ["B", "--out", "c.npz"]),
    ("train", ["--no-progress"], ["--quiet"]),
    ("train", ["--teacher-weights", "0.25", "0.75"], ["--teacher-weights", "0.25,0.75"]),
    ("distill", ["T1", "T2", "--out", "t.npz", "--weights", "0.5", "0.5"],
     ["T1", "T2", "--out", "t.npz", "--weights", "0.5,0.5"]),
]

# commands that run for minutes: each takes --quiet
LONG = ["bench", "compare", "export", "quickstart", "train"]


def _parser(module: str) -> argparse.ArgumentParser:
    return importlib.import_module(f"ibit_deploy.cli.{module}").build_parser()


@pytest.mark.parametrize("module, old, new", RENAMED, ids=[f"{m}:{o[-2] if len(o) > 1 else o[0]}"
                                                           for m, o, _ in RENAMED])
def test_old_spelling_parses_like_the_new_one_with_a_note(module, old, new, capsys):
    was = vars(_parser(module).parse_args(old))
    note = capsys.readouterr().err
    now = vars(_parser(module).parse_args(new))
    assert capsys.readouterr().err == ""  # the new spelling says nothing
    assert was == now
    assert note.count("\n") == 1 and "is deprecated; use" in note


def test_train_progress_flags_map_to_quiet(capsys):
    parser = _parser("train")
    assert parser.parse_args([]).quiet is None  # not given: the config file's / saved run's setting stays
    assert parser.parse_args(["--progress"]).quiet is False
    assert "--progress is deprecated" in capsys.readouterr().err


def test_train_quiet_sets_the_config():
    from ibit_deploy.cli.train import config_from_args

    parser = _parser("train")
    assert config_from_args(parser.parse_args(["--quiet", "--out", "x"])).progress is False
    assert config_from_args(parser.parse_args(["--out", "x"])).progress is True


def _options(parser: argparse.ArgumentParser) -> set[str]:
    """The option strings a user sees (deprecated ones are hidden from --help)."""
    return {s for a in parser._actions if a.help != argparse.SUPPRESS for s in a.option_strings}


@pytest.mark.parametrize("module", sorted(m.rsplit(".", 1)[1] for m in COMMANDS.values()))
def test_one_spelling_everywhere(module):
    options = _options(_parser(module))
    assert not options & {"--precisions", "--backend", "--torch-device", "--progress", "--no-progress", "--bundle"}
    if module in [m for m in LONG]:
        assert "--quiet" in options


@pytest.mark.parametrize("module", ["bench", "package", "calibrate"])
def test_the_bundle_is_the_first_positional_argument(module):
    positionals = [a for a in _parser(module)._actions if not a.option_strings]
    assert positionals[0].dest == "bundle"


def test_comma_separated_lists():
    assert _parser("bench").parse_args(["B", "--backends", "ort-cpu, torch-ref", "--batches", "1,4"]).batches == [1, 4]
    assert _parser("export").parse_args(["C", "--out", "o", "--package", "triton,deepstream"]).package == [
        "triton", "deepstream"]
    assert _parser("distill").parse_args(["T", "--out", "t.npz", "--weights", "1,2"]).weights == [1.0, 2.0]
    with pytest.raises(SystemExit):
        _parser("export").parse_args(["C", "--out", "o", "--package", "triton,nope"])


def test_export_quiet_runs_without_a_progress_bar(tiny_checkpoint, tmp_path, capsys):
    from ibit_deploy.cli.export import main

    assert main([str(tiny_checkpoint), "--quiet", "--out", str(tmp_path / "b")]) == 0
    assert "ibit-export:" not in capsys.readouterr().err  # no stage bar
