"""The top-1 vs fraction series: a fraction with no runs is a gap in the line, not a straight join."""

from __future__ import annotations

import math

from ibit_deploy.study.plots import fraction_series


def test_a_missing_fraction_breaks_the_line():
    top1 = {0.1: {"mean": 90.0, "std": 1.0}, 0.5: {"mean": 95.0, "std": 0.5}}
    xs, means, stds = fraction_series(top1, [0.1, 0.25, 0.5])
    assert xs == [10.0, 25.0, 50.0]
    assert means[0] == 90.0 and math.isnan(means[1]) and means[2] == 95.0
    assert stds[0] == 1.0 and math.isnan(stds[1]) and stds[2] == 0.5
