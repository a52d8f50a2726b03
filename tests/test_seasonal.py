"""Seasonality: the per-phase profile, `auto` detection, and detectors scoring what is left."""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import pytest
from statsmodels.tsa.seasonal import STL

from exporter.detectors import base, ensemble, seasonal, zscore
from exporter.detectors.base import Estimate, FloatArray, Window

STEP = 900.0  # 15 minutes: 96 points a day
DAY = 96
T0 = 1_700_006_400.0  # a midnight, UTC


def series(days: int, seed: int, amplitude: float = 30.0, weekly: float = 0.0) -> FloatArray:
    """A daily (and optionally weekly) wave around 100 with noise of 2."""
    t = T0 + STEP * np.arange(days * DAY)
    rng = np.random.default_rng(seed)
    wave = amplitude * np.sin(2 * np.pi * t / 86400) + weekly * (((t - T0) // 86400) % 7 < 2)
    return 100 + wave + rng.normal(0, 2.0, len(t))


def window(values: FloatArray, stamps: FloatArray | None = None) -> Window:
    values = np.atleast_2d(values)
    if stamps is None:
        stamps = T0 + STEP * np.arange(values.shape[1], dtype=np.float64)
    return Window(values, stamps, [(("series", str(i)),) for i in range(len(values))], STEP)


def robust_z() -> zscore.ZScoreDetector:
    return zscore.ZScoreDetector(zscore.ZScoreParams(robust=True, window=5 * DAY))


# --- wrap() -----------------------------------------------------------------------------------


def test_wrap_reads_the_query_setting() -> None:
    inner = robust_z()
    assert seasonal.wrap(inner, None, STEP) is inner
    assert seasonal.wrap(inner, "none", STEP) is inner
    fixed = seasonal.wrap(inner, "1d", STEP)
    assert isinstance(fixed, seasonal.Seasonal) and fixed.periods == (86400.0,)
    assert seasonal.wrap(robust_z(), 7 * 86400.0, STEP).periods == (seasonal.WEEK,)  # type: ignore[attr-defined]
    auto = seasonal.wrap(robust_z(), "auto", STEP)
    assert isinstance(auto, seasonal.Seasonal) and auto.periods == (seasonal.DAY, seasonal.WEEK)
    # A daily pattern is invisible on a 1-day grid: auto tries only the week, then nothing.
    assert seasonal.wrap(robust_z(), "auto", 86400.0).periods == (seasonal.WEEK,)  # type: ignore[attr-defined]
    assert seasonal.wrap(inner, "auto", 7 * 86400.0) is inner
    with pytest.raises(ValueError, match="less than two steps"):
        seasonal.wrap(inner, "1h", STEP * 4)


def test_forecasting_is_kept_only_for_forecasters() -> None:
    assert not isinstance(seasonal.wrap(robust_z(), "1d", STEP), base.Forecaster)

    class Zero(zscore.ZScoreDetector):
        def forecast(self, window: Window, steps: Sequence[int]) -> FloatArray:
            return np.zeros((len(window.keys), len(steps)))

    wrapped = seasonal.wrap(Zero(), "1d", STEP)
    assert isinstance(wrapped, base.Forecaster)
    values = series(4, seed=1)
    ahead = wrapped.forecast(window(values), [1, DAY // 4])
    # A residual forecast of 0 leaves the profile: the same phase on earlier days.
    for k, step in enumerate([1, DAY // 4]):
        same_phase = values[len(values) + step - 1 - DAY :: -DAY][:7]
        assert ahead[0, k] == pytest.approx(np.median(same_phase))


# --- the profile and auto detection -----------------------------------------------------------


def test_profile_agrees_with_statsmodels_stl() -> None:
    """The cheap per-phase median against STL's seasonal + trend on a clean daily series."""
    values = series(14, seed=2)
    w = window(values)
    profile = seasonal._profile(values[None, :], w, seasonal.DAY, w.timestamps)[0]
    fit = STL(values, period=DAY, robust=True).fit()
    late = slice(7 * DAY, None)
    smooth = (fit.seasonal + fit.trend)[late]
    assert np.corrcoef(profile[late], smooth)[0, 1] > 0.99
    assert np.std(profile[late] - smooth) < 1.6  # noise of 2: the median of 7 is ~0.9


@pytest.mark.parametrize(
    ("name", "make", "expected"),
    [
        ("daily wave", lambda: series(8, seed=3), 1),
        ("daily wave in strong noise", lambda: series(8, seed=4, amplitude=6.0), 1),
        ("weekly weekend dip", lambda: series(28, seed=5, amplitude=0.0, weekly=-25.0), 2),
        ("white noise", lambda: series(8, seed=6, amplitude=0.0), 0),
        ("random walk", lambda: 100 + np.cumsum(np.random.default_rng(7).normal(0, 1, 8 * DAY)), 0),
        (
            "level shifts",
            lambda: series(8, seed=8, amplitude=0.0) + 30 * (np.arange(8 * DAY) > 300),
            0,
        ),
    ],
)
def test_auto_detects_seasonal_series_only(name: str, make: object, expected: int) -> None:
    values = make()  # type: ignore[operator]
    auto = seasonal.wrap(robust_z(), "auto", STEP)
    assert isinstance(auto, seasonal.Seasonal)
    choice = auto._choices(window(values), np.array([len(values) - 1]))
    assert choice[0, 0] == expected, name
    # Cross-check with STL's seasonal strength on the same history (Wang, Smith & Hyndman).
    if expected == 1:
        fit = STL(values, period=DAY, robust=True).fit()
        strength = 1 - np.var(fit.resid) / np.var(fit.seasonal + fit.resid)
        assert strength > 0.6


def test_auto_decides_from_the_days_before_only() -> None:
    values = series(6, seed=9)
    auto = seasonal.wrap(robust_z(), "auto", STEP)
    assert isinstance(auto, seasonal.Seasonal)
    choice = auto._choices(window(values), np.arange(len(values)))[0]
    # Three full days are needed; the choice changes only at midnight.
    assert (choice[: 3 * DAY] == 0).all() and (choice[3 * DAY :] == 1).all()


# --- detectors on the residual ---------------------------------------------------------------


@pytest.mark.parametrize("setting", ["1d", "auto"])
def test_clean_seasonal_series_are_not_flagged_and_a_seasonal_break_is(setting: str) -> None:
    clean = np.stack([series(14, seed=s) for s in range(10, 14)])
    broken = clean.copy()
    noon = 12 * DAY + DAY // 4  # the daily peak, which is missing on day 12
    broken[:, noon - 8 : noon + 8] -= 30 * np.sin(2 * np.pi * np.arange(-8, 8) / DAY + np.pi / 2)
    start = (3 if setting == "auto" else 1) * DAY + 100
    verdicts = clean[:, start:].size
    # A 3-sigma band alone flags ~0.27 % of Gaussian noise; the calibrated ensemble ~4 sigma
    # per member, about one verdict in 10,000 (here: at most one of ~5,000).
    alone = base.score_all(seasonal.wrap(robust_z(), setting, STEP), window(clean)).score
    assert np.count_nonzero(alone[:, start:] >= 1) < 0.005 * verdicts
    made = ensemble.make_ensemble
    default = seasonal.wrap(made(ensemble.EnsembleParams()), setting, STEP)
    assert np.count_nonzero(base.score_all(default, window(clean)).score[:, start:] >= 1) <= 1
    plain = base.score_all(robust_z(), window(broken)).score
    assert np.count_nonzero(plain[:, noon - 8 : noon + 8] >= 1) == 0  # inside the daily range
    wrapped = seasonal.wrap(robust_z(), setting, STEP)
    found = base.score_all(wrapped, window(broken)).score[:, noon - 8 : noon + 8]
    assert (found >= 1).any(axis=1).all()


def test_expected_value_and_band_are_re_seasonalised() -> None:
    values = series(10, seed=20)
    est = base.score_all(seasonal.wrap(robust_z(), "1d", STEP), window(values))
    truth = values - np.random.default_rng(20).normal(0, 2.0, len(values))  # the noiseless wave
    late = slice(8 * DAY, None)
    assert np.abs(est.expected[0, late] - truth[late]).max() < 4.0
    inside = (values[late] >= est.lower[0, late]) & (values[late] <= est.upper[0, late])
    assert inside.mean() > 0.98


def test_irregular_timestamps_find_the_same_phase_by_time() -> None:
    values = series(6, seed=21)
    stamps = T0 + STEP * np.arange(len(values), dtype=np.float64)
    keep = np.ones(len(values), dtype=bool)
    keep[2 * DAY + 10 : 2 * DAY + 40] = False  # a gap of 7.5 hours
    v, t = values[keep], stamps[keep]
    w = window(v, t)
    profile = seasonal._profile(v[None, :], w, seasonal.DAY, t)[0]
    j = int(np.flatnonzero(t == stamps[5 * DAY + 20])[0])
    assert profile[j] == pytest.approx(
        np.median(values[[4 * DAY + 20, 3 * DAY + 20, DAY + 20, 20]])
    )


def test_newest_point_scoring_matches_the_backtest() -> None:
    values = np.stack([series(6, seed=22), series(6, seed=23, amplitude=0.0)])
    auto = seasonal.wrap(robust_z(), "auto", STEP)
    every = base.score_all(auto, window(values))
    for end in (DAY, 3 * DAY + 5, 5 * DAY, 6 * DAY):
        one = auto.score(window(values[:, :end]))
        for field in ("score", "expected", "upper"):
            np.testing.assert_allclose(
                getattr(one, field), getattr(every, field)[:, end - 1], rtol=1e-9
            )


def test_state_of_every_variant_is_kept() -> None:
    wrapped = seasonal.wrap(ensemble.make_ensemble(ensemble.EnsembleParams()), "auto", STEP)
    assert isinstance(wrapped, seasonal.Seasonal) and isinstance(wrapped, base.Stateful)
    values = np.stack([series(5, seed=24), series(5, seed=25, amplitude=0.0)])
    wrapped.score(window(values))
    assert isinstance(wrapped, base.Stateful)
    snapshot = json.loads(json.dumps(wrapped.dump_state()))
    assert len(snapshot["variants"]) == 3
    fresh = seasonal.wrap(ensemble.make_ensemble(ensemble.EnsembleParams()), "auto", STEP)
    assert isinstance(fresh, base.Stateful)
    fresh.load_state(snapshot)
    assert fresh.dump_state() == snapshot


def test_too_short_a_window_scores_nan_rather_than_raw_values() -> None:
    values = series(1, seed=26)[: DAY // 2]
    est: Estimate = seasonal.wrap(robust_z(), "1d", STEP).score(window(values))
    assert np.isnan(est.score).all()


def test_scoring_unseasonal_series_does_not_copy_the_window() -> None:
    """With no period strong enough, every series goes to the plain variant: it reads the
    window itself (a copy of 2,000 x 864 plus a zero profile of the same size was 160 MB at
    10,000 series, the largest allocation of a poll)."""
    import tracemalloc

    rng = np.random.default_rng(3)
    values = 100.0 + rng.normal(0.0, 1.0, (2000, 864))
    stamps = 1.7e9 + 300.0 * np.arange(864, dtype=np.float64)
    win = Window(values, stamps, [(("i", str(i)),) for i in range(2000)], 300.0)
    wrapped = seasonal.wrap(robust_z(), "auto", 300.0)
    wrapped.score(win)  # first call: choices and variants set up
    tracemalloc.start()
    try:
        est = wrapped.score(win)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert np.isfinite(est.score).all()
    assert peak < values.nbytes / 2, (
        f"{peak / 1e6:.1f} MB for a {values.nbytes / 1e6:.1f} MB window"
    )
