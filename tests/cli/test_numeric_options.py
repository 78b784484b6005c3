"""Every numeric option of every command is checked for range and finiteness when it is parsed: a bad value is exit
2 with a message naming the flag, before anything is read or written. One table per command; a numeric option
without a row fails :func:`test_the_table_covers_every_numeric_option`."""

from __future__ import annotations

import argparse
import importlib
from collections.abc import Callable
from typing import Any

import pytest

from ibit_deploy.cli.args import numeric_options, unchecked_numbers

from ..conftest import exit_code
from ..examples.conftest import load_example
from .test_compare import BAD_VALUES as COMPARE_BAD_VALUES

NOT_NUMBERS = ["nan", "inf", "-inf", "abc", ""]
HUGE = "1" + "0" * 30  # an integer no count, batch or seed can be
COUNTS = ["0", "-1", "2.5", HUGE, *NOT_NUMBERS]  # integers >= 1
BUILDER_LIMITS = {  # devicekit/build_limits.add_limit_arguments: build_engine.py and ibit-export
    "--workspace-mib": ["0", "-1", "1.5", "2000000", HUGE, *NOT_NUMBERS],
    "--builder-optimization-level": ["-1", "6", "2.5", *NOT_NUMBERS],
    "--aux-streams": ["-1", "65", "1.5", *NOT_NUMBERS],
}
FRACTION_OPEN_HIGH = ["-0.1", "1", "1.5", *NOT_NUMBERS]  # [0, 1)
POSITIVE = ["0", "-1e-3", "1e400", *NOT_NUMBERS]  # > 0
NON_NEGATIVE = ["-1", "-1e-9", "1e400", *NOT_NUMBERS]  # >= 0
POINTS = ["-0.5", "100.5", "1e400", *NOT_NUMBERS]  # top-1 points, [0, 100]
SEEDS = ["-1", "4294967296", "0.5", *NOT_NUMBERS]
THREADS = ["-1", "1.5", "100000", *NOT_NUMBERS]

# command -> (module path or loader, the argv before the option) ; option -> values it must refuse
COMMANDS: dict[str, tuple[str, list[str]]] = {
    "ibit-train": ("ibit_deploy.cli.train", []),
    "ibit-eval": ("ibit_deploy.cli.evaluate", ["ck"]),
    "ibit-export": ("ibit_deploy.cli.export", ["ck", "--out", "b"]),
    "ibit-bench": ("ibit_deploy.cli.bench", ["b"]),
    "ibit-masks": ("ibit_deploy.cli.masks", ["ck"]),
    "ibit-calibrate": ("ibit_deploy.cli.calibrate", ["--out", "c.npz"]),
    "ibit-distill-logits": ("ibit_deploy.cli.distill", ["t", "--out", "t.npz"]),
    "ibit-deploy package": ("ibit_deploy.cli.package", ["b", "--for", "triton", "--out", "p"]),
    "ibit-deploy quickstart": ("ibit_deploy.cli.quickstart", []),
    "ibit-deploy compare": ("ibit_deploy.cli.compare", ["--out", "s", "--report-only"]),
    "build_engine.py": ("ibit_deploy.devicekit.cli", ["--bundle", "b"]),
    "classify_folder.py": ("example:classify_folder", ["b", "imgs"]),
    "batching_service.py": ("example:batching_service", ["b"]),
}

BAD: dict[str, dict[str, list[str]]] = {
    "ibit-train": {
        "--image-size": ["0", "-28", "28.5", "100000", *NOT_NUMBERS],
        "--val-fraction": FRACTION_OPEN_HIGH,
        "--subset": ["0", "-0.5", "1.01", *NOT_NUMBERS],
        "--seed": SEEDS,
        "--epochs": COUNTS,
        "--batch-size": COUNTS,
        "--lr": POSITIVE,
        "--weight-decay": NON_NEGATIVE,
        "--warmup-epochs": NON_NEGATIVE,
        "--min-lr": NON_NEGATIVE,
        "--label-smoothing": FRACTION_OPEN_HIGH,
        "--clip-grad": POSITIVE,
        "--ema-decay": FRACTION_OPEN_HIGH,
        "--randaugment": ["-1", "31", "4.5", *NOT_NUMBERS],
        "--random-erasing": ["-0.1", "1.1", *NOT_NUMBERS],
        "--mixup": NON_NEGATIVE,
        "--cutmix": NON_NEGATIVE,
        "--distill-alpha": ["-0.1", "1.5", *NOT_NUMBERS],  # the teacher weight in the loss
        "--distill-tau": POSITIVE,
        "--teacher-weights": ["-0.5,1.5", "0,0", "0.5,nan", "inf", "abc", ""],
        "--num-workers": ["-1", "1.5", "100000", *NOT_NUMBERS],
        "--max-steps-per-epoch": COUNTS,
        "--val-every": COUNTS,
    },
    "ibit-eval": {"--batch-size": COUNTS},
    "ibit-export": {
        "--opset": ["16", "99", "-1", "18.5", *NOT_NUMBERS],
        "--min-batch": COUNTS, "--opt-batch": COUNTS, "--max-batch": COUNTS,
        "--max-drop": POINTS,
        "--calib-count": ["0", "7", "-256", "2.5", HUGE, *NOT_NUMBERS],
        "--eval-count": COUNTS,
        **BUILDER_LIMITS,
    },
    "ibit-bench": {
        "--batches": ["0", "1,-8", "1,nan", "1.5", HUGE, ""],
        "--limit": COUNTS,
        "--warmup": ["-1", "2.5", HUGE, *NOT_NUMBERS],
        "--iters": COUNTS,
        "--seconds": ["0", "-1", "3601", "1e400", *NOT_NUMBERS],
        "--threads": THREADS,
    },
    "ibit-masks": {"--query": ["-1,3", "3,-1", "3", "3,3,3", "1.5,2", "nan,1", HUGE + ",1", ""]},
    "ibit-calibrate": {
        "--count": ["0", "7", "-1", "2.5", HUGE, *NOT_NUMBERS],
        "--seed": SEEDS,
        "--percentile": ["50", "-1", "100.01", "1000", *NOT_NUMBERS],  # a calibration percentile, in (50, 100]
    },
    "ibit-distill-logits": {
        "--weights": ["-0.5,1.5", "0,0", "nan,1", "1,inf", "abc", ""],
        "--batch-size": COUNTS,
    },
    "ibit-deploy package": {
        "--batch-size": COUNTS,
        "--threshold": ["-0.1", "1.5", *NOT_NUMBERS],
        "--max-queue-delay-us": ["-1", "1.5", HUGE, *NOT_NUMBERS],
    },
    "ibit-deploy quickstart": {
        "--epochs": COUNTS,
        "--batches": ["0", "1,-8", "1,nan", "abc", ""],
        "--seed": SEEDS,
        "--threads": THREADS,
    },
    "ibit-deploy compare": COMPARE_BAD_VALUES,
    "build_engine.py": {
        "--max-drop": POINTS,
        "--min-batch": COUNTS, "--opt-batch": COUNTS, "--max-batch": COUNTS,
        **BUILDER_LIMITS,
        "--verify-samples": COUNTS,
        "--trt-major": ["0", "-10", "10.3", "100", *NOT_NUMBERS],
    },
    "classify_folder.py": {"--top-k": COUNTS},
    "batching_service.py": {
        "--port": ["-1", "65536", "80.5", *NOT_NUMBERS],
        "--max-batch": COUNTS,
        "--max-queue-delay-ms": ["-1", "60001", "1e400", *NOT_NUMBERS],
        "--top-k": COUNTS,
        "--threads": THREADS,
        "--load-test": ["0", "-5", "3601", *NOT_NUMBERS],
        "--concurrency": ["0", "-1", "1.5", "100000", *NOT_NUMBERS],
    },
}


def _module(command: str) -> Any:
    where = COMMANDS[command][0]
    return load_example(where.split(":", 1)[1]) if where.startswith("example:") else importlib.import_module(where)


def _parser(command: str) -> argparse.ArgumentParser:
    module = _module(command)
    return module._parser() if command == "build_engine.py" else module.build_parser()


def _main(command: str) -> Callable[[list[str]], Any]:
    return _module(command).main


CASES = [(c, o, v) for c, options in BAD.items() for o, values in options.items() for v in values]


@pytest.mark.parametrize("command, option, value", CASES, ids=[f"{c}:{o}={v}" for c, o, v in CASES])
def test_a_bad_value_exits_2_naming_the_flag_when_parsed(command, option, value, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative outputs land here, and nothing may be written at all
    assert exit_code(_main(command), [*COMMANDS[command][1], f"{option}={value}"]) == 2
    err = capsys.readouterr().err
    assert option in err and "Traceback" not in err, err
    assert "error: argument" in err, f"{option}={value} was not refused when parsed: {err}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("command", list(COMMANDS))
def test_the_table_covers_every_numeric_option(command):
    parser = _parser(command)
    assert unchecked_numbers(parser) == [], "numeric options parsed without a range: use cli.args.add_number"
    assert set(numeric_options(parser)) == set(BAD[command])


@pytest.mark.parametrize("command, argv, expected", [
    ("ibit-train", ["--distill-alpha", "0", "--distill-tau", "0.5", "--teacher-weights", "0,1", "--seed", "4294967295"],
     {"distill_alpha": 0.0, "distill_tau": 0.5, "teacher_weights": [0.0, 1.0], "seed": 2**32 - 1}),
    ("ibit-calibrate", ["--percentile", "100", "--count", "8"], {"percentile": 100.0, "count": 8}),
    ("ibit-export", ["--max-drop", "0", "--opset", "17"], {"max_drop": 0.0, "opset": 17}),
    ("ibit-bench", ["--seconds", "0.5", "--warmup", "0", "--threads", "0"], {"seconds": 0.5, "warmup": 0, "threads": 0}),
    ("ibit-deploy quickstart", ["--batches", "1,32"], {"batches": [1, 32]}),
    ("batching_service.py", ["--port", "0", "--max-queue-delay-ms", "0"], {"port": 0, "max_queue_delay_ms": 0.0}),
    ("build_engine.py", ["--max-drop", "100", "--trt-major", "10"], {"max_drop": 100.0, "trt_major": 10}),
])
def test_values_at_the_ends_of_a_range_parse(command, argv, expected):
    args = vars(_parser(command).parse_args([*COMMANDS[command][1], *argv]))
    assert {k: args[k] for k in expected} == expected
