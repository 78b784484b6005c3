"""When is a run converged? When its curves are flat over the last 10% of its steps.

Both curves are smoothed with a centred 3-point moving average (the ends use the points available), then read at
the start of the window (linear interpolation in steps) and at its end (the last point):

- held-out top-1 (a fraction, see :mod:`.records`) changes by at most ``ACC_TOLERANCE`` (0.5 percentage points), and
- the training loss (per-epoch mean) changes by at most ``LOSS_TOLERANCE`` of its value at the window start.

A run whose curves have fewer than two points in reach of the window is "unknown", not converged.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from .records import as_points

WINDOW = 0.10  # the last 10% of the steps
ACC_TOLERANCE = 0.005  # of top-1 (a fraction): 0.5 percentage points
LOSS_TOLERANCE = 0.02  # relative change of the training loss


def _smooth(values: np.ndarray) -> np.ndarray:
    if len(values) < 3:
        return values
    padded = np.concatenate([values[:1], values, values[-1:]])
    out = (padded[:-2] + padded[1:-1] + padded[2:]) / 3.0
    out[0], out[-1] = values[:2].mean(), values[-2:].mean()  # ends: the points available
    return out


def _window_change(steps: np.ndarray, values: np.ndarray, start: float) -> float | None:
    """Smoothed value at the end minus smoothed value at ``start``; None without a point before the window end."""
    if len(values) < 2 or steps[0] > start:
        return None
    smooth = _smooth(values)
    return float(smooth[-1] - np.interp(start, steps, smooth))


def convergence(history: list[dict[str, Any]], window: float = WINDOW) -> dict[str, Any]:
    """Convergence verdict of a run from its per-epoch records (``step``, ``train_loss``, ``val_acc1`` a fraction)."""
    if not history:
        return {"converged": None, "reason": "no epochs recorded"}
    total = history[-1]["step"]
    start = total * (1.0 - window)
    val = [(r["step"], r["val_acc1"]) for r in history if r.get("val_acc1") is not None]
    loss = [(r["step"], r["train_loss"]) for r in history if r.get("train_loss") is not None]
    acc_change = _window_change(*map(np.asarray, zip(*val, strict=True)), start) if len(val) >= 2 else None
    loss_change = _window_change(*map(np.asarray, zip(*loss, strict=True)), start) if len(loss) >= 2 else None
    loss_start = None
    if loss_change is not None:
        steps, values = map(np.asarray, zip(*loss, strict=True))
        loss_start = float(np.interp(start, steps, _smooth(values)))
    out: dict[str, Any] = {"window_steps": [int(round(start)), int(total)], "val_acc1_change": acc_change,
                           "train_loss_change": loss_change,
                           "train_loss_rel_change": (loss_change / loss_start if loss_change is not None and loss_start
                                                     else None),
                           "tolerances": {"val_acc1": ACC_TOLERANCE, "train_loss_relative": LOSS_TOLERANCE}}
    if acc_change is None or out["train_loss_rel_change"] is None:
        out.update(converged=None, reason="too few curve points before the last 10% of steps")
        return out
    flat_acc = abs(acc_change) <= ACC_TOLERANCE
    flat_loss = abs(out["train_loss_rel_change"]) <= LOSS_TOLERANCE
    out["converged"] = bool(flat_acc and flat_loss)
    out["reason"] = ("flat" if out["converged"] else
                     ", ".join(m for m, ok in ((f"top-1 moved {as_points(acc_change):+.2f} points", flat_acc),
                                                (f"train loss moved {100 * out['train_loss_rel_change']:+.1f}%",
                                                 flat_loss)) if not ok))
    return out
