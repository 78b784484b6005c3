"""Accuracies are fractions in every record a study writes; records of earlier versions (percent, no unit key) are
read as they were meant, and the committed study under benchmarks/results/ reports the numbers it was published with."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from ibit_deploy.study import layout
from ibit_deploy.study.records import FRACTION, UNIT_KEY, result_in_fractions, teachers_in_fractions
from ibit_deploy.study.report import write_report

COMMITTED = Path(__file__).resolve().parents[2] / "benchmarks" / "results" / "data_efficiency_study"

LEGACY = {  # a result.json as workers wrote it before the unit key (percent)
    "id": "s0/f100/ibit_kd", "val_acc1": 95.7, "val_acc5": 99.9, "best_val_acc1": 96.1, "val_loss": 0.2,
    "curve": [{"epoch": 1, "step": 61, "train_loss": 1.2, "val_acc1": 80.5}, {"epoch": 2, "step": 122,
                                                                               "val_acc1": None}],
    "convergence": {"val_acc1_change": -0.25, "converged": True,
                    "tolerances": {"val_acc1_points": 0.5, "train_loss_relative": 0.02}},
    "teachers_restored": [{"teacher": "s0/f100/resnet", "val_acc1": 99.1, "recorded_val_acc1": 99.3}],
}


def test_a_legacy_percent_result_is_read_in_fractions_and_left_untouched():
    before = json.dumps(LEGACY, sort_keys=True)
    read = result_in_fractions(LEGACY)
    assert json.dumps(LEGACY, sort_keys=True) == before  # a copy: the record itself is not rewritten
    assert read[UNIT_KEY] == FRACTION
    assert read["val_acc1"] == pytest.approx(0.957) and read["val_acc5"] == pytest.approx(0.999)
    assert read["best_val_acc1"] == pytest.approx(0.961) and read["val_loss"] == 0.2  # a loss is not an accuracy
    assert read["curve"][0]["val_acc1"] == pytest.approx(0.805) and read["curve"][1]["val_acc1"] is None
    assert read["convergence"]["val_acc1_change"] == pytest.approx(-0.0025)
    assert read["convergence"]["tolerances"] == {"val_acc1": pytest.approx(0.005), "train_loss_relative": 0.02}
    teacher = read["teachers_restored"][0]
    assert teacher["val_acc1"] == pytest.approx(0.991) and teacher["recorded_val_acc1"] == pytest.approx(0.993)


def test_a_fraction_record_is_read_as_it_is_and_an_unknown_unit_is_refused():
    current = result_in_fractions(LEGACY)
    assert result_in_fractions(current) == current  # marked: never scaled twice, whatever the magnitude
    tiny = {UNIT_KEY: FRACTION, "val_acc1": 0.009}  # 0.9% top-1 is a fraction record, not "0.009 percent"
    assert result_in_fractions(tiny)["val_acc1"] == 0.009
    with pytest.raises(ValueError, match="unknown accuracy_unit 'permille'"):
        result_in_fractions({UNIT_KEY: "permille", "val_acc1": 957})
    teachers = teachers_in_fractions({"teacher_logits_seconds": 7.0, "teachers_restored": LEGACY["teachers_restored"]})
    assert teachers["teachers_restored"][0]["val_acc1"] == pytest.approx(0.991) and teachers[UNIT_KEY] == FRACTION


def _section(markdown: str, heading: str) -> str:
    """The text of one ``## heading`` section of a report."""
    match = re.search(rf"^## {re.escape(heading)}\n(.*?)(?=^## |\Z)", markdown, flags=re.S | re.M)
    assert match, f"no section {heading!r}"
    return match.group(1).strip()


def test_the_committed_study_reports_the_numbers_it_was_published_with(tmp_path):
    state = COMMITTED / "state"
    results = sorted(state.glob(f"{layout.RUNS_DIR}/*/*/*/{layout.RESULT_FILE}"))
    assert len(results) == 96 and not any(UNIT_KEY in json.loads(p.read_text()) for p in results)  # all percent
    paths = write_report(state, report_dir=tmp_path)  # reads the state; writes only into tmp_path
    published = (COMMITTED / "compare.md").read_text()
    now = paths["markdown"].read_text()
    # accuracy numbers do not depend on the latency pass (the published one was re-timed side by side)
    for heading in ("Top-1 (%) on the held-out split, mean ± std over seeds", "Targets"):
        assert _section(now, heading) == _section(published, heading)
    report = json.loads(paths["json"].read_text())
    assert report[UNIT_KEY] == FRACTION
    assert report["summary"]["ibit"]["top1"]["0.25"]["mean"] == pytest.approx(0.947333, abs=1e-6)
    assert all(r[UNIT_KEY] == FRACTION and r["val_acc1"] <= 1.0 for r in report["runs"])
    assert report["recommendation"]["margin"] == pytest.approx(0.005)  # the margin: points given, fraction stored
