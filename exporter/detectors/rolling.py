"""Rolling statistics: how unusual the last few points are *together*, judged by the tails.

The level members judge one point at a time, so an anomaly made of ordinary-looking points
escapes them: spikes of the usual height coming twice as often, bursts that are a little
higher for an hour, a series that goes quiet or sticks at one value, noise that doubles.
This member turns the series into a statistic of its last `span` points and scores that
statistic with the `quantile` detector (median, each side's scale from the window's own
tail, re-learned after `relearn`), so "unusual" means unusual for this series' own history
of that statistic:

- `stat: mean`: the mean of the last `span` points (the density of spikes, a slow
  excursion that no single point makes);
- `stat: spread`: the log of their standard deviation (noise that grows, and on the lower
  side a series that goes quiet or flat where it normally moves). The log makes the lower
  side as long as the upper: a spread of 0 is infinitely far from a spread that is never 0,
  and at the usual distance from a spread that often is.

Where the level itself has moved (the `quantile` level member's re-learning, with this
member's threshold, tail and window) the member abstains: the statistic follows a shift with a
lag of up to `span` steps, and that ramp is the shift the level members report for `relearn`,
not a second anomaly (so a shift stays anomalous for about `relearn`, whatever the span).

The member says *how* unusual, not *where* the value should be: its expected value and band
are NaN (the ensemble's band comes from the level members). It is causal: column j's
statistic uses columns j - span + 1 .. j only, so `score` and `score_all` agree whenever the
window holds the quantile's `window` + `span` columns.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import numpy.typing as npt
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import Field

from exporter.detectors.base import DetectorParams, Estimate, FloatArray, Window, register
from exporter.detectors.quantile import QuantileDetector, QuantileParams
from exporter.detectors.zscore import DEFAULT_RELEARN
from exporter.durations import Duration

SPREAD_FLOOR = 1e-9
"""Added to the standard deviation before the log, relative to the window's mean |value|
(and absolutely, 1e-12), so a flat stretch has a finite, very low spread."""


class RollingParams(DetectorParams):
    """Settings of the `rolling` detector."""

    stat: Literal["mean", "spread"] = "spread"
    """The statistic of the last `span` points: their mean, or the log of their spread."""
    span: int = Field(12, ge=2)
    """How many points (columns, the newest included) the statistic covers."""
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
    relearn: Duration | None = Field(DEFAULT_RELEARN, gt=0)
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
        """Score the statistic of the last `span` columns against its past values."""
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
        stat = rolling_stat(np.asarray(window.values, dtype=np.float64), self.params)
        return Window(stat, window.timestamps, window.keys, window.step)


def rolling_stat(values: FloatArray, params: RollingParams) -> FloatArray:
    """The statistic of each column's last `span` columns; NaN where fewer than half are
    finite, or where the newest value is missing (a missing point is not scored)."""
    rows, cols = values.shape
    span = params.span
    out = np.full((rows, cols), np.nan)
    if cols == 0:
        return out
    padded = np.pad(values, ((0, 0), (span - 1, 0)), constant_values=np.nan)
    views = sliding_window_view(padded, span, axis=1)  # (rows, cols, span)
    finite = np.isfinite(views)
    count = finite.sum(axis=2)
    filled = np.where(finite, views, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = filled.sum(axis=2) / count
        if params.stat == "mean":
            stat = mean
        else:
            dev = np.where(finite, views - mean[..., None], 0.0)
            sd = np.sqrt((dev * dev).sum(axis=2) / count)
            floor = np.maximum(SPREAD_FLOOR * np.abs(mean), 1e-12)
            stat = np.log(sd + floor)
    ok = (count >= max(2, (span + 1) // 2)) & np.isfinite(values)
    out[ok] = stat[ok]
    return out


def _no_band(est: Estimate) -> Estimate:
    """The score alone: the statistic's expected value and band are not the series'."""
    nan = np.full_like(est.score, np.nan)
    return Estimate(score=est.score, expected=nan, lower=nan.copy(), upper=nan.copy())


register("rolling", RollingParams, RollingDetector)
