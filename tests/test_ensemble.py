"""The ensemble: calibrated members, combination, state, on synthetic anomalies."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError

from exporter.config.durations import parse_duration
from exporter.detectors import DETECTORS, base
from exporter.detectors import ensemble as ensemble_module
from exporter.detectors.base import DetectorParams, Estimate, FloatArray, Window
from exporter.detectors.ensemble import (
    EnsembleDetector,
    EnsembleParams,
    ForecastingEnsemble,
)

STEP = 300.0
N = 3000
AT = 2500  # where the anomalies start; the ensemble warms up on the 2,500 points before


def window(values: FloatArray, start: float = 0.0) -> Window:
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    keys = [(("series", str(i)),) for i in range(values.shape[0])]
    return Window(values, start + STEP * np.arange(values.shape[1], dtype=np.float64), keys, STEP)


def noise(seed: int, n: int = N) -> FloatArray:
    return 50.0 + np.random.default_rng(seed).normal(0, 2.0, n)


def anomalies() -> dict[str, FloatArray]:
    """One series per kind of anomaly, each starting at AT."""
    t = np.arange(N, dtype=np.float64)
    out = {}
    out["spike"] = noise(1)
    out["spike"][AT] += 25
    out["dip"] = noise(2)
    out["dip"][AT] -= 25
    out["level shift"] = noise(3)
    out["level shift"][AT:] += 20
    out["variance change"] = noise(4)
    out["variance change"][AT:] = 50 + np.random.default_rng(40).normal(0, 16.0, N - AT)
    out["trend change"] = noise(5)
    out["trend change"][AT:] += 1.5 * (t[AT:] - AT)
    return out


def ensemble(**params: Any) -> EnsembleDetector:
    detector = base.build("ensemble", EnsembleParams.model_validate(params))
    assert isinstance(detector, EnsembleDetector)
    return detector


class Noisy:
    """A test member that fires on a quarter of all points, whatever the data."""

    def __init__(self, params: DetectorParams) -> None:
        self.rng = np.random.default_rng(99)

    def _draw(self, shape: tuple[int, ...], values: FloatArray) -> Estimate:
        score = self.rng.uniform(0, 1.33, shape)
        return Estimate(score, values.copy(), values - 1, values + 1)

    def score(self, window: Window) -> Estimate:
        return self._draw((window.values.shape[0],), window.values[:, -1])

    def score_all(self, window: Window) -> Estimate:
        return self._draw(window.values.shape, window.values)


class Flat:
    """A test member that forecasts the last value at every horizon."""

    def __init__(self, params: DetectorParams) -> None:
        pass

    def score(self, window: Window) -> Estimate:
        zero = np.zeros(window.values.shape[0])
        return Estimate(zero, window.values[:, -1], zero - 1, zero + 1)

    def forecast(self, window: Window, steps: Sequence[int]) -> FloatArray:
        return np.repeat(window.values[:, -1:], len(steps), axis=1)


@pytest.fixture
def test_members() -> Iterator[None]:
    base.register("noisy", DetectorParams, Noisy)
    base.register("flat", DetectorParams, Flat)
    yield
    del DETECTORS["noisy"], DETECTORS["flat"]


# --- anomalies are detected once, clean data is not ------------------------------------------


@pytest.mark.parametrize("kind", list(anomalies()))
def test_each_kind_of_anomaly_is_detected_at_its_start(kind: str) -> None:
    score = ensemble().score_all(window(anomalies()[kind])).score[0]
    assert np.isnan(score[:99]).all()  # warm-up: no scores before 100 member scores
    fired = np.flatnonzero(score >= 1)
    assert fired[fired >= AT].size and fired[fired >= AT][0] <= AT + 10, fired
    assert np.count_nonzero(score[:AT] >= 1) <= 1


def test_clean_series_are_not_flagged_after_warm_up() -> None:
    values = np.stack([noise(seed) for seed in range(10, 30)])
    score = ensemble().score_all(window(values)).score
    assert np.count_nonzero(score[:, 200:] >= 1) <= 5  # of 56,000 verdicts


def test_nothing_earlier_on_the_series_lowers_the_score_of_a_new_anomaly() -> None:
    """A detection (true or false) never buys blindness: the next anomaly scores >= 1 too."""
    values = noise(6)
    values[AT - 300] += 25  # an earlier detection
    values[AT : AT + 12] += 20  # a plateau of an hour (12 points of 5 minutes)
    values[AT + 40] += 40  # a larger spike two hours later
    values[AT + 41] += 25  # and another right behind it
    score = ensemble().score_all(window(values)).score[0]
    assert score[AT - 300] >= 1
    assert (score[AT : AT + 6] >= 1).all()  # the shift stays anomalous for half an hour at least
    assert score[AT + 40] >= 2 and score[AT + 41] >= 1


def test_a_level_shift_stays_anomalous_for_the_relearn_time_whatever_the_step() -> None:
    for step, relearn in ((300.0, "1h"), (30.0, "1h"), (30.0, "20m")):
        points = int(3 * 86400 / step)
        values = 50.0 + np.random.default_rng(9).normal(0, 2.0, points + 400)
        values[points:] *= 3  # a sustained jump to 3x the normal level
        level = {"detector": "zscore", "robust": True, "window": 2000, "relearn": relearn}
        # The shipped members, with their relearn set to the case's.
        shipped = [{**m, "relearn": relearn} for m in ensemble_module.DEFAULT_MEMBERS]
        times = step * np.arange(len(values), dtype=np.float64)
        w = Window(values[None, :], times, [(("s", "1"),)], step)
        for members in ([level], shipped):
            score = ensemble(members=members).score_all(w).score[0, points:]
            lasted = np.argmax(score < 1) * step  # seconds until the first in-band point
            expected = parse_duration(relearn)
            assert 0.7 * expected <= lasted <= 1.5 * expected, (step, relearn, lasted, members)


# --- calibration and combination --------------------------------------------------------------


def test_one_noisy_member_alone_does_not_fire(test_members: None) -> None:
    values = np.stack([noise(seed) for seed in range(40, 45)])
    members = [{"detector": "noisy"}, {"detector": "zscore", "robust": True, "window": 500}]
    alone = base.score_all(Noisy(DetectorParams()), window(values)).score
    assert np.mean(alone >= 1) > 0.2
    score = ensemble(members=members).score_all(window(values)).score
    assert np.count_nonzero(score[:, 200:] >= 1) <= 1


def test_vote_needs_two_members_and_max_one() -> None:
    values = noise(7)
    values[AT] += 25  # a spike both the level and the change member see
    values[AT + 300 :] += np.linspace(0, 60, N - AT - 300)  # a slow drift: the level only
    level, change = (
        {"detector": "zscore", "robust": True, "window": 2000, **d}
        for d in ({}, {"differences": 1})
    )
    both = {"members": [level, change]}
    voted = ensemble(**both, combine="vote", votes=2).score_all(window(values)).score[0]
    maxed = ensemble(**both, combine="max").score_all(window(values)).score[0]
    assert voted[AT] >= 1 and maxed[AT] >= 1
    drift = slice(AT + 300, N)
    assert np.count_nonzero(maxed[drift] >= 1) > 0
    assert np.count_nonzero(voted[drift] >= 1) == 0


def test_calibration_never_lowers_a_member_below_its_own_band() -> None:
    """A very regular series: 0.5 of the band is far above its usual scores, but not anomalous."""
    t = np.arange(N, dtype=np.float64)
    values = 100.0 + 1e-3 * np.random.default_rng(8).normal(0, 1, N) + 0.01 * (t % 2)
    values[AT] = np.nan  # nothing to score
    score = ensemble().score_all(window(values)).score[0]
    assert np.count_nonzero(score >= 1) == 0


@pytest.mark.parametrize(
    "params",
    [
        {"members": []},
        {"members": [{"detector": "arma"}]},
        {"members": [{"detector": "ensemble"}]},
        {"members": [{"detector": "zscore", "windw": 60}]},
        {"combine": "vote", "votes": 4},
        {"threshold": 0},
        {"hold": "12h"},
        {"extra": 1},
    ],
)
def test_invalid_settings_are_reported(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        EnsembleParams.model_validate(params)


def test_member_errors_name_the_setting() -> None:
    with pytest.raises(ValidationError, match=r'unknown detector "arma" \(known: .*zscore'):
        EnsembleParams.model_validate({"members": [{"detector": "arma"}]})
    with pytest.raises(ValidationError, match=r"zscore\.window: "):
        EnsembleParams.model_validate({"members": [{"detector": "zscore", "window": 1}]})
    with pytest.raises(ValidationError, match=r"hold was removed.*recovery"):
        EnsembleParams.model_validate({"hold": "12h"})
    assert EnsembleParams.model_validate({"members": ["ewma"]}).members[0].detector == "ewma"


# --- the daemon's view: newest points, state, bootstrap ---------------------------------------


def test_scoring_poll_by_poll_matches_the_backtest() -> None:
    values = np.stack([anomalies()["spike"], anomalies()["level shift"], noise(9)])
    every = ensemble().score_all(window(values))
    live = ensemble(bootstrap=N)  # replays the whole window, as the backtest scored it
    for end in range(AT - 50, AT + 20):
        one = live.score(window(values[:, :end]))
        for field in ("score", "expected", "lower", "upper"):
            np.testing.assert_allclose(
                getattr(one, field), getattr(every, field)[:, end - 1], rtol=1e-7, err_msg=field
            )


def test_new_series_are_bootstrapped_a_bounded_number_per_poll(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Budget for two series of the 999 window points before the newest.
    monkeypatch.setattr(ensemble_module, "BOOTSTRAP_POINTS", 2 * 999)
    values = np.stack([noise(seed) for seed in range(50, 55)])
    live = ensemble()
    first = live.score(window(values[:, :1000]))
    assert np.isfinite(first.score[:2]).all() and np.isnan(first.score[2:]).all()
    second = live.score(window(values[:, :1001]))  # 1,000 points before the newest: one fits
    assert np.isfinite(second.score[:3]).all() and np.isnan(second.score[3:]).all()
    live.score(window(values[:, :1002]))
    assert np.isfinite(live.score(window(values[:, :1003])).score).all()
    # Without a bootstrap a series warms up poll by poll: NaN for `warmup` polls.
    cold = ensemble(bootstrap=0, warmup=5)
    scores = [cold.score(window(values[:, :end])).score[0] for end in range(1000, 1006)]
    assert np.isnan(scores[:5]).all() and np.isfinite(scores[5])


def test_state_survives_a_restart_and_is_json() -> None:
    values = anomalies()["spike"][None, :]
    before = ensemble()
    before.score(window(values[:, :AT]))
    snapshot = json.loads(json.dumps(before.dump_state()))
    after = ensemble()
    after.load_state(snapshot)
    # Held state too: the spike fires once, in both.
    for end in (AT + 1, AT + 2):
        np.testing.assert_allclose(
            after.score(window(values[:, :end])).score, before.score(window(values[:, :end])).score
        )
    assert after.state_version == before.state_version == 2


def test_series_absent_for_a_day_are_forgotten() -> None:
    live = ensemble()
    live.score(window(noise(10)[None, :500]))
    assert len(live.dump_state()["series"]) == 1
    other = Window(
        noise(11)[None, :500],
        2 * 86400 + STEP * np.arange(500, dtype=np.float64),
        [(("series", "new"),)],
        STEP,
    )
    live.score(other)
    assert list(live.dump_state()["series"]) == [json.dumps([["series", "new"]])]


def test_band_contains_normal_points_and_not_the_spike() -> None:
    values = anomalies()["spike"]
    est = ensemble().score_all(window(values))
    lower, upper = est.lower[0, 200:AT], est.upper[0, 200:AT]
    inside = (values[200:AT] >= lower) & (values[200:AT] <= upper)
    assert inside.mean() > 0.99
    assert values[AT] > est.upper[0, AT]
    assert (lower <= est.expected[0, 200:AT]).all() and (est.expected[0, 200:AT] <= upper).all()


@pytest.mark.parametrize("kind", sorted(anomalies()))
def test_the_expected_value_is_never_outside_the_band(kind: str) -> None:
    """The members' mean can lie outside the band where they all agree (after a shift, the
    fast members follow and the slow ones do not); a summary then read "above its expected
    404 (band 410-420)". The expected value is kept inside, where a band exists."""
    est = ensemble().score_all(window(anomalies()[kind]))
    e, lo, hi = est.expected[0], est.lower[0], est.upper[0]
    banded = ~np.isnan(lo) & ~np.isnan(hi)
    assert banded[AT:].all()
    assert ((lo[banded] <= e[banded]) & (e[banded] <= hi[banded])).all()


def test_forecasts_come_from_a_forecasting_member(test_members: None) -> None:
    assert not isinstance(ensemble(), base.Forecaster)
    mixed = ensemble(members=[{"detector": "zscore"}, {"detector": "flat"}])
    assert isinstance(mixed, ForecastingEnsemble) and isinstance(mixed, base.Forecaster)
    values = noise(12)[None, :100]
    assert mixed.forecast(window(values), [1, 5]).tolist() == [[values[0, -1]] * 2]


def test_a_member_that_needs_more_history_than_the_bootstrap_scores_on_the_first_poll() -> None:
    """At a 15 s step the level member's band comes from before its last 2 h (480 points),
    more than the 400 points the calibration replays: it must still be scored at once."""
    step, points = 15.0, 2880  # 12 h
    values = 100.0 + np.random.default_rng(21).normal(0, 2.0, points)
    values[-10:] += 40  # a shift 2.5 minutes ago: no step-to-step change at the newest point
    w = Window(values[None, :], step * np.arange(points, dtype=np.float64), [(("s", "1"),)], step)
    assert ensemble().score(w).score[0] >= 1
