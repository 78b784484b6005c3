"""The one engine acceptance table, and every artifact's verdict.

Table: top-1 agreement (:mod:`.agreement`'s ``agreement``, a fraction) with ONNX Runtime on the same ONNX that an
engine of each precision must reach. ibit-export and the device kit apply it when they check an engine and record
the verdict in the manifest together with the rule they applied (``acceptance``, and ``gate``).

Which is the truth when the table changes later: **the recorded verdict with its rule**. An artifact is judged once,
when it is checked, by the rule of that day, and the manifest keeps both; :func:`artifact_verdict` reads that record
and every reader (``runtime.load``, ``ibit-bench``, ``ibit-deploy package``) uses it, so no reader re-judges an old
engine by a newer table. Only a record without a verdict (a version-1 manifest) is judged by its recorded rule, or
by today's table when it records none.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from .layout import ORT_KIND, PRECISIONS, check_precision
from .refit import pending_reason

ENGINE_ACCEPTANCE = {"fp32": 0.99, "fp16": 0.98, "int8": 0.97}
ACCEPTANCE_METRIC = "agreement"


def engine_acceptance(precision: str) -> dict[str, Any]:
    """The acceptance rule for an engine of ``precision``, as written into the manifest beside its check."""
    check_precision(precision)
    return {"metric": ACCEPTANCE_METRIC, "min": ENGINE_ACCEPTANCE[precision],
            "against": "ONNX Runtime CPU on the same ONNX"}


def _meets(check: Any, minimum: float) -> bool | None:
    if not isinstance(check, dict) or "skipped" in check:
        return None
    if "error" in check:
        return False
    value = check.get(ACCEPTANCE_METRIC, check.get("top1_agreement"))  # v1 records named it top1_agreement
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) >= minimum


def engine_accepted(precision: str, check: dict[str, Any]) -> bool | None:
    """Whether an engine's ``verification`` record meets today's table; None when it was not checked. For a check
    being made now; a recorded engine is judged by :func:`artifact_verdict`."""
    check_precision(precision)
    return _meets(check, ENGINE_ACCEPTANCE[precision])


def verification_summary(check: dict[str, Any], precision: str) -> str:
    """One line for a verification record: agreement against the table's rule, max |diff|, the verdict."""
    if "skipped" in check:
        return "skipped: " + str(check["skipped"])
    if "error" in check:
        return "FAILED: " + str(check["error"])
    diff = check.get("max_abs_diff")
    verdict = "passed" if engine_accepted(precision, check) else "FAILED"
    return (f"top-1 agreement {check.get('agreement', float('nan')):.4f} (needs >= {ENGINE_ACCEPTANCE[precision]}), "
            f"max |diff| {diff if diff is None else format(diff, '.3g')} on {check.get('inputs')} ({verdict})")


def engine_gate(precision: str, check: dict[str, Any]) -> dict[str, Any]:
    """The ``gate`` record an engine's manifest entry carries: the verdict of today's table on ``check``."""
    accepted = engine_accepted(precision, check)
    gate: dict[str, Any] = {"passed": accepted is not False, "checked": accepted is not None}
    if accepted is False:
        gate["reason"] = verification_summary(check, precision)
    return gate


@dataclasses.dataclass(frozen=True)
class Verdict:
    """An artifact's recorded verdict: ``passed`` True / False, or None when it was never checked."""

    passed: bool | None
    reason: str = ""

    @property
    def failed(self) -> bool:
        return self.passed is False


def artifact_verdict(entry: dict[str, Any], manifest: dict[str, Any] | None = None) -> Verdict:
    """The verdict recorded for one manifest artifact ``entry`` (see the module docstring for why it is the truth).

    An engine marked ``refit_pending`` (:mod:`.refit`: stale or stripped weights) fails until it is refitted. ``gate``
    (an ONNX file's accuracy gate, an engine's acceptance verdict) decides when present. An engine entry
    without one is judged by the rule recorded beside its check (``acceptance.min``), else by today's table. With the
    bundle's ``manifest``, a failed gate of its attention form (``attention.gate``: the FlashBias decomposition
    against the dense bias, which every ONNX file and engine of the bundle carries) fails its models too.
    """
    attention = (manifest or {}).get("attention")
    attention_gate = attention.get("gate") if isinstance(attention, dict) else None
    if isinstance(attention_gate, dict) and attention_gate.get("passed") is False and \
            entry.get("kind") in ("onnx", ORT_KIND, "engine"):
        return Verdict(False, f"the bundle's {attention.get('form', 'attention')} attention failed its gate: "
                              f"{attention_gate.get('reason', 'see the manifest')}")
    if entry.get("kind") == "engine" and (pending := pending_reason(entry)) is not None:
        return Verdict(False, f"needs a refit before it runs: {pending}")  # stale or stripped weights (.refit)
    gate = entry.get("gate")
    if isinstance(gate, dict) and isinstance(gate.get("passed"), bool):
        checked = gate.get("checked", True)
        if not gate["passed"]:
            return Verdict(False, str(gate.get("reason") or "failed its check (see the manifest)"))
        return Verdict(True if checked is not False else None)
    if entry.get("kind") == "engine" and entry.get("precision") in PRECISIONS:
        rule = entry.get("acceptance")
        minimum = rule.get("min") if isinstance(rule, dict) else None
        if isinstance(minimum, bool) or not isinstance(minimum, (int, float)):
            minimum = ENGINE_ACCEPTANCE[entry["precision"]]
        met = _meets(entry.get("verification"), float(minimum))
        if met is False:
            return Verdict(False, f"its check against ONNX Runtime is below the recorded rule (agreement >= "
                                  f"{minimum})")
        return Verdict(met)
    return Verdict(None)
