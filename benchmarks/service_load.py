"""Serving under load: an open-loop, bounded load generator on 127.0.0.1, the latency-vs-offered-load curve, its knee.

**Open loop.** Requests arrive at their own times, whether or not earlier ones were answered: a Poisson process at
the offered rate (exponential gaps, seeded), dispatched by one thread to a pool of ``max_outstanding`` senders. A
request's latency runs from its *scheduled* arrival to its answer, so a generator that falls behind does not hide
the wait (no coordinated omission); how late dispatch ran is recorded (``dispatch_lag_p99_ms``).

**Bounded.** At most ``max_outstanding`` requests are in flight; an arrival that finds them all busy is dropped
(counted, not sent), as a client with a connection limit would. Each rate runs for ``seconds``, then the generator
waits for the requests in flight (each at most ``timeout`` s) before the next rate: nothing outlives the run.

**The knee** (:func:`knee`), on points in increasing offered load: the last offered rate before the first point
where the service no longer keeps up, i.e. where any of

- the service answers slower than requests arrive: ``achieved_rps`` (answers over the time from the window's start
  to the last answer, at least ``seconds``) below ``KNEE_THROUGHPUT_FRACTION`` (95%) of ``arrival_rps`` (the arrivals drawn, over
  ``seconds``; the drawn count, not the nominal rate, so Poisson noise in the count is not read as a shortfall),
- an arrival was dropped or a request failed (non-200, timeout),
- p99 latency exceeds ``KNEE_LATENCY_FACTOR`` (2x) the p99 at the lowest offered rate.

Past the knee, queueing takes over: latency grows with the time spent at that rate, not with the work per request.
``knee`` is None when even the lowest rate breaks a rule, and the highest rate with ``reached: false`` when none does.
"""

from __future__ import annotations

import json
import threading
import time
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

KNEE_THROUGHPUT_FRACTION = 0.95
KNEE_LATENCY_FACTOR = 2.0


def open_loop(url: str, bodies: list[bytes], rate: float, seconds: float, *, max_outstanding: int = 64,
              timeout: float = 30.0, seed: int = 0) -> dict[str, Any]:
    """POST ``bodies`` (cycled) to ``url`` at Poisson arrivals of ``rate`` per second for ``seconds``; one point of
    the curve: arrivals sent, dropped, answered, failed, achieved rate, latency percentiles (ms)."""
    if not rate > 0 or not seconds > 0 or max_outstanding < 1 or not bodies:
        raise ValueError(f"open_loop: need rate > 0, seconds > 0, max_outstanding >= 1 and request bodies, got "
                         f"rate={rate}, seconds={seconds}, max_outstanding={max_outstanding}, {len(bodies)} bodies")
    rng = np.random.default_rng(seed)
    gaps = rng.exponential(1.0 / rate, size=int(rate * seconds * 2) + 16)
    arrivals = np.cumsum(gaps)
    arrivals = arrivals[arrivals < seconds]
    slots = threading.BoundedSemaphore(max_outstanding)
    lock = threading.Lock()
    latencies: list[float] = []
    failures: list[str] = []
    lags: list[float] = []
    dropped = 0
    last_answer = [0.0]

    def send(body: bytes, due: float) -> None:
        try:
            request = urllib.request.Request(url, data=body, method="POST")
            with urllib.request.urlopen(request, timeout=timeout) as response:
                response.read()
            done = time.perf_counter()
            with lock:
                latencies.append((done - due) * 1e3)
                last_answer[0] = max(last_answer[0], done)
        except (urllib.error.URLError, OSError, ValueError) as exc:
            with lock:
                failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            slots.release()

    with ThreadPoolExecutor(max_workers=max_outstanding, thread_name_prefix="load") as pool:
        start = time.perf_counter()
        for i, offset in enumerate(arrivals):
            due = start + offset
            wait = due - time.perf_counter()
            if wait > 0:
                time.sleep(wait)
            lags.append(max(0.0, time.perf_counter() - due) * 1e3)
            if not slots.acquire(blocking=False):
                dropped += 1
                continue
            pool.submit(send, bodies[i % len(bodies)], due)
    span = max(seconds, last_answer[0] - start)
    ms = np.asarray(latencies)
    return {"offered_rps": float(rate), "seconds": float(seconds), "arrivals": int(len(arrivals)),
            "sent": int(len(arrivals) - dropped), "dropped": int(dropped), "completed": int(len(latencies)),
            "failed": len(failures), "first_failure": failures[0] if failures else None,
            "arrival_rps": len(arrivals) / seconds, "achieved_rps": len(latencies) / span,
            "p50_ms": float(np.percentile(ms, 50)) if ms.size else None,
            "p99_ms": float(np.percentile(ms, 99)) if ms.size else None,
            "dispatch_lag_p99_ms": float(np.percentile(lags, 99)) if lags else None}


def knee(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The knee of a curve (points in increasing ``offered_rps``; see the module docstring for the rule):
    ``{"rate", "reached", "broken_at", "why", "rule"}``."""
    rule = {"throughput_fraction": KNEE_THROUGHPUT_FRACTION, "latency_factor": KNEE_LATENCY_FACTOR}
    if not points:
        raise ValueError("knee: no points")
    rates = [p["offered_rps"] for p in points]
    if rates != sorted(rates) or len(set(rates)) != len(rates):
        raise ValueError(f"knee: points must be in strictly increasing offered load, got {rates}")
    base = points[0]["p99_ms"]
    last = None
    for point in points:
        why = _broken(point, base)
        if why:
            return {"rate": last, "reached": True, "broken_at": point["offered_rps"], "why": why, "rule": rule}
        last = point["offered_rps"]
    return {"rate": last, "reached": False, "broken_at": None,
            "why": "no offered rate measured broke a rule: the knee lies above the highest rate", "rule": rule}


def _broken(point: dict[str, Any], base_p99: float | None) -> str | None:
    """Which rule ``point`` breaks, in words, or None."""
    if point["dropped"] or point["failed"]:
        return f"{point['dropped']} arrivals dropped, {point['failed']} requests failed"
    if point["achieved_rps"] < KNEE_THROUGHPUT_FRACTION * point["arrival_rps"]:
        return (f"answered {point['achieved_rps']:.1f}/s < {KNEE_THROUGHPUT_FRACTION:.0%} of the "
                f"{point['arrival_rps']:.1f}/s that arrived")
    if point["p99_ms"] is None or base_p99 is None:
        return "no request was answered"
    if point["p99_ms"] > KNEE_LATENCY_FACTOR * base_p99:
        return f"p99 {point['p99_ms']:.1f} ms > {KNEE_LATENCY_FACTOR:g}x the lowest load's {base_p99:.1f} ms"
    return None


def plot_curves(result: dict[str, Any], path: Path) -> None:
    """p50 and p99 latency against offered load, one colour per configuration, each knee marked (dashed line)."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ibit_deploy.devicekit.fileio import atomic_path

    fig, ax = plt.subplots(figsize=(6.8, 4.4))
    for (name, config), colour in zip(result["configs"].items(), ("tab:blue", "tab:orange", "tab:green"),
                                      strict=False):
        points = [p for p in config["points"] if p["p50_ms"] is not None]
        rates = [p["offered_rps"] for p in points]
        label = f"{name} (max batch {config['max_batch']})"
        ax.plot(rates, [p["p50_ms"] for p in points], marker="o", color=colour, label=f"{label} p50")
        ax.plot(rates, [p["p99_ms"] for p in points], marker="^", ls=":", color=colour, label=f"{label} p99")
        if config["knee"]["rate"] is not None:
            ax.axvline(config["knee"]["rate"], color=colour, ls="--", alpha=0.6,
                       label=f"{name} knee {config['knee']['rate']:g}/s")
    rates = sorted({p["offered_rps"] for c in result["configs"].values() for p in c["points"]})
    ax.set_xscale("log")
    ax.set_xticks(rates, [f"{r:g}" for r in rates])
    ax.minorticks_off()
    ax.set(yscale="log", xlabel="offered load (requests/s, Poisson arrivals)", ylabel="latency (ms)",
           title=f"Batching service under open-loop load ({result['backend']}, {result['threads']} thread(s))")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120, bbox_inches="tight")
    plt.close(fig)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())


def write_json(result: dict[str, Any], path: Path) -> None:
    """``result`` as JSON, written atomically."""
    from ibit_deploy.devicekit.fileio import atomic_write_json

    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, json.loads(json.dumps(result)))
