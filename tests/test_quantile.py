"""The `quantile` member: tail-aware bands, causal stream scoring, spikes still anomalous."""

from __future__ import annotations

import numpy as np
import pytest

from exporter.detectors import DETECTORS, base
from exporter.detectors.base import FloatArray, Window
from exporter.detectors.quantile import QuantileDetector, QuantileParams

STEP = 300.0


def window(values: FloatArray) -> Window:
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    keys = [(("series", str(i)),) for i in range(values.shape[0])]
    return Window(values, STEP * np.arange(values.shape[1], dtype=np.float64), keys, STEP)


def noise(seed: int, n: int = 3000) -> FloatArray:
    return 50.0 + np.random.default_rng(seed).normal(0, 2.0, n)


def test_registered() -> None:
    assert DETECTORS["quantile"].params is QuantileParams
    assert isinstance(base.build("quantile", QuantileParams()), QuantileDetector)


@pytest.mark.parametrize("differences", [0, 1])
def test_score_and_score_all_agree_on_every_prefix(differences: int) -> None:
    rng = np.random.default_rng(3)
    values = np.vstack([noise(1, 600), np.cumsum(rng.normal(0, 1, 600))])
    values[0, 100:110] = np.nan
    values[1, 333] += 40
    det = QuantileDetector(QuantileParams(window=200, refresh=4, differences=differences))
    everything = det.score_all(window(values))
    for end in (20, 101, 115, 334, 599, 600):
        newest = det.score(window(values[:, :end]))
        for field in ("score", "expected", "lower", "upper"):
            np.testing.assert_allclose(
                getattr(newest, field), getattr(everything, field)[:, end - 1], equal_nan=True
            )


def test_causal_a_later_point_does_not_change_earlier_scores() -> None:
    values = noise(2, 800)
    det = QuantileDetector(QuantileParams(window=300))
    before = det.score_all(window(values[:500])).score
    values[600] += 1000
    after = det.score_all(window(values)).score[:, :500]
    np.testing.assert_array_equal(before, after)


@pytest.mark.parametrize("differences", [0, 1])
def test_a_spike_scores_at_least_one(differences: int) -> None:
    values = noise(4)
    values[2500] += 25 * 2.0  # 25 standard deviations
    det = QuantileDetector(QuantileParams(differences=differences))
    score = det.score_all(window(values)).score[0]
    assert score[2500] >= 1


def test_a_clean_series_mostly_scores_below_one() -> None:
    det = QuantileDetector(QuantileParams())
    score = det.score_all(window(noise(5))).score[0, 100:]
    assert np.mean(score >= 1) < 0.01


def test_a_skewed_series_gets_a_wider_upper_side() -> None:
    rng = np.random.default_rng(6)
    counts = rng.negative_binomial(2, 0.1, 3000).astype(np.float64)  # bursty counts
    est = QuantileDetector(QuantileParams()).score(window(counts))
    assert est.upper[0] - est.expected[0] > 1.5 * (est.expected[0] - est.lower[0])
    # Ordinary bursts of such a series are inside the band far more often than a z-score's.
    score = QuantileDetector(QuantileParams()).score_all(window(counts)).score[0, 2000:]
    assert np.mean(score >= 1) < 0.01


def test_band_contains_the_expected_value_and_scores_one_on_its_edge() -> None:
    values = noise(7, 500)
    det = QuantileDetector(QuantileParams(window=400))
    est = det.score(window(values))
    assert est.lower[0] < est.expected[0] < est.upper[0]
    edge = values.copy()
    edge[-1] = est.upper[0]
    assert det.score(window(edge)).score[0] == pytest.approx(1.0)


def test_too_few_points_or_a_missing_newest_point_is_nan() -> None:
    det = QuantileDetector(QuantileParams())
    assert np.isnan(det.score(window(noise(8, 5))).score[0])
    values = noise(8, 100)
    values[-1] = np.nan
    assert np.isnan(det.score(window(values)).score[0])


def test_flat_series_stay_finite() -> None:
    est = QuantileDetector(QuantileParams()).score(window(np.zeros(200)))
    assert est.score[0] == 0.0
    assert np.isfinite(est.upper[0])
