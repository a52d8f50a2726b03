"""The rolling-statistic member: spike density, bursts, quiet spells; causal; abstains on shifts."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from exporter.detectors import DETECTORS
from exporter.detectors.base import FloatArray, Window
from exporter.detectors.rolling import RollingDetector, RollingParams

STEP = 300.0
N = 3000
AT = 2500


def window(values: FloatArray) -> Window:
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    keys = [(("series", str(i)),) for i in range(values.shape[0])]
    return Window(values, STEP * np.arange(values.shape[1], dtype=np.float64), keys, STEP)


def detector(**params: Any) -> RollingDetector:
    return RollingDetector(RollingParams.model_validate(params))


def spiky(seed: int, every: int, start: int = 0, n: int = N) -> FloatArray:
    """Zero, with spikes of 20 about once every `every` points (from `start`)."""
    rng = np.random.default_rng(seed)
    values = np.abs(rng.normal(0, 0.1, n))
    hits = np.flatnonzero(rng.uniform(size=n) < 1.0 / every)
    values[hits[hits >= start]] = 20.0
    return values


def test_registered() -> None:
    assert "rolling" in DETECTORS


def test_more_frequent_spikes_of_the_usual_height_are_anomalous() -> None:
    values = spiky(1, 60)
    values[AT:] = spiky(2, 6, n=N)[AT:]  # ten times as many spikes, none higher
    score = detector(stat="mean", span="2h", side="up").score_all(window(values)).score[0]
    assert np.nanmax(score[500:AT]) < 1
    assert np.nanmax(score[AT : AT + 48]) >= 1


def test_a_series_that_goes_flat_is_anomalous_on_the_lower_side_of_its_spread() -> None:
    values = 50.0 + np.random.default_rng(3).normal(0, 2.0, N)
    values[AT:] = 50.0
    spread = detector(stat="spread", span="1h").score_all(window(values)).score[0]
    assert np.count_nonzero(spread[500:AT] >= 1) <= 2  # raw: the ensemble calibrates it
    assert spread[AT + 12] >= 1
    up = detector(stat="spread", span="1h", side="up").score_all(window(values)).score[0]
    assert np.nanmax(up[AT:]) < 1


def test_the_ramp_of_a_level_shift_is_left_to_the_level_members() -> None:
    """A mean of 24 points ramps for 2 h after a shift; past `relearn` the member abstains."""
    values = 50.0 + np.random.default_rng(4).normal(0, 2.0, N)
    values[AT:] += 30
    score = detector(stat="mean", span="2h").score_all(window(values)).score[0]
    assert score[AT + 2] >= 1
    assert np.nanmax(score[AT + 18 :]) < 1  # 1.5 h


@pytest.mark.parametrize("params", [{"stat": "mean"}, {"stat": "spread", "side": "down"}])
def test_score_and_score_all_agree(params: dict[str, Any]) -> None:
    values = np.stack([spiky(5, 20), 50.0 + np.random.default_rng(6).normal(0, 2.0, N)])
    values[1, 1200:1300] = 50.0
    values[0, 700] = np.nan
    det = detector(**params, window=500)
    every = det.score_all(window(values))
    for j in range(600, N, 97):
        one = det.score(window(values[:, : j + 1]))
        np.testing.assert_allclose(one.score, every.score[:, j], equal_nan=True)


def test_no_band_and_missing_points_are_not_scored() -> None:
    values = spiky(7, 30)
    values[1000] = np.nan
    est = detector(stat="mean").score_all(window(values))
    assert np.isnan(est.score[0, 1000])
    assert np.isnan(est.expected).all() and np.isnan(est.lower).all()
