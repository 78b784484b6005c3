"""The top-1 vs fraction series: a fraction with no runs is a gap in the line, not a straight join; records hold
fractions, the plot shows percent."""

from __future__ import annotations

import math

import pytest

from ibit_deploy.study.plots import fraction_series


def test_a_missing_fraction_breaks_the_line():
    top1 = {0.1: {"mean": 0.90, "std": 0.01}, 0.5: {"mean": 0.95, "std": 0.005}}
    xs, means, stds = fraction_series(top1, [0.1, 0.25, 0.5])
    assert xs == pytest.approx([10.0, 25.0, 50.0])
    assert means[0] == pytest.approx(90.0) and math.isnan(means[1]) and means[2] == pytest.approx(95.0)
    assert stds[0] == pytest.approx(1.0) and math.isnan(stds[1]) and stds[2] == pytest.approx(0.5)
