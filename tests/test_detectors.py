"""The z-score and EWMA detectors on synthetic matrices with known anomalies."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from exporter.detectors import (
    DETECTORS,
    Detector,
    Estimate,
    FloatArray,
    Window,
    apply_filters,
    base,
    build,
    ewma,
    zscore,
)

CASES = [
    pytest.param(("zscore", {}), id="zscore"),
    pytest.param(("zscore", {"robust": True}), id="zscore-robust"),
    pytest.param(("zscore", {"window": 60}), id="zscore-window60"),
    pytest.param(("ewma", {}), id="ewma"),
]


def make(name: str, params: dict[str, Any]) -> Detector:
    """Build a detector the way the configuration does: by name, params validated."""
    return build(name, DETECTORS[name].params.model_validate(params))


def window(values: FloatArray) -> Window:
    values = np.ascontiguousarray(values, dtype=np.float64)
    keys = [(("series", str(i)),) for i in range(values.shape[0])]
    return Window(
        values=values,
        timestamps=np.arange(values.shape[1], dtype=np.float64) * 60.0,
        keys=keys,
        step=60.0,
    )


def seasonal(rows: int, width: int, seed: int, noise: float = 0.5) -> FloatArray:
    """Level + daily-like sine (period 96) + Gaussian noise, one random phase per series."""
    rng = np.random.default_rng(seed)
    t = np.arange(width)
    phase = rng.uniform(0, 2 * np.pi, (rows, 1))
    level = rng.uniform(10, 1000, (rows, 1))
    return level + 2.0 * np.sin(2 * np.pi * t / 96 + phase) + rng.normal(0, noise, (rows, width))


def score_at(detector: Detector, values: FloatArray, end: int) -> FloatArray:
    """Scores as they were when column `end - 1` was the newest."""
    return detector.score(window(values[:, :end])).score


@pytest.fixture(params=CASES)
def detector(request: pytest.FixtureRequest) -> Detector:
    name, params = request.param
    return make(name, params)


# --- registry and parameters -------------------------------------------------------------


def test_both_detectors_are_registered_under_their_config_names() -> None:
    assert isinstance(make("zscore", {}), zscore.ZScoreDetector)
    assert isinstance(make("ewma", {}), ewma.EWMADetector)
    assert DETECTORS["zscore"].params is zscore.ZScoreParams
    assert DETECTORS["ewma"].params is ewma.EWMAParams


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("zscore", {"threshold": 0}),
        ("zscore", {"window": 5}),  # below the default min_points
        ("zscore", {"min_points": 1}),
        ("zscore", {"robust": True, "windw": 60}),
        ("ewma", {"alpha": 0}),
        ("ewma", {"alpha": 1.5}),
        ("ewma", {"threshold": -1}),
    ],
)
def test_invalid_params_are_rejected(name: str, params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        DETECTORS[name].params.model_validate(params)


# --- anomalies are flagged, clean data is not -----------------------------------------------


def test_spike_is_flagged_and_cannot_widen_its_own_band(detector: Detector) -> None:
    clean = np.tile(seasonal(1, 720, seed=3), (8, 1))
    values = clean.copy()
    values[2, -1] += 10.0  # ~20 sigma of the noise, ~5 of noise + season
    est = detector.score(window(values))
    assert est.score[2] >= 1
    assert np.all(np.delete(est.score, 2) < 1)
    assert np.all(np.delete(est.score, 2) == est.score[0])
    # The band comes from the past only, so the spiked row's band equals its clean twins'.
    assert est.expected[2] == est.expected[0]
    assert est.upper[2] == est.upper[0] and est.lower[2] == est.lower[0]
    assert values[2, -1] > est.upper[2]


def test_level_shift_down_is_flagged_below_the_band(detector: Detector) -> None:
    values = seasonal(20, 720, seed=4)
    values[:10, -1] -= 8.0
    est = detector.score(window(values))
    assert np.all(est.score[:10] >= 1)
    assert np.all(values[:10, -1] < est.lower[:10])
    assert np.all(est.score[10:] < 1)


def test_noise_ten_times_larger_is_flagged_within_five_points(detector: Detector) -> None:
    rng = np.random.default_rng(5)
    values = 100.0 + rng.normal(0, 1.0, (40, 720))
    values[:20, -5:] = 100.0 + rng.normal(0, 10.0, (20, 5))  # the first 20 turn noisy
    flagged = np.zeros(40, dtype=bool)
    for end in range(716, 721):
        flagged |= score_at(detector, values, end) >= 1
    assert flagged[:20].all()
    # 100 verdicts on the 20 calm series; the EWMA's normal false-positive rate allows one.
    assert np.count_nonzero(flagged[20:]) <= 1


def test_clean_seasonal_noise_is_not_flagged(detector: Detector) -> None:
    values = seasonal(50, 720, seed=1)
    newest = detector.score(window(values)).score
    assert np.isfinite(newest).all()
    assert np.count_nonzero(newest >= 1) == 0
    # Over the last 100 points (5,000 verdicts) the false-positive rate stays below 1 %.
    flagged = sum(np.count_nonzero(score_at(detector, values, end) >= 1) for end in range(621, 721))
    assert flagged / (50 * 100) < 0.01


# --- missing data -----------------------------------------------------------------------------


def test_missing_newest_point_gives_nan_for_that_series_only(detector: Detector) -> None:
    values = seasonal(4, 200, seed=6)
    values[1, -1] = np.nan
    values[2, -1] = np.inf
    est = detector.score(window(values))
    for field in (est.score, est.expected, est.lower, est.upper):
        assert np.isnan(field[[1, 2]]).all()
        assert np.isfinite(field[[0, 3]]).all()


def test_gaps_are_skipped_not_treated_as_values(detector: Detector) -> None:
    """A series with NaN gaps scores as the same series with the gaps cut out."""
    rng = np.random.default_rng(7)
    values = seasonal(6, 300, seed=7)
    values[:, :-1][rng.random((6, 299)) < 0.2] = np.nan
    values[3, 100:200] = np.nan
    est = detector.score(window(values))
    for row in range(6):
        dense = values[row][np.isfinite(values[row])][None, :]
        if isinstance(detector, zscore.ZScoreDetector) and detector.params.window:
            continue  # a window counts columns, so cutting gaps out changes what it sees
        alone = detector.score(window(dense))
        assert est.score[row] == pytest.approx(alone.score[0], rel=1e-9)
        assert est.upper[row] == pytest.approx(alone.upper[0], rel=1e-9)


def test_too_few_points_and_empty_rows_give_nan_without_warnings(detector: Detector) -> None:
    values = np.full((4, 50), np.nan)
    values[:, -1] = 1.0
    values[1, :9] = 1.0  # 9 past points, below min_points=10
    values[2, :10] = np.arange(10.0)  # exactly min_points
    values[3, :] = np.nan  # nothing at all
    est = detector.score(window(values))
    assert np.isnan(est.score[[0, 1, 3]]).all()
    assert np.isfinite(est.score[2])


@pytest.mark.parametrize("shape", [(0, 10), (3, 0), (3, 1), (0, 0)])
def test_degenerate_shapes(detector: Detector, shape: tuple[int, int]) -> None:
    est = detector.score(window(np.ones(shape)))
    assert est.score.shape == (shape[0],)
    assert np.isnan(est.score).all()


# --- flat series: the scale floor -----------------------------------------------------------


@pytest.mark.parametrize("level", [5.0, 0.0, -2e9])
def test_flat_series_has_finite_floored_band(detector: Detector, level: float) -> None:
    values = np.full((3, 100), level)
    values[1, -1] = level + 0.1
    values[2, -1] = level + 1e-12
    est = detector.score(window(values))
    half = 3.0 * max(base.RELATIVE_SCALE_FLOOR * abs(level), base.ABSOLUTE_SCALE_FLOOR)
    assert np.isfinite(est.score).all()
    assert est.score[0] == 0.0
    assert est.expected[0] == level
    assert est.upper[0] - level == pytest.approx(half)
    assert est.lower[0] - level == pytest.approx(-half)
    assert (est.score[1] >= 1) == (0.1 >= half)
    assert est.score[2] < 1


# --- exact statistics against slow references -----------------------------------------------


def _reference_zscore(values: FloatArray, params: zscore.ZScoreParams) -> Estimate:
    rows = values.shape[0]
    expected, scale = np.full(rows, np.nan), np.full(rows, np.nan)
    for i, row in enumerate(values):
        past = row[:-1] if params.window is None else row[:-1][-params.window :]
        x = past[np.isfinite(past)]
        if len(x) < params.min_points:
            continue
        if params.robust:
            expected[i] = np.median(x)
            scale[i] = 1.4826 * np.median(np.abs(x - expected[i]))
        else:
            expected[i], scale[i] = x.mean(), x.std(ddof=1)
    return base.band_estimate(values[:, -1], expected, scale, params.threshold)


def _reference_ewma(values: FloatArray, params: ewma.EWMAParams) -> Estimate:
    rows, a = values.shape[0], params.alpha
    expected, scale = np.full(rows, np.nan), np.full(rows, np.nan)
    for i, row in enumerate(values):
        x = [v for v in row[:-1] if math.isfinite(v)]
        if len(x) < params.min_points:
            continue
        m, var = x[0], 0.0
        for v in x[1:]:
            d = v - m
            m += a * d
            var = (1 - a) * (var + a * d * d)
        expected[i] = m
        scale[i] = math.sqrt(var / (1 - (1 - a) ** (len(x) - 1)))
    return base.band_estimate(values[:, -1], expected, scale, params.threshold)


@pytest.mark.parametrize(
    "params",
    [{}, {"robust": True}, {"window": 25}, {"window": 24, "robust": True, "min_points": 5}],
)
@pytest.mark.parametrize("gaps", [False, True])
def test_zscore_matches_reference_across_blocks(
    monkeypatch: pytest.MonkeyPatch, params: dict[str, Any], gaps: bool
) -> None:
    monkeypatch.setattr(zscore, "_BLOCK_ROWS", 7)  # many blocks, some with mixed counts
    rng = np.random.default_rng(8)
    values = rng.normal(50, 3, (40, 60))
    if gaps:
        values[rng.random(values.shape) < 0.3] = np.nan
        values[5, :] = np.nan
        values[6, :-1] = [np.inf, -np.inf] * 29 + [1.0]
        values[:, -1] = rng.normal(50, 3, 40)
    p = zscore.ZScoreParams.model_validate(params)
    got, want = zscore.ZScoreDetector(p).score(window(values)), _reference_zscore(values, p)
    for g, w in zip(
        (got.score, got.expected, got.lower, got.upper),
        (want.score, want.expected, want.lower, want.upper),
        strict=True,
    ):
        np.testing.assert_allclose(g, w, rtol=1e-10)
    assert np.isfinite(got.score).sum() > 20


@pytest.mark.parametrize("params", [{}, {"alpha": 0.3, "min_points": 4}, {"alpha": 1.0}])
@pytest.mark.parametrize("gaps", [False, True])
def test_ewma_matches_reference_across_blocks(
    monkeypatch: pytest.MonkeyPatch, params: dict[str, Any], gaps: bool
) -> None:
    monkeypatch.setattr(ewma, "_BLOCK_ROWS", 7)
    rng = np.random.default_rng(9)
    values = rng.normal(50, 3, (40, 60))
    if gaps:
        values[rng.random(values.shape) < 0.3] = np.nan
        values[5, :] = np.nan
        values[6, :30] = np.nan
        values[:, -1] = rng.normal(50, 3, 40)
    p = ewma.EWMAParams.model_validate(params)
    got, want = ewma.EWMADetector(p).score(window(values)), _reference_ewma(values, p)
    np.testing.assert_allclose(got.score, want.score, rtol=1e-9)
    np.testing.assert_allclose(got.expected, want.expected, rtol=1e-12)
    np.testing.assert_allclose(got.upper, want.upper, rtol=1e-12)
    assert np.isfinite(got.score).sum() > 30


def test_zscore_statistics_survive_a_large_offset() -> None:
    """Byte counters sit near 1e12; a one-pass (sum of squares) variance would cancel out."""
    rng = np.random.default_rng(10)
    past = 1e12 + rng.normal(0, 1.0, (3, 500))
    past[1, ::3] = np.nan  # the masked path too
    mean, std = zscore._mean_std(past, min_points=10)
    for row in range(3):
        x = past[row][np.isfinite(past[row])]
        assert mean[row] == pytest.approx(x.mean(), rel=1e-15)
        assert std[row] == pytest.approx(x.std(ddof=1), rel=1e-6)


# --- false-positive controls ----------------------------------------------------------------


def _up_down_flat() -> tuple[FloatArray, Estimate]:
    values = np.tile(seasonal(1, 300, seed=11), (4, 1))
    values[0, -1] += 10.0
    values[1, -1] -= 10.0
    values[3, -1] = np.nan
    return values, make("zscore", {}).score(window(values))


@pytest.mark.parametrize(("direction", "kept"), [("both", [0, 1]), ("up", [0]), ("down", [1])])
def test_direction_keeps_only_deviations_that_way(direction: Any, kept: list[int]) -> None:
    values, est = _up_down_flat()
    assert est.score[0] >= 1 and est.score[1] >= 1
    out = apply_filters(est, values[:, -1], direction=direction)
    for row in (0, 1):
        assert (out.score[row] >= 1) == (row in kept)
        if row not in kept:
            assert out.score[row] == 0.0
    rises = values[2, -1] > est.expected[2]
    unfiltered = direction == "both" or (direction == "up") == rises
    assert out.score[2] == (est.score[2] if unfiltered else 0.0)
    assert np.isnan(out.score[3])
    assert out.expected is est.expected


def test_min_deviation_silences_small_deviations_only() -> None:
    values, est = _up_down_flat()
    deviation = abs(values[0, -1] - est.expected[0])
    kept = apply_filters(est, values[:, -1], min_deviation=deviation * 0.9)
    cut = apply_filters(est, values[:, -1], min_deviation=deviation * 1.1)
    assert kept.score[0] == est.score[0]
    assert cut.score[0] == 0.0
    assert np.isnan(cut.score[3])


# --- every column at once (score_all) and re-learning ---------------------------------------

STREAM_CASES = [
    *CASES,
    pytest.param(("zscore", {"relearn": None}), id="zscore-no-relearn"),
    pytest.param(("zscore", {"robust": True, "differences": 1}), id="zscore-robust-diff"),
    pytest.param(("zscore", {"differences": 1, "window": 40}), id="zscore-diff-window40"),
    pytest.param(("zscore", {"robust": True, "window": 50, "refresh": 7}), id="zscore-refresh7"),
    pytest.param(("ewma", {"alpha": 0.3}), id="ewma-0.3"),
]


def shifted(rows: int = 6, width: int = 300, seed: int = 12) -> FloatArray:
    """Noise around 10 that settles 8 sigma higher from column 150; gaps in rows 2 and 3."""
    rng = np.random.default_rng(seed)
    values = rng.normal(10.0, 1.0, (rows, width))
    values[:, 150:] += 8.0
    if rows >= 5:
        values[2, rng.random(width) < 0.2] = np.nan
        values[3, 100:140] = np.nan
        values[4] = 5.0
        values[4, -3] = 6.0
    return values


@pytest.mark.parametrize("case", STREAM_CASES)
def test_score_all_gives_each_column_the_verdict_score_gives_it(case: Any) -> None:
    name, params = case
    detector = make(name, params)
    values = shifted()
    timestamps = (
        np.arange(values.shape[1], dtype=np.float64) * 60.0 + 420.0
    )  # the grid is not aligned to 0
    every = base.score_all(detector, Window(values, timestamps, window(values).keys, 60.0))
    assert every.score.shape == values.shape
    for end in (1, 9, 40, 151, 155, 163, 200, 300):
        prefix = Window(values[:, :end], timestamps[:end], window(values).keys, 60.0)
        one = detector.score(prefix)
        for field in ("score", "expected", "lower", "upper"):
            np.testing.assert_allclose(
                getattr(every, field)[:, end - 1], getattr(one, field), rtol=1e-9, err_msg=field
            )


def test_zscore_scores_a_long_series_in_one_pass() -> None:
    """A NAB-sized file: cumulative sums and refreshed sorted windows, not a replay per point.

    How fast that is, benchmarks/bench_scoring.py measures.
    """
    values = np.random.default_rng(13).normal(0, 1, (1, 22_000))
    for params in ({}, {"robust": True, "window": 2000, "refresh": 16}):
        detector = make("zscore", params)
        assert isinstance(detector, base.StreamScorer)
        est = base.score_all(detector, window(values))
        assert est.score.shape == values.shape
        assert np.isfinite(est.score[0, 100:]).all()


@pytest.mark.parametrize("robust", [False, True])
def test_a_settled_level_shift_stops_firing_after_relearn(robust: bool) -> None:
    values = shifted(rows=2)
    # relearn 5m at the 60 s step: the median of the last 10 points decides.
    relearned = base.score_all(
        make("zscore", {"robust": robust, "relearn": "5m"}), window(values)
    ).score
    never = base.score_all(
        make("zscore", {"robust": robust, "relearn": None}), window(values)
    ).score
    assert (relearned[:, 150] >= 1).all()  # the shift itself is flagged at once
    # After ten points at the new level, no more than the ordinary false positives of the
    # 3-sigma band (about one in 370 points; the rows hold 280 points before the shift).
    after = np.count_nonzero(relearned[:, 160:] >= 1)
    assert after <= np.count_nonzero(relearned[:, 20:150] >= 1) + 3
    # Without re-learning the whole-window statistics keep the old level: it fires for long.
    assert np.count_nonzero(never[:, 150:] >= 1) > 2 * 10


def test_re_learning_keeps_the_scale_and_still_flags_spikes_at_the_new_level() -> None:
    values = shifted(rows=1)
    values[0, 200] += 6.0  # six sigma above the new level
    est = base.score_all(make("zscore", {"robust": True, "relearn": "5m"}), window(values))
    assert est.score[0, 200] >= 1
    assert est.expected[0, 199] == pytest.approx(18.0, abs=1.0)
    assert est.upper[0, 199] - est.expected[0, 199] == pytest.approx(3.0, rel=0.35)


def test_ewma_forgets_a_level_shift_by_itself() -> None:
    values = shifted(rows=2)
    score = base.score_all(make("ewma", {}), window(values)).score
    assert (score[:, 150] >= 1).all()
    # After the first few points at the new level only its ordinary false-positive rate.
    assert np.count_nonzero(score[:, 155:] >= 1) <= np.count_nonzero(score[:, 20:150] >= 1) + 2


def test_robust_scale_falls_back_to_the_mean_absolute_deviation_when_the_mad_is_zero() -> None:
    """A mostly idle error rate: blips of ~1 set the band rather than the 1e-9 scale floor."""
    rng = np.random.default_rng(14)
    values = np.zeros((3, 400))
    values[:, rng.choice(399, 60, replace=False)] = rng.uniform(0.5, 1.5, (3, 60))
    values[0, -1], values[1, -1], values[2, -1] = 1.0, 20.0, 0.0
    est = make("zscore", {"robust": True}).score(window(values))
    past = values[0, :-1]
    assert est.expected[0] == 0.0
    assert est.upper[0] == pytest.approx(3 * 1.2533 * np.abs(past).mean())
    assert est.score[0] < 5 < 20 < est.score[1]  # the floor alone would score ~1e8
    assert est.score[2] == 0.0


def test_differences_follow_a_trend_and_flag_a_jump() -> None:
    rng = np.random.default_rng(15)
    values = 5.0 * np.arange(500.0)[None, :] + rng.normal(0, 1.0, (2, 500))
    values[1, -1] += 15.0
    detector = make("zscore", {"robust": True, "differences": 1})
    est = detector.score(window(values))
    assert est.score[0] < 1 <= est.score[1]
    assert est.expected[0] == pytest.approx(values[0, -2] + 5.0, abs=0.5)
    flagged = base.score_all(detector, window(values[:1])).score[0, 20:]
    assert np.count_nonzero(flagged >= 1) <= 5


def test_refresh_periods_follow_the_time_grid_not_the_window() -> None:
    """The same point keeps its statistics when the daemon's window slides by one step."""
    values = shifted(rows=1, width=400)
    detector = make("zscore", {"robust": True, "window": 60, "refresh": 16})
    stamps = np.arange(400, dtype=np.float64) * 60.0
    keys = window(values).keys
    for end in range(330, 350):
        a = detector.score(Window(values[:, :end], stamps[:end], keys, 60.0))
        b = detector.score(Window(values[:, 1:end], stamps[1:end], keys, 60.0))
        assert a.expected[0] == b.expected[0] and a.upper[0] == b.upper[0]


@pytest.mark.parametrize(
    "params",
    [{"differences": 2}, {"relearn": 10}, {"relearn": "0s"}, {"refresh": 0}, {"relearn": "often"}],
)
def test_new_zscore_settings_are_validated(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        zscore.ZScoreParams.model_validate(params)
