"""Seasonality for any detector: remove a daily or weekly pattern, score what is left.

The pattern at a point is the median of the values at the same phase of the previous
`CYCLES` periods (found by timestamp, so gaps and irregular steps are fine): a per-phase
robust profile that follows the level as well as the shape, costs a few lookups per point
and needs no fitting. The inner detector scores the residual (value minus profile); its
expected value and band are shifted back by the profile. A Monday-morning peak that every
Monday has is then not an anomaly; a Monday without it is.

Why not statsmodels' STL/MSTL in the scoring loop: one STL fit of a 3-day, 5-minute series
takes ~200 ms, so 10,000 series would take half an hour per cycle, and a decomposition of
the look-back window is not causal (the newest points shape their own trend). STL is what
the tests check the profile and the detection against.

`seasonality: auto` decides per series, once per day of the time grid, from the data
before that day: the lag-one-period autocorrelation of the series after removing a centred
moving average of one period (which takes out level shifts and trends). A period counts
when that autocorrelation reaches `MIN_STRENGTH` with at least `MIN_CYCLES` periods of
data; of 1d and 1w the stronger wins. Each choice (none, 1d, 1w) has its own instance of
the inner detector, so a stateful one never mixes raw values with residuals of a series.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from exporter.config.durations import parse_duration
from exporter.detectors.base import (
    Detector,
    Estimate,
    FloatArray,
    Forecaster,
    IntArray,
    Stateful,
    Window,
    score_all,
)

DAY, WEEK = 86400.0, 7 * 86400.0
CYCLES = 7
"""Past periods whose same-phase values the profile takes the median of."""
MIN_STRENGTH = 0.5
"""Detrended lag-one-period autocorrelation from which `auto` treats a series as seasonal:
the pattern then explains at least half the variance left after the moving average."""
MIN_CYCLES = 3
"""Periods of history `auto` needs before it may decide that a series is seasonal."""
DECIDE_EVERY = DAY
"""How often (on the time grid) `auto` revisits its choice."""


class Seasonal:
    """`inner` on the series minus its seasonal profile; `periods` are tried when `auto`."""

    state_version = 1

    def __init__(
        self,
        inner: Detector,
        periods: Sequence[float],
        auto: bool = False,
        factory: Callable[[], Detector] | None = None,
    ) -> None:
        if not periods:
            raise ValueError("at least one period is needed")
        self.periods = tuple(float(p) for p in periods)
        self.auto = auto
        # variants[0] scores raw values (auto only), variants[c] the residuals of periods[c-1].
        make = factory or (lambda: copy.deepcopy(inner))
        self.variants: list[Detector] = (
            [inner, *(make() for _ in self.periods)] if auto else [inner, inner]
        )

    def children(self) -> list[Detector]:
        """The detectors it wraps (one per variant; the same one twice when not `auto`)."""
        return list({id(v): v for v in self.variants}.values())

    def score(self, window: Window) -> Estimate:
        """Score the newest point of every series against its de-seasonalised past."""
        values = np.asarray(window.values, dtype=np.float64)
        rows, cols = values.shape
        out = [np.full(rows, np.nan) for _ in range(4)]
        if cols == 0:
            return Estimate(*out)
        choice = self._choices(window, np.array([cols - 1]))[:, 0]
        for code in np.unique(choice):
            picked = np.flatnonzero(choice == code)
            sub, profile = self._input(window, picked, int(code))
            est = self.variants[code].score(sub)
            shift = profile[:, -1]
            for target, field, moved in zip(
                out, _fields(est), (False, True, True, True), strict=True
            ):
                target[picked] = field + shift if moved else field
        return Estimate(*out)

    def score_all(self, window: Window) -> Estimate:
        """Every column scored causally: each with the choice its day would have made."""
        values = np.asarray(window.values, dtype=np.float64)
        rows, cols = values.shape
        out = [np.full((rows, cols), np.nan) for _ in range(4)]
        choice = self._choices(window, np.arange(cols))
        for code in np.unique(choice):
            picked = np.flatnonzero((choice == code).any(axis=1))
            sub, profile = self._input(window, picked, int(code))
            est = score_all(self.variants[code], sub)
            use = choice[picked] == code
            for target, field, moved in zip(
                out, _fields(est), (False, True, True, True), strict=True
            ):
                block = target[picked]
                block[use] = (field + profile if moved else field)[use]
                target[picked] = block
        return Estimate(*out)

    def dump_state(self) -> dict[str, Any]:
        """Each variant's state (None for stateless ones)."""
        return {
            "variants": [
                v.dump_state() if isinstance(v, Stateful) else None for v in self._distinct()
            ]
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Restore the variants' states from `dump_state`."""
        for variant, snapshot in zip(self._distinct(), state.get("variants", []), strict=False):
            if isinstance(variant, Stateful) and snapshot is not None:
                variant.load_state(snapshot)

    def _distinct(self) -> list[Detector]:
        return list({id(v): v for v in self.variants}.values())

    def _input(self, window: Window, rows: IntArray, code: int) -> tuple[Window, FloatArray]:
        """The sub-window of `rows` the variant `code` scores, and the profile removed."""
        values = np.asarray(window.values, dtype=np.float64)
        # `rows` are sorted and distinct (flatnonzero): all of them is the window itself, and
        # the common case of one variant for every series must not copy a 10k x 864 matrix.
        if len(rows) < values.shape[0]:
            values = values[rows]
            keys = [window.keys[i] for i in rows]
        else:
            keys = list(window.keys)
        if code == 0:  # nothing removed: a read-only zero profile that takes no memory
            zero = np.broadcast_to(np.float64(0.0), values.shape)
            return Window(values, window.timestamps, keys, window.step), zero
        ts = np.asarray(window.timestamps, dtype=np.float64)
        profile = _profile(values, window, self.periods[code - 1], ts)
        with np.errstate(invalid="ignore"):
            residual = values - profile
        return Window(residual, window.timestamps, keys, window.step), profile

    def _choices(self, window: Window, columns: IntArray) -> IntArray:
        """Which variant scores each series at each of `columns`: `(series, len(columns))`."""
        rows = len(window.keys)
        if not self.auto:
            return np.ones((rows, len(columns)), dtype=np.intp)
        ts = np.asarray(window.timestamps, dtype=np.float64)
        day = np.floor(ts / DECIDE_EVERY)
        starts = np.flatnonzero(np.r_[True, day[1:] != day[:-1]])
        # Each column's choice is made from the data before the start of its day.
        begin = starts[np.searchsorted(starts, columns, side="right") - 1]
        out = np.zeros((rows, len(columns)), dtype=np.intp)
        values = np.asarray(window.values, dtype=np.float64)
        for start in np.unique(begin):
            best = np.zeros(rows)
            code = np.zeros(rows, dtype=np.intp)
            for c, period in enumerate(self.periods, start=1):
                lag = round(period / window.step)
                strength = _strength(values[:, :start], lag)
                better = strength > np.maximum(best, MIN_STRENGTH - 1e-12)
                code[better], best[better] = c, strength[better]
            out[:, begin == start] = code[:, None]
        return out


class ForecastingSeasonal(Seasonal):
    """A seasonal wrapper around a forecaster: forecasts are re-seasonalised too."""

    def forecast(self, window: Window, steps: Sequence[int]) -> FloatArray:
        """The inner forecast of the residual plus the profile at each horizon's phase."""
        values = np.asarray(window.values, dtype=np.float64)
        out = np.full((values.shape[0], len(steps)), np.nan)
        if values.shape[1] == 0:
            return out
        choice = self._choices(window, np.array([values.shape[1] - 1]))[:, 0]
        for code in np.unique(choice):
            inner = self.variants[code]
            if not isinstance(inner, Forecaster):
                continue
            picked = np.flatnonzero(choice == code)
            sub, _ = self._input(window, picked, int(code))
            ahead = inner.forecast(sub, steps)
            if code:
                times = float(window.timestamps[-1]) + window.step * np.asarray(steps, float)
                ahead = ahead + _profile(values[picked], window, self.periods[code - 1], times)
            out[picked] = ahead
        return out


def _fields(est: Estimate) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    return est.score, est.expected, est.lower, est.upper


def _profile(values: FloatArray, window: Window, period: float, times: FloatArray) -> FloatArray:
    """Median of the values one to CYCLES periods before each of `times` (NaN if none).

    Only earlier columns count, found by timestamp within half a step of the target time.
    """
    ts = np.asarray(window.timestamps, dtype=np.float64)
    order = np.argsort(ts, kind="stable")
    ordered = ts[order]
    tol = window.step / 2
    rows = values.shape[0]
    picks = np.full((rows, len(times), CYCLES), np.nan)
    for k in range(1, CYCLES + 1):
        target = times - k * period
        pos = np.minimum(np.searchsorted(ordered, target - tol), max(len(ts) - 1, 0))
        if not len(ts):
            break
        col = order[pos]
        ok = np.abs(ordered[pos] - target) <= tol
        picks[:, ok, k - 1] = values[:, col[ok]]
    return _nanmedian(picks)


def _nanmedian(picks: FloatArray) -> FloatArray:
    """Median over the last axis of the finite entries; NaN (no warning) where there are none."""
    ordered = np.sort(picks, axis=-1)  # NaN last
    count = np.count_nonzero(np.isfinite(ordered), axis=-1)
    lo = np.take_along_axis(ordered, (np.maximum(count - 1, 0) // 2)[..., None], axis=-1)
    hi = np.take_along_axis(ordered, (count // 2)[..., None], axis=-1)
    with np.errstate(invalid="ignore"):
        median = 0.5 * (lo[..., 0] + hi[..., 0])
    return np.where(count > 0, median, np.nan)


def _strength(values: FloatArray, lag: int) -> FloatArray:
    """Lag-`lag` autocorrelation after removing a centred moving average of `lag` points.

    0 for series shorter than MIN_CYCLES periods. Missing values are skipped (the moving
    average averages the finite points; pairs with a missing end are left out).
    """
    rows, cols = values.shape
    if lag < 2 or cols < MIN_CYCLES * lag:
        return np.zeros(rows)
    finite = np.isfinite(values)
    x = np.where(finite, values, 0.0)
    csum = np.concatenate([np.zeros((rows, 1)), np.cumsum(x, axis=1)], axis=1)
    ccount = np.concatenate([np.zeros((rows, 1)), np.cumsum(finite, axis=1)], axis=1)
    lo = np.arange(cols - lag + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = (csum[:, lo + lag] - csum[:, lo]) / (ccount[:, lo + lag] - ccount[:, lo])
        # mean[:, i] averages columns i .. i+lag-1, the window centred on i + lag // 2.
        d = values[:, lag // 2 : lag // 2 + len(lo)] - mean
        a, b = d[:, :-lag], d[:, lag:]
        ok = np.isfinite(a) & np.isfinite(b)
        a, b = np.where(ok, a, 0.0), np.where(ok, b, 0.0)
        r = (a * b).sum(axis=1) / np.sqrt((a * a).sum(axis=1) * (b * b).sum(axis=1))
    return np.where(np.isfinite(r), r, 0.0)


def wrap(
    detector: Detector,
    seasonality: str | float | None,
    step: float,
    factory: Callable[[], Detector] | None = None,
) -> Detector:
    """`detector` with the query's seasonality: None/"none", "auto", a period or a duration.

    `auto` needs a second and third instance of the detector (for the daily and weekly
    residuals): `factory` builds them, or they are deep copies of the fresh `detector`.
    Periods shorter than two steps cannot be seen on the query's grid and are an error;
    with `auto` they are simply not tried.
    """
    if seasonality is None or seasonality == "none":
        return detector
    if seasonality == "auto":
        periods = [p for p in (DAY, WEEK) if p >= 2 * step]
        if not periods:
            return detector
        return _seasonal(detector)(detector, periods, auto=True, factory=factory)
    if isinstance(seasonality, str):
        seasonality = parse_duration(seasonality)
    period = float(seasonality)
    if period < 2 * step:
        raise ValueError(f"a seasonality of {period:g}s spans less than two steps of {step:g}s")
    return _seasonal(detector)(detector, [period], auto=False, factory=factory)


def _seasonal(detector: Detector) -> type[Seasonal]:
    return ForecastingSeasonal if isinstance(detector, Forecaster) else Seasonal
