"""``--precision auto``: build FP32, FP16 and INT8 engines on the device, keep those within the accuracy budget,
ship the fastest. A measurement, not a rule: INT8 is often slower than FP16 for ViTs (METHODS.md section 7).

Standalone on purpose (standard library only, no ibit_deploy import): it is meant to be copied into the bundle's
on-device build script, like ``templates/build_engine.py``. Not wired into that script yet: the TensorRT code is
moving to ``ibit_deploy/trt/`` (issue 10) and this lands there with it. The TensorRT work itself is passed in as
three callables, so the selection can be tested here on outputs in trtexec's documented format:

- ``build(precision) -> engine path`` (raise to mark the candidate failed),
- ``verify(precision, engine) -> {"top1_agreement": .., "max_abs_diff": .., ...}`` against ONNX Runtime on real
  images, optionally with ``"top1"`` (accuracy against labels),
- ``benchmark(precision, engine, batch) -> trtexec stdout`` from ONE fixed trtexec recipe for every candidate.

Exit status of :func:`main_status`: 0 a candidate passed and was chosen, 1 every candidate failed the budget (or
failed to build / run): nothing is shipped as passed.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

CANDIDATES = ("fp32", "fp16", "int8")
SUPPORTED_TRT_MAJORS = (10, 11)  # 10.x: JetPack 6 (10.3) and desktop; 11.x: desktop (no JetPack support)
# Ties in latency (within this relative margin) go to the higher precision: equal speed, less risk.
TIE_MARGIN = 0.02
_METRICS = {"Latency": "latency", "Enqueue Time": "enqueue", "H2D Latency": "h2d", "GPU Compute Time": "gpu_compute",
            "D2H Latency": "d2h"}
_METRIC_RE = re.compile(r"\b(" + "|".join(re.escape(m) for m in _METRICS) + r"):\s*(min\s*=.*)$")
_VALUE_RE = re.compile(r"(min|max|mean|median|percentile\((\d+(?:\.\d+)?)%\))\s*=\s*([-+0-9.eE]+)\s*ms")
_THROUGHPUT_RE = re.compile(r"\bThroughput:\s*([-+0-9.eE]+)\s*qps")


def supported_trt_major(version: str) -> int:
    """The major version of ``version`` ("10.3.0.30") if the kit supports it, else ValueError naming the supported."""
    match = re.match(r"\s*(\d+)\.(\d+)", str(version))
    if not match:
        raise ValueError(f"cannot parse TensorRT version {version!r}: expected 'MAJOR.MINOR[.PATCH]'")
    major = int(match.group(1))
    if major not in SUPPORTED_TRT_MAJORS:
        raise ValueError(f"TensorRT {version} is not supported: this kit builds with TensorRT "
                         f"{' or '.join(f'{m}.x' for m in SUPPORTED_TRT_MAJORS)} (JetPack 6 ships 10.3)")
    return major


# ------------------------------------------------------------------------------------------------ trtexec output

def parse_performance_summary(text: str) -> dict[str, Any]:
    """The ``=== Performance summary ===`` block of a trtexec log.

    Returns ``{"throughput_qps": float | None, "metrics": {"gpu_compute": {"min_ms", "max_ms", "mean_ms",
    "median_ms", "p90_ms", ...}, "latency": {...}, ...}}``. Raises ValueError when the log has no GPU Compute Time
    line (trtexec failed, or ran with --skipInference).
    """
    out: dict[str, Any] = {"throughput_qps": None, "metrics": {}}
    for line in text.splitlines():
        if (m := _METRIC_RE.search(line)) is not None:
            stats = {}
            for name, pct, value in _VALUE_RE.findall(m.group(2)):
                label = (str(int(float(pct))) if float(pct).is_integer() else pct.replace(".", "_")) if pct else ""
                stats[f"p{label}_ms" if pct else f"{name}_ms"] = float(value)
            out["metrics"][_METRICS[m.group(1)]] = stats
        elif (m := _THROUGHPUT_RE.search(line)) is not None:
            out["throughput_qps"] = float(m.group(1))
    if "median_ms" not in out["metrics"].get("gpu_compute", {}):
        raise ValueError("no trtexec performance summary with a GPU Compute Time median (expected a line like "
                         "'GPU Compute Time: min = 0.5 ms, max = ..., mean = ..., median = ... ms, ...')")
    return out


def times_percentiles(entries: Any, key: str = "computeMs", percentiles: Sequence[float] = (50, 90, 99)
                      ) -> dict[str, float]:
    """Percentiles (linear interpolation) of one field of trtexec's ``--exportTimes`` JSON list."""
    if not isinstance(entries, list):
        raise ValueError(f"--exportTimes: expected a JSON list, got {type(entries).__name__}")
    values = sorted(float(e[key]) for e in entries if isinstance(e, dict) and key in e)
    if not values:
        raise ValueError(f"--exportTimes: no entry has {key!r}")
    out = {}
    for q in percentiles:
        pos = (len(values) - 1) * q / 100
        lo, hi = math.floor(pos), math.ceil(pos)
        out[f"p{int(q) if float(q).is_integer() else q}_ms"] = values[lo] + (values[hi] - values[lo]) * (pos - lo)
    return out


# ------------------------------------------------------------------------------------------------ selection

@dataclasses.dataclass(frozen=True)
class AccuracyBudget:
    """What a candidate must meet: top-1 agreement with ONNX Runtime on the same images, and (with labels) at most
    ``max_top1_drop`` below the FP32 engine's top-1."""

    min_top1_agreement: Mapping[str, float]
    max_top1_drop: float | None = None

    def check(self, precision: str, accuracy: Mapping[str, Any], fp32_top1: float | None) -> list[str]:
        """Reasons ``accuracy`` misses the budget; [] when it passes."""
        reasons = []
        need = self.min_top1_agreement.get(precision)
        agreement = accuracy.get("top1_agreement")
        if need is None:
            reasons.append(f"no agreement threshold for {precision}")
        elif not isinstance(agreement, (int, float)) or not math.isfinite(agreement) or agreement < need:
            reasons.append(f"top-1 agreement {agreement} < {need}")
        top1 = accuracy.get("top1")
        if self.max_top1_drop is not None and top1 is not None and fp32_top1 is not None \
                and fp32_top1 - top1 > self.max_top1_drop + 1e-12:
            reasons.append(f"top-1 {top1:.4f} is {fp32_top1 - top1:.4f} below FP32 (budget {self.max_top1_drop})")
        return reasons


@dataclasses.dataclass
class Candidate:
    """One precision's engine: accuracy, latency per batch (parsed summaries), and why it failed if it did."""

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
        return None, "no candidate met the accuracy budget and ran: nothing shipped"
    order = {p: i for i, p in enumerate(CANDIDATES)}
    best = min(passing, key=lambda c: (c.median_ms(opt_batch), c.median_ms(1) if 1 in c.latency else 0.0))
    fastest = best.median_ms(opt_batch)
    tied = [c for c in passing if c.median_ms(opt_batch) <= fastest * (1 + TIE_MARGIN)]
    chosen = min(tied, key=lambda c: order.get(c.precision, len(order)))
    why = f"fastest passing at batch {opt_batch}: {chosen.precision} {chosen.median_ms(opt_batch):.3f} ms median GPU compute"
    if chosen is not best:
        why += f" (within {TIE_MARGIN:.0%} of {best.precision} {fastest:.3f} ms: the higher precision wins the tie)"
    return chosen, why


def run_auto(build: Callable[[str], str], verify: Callable[[str, str], dict[str, Any]],
             benchmark: Callable[[str, str, int], str], budget: AccuracyBudget, *, opt_batch: int,
             precisions: Iterable[str] = CANDIDATES, recipe: str | None = None,
             progress: Callable[[str], None] = lambda msg: None) -> dict[str, Any]:
    """Build, verify and time every precision; return the record for the manifest (``chosen`` None: all failed).

    Every candidate is measured with the same recipe at batch 1 and ``opt_batch``; a failure at any step is
    recorded on that candidate and the others still run. ``recipe`` (the trtexec command template every
    candidate is timed with) is stored in the record.
    """
    batches = sorted({1, int(opt_batch)})
    candidates: list[Candidate] = []
    fp32_top1: float | None = None
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
        if precision == "fp32":
            fp32_top1 = cand.accuracy.get("top1")
        cand.failures += budget.check(precision, cand.accuracy, fp32_top1)
        for batch in batches:
            progress(f"{precision}: trtexec batch {batch}")
            try:
                cand.latency[batch] = parse_performance_summary(benchmark(precision, cand.engine, batch))
            except Exception as exc:
                cand.failures.append(f"benchmark at batch {batch}: {type(exc).__name__}: {exc}")
                break
    chosen, reason = choose(candidates, int(opt_batch))
    return {"mode": "auto", "chosen": chosen.precision if chosen else None, "engine": chosen.engine if chosen else None,
            "reason": reason, "opt_batch": int(opt_batch), "batches": batches, "recipe": recipe,
            "budget": {"min_top1_agreement": dict(budget.min_top1_agreement), "max_top1_drop": budget.max_top1_drop},
            "candidates": [_record(c, batches) for c in candidates]}


def _record(cand: Candidate, batches: Sequence[int]) -> dict[str, Any]:
    latency = {str(b): {k: v for k, v in cand.latency[b]["metrics"].get("gpu_compute", {}).items()}
               for b in batches if b in cand.latency}
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
        cells = [c["precision"], _fmt(acc.get("top1_agreement")), _fmt(acc.get("top1"))]
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
    return "-" if value is None else (f"{value:.4g}" if isinstance(value, float) else str(value))


def main_status(record: Mapping[str, Any]) -> int:
    """0 when a candidate was chosen, 1 when all failed (the CLI exit status)."""
    return 0 if record.get("chosen") else 1


def dumps(record: Mapping[str, Any]) -> str:
    return json.dumps(record, indent=2, allow_nan=False)
