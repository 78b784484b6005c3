"""``ibit-deploy compare`` bad input: exit 2 with a clear message, before any training starts (a bad option value
when it is parsed); the hints it prints name only flags it has."""

from __future__ import annotations

import re

import pytest

from ibit_deploy.cli.compare import build_parser
from ibit_deploy.cli.main import main

BASE = ["compare", "--data", "synthetic:256", "--embed-dim", "32", "--depth", "2", "--num-heads", "2",
        "--batch-size", "16", "--seeds", "0"]


def _exit_code(argv: list[str]) -> int:
    """The exit code of ``ibit-deploy ARGV``: argparse's usage errors end in SystemExit(2), the rest return it."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code)


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
    assert _exit_code([*BASE, "--out", str(out), *extra]) == 2
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


NOT_NUMBERS = ["nan", "inf", "-inf", "abc", ""]
# every numeric option of compare -> values it must refuse when parsed (exit 2, nothing written)
BAD_VALUES = {
    "--steps": ["0", "-5", "1.5", *NOT_NUMBERS],
    "--workers": ["0", "-1", "2.5", *NOT_NUMBERS],
    "--threads": ["0", "-1", *NOT_NUMBERS],
    "--embed-dim": ["0", "-32", *NOT_NUMBERS],
    "--depth": ["0", "-2", *NOT_NUMBERS],
    "--num-heads": ["0", "-2", *NOT_NUMBERS],
    "--batch-size": ["0", "-16", "16.5", *NOT_NUMBERS],
    "--lr": ["0", "-0.001", "1e400", *NOT_NUMBERS],
    "--latency-seconds": ["0", "-1", "1e9", *NOT_NUMBERS],
    "--margin": ["-0.5", "100.5", "1e400", *NOT_NUMBERS],
    "--latency-rounds": ["-1", "2.5", *NOT_NUMBERS],
    "--seeds": ["-1", "0,-2", "4294967296", "0.5", "nan", ""],
    "--fractions": ["0", "-0.5", "1.5", "nan", "inf", "0.5,nan", ""],
    "--latency-batches": ["0", "-1,1", "8,32", "1,nan", "1.5", ""],
}


@pytest.mark.parametrize("option, value", [(o, v) for o, values in BAD_VALUES.items() for v in values])
def test_every_numeric_option_refuses_bad_values_when_parsed(tmp_path, capsys, option, value):
    out = tmp_path / "study"
    # --report-only: refused at parse time, before even the study folder is looked at
    assert _exit_code(["compare", "--out", str(out), "--report-only", f"{option}={value}"]) == 2
    err = capsys.readouterr().err
    assert option in err and "Traceback" not in err
    assert not out.exists()


def test_the_table_covers_every_numeric_option():
    numeric = {a.option_strings[0] for a in build_parser()._actions
               if a.option_strings and a.option_strings[0] not in ("-h", "--data", "--candidates", "--out", "--backends",
                                                                 "--backend", "--executor", "--ray-address")
               and a.nargs != 0}
    assert numeric == set(BAD_VALUES)


@pytest.mark.parametrize("value", ["0", "0.5", "100"])
def test_the_margin_accepts_points_from_0_to_100(value):
    assert build_parser().parse_args(["--out", "x", "--margin", value]).margin == float(value)


@pytest.mark.parametrize("extra, message", [
    (["--ray-address", "auto"], "--ray-address names the cluster of --executor ray"),
    (["--executor", "ray", "--ray-address", "head-node"], "--ray-address must be 'auto' or HOST:PORT"),
    (["--executor", "ray", "--ray-address", "head:99999"], "--ray-address must be 'auto' or HOST:PORT"),
    (["--executor", "ray", "--ray-address", "http://head:6379"], "--ray-address must be 'auto' or HOST:PORT"),
    (["--executor", "ray", "--ray-address", "ray://head:10001"], "--ray-address must be 'auto' or HOST:PORT"),
    (["--executor", "dask"], "invalid choice: 'dask'"),
    (["--report-only", "--latency-rounds", "3"], "--report-only reads the study and times nothing"),
    (["--retime", "--latency-rounds", "0"], "--retime with --latency-rounds 0 has nothing to time"),
])
def test_contradictory_timing_options_exit_2(tmp_path, capsys, extra, message):
    assert _exit_code(["compare", "--out", str(tmp_path / "study"), *extra]) == 2
    assert message in capsys.readouterr().err


def _flags(text: str) -> set[str]:
    return set(re.findall(r"(?<![\w-])--[a-z][a-z-]*", text))


def test_a_busy_study_hint_names_only_flags_compare_has(tmp_path, capsys, lock_holder):
    out = tmp_path / "study"
    lock_holder(out, 60)  # another compare (or an orphaned worker's session) holds the study
    assert _exit_code([*BASE, "--out", str(out), "--candidates", "vit", "--fractions", "1.0", "--steps", "12"]) == 1
    err = capsys.readouterr().err
    assert "is in use by" in err and "run the same command again to resume the study" in err
    known = {s for a in build_parser()._actions for s in a.option_strings}
    assert _flags(err) <= known, f"the hint names flags compare does not have: {_flags(err) - known}"
    assert not (out / "study.json").exists()


@pytest.mark.parametrize("holds", ["user folder", "bundle", "checkpoint", "file"])
def test_an_out_that_is_no_study_is_refused_and_left_as_it_was(tmp_path, capsys, holds):
    """--out onto a user's folder, a bundle, a checkpoint or a file: exit 2 naming it and what --out may be, with
    nothing written into it or beside it (not even a lock file); a study's own folder is never refused."""
    out = tmp_path / "out"
    names = {"user folder": ["notes.txt"], "bundle": ["manifest.json", "model.onnx"],
             "checkpoint": ["config.json", "model.safetensors"]}.get(holds)
    if names is None:
        out.write_text("mine")
    else:
        out.mkdir()
        for name in names:
            (out / name).write_text("mine")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert _exit_code([*BASE, "--steps", "60", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "study" in err and "Errno" not in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    if names is not None:
        assert sorted(p.name for p in out.iterdir()) == sorted(names)


def test_a_study_folder_left_before_its_study_file_is_not_refused():
    """A prepare killed after the run specs but before study.json (written last) leaves only the study's own names:
    the next run resumes there."""
    from ibit_deploy.study.layout import foreign_entries

    assert foreign_entries(["runs", ".study.json.123.abcd.tmp", "report", ".report.lock"]) == []
    assert foreign_entries(["runs", "notes.txt", ".git"]) == ["notes.txt", ".git"]


@pytest.mark.parametrize("flags", [["--retime"], ["--report-only"], ["--report-only", "--retime"]])
def test_report_and_retime_of_a_folder_that_is_no_study_write_nothing(tmp_path, capsys, flags):
    """--report-only / --retime read a study folder: on anything else exit 2 naming it, with no lock file beside it."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert _exit_code(["compare", "--out", str(out), *flags]) == 2
    err = capsys.readouterr().err
    assert str(out) in err and "study" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == before and [p.name for p in out.iterdir()] == ["notes.txt"]
