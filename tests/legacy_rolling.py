"""The pre-issue-14 detector, kept verbatim (bar its registration) so tests can compare.

Rolling statistics: how unusual the last few points are *together*, judged by the tails.

The level members judge one point at a time, so an anomaly made of ordinary-looking points
escapes them: spikes of the usual height coming twice as often, bursts that are a little
higher for an hour, a series that goes quiet or sticks at one value, noise that doubles.
This member turns the series into a statistic of its last `span` of time and scores that
statistic with the `quantile` detector (median, each side's scale from the window's own
tail, re-learned after `relearn`), so "unusual" means unusual for this series' own history
of that statistic:

- `stat: mean`: the mean of the points of the last `span` (the density of spikes, a slow
  excursion that no single point makes);
- `stat: spread`: the log of their standard deviation (noise that grows, and on the lower
  side a series that goes quiet or flat where it normally moves). The log makes the lower
  side as long as the upper: a spread of 0 is infinitely far from a spread that is never 0,
  and at the usual distance from a spread that often is.

Where the level itself has moved (the `quantile` level member's re-learning, with this
member's threshold, tail and window) the member abstains: the statistic follows a shift with a
lag of up to `span`, and that ramp is the shift the level members report for `relearn`,
not a second anomaly (so a shift stays anomalous for about `relearn`, whatever the span).

The member says *how* unusual, not *where* the value should be: its expected value and band
are NaN (the ensemble's band comes from the level members). It is causal: column j's
statistic uses the columns of the `span` up to j only, so `score` and `score_all` agree
whenever the window holds the quantile's `window` + `span` columns.
"""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
import numpy.typing as npt
from legacy_quantile import QuantileDetector, QuantileParams
from legacy_zscore import DEFAULT_RELEARN
from pydantic import Field

from exporter.config.durations import Span
from exporter.detectors.base import DetectorParams, Estimate, FloatArray, Window

SPREAD_FLOOR = 1e-9
"""Added to the standard deviation before the log, relative to the window's mean |value|
(and absolutely, 1e-12), so a flat stretch has a finite, very low spread."""


class RollingParams(DetectorParams):
    """Settings of the `rolling` detector."""

    stat: Literal["mean", "spread"] = "spread"
    """The statistic of the last `span` points: their mean, or the log of their spread."""
    span: Span = Field(7200.0, gt=0)
    """How much time (the newest point included; at least two points) the statistic covers."""
    threshold: float = Field(4.0, gt=0)
    """Half-width of each side of the band, in that side's standard deviations (as quantile)."""
    tail: float = Field(0.01, gt=0, lt=0.25)
    """Share of the window beyond the quantile that sets each side's scale (as quantile)."""
    window: int = Field(2000, ge=10)
    """How many past values of the statistic the quantiles use."""
    min_points: int = Field(10, ge=2)
    """Series with fewer past values of the statistic get a NaN score."""
    refresh: int = Field(16, ge=1)
    """Recompute the quantiles every `refresh` steps of the time grid."""
    relearn: Span | None = Field(DEFAULT_RELEARN, gt=0)
    """How long a changed statistic stays anomalous before it is the new normal."""
    side: Literal["both", "up", "down"] = "both"
    """Which changes of the statistic count: `down` with `spread` is a quiet or flat series
    alone (its rises are bursts, which the level members already judge)."""


class RollingDetector:
    """The `quantile` detector on a rolling statistic of the series."""

    def __init__(self, params: RollingParams | None = None) -> None:
        self.params = params or RollingParams()
        p = self.params
        self.inner = QuantileDetector(
            QuantileParams(
                threshold=p.threshold,
                tail=p.tail,
                window=p.window,
                min_points=p.min_points,
                refresh=p.refresh,
                relearn=p.relearn,
            )
        )
        self.level = QuantileDetector(self.inner.params)

    def score(self, window: Window) -> Estimate:
        """Score the statistic of the last `span` against its past values."""
        transformed = self._transform(window)
        est = self.inner.score(transformed)
        moved = self.level.moved(window, last_only=True)[:, -1]
        return self._keep_side(est, transformed.values[:, -1], moved)

    def score_all(self, window: Window) -> Estimate:
        """Every column scored as `score` would score it as the newest: `(series, time)`."""
        transformed = self._transform(window)
        est = self.inner.score_all(transformed)
        return self._keep_side(est, transformed.values, self.level.moved(window))

    def _keep_side(self, est: Estimate, stat: FloatArray, moved: npt.NDArray[np.bool_]) -> Estimate:
        """The score without the side that does not count, nor where the level has moved,
        and without a band.

        `moved` is where the `quantile` level member (same threshold, tail and window) has
        re-learned a new level: the series has shifted, which the level members report for
        `relearn`; the statistic only follows with a lag (a mean of `span` points ramps for
        `span` steps), and that ramp is the same shift, not a second anomaly.
        """
        score = np.where(moved, 0.0, est.score)
        if self.params.side != "both":
            with np.errstate(invalid="ignore"):
                wrong = stat < est.expected if self.params.side == "up" else stat > est.expected
            score = np.where(wrong, 0.0, score)
        return _no_band(Estimate(score, est.expected, est.lower, est.upper))

    def _transform(self, window: Window) -> Window:
        stat = rolling_stat(np.asarray(window.values, dtype=np.float64), self.params, window.step)
        return Window(stat, window.timestamps, window.keys, window.step)


def rolling_stat(values: FloatArray, params: RollingParams, step: float) -> FloatArray:
    """The statistic of each column's last `span` of time; NaN where fewer than half of its
    points are finite, or where the newest value is missing (a missing point is not scored).

    From running sums, so memory and time are those of the matrix whatever the span; each
    row is taken relative to its median first, so a counter far from zero keeps its precision.
    """
    rows, cols = values.shape
    span = span_points(params.span, step)
    out = np.full((rows, cols), np.nan)
    if cols == 0:
        return out
    finite = np.isfinite(values)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN rows: median NaN
        center = np.nanmedian(np.where(finite, values, np.nan), axis=1)
    x = np.where(finite, values - np.nan_to_num(center)[:, None], 0.0)
    count, total, squares = (_window_sum(a, span) for a in (finite.astype(np.float64), x, x * x))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        if params.stat == "mean":
            stat = mean + np.nan_to_num(center)[:, None]
        else:
            sd = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
            level = np.abs(mean + np.nan_to_num(center)[:, None])
            stat = np.log(sd + np.maximum(SPREAD_FLOOR * level, 1e-12))
    ok = (count >= max(2, (span + 1) // 2)) & finite
    out[ok] = stat[ok]
    return out


def span_points(span: float, step: float) -> int:
    """Points of the grid in `span` seconds: at least 2."""
    return max(2, round(span / step)) if step > 0 else 2


def _window_sum(a: FloatArray, span: int) -> FloatArray:
    """Sum of each column's last `span` columns (fewer at the start)."""
    running = np.cumsum(a, axis=1)
    out = running.copy()
    out[:, span:] -= running[:, :-span]
    return out


def _no_band(est: Estimate) -> Estimate:
    """The score alone: the statistic's expected value and band are not the series'."""
    nan = np.full_like(est.score, np.nan)
    return Estimate(score=est.score, expected=nan, lower=nan.copy(), upper=nan.copy())
