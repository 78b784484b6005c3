"""Training records hold accuracies as fractions and say so; older records (percent, unmarked) are still read."""

from __future__ import annotations

import json

import pytest

from ibit_deploy.train import train
from ibit_deploy.train.records import FRACTION, METRICS_FILE, UNIT_KEY, as_fractions, in_points, read_metrics
from ibit_deploy.train.state import load_train_state, save_train_state

from .conftest import tiny_config

ACCURACIES = ("train_acc1", "val_acc1", "val_acc5")


def _is_fraction(value) -> bool:
    return value is None or 0.0 <= value <= 1.0


def test_every_training_record_is_in_fractions_and_marked(trained_run):
    out, result = trained_run
    lines = [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines()]
    config = json.loads((out / "config.json").read_text())
    for record in [*lines, config["metrics"], result]:
        assert record[UNIT_KEY] == FRACTION
        assert all(_is_fraction(record[k]) for k in ACCURACIES)
    assert _is_fraction(result["best_val_acc1"]) and _is_fraction(config["metrics"]["best_val_acc1"])


def test_old_percent_records_are_read_as_fractions(tmp_path):
    old = {"epoch": 1, "step": 2, "train_acc1": 50.0, "val_acc1": 95.0, "val_acc5": 100.0, "val_loss": 0.2}
    (tmp_path / METRICS_FILE).write_text(json.dumps(old) + "\n" + json.dumps({**old, "val_acc1": None}) + "\n")
    first, second = read_metrics(tmp_path)
    assert (first["train_acc1"], first["val_acc1"], first["val_acc5"]) == pytest.approx((0.5, 0.95, 1.0))
    assert first["val_loss"] == 0.2 and first[UNIT_KEY] == FRACTION and second["val_acc1"] is None


def test_the_unit_comes_from_the_marker_not_the_magnitude():
    assert as_fractions({"val_acc1": 0.5})["val_acc1"] == pytest.approx(0.005)  # unmarked: percent, even if small
    assert as_fractions({"val_acc1": 0.5, UNIT_KEY: FRACTION})["val_acc1"] == 0.5
    with pytest.raises(ValueError, match="unknown accuracy_unit 'permille'"):
        as_fractions({"val_acc1": 500, UNIT_KEY: "permille"})


def test_eval_record_per_class_and_points():
    record = as_fractions({"top1": 75.0, "top5": 100.0, "per_class": {"a": 50.0, "b": 100.0}})
    assert record["top1"] == 0.75 and record["per_class"] == {"a": 0.5, "b": 1.0}
    assert in_points(record)["top1"] == pytest.approx(75.0)


def test_a_run_saved_in_percent_resumes_in_fractions(tmp_path):
    out = tmp_path / "old"
    train(tiny_config(out, epochs=1, max_steps_per_epoch=1))
    state = load_train_state(out)  # make it look like a run of the previous version: percent, no marker
    state["history"] = [{k: (v * 100 if k in ACCURACIES and v is not None else v) for k, v in r.items()
                         if k != UNIT_KEY} for r in state["history"]]
    save_train_state(out, state)
    (out / METRICS_FILE).write_text("".join(json.dumps(r) + "\n" for r in state["history"]))

    result = train(tiny_config(out, epochs=2, max_steps_per_epoch=1), resume=True)
    lines = [json.loads(line) for line in (out / METRICS_FILE).read_text().splitlines()]
    assert [r["epoch"] for r in lines] == [1, 2]
    assert all(r[UNIT_KEY] == FRACTION and all(_is_fraction(r[k]) for k in ACCURACIES) for r in lines)
    assert _is_fraction(result["best_val_acc1"])
