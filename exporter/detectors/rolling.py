"""Rolling statistics: how unusual the last few points are *together*, judged by the tails.

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

from typing import Literal

import numpy as np
import numpy.typing as npt
from pydantic import Field

from exporter.config.durations import Span
from exporter.detectors.base import (
    DetectorParams,
    Estimate,
    FloatArray,
    Window,
    register,
    row_blocks,
)
from exporter.detectors.quantile import QuantileDetector, QuantileParams
from exporter.detectors.zscore import DEFAULT_RELEARN

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

    thread_safe = True
    """Scoring holds no state and touches no global (the ensemble scores blocks in threads)."""

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
        out = np.full(len(window.values), np.nan)
        if window.values.shape[1] == 0:
            return _no_band(Estimate(out, out, out, out))
        # A block of series at a time: the statistic's matrix is never whole.
        for part, block in row_blocks(window):
            transformed = self._transform(block)
            est = self.inner.score(transformed)
            moved = self.level.moved(block, last_only=True)[:, -1]
            out[part] = self._keep_side(est, transformed.values[:, -1], moved).score
        return _no_band(Estimate(out, out, out, out))

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
        stat = rolling_stat(window.values, self.params, window.step)
        return Window(stat, window.timestamps, window.keys, window.step)


_STAT_ROWS = 256
"""Rows per block of `rolling_stat`: numpy's running sum along rows is an order of magnitude
faster on blocks that stay in cache than on a matrix of thousands of rows."""


def rolling_stat(values: FloatArray, params: RollingParams, step: float) -> FloatArray:
    """The statistic of each column's last `span` of time; NaN where fewer than half of its
    points are finite, or where the newest value is missing (a missing point is not scored).

    From running sums, so memory and time are those of the matrix whatever the span; each
    row is taken relative to its median first, so a counter far from zero keeps its precision.
    """
    rows, cols = values.shape
    out = np.full((rows, cols), np.nan)
    if cols == 0:
        return out
    for lo in range(0, rows, _STAT_ROWS):
        block = np.asarray(values[lo : lo + _STAT_ROWS], dtype=np.float64)
        out[lo : lo + _STAT_ROWS] = _stat_block(block, params, span_points(params.span, step))
    return out


def _stat_block(values: FloatArray, params: RollingParams, span: int) -> FloatArray:
    """`rolling_stat` of a block of rows."""
    out = np.full(values.shape, np.nan)
    finite = np.isfinite(values)
    center = _finite_median(values, finite)
    x = np.where(finite, values - np.nan_to_num(center)[:, None], 0.0)
    count, total = _window_sum(finite.astype(np.float64), span), _window_sum(x, span)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = total / count
        if params.stat == "mean":
            stat = mean + np.nan_to_num(center)[:, None]
        else:
            squares = _window_sum(x * x, span)
            sd = np.sqrt(np.maximum(squares / count - mean * mean, 0.0))
            level = np.abs(mean + np.nan_to_num(center)[:, None])
            stat = np.log(sd + np.maximum(SPREAD_FLOOR * level, 1e-12))
    ok = (count >= max(2, (span + 1) // 2)) & finite
    out[ok] = stat[ok]
    return out


def span_points(span: float, step: float) -> int:
    """Points of the grid in `span` seconds: at least 2."""
    return max(2, round(span / step)) if step > 0 else 2


def _finite_median(values: FloatArray, finite: npt.NDArray[np.bool_]) -> FloatArray:
    """Each row's median of its finite values (NaN for none), as `np.nanmedian` gives it
    (the mean of the two middle values) without its loop over rows that have gaps."""
    ordered = np.where(finite, values, np.inf)
    ordered.sort(axis=1)
    count = finite.sum(axis=1)
    rows = np.arange(len(ordered))
    lo = np.maximum(count - 1, 0) // 2
    hi = np.maximum(count, 1) // 2
    hi = np.where(count % 2 == 1, lo, hi)
    with np.errstate(invalid="ignore", over="ignore"):
        middle = (ordered[rows, lo] + ordered[rows, hi]) / 2
    return np.where(count > 0, middle, np.nan)


def _window_sum(a: FloatArray, span: int) -> FloatArray:
    """Sum of each column's last `span` columns (fewer at the start)."""
    running = np.cumsum(a, axis=1)
    out = np.empty_like(running)
    out[:, :span] = running[:, :span]
    np.subtract(running[:, span:], running[:, :-span], out=out[:, span:])
    return out


def _no_band(est: Estimate) -> Estimate:
    """The score alone: the statistic's expected value and band are not the series'."""
    nan = np.full_like(est.score, np.nan)
    return Estimate(score=est.score, expected=nan, lower=nan.copy(), upper=nan.copy())


register("rolling", RollingParams, RollingDetector)
