"""Every JSON file the tools read is read with bounded size and nesting, and whatever it holds, its reader raises
only the documented bad-input errors (``errors.BAD_INPUT_ERRORS``: ValueError, FileNotFoundError, ...; exit 2 in a
command), never a RecursionError, a TypeError or an AttributeError (exit 70).

Property-based (hypothesis): random JSON values, random bytes, deep nesting, huge numbers, and valid documents with
one node anywhere replaced by a value of another type (or removed)."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ibit_deploy.errors import BAD_INPUT_ERRORS

# derandomize: the same examples on every run, so CI never fails on a case a previous run did not try
SETTINGS = settings(max_examples=60, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])

# ------------------------------------------------------------------------------------------- what a file can hold
leaves = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats() | st.text(max_size=12)
json_values = st.recursive(leaves, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=12)


@st.composite
def deep(draw: Any) -> bytes:
    """Nesting far past any bound: arrays, objects, or both."""
    n = draw(st.integers(65, 20_000))
    opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}"), ('[{"a":', "}]")]))
    return (opener * n + "1" + closer * n).encode()


huge_numbers = st.sampled_from([b"9" * 5000, b'{"format_version": ' + b"9" * 5000 + b"}", b"1e999999",
                                b'{"count": -1e400}', b"[" + b"1" * 4301 + b"]"])


def _paths(doc: Any, prefix: tuple = ()) -> list[tuple]:
    """Every node of ``doc`` (as a key path), the root included."""
    out = [prefix]
    if isinstance(doc, dict):
        for key, value in doc.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(doc, list):
        for i, value in enumerate(doc):
            out += _paths(value, (*prefix, i))
    return out


def _replaced(doc: Any, path: tuple, value: Any, remove: bool) -> Any:
    if not path:
        return value
    copy = json.loads(json.dumps(doc))
    node = copy
    for key in path[:-1]:
        node = node[key]
    if remove and isinstance(node, dict):
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return copy


def mutated(base: Any) -> st.SearchStrategy[bytes]:
    """``base`` with one node (anywhere) replaced by a random value or removed."""
    @st.composite
    def build(draw: Any) -> bytes:
        path = draw(st.sampled_from(_paths(base)))
        doc = _replaced(base, path, draw(json_values), draw(st.booleans()))
        return json.dumps(doc).encode()

    return build()


def contents(base: Any) -> st.SearchStrategy[bytes]:
    """Anything a hostile file may hold, ``base`` (a valid document) mutated most often."""
    return st.one_of(mutated(base), mutated(base), json_values.map(lambda v: json.dumps(v).encode()),
                     st.binary(max_size=64), deep(), huge_numbers)


# ------------------------------------------------------------------------------------------- the readers
MANIFEST = {"format_version": 2, "model": {"name": "ibit_test_tiny"},
            "input": {"name": "images", "shape": ["batch", 1, 28, 28], "dtype": "float32", "layout": "NCHW",
                      "batch_range": [1, 16], "opt_batch": 4, "image_size": [28, 28], "mean": [0.5], "std": [0.25]},
            "output": {"name": "logits", "shape": ["batch", 10], "dtype": "float32"},
            "artifacts": [{"path": "model.onnx", "kind": "onnx", "precision": "fp32", "sha256": "0" * 64}]}
CHECKPOINT_CONFIG = {"format_version": 1, "model": {"name": "ibit_test_patch4_28", "kwargs": {"num_classes": 10}},
                     "classes": [str(i) for i in range(10)],
                     "data": {"spec": "mnist5k", "image_size": [28, 28], "mean": [0.13], "std": [0.31]}}
TRAIN_CONFIG = {"model": "ibit_test_patch4_28", "epochs": 2, "lr": 0.001, "clip_grad": None,
                "distill": {"logits": "t.npz", "alpha": 0.5, "teacher_weights": [0.5, 0.5]}}
RECIPE = {"spec": "synthetic:64", "split": "train", "count": 16, "seed": 0, "method": "minmax", "percentile": 99.9,
          "input": {"image_size": [28, 28], "mean": [0.5], "std": [0.5]}}
PACKAGE = {"target": "triton", "options": {"precision": "fp32", "batch_size": 1, "classifier_threshold": 0.0}}
STUDY = {"runs": ["a"], "config": {"data": "synthetic:64"}}
RUN_SPEC = {"digest": "d", "id": "a"}
RESULT = {"digest": "d", "top1": 0.9, "accuracy_unit": "fraction", "curve": [{"step": 1, "top1": 0.5}]}
METRICS = [{"epoch": 1, "val_acc1": 0.5, "accuracy_unit": "fraction"}, {"epoch": 2, "val_acc1": 0.6}]
CALIB_META = {"format": 1, "images_sha256": "0", "spec": "synthetic:64", "count": 2}


def _write(directory: Path, name: str, data: bytes) -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def read_manifest(d: Path, data: bytes) -> Any:
    from ibit_deploy.devicekit.manifest import load_manifest

    _write(d, "bundle/manifest.json", data)
    return load_manifest(d / "bundle", verify=False)


def runtime_load(d: Path, data: bytes) -> Any:
    from ibit_deploy.runtime import load

    _write(d, "bundle/manifest.json", data)
    with load(d / "bundle", backend="ort-cpu"):
        return None


def kit_resolve(d: Path, data: bytes) -> Any:
    """The bundle's build_engine.py (its argument resolution reads the manifest before anything else)."""
    from ibit_deploy.devicekit import cli as kit

    _write(d, "bundle/manifest.json", data)
    try:
        return kit.main(["--bundle", str(d / "bundle"), "--print-trtexec", "--trt-major", "10"])
    except SystemExit as exc:  # argparse's usage error: exit 2, one line
        if exc.code != 2:
            raise AssertionError(f"build_engine.py ended with {exc.code}") from None
        raise ValueError("build_engine.py: usage error (exit 2)") from None


def checkpoint_config(d: Path, data: bytes) -> Any:
    from ibit_deploy.checkpoint import read_checkpoint_config

    _write(d, "ck/config.json", data)
    return read_checkpoint_config(d / "ck")


def train_config(d: Path, data: bytes) -> Any:
    from ibit_deploy.train.config import TrainConfig

    return TrainConfig.load(_write(d, "train.json", data)).validate()


def recipe(d: Path, data: bytes) -> Any:
    from ibit_deploy.calibration import load_recipe

    return load_recipe(_write(d, "recipe.json", data))


def package_record(d: Path, data: bytes) -> Any:
    from ibit_deploy.package.core import repackage

    _write(d, "pkg/package.json", data)
    return repackage(d / "no-bundle", d / "pkg")


def study(d: Path, data: bytes) -> Any:
    from ibit_deploy.study.report import load_study

    _write(d, "study/study.json", data)
    _write(d, "study/runs/a/run.json", json.dumps(RUN_SPEC).encode())
    return load_study(d / "study")


def run_result(d: Path, data: bytes) -> Any:
    from ibit_deploy.study import layout
    from ibit_deploy.study.worker import finished_result

    _write(d, f"run/{layout.RESULT_FILE}", data)
    return finished_result(d / "run", "d")


def metrics(d: Path, data: bytes) -> Any:
    from ibit_deploy.train.records import read_metrics

    _write(d, "ck/metrics.jsonl", data.replace(b"\n", b" ") + b"\n" + json.dumps(METRICS[0]).encode() + b"\n")
    return read_metrics(d / "ck")


def calibration_meta(d: Path, data: bytes) -> Any:
    from ibit_deploy.calibration import load_calibration

    path = d / "calib.npz"
    np.savez(path, images=np.zeros((2, 1, 4, 4), np.float32), meta=np.array(data.decode("utf-8", "replace")))
    return load_calibration(path)


READERS: dict[str, tuple[Callable[[Path, bytes], Any], Any]] = {
    "bundle manifest": (read_manifest, MANIFEST),
    "runtime.load": (runtime_load, MANIFEST),
    "build_engine.py": (kit_resolve, MANIFEST),
    "checkpoint config": (checkpoint_config, CHECKPOINT_CONFIG),
    "training config": (train_config, TRAIN_CONFIG),
    "calibration recipe": (recipe, RECIPE),
    "package record": (package_record, PACKAGE),
    "study": (study, STUDY),
    "run result": (run_result, RESULT),
    "training records": (metrics, METRICS[1]),
    "calibration metadata": (calibration_meta, CALIB_META),
}


@pytest.mark.parametrize("name", list(READERS))
def test_a_hostile_file_is_only_ever_bad_input(name):
    reader, base = READERS[name]

    @SETTINGS
    @given(data=contents(base))
    def check(data: bytes) -> None:
        with tempfile.TemporaryDirectory() as tmp:
            try:
                reader(Path(tmp), data)
            except BAD_INPUT_ERRORS:
                pass

    check()


def test_the_bounded_readers_name_the_file(tmp_path):
    from ibit_deploy.devicekit.fileio import read_json, read_json_lines

    huge = _write(tmp_path, "huge.json", b'{"n": ' + b"9" * 5000 + b"}")
    with pytest.raises(ValueError, match="huge.json is not a valid JSON file"):
        read_json(huge)
    lines = _write(tmp_path, "m.jsonl", b'{"a": 1}\n\n' + b"[" * 100 + b"]" * 100 + b"\n")
    with pytest.raises(ValueError, match=r"m\.jsonl line 3 is not a valid records: JSON nested deeper than 64"):
        read_json_lines(lines, "records")


DEEP = "[" * 100_000 + "]" * 100_000
HUGE = '{"format_version": ' + "9" * 5000 + "}"


def _cli_cases() -> list[tuple[str, str, Callable[[Path], list[str]]]]:
    """(command, the file it reads, argv given the folder holding it)."""
    return [
        ("ibit-export", "ck/config.json", lambda d: [str(d / "ck"), "--out", str(d / "b")]),
        ("ibit-eval", "ck/config.json", lambda d: [str(d / "ck")]),
        ("ibit-masks", "ck/config.json", lambda d: [str(d / "ck"), "--out", str(d / "m.png")]),
        ("ibit-train", "train.json", lambda d: ["--config", str(d / "train.json"), "--out", str(d / "run")]),
        ("ibit-train", "run/config.json", lambda d: ["--resume", "--out", str(d / "run")]),
        ("ibit-bench", "b/manifest.json", lambda d: [str(d / "b"), "--out", str(d / "r")]),
        ("ibit-calibrate", "recipe.json", lambda d: ["--recipe", str(d / "recipe.json"), "--out", str(d / "c.npz")]),
        ("ibit-calibrate", "b/manifest.json", lambda d: [str(d / "b"), "--out", str(d / "c.npz")]),
        ("ibit-deploy package", "b/manifest.json", lambda d: [str(d / "b"), "--for", "triton", "--out", str(d / "p")]),
        ("ibit-deploy compare", "s/study.json", lambda d: ["--out", str(d / "s"), "--report-only"]),
    ]


_MAINS = {"ibit-export": "export", "ibit-eval": "evaluate", "ibit-masks": "masks", "ibit-train": "train",
          "ibit-bench": "bench", "ibit-calibrate": "calibrate", "ibit-deploy package": "package",
          "ibit-deploy compare": "compare"}


@pytest.mark.parametrize("text", [DEEP, HUGE, "\xff", "[1, 2]"], ids=["deep", "huge-number", "not-utf8", "wrong-type"])
@pytest.mark.parametrize("command, name, argv", _cli_cases(), ids=[f"{c}:{n}" for c, n, _ in _cli_cases()])
def test_a_hostile_file_is_exit_2_naming_it_in_every_command(command, name, argv, text, tmp_path, capsys):
    import importlib

    from .conftest import exit_code

    path = _write(tmp_path, name, text.encode("latin-1"))
    if name.startswith("ck/"):
        _write(tmp_path, "ck/model.safetensors", b"")
    main = importlib.import_module(f"ibit_deploy.cli.{_MAINS[command]}").main
    assert exit_code(main, argv(tmp_path)) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and "unexpected error" not in err, err
    assert str(path) in err, err
