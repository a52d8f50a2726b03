"""The query-level false-positive controls applied after every detector."""

from __future__ import annotations

import numpy as np

from exporter.detectors import Estimate, apply_filters


def est(score: list[float], expected: list[float]) -> Estimate:
    e = np.array(expected)
    return Estimate(score=np.array(score), expected=e, lower=e - 1, upper=e + 1)


def test_valid_range_clips_the_band_and_flags_impossible_values() -> None:
    out = apply_filters(
        est([0.2, 0.5, 0.1], [0.05, 0.5, 0.9]),
        np.array([0.1, 1.3, -0.2]),
        valid_range=(0.0, 1.0),
    )
    assert out.lower.min() >= 0 and out.upper.max() <= 1
    assert out.score[0] == 0.2  # inside the range: the detector's verdict stands
    assert out.score[1] >= 1 and out.score[2] >= 1  # 130 % or -20 % of a ratio: anomalous


def test_direction_and_minimum_deviation() -> None:
    e = est([2.0, 2.0, 2.0, float("nan")], [10, 10, 10, 10])
    newest = np.array([13.0, 7.0, 10.4, 20.0])
    up = apply_filters(e, newest, direction="up")
    assert up.score[0] == 2 and up.score[1] == 0
    down = apply_filters(e, newest, direction="down")
    assert down.score[0] == 0 and down.score[1] == 2
    small = apply_filters(e, newest, min_deviation=0.5)
    assert list(small.score[:3]) == [2, 2, 0]
    relative = apply_filters(e, newest, min_relative_deviation=0.35)
    assert list(relative.score[:3]) == [0, 0, 0]
    assert np.isnan(relative.score[3])  # not scorable stays not scorable
