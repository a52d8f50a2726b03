"""Rolling z-score: how far the newest point is from the recent mean, in standard deviations.
Over 400 lines because it holds both statistics (mean and standard deviation, median and
MAD), each for the newest point and for every column (`score_all`), which must agree; the
window kernels, which `quantile` uses too, could go to a module of their own.

The statistics come from the past points of the look-back window only (never the point being
scored, so a spike cannot widen its own band). `robust: true` swaps mean and standard
deviation for the median and 1.4826 x the median absolute deviation, which a few outliers in
the history do not move. Every series of the query is scored at once; the matrix is walked in
blocks of rows small enough to stay in the CPU cache.

`score_all` gives every column the verdict `score` would give it as the newest point, from
cumulative sums (mean, variance) or from sorted windows (median, MAD), for backtests.

Re-learning: once the median of the points of the last 2 x `relearn` seconds lies beyond the
band, more than half of them are off: the series has been at a new level for `relearn`, and
that median becomes the expected value. The band then keeps the noise of before (the smaller
spread of the window and of its older half, which has not seen the shift yet): a level shift
does not change the noise, and while the window mixes both levels its spread is inflated. So
a shift is anomalous for about `relearn` whatever the step, instead of until the window has
forgotten the old level, while a slow drift still fires at its leading edge before its median
leaves the band. The rule only looks at the window, so `score` and `score_all` agree without
carrying state.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from pydantic import Field, ValidationInfo, field_validator

from exporter.config.durations import Span
from exporter.detectors.base import (
    DetectorParams,
    Estimate,
    FloatArray,
    IntArray,
    Window,
    band_estimate,
    register,
    row_blocks,
    scale_floor,
)
from exporter.detectors.order import kth_deviation

DEFAULT_RELEARN = 3600.0
"""Seconds a level shift stays anomalous before it becomes the new normal."""

MAD_TO_STD = 1.4826
"""Makes the median absolute deviation estimate the standard deviation of normal data."""

MEANAD_TO_STD = 1.2533
"""Makes the mean absolute deviation estimate it, the fallback when the MAD is 0 (the
convention of IBM's modified z-score: more than half the points equal is not zero noise)."""

_BLOCK_ROWS = 128
"""Rows per block: 128 x 720 float64 is ~0.7 MB, inside the 1 MB L2 cache of a core."""

_SORT_BLOCKS = 8
"""Blocks sorted together by `_median_mad`, so the vectorised steps after the sort are few;
the fallback of a row whose MAD is 0 still depends on its block of `_BLOCK_ROWS`."""

_MAX_GROUPS = 4
"""Distinct counts of finite values in a block up to which rows are partitioned per count."""

_CHUNK_POINTS = 1 << 20
"""Window points sorted at once by `score_all` (8 MB): bounds memory for long backtests."""


class ZScoreParams(DetectorParams):
    """Settings of the `zscore` detector."""

    threshold: float = Field(3.0, gt=0)
    """Half-width of the band in standard deviations (the score is 1 on its edge)."""
    robust: bool = False
    """Use median and 1.4826 x MAD instead of mean and standard deviation.

    When more than half of the past points are equal (a mostly idle error rate) the MAD is 0;
    the scale then falls back to 1.2533 x the mean absolute deviation, so the occasional
    blips set the band. A series that never moved gets the scale floor.
    """
    min_points: int = Field(10, ge=2)
    """Series with fewer non-missing past points get a NaN score."""
    window: int | None = Field(None, ge=2)
    """How many past columns (steps) the statistics use; None uses the whole look-back."""
    differences: Literal[0, 1] = 0
    """1 scores the change since the previous point instead of the value: the expected value
    is the previous point plus the typical change, so trends are followed and jumps stand out."""
    relearn: Span | None = Field(DEFAULT_RELEARN, gt=0)
    """How long a level shift stays anomalous before it is the new normal (about; at least
    two steps). None: never re-learn, the shift fires until the window forgets the old level."""
    refresh: int = Field(1, ge=1)
    """Recompute the statistics every `refresh` steps of the time grid, not every step.

    Backtests over long windows run about `refresh` times faster; the newest points are then
    judged against statistics up to `refresh - 1` steps old (as NAB's Windowed Gaussian is).
    """

    # `window` comes after `min_points` so that this check can see it and an error is
    # reported at `zscore.window`, the setting that is usually wrong.
    @field_validator("window")
    @classmethod
    def _window_holds_min_points(cls, value: int | None, info: ValidationInfo) -> int | None:
        min_points = info.data.get("min_points")
        if value is not None and min_points is not None and value < min_points:
            raise ValueError(
                f"must be at least min_points ({min_points}), or no series could ever be scored"
            )
        return value


class ZScoreDetector:
    """Scores the newest point against the mean and spread of the points before it."""

    thread_safe = True
    """Scoring holds no state and touches no global (the ensemble scores blocks in threads)."""

    def __init__(self, params: ZScoreParams | None = None) -> None:
        self.params = params or ZScoreParams()

    def score(self, window: Window) -> Estimate:
        """Score the last column of `window.values` against the columns before it."""
        out = [np.full(len(window.values), np.nan) for _ in range(4)]
        for part, block in row_blocks(window):
            est = self._score_block(block)
            for target, a in zip(out, (est.score, est.expected, est.lower, est.upper), strict=True):
                target[part] = a
        return Estimate(*out)

    def _score_block(self, window: Window) -> Estimate:
        """`score` of a block of rows."""
        values = np.asarray(window.values, dtype=np.float64)
        if values.shape[1] == 0:
            return _missing(values.shape[0])
        y = self._observed(values)
        end = int(_anchors(window, self.params.refresh)[-1])
        past = y[:, max(0, end - self.params.window) if self.params.window else 0 : end]
        stats = _median_mad if self.params.robust else _mean_std
        center, scale = stats(past, self.params.min_points)
        older = scale
        if self.params.relearn is not None:
            older = stats(past[:, : past.shape[1] // 2], self.params.min_points)[1]
        est = self._estimate(
            values,
            y,
            center[:, None],
            scale[:, None],
            older[:, None],
            values.shape[1] - 1,
            window.step,
        )
        return Estimate(est.score[:, 0], est.expected[:, 0], est.lower[:, 0], est.upper[:, 0])

    def score_all(self, window: Window) -> Estimate:
        """Every column scored as `score` would score it as the newest: `(series, time)` arrays."""
        values = np.asarray(window.values, dtype=np.float64)
        y = self._observed(values)
        anchors = _anchors(window, self.params.refresh)
        # Statistics are computed once per refresh anchor and shared by its columns.
        ends, where = np.unique(anchors, return_inverse=True)
        stats = _rolling_median_mad if self.params.robust else _rolling_mean_std
        width, points = self.params.window, self.params.min_points
        starts = np.maximum(ends - width, 0) if width else np.zeros_like(ends)
        center, scale = stats(y, starts, ends, points)
        older = scale
        if self.params.relearn is not None:
            older = stats(y, starts, starts + (ends - starts) // 2, points)[1]
        return self._estimate(
            values, y, center[:, where], scale[:, where], older[:, where], 0, window.step
        )

    def _observed(self, values: FloatArray) -> FloatArray:
        """What the statistics describe: the values, or their step-to-step changes."""
        if not self.params.differences:
            return values
        y = np.full_like(values, np.nan)
        with np.errstate(invalid="ignore"):
            y[:, 1:] = values[:, 1:] - values[:, :-1]
        return y

    def _estimate(
        self,
        values: FloatArray,
        y: FloatArray,
        center: FloatArray,
        scale: FloatArray,
        older: FloatArray,
        first: int,
        step: float,
    ) -> Estimate:
        """Bands of columns `first:` from their statistics, after re-learning."""
        prev = None
        if self.params.differences:
            prev = np.full_like(values, np.nan)
            prev[:, 1:] = values[:, :-1]
            prev = prev[:, first:]
        if self.params.relearn is not None:
            level = center if prev is None else center + prev
            # The older half has not seen a recent shift: while the window mixes both levels
            # its spread is inflated, and the new level must not slip back into the band.
            settled = np.fmin(scale, older)
            floor = scale_floor(settled, level)
            k = relearn_points(self.params.relearn, step)
            moved = relearned_level(y, center, floor, floor, first, k, self.params.threshold)
            center = np.where(np.isnan(moved), center, moved)
            scale = np.where(np.isnan(moved), scale, settled)
        expected = center if prev is None else center + prev
        return band_estimate(values[:, first:], expected, scale, self.params.threshold)


def relearn_points(relearn: float, step: float) -> int:
    """Points of the median that decides a re-learning: 2 x `relearn` of them, at least 3."""
    return max(3, round(2 * relearn / step)) if step > 0 else 3


def relearned_level(
    y: FloatArray,
    center: FloatArray,
    lower_scale: FloatArray,
    upper_scale: FloatArray,
    first: int,
    k: int,
    threshold: float,
) -> FloatArray:
    """The median of the `k` points before each of columns `first:` where it lies beyond the
    band around `center` (each side `threshold` x its scale), else NaN: a settled level."""
    rows, cols = center.shape
    lo = first - k
    part = y[:, max(lo, 0) : first + cols - 1]
    if lo < 0:
        part = np.concatenate([np.full((rows, -lo), np.nan), part], axis=1)
    # recent[i, c] holds the k points before column first + c; NaN sorts last, so the
    # median of the finite ones is read by their count.
    recent = np.sort(sliding_window_view(part, k, axis=1), axis=2)
    count = np.count_nonzero(np.isfinite(recent), axis=2)
    median = _sorted_median(recent, count)
    with np.errstate(invalid="ignore"):
        shift = median - center
        moved = np.where(
            shift >= 0, shift > threshold * upper_scale, -shift > threshold * lower_scale
        )
    moved &= count > k // 2
    return np.where(moved, median, np.nan)


def _sorted_median(ordered: FloatArray, count: IntArray) -> FloatArray:
    """Median of the first `count` entries along the last axis of sorted `ordered`."""
    lo = np.take_along_axis(ordered, (np.maximum(count - 1, 0) // 2)[..., None], axis=-1)
    hi = np.take_along_axis(ordered, (count // 2)[..., None], axis=-1)
    with np.errstate(invalid="ignore"):
        return np.asarray(0.5 * (lo[..., 0] + hi[..., 0]))


def _missing(rows: int) -> Estimate:
    nan = np.full(rows, np.nan)
    return Estimate(score=nan, expected=nan.copy(), lower=nan.copy(), upper=nan.copy())


def _anchors(window: Window, refresh: int) -> IntArray:
    """The column whose past each column's statistics describe (itself unless refreshing).

    Refresh periods are aligned to the time grid (timestamp / step), not to the window's
    first column, so the same point gets the same statistics in every poll's window.
    """
    width = len(window.timestamps)
    columns = np.arange(width, dtype=np.intp)
    if refresh <= 1 or width == 0:
        return columns
    ticks = np.floor(np.asarray(window.timestamps, dtype=np.float64) / window.step + 0.5)
    period = np.floor_divide(ticks, refresh)
    starts = np.ones(width, dtype=bool)
    starts[1:] = period[1:] != period[:-1]
    return np.maximum.accumulate(np.where(starts, columns, 0))


def _mean_std(past: FloatArray, min_points: int) -> tuple[FloatArray, FloatArray]:
    """Per-row mean and sample standard deviation of the finite values (NaN below min_points).

    Two passes (mean, then squared deviations) rather than sum and sum of squares: counters
    and byte gauges sit far from zero, where the one-pass formula cancels catastrophically.
    """
    rows, width = past.shape
    mean = np.full(rows, np.nan)
    std = np.full(rows, np.nan)
    if width < min_points:
        return mean, std
    buf = np.empty((min(rows, _BLOCK_ROWS), width))
    with np.errstate(invalid="ignore", divide="ignore", over="ignore"):
        for lo in range(0, rows, _BLOCK_ROWS):
            block = buf[: min(_BLOCK_ROWS, rows - lo)]
            np.copyto(block, past[lo : lo + _BLOCK_ROWS])
            total = block.sum(axis=1)
            if np.isfinite(total).all():
                # A finite row sum means no NaN or Inf in the row: skip the masking.
                count = np.full(block.shape[0], width)
                m = total / width
                block -= m[:, None]
            else:
                missing = ~np.isfinite(block)
                block[missing] = 0.0
                count = width - np.count_nonzero(missing, axis=1)
                m = block.sum(axis=1) / count
                block -= m[:, None]
                block[missing] = 0.0
            var = np.einsum("ij,ij->i", block, block) / (count - 1)
            enough = count >= min_points
            mean[lo : lo + block.shape[0]] = np.where(enough, m, np.nan)
            std[lo : lo + block.shape[0]] = np.where(enough, np.sqrt(var), np.nan)
    return mean, std


def _median_mad(past: FloatArray, min_points: int) -> tuple[FloatArray, FloatArray]:
    """Per-row median and robust scale of the finite values (NaN below min_points).

    The scale is 1.4826 x MAD, or 1.2533 x the mean absolute deviation where the MAD is 0.
    `np.nanmedian` falls back to a Python loop per row when NaNs are present, so instead the
    missing values become +inf (they sort last) and each row's median is read at its count of
    finite values.
    """
    rows, width = past.shape
    median = np.full(rows, np.nan)
    scale = np.full(rows, np.nan)
    if width < min_points:
        return median, scale
    chunk = _BLOCK_ROWS * _SORT_BLOCKS
    buf = np.empty((min(rows, chunk), width))
    with np.errstate(invalid="ignore", over="ignore"):
        for lo in range(0, rows, chunk):
            block = buf[: min(chunk, rows - lo)]
            np.copyto(block, past[lo : lo + chunk])
            missing = ~np.isfinite(block)
            block[missing] = np.inf
            count = width - np.count_nonzero(missing, axis=1)
            enough = count >= min_points
            # One sort, then the MAD's two order statistics from the sorted row: cheaper than
            # partitioning for the median and again for the deviations.
            block.sort(axis=1)
            low, high = np.maximum(count - 1, 0) // 2, count // 2
            at = np.arange(block.shape[0])
            med = 0.5 * (block[at, low] + block[at, np.minimum(high, width - 1)])
            med = np.where(enough, med, np.nan)
            d_low = kth_deviation(block, count, med, np.minimum(low, np.maximum(count - 1, 0)))
            d_high = kth_deviation(block, count, med, np.minimum(high, np.maximum(count - 1, 0)))
            mad = np.where(enough, MAD_TO_STD * (0.5 * (d_low + d_high)), np.nan)
            for sub in range(0, block.shape[0], _BLOCK_ROWS):
                zero = sub + np.flatnonzero(mad[sub : sub + _BLOCK_ROWS] == 0)
                if zero.size:
                    group = count[sub : sub + _BLOCK_ROWS]
                    mad[zero] = _mean_deviation(past[lo + zero], med[zero], group, min_points)
            median[lo : lo + block.shape[0]] = med
            scale[lo : lo + block.shape[0]] = mad
    return median, scale


def _mean_deviation(
    rows: FloatArray, median: FloatArray, block_count: IntArray, min_points: int
) -> FloatArray:
    """1.2533 x the mean absolute deviation of `rows` from `median` (the fallback where the MAD
    is 0), summed in the order the deviations always were, so the rounding is unchanged: the
    order median and MAD partitions (by count of finite values, over the whole block of
    `block_count`) used to leave them in, which this replays on these rows alone."""
    block = np.array(rows, dtype=np.float64)
    missing = ~np.isfinite(block)
    block[missing] = np.inf
    count = block.shape[1] - np.count_nonzero(missing, axis=1)
    counts = np.unique(block_count[block_count >= min_points])
    # Blocks with many counts were sorted; one with a single count was partitioned in place;
    # otherwise rows were partitioned as copies, which left the block as it was.
    n = int(block_count.min())
    uniform = len(counts) == 1 and n == block_count.max()

    def arrange(part: FloatArray) -> None:
        if len(counts) > _MAX_GROUPS:
            part.sort(axis=1)
        elif uniform:
            part.partition([(n - 1) // 2, n // 2], axis=1)

    arrange(block)
    np.subtract(block, median[:, None], out=block)
    np.abs(block, out=block)
    arrange(block)
    block[np.isinf(block)] = 0.0
    return np.asarray(MEANAD_TO_STD * block.sum(axis=1) / count)


def _rolling_mean_std(
    y: FloatArray, starts: IntArray, ends: IntArray, min_points: int
) -> tuple[FloatArray, FloatArray]:
    """Mean and standard deviation of the finite `y[:, start:end]` for each start, end.

    Cumulative sums make every window O(1). Each row is first shifted by its first finite
    value so that series far from zero keep their precision in the sums of squares.
    """
    rows = y.shape[0]
    finite = np.isfinite(y)
    first = y[np.arange(rows), np.argmax(finite, axis=1)] if y.shape[1] else np.zeros(rows)
    offset = np.where(np.isfinite(first), first, 0.0)
    z = np.where(finite, y - offset[:, None], 0.0)
    sums = [
        np.concatenate([np.zeros((rows, 1)), np.cumsum(a, axis=1)], axis=1)
        for a in (finite.astype(np.float64), z, z * z)
    ]
    n, s1, s2 = (s[:, ends] - s[:, starts] for s in sums)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        var = np.maximum(s2 - s1 * mean, 0.0) / (n - 1)
        enough = n >= min_points
        return (
            np.where(enough, offset[:, None] + mean, np.nan),
            np.where(enough, np.sqrt(var), np.nan),
        )


def _rolling_median_mad(
    y: FloatArray, starts: IntArray, ends: IntArray, min_points: int
) -> tuple[FloatArray, FloatArray]:
    """`_median_mad` of `y[:, start:end]` for each start, end, a chunk of windows at a time.

    Windows are views into one padded copy of the row; only a chunk of them is copied and
    partitioned at once. The cost is O(columns x width): a whole look-back as the window of
    a long backtest is quadratic, which is what `window` and `refresh` are for.
    """
    rows = y.shape[0]
    lengths = ends - starts
    span = max(int(lengths.max()), 1) if lengths.size else 1
    center = np.full((rows, len(ends)), np.nan)
    scale = np.full((rows, len(ends)), np.nan)
    if not len(ends):
        return center, scale
    # views[r, e] holds y[r, e - span : e], NaN-padded before the first column.
    views = sliding_window_view(np.pad(y, ((0, 0), (span, 0)), constant_values=np.nan), span, 1)
    short = np.arange(span)[None, :] < (span - lengths)[:, None]
    # Chunks of whole rows when windows are short (many series, the daemon's bootstrap),
    # of columns within a row when they are long (a long backtest).
    per_row = len(ends) * span
    if per_row <= _CHUNK_POINTS:
        step = max(1, _CHUNK_POINTS // per_row)
        for lo in range(0, rows, step):
            block = views[lo : lo + step][:, ends]  # a copy (fancy indexing)
            block[:, short] = np.nan
            c, m = _median_mad(block.reshape(-1, span), min_points)
            center[lo : lo + step] = c.reshape(-1, len(ends))
            scale[lo : lo + step] = m.reshape(-1, len(ends))
        return center, scale
    chunk = max(1, _CHUNK_POINTS // span)
    for r in range(rows):
        for lo in range(0, len(ends), chunk):
            block = views[r, ends[lo : lo + chunk]]
            block[short[lo : lo + chunk]] = np.nan
            center[r, lo : lo + chunk], scale[r, lo : lo + chunk] = _median_mad(block, min_points)
    return center, scale


register("zscore", ZScoreParams, ZScoreDetector)
