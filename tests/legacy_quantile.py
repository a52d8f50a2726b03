"""The pre-issue-14 detector, kept verbatim (bar its registration) so tests can compare.

Tail quantiles: how rare the newest point is in the series' own recent history, per side.

A robust z-score assumes the two tails of a series are as wide as its middle: median +/- k x
MAD. Bursty counts (tweets, requests, errors) are skewed: their upper tail is many MADs long,
so a z-score fires on every ordinary burst, and the ensemble's calibration can only damp it.
This member measures each side of the band from the series' own tail instead: the upper
scale is (q[1 - tail] - median) / z[1 - tail], the spread a normal distribution would need to
put that quantile there, and the lower scale likewise from q[tail]. On normal noise both are
the standard deviation, so `threshold: 3` is the band of a 3-sigma z-score; on a skewed series
the long side is wider and a value the series reaches every few days is not an anomaly, while
a value beyond anything in the window still is. Each scale is never narrower than the robust
(MAD) one, so the member never fires where the robust z-score would stay quiet on that side.

`differences: 1` scores the step-to-step change the same way (expected: previous value plus
the median change), which catches jumps on a drifting series.

Re-learning as the z-score's: once the median of the last 2 x `relearn` seconds of points lies
beyond the band, the series has been at a new level for `relearn` and that median becomes the
expected value: a level shift is anomalous for about `relearn`, whatever the step. The band
itself comes from the window before those last points, so a shift cannot widen its own tail
(1 % of 2,000 points is 20: ten minutes at a 30 s step) before it is re-learned.

The statistics are those of the `window` past columns, recomputed every `refresh` steps of
the time grid (as the z-score's), from sorted windows; `score` and `score_all` share them, so
they agree on every column without carrying state.
"""

from __future__ import annotations

from statistics import NormalDist
from typing import Literal

import numpy as np
import numpy.typing as npt
from legacy_zscore import (
    DEFAULT_RELEARN,
    MAD_TO_STD,
    MEANAD_TO_STD,
    _anchors,
    relearn_points,
    relearned_level,
)
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import Field

from exporter.config.durations import Span
from exporter.detectors.base import (
    DetectorParams,
    Estimate,
    FloatArray,
    IntArray,
    Window,
    scale_floor,
)

_CHUNK_POINTS = 1 << 20
"""Window points sorted at once (8 MB): bounds memory for long backtests."""


class QuantileParams(DetectorParams):
    """Settings of the `quantile` detector."""

    threshold: float = Field(3.0, gt=0)
    """Half-width of each side of the band in that side's standard deviations."""
    tail: float = Field(0.01, gt=0, lt=0.25)
    """Share of the window beyond the quantile that sets each side's scale (0.01: the 1st and
    99th percentiles). At least ~20 points should lie beyond it, so keep window x tail >= 20."""
    window: int = Field(2000, ge=10)
    """How many past columns (steps) the quantiles use."""
    min_points: int = Field(10, ge=2)
    """Series with fewer non-missing past points get a NaN score."""
    refresh: int = Field(16, ge=1)
    """Recompute the quantiles every `refresh` steps of the time grid (as the z-score's)."""
    differences: Literal[0, 1] = 0
    """1 scores the change since the previous point instead of the value."""
    relearn: Span | None = Field(DEFAULT_RELEARN, gt=0)
    """How long a level shift stays anomalous before it is the new normal (None: never)."""


class QuantileDetector:
    """Scores the newest point against per-side scales read from the tails of its past."""

    def __init__(self, params: QuantileParams | None = None) -> None:
        self.params = params or QuantileParams()
        self._z = NormalDist().inv_cdf(1.0 - self.params.tail)

    def score(self, window: Window) -> Estimate:
        """Score the last column of `window.values` against the columns before it."""
        est = self._score_columns(window, last_only=True)
        return Estimate(*(a[:, -1] for a in (est.score, est.expected, est.lower, est.upper)))

    def score_all(self, window: Window) -> Estimate:
        """Every column scored as `score` would score it as the newest: `(series, time)`."""
        return self._score_columns(window, last_only=False)

    def _score_columns(self, window: Window, last_only: bool) -> Estimate:
        values = np.asarray(window.values, dtype=np.float64)
        rows, cols = values.shape
        if cols == 0:
            nan = np.full((rows, 1), np.nan)
            return Estimate(nan, nan.copy(), nan.copy(), nan.copy())
        y = values
        prev = np.zeros_like(values)
        if self.params.differences:
            y = np.full_like(values, np.nan)
            with np.errstate(invalid="ignore"):
                y[:, 1:] = values[:, 1:] - values[:, :-1]
            prev = np.full_like(values, np.nan)
            prev[:, 1:] = values[:, :-1]
        anchors = _anchors(window, self.params.refresh)
        newest = values
        if last_only:
            anchors, prev, newest = anchors[-1:], prev[:, -1:], values[:, -1:]
        ends, where = np.unique(anchors, return_inverse=True)
        k = 0 if self.params.relearn is None else relearn_points(self.params.relearn, window.step)
        # The band comes from the history before the last k points, which decide whether the
        # level moved: a shift cannot widen its own tails before it is re-learned.
        ends = np.maximum(ends - k, 0)
        starts = np.maximum(ends - self.params.window, 0)
        center, s_lo, s_hi = self._stats(y, starts, ends)
        center, s_lo, s_hi = center[:, where], s_lo[:, where], s_hi[:, where]
        if self.params.relearn is not None:
            first = cols - 1 if last_only else 0
            floor = center + prev
            lo, hi = scale_floor(s_lo, floor), scale_floor(s_hi, floor)
            moved = relearned_level(y, center, lo, hi, first, k, self.params.threshold)
            center = np.where(np.isnan(moved), center, moved)
        return _band(newest, center + prev, s_lo, s_hi, self.params.threshold)

    def moved(self, window: Window, last_only: bool = False) -> npt.NDArray[np.bool_]:
        """Where the level has been re-learned: the median of the last 2 x `relearn` of the
        values lies beyond the band (of the values, whatever `differences`), `(series, time)`
        or the newest column alone. All False without `relearn`."""
        values = np.asarray(window.values, dtype=np.float64)
        rows, cols = values.shape
        width = 1 if last_only else cols
        if self.params.relearn is None or cols == 0:
            return np.zeros((rows, width), dtype=bool)
        anchors = _anchors(window, self.params.refresh)
        anchors = anchors[-1:] if last_only else anchors
        ends, where = np.unique(anchors, return_inverse=True)
        k = relearn_points(self.params.relearn, window.step)
        ends = np.maximum(ends - k, 0)
        starts = np.maximum(ends - self.params.window, 0)
        center, s_lo, s_hi = (a[:, where] for a in self._stats(values, starts, ends))
        lo, hi = scale_floor(s_lo, center), scale_floor(s_hi, center)
        first = cols - 1 if last_only else 0
        level = relearned_level(values, center, lo, hi, first, k, self.params.threshold)
        return np.isfinite(level)

    def _stats(
        self, y: FloatArray, starts: IntArray, ends: IntArray
    ) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Median and lower/upper scales of the finite `y[:, start:end]` for each window."""
        rows = y.shape[0]
        span = max(int((ends - starts).max()), 1)
        out = [np.full((rows, len(ends)), np.nan) for _ in range(3)]
        # views[r, e] holds y[r, e - span : e], NaN-padded before the first column.
        padded = np.pad(y, ((0, 0), (span, 0)), constant_values=np.nan)
        views = sliding_window_view(padded, span, axis=1)
        short = np.arange(span)[None, :] < (span - (ends - starts))[:, None]
        # Batches of windows (rows x anchors) of at most _CHUNK_POINTS values: few numpy
        # calls for a poll of many series, bounded memory for a long backtest of one.
        per = max(1, _CHUNK_POINTS // span)
        width = min(len(ends), per)
        height = max(1, per // width)
        for lo in range(0, len(ends), width):
            picked, gaps = ends[lo : lo + width], short[lo : lo + width]
            for top in range(0, rows, height):
                block = views[top : top + height, picked]  # a copy (fancy indexing)
                block[np.broadcast_to(gaps, block.shape)] = np.nan
                stats = self._sorted_stats(block.reshape(-1, span))
                for target, value in zip(out, stats, strict=True):
                    target[top : top + height, lo : lo + width] = value.reshape(block.shape[:2])
        return out[0], out[1], out[2]

    def _sorted_stats(self, block: FloatArray) -> tuple[FloatArray, FloatArray, FloatArray]:
        """Median, lower and upper scale of each row of `block` (NaN = missing)."""
        finite = np.isfinite(block)
        count = finite.sum(axis=1)
        block = np.where(finite, block, np.inf)
        block.sort(axis=1)
        finite = np.isfinite(block)  # the missing values now sort last
        median = _quantile(block, count, 0.5)
        q_lo = _quantile(block, count, self.params.tail)
        q_hi = _quantile(block, count, 1.0 - self.params.tail)
        with np.errstate(invalid="ignore"):
            dev = np.abs(np.where(finite, block, np.nan) - median[:, None])
            # The deviations of a sorted row are not sorted; the MAD needs a second sort.
            dev = np.where(np.isnan(dev), np.inf, dev)
            dev.sort(axis=1)
            robust = MAD_TO_STD * _quantile(dev, count, 0.5)
            mean_ad = MEANAD_TO_STD * np.where(np.isinf(dev), 0.0, dev).sum(axis=1) / count
        robust = np.where(robust > 0, robust, mean_ad)
        s_lo = np.fmax((median - q_lo) / self._z, robust)
        s_hi = np.fmax((q_hi - median) / self._z, robust)
        enough = count >= self.params.min_points
        nan = np.nan
        return (
            np.where(enough, median, nan),
            np.where(enough, s_lo, nan),
            np.where(enough, s_hi, nan),
        )


def _quantile(ordered: FloatArray, count: IntArray, q: float) -> FloatArray:
    """The `q` quantile (linear interpolation) of the first `count` entries of sorted rows."""
    pos = q * np.maximum(count - 1, 0)
    lo = np.floor(pos).astype(np.intp)
    hi = np.minimum(lo + 1, np.maximum(count - 1, 0))
    rows = np.arange(ordered.shape[0])
    frac = pos - lo
    with np.errstate(invalid="ignore"):
        a, b = ordered[rows, lo], ordered[rows, hi]
        return np.where(count > 0, a + frac * (b - a), np.nan)


def _band(
    newest: FloatArray, expected: FloatArray, s_lo: FloatArray, s_hi: FloatArray, t: float
) -> Estimate:
    """Score against an asymmetric band: each side's half-width is `t` x that side's scale."""
    with np.errstate(invalid="ignore", over="ignore"):
        lo_half = t * scale_floor(s_lo, expected)
        hi_half = t * scale_floor(s_hi, expected)
        dev = newest - expected
        score = np.where(dev >= 0, dev / hi_half, -dev / lo_half)
        unscorable = ~np.isfinite(newest) | np.isnan(score)
        score[unscorable] = np.nan
        expected = np.where(unscorable, np.nan, expected)
        lower = np.where(unscorable, np.nan, expected - lo_half)
        upper = np.where(unscorable, np.nan, expected + hi_half)
    return Estimate(score=score, expected=expected, lower=lower, upper=upper)
