"""``--precision auto``: build FP32, FP16 and INT8 engines on the device, keep those that pass the engine acceptance
table and the bundle's accuracy budget, ship the fastest. A measurement, not a rule: INT8 is often slower than FP16
for ViTs (METHODS.md section 7).

Part of the device kit (standard library only). The TensorRT work is passed in as callables, so the selection is tested
here on outputs in trtexec's documented format; ``auto_build.build_auto`` passes the real ones:

- ``build(precision) -> engine path`` (raise to fail the candidate),
- ``verify(precision, engine) -> record``: the kit's engine check against ONNX Runtime on real images
  (devicekit.agreement keys, fractions: ``agreement``, ``max_abs_diff``, ... and, with labels, ``top1``),
- ``accepted(precision, record) -> bool | None``: the engine acceptance table (``kit.engine_accepted``),
- ``benchmark(precision, engine, batch) -> trtexec stdout`` from ONE fixed trtexec recipe for every candidate,
- ``parse(stdout) -> summary``: the one trtexec output parser (``trtexec_tool.parse_trtexec_output``).
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from .exit_codes import CHECK_FAILED, DONE

CANDIDATES = ("fp32", "fp16", "int8")
# Ties in latency (within this relative margin) go to the higher precision: equal speed, less risk.
TIE_MARGIN = 0.02


@dataclasses.dataclass(frozen=True)
class AccuracyBudget:
    """The bundle's accuracy budget: at most ``max_top1_drop`` (a fraction: 0.01 is one point) of top-1 below
    ``reference_top1`` (ONNX Runtime on the FP32 ONNX, same labelled images). Either None: no top-1 budget (no
    labels on the device); the acceptance table still applies. ``source`` says where the budget came from."""

    max_top1_drop: float | None
    reference_top1: float | None = None
    source: str = ""

    def check(self, accuracy: Mapping[str, Any]) -> list[str]:
        """Reasons ``accuracy`` misses the budget; [] when it passes (or there is no top-1 to judge)."""
        top1 = accuracy.get("top1")
        if self.max_top1_drop is None or self.reference_top1 is None or top1 is None:
            return []
        drop = self.reference_top1 - float(top1)
        if drop > self.max_top1_drop + 1e-12:
            return [f"top-1 {top1:.4f} is {drop:.4f} below the FP32 ONNX ({self.reference_top1:.4f}; budget "
                    f"{self.max_top1_drop})"]
        return []

    def to_dict(self) -> dict[str, Any]:
        return {"max_top1_drop": self.max_top1_drop, "reference_top1": self.reference_top1, "source": self.source}


@dataclasses.dataclass
class Candidate:
    """One precision's engine: its check, latency per batch (parsed summaries), and why it failed if it did."""

    precision: str
    engine: str | None = None
    accuracy: dict[str, Any] = dataclasses.field(default_factory=dict)
    latency: dict[int, dict[str, Any]] = dataclasses.field(default_factory=dict)
    failures: list[str] = dataclasses.field(default_factory=list)

    @property
    def passed(self) -> bool:
        return self.engine is not None and not self.failures and bool(self.latency)

    def median_ms(self, batch: int) -> float:
        return float(self.latency[batch]["metrics"]["gpu_compute"]["median_ms"])


def choose(candidates: Sequence[Candidate], opt_batch: int) -> tuple[Candidate | None, str]:
    """The fastest passing candidate by median GPU compute time at ``opt_batch`` (then batch 1); ties within
    TIE_MARGIN go to the higher precision. (None, reason) when none passed."""
    passing = [c for c in candidates if c.passed]
    if not passing:
        return None, "no candidate passed the acceptance table and the accuracy budget and ran: nothing shipped"
    order = {p: i for i, p in enumerate(CANDIDATES)}
    best = min(passing, key=lambda c: (c.median_ms(opt_batch), c.median_ms(1) if 1 in c.latency else 0.0))
    fastest = best.median_ms(opt_batch)
    tied = [c for c in passing if c.median_ms(opt_batch) <= fastest * (1 + TIE_MARGIN)]
    chosen = min(tied, key=lambda c: order.get(c.precision, len(order)))
    why = (f"fastest passing at batch {opt_batch}: {chosen.precision} {chosen.median_ms(opt_batch):.3f} ms median "
           f"GPU compute")
    if chosen is not best:
        why += f" (within {TIE_MARGIN:.0%} of {best.precision} {fastest:.3f} ms: the higher precision wins the tie)"
    return chosen, why


def run_auto(build: Callable[[str], str], verify: Callable[[str, str], dict[str, Any]],
             accepted: Callable[[str, dict[str, Any]], bool | None], benchmark: Callable[[str, str, int], str],
             parse: Callable[[str], dict[str, Any]], budget: AccuracyBudget, *, opt_batch: int,
             precisions: Iterable[str] = CANDIDATES, recipe: Sequence[str] | None = None,
             progress: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
    """Build, check and time every precision; return the record for the manifest (``chosen`` None: all failed).

    A candidate passes when its check meets the acceptance table (``accepted`` True: an unchecked engine does not
    pass), it is within ``budget`` and trtexec timed it at batch 1 and ``opt_batch``. A failure at any step is
    recorded on that candidate and the others still run. ``recipe`` (the trtexec argv every candidate is timed
    with, engine and batch as placeholders) is stored in the record.
    """
    batches = sorted({1, int(opt_batch)})
    candidates: list[Candidate] = []
    for precision in precisions:
        if precision not in CANDIDATES:
            raise ValueError(f"unknown precision {precision!r}; candidates are {CANDIDATES}")
        cand = Candidate(precision)
        candidates.append(cand)
        progress(f"{precision}: build")
        try:
            cand.engine = build(precision)
            progress(f"{precision}: check against ONNX Runtime")
            cand.accuracy = dict(verify(precision, cand.engine))
        except Exception as exc:  # a build or run failure fails this candidate only
            cand.failures.append(f"{type(exc).__name__}: {exc}")
            continue
        verdict = accepted(precision, cand.accuracy)
        if verdict is not True:
            cand.failures.append(_acceptance_failure(cand.accuracy, verdict))
        cand.failures += budget.check(cand.accuracy)
        for batch in batches:
            progress(f"{precision}: trtexec batch {batch}")
            try:
                summary = parse(benchmark(precision, cand.engine, batch))
                if "median_ms" not in summary["metrics"].get("gpu_compute", {}):
                    raise ValueError("the trtexec summary has no GPU Compute Time median")
                cand.latency[batch] = summary
            except Exception as exc:
                cand.failures.append(f"benchmark at batch {batch}: {type(exc).__name__}: {exc}")
                break
    chosen, reason = choose(candidates, int(opt_batch))
    return {"mode": "auto", "chosen": chosen.precision if chosen else None, "engine": chosen.engine if chosen else None,
            "reason": reason, "opt_batch": int(opt_batch), "batches": batches,
            "recipe": list(recipe) if recipe is not None else None, "budget": budget.to_dict(),
            "candidates": [_record(c, batches) for c in candidates]}


def _acceptance_failure(check: Mapping[str, Any], verdict: bool | None) -> str:
    if verdict is None:
        return "not checked against ONNX Runtime (" + str(check.get("skipped", "no agreement recorded")) + ")"
    if "error" in check:
        return "engine check failed: " + str(check["error"])
    rule = check.get("acceptance") or {}
    return f"{rule.get('metric', 'agreement')} {check.get(rule.get('metric', 'agreement'))} < {rule.get('min')}"


def _record(cand: Candidate, batches: Sequence[int]) -> dict[str, Any]:
    latency = {str(b): dict(cand.latency[b]["metrics"].get("gpu_compute", {})) for b in batches if b in cand.latency}
    return {"precision": cand.precision, "engine": cand.engine, "passed": cand.passed, "failures": cand.failures,
            "accuracy": cand.accuracy, "gpu_compute_ms": latency,
            "throughput_qps": {str(b): cand.latency[b].get("throughput_qps") for b in batches if b in cand.latency}}


def format_table(record: Mapping[str, Any]) -> str:
    """The candidates as a fixed-width table (agreement, top-1, median/p90/p99 GPU compute per batch, verdict)."""
    batches = record["batches"]
    head = ["precision", "agreement", "top1"] + [f"b{b} {q}" for b in batches for q in ("p50", "p90", "p99")] \
        + ["verdict"]
    rows = [head]
    for c in record["candidates"]:
        acc = c["accuracy"]
        cells = [c["precision"], _fmt(acc.get("agreement")), _fmt(acc.get("top1"))]
        for b in batches:
            lat = c["gpu_compute_ms"].get(str(b), {})
            cells += [_fmt(lat.get(k)) for k in ("median_ms", "p90_ms", "p99_ms")]
        verdict = "CHOSEN" if c["precision"] == record["chosen"] else ("pass" if c["passed"] else
                                                                         "FAIL: " + "; ".join(c["failures"]))
        rows.append(cells + [verdict])
    widths = [max(len(r[i]) for r in rows) for i in range(len(head) - 1)]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r[:-1], widths, strict=True)) + "  " + r[-1] for r in rows]
    return "\n".join(lines + [f"-> {record['reason']}"])


def _fmt(value: Any) -> str:
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return "-" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))


def exit_status(record: Mapping[str, Any]) -> int:
    """0 when a candidate was chosen, 1 when every candidate failed (the CLI exit status)."""
    return DONE if record.get("chosen") else CHECK_FAILED


def dumps(record: Mapping[str, Any]) -> str:
    return json.dumps(record, indent=2, allow_nan=False)
