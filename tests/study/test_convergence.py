"""The convergence verdict: flat over the last 10% of steps, within the stated tolerances."""

from __future__ import annotations

import numpy as np

from ibit_deploy.study.convergence import ACC_TOLERANCE, convergence


def _history(acc, loss):
    """Per-epoch records with top-1 given in percent and stored as fractions, as the worker stores them."""
    return [{"epoch": i + 1, "step": 10 * (i + 1), "val_acc1": a / 100, "train_loss": loss_}
            for i, (a, loss_) in enumerate(zip(acc, loss, strict=True))]


def test_a_plateau_is_converged_and_a_rising_curve_is_not():
    flat = _history(list(np.linspace(50, 95, 20)) + [95.0] * 10, list(np.linspace(2, 0.5, 20)) + [0.5] * 10)
    verdict = convergence(flat)
    assert verdict["converged"] is True and abs(verdict["val_acc1_change"]) <= ACC_TOLERANCE
    rising = _history(list(np.linspace(50, 95, 30)), list(np.linspace(2, 0.5, 30)))
    verdict = convergence(rising)
    assert verdict["converged"] is False and "top-1 moved" in verdict["reason"]


def test_the_loss_alone_can_refuse_convergence():
    still_falling = _history([90.0] * 30, list(np.linspace(2.0, 0.2, 30)))
    verdict = convergence(still_falling)
    assert verdict["converged"] is False and "train loss moved" in verdict["reason"]


def test_too_few_points_is_unknown():
    assert convergence(_history([50.0], [1.0]))["converged"] is None
    assert convergence([])["converged"] is None
