"""The unit of every accuracy a study records: fractions (0.957 for 95.7%), in run results, teacher records and the
report's data. Points (percentage points) appear only in text for people: the command line (``--margin``), the
Markdown report, the plots and the progress lines.

A record written in fractions says so with ``"accuracy_unit": "fraction"`` (:data:`UNIT_KEY`). Records written before
that key existed (no key) hold percent; they are read and converted here, so a study continued from them, and the
committed state under ``benchmarks/results/``, report the same numbers. The unit is never guessed from a value's
magnitude (a top-1 of 0.9% and one of 90% are both plausible).

The trainer (``ibit_deploy.train``) reports fractions too (its own records say so the same way);
:func:`from_points` is the one place that converts a legacy percent value.
"""

from __future__ import annotations

import copy
from typing import Any

UNIT_KEY = "accuracy_unit"
FRACTION = "fraction"
PERCENT_PER_FRACTION = 100.0
# Two accuracies this close are equal: the unit conversion may move a value by an ulp, never by a billionth of top-1.
TOLERANCE = 1e-9

# the accuracy fields of a run result (top level), of each curve point, and of each restored-teacher record
RESULT_FIELDS = ("val_acc1", "val_acc5", "best_val_acc1")
CURVE_FIELDS = ("val_acc1",)
TEACHER_FIELDS = ("val_acc1", "recorded_val_acc1")


def from_points(value: float | None) -> float | None:
    """A top-1/top-5 value of a legacy (percent) record -> a fraction (None stays None)."""
    return None if value is None else float(value) / PERCENT_PER_FRACTION


def from_trainer(value: float | None) -> float | None:
    """A top-1/top-5 value as the trainer reports it -> a fraction (None stays None). The trainer's records are
    fractions (``train.records`` reads older percent ones into fractions), so this only normalises the type."""
    return None if value is None else float(value)


def as_points(fraction: float) -> float:
    """A fraction (or a difference of fractions) in percentage points, for text and plots."""
    return float(fraction) * PERCENT_PER_FRACTION


def at_least(a: float, b: float) -> bool:
    """``a >= b`` for accuracies, within :data:`TOLERANCE` (values converted from percent may differ by an ulp)."""
    return a >= b - TOLERANCE


def _scale(record: dict[str, Any], fields: tuple[str, ...]) -> None:
    for key in fields:
        if record.get(key) is not None:
            record[key] = from_points(record[key])


def _check_fields(record: Any, fields: tuple[str, ...], what: str) -> None:
    """``record`` is a JSON object whose accuracy ``fields`` are numbers or null; else ValueError naming ``what``."""
    if not isinstance(record, dict):
        raise ValueError(f"{what}: expected a JSON object, got {type(record).__name__}")
    for key in fields:
        value = record.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise ValueError(f"{what}: {key} must be a number or null, got {value!r}")


def _check_list(record: dict[str, Any], key: str, fields: tuple[str, ...], what: str) -> None:
    items = record.get(key)
    if items is not None and not isinstance(items, list):
        raise ValueError(f"{what}: {key} must be a list, got {type(items).__name__}")
    for i, item in enumerate(items or []):
        _check_fields(item, fields, f"{what}: {key}[{i}]")


def _unit_of(record: dict[str, Any], what: str) -> str:
    unit = record.get(UNIT_KEY)
    if unit is None:
        return "percent"  # written before the unit key existed
    if unit != FRACTION:
        raise ValueError(f"{what}: unknown {UNIT_KEY} {unit!r} (this version reads {FRACTION!r} and unmarked percent "
                         f"records)")
    return FRACTION


def teachers_in_fractions(record: dict[str, Any], what: str = "teacher logits record") -> dict[str, Any]:
    """A LIB-KD student's teacher record (``teachers.json``) with its accuracies in fractions (a copy)."""
    _check_fields(record, (), what)
    _check_list(record, "teachers_restored", TEACHER_FIELDS, what)
    out = copy.deepcopy(record)
    if _unit_of(record, what) == "percent":
        for teacher in out.get("teachers_restored") or []:
            _scale(teacher, TEACHER_FIELDS)
    out[UNIT_KEY] = FRACTION
    return out


def result_in_fractions(record: dict[str, Any], what: str = "run result") -> dict[str, Any]:
    """A run's ``result.json`` with every accuracy in fractions and the unit key set (a copy; the file is untouched).

    ValueError for a unit this version does not know, or accuracies that are not numbers.
    """
    _check_fields(record, RESULT_FIELDS, what)
    _check_list(record, "curve", CURVE_FIELDS, what)
    _check_list(record, "teachers_restored", TEACHER_FIELDS, what)
    if record.get("convergence") is not None and not isinstance(record["convergence"], dict):
        raise ValueError(f"{what}: convergence must be a JSON object, got {type(record['convergence']).__name__}")
    out = copy.deepcopy(record)
    if _unit_of(record, what) == "percent":
        _scale(out, RESULT_FIELDS)
        for point in out.get("curve") or []:
            _scale(point, CURVE_FIELDS)
        for teacher in out.get("teachers_restored") or []:
            _scale(teacher, TEACHER_FIELDS)
        conv = out.get("convergence")
        if isinstance(conv, dict):
            if conv.get("val_acc1_change") is not None:
                conv["val_acc1_change"] = from_points(conv["val_acc1_change"])
            tolerances = conv.get("tolerances")
            if isinstance(tolerances, dict) and "val_acc1_points" in tolerances:
                tolerances["val_acc1"] = from_points(tolerances.pop("val_acc1_points"))
    out[UNIT_KEY] = FRACTION
    return out
