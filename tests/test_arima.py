"""The ARIMA detector: its Kalman filter against statsmodels', anomalies, streaming, state."""

from __future__ import annotations

import json
import multiprocessing
import time
import warnings
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from statsmodels.tools.sm_exceptions import ModelWarning
from statsmodels.tsa.arima.model import ARIMA
from statsmodels.tsa.statespace.initialization import Initialization

import exporter.detectors.arima.detector as arima
import exporter.detectors.arima.fit as arima_fit
from exporter.detectors.arima import ARIMADetector, ARIMAParams, kalman
from exporter.detectors.arima.fit import fit_model
from exporter.detectors.arima.kalman import ARIMAModel
from exporter.detectors.base import DETECTORS, FloatArray, Window, score_all

STEP = 15.0


def window(values: FloatArray, start: int = 0) -> Window:
    """Rows of `values` as series `s0, s1, ...`, columns on a 15 s grid from column `start`."""
    values = np.atleast_2d(np.asarray(values, dtype=np.float64))
    keys = [(("series", f"s{i}"),) for i in range(values.shape[0])]
    ts = STEP * (start + np.arange(values.shape[1], dtype=np.float64))
    return Window(values=values, timestamps=ts, keys=keys, step=STEP)


def arma(n: int, phi: float, theta: float, seed: int, sigma: float = 1.0) -> FloatArray:
    """An ARMA(1,1) sample path (burn-in discarded)."""
    rng = np.random.default_rng(seed)
    e = rng.normal(0.0, sigma, n + 200)
    y = np.zeros(n + 200)
    for t in range(1, n + 200):
        y[t] = phi * y[t - 1] + e[t] + theta * e[t - 1]
    return y[200:]


def sync(**params: Any) -> ARIMADetector:
    """A detector that fits on the calling thread, so tests are deterministic."""
    return ARIMADetector(ARIMAParams(workers=0, **params))


@pytest.fixture
def pool() -> Iterator[None]:
    """Tests that use the process pool stop it, and leave no child process behind."""
    yield
    arima_fit.shutdown_pools()
    assert multiprocessing.active_children() == []


def test_registered_under_its_config_name() -> None:
    assert DETECTORS["arima"].params is ARIMAParams
    assert isinstance(DETECTORS["arima"].factory(ARIMAParams()), ARIMADetector)


@pytest.mark.parametrize(
    "params",
    [
        {"order": (1, 2, 1)},
        {"order": (6, 0, 0)},
        {"threshold": 0},
        {"fit_window": 100, "min_points": 200},
        {"oder": None},
    ],
)
def test_invalid_params_are_rejected(params: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        ARIMAParams.model_validate(params)


# The statsmodels trend that matches each of ours: "c" with d=1 is a drift, which
# statsmodels spells "t"; "t" with d=0 is a line, statsmodels' "ct" (time counted from 1).
FILTER_CASES = [
    pytest.param(
        (1, 0, 0),
        "c",
        [5.0, 0.9, 1.3],
        ARIMAModel((1, 0, 0), "c", (0.9,), (), 5.0, 0.0, 1.3, 0.0),
        id="(1,0,0)-mean",
    ),
    pytest.param(
        (1, 1, 1),
        "t",
        [0.2, 0.5, 0.3, 1.3],
        ARIMAModel((1, 1, 1), "c", (0.5,), (0.3,), 0.2, 0.0, 1.3, 0.0),
        id="(1,1,1)-drift",
    ),
    pytest.param(
        (2, 1, 2),
        "t",
        [0.2, 0.5, -0.2, 0.3, 0.1, 1.3],
        ARIMAModel((2, 1, 2), "c", (0.5, -0.2), (0.3, 0.1), 0.2, 0.0, 1.3, 0.0),
        id="(2,1,2)-drift",
    ),
    pytest.param(
        (1, 0, 1),
        "ct",
        [5.0, 0.2, 0.9, 0.4, 1.3],
        ARIMAModel((1, 0, 1), "t", (0.9,), (0.4,), 5.2, 0.2, 1.3, 0.0),
        id="(1,0,1)-line",
    ),
]


@pytest.mark.parametrize("path", ["numpy", "compiled"])
@pytest.mark.parametrize(("order", "sm_trend", "params", "model"), FILTER_CASES)
def test_kalman_filter_matches_statsmodels(
    order: tuple[int, int, int],
    sm_trend: str,
    params: list[float],
    model: ARIMAModel,
    path: str,
) -> None:
    rng = np.random.default_rng(7)
    x = (
        np.cumsum(rng.normal(size=400)) + 0.2 * np.arange(400)
        if order[1]
        else 5 + arma(400, 0.9, 0.4, 7) + 0.2 * np.arange(400)
    )
    x[[50, 51, 200]] = np.nan  # missing samples are propagated, not updated
    reference = ARIMA(x, order=order, trend=sm_trend)
    if order[1]:
        # statsmodels' default for the integrated level is "approximately diffuse" (variance
        # 1e6); ours is exact, which statsmodels offers too.
        init = Initialization(reference.k_states)
        init.set(0, "diffuse")
        init.set((1, reference.k_states), "stationary")
        reference.ssm.initialize(init)
    with warnings.catch_warnings(action="ignore", category=ModelWarning):  # "loglikelihood burn"
        sm = reference.filter(np.array(params))
    ssm = kalman.build([model], kalman.state_dim(2, 2))
    state = kalman.initial_state(ssm, [model], np.zeros(1))
    expected, var = kalman.run(ssm, state, x[None, :], compiled=path == "compiled")
    first = order[1]  # a diffuse level makes the first point unpredictable
    np.testing.assert_allclose(expected[0, first:], sm.forecasts[0, first:], rtol=1e-9, atol=1e-8)
    np.testing.assert_allclose(var[0, first:], sm.forecasts_error_cov[0, 0, first:], rtol=1e-8)
    if first:
        assert np.isnan(expected[0, 0]) and np.isnan(var[0, 0])


def test_vectorised_and_compiled_paths_agree_on_a_mixed_batch() -> None:
    models = [case.values[3] for case in FILTER_CASES if isinstance(case.values[3], ARIMAModel)]
    assert len(models) == 4
    y = np.cumsum(np.random.default_rng(1).normal(size=(len(models), 300)), axis=1)
    y[:, :3] = np.nan  # the levels stay diffuse for three steps
    y[1, 100:110] = np.nan
    ssm = kalman.build(models, 5)
    compiled = kalman.initial_state(ssm, models, np.zeros(len(models)))
    got = kalman.run(ssm, compiled, y, compiled=True)
    vectorised = kalman.initial_state(ssm, models, np.zeros(len(models)))
    want = kalman.run(ssm, vectorised, y)
    for a, b in zip(got, want, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-8, atol=1e-8)
    np.testing.assert_allclose(compiled.a, vectorised.a, rtol=1e-8)
    np.testing.assert_allclose(compiled.P, vectorised.P, rtol=1e-7, atol=1e-9)
    assert np.isnan(got[0][:, :3]).sum() == 3 * 2  # the two integrated models


def test_forecast_matches_statsmodels_with_drift() -> None:
    x = np.cumsum(0.5 + arma(300, 0.6, 0.2, 3))
    params = np.array([0.5, 0.6, 0.2, 1.1])
    res = ARIMA(x, order=(1, 1, 1), trend="t").filter(params)
    fc = res.get_forecast(240)
    model = ARIMAModel((1, 1, 1), "c", (0.6,), (0.2,), 0.5, 0.0, 1.1, 0.0)
    ssm = kalman.build([model], 5)
    state = kalman.initial_state(ssm, [model], np.zeros(1))
    kalman.run(ssm, state, x[None, :])
    steps = [1, 7, 60, 240]
    mean, var = kalman.forecast(ssm, state, steps)
    np.testing.assert_allclose(mean[0], fc.predicted_mean[np.array(steps) - 1], rtol=1e-7)
    np.testing.assert_allclose(var[0], fc.var_pred_mean[np.array(steps) - 1], rtol=1e-6)


def test_fit_maps_statsmodels_parameters_onto_the_model() -> None:
    x = np.cumsum(0.3 + arma(720, 0.5, 0.3, 11))
    result = fit_model(x, (1, 1, 1), "c", ref_time=0.0)
    assert result.model is not None and result.failures == 0 and not result.fallback
    ref = ARIMA(x, order=(1, 1, 1), trend="t").fit()
    drift, ar, ma, sigma2 = ref.params
    m = result.model
    assert m.mean == pytest.approx(drift, rel=0.02)
    assert m.ar[0] == pytest.approx(ar, abs=0.02) and m.ma[0] == pytest.approx(ma, abs=0.02)
    assert m.sigma2 == pytest.approx(sigma2, rel=0.02)
    assert m.ar[0] == pytest.approx(0.5, abs=0.1) and m.ma[0] == pytest.approx(0.3, abs=0.1)


def test_fit_maps_a_linear_trend_to_its_value_at_the_first_point() -> None:
    x = 50 + 0.3 * np.arange(720) + arma(720, 0.5, 0.0, 12)
    result = fit_model(x, (1, 0, 0), "t", ref_time=0.0)
    assert result.model is not None and result.model.has_line
    const, slope, ar, _ = ARIMA(x, order=(1, 0, 0), trend="ct").fit().params
    # statsmodels' trend is const + slope * t with t = 1 at the first point.
    assert result.model.mean == pytest.approx(const + slope, abs=0.05)
    assert result.model.slope == pytest.approx(slope, abs=1e-3)
    assert result.model.ar[0] == pytest.approx(ar, abs=0.02)
    est = ARIMADetector(ARIMAParams(workers=0, order=(1, 0, 0), trend="t")).forecast(
        window(x), [100]
    )
    assert est[0, 0] == pytest.approx(50 + 0.3 * 819, abs=1.0)


def test_automatic_order_selection_finds_the_simple_structure() -> None:
    ar1 = fit_model(10 + arma(720, 0.8, 0.0, 1), None, "c", 0.0).model
    walk = fit_model(
        np.cumsum(np.random.default_rng(2).normal(size=720)) + 0.5 * np.arange(720), None, "c", 0.0
    ).model
    noise = fit_model(np.random.default_rng(3).normal(size=720), None, "c", 0.0).model
    assert ar1 is not None and ar1.order == (1, 0, 0) and ar1.ar[0] == pytest.approx(0.8, abs=0.05)
    assert walk is not None and walk.order[1] == 1 and walk.mean == pytest.approx(0.5, abs=0.1)
    assert noise is not None and noise.order == (0, 0, 0)


def last_score(det: ARIMADetector, x: FloatArray) -> float:
    return float(det.score(window(x)).score[0])


@pytest.mark.parametrize(
    ("name", "change"),
    [("spike", +8.0), ("dip", -8.0)],
)
def test_spike_and_dip_are_scored_at_the_point(name: str, change: float) -> None:
    x = 100 + arma(721, 0.7, 0.3, 21)
    clean, anomalous = x.copy(), x.copy()
    anomalous[-1] += change * x[:-1].std()
    assert last_score(sync(), clean) < 1
    assert last_score(sync(), anomalous) >= 1


def test_level_shift_is_scored_at_the_step_and_relearned() -> None:
    x = 50 + arma(900, 0.5, 0.0, 5)
    x[800:] += 10 * x[:800].std()
    est = score_all(sync(fit_every=60), window(x))
    assert est.score[0, 800] >= 1
    assert est.score[0, 800] > 3  # a 10-sigma step against a 3-sigma band
    # A d=0 model keeps firing until a refit learns the level; then it settles.
    assert np.mean(est.score[0, 880:] >= 1) < 0.05


def test_variance_change_is_flagged_soon_after_it_starts() -> None:
    rng = np.random.default_rng(9)
    x = 20 + rng.normal(0, 1, 1000)
    x[800:] = 20 + rng.normal(0, 6, 200)
    est = score_all(sync(), window(x))
    before, after = est.score[0, 500:800], est.score[0, 800:850]
    assert np.max(after[:10]) >= 1
    assert np.mean(before >= 1) < 0.02 and np.mean(after >= 1) > 0.3


@pytest.mark.parametrize(
    "series",
    [
        pytest.param(lambda: 100 + arma(3000, 0.0, 0.0, 31), id="white-noise"),
        pytest.param(lambda: 100 + arma(3000, 0.8, 0.0, 32), id="ar1"),
        pytest.param(lambda: 100 + arma(3000, 0.5, 0.4, 33), id="arma11"),
        pytest.param(lambda: 100 + arma(3000, 0.0, 0.6, 34), id="ma1"),
        pytest.param(lambda: np.cumsum(0.2 + arma(3000, 0.3, 0.0, 35)), id="random-walk-drift"),
    ],
)
def test_clean_series_are_rarely_flagged(series: Any) -> None:
    det = sync(fit_every=1000)
    est = det.score_all(window(series()))
    scored = est.score[0, ~np.isnan(est.score[0])]
    assert scored.size > 2500
    # A 3-sigma band on Gaussian errors is left 0.27 % of the time.
    assert np.mean(scored >= 1) < 0.01
    assert det.fit_failures == 0


def test_score_consumes_only_new_points_and_matches_filtering_from_scratch() -> None:
    rng = np.random.default_rng(4)
    x = np.stack([100 + arma(800, 0.6, 0.3, 41), np.cumsum(0.1 + rng.normal(size=800))])
    det = sync(fit_every=10_000)
    det.score(window(x[:, :720]))
    assert det.fits == 2
    models = list(det._models)
    done, seen = det.filtered_points, 720
    got = []
    for end in (724, 725, 733):  # cycles of 4, 1 and 8 new points
        got.append(det.score(window(x[:, end - 720 : end], start=end - 720)).score)
        assert det.filtered_points - done == 2 * (end - seen)
        done, seen = det.filtered_points, end
    assert det.fits == 2

    # From scratch: the same models, started where the first call started them.
    chosen = [m for m in models if m is not None]
    ssm = kalman.build(chosen, det._k)
    lo = 720 - arima.REFILTER
    state = kalman.initial_state(
        ssm, chosen, np.array([(lo * STEP - m.ref_time) / STEP for m in chosen])
    )
    expected, var = kalman.run(ssm, state, x[:, lo:733])
    ref = np.abs(x[:, lo:733] - expected) / (3 * np.sqrt(var))
    for end, score in zip((724, 725, 733), got, strict=True):
        np.testing.assert_allclose(score, ref[:, end - 1 - lo], rtol=1e-9)


def test_series_order_and_membership_may_change_between_windows() -> None:
    x = np.stack([100 + arma(725, 0.5, 0.0, 43 + i) for i in range(3)])
    det, ref = sync(fit_every=10_000), sync(fit_every=10_000)
    det.score(window(x[:, :720]))
    ref.score(window(x[:, :720]))
    later = window(x[:, 5:725], start=5)
    want = ref.score(later).score
    shuffled = Window(later.values[[2, 0]], later.timestamps, [later.keys[2], later.keys[0]], STEP)
    np.testing.assert_array_equal(det.score(shuffled).score, want[[2, 0]])
    # Series 1 skipped that window; it catches up on the next one.
    np.testing.assert_array_equal(det.score(later).score, want)


def test_a_window_older_than_what_was_seen_scores_nan() -> None:
    x = 100 + arma(730, 0.5, 0.0, 46)
    det = sync()
    assert np.isfinite(det.score(window(x[None, 10:730], start=10)).score[0])
    assert np.isnan(det.score(window(x[None, :720])).score[0])


def test_missing_newest_point_gives_nan_for_that_series_only() -> None:
    x = np.stack([100 + arma(720, 0.5, 0.0, 44), 100 + arma(720, 0.5, 0.0, 45)])
    x[1, -1] = np.nan
    est = sync().score(window(x))
    assert np.isfinite(est.score[0]) and np.isnan(est.score[1])


def test_series_gone_for_two_fit_windows_are_forgotten() -> None:
    det = sync(fit_window=40, min_points=10, fit_every=10_000)
    rng = np.random.default_rng(1)
    det.score(window(rng.normal(size=(40, 40))))
    assert len(det._keys) == 40
    det.score(window(rng.normal(size=(1, 40)), start=100))
    assert len(det._keys) == 1
    assert det._bank.hist.shape[0] == 1


def test_missed_cycles_are_filtered_as_missing_points() -> None:
    x = 100 + arma(760, 0.6, 0.0, 42)
    det = sync(fit_every=10_000)
    det.score(window(x[None, :720]))
    done = det.filtered_points
    # The next window arrives 20 steps later; the 19 points in between were never seen.
    est = det.score(window(x[None, 740:760], start=740))
    assert det.filtered_points - done == 40
    assert np.isfinite(est.score[0])


def _filling_disk(
    det: ARIMADetector, ends: FloatArray, seed: int = 0, jump: float = 0.0
) -> tuple[float, float]:
    """Poll a disk filling 1e-6 of its size per second at `ends`, as the poller does: a 3-day
    grid at 5-minute steps ending at each poll (`jump` added to the very last value).
    Returns the last poll's score and 1 h forecast growth."""
    rng = np.random.default_rng(seed)
    step, lookback = 300.0, 3 * 86400.0
    score = growth = np.nan
    for end in ends:
        ts = end - lookback + step * np.arange(int(lookback / step) + 1)
        values = 0.3 + 1e-6 * ts + rng.normal(0, 2e-4, ts.size)
        if end == ends[-1]:
            values[-1] += jump
        w = Window(values=values[None, :], timestamps=ts, keys=[(("s", "a"),)], step=step)
        score = float(det.score(w).score[0])
        assert np.isfinite(score)  # every poll is scored, in step or not
        growth = float(det.forecast(w, [12])[0, 0] - (0.3 + 1e-6 * end))
    return score, growth


def test_polls_between_steps_keep_the_history_at_step_spacing() -> None:
    # The defaults poll every minute on a 5-minute grid that ends at the poll. Taking every
    # new grid as the next step put points 3 minutes apart into a 5-minute model: after a
    # day and a half the 1 h forecast of a filling disk fell 40 % short.
    polls = 1_000_000.0 + 60.0 * np.arange(40 * 60) + np.linspace(0, 0.5, 40 * 60)
    det = sync(trend="c")
    _, growth = _filling_disk(det, polls)
    assert abs(growth - 3600e-6) < 0.1 * 3600e-6, growth


def test_a_poll_schedule_shifted_off_the_grid_is_taken_up_again() -> None:
    # A restart or a long pause moves the polls by half a step for good: the history goes on
    # at the new phase (after at most two steps) instead of waiting for the old one.
    det = sync(trend="c")
    first = 1_000_000.0 + 300.0 * np.arange(12 * 6, dtype=np.float64)
    _filling_disk(det, first)
    shifted = first[-1] + 150.0 + 300.0 * np.arange(12 * 2)  # every poll half a step off
    score, _ = _filling_disk(det, shifted, seed=1, jump=0.01)  # 50 noise deviations
    assert score >= 1  # the newest point was taken in, not the last one of the old phase


def test_degenerate_series_fall_back_without_exceptions_or_warnings() -> None:
    x = np.full((4, 720), np.nan)
    x[0] = 42.0  # constant
    x[2, -5:] = [1.0, 2.0, 3.0, 4.0, 5.0]  # five points
    x[3, ::50] = 7.0  # sparse
    for params in ({}, {"order": (2, 1, 2)}):
        det = sync(**params)
        est = det.score(window(x))
        assert est.score[0] == 0.0 and est.expected[0] == 42.0
        assert np.isnan(est.score[1:]).all()
        bumped = x.copy()
        bumped[0, -1] = 43.0
        assert sync(**params).score(window(bumped)).score[0] >= 1
        all_scored = det.score_all(window(x))
        assert all_scored.score.shape == x.shape
        assert np.nanmax(all_scored.score[0]) == 0.0


def test_failed_fits_fall_back_to_simpler_orders_and_are_counted(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = arima_fit._mle

    def refuse_two_terms(
        y: FloatArray, order: tuple[int, int, int], *args: Any
    ) -> ARIMAModel | None:
        return None if order[0] + order[2] > 1 else real(y, order, *args)

    monkeypatch.setattr(arima_fit, "_mle", refuse_two_terms)
    result = fit_model(np.cumsum(arma(720, 0.5, 0.3, 51)), (1, 1, 1), "c", 0.0)
    assert result.model is not None and result.model.order == (1, 1, 0)
    assert result.failures == 1 and result.fallback
    monkeypatch.setattr(arima_fit, "_mle", lambda *args: None)
    det = sync(order=(2, 1, 1))
    est = det.score(window(np.cumsum(arma(720, 0.5, 0.3, 52))))
    assert det._models[0] is not None and det._models[0].order == (0, 1, 0)
    assert (det.fits, det.fit_failures, det.fallbacks) == (1, 2, 1)
    assert np.isfinite(est.score[0])


def test_a_fit_that_does_not_converge_is_caught_not_raised() -> None:
    # ARMA(2,2) on white noise: AR and MA roots nearly cancel and L-BFGS often gives up
    # (seed 0 does with statsmodels 0.15); the warning it raises must stay inside.
    for seed in range(8):
        result = fit_model(np.random.default_rng(seed).normal(size=300), (2, 0, 2), "c", 0.0)
        assert result.model is not None
        if result.failures:
            break
    assert result.failures == 1 and result.fallback
    assert result.model is not None and result.model.order == (1, 0, 0)


def test_forecast_extrapolates_a_filling_disk() -> None:
    rng = np.random.default_rng(6)
    t = np.arange(720)
    used = 200e9 + 5e6 * t + rng.normal(0, 20e6, 720)  # +5 MB per 15 s step, noisy
    det = sync()
    w = window(used)
    steps = [1, 240, 960]  # 15 s, 1 h, 4 h ahead
    mean, lower, upper = det.forecast_interval(w, steps)
    truth = 200e9 + 5e6 * (719 + np.array(steps))
    # Within 5 % of the growth plus three noise deviations.
    assert (np.abs(mean[0] - truth) < 0.05 * 5e6 * np.array(steps) + 60e6).all()
    assert (lower[0] < truth).all() and (truth < upper[0]).all()
    np.testing.assert_array_equal(det.forecast(w, steps), mean)


def test_forecast_of_unscorable_series_is_nan() -> None:
    x = np.full((2, 720), np.nan)
    x[0] = 100 + arma(720, 0.5, 0.0, 8)
    mean = sync().forecast(window(x), [1, 10])
    assert np.isfinite(mean[0]).all() and np.isnan(mean[1]).all()


def test_state_round_trip_scores_identically_without_refitting(pool: None) -> None:
    x = np.stack([100 + arma(760, 0.6, 0.3, 61), np.cumsum(0.2 + arma(760, 0.3, 0.0, 62))])
    first = sync()
    first.score(window(x[:, :720]))
    state = json.loads(json.dumps(first.dump_state()))
    assert set(state["series"]) == {'[["series", "s0"]]', '[["series", "s1"]]'}
    later = window(x[:, 40:760], start=40)
    restored = sync()
    restored.load_state(state)
    again = restored.score(later)
    assert restored.fits == 0 and restored.pending == 0
    fresh = sync()
    fresh.load_state(state)
    np.testing.assert_array_equal(again.score, fresh.score(later).score)
    assert np.isfinite(again.score).all()
    # A restored pool detector scores without starting the pool: nothing is due for a refit.
    pooled = ARIMADetector(ARIMAParams(workers=2))
    pooled.load_state(state)
    np.testing.assert_array_equal(pooled.score(later).score, again.score)
    assert pooled.pending == 0 and not arima_fit._pools
    # What the original detector says after the same points (it filtered all along).
    np.testing.assert_allclose(again.score, first.score(later).score, rtol=1e-6)


def test_malformed_state_is_rejected_with_value_error() -> None:
    with pytest.raises(ValueError, match="malformed arima state"):
        sync().load_state({"series": {"[]": {"model": {}}}})


def test_score_all_is_causal() -> None:
    x = 100 + arma(1400, 0.6, 0.2, 71)
    det = sync(fit_every=200, fit_window=400)
    clean = det.score_all(window(x))
    changed = x.copy()
    changed[1010] += 50.0  # a refit starts there: the first at 15 % (210), then every 200
    dirty = det.score_all(window(changed))
    np.testing.assert_array_equal(clean.score[0, :1010], dirty.score[0, :1010])
    # The prediction for the changed point itself must not have seen it either.
    np.testing.assert_array_equal(clean.expected[0, :1011], dirty.expected[0, :1011])
    before = clean.score[0]
    assert dirty.score[0, 1010] > 10 and before[1010] < 1
    # NAB's probation: fitted on, not scored.
    assert np.isnan(before[:210]).all() and np.isfinite(before[210:]).all()


def test_pool_fits_in_the_background_and_scores_meanwhile(pool: None) -> None:
    x = np.stack([100 + arma(720, 0.5, 0.3, 80 + i) for i in range(6)])
    det = ARIMADetector(ARIMAParams(workers=2))
    w = window(x)
    first = det.score(w)
    assert np.isfinite(first.score).all()  # moment estimates stand in
    assert det.pending == 6 and det.fits == 0
    deadline = time.monotonic() + 120
    while det.pending and time.monotonic() < deadline:
        time.sleep(0.2)
        det.score(w)
    assert det.pending == 0 and det.fits == 6
    assert not det._bank.provisional.any()
    fitted = det.score(w)
    np.testing.assert_allclose(fitted.score, sync().score(w).score, rtol=1e-6)
